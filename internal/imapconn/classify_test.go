package imapconn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"mailferry/throttle"
)

func no(code imap.ResponseCode, text string) *imap.Error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: text}
}

// timeoutErr is a net.Error that timed out.
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "read tcp 127.0.0.1:1->127.0.0.1:2: i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// Every error the copy meets maps to one decision: what to do next, the
// server's delay, the throttle signal and the side.
func TestDecide(t *testing.T) {
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	onSource := func(err error) error { return &OpError{Side: Source, Op: "fetch", Folder: "INBOX", UID: 7, Err: err} }
	onTarget := func(err error) error {
		return &OpError{Side: Target, Op: "append", Folder: "Archive/2019", UID: 4711, Err: err}
	}
	const (
		sec = time.Second
		ms  = time.Millisecond
	)
	for _, tc := range []struct {
		name   string
		err    error
		action Action
		after  time.Duration
		signal throttle.Signal
		side   Side
	}{
		{"nil", nil, Continue, 0, throttle.SignalNone, SideUnknown},

		// Typed response codes.
		{"UNAVAILABLE", no(imap.ResponseCodeUnavailable, "Backend overloaded"), Retry, 0, throttle.SignalUnavailable, SideUnknown},
		{"UNAVAILABLE with delay", onSource(no(imap.ResponseCodeUnavailable, "Backend overloaded, try again in 1 seconds")), Retry, sec, throttle.SignalUnavailable, Source},
		{"INUSE", no(imap.ResponseCodeInUse, "Mailbox is locked"), Retry, 0, throttle.SignalInUse, SideUnknown},
		{"LIMIT", onTarget(no(imap.ResponseCodeLimit, "Too many connections, retry after 5s")), Retry, 5 * sec, throttle.SignalLimit, Target},
		{"SERVERBUG", no(imap.ResponseCodeServerBug, "Internal error occurred"), Retry, 0, throttle.SignalUnavailable, SideUnknown},
		{"OVERQUOTA", onTarget(no(imap.ResponseCodeOverQuota, "Quota exceeded (mailbox for user is full)")), FailMailbox, 0, throttle.SignalFatal, Target},
		{"TOOBIG", onTarget(no(imap.ResponseCodeTooBig, "Message too large")), FailMessage, 0, throttle.SignalFatal, Target},
		{"PARSE", no(imap.ResponseCodeParse, "Invalid message"), FailMessage, 0, throttle.SignalFatal, SideUnknown},
		{"CANNOT", no(imap.ResponseCodeCannot, "Invalid mailbox name"), FailMessage, 0, throttle.SignalFatal, SideUnknown},
		{"TRYCREATE", onTarget(no(imap.ResponseCodeTryCreate, "Mailbox doesn't exist: Archive/2019")), CreateRetry, 0, throttle.SignalNone, Target},
		{"ALREADYEXISTS", no(imap.ResponseCodeAlreadyExists, "Mailbox already exists"), Exists, 0, throttle.SignalNone, SideUnknown},
		{"NONEXISTENT", onSource(no(imap.ResponseCodeNonExistent, "Mailbox doesn't exist: Old")), FailMessage, 0, throttle.SignalFatal, Source},
		{"AUTHENTICATIONFAILED", no(imap.ResponseCodeAuthenticationFailed, "Authentication failed."), FailMailbox, 0, throttle.SignalFatal, SideUnknown},
		{"NOPERM", no(imap.ResponseCodeNoPerm, "Permission denied"), FailMailbox, 0, throttle.SignalFatal, SideUnknown},
		{"fatal code wins over a delay in the text", no(imap.ResponseCodeOverQuota, "full, try again in 10 seconds"), FailMailbox, 10 * sec, throttle.SignalFatal, SideUnknown},

		// BYE.
		{"BYE", &imap.Error{Type: imap.StatusResponseTypeBye, Text: "Server shutting down."}, Reconnect, 0, throttle.SignalBye, SideUnknown},
		{"BYE UNAVAILABLE with delay", &imap.Error{Type: imap.StatusResponseTypeBye, Code: imap.ResponseCodeUnavailable, Text: "maintenance, retry after 60s"}, Reconnect, time.Minute, throttle.SignalUnavailable, SideUnknown},

		// Code-less NO and BAD.
		{"code-less busy NO with delay", onSource(no("", "Server busy, try again in 2 seconds")), Retry, 2 * sec, throttle.SignalTryLater, Source},
		{"code-less busy NO with delay, target", onTarget(no("", "Server busy, try again in 1 seconds")), Retry, sec, throttle.SignalTryLater, Target},
		{"code-less busy NO without delay", no("", "Server busy"), Retry, 0, throttle.SignalTryLater, SideUnknown},
		{"code-less throttled NO, backoff in ms", no("", "Request is throttled. Suggested Backoff Time: 500 ms"), Retry, 500 * ms, throttle.SignalTryLater, SideUnknown},
		{"code-less try later", no("", "Too many commands, try later"), Retry, 0, throttle.SignalTryLater, SideUnknown},
		{"code-less NO, an unknown code, delay", no("ALERT", "Overloaded: wait 3 m"), Retry, 3 * time.Minute, throttle.SignalTryLater, SideUnknown},
		{"code-less NO, no delay, not busy", no("", "Message too large"), FailMessage, 0, throttle.SignalNone, SideUnknown},
		{"code-less NO, a number that is no delay", no("", "Mailbox has 30 messages"), FailMessage, 0, throttle.SignalNone, SideUnknown},
		{"code-less already exists", no("", "Mailbox already exists"), Exists, 0, throttle.SignalNone, SideUnknown},
		{"BAD", &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Error in IMAP command APPEND: Invalid arguments."}, FailMessage, 0, throttle.SignalNone, SideUnknown},
		{"BAD asking for a delay is no busy NO", &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Unknown command, try again in 1 seconds"}, FailMessage, sec, throttle.SignalNone, SideUnknown},

		// A literal refused before it was sent: go-imap's literal writer
		// fails with the server's tagged reply.
		{"refused literal, too big", onTarget(fmt.Errorf("write literal: %w", no(imap.ResponseCodeTooBig, "Message size exceeds limit"))), FailMessage, 0, throttle.SignalFatal, Target},
		{"refused literal, busy", onTarget(fmt.Errorf("write literal: %w", no("", "Server busy, try again in 1 seconds"))), Retry, sec, throttle.SignalTryLater, Target},
		{"refused literal, connection closed after", onTarget(errors.New("imapclient: connection closed")), Reconnect, 0, throttle.SignalReset, Target},

		// Transport.
		{"io.EOF", io.EOF, Reconnect, 0, throttle.SignalReset, SideUnknown},
		{"unexpected EOF, wrapped", onSource(fmt.Errorf("read literal: %w", io.ErrUnexpectedEOF)), Reconnect, 0, throttle.SignalReset, Source},
		{"connection reset", onTarget(reset), Reconnect, 0, throttle.SignalReset, Target},
		{"broken pipe", fmt.Errorf("append: %w", syscall.EPIPE), Reconnect, 0, throttle.SignalReset, SideUnknown},
		{"closed", fmt.Errorf("write: %w", net.ErrClosed), Reconnect, 0, throttle.SignalReset, SideUnknown},
		{"net timeout", onSource(timeoutErr{}), Reconnect, 0, throttle.SignalTimeout, Source},
		{"deadline", fmt.Errorf("read: %w", os.ErrDeadlineExceeded), Reconnect, 0, throttle.SignalTimeout, SideUnknown},
		{"timeout in text", errors.New("dial tcp 127.0.0.1:1: i/o timeout"), Reconnect, 0, throttle.SignalTimeout, SideUnknown},
		{"unknown error", errors.New("spool message: no space left"), Reconnect, 0, throttle.SignalNone, SideUnknown},

		// Stop.
		{"canceled", onSource(fmt.Errorf("fetch: %w", context.Canceled)), Stop, 0, throttle.SignalNone, Source},
		{"context deadline", context.DeadlineExceeded, Stop, 0, throttle.SignalNone, SideUnknown},
		{"state store gone", fmt.Errorf("record folder INBOX: %w: %w", ErrStopRun, errors.New("database is closed")), Stop, 0, throttle.SignalNone, SideUnknown},

		// Logins.
		{"wrong password", &AuthError{Side: "target", Err: no(imap.ResponseCodeAuthenticationFailed, "Authentication failed.")}, FailMailbox, 0, throttle.SignalFatal, Target},
		{"code-less refused login", &AuthError{Side: "source", Err: no("", "Login failed")}, FailMailbox, 0, throttle.SignalFatal, Source},
		{"busy login", &AuthError{Side: "source", Err: no(imap.ResponseCodeUnavailable, "Temporary authentication failure.")}, Reconnect, 0, throttle.SignalUnavailable, Source},
		{"login side named otherwise", &AuthError{Side: "cluster b2", Err: no(imap.ResponseCodeAuthenticationFailed, "no")}, FailMailbox, 0, throttle.SignalFatal, SideUnknown},

		// Sides through joins and outer wrapping.
		{"joined, target second", errors.Join(errors.New("x"), onTarget(io.EOF)), Reconnect, 0, throttle.SignalReset, Target},
		{"wrapped twice", fmt.Errorf("copy: %w", onTarget(no(imap.ResponseCodeLimit, "x"))), Retry, 0, throttle.SignalLimit, Target},
	} {
		got := Decide(tc.err)
		want := Decision{Action: tc.action, After: tc.after, Signal: tc.signal, Side: tc.side}
		if got != want {
			t.Errorf("%s: Decide(%v) = %+v; want %+v", tc.name, tc.err, got, want)
		}
		if v := got.Verdict(); v.Signal != tc.signal || v.After != tc.after {
			t.Errorf("%s: Verdict() = %+v", tc.name, v)
		}
		if tc.err != nil {
			// An OpError carries the same verdict to the throttle.
			if v := throttle.VerdictOf(&OpError{Side: Target, Op: "x", Err: tc.err}); v != got.Verdict() && tc.action != Stop {
				t.Errorf("%s: the throttle reads %+v from an OpError; Decide says %+v", tc.name, v, got.Verdict())
			}
		}
	}
}

func TestParseHint(t *testing.T) {
	for _, tc := range []struct {
		text string
		want time.Duration
		ok   bool
	}{
		{"Backend overloaded, try again in 30 seconds", 30 * time.Second, true},
		{"NO [UNAVAILABLE] Try again in 1 seconds", time.Second, true},
		{"Server busy, try again in 2 seconds", 2 * time.Second, true},
		{"Request is throttled. Suggested Backoff Time: 500 ms", 500 * time.Millisecond, true},
		{"Suggested backoff time: 3", 3 * time.Second, true},
		{"retry after 5s", 5 * time.Second, true},
		{"Retry-After: 7", 7 * time.Second, true},
		{"please wait 2 minutes", 2 * time.Minute, true},
		{"back off for 500ms", 500 * time.Millisecond, true},
		{"try again in 1.5 sec", 1500 * time.Millisecond, true},
		{"retry in 1 hour", time.Hour, true},
		{"retry in 99999999 hours", MaxHint, true},
		{"try again later", 0, false},
		{"Mailbox has 30 messages", 0, false},
		{"", 0, false},
	} {
		got, ok := ParseHint(tc.text)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseHint(%q) = %v, %v; want %v, %v", tc.text, got, ok, tc.want, tc.ok)
		}
	}
}

func TestOpErrorMessage(t *testing.T) {
	inner := no(imap.ResponseCodeOverQuota, "Quota exceeded")
	for _, tc := range []struct {
		err  *OpError
		want string
	}{
		{&OpError{Side: Target, Op: "append", Folder: "Archive/2019", UID: 4711, Err: inner}, `append uid 4711 to "Archive/2019" on the target: ` + inner.Error()},
		{&OpError{Side: Source, Op: "fetch", Folder: "INBOX", Err: io.EOF}, `fetch from "INBOX" on the source: EOF`},
		{&OpError{Side: Source, Op: "examine", Folder: `a "b"`, Err: io.EOF}, `examine "a \"b\"" on the source: EOF`},
		{&OpError{Op: "login", Err: io.EOF}, `login: EOF`},
		{&OpError{Side: Target, Op: "select"}, `select on the target: failed`},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("message %q; want %q", got, tc.want)
		}
	}
	e := &OpError{Side: Target, Op: "append", Err: inner}
	var ie *imap.Error
	if !errors.As(fmt.Errorf("x: %w", e), &ie) || ie != inner {
		t.Error("OpError hides the server's reply from errors.As")
	}
	if Wrap(Source, "select", "INBOX", nil) != nil {
		t.Error("Wrap(nil) is not nil")
	}
	if d := Decide(Wrap(Target, "select", "INBOX", no("", "Server busy, try again in 1 seconds"))); d.Side != Target || d.Action != Retry {
		t.Errorf("Wrap: %+v", d)
	}
}

