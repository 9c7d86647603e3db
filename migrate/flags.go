package migrate

import (
	"strings"

	"github.com/emersion/go-imap/v2"
)

// permSet is what a target folder's PERMANENTFLAGS allow.
type permSet struct {
	known    bool // the server sent PERMANENTFLAGS
	wildcard bool // \* : any keyword may be created
	flags    map[string]bool
}

func newPermSet(perm []imap.Flag) permSet {
	p := permSet{known: len(perm) > 0, flags: map[string]bool{}}
	for _, f := range perm {
		if f == imap.FlagWildcard {
			p.wildcard = true
		}
		p.flags[strings.ToLower(string(f))] = true
	}
	return p
}

// systemFlags are the flags RFC 3501 defines and every server keeps.
var systemFlags = map[string]bool{`\seen`: true, `\answered`: true, `\flagged`: true, `\deleted`: true, `\draft`: true}

func (p permSet) allows(f imap.Flag) bool {
	lf := strings.ToLower(string(f))
	if strings.HasPrefix(lf, `\`) {
		// Other backslash flags cannot be set by a client (servers answer BAD).
		return systemFlags[lf]
	}
	return !p.known || p.wildcard || p.flags[lf]
}

// appendFlags filters a source message's flags for APPEND on the target:
// \Recent cannot be set by a client, flags that are not valid IMAP atoms
// would break the connection, and flags the target does not keep are
// dropped. It returns what to send and what was dropped (excluding
// \Recent, which is never copied and never worth a warning).
func appendFlags(src []imap.Flag, perm permSet) (keep, dropped []imap.Flag) {
	for _, f := range src {
		switch {
		case strings.EqualFold(string(f), `\Recent`):
		case !validFlag(string(f)) || !perm.allows(f):
			dropped = append(dropped, f)
		default:
			keep = append(keep, f)
		}
	}
	return keep, dropped
}

// validFlag reports whether f is a system flag (\Atom) or a keyword that is
// an IMAP atom (RFC 3501 flag-keyword).
func validFlag(f string) bool {
	s := strings.TrimPrefix(f, `\`)
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c >= 0x7f {
			return false
		}
		switch c {
		case '(', ')', '{', '%', '*', '"', '\\', ']':
			return false
		}
	}
	return true
}

func flagSet(flags []imap.Flag) map[string]bool {
	m := make(map[string]bool, len(flags))
	for _, f := range flags {
		if !strings.EqualFold(string(f), `\Recent`) {
			m[strings.ToLower(string(f))] = true
		}
	}
	return m
}

// missingFlags lists the flags of want that got does not have.
func missingFlags(want, got []imap.Flag) []string {
	have := flagSet(got)
	var out []string
	for _, f := range want {
		if strings.EqualFold(string(f), `\Recent`) {
			continue
		}
		if !have[strings.ToLower(string(f))] {
			out = append(out, string(f))
		}
	}
	return out
}
