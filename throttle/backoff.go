package throttle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Signal is what a failed command says about the server, as far as
// backing off is concerned.
type Signal int

const (
	// SignalNone: nothing recognised; the error is not retried.
	SignalNone Signal = iota
	// SignalUnavailable: [UNAVAILABLE] (or [SERVERBUG]), a passing fault.
	SignalUnavailable
	// SignalLimit: [LIMIT], too many connections or commands.
	SignalLimit
	// SignalInUse: [INUSE], the mailbox is locked by someone else.
	SignalInUse
	// SignalBye: the server closed the session with BYE.
	SignalBye
	// SignalTryLater: a NO whose text asks to wait ("try again in 30 seconds").
	SignalTryLater
	// SignalReset: the connection was reset or closed under us.
	SignalReset
	// SignalTimeout: the command or connection timed out.
	SignalTimeout
	// SignalFatal: a response code that no retry can fix (wrong
	// credentials, over quota, no permission, message too big, TRYCREATE).
	SignalFatal
)

var signalNames = [...]string{"none", "unavailable", "limit", "inuse", "bye", "try-later", "reset", "timeout", "fatal"}

func (s Signal) String() string {
	if s < 0 || int(s) >= len(signalNames) {
		return "signal(" + strconv.Itoa(int(s)) + ")"
	}
	return signalNames[s]
}

// Retryable reports whether the signal is a passing condition worth a
// retry after a backoff. The retryable signals are also those that count
// as distress for the adaptive limit.
func (s Signal) Retryable() bool { return s >= SignalUnavailable && s <= SignalTimeout }

// Verdict is the classification of one error.
type Verdict struct {
	Signal Signal
	// After is the wait the server asked for ("try again in 30 seconds");
	// 0 when it named none.
	After time.Duration
}

// Retryable reports whether the error is worth a retry.
func (v Verdict) Retryable() bool { return v.Signal.Retryable() }

var fatalCodes = map[string]bool{
	"AUTHENTICATIONFAILED": true, "AUTHORIZATIONFAILED": true, "EXPIRED": true,
	"PRIVACYREQUIRED": true, "CONTACTADMIN": true, "NOPERM": true, "OVERQUOTA": true,
	"TOOBIG": true, "PARSE": true, "CANNOT": true, "TRYCREATE": true, "NONEXISTENT": true,
	"ALREADYEXISTS": true,
}

var (
	codeRe = regexp.MustCompile(`\[([A-Z][A-Z0-9.-]*)[\] ]`)
	byeRe  = regexp.MustCompile(`(?:^|[\s*:])BYE\b`)
	hintRe = regexp.MustCompile(`(?i)\b(?:try\s+again|retry(?:[- ]?after:?)?|wait|back\s*off)(?:\s+(?:in|after|for))?\s*(\d{1,9}(?:\.\d+)?)\s*(ms|msecs?|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?)?\b`)
)

// maxHint bounds ParseHint's result, whatever the server wrote.
const maxHint = 24 * time.Hour

// ParseHint finds a requested wait in a server's reply text, such as "try
// again in 30 seconds", "retry after 5s", "Retry-After: 2" or "wait 2
// minutes". A number without a unit is seconds. The result is at most
// 24 hours; Backoff caps it further.
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
	case u == "h" || strings.HasPrefix(u, "h"):
		unit = time.Hour
	}
	d := v * float64(unit)
	if d > float64(maxHint) {
		return maxHint, true
	}
	return time.Duration(d), true
}

// ClassifyReply classifies an IMAP server's reply text (a tagged NO or BAD,
// an untagged BYE, or an error message that quotes one). A response code
// decides first: [UNAVAILABLE], [SERVERBUG], [LIMIT] and [INUSE] are
// retryable, codes such as [AUTHENTICATIONFAILED], [OVERQUOTA] or
// [TRYCREATE] are fatal. Otherwise a BYE is retryable, and so is any reply
// that asks for a wait. A requested wait is returned in After whatever the
// signal.
func ClassifyReply(text string) Verdict {
	var v Verdict
	v.After, _ = ParseHint(text)
	for _, m := range codeRe.FindAllStringSubmatch(text, -1) {
		switch code := m[1]; {
		case code == "UNAVAILABLE" || code == "SERVERBUG":
			v.Signal = SignalUnavailable
		case code == "LIMIT":
			v.Signal = SignalLimit
		case code == "INUSE":
			v.Signal = SignalInUse
		case fatalCodes[code]:
			v.Signal = SignalFatal
		}
		if v.Signal != SignalNone {
			return v
		}
	}
	switch {
	case byeRe.MatchString(text):
		v.Signal = SignalBye
	case v.After > 0:
		v.Signal = SignalTryLater
	}
	return v
}

// Classify classifies an error of an IMAP command: a canceled context is
// SignalNone (our own stop, never retried); then the server's reply text
// decides (ClassifyReply); then timeouts (deadlines, net.Error.Timeout) and
// dropped connections (reset, broken pipe, EOF, closed) are retryable.
// Anything else is SignalNone.
func Classify(err error) Verdict {
	if err == nil || errors.Is(err, context.Canceled) {
		return Verdict{}
	}
	text := err.Error()
	if v := ClassifyReply(text); v.Signal != SignalNone {
		return v
	}
	// A net.Error says Timeout(); the interface keeps this package free
	// of net (it must stay linkable by the pure planner).
	var ne interface{ Timeout() bool }
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return Verdict{Signal: SignalTimeout}
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNABORTED),
		errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return Verdict{Signal: SignalReset}
	}
	lower := strings.ToLower(text)
	for _, s := range []string{"connection reset", "broken pipe", "connection closed", "use of closed network connection", "unexpected eof"} {
		if strings.Contains(lower, s) {
			return Verdict{Signal: SignalReset}
		}
	}
	if strings.Contains(lower, "timeout") || strings.Contains(lower, "timed out") {
		return Verdict{Signal: SignalTimeout}
	}
	return Verdict{}
}

