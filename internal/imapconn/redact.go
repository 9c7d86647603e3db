package imapconn

import (
	"bytes"
	"io"
	"regexp"
	"sync"
)

// Redactor is a protocol-trace writer that hides credentials: the arguments
// of LOGIN and the payloads of AUTHENTICATE exchanges. It is line-based and
// safe for concurrent use.
type Redactor struct {
	mu   sync.Mutex
	w    io.Writer
	buf  []byte
	sasl bool // inside an AUTHENTICATE exchange
}

// NewRedactor wraps w.
func NewRedactor(w io.Writer) *Redactor { return &Redactor{w: w} }

var (
	loginRe = regexp.MustCompile(`(?i)^(\S+ LOGIN) .*`)
	authRe  = regexp.MustCompile(`(?i)^(\S+ AUTHENTICATE \S+)( .*)?$`)
)

func (r *Redactor) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf = append(r.buf, p...)
	for {
		i := bytes.IndexByte(r.buf, '\n')
		if i < 0 {
			break
		}
		line := r.buf[:i+1]
		if _, err := r.w.Write(r.redact(line)); err != nil {
			return len(p), err
		}
		r.buf = r.buf[i+1:]
	}
	if len(r.buf) > 64<<10 { // a long literal: pass it on, it is mail, not credentials
		if _, err := r.w.Write(r.buf); err != nil {
			return len(p), err
		}
		r.buf = r.buf[:0]
	}
	return len(p), nil
}

func (r *Redactor) redact(line []byte) []byte {
	trimmed := bytes.TrimRight(line, "\r\n")
	switch {
	case loginRe.Match(trimmed):
		return append(loginRe.ReplaceAll(trimmed, []byte("$1 <redacted>")), '\r', '\n')
	case authRe.Match(trimmed):
		r.sasl = true
		return append(authRe.ReplaceAll(trimmed, []byte("$1 <redacted>")), '\r', '\n')
	case r.sasl && !bytes.HasPrefix(trimmed, []byte("+")) && !bytes.HasPrefix(trimmed, []byte("*")):
		if bytes.Contains(trimmed, []byte(" OK")) || bytes.Contains(trimmed, []byte(" NO")) || bytes.Contains(trimmed, []byte(" BAD")) {
			r.sasl = false
			return line
		}
		return []byte("<redacted>\r\n")
	}
	return line
}
