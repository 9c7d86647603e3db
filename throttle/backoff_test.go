package throttle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"
)

// throttle reads no error text: a Verdict comes from the error's chain
// (a Verdicter, such as the IMAP layer's errors) or from the caller.
func TestVerdictOf(t *testing.T) {
	busy := Verdict{Signal: SignalUnavailable, After: time.Second}
	for _, tc := range []struct {
		name string
		err  error
		want Verdict
	}{
		{"nil", nil, Verdict{}},
		{"plain error, even with busy text", errors.New("imap: NO [UNAVAILABLE] busy, try again in 1 seconds"), Verdict{}},
		{"reset without a verdict", io.EOF, Verdict{}},
		{"carried", WithVerdict(errors.New("x"), busy), busy},
		{"carried, wrapped", fmt.Errorf("fetch uid 3: %w", WithVerdict(errors.New("x"), busy)), busy},
		{"canceled wins", WithVerdict(context.Canceled, busy), Verdict{}},
		{"canceled, wrapped", fmt.Errorf("fetch: %w", context.Canceled), Verdict{}},
	} {
		if got := VerdictOf(tc.err); got != tc.want {
			t.Errorf("%s: VerdictOf(%v) = %+v; want %+v", tc.name, tc.err, got, tc.want)
		}
	}
	if WithVerdict(nil, busy) != nil {
		t.Error("WithVerdict(nil) is not nil")
	}
	inner := errors.New("inner")
	if e := WithVerdict(inner, busy); !errors.Is(e, inner) || e.Error() != "inner" {
		t.Errorf("WithVerdict hides its error: %v", e)
	}
}

func TestSignalRetryable(t *testing.T) {
	for s := SignalNone; s <= SignalFatal; s++ {
		want := s != SignalNone && s != SignalFatal
		if s.Retryable() != want {
			t.Errorf("%v.Retryable() = %v", s, s.Retryable())
		}
	}
	if got := Signal(99).String(); got != "signal(99)" {
		t.Errorf("unknown signal prints %q", got)
	}
}

func TestBackoffDelay(t *testing.T) {
	top := Backoff{Base: 100 * time.Millisecond, Max: time.Second, MaxHint: 10 * time.Second, Rand: func() float64 { return 0.999999 }}
	zero := top
	zero.Rand = func() float64 { return 0 }
	for attempt, want := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		want *= time.Millisecond
		if got := top.Delay(attempt, 0); got > want || got < want*99/100 {
			t.Errorf("attempt %d: top delay %v; want just under %v", attempt, got, want)
		}
		if got := zero.Delay(attempt, 0); got != 0 {
			t.Errorf("attempt %d: bottom of full jitter %v; want 0", attempt, got)
		}
	}
	if got := zero.Delay(0, 3*time.Second); got != 3*time.Second {
		t.Errorf("hint 3s: %v; want 3s", got)
	}
	if got := top.Delay(0, 3*time.Second); got < 3*time.Second || got >= 3*time.Second+100*time.Millisecond {
		t.Errorf("hint 3s with jitter: %v; want in [3s, 3.1s)", got)
	}
	if got := zero.Delay(0, time.Hour); got != 10*time.Second {
		t.Errorf("hint 1h: %v; want capped at 10s", got)
	}
	if got := (Backoff{}).Delay(1000, 0); got < 0 || got > DefaultBackoffMax {
		t.Errorf("defaults, attempt 1000: %v; want within [0, %v]", got, DefaultBackoffMax)
	}
}

func TestRetry(t *testing.T) {
	unavailable := WithVerdict(errors.New("imap: NO [UNAVAILABLE] Backend overloaded, try again in 1 seconds"),
		Verdict{Signal: SignalUnavailable, After: time.Second})
	l, clock := newTest(t, Config{Backoff: Backoff{Rand: func() float64 { return 0 }}})

	calls := 0
	err := l.Retry(context.Background(), nil, func(context.Context) error {
		if calls++; calls < 3 {
			return unavailable
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("two unavailable replies then success: err %v after %d calls", err, calls)
	}
	if slept, n := clock.Slept(); slept != 2*time.Second || n != 2 {
		t.Fatalf("slept %v in %d sleeps; want the server's 1s twice", slept, n)
	}
	if s := l.Snapshot(); s.Backoffs != 2 || s.BackoffTime != 2*time.Second || s.LastSignal != SignalUnavailable {
		t.Fatalf("stats: %d backoffs, %v, last %v", s.Backoffs, s.BackoffTime, s.LastSignal)
	}

	// Not retryable: one call, reported as such.
	calls = 0
	quota := WithVerdict(errors.New("imap: NO [OVERQUOTA] Quota exceeded"), Verdict{Signal: SignalFatal})
	err = l.Retry(context.Background(), nil, func(context.Context) error { calls++; return quota })
	if !errors.Is(err, ErrNotRetryable) || !errors.Is(err, quota) || calls != 1 {
		t.Fatalf("over quota: %v after %d calls; want ErrNotRetryable wrapping it, 1 call", err, calls)
	}

	// Per command budget.
	calls = 0
	reset := WithVerdict(io.EOF, Verdict{Signal: SignalReset})
	err = l.Retry(context.Background(), NewBudget(3, 100), func(context.Context) error { calls++; return reset })
	if !errors.Is(err, ErrBudgetExhausted) || !errors.Is(err, io.EOF) || calls != 4 {
		t.Fatalf("always reset, 3 retries per command: %v after %d calls; want budget exhausted after 4", err, calls)
	}

	// An error without a verdict is not retried, whatever its text says.
	calls = 0
	err = l.Retry(context.Background(), nil, func(context.Context) error {
		calls++
		return errors.New("imap: NO [UNAVAILABLE] busy")
	})
	if !errors.Is(err, ErrNotRetryable) || calls != 1 {
		t.Fatalf("always reset, 3 retries per command: %v after %d calls; want budget exhausted after 4", err, calls)
	}
}

func TestMailboxBudgetIsShared(t *testing.T) {
	l, _ := newTest(t, Config{})
	b := NewBudget(5, 3)
	fails := func(n int) func(context.Context) error {
		return func(context.Context) error {
			if n--; n >= 0 {
				return WithVerdict(io.ErrUnexpectedEOF, Verdict{Signal: SignalReset})
			}
			return nil
		}
	}
	if err := l.Retry(context.Background(), b, fails(2)); err != nil {
		t.Fatalf("first command, 2 retries of 3: %v", err)
	}
	if b.Left() != 1 {
		t.Fatalf("budget left %d; want 1", b.Left())
	}
	if err := l.Retry(context.Background(), b, fails(2)); !errors.Is(err, ErrBudgetExhausted) {
		t.Fatalf("second command needing 2 retries with 1 left: %v; want ErrBudgetExhausted", err)
	}
	if b.Left() != 0 {
		t.Fatalf("budget left %d; want 0", b.Left())
	}
}

func TestRetryStopsWithContext(t *testing.T) {
	l, _ := newTest(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	err := l.Retry(ctx, nil, func(context.Context) error {
		calls++
		cancel()
		return io.EOF
	})
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Fatalf("canceled during the first call: %v after %d calls", err, calls)
	}
}
