package imapconn

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/emersion/go-imap/v2"

	"mailferry/throttle"
)

// Action is what the caller does next after an error. Decide is the one
// place that chooses it.
type Action int

const (
	// Continue: no error.
	Continue Action = iota
	// Retry: a passing condition (the server is busy, a mailbox is in use,
	// a limit is reached). Wait — Decision.After when the server named a
	// delay, a jittered backoff otherwise — and run the command again,
	// reconnecting first if the connection is gone (a server that refuses
	// a literal may also close it).
	Retry
	// Reconnect: the connection is gone (BYE, reset, EOF, timeout, closed).
	// Open a new one after a backoff and retry; a write whose outcome is
	// unknown must be looked for before it is redone.
	Reconnect
	// FailMessage: the server refused this command's object for good — the
	// message of an APPEND or FETCH (too big, unparsable), the folder of a
	// folder command (no such folder). The others go on.
	FailMessage
	// FailMailbox: nothing more can be done for this mailbox (wrong
	// credentials, over quota, no permission).
	FailMailbox
	// CreateRetry: the target folder is missing (TRYCREATE); create it,
	// then retry.
	CreateRetry
	// Exists: what the command would create already exists
	// (ALREADYEXISTS): for a CREATE, that is success.
	Exists
	// Stop: the run ends — the caller's context ended, or the state store
	// is gone (ErrStopRun). Nothing is retried.
	Stop
)

var actionNames = [...]string{"continue", "retry", "reconnect", "fail-message", "fail-mailbox", "create-retry", "exists", "stop"}

func (a Action) String() string {
	if a < 0 || int(a) >= len(actionNames) {
		return "action(" + strconv.Itoa(int(a)) + ")"
	}
	return actionNames[a]
}

// Decision is what happens after one error: the Action, the wait the
// server asked for, the throttle signal the error is for the limiter of
// its cluster, and the Side (cluster) the error came from.
type Decision struct {
	Action Action
	// After is the delay the server asked for, from a response code's text
	// or a reply such as "try again in 2 seconds"; 0 when it named none.
	// At most MaxHint; the limiter's backoff caps it further and adds
	// jitter.
	After  time.Duration
	Signal throttle.Signal
	// Side is the side of the first OpError (or AuthError) in the error's
	// chain; SideUnknown when there is none.
	Side Side
}

// Retryable reports whether the command is worth running again after a
// wait: Retry and Reconnect.
func (d Decision) Retryable() bool { return d.Action == Retry || d.Action == Reconnect }

// Verdict is the decision as the throttle sees it.
func (d Decision) Verdict() throttle.Verdict {
	return throttle.Verdict{Signal: d.Signal, After: d.After}
}

// ErrStopRun, wrapped into an error, makes Decide say Stop: for errors
// after which no mailbox can go on, such as a state store that is gone.
var ErrStopRun = errors.New("the run cannot go on")

// Decide maps an error of an IMAP command (or of the copy around it) to
// what happens next. It is the only such mapping in mailferry; everything
// else asks it. In order:
//   - ErrStopRun, a canceled context or the context's deadline: Stop;
//   - a server reply (*imap.Error): its response code decides —
//     UNAVAILABLE, SERVERBUG, LIMIT and INUSE are Retry;
//     AUTHENTICATIONFAILED, AUTHORIZATIONFAILED, EXPIRED, PRIVACYREQUIRED,
//     CONTACTADMIN, NOPERM and OVERQUOTA are FailMailbox; TOOBIG, PARSE,
//     CANNOT and NONEXISTENT are FailMessage; TRYCREATE is CreateRetry;
//     ALREADYEXISTS is Exists. Without such a code, a BYE is Reconnect; a
//     NO that names a delay ("try again in 2 seconds", "Suggested Backoff
//     Time: 500 ms") or says the server is busy, throttled or overloaded is
//     Retry; a NO that says something "already exists" is Exists; any
//     other NO or BAD is FailMessage;
//   - a connection no retry can make (*SetupError: no STARTTLS, an
//     untrusted certificate): FailMailbox;
//   - a refused login (*AuthError): Reconnect when the server's reply is
//     one to retry, FailMailbox otherwise;
//   - anything else means the connection is unusable: Reconnect, with
//     SignalTimeout for timeouts, SignalReset for resets, EOFs and closed
//     connections, SignalNone for errors that say nothing about the server.
//
// The delay the server named is returned in After whatever the action.
func Decide(err error) Decision {
	if err == nil {
		return Decision{}
	}
	d := decide(err)
	d.Side = sideOf(err)
	return d
}

