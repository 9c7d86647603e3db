package throttle

import (
	"context"
	"testing"
	"time"

	"mailferry/internal/testrig/fakeclock"
)

// The limiter adds up how long work waited for a connection place, a
// command slot and a time window, on its clock.
func TestWaitTimes(t *testing.T) {
	ctx := context.Background()
	clock := fakeclock.New(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
	ws, err := ParseWindows("13:00-14:00")
	if err != nil {
		t.Fatal(err)
	}
	l, err := New("c", Config{MaxConnections: 1}, WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}

	release, err := l.AcquireConn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		rel, err := l.AcquireConn(ctx)
		if err == nil {
			rel()
		}
		got <- err
	}()
	waitFor(t, "the second AcquireConn waits", func() bool { return l.Snapshot().ConnWaits == 1 })
	clock.Advance(3 * time.Second)
	release()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if s := l.Snapshot(); s.ConnWaited != 3*time.Second {
		t.Errorf("ConnWaited = %v, want 3s", s.ConnWaited)
	}

	op, err := l.Begin(ctx) // the limit is 1: the next Begin waits
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		op2, err := l.Begin(ctx)
		if err == nil {
			op2.Done(nil)
		}
		got <- err
	}()
	waitFor(t, "the second Begin waits", func() bool { return l.Snapshot().SlotWaits == 1 })
	clock.Advance(2 * time.Second)
	op.Done(nil)
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if s := l.Snapshot(); s.SlotWaited != 2*time.Second {
		t.Errorf("SlotWaited = %v, want 2s", s.SlotWaited)
	}

	w, err := New("w", Config{Windows: ws}, WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WaitWindow(ctx); err != nil {
		t.Fatal(err)
	}
	if s := w.Snapshot(); s.WindowWaits != 1 || s.WindowWaited != time.Hour-5*time.Second {
		t.Errorf("window: %d waits, %v waited; want 1, until 13:00 (59m55s)", s.WindowWaits, s.WindowWaited)
	}
}

// OnLatency receives the samples the adaptive limit takes, by kind.
func TestOnLatency(t *testing.T) {
	clock := fakeclock.New(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
	l, err := New("c", Config{}, WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[Kind][]time.Duration{}
	l.OnLatency(func(k Kind, d time.Duration) { seen[k] = append(seen[k], d) })
	op, err := l.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(40 * time.Millisecond)
	op.Done(nil)
	l.Observe(7 * time.Millisecond)
	l.ObserveAppend(9*time.Millisecond, 100)
	op, _ = l.Begin(context.Background())
	op.DoneUntimed(nil) // no sample
	if len(seen[KindCommand]) != 1 || seen[KindCommand][0] != 40*time.Millisecond ||
		len(seen[KindFetch]) != 1 || seen[KindFetch][0] != 7*time.Millisecond ||
		len(seen[KindAppend]) != 1 || seen[KindAppend][0] != 9*time.Millisecond {
		t.Errorf("samples = %v", seen)
	}
	if KindCommand.String() != "command" || KindFetch.String() != "fetch" || KindAppend.String() != "append" {
		t.Errorf("kind names: %s %s %s", KindCommand, KindFetch, KindAppend)
	}
}
