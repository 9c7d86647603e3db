package throttle

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"mailferry/internal/testrig/fakeclock"
)

var epoch = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func newTest(t *testing.T, cfg Config) (*Limiter, *fakeclock.Clock) {
	t.Helper()
	clock := fakeclock.New(epoch)
	l, err := New("src", cfg, WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	return l, clock
}

// drive runs rounds of commands for d of fake time: each round starts as
// many commands as the limit allows (so the limit is always reached), lets
// latency pass and ends them with outcome(i). It checks the limit's bounds
// after every round and returns the lowest and highest limit seen.
func drive(t *testing.T, l *Limiter, clock *fakeclock.Clock, d, latency time.Duration, outcome func(i int) error) (lo, hi int) {
	t.Helper()
	lo, hi = 1<<30, 0
	for end := clock.Now().Add(d); clock.Now().Before(end); {
		s := l.Snapshot()
		ops := make([]*Op, s.Limit)
		for i := range ops {
			op, err := l.Begin(context.Background())
			if err != nil {
				t.Fatalf("begin %d of %d: %v", i, s.Limit, err)
			}
			ops[i] = op
		}
		clock.Advance(latency)
		for i, op := range ops {
			var err error
			if outcome != nil {
				err = outcome(i)
			}
			op.Done(err)
		}
		s = l.Snapshot()
		if s.Limit < 1 || s.Limit > s.Cap {
			t.Fatalf("limit %d outside [1, %d]", s.Limit, s.Cap)
		}
		if s.InFlight != 0 {
			t.Fatalf("in flight %d after all ops are done", s.InFlight)
		}
		lo, hi = min(lo, s.Limit), max(hi, s.Limit)
	}
	return lo, hi
}

func TestLimitFallsWithLatencyAndRecovers(t *testing.T) {
	l, clock := newTest(t, Config{MaxConnections: 16})
	drive(t, l, clock, 5*time.Second, 10*time.Millisecond, nil)
	s := l.Snapshot()
	if s.Limit != 16 || s.Decreases != 0 {
		t.Fatalf("healthy: limit %d, %d decreases; want 16, 0", s.Limit, s.Decreases)
	}
	if s.Baseline != 10*time.Millisecond || s.Latency != 10*time.Millisecond {
		t.Fatalf("healthy: baseline %v, latency %v; want 10ms both", s.Baseline, s.Latency)
	}

	// +200ms: the limit falls within a few intervals and bottoms out at 1.
	drive(t, l, clock, 3*time.Second, 210*time.Millisecond, nil)
	s = l.Snapshot()
	if s.Limit > 16*7/10*7/10 || s.Decreases < 2 {
		t.Fatalf("after 3s of +200ms: limit %d, %d decreases; want <= 7 and >= 2", s.Limit, s.Decreases)
	}
	lo, _ := drive(t, l, clock, 20*time.Second, 210*time.Millisecond, nil)
	s = l.Snapshot()
	if lo != 1 || s.Limit != 1 {
		t.Fatalf("after 20s more of +200ms: limit %d (lowest %d); want 1", s.Limit, lo)
	}
	if s.Baseline > 20*time.Millisecond {
		t.Fatalf("baseline followed the degradation up to %v", s.Baseline)
	}
	if s.Latency < 200*time.Millisecond {
		t.Fatalf("smoothed latency %v; want about 210ms", s.Latency)
	}

	// Latency gone: the limit grows back one step per interval, to the cap
	// and not beyond.
	before := s.Increases
	_, hi := drive(t, l, clock, 60*time.Second, 10*time.Millisecond, nil)
	s = l.Snapshot()
	if s.Limit != 16 || hi != 16 {
		t.Fatalf("after recovery: limit %d (highest %d); want 16", s.Limit, hi)
	}
	if grown := s.Increases - before; grown != 15 {
		t.Fatalf("grew %d times from 1 to 16; want 15 additive steps", grown)
	}
}

func TestMaxLatencyIsACeiling(t *testing.T) {
	// Steadily slow from the start: the baseline learns 300ms, so only the
	// absolute ceiling can shrink the limit.
	l, clock := newTest(t, Config{MaxConnections: 8, MaxLatency: 100 * time.Millisecond})
	drive(t, l, clock, 10*time.Second, 300*time.Millisecond, nil)
	if s := l.Snapshot(); s.Limit != 1 {
		t.Fatalf("limit %d with latency 300ms over a 100ms ceiling; want 1", s.Limit)
	}
	l2, clock2 := newTest(t, Config{MaxConnections: 8})
	drive(t, l2, clock2, 10*time.Second, 300*time.Millisecond, nil)
	if s := l2.Snapshot(); s.Limit != 8 {
		t.Fatalf("limit %d with steady latency and no ceiling; want 8", s.Limit)
	}
}

func TestDegradedStartsLower(t *testing.T) {
	for _, tc := range []struct{ cap, want int }{{16, 4}, {8, 2}, {3, 1}, {1, 1}} {
		l, _ := newTest(t, Config{MaxConnections: tc.cap, Degraded: true})
		if s := l.Snapshot(); s.Limit != tc.want || s.Cap != tc.cap {
			t.Errorf("degraded cap %d: limit %d, cap %d; want %d, %d", tc.cap, s.Limit, s.Cap, tc.want, tc.cap)
		}
	}
	l, clock := newTest(t, Config{MaxConnections: 8, Degraded: true})
	drive(t, l, clock, 20*time.Second, 10*time.Millisecond, nil)
	if s := l.Snapshot(); s.Limit != 8 {
		t.Fatalf("degraded but healthy for 20s: limit %d; want 8", s.Limit)
	}
	if s, _ := newTest(t, Config{}); s.Snapshot().Limit != DefaultMaxConnections {
		t.Fatalf("zero config: limit %d; want %d", s.Snapshot().Limit, DefaultMaxConnections)
	}
}

func TestDistressErrorsShrink(t *testing.T) {
	unavailable := WithVerdict(errors.New("fetch uid 7: imap: NO [UNAVAILABLE] Backend overloaded"), Verdict{Signal: SignalUnavailable})
	l, clock := newTest(t, Config{MaxConnections: 10})
	drive(t, l, clock, 5*time.Second, 10*time.Millisecond, nil)
	drive(t, l, clock, 5*time.Second, 10*time.Millisecond, func(i int) error {
		if i%2 == 0 {
			return unavailable
		}
		return nil
	})
	s := l.Snapshot()
	if s.Limit >= 10 || s.Decreases == 0 || s.Distress == 0 {
		t.Fatalf("half the commands unavailable: limit %d, %d decreases, %d distress; want a smaller limit", s.Limit, s.Decreases, s.Distress)
	}

	// Errors from a responsive server (no overload signal) are not distress.
	l2, clock2 := newTest(t, Config{MaxConnections: 10})
	drive(t, l2, clock2, 10*time.Second, 10*time.Millisecond, func(i int) error {
		return WithVerdict(errors.New("imap: NO [TRYCREATE] no such folder"), Verdict{Signal: SignalFatal})
	})
	if s := l2.Snapshot(); s.Limit != 10 || s.Errors == 0 || s.Distress != 0 {
		t.Fatalf("fatal-but-prompt errors: limit %d, errors %d, distress %d; want 10, >0, 0", s.Limit, s.Errors, s.Distress)
	}
}

func TestUnusedLimitDoesNotGrow(t *testing.T) {
	l, clock := newTest(t, Config{MaxConnections: 8, Degraded: true}) // starts at 2
	for range 200 {                                                   // one command at a time for 20s
		op, err := l.Begin(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		clock.Advance(100 * time.Millisecond)
		op.Done(nil)
	}
	if s := l.Snapshot(); s.Limit != 2 {
		t.Fatalf("limit %d after 20s never using more than 1 slot; want it to stay 2", s.Limit)
	}
}

func TestLimitStaysInBoundsUnderRandomLoad(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, capacity := range []int{1, 2, 5, 32} {
		l, clock := newTest(t, Config{MaxConnections: capacity, MaxLatency: 400 * time.Millisecond})
		for range 40 {
			lat := time.Duration(r.IntN(1000)) * time.Millisecond
			failRate := r.Float64() * 0.5
			drive(t, l, clock, 2*time.Second, lat+time.Millisecond, func(int) error {
				if r.Float64() < failRate {
					return WithVerdict(errors.New("read: connection reset by peer"), Verdict{Signal: SignalReset})
				}
				return nil
			})
		}
	}
}

func TestBeginWaitsForASlot(t *testing.T) {
	l, _ := newTest(t, Config{MaxConnections: 2})
	a, _ := l.Begin(context.Background())
	b, _ := l.Begin(context.Background())

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Begin(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("begin over the limit with a canceled context: %v; want context.Canceled", err)
	}

	got := make(chan *Op)
	go func() {
		op, err := l.Begin(context.Background())
		if err != nil {
			t.Error(err)
		}
		got <- op
	}()
	waitFor(t, "the third Begin to wait", func() bool { return l.Snapshot().SlotWaits == 2 })
	a.Done(nil)
	a.Done(nil) // a second Done must not free a second slot
	var c *Op
	select {
	case c = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("begin still waiting after a slot was freed")
	}
	s := l.Snapshot()
	if s.InFlight != 2 || s.SlotWaits != 2 || s.Commands != 1 {
		t.Fatalf("in flight %d, slot waits %d, commands %d; want 2, 2, 1", s.InFlight, s.SlotWaits, s.Commands)
	}
	b.Done(context.Canceled)
	c.Done(nil)
	if s := l.Snapshot(); s.InFlight != 0 || s.Commands != 2 {
		t.Fatalf("in flight %d, commands %d; want 0, 2 (a cancellation is not a command outcome)", s.InFlight, s.Commands)
	}
}

func TestAcquireConnCaps(t *testing.T) {
	l, _ := newTest(t, Config{MaxConnections: 2})
	r1, err := l.AcquireConn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r2, _ := l.AcquireConn(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if _, err := l.AcquireConn(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("third connection under a cap of 2: %v; want a deadline error", err)
	}
	if s := l.Snapshot(); s.Conns != 2 || s.ConnWaits != 1 {
		t.Fatalf("conns %d, waits %d; want 2, 1", s.Conns, s.ConnWaits)
	}
	r1()
	r1() // released once only: the cap must still be 2
	r3, err := l.AcquireConn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel2()
	if _, err := l.AcquireConn(ctx2); err == nil {
		t.Fatal("a double release raised the cap")
	}
	r2()
	r3()
	if s := l.Snapshot(); s.Conns != 0 {
		t.Fatalf("conns %d after releasing all; want 0", s.Conns)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, cfg := range []Config{{MaxConnections: -1}, {BytesPerSecond: -5}, {MessagesPerSecond: -1}, {MaxLatency: -time.Second}} {
		if _, err := New("b2", cfg); err == nil {
			t.Errorf("New accepted %+v", cfg)
		}
	}
}

// waitFor polls cond until it holds, failing the test after 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// A long transfer ended with DoneUntimed adds no latency sample; the
// latencies its caller Observes drive the limit instead.
func TestObserveAndDoneUntimed(t *testing.T) {
	l, clock := newTest(t, Config{MaxConnections: 8})
	healthy := func() {
		for i := 0; i < 20; i++ {
			for j := 0; j < 8; j++ {
				l.Observe(5 * time.Millisecond)
			}
			clock.Advance(time.Second)
		}
	}
	healthy()
	// Slow transfers, held in slots and ended untimed: no shrink.
	for i := 0; i < 10; i++ {
		ops := make([]*Op, 8)
		for j := range ops {
			op, err := l.Begin(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			ops[j] = op
		}
		clock.Advance(2 * time.Second)
		for _, op := range ops {
			l.Observe(5 * time.Millisecond)
			op.DoneUntimed(nil)
		}
	}
	if s := l.Snapshot(); s.Limit != 8 {
		t.Fatalf("untimed 2 s transfers shrank the limit to %d", s.Limit)
	}
	// The observed per-message wait rises 40x: the limit falls.
	for i := 0; i < 10; i++ {
		ops := make([]*Op, l.Snapshot().Limit)
		for j := range ops {
			ops[j], _ = l.Begin(context.Background())
		}
		for range 8 {
			l.Observe(200 * time.Millisecond)
		}
		clock.Advance(time.Second)
		for _, op := range ops {
			op.DoneUntimed(nil)
		}
	}
	if s := l.Snapshot(); s.Limit >= 8 {
		t.Fatalf("observed latency 40x the baseline left the limit at %d", s.Limit)
	}
}

// Pause waits as Retry would, honouring the server's hint, and counts it.
func TestPause(t *testing.T) {
	l, clock := newTest(t, Config{Backoff: Backoff{Base: time.Millisecond, Max: time.Second, MaxHint: time.Minute}})
	before := clock.Now()
	if err := l.Pause(context.Background(), 0, Verdict{Signal: SignalUnavailable, After: 7 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if waited := clock.Now().Sub(before); waited < 7*time.Second || waited > 7*time.Second+time.Millisecond {
		t.Errorf("paused %v, want the server's 7 s (plus at most the base as jitter)", waited)
	}
	if s := l.Snapshot(); s.Backoffs != 1 || s.LastSignal != SignalUnavailable {
		t.Errorf("stats after a pause: %d backoffs, last signal %v", s.Backoffs, s.LastSignal)
	}
}

// Loopback-fast commands that get 50 times slower but stay far below any
// latency that matters do not shrink the limit.
func TestTinyLatencyRiseIsNoise(t *testing.T) {
	l, clock := newTest(t, Config{MaxConnections: 8})
	drive(t, l, clock, 20*time.Second, 100*time.Microsecond, nil)
	if lo, _ := drive(t, l, clock, 20*time.Second, 5*time.Millisecond, nil); lo != 8 {
		t.Fatalf("a rise from 0.1 ms to 5 ms shrank the limit to %d", lo)
	}
	if lo, _ := drive(t, l, clock, 20*time.Second, 100*time.Millisecond, nil); lo == 8 {
		t.Fatal("a rise to 100 ms did not shrink the limit")
	}
}

// The caller's Verdict decides distress (DoneAs); the error's text never
// does.
func TestDoneAsTakesTheCallersVerdict(t *testing.T) {
	l, _ := newTest(t, Config{MaxConnections: 4})
	busyText := errors.New("imap: NO [UNAVAILABLE] busy, try again in 1 seconds")
	for _, end := range []func(*Op){
		func(op *Op) { op.Done(busyText) },
		func(op *Op) { op.DoneAs(busyText, Verdict{Signal: SignalUnavailable}) },
		func(op *Op) { op.DoneUntimedAs(busyText, Verdict{Signal: SignalTryLater, After: time.Second}) },
		func(op *Op) { op.DoneAs(busyText, Verdict{Signal: SignalFatal}) },
		func(op *Op) { op.DoneUntimed(WithVerdict(busyText, Verdict{Signal: SignalReset})) },
	} {
		op, err := l.Begin(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		end(op)
	}
	if s := l.Snapshot(); s.Errors != 5 || s.Distress != 3 {
		t.Fatalf("%d errors, %d distress; want 5 errors, 3 of them distress (the verdicts, not the text)", s.Errors, s.Distress)
	}
}

// A healthy target that stores big APPENDs: its short commands take 2 ms,
// an APPEND of 8 MiB is answered 160 ms after its last byte (20 ms per
// MiB). Judged by kind, and appends per MiB, that is no distress; when the
// appends slow down per MiB, it is.
func TestBigAppendsAreNotDistress(t *testing.T) {
	l, clock := newTest(t, Config{MaxConnections: 8})
	drive(t, l, clock, 5*time.Second, 2*time.Millisecond, nil) // baselines of short commands
	appends := func(d time.Duration, each time.Duration) {
		for end := clock.Now().Add(d); clock.Now().Before(end); {
			drive(t, l, clock, 10*time.Millisecond, 2*time.Millisecond, nil)
			clock.Advance(each)
			l.ObserveAppend(each, 8<<20)
		}
	}
	appends(10*time.Second, 160*time.Millisecond)
	if s := l.Snapshot(); s.Decreases != 0 || s.Limit != 8 {
		t.Fatalf("healthy big appends: limit %d of 8 after %d decreases (latency %v, baseline %v)", s.Limit, s.Decreases, s.Latency, s.Baseline)
	}
	// The same appends, ten times slower per byte: the server struggles.
	appends(5*time.Second, 1600*time.Millisecond)
	if s := l.Snapshot(); s.Decreases == 0 {
		t.Fatalf("appends 10x slower per MiB left the limit at %d (latency %v, baseline %v)", s.Limit, s.Latency, s.Baseline)
	}
}
