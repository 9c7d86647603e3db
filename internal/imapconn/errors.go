package imapconn

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"

	"github.com/emersion/go-imap/v2"
)

// Class says what a caller should do after an error.
type Class int

const (
	// Retry: a passing condition (server busy, dropped connection, timeout);
	// reconnect if the connection is gone and try again after a backoff.
	Retry Class = iota
	// FatalMessage: the server refused this one message (too big, parse
	// error); the others go on.
	FatalMessage
	// FatalMailbox: nothing more can be done for this mailbox (wrong
	// credentials, over quota, no permission).
	FatalMailbox
	// TryCreate: the target folder is missing; create it, then retry.
	TryCreate
	// Canceled: the caller's context ended.
	Canceled
)

func (c Class) String() string {
	return [...]string{"retry", "fatal-message", "fatal-mailbox", "trycreate", "canceled"}[c]
}

// Classify maps an error from this package (or the IMAP library beneath it)
// to what happens next. Anything that is not a server status response means
// the connection is unusable and is classified Retry.
func Classify(err error) Class {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return Canceled
	}
	var authErr *AuthError
	if errors.As(err, &authErr) {
		return FatalMailbox
	}
	var ie *imap.Error
	if !errors.As(err, &ie) {
		return Retry
	}
	switch ie.Code {
	case imap.ResponseCodeTryCreate:
		return TryCreate
	case imap.ResponseCodeUnavailable, imap.ResponseCodeInUse, imap.ResponseCodeLimit,
		imap.ResponseCodeServerBug:
		return Retry
	case imap.ResponseCodeAuthenticationFailed, imap.ResponseCodeAuthorizationFailed,
		imap.ResponseCodeExpired, imap.ResponseCodePrivacyRequired, imap.ResponseCodeContactAdmin,
		imap.ResponseCodeNoPerm, imap.ResponseCodeOverQuota:
		return FatalMailbox
	case imap.ResponseCodeTooBig, imap.ResponseCodeParse, imap.ResponseCodeCannot:
		return FatalMessage
	}
	if ie.Type == imap.StatusResponseTypeBye {
		return Retry
	}
	return FatalMessage
}

// IsConnectionLost reports whether err means the connection is gone (as
// opposed to a NO or BAD answer on a live connection).
func IsConnectionLost(err error) bool {
	var ie *imap.Error
	if errors.As(err, &ie) {
		return ie.Type == imap.StatusResponseTypeBye
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) ||
		strings.Contains(err.Error(), "connection closed") || strings.Contains(err.Error(), "use of closed")
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
