// Package secret keeps credentials out of messages: RedactURL masks the
// password of a URL, whether or not the URL parses.
package secret

import (
	"regexp"
	"strings"
)

// Mask replaces a hidden password in messages.
const Mask = "xxxxx"

var queryPassword = regexp.MustCompile(`(?i)([?&;]password=)[^&#;]*`)

// RedactURL returns raw with the password of its user information
// ("user:password@host") and any password= query parameter replaced by
// Mask. It works on text, so a URL that does not parse (a bad port, a bad
// escape, no scheme) is masked too; everything else is kept, so that a
// message can still say what is wrong with it.
func RedactURL(raw string) string {
	rest, prefix := raw, ""
	if i := strings.Index(rest, "://"); i >= 0 {
		prefix, rest = rest[:i+3], rest[i+3:]
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		if colon := strings.IndexByte(authority[:at], ':'); colon >= 0 {
			authority = authority[:colon+1] + Mask + authority[at:]
		}
	}
	tail = queryPassword.ReplaceAllString(tail, "${1}"+Mask)
	return prefix + authority + tail
}
