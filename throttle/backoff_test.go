package throttle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestParseHint(t *testing.T) {
	for _, tc := range []struct {
		text string
		want time.Duration
		ok   bool
	}{
		{"Backend overloaded, try again in 30 seconds", 30 * time.Second, true},
		{"NO [UNAVAILABLE] Try again in 1 seconds", time.Second, true},
		{"retry after 5s", 5 * time.Second, true},
		{"Retry-After: 7", 7 * time.Second, true},
		{"please wait 2 minutes", 2 * time.Minute, true},
		{"back off for 500ms", 500 * time.Millisecond, true},
		{"try again in 1.5 sec", 1500 * time.Millisecond, true},
		{"retry in 1 hour", time.Hour, true},
		{"retry in 99999999 hours", 24 * time.Hour, true},
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

func TestClassifyReply(t *testing.T) {
	for _, tc := range []struct {
		text  string
		want  Signal
		after time.Duration
	}{
		{"imap: NO [UNAVAILABLE] Backend overloaded, try again in 1 seconds", SignalUnavailable, time.Second},
		{"A12 NO [LIMIT] Too many concurrent connections", SignalLimit, 0},
		{"imap: NO [INUSE] Mailbox is locked", SignalInUse, 0},
		{"imap: NO [SERVERBUG] Internal error", SignalUnavailable, 0},
		{"* BYE Server shutting down", SignalBye, 0},
		{"imap: BYE Disconnected for inactivity", SignalBye, 0},
		{"* BYE [UNAVAILABLE] maintenance, retry after 60s", SignalUnavailable, time.Minute},
		{"imap: NO Server busy, try again in 30 seconds", SignalTryLater, 30 * time.Second},
		{"imap: NO [AUTHENTICATIONFAILED] Authentication failed", SignalFatal, 0},
		{"imap: NO [OVERQUOTA] Quota exceeded", SignalFatal, 0},
		{"imap: NO [TRYCREATE] Mailbox doesn't exist: Archive", SignalFatal, 0},
		{`append to "[Gmail]/Sent" on b2: imap: NO [UNAVAILABLE] busy`, SignalUnavailable, 0},
		{`select "[ARCHIVE] old": imap: NO [LIMIT] busy`, SignalLimit, 0},
		{"imap: NO Message too large", SignalNone, 0},
		{"imap: BAD Unknown command", SignalNone, 0},
		{"BYEBYE", SignalNone, 0},
	} {
		v := ClassifyReply(tc.text)
		if v.Signal != tc.want || v.After != tc.after {
			t.Errorf("ClassifyReply(%q) = %v after %v; want %v after %v", tc.text, v.Signal, v.After, tc.want, tc.after)
		}
	}
}

func TestClassify(t *testing.T) {
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	for _, tc := range []struct {
		err  error
		want Signal
	}{
		{nil, SignalNone},
		{context.Canceled, SignalNone},
		{fmt.Errorf("fetch: %w", context.Canceled), SignalNone},
		{fmt.Errorf("fetch: %w", context.DeadlineExceeded), SignalTimeout},
		{fmt.Errorf("read: %w", os.ErrDeadlineExceeded), SignalTimeout},
		{fmt.Errorf("fetch uid 3: %w", reset), SignalReset},
		{fmt.Errorf("append: %w", syscall.EPIPE), SignalReset},
		{io.EOF, SignalReset},
		{fmt.Errorf("fetch: %w", io.ErrUnexpectedEOF), SignalReset},
		{errors.New("imapclient: connection closed"), SignalReset},
		{errors.New("dial tcp 127.0.0.1:1: i/o timeout"), SignalTimeout},
		{errors.New("imap: NO [UNAVAILABLE] busy"), SignalUnavailable},
		{errors.New("imap: NO [NOPERM] denied"), SignalFatal},
		{errors.New("checksum mismatch"), SignalNone},
	} {
		if got := Classify(tc.err).Signal; got != tc.want {
			t.Errorf("Classify(%v) = %v; want %v", tc.err, got, tc.want)
		}
	}
	if SignalFatal.Retryable() || SignalNone.Retryable() || !SignalTimeout.Retryable() {
		t.Error("Retryable is wrong at the edges")
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
	unavailable := errors.New("imap: NO [UNAVAILABLE] Backend overloaded, try again in 1 seconds")
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
	quota := errors.New("imap: NO [OVERQUOTA] Quota exceeded")
	err = l.Retry(context.Background(), nil, func(context.Context) error { calls++; return quota })
	if !errors.Is(err, ErrNotRetryable) || !errors.Is(err, quota) || calls != 1 {
		t.Fatalf("over quota: %v after %d calls; want ErrNotRetryable wrapping it, 1 call", err, calls)
	}

	// Per command budget.
	calls = 0
	err = l.Retry(context.Background(), NewBudget(3, 100), func(context.Context) error { calls++; return io.EOF })
	if !errors.Is(err, ErrBudgetExhausted) || !errors.Is(err, io.EOF) || calls != 4 {
		t.Fatalf("always reset, 3 retries per command: %v after %d calls; want budget exhausted after 4", err, calls)
	}
}

func TestMailboxBudgetIsShared(t *testing.T) {
	l, _ := newTest(t, Config{})
	b := NewBudget(5, 3)
	fails := func(n int) func(context.Context) error {
		return func(context.Context) error {
			if n--; n >= 0 {
				return io.ErrUnexpectedEOF
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

func FuzzClassifyReply(f *testing.F) {
	for _, s := range []string{"try again in 30 seconds", "* BYE [UNAVAILABLE] x", "retry after 1e9h", "[LIMIT] wait 3 m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		v := ClassifyReply(text)
		if v.After < 0 || v.After > maxHint {
			t.Fatalf("ClassifyReply(%q).After = %v", text, v.After)
		}
		if v.Signal < SignalNone || v.Signal > SignalFatal {
			t.Fatalf("ClassifyReply(%q).Signal = %d", text, v.Signal)
		}
	})
}