func TestIsConnectionLost(t *testing.T) {
	if !IsConnectionLost(io.EOF) || !IsConnectionLost(&imap.Error{Type: imap.StatusResponseTypeBye}) {
		t.Error("EOF or BYE is not a lost connection")
	}
	if IsConnectionLost(no(imap.ResponseCodeUnavailable, "busy")) || IsConnectionLost(context.Canceled) {
		t.Error("a NO or a cancellation counts as a lost connection")
	}
}

// The text-parsing parts never panic, never return a negative or unbounded
// delay, and a code-less NO is retried exactly when the text names a delay
// or says the server is busy.
func FuzzDecideReply(f *testing.F) {
	for _, s := range []string{
		"Server busy, try again in 2 seconds", "Request is throttled. Suggested Backoff Time: 500 ms",
		"retry after 1e9h", "[LIMIT] wait 3 m", "try again in 99999999999 hours", "Mailbox already exists",
		"wait 0.000000001 ms", "Retry-After: 7", "back off", "",
	} {
		f.Add(s, uint8(0))
	}
	types := []imap.StatusResponseType{imap.StatusResponseTypeNo, imap.StatusResponseTypeBad, imap.StatusResponseTypeBye}
	f.Fuzz(func(t *testing.T, text string, typ uint8) {
		hint, ok := ParseHint(text)
		if hint < 0 || hint > MaxHint || (!ok && hint != 0) {
			t.Fatalf("ParseHint(%q) = %v, %v", text, hint, ok)
		}
		ie := &imap.Error{Type: types[int(typ)%len(types)], Text: text}
		d := Decide(ie)
		if d.After != hint {
			t.Fatalf("Decide(%q).After = %v; ParseHint says %v", text, d.After, hint)
		}
		if d.Action < Retry || d.Action > Stop || d.Signal < throttle.SignalNone || d.Signal > throttle.SignalFatal || d.Side != SideUnknown {
			t.Fatalf("Decide(%q) = %+v", text, d)
		}
		busy := ie.Type == imap.StatusResponseTypeNo && (hint > 0 || busyRe.MatchString(text))
		if (d.Action == Retry) != busy {
			t.Fatalf("Decide(%v %q) = %v; busy %v", ie.Type, text, d.Action, busy)
		}
		if ie.Type == imap.StatusResponseTypeBye && d.Action != Reconnect {
			t.Fatalf("BYE %q: %v", text, d.Action)
		}
		if strings.TrimSpace(text) == "" && d.Action == Retry {
			t.Fatalf("an empty NO is retried")
		}
	})
}
