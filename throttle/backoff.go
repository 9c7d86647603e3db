package throttle

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"
)

// Signal is what a failed command says about the server, as far as
// backing off is concerned.
type Signal int

const (
	// SignalNone: no signal; the error is not retried.
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
	// credentials, over quota, no permission, message too big).
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

// Verdict is what one failed command says about the server, as far as
// backing off is concerned. The IMAP layer decides it (throttle knows no
// IMAP): callers hand it over with Pause and Op.DoneAs, or errors carry it
// (Verdicter).
type Verdict struct {
	Signal Signal
	// After is the wait the server asked for ("try again in 30 seconds");
	// 0 when it named none.
	After time.Duration
}

// Retryable reports whether the error is worth a retry.
func (v Verdict) Retryable() bool { return v.Signal.Retryable() }

// Verdicter is an error that knows its Verdict. The IMAP layer's errors
// are Verdicters (mailferry/internal/imapconn.OpError); throttle reads
// them and never parses error text.
type Verdicter interface {
	ThrottleVerdict() Verdict
}

// VerdictOf is the Verdict of the first Verdicter in err's chain; an error
// with none, nil and a canceled context (our own stop) have the zero
// Verdict (SignalNone: not retried, not distress).
func VerdictOf(err error) Verdict {
	if err == nil || errors.Is(err, context.Canceled) {
		return Verdict{}
	}
	var v Verdicter
	if errors.As(err, &v) {
		return v.ThrottleVerdict()
	}
	return Verdict{}
}

// WithVerdict returns err carrying v (a Verdicter wrapping err), for
// callers that decided an error's meaning themselves. A nil err stays nil.
func WithVerdict(err error, v Verdict) error {
	if err == nil {
		return nil
	}
	return &verdictError{err: err, v: v}
}

type verdictError struct {
	err error
	v   Verdict
}

func (e *verdictError) Error() string            { return e.err.Error() }
func (e *verdictError) Unwrap() error            { return e.err }
func (e *verdictError) ThrottleVerdict() Verdict { return e.v }

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

// Retry runs fn until it returns nil, returns an error whose Verdict
// (VerdictOf) is not retryable (wrapped with ErrNotRetryable), or the budget runs out
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
		v := VerdictOf(err)
		if !v.Retryable() {
			return fmt.Errorf("%w (%v): %w", ErrNotRetryable, v.Signal, err)
		}
		if attempt >= b.perCommand || !b.Take() {
			return fmt.Errorf("%w after %d attempts: %w", ErrBudgetExhausted, attempt+1, err)
		}
		if err2 := l.Pause(ctx, attempt, v); err2 != nil {
			return fmt.Errorf("%w: %w", err2, err)
		}
	}
}

// Pause sleeps before retry number attempt (0 for the first) of a command
// whose failure said v, as Retry does: jittered exponential backoff, or the
// wait the server asked for (v.After), capped, with jitter. It counts the
// backoff in the stats, under v.Signal. It is for callers with their own
// retry loop; they take v from the IMAP layer's decision, so a backoff is
// counted on the limiter of the cluster that asked for it.
func (l *Limiter) Pause(ctx context.Context, attempt int, v Verdict) error {
	d := l.cfg.Backoff.Delay(attempt, v.After)
	l.mu.Lock()
	l.st.Backoffs++
	l.st.BackoffTime += d
	l.st.LastSignal = v.Signal
	l.mu.Unlock()
	return l.clock.Sleep(ctx, d)
}
