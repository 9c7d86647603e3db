package imapconn

import (
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-imap/v2"

	"mailferry/throttle"
)

// Side is the cluster an error came from.
type Side string

// The sides of a copy.
const (
	SideUnknown Side = ""
	Source      Side = "source"
	Target      Side = "target"
)

// OpError is a failed IMAP operation, naming its side, operation, folder
// and message. Its message reads like
//
//	append uid 4711 to "Archive/2019" on the target: imap: NO [OVERQUOTA] ...
//
// Decide takes the side from it, so that a target's error is never counted
// against the source. It is a throttle.Verdicter: a limiter handed an
// OpError reads its signal from Decide.
type OpError struct {
	Side   Side
	Op     string   // "append", "fetch", "examine", "select", "create", "list messages", ...
	Folder string   // "" when the operation has none
	UID    imap.UID // 0 when it concerns no single message
	Err    error
}

// Wrap returns err as an OpError of side, op and folder; nil stays nil.
func Wrap(side Side, op, folder string, err error) error {
	if err == nil {
		return nil
	}
	return &OpError{Side: side, Op: op, Folder: folder, Err: err}
}

// prepositions join an operation and its folder in OpError's message.
var prepositions = map[string]string{"append": "to", "fetch": "from", "list messages": "of", "store flags": "on", "read back": "from", "search": "in"}

func (e *OpError) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	if e.UID != 0 {
		fmt.Fprintf(&b, " uid %d", e.UID)
	}
	if e.Folder != "" {
		if p := prepositions[e.Op]; p != "" {
			b.WriteString(" " + p)
		}
		fmt.Fprintf(&b, " %q", e.Folder)
	}
	if e.Side != SideUnknown {
		b.WriteString(" on the " + string(e.Side))
	}
	b.WriteString(": ")
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	} else {
		b.WriteString("failed")
	}
	return b.String()
}

func (e *OpError) Unwrap() error { return e.Err }

// ThrottleVerdict makes an OpError a throttle.Verdicter.
func (e *OpError) ThrottleVerdict() throttle.Verdict { return Decide(e).Verdict() }

// sideOf is the side of the first OpError, AuthError or SetupError in
// err's chain.
func sideOf(err error) Side {
	for err != nil {
		switch e := err.(type) {
		case *OpError:
			if e.Side != SideUnknown {
				return e.Side
			}
		case *AuthError:
			switch s := Side(e.Side); s {
			case Source, Target:
				return s
			}
		case *SetupError:
			switch s := Side(e.Side); s {
			case Source, Target:
				return s
			}
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if s := sideOf(e); s != SideUnknown {
					return s
				}
			}
			return SideUnknown
		default:
			return SideUnknown
		}
	}
	return SideUnknown
}

// AuthError is a refused login. Its message never contains the password.
type AuthError struct {
	Side  string
	Login string
	Addr  string
	Err   error
}

func (e *AuthError) Error() string {
	return e.Side + ": login as " + quote(e.Login) + " on " + e.Addr + " refused: " + serverText(e.Err)
}

func (e *AuthError) Unwrap() error { return e.Err }

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }

// serverText renders an IMAP error without the library's "imap: NO" prefix.
func serverText(err error) string {
	var ie *imap.Error
	if errors.As(err, &ie) {
		s := ie.Text
		if ie.Code != "" {
			s = "[" + string(ie.Code) + "] " + s
		}
		return s
	}
	return err.Error()
}

// SetupError is a connection that no retry can make: the server offers no
// STARTTLS on imap://, or its certificate is not trusted. Fixing the
// configuration is the next step, so Decide fails the mailbox at once.
type SetupError struct {
	Side string // Config.Side
	Err  error
}

func (e *SetupError) Error() string { return e.Err.Error() }
func (e *SetupError) Unwrap() error { return e.Err }

// IsConfigurationError reports whether err is one that only a change of
// configuration fixes: a refused login (AuthError) or a connection that
// cannot be set up (SetupError: no STARTTLS, an untrusted certificate).
func IsConfigurationError(err error) bool {
	var ae *AuthError
	var se *SetupError
	return errors.As(err, &ae) || errors.As(err, &se)
}