func decide(err error) Decision {
	if errors.Is(err, ErrStopRun) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return Decision{Action: Stop}
	}
	var setup *SetupError
	if errors.As(err, &setup) {
		return Decision{Action: FailMailbox, Signal: throttle.SignalFatal}
	}
	var authErr *AuthError
	if errors.As(err, &authErr) {
		var ie *imap.Error
		if errors.As(authErr.Err, &ie) {
			if d := decideReply(ie); d.Retryable() {
				d.Action = Reconnect // Dial closed the connection
				return d
			}
		}
		return Decision{Action: FailMailbox, Signal: throttle.SignalFatal}
	}
	var ie *imap.Error
	if errors.As(err, &ie) {
		return decideReply(ie)
	}
	var ne net.Error
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return Decision{Action: Reconnect, Signal: throttle.SignalTimeout}
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return Decision{Action: Reconnect, Signal: throttle.SignalReset}
	}
	// go-imap reports a dead connection with plain strings.
	lower := strings.ToLower(err.Error())
	for _, s := range []string{"connection reset", "broken pipe", "connection closed", "use of closed network connection", "unexpected eof"} {
		if strings.Contains(lower, s) {
			return Decision{Action: Reconnect, Signal: throttle.SignalReset}
		}
	}
	if strings.Contains(lower, "i/o timeout") || strings.Contains(lower, "timed out") {
		return Decision{Action: Reconnect, Signal: throttle.SignalTimeout}
	}
	return Decision{Action: Reconnect}
}

// decideReply decides on a server's status response.
func decideReply(ie *imap.Error) Decision {
	after, _ := ParseHint(ie.Text)
	d := Decision{After: after}
	switch ie.Code {
	case imap.ResponseCodeUnavailable, imap.ResponseCodeServerBug:
		d.Action, d.Signal = Retry, throttle.SignalUnavailable
	case imap.ResponseCodeLimit:
		d.Action, d.Signal = Retry, throttle.SignalLimit
	case imap.ResponseCodeInUse:
		d.Action, d.Signal = Retry, throttle.SignalInUse
	case imap.ResponseCodeAuthenticationFailed, imap.ResponseCodeAuthorizationFailed,
		imap.ResponseCodeExpired, imap.ResponseCodePrivacyRequired, imap.ResponseCodeContactAdmin,
		imap.ResponseCodeNoPerm, imap.ResponseCodeOverQuota:
		d.Action, d.Signal = FailMailbox, throttle.SignalFatal
	case imap.ResponseCodeTooBig, imap.ResponseCodeParse, imap.ResponseCodeCannot, imap.ResponseCodeNonExistent:
		d.Action, d.Signal = FailMessage, throttle.SignalFatal
	case imap.ResponseCodeTryCreate:
		d.Action = CreateRetry
	case imap.ResponseCodeAlreadyExists:
		d.Action = Exists
	}
	if d.Action != Continue {
		if ie.Type == imap.StatusResponseTypeBye && d.Retryable() {
			d.Action = Reconnect
		}
		return d
	}
	switch {
	case ie.Type == imap.StatusResponseTypeBye:
		d.Action, d.Signal = Reconnect, throttle.SignalBye
	case ie.Type == imap.StatusResponseTypeNo && (after > 0 || busyRe.MatchString(ie.Text)):
		d.Action, d.Signal = Retry, throttle.SignalTryLater
	case ie.Type == imap.StatusResponseTypeNo && existsRe.MatchString(ie.Text):
		d.Action = Exists
	default:
		d.Action = FailMessage
	}
	return d
}

var (
	hintRe = regexp.MustCompile(`(?i)\b(?:try\s+again|retry(?:[- ]?after:?)?|wait|back\s*off(?:\s+time)?:?)(?:\s+(?:in|after|for))?\s*(\d{1,9}(?:\.\d+)?)\s*(ms|msecs?|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?)?\b`)
	// busyRe: a code-less NO that says the server is busy; retried after a
	// backoff even without a delay.
	busyRe   = regexp.MustCompile(`(?i)\b(?:busy|throttl(?:ed|ing)|overload(?:ed)?|try\s+(?:again\s+)?later|temporar(?:y|ily)\s+(?:failure|unavailable|error)|too\s+many\s+(?:connections|commands|requests|sessions)|rate[\s-]?limit(?:ed)?)\b`)
	existsRe = regexp.MustCompile(`(?i)\balready\s+exists\b`)
)

// MaxHint bounds ParseHint's result, whatever the server wrote.
const MaxHint = 24 * time.Hour

// ParseHint finds a requested wait in a server's reply text, such as "try
// again in 30 seconds", "retry after 5s", "Retry-After: 2", "wait 2
// minutes" or "Suggested Backoff Time: 500 ms". A number without a unit is
// seconds. The result is at most MaxHint; the limiter's backoff caps it
// further.
func ParseHint(text string) (time.Duration, bool) {
	m := hintRe.FindStringSubmatch(text)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, false
	}
	unit := time.Second
	switch u := strings.ToLower(m[2]); {
	case u == "ms" || strings.HasPrefix(u, "msec") || strings.HasPrefix(u, "milli"):
		unit = time.Millisecond
	case u == "m" || strings.HasPrefix(u, "min"):
		unit = time.Minute
	case strings.HasPrefix(u, "h"):
		unit = time.Hour
	}
	d := v * float64(unit)
	if d > float64(MaxHint) {
		return MaxHint, true
	}
	return time.Duration(d), true
}

// IsConnectionLost reports whether err means the connection is gone (as
// opposed to a NO or BAD answer on a live connection): Decide says
// Reconnect.
func IsConnectionLost(err error) bool { return Decide(err).Action == Reconnect }
