package imapconn

import (
	"bytes"
	"io"
	"regexp"
	"strconv"
	"sync"
)

// Redactor is a protocol-trace writer that hides credentials: the arguments
// of LOGIN, whether sent as atoms, quoted strings or literals (go-imap sends
// a password that is not plain ASCII as a literal, "{9+}" and then the
// bytes, or "{9}", the server's "+" and then the bytes), and the payloads of
// AUTHENTICATE exchanges, on the command line (SASL-IR) or on the lines
// that answer the server's "+" challenges. The trace interleaves both
// directions, as go-imap writes it. Redactor is safe for concurrent use.
type Redactor struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte

	// A LOGIN in progress whose arguments continue past its first line.
	login string // its tag; "" when none
	phase loginPhase
	skip  int64 // bytes of the current literal still to hide

	// An AUTHENTICATE exchange in progress.
	sasl   string // its tag; "" when none
	answer bool   // the server sent "+": the next line is the client's answer
}

type loginPhase int

const (
	awaitContinuation loginPhase = iota // a synchronizing literal waits for the server's "+"
	inLiteral                           // hiding the literal's bytes
	restOfCommand                       // after a literal: more of the command, up to its CRLF
)

// NewRedactor wraps w.
func NewRedactor(w io.Writer) *Redactor { return &Redactor{w: w} }

var (
	loginRe   = regexp.MustCompile(`(?i)^(\S+) LOGIN( |$)`)
	authRe    = regexp.MustCompile(`(?i)^(\S+) AUTHENTICATE( \S+)?( .*)?$`)
	literalRe = regexp.MustCompile(`\{([0-9]{1,18})(\+)?\}$`)
)

var redacted = []byte("<redacted>\r\n")

func (r *Redactor) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf = append(r.buf, p...)
	for len(r.buf) > 0 {
		if r.login != "" && r.phase == inLiteral {
			n := int(min(r.skip, int64(len(r.buf))))
			r.buf = r.buf[n:] // credential bytes: never written
			if r.skip -= int64(n); r.skip == 0 {
				r.phase = restOfCommand
			}
			continue
		}
		i := bytes.IndexByte(r.buf, '\n')
		if i < 0 {
			break
		}
		out := r.redact(r.buf[:i+1])
		if len(out) > 0 {
			if _, err := r.w.Write(out); err != nil {
				r.buf = r.buf[i+1:]
				return len(p), err
			}
		}
		r.buf = r.buf[i+1:]
	}
	if len(r.buf) > 64<<10 && r.login == "" && r.sasl == "" {
		// A long literal outside any credential exchange: pass it on,
		// it is mail, not credentials.
		if _, err := r.w.Write(r.buf); err != nil {
			return len(p), err
		}
		r.buf = r.buf[:0]
	}
	return len(p), nil
}

// redact returns what of one line (with its LF) may be shown.
func (r *Redactor) redact(line []byte) []byte {
	trimmed := bytes.TrimRight(line, "\r\n")
	if r.login != "" {
		switch r.phase {
		case awaitContinuation:
			switch {
			case bytes.HasPrefix(trimmed, []byte("+")):
				r.phase = restOfCommand
				if r.skip > 0 {
					r.phase = inLiteral
				}
			case string(tagOf(trimmed)) == r.login:
				r.login = "" // the server refused the literal: the command is over
			}
			return line
		case restOfCommand:
			// The client's next part of the LOGIN: hidden, and it may
			// announce one more literal.
			r.literal(trimmed)
			return nil
		}
	}
	if r.sasl != "" {
		switch {
		case r.answer:
			r.answer = false
			return redacted
		case bytes.HasPrefix(trimmed, []byte("+")):
			r.answer = true
			return line
		case string(tagOf(trimmed)) == r.sasl:
			r.sasl = ""
			return line
		case bytes.HasPrefix(trimmed, []byte("*")):
			return line
		}
		return redacted
	}
	if m := loginRe.FindSubmatch(trimmed); m != nil {
		r.login = string(m[1])
		r.literal(trimmed)
		return append(append([]byte(nil), m[1]...), " LOGIN <redacted>\r\n"...)
	}
	if m := authRe.FindSubmatch(trimmed); m != nil {
		r.sasl = string(m[1])
		out := append(append([]byte(nil), m[1]...), " AUTHENTICATE"...)
		out = append(out, m[2]...)
		if len(m[3]) > 0 {
			out = append(out, " <redacted>"...)
		}
		return append(out, '\r', '\n')
	}
	return line
}

// literal looks at the end of a part of a LOGIN command: a literal there
// means more of the command follows (the literal's bytes, then the rest);
// otherwise the command is complete.
func (r *Redactor) literal(part []byte) {
	m := literalRe.FindSubmatch(part)
	if m == nil {
		r.login = ""
		return
	}
	n, _ := strconv.ParseInt(string(m[1]), 10, 64)
	r.skip = n
	switch {
	case len(m[2]) == 0:
		r.phase = awaitContinuation
	case n > 0:
		r.phase = inLiteral
	default:
		r.phase = restOfCommand
	}
}

// tagOf returns the first word of a line.
func tagOf(line []byte) []byte {
	if i := bytes.IndexByte(line, ' '); i >= 0 {
		return line[:i]
	}
	return line
}
