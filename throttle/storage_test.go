package throttle

import (
	"context"
	"errors"
	"testing"
	"time"
)

// waitResult runs WaitStorage in the background and returns its result
// channel.
func waitResult(l *Limiter, ctx context.Context) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- l.WaitStorage(ctx) }()
	return ch
}

// The gate is open without a signal and while the signal is ok or slow;
// a pause reading closes it, a waiter stays blocked until a reading below
// pause opens it, and the paused time and counts are reported.
func TestStorageGatePausesAndResumes(t *testing.T) {
	l, clock := newTest(t, Config{MaxConnections: 8})
	ctx := context.Background()
	if err := l.WaitStorage(ctx); err != nil {
		t.Fatalf("no signal: %v", err)
	}
	if s := l.Snapshot(); s.HealthLevel != "" || s.HealthValue != nil {
		t.Fatalf("no signal yet, snapshot says %+v", s.StorageStats)
	}
	l.SetStorage(StorageReading{Level: StorageSlow, Value: 5})
	if err := l.WaitStorage(ctx); err != nil || l.StoragePaused() {
		t.Fatalf("slow must not pause: %v", err)
	}
	l.SetStorage(StorageReading{Level: StoragePause, Value: 20})
	if !l.StoragePaused() {
		t.Fatal("a pause reading left the gate open")
	}
	done := waitResult(l, ctx)
	select {
	case err := <-done:
		t.Fatalf("WaitStorage returned %v while paused", err)
	case <-time.After(50 * time.Millisecond):
	}
	clock.Advance(3 * time.Second)
	l.SetStorage(StorageReading{Level: StoragePause, Value: 25}) // still paused: not a new pause
	if s := l.Snapshot(); !s.HealthPaused || s.HealthPausedSeconds != 3 || *s.HealthValue != 25 {
		t.Fatalf("while paused: %+v", s.StorageStats)
	}
	clock.Advance(2 * time.Second)
	l.SetStorage(StorageReading{Level: StorageOK, Value: 1})
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("WaitStorage after resume: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WaitStorage still blocked after the gate opened")
	}
	s := l.Snapshot()
	if s.HealthPaused || s.HealthPauses != 1 || s.HealthPausedSeconds != 5 || s.HealthWaits != 1 || s.HealthLevel != "ok" || *s.HealthValue != 1 {
		t.Fatalf("after resume: %+v", s.StorageStats)
	}
	clock.Advance(time.Hour)
	if s := l.Snapshot(); s.HealthPausedSeconds != 5 {
		t.Fatalf("paused seconds grew while open: %v", s.HealthPausedSeconds)
	}
}

// A waiter at a closed gate ends with its context, naming the cluster.
func TestStorageGateHonoursContext(t *testing.T) {
	l, _ := newTest(t, Config{})
	l.SetStorage(StorageReading{Level: StoragePause, Value: 99})
	ctx, cancel := context.WithCancel(context.Background())
	done := waitResult(l, ctx)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("want context.Canceled, got %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WaitStorage ignored its context")
	}
}

// A failed reading is counted with its text; the level is what the
// poller decided (on_error), and the last good value is kept.
func TestStorageErrorsCounted(t *testing.T) {
	l, _ := newTest(t, Config{})
	l.SetStorage(StorageReading{Level: StorageOK, Value: 2})
	l.SetStorage(StorageReading{Level: StoragePause, Err: errors.New("returned no series")})
	s := l.Snapshot()
	if s.HealthErrors != 1 || s.HealthReadings != 2 || s.HealthLastError != "returned no series" || !s.HealthPaused || *s.HealthValue != 2 {
		t.Fatalf("after a failed reading: %+v", s.StorageStats)
	}
}

// Slow readings shrink the limit as distress does, at most once per
// evaluation interval, and keep it from growing back however healthy the
// commands are; once the signal is ok it grows again.
func TestStorageSlowShrinksLimit(t *testing.T) {
	l, clock := newTest(t, Config{MaxConnections: 8})
	l.SetStorage(StorageReading{Level: StorageSlow, Value: 5})
	if s := l.Snapshot(); s.Limit != 5 || s.Decreases != 1 || s.HealthDecreases != 1 {
		t.Fatalf("first slow reading: limit %d, decreases %d/%d", s.Limit, s.Decreases, s.HealthDecreases)
	}
	l.SetStorage(StorageReading{Level: StorageSlow, Value: 5})
	if s := l.Snapshot(); s.Limit != 5 {
		t.Fatalf("a second reading within the interval shrank the limit to %d", s.Limit)
	}
	clock.Advance(evalInterval)
	l.SetStorage(StorageReading{Level: StoragePause, Value: 50})
	if s := l.Snapshot(); s.Limit != 3 || s.HealthDecreases != 2 {
		t.Fatalf("pause reading after an interval: limit %d, decreases %d", s.Limit, s.HealthDecreases)
	}
	l.SetStorage(StorageReading{Level: StorageSlow, Value: 5})
	// Fast, successful, saturating commands would raise the limit.
	if _, hi := drive(t, l, clock, 20*evalInterval, time.Millisecond, nil); hi > 3 {
		t.Fatalf("limit grew to %d while the storage signal is slow", hi)
	}
	l.SetStorage(StorageReading{Level: StorageOK, Value: 1})
	if _, hi := drive(t, l, clock, 20*evalInterval, time.Millisecond, nil); hi <= 3 {
		t.Fatalf("limit did not grow once the signal was ok (highest %d)", hi)
	}
}