// Backoff is jittered exponential backoff ("full jitter"): the delay before
// retry number attempt (from 0) is uniform in [0, min(Max, Base*2^attempt)).
// A wait the server asked for is honoured instead, capped at MaxHint, with
// up to Base of jitter added so that clients told the same do not return
// together. Zero fields take the defaults.
type Backoff struct {
	Base    time.Duration // default 250ms
	Max     time.Duration // default 30s
	MaxHint time.Duration // default 2m
	// Rand returns a number in [0, 1); nil means math/rand/v2.
	Rand func() float64
}

// Default backoff settings and retry budgets.
const (
	DefaultBackoffBase       = 250 * time.Millisecond
	DefaultBackoffMax        = 30 * time.Second
	DefaultBackoffMaxHint    = 2 * time.Minute
	DefaultRetriesPerCommand = 5
	DefaultRetriesPerMailbox = 50
)

// Delay is the wait before retry number attempt (0 for the first retry),
// given the server's requested wait hint (0 for none).
func (b Backoff) Delay(attempt int, hint time.Duration) time.Duration {
	base, ceil, maxHint := b.Base, b.Max, b.MaxHint
	if base <= 0 {
		base = DefaultBackoffBase
	}
	if ceil <= 0 {
		ceil = DefaultBackoffMax
	}
	if maxHint <= 0 {
		maxHint = DefaultBackoffMaxHint
	}
	random := b.Rand
	if random == nil {
		random = rand.Float64
	}
	if hint > 0 {
		return min(hint, maxHint) + time.Duration(random()*float64(base))
	}
	limit := float64(base) * math.Pow(2, float64(max(0, attempt)))
	limit = min(limit, float64(ceil))
	return time.Duration(random() * limit)
}

// Budget is the retry allowance of one mailbox: each command may be
// retried PerCommand times, and all commands of the mailbox together as
// many times as the mailbox allowance given to NewBudget. Safe for
// concurrent use.
type Budget struct {
	perCommand int

	mu   sync.Mutex
	left int
}

// NewBudget returns a mailbox's budget.
func NewBudget(perCommand, perMailbox int) *Budget {
	return &Budget{perCommand: max(0, perCommand), left: max(0, perMailbox)}
}

// Left is the number of retries the mailbox has left.
func (b *Budget) Left() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.left
}

// Take spends one retry of the mailbox's allowance, reporting false (and
// spending nothing) when none is left. Retry calls it; callers with their
// own retry loop call it before each retry.
func (b *Budget) Take() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.left == 0 {
		return false
	}
	b.left--
	return true
}

// Errors wrapped by Retry when it gives up; the command's last error stays
// reachable with errors.Is and errors.As.
var (
	ErrNotRetryable    = errors.New("not retryable")
	ErrBudgetExhausted = errors.New("retry budget exhausted")
)

// Retry runs fn until it returns nil, returns an error that Classify does
// not call retryable (wrapped with ErrNotRetryable), or the budget runs out
// (wrapped with ErrBudgetExhausted); between attempts it sleeps, on the
// Limiter's clock, as Config.Backoff says, and counts the backoff in the
// Limiter's stats. It holds no connection or slot while sleeping: fn takes
// what it needs (AcquireConn, Begin) on every attempt. fn must be safe to
// repeat: a write the server may already have done must be checked, not
// blindly redone. A nil budget allows DefaultRetriesPerCommand retries.
func (l *Limiter) Retry(ctx context.Context, b *Budget, fn func(ctx context.Context) error) error {
	if b == nil {
		b = NewBudget(DefaultRetriesPerCommand, DefaultRetriesPerCommand)
	}
	for attempt := 0; ; attempt++ {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w: %w", context.Cause(ctx), err)
		}
		v := Classify(err)
		if !v.Retryable() {
			return fmt.Errorf("%w (%v): %w", ErrNotRetryable, v.Signal, err)
		}
		if attempt >= b.perCommand || !b.Take() {
			return fmt.Errorf("%w after %d attempts: %w", ErrBudgetExhausted, attempt+1, err)
		}
		if err2 := l.Pause(ctx, attempt, err); err2 != nil {
			return fmt.Errorf("%w: %w", err2, err)
		}
	}
}

// Pause sleeps before retry number attempt (0 for the first) of a command
// that failed with err, as Retry does: jittered exponential backoff, or
// the wait the server asked for, capped. It counts the backoff in the
// stats. It is for callers with their own retry loop.
func (l *Limiter) Pause(ctx context.Context, attempt int, err error) error {
	v := Classify(err)
	d := l.cfg.Backoff.Delay(attempt, v.After)
	l.mu.Lock()
	l.st.Backoffs++
	l.st.BackoffTime += d
	l.st.LastSignal = v.Signal
	l.mu.Unlock()
	return l.clock.Sleep(ctx, d)
}
