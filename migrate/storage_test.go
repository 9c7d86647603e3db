package migrate

import (
	"context"
	"errors"
	"testing"
	"time"

	"mailferry/throttle"
)

func pausedLimiter(t *testing.T, name string) *throttle.Limiter {
	t.Helper()
	l, err := throttle.New(name, throttle.Config{})
	if err != nil {
		t.Fatal(err)
	}
	l.SetStorage(throttle.StorageReading{Level: throttle.StoragePause, Value: 9})
	return l
}

func waitStorageAsync(ctx context.Context, stop <-chan struct{}, lims ...*throttle.Limiter) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- waitStorage(ctx, stop, lims...) }()
	return ch
}

func expectWait(t *testing.T, ch <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: waitStorage still waiting after 10s", what)
		return nil
	}
}

// A batch waits until every side's gate is open; the first stop signal
// ends the wait as an interruption.
func TestWaitStorage(t *testing.T) {
	ctx := context.Background()
	if err := waitStorage(ctx, nil, nil, mustLimiter(t)); err != nil {
		t.Fatalf("no signal: %v", err)
	}
	src, dst := pausedLimiter(t, "a"), pausedLimiter(t, "b")
	ch := waitStorageAsync(ctx, nil, src, dst)
	src.SetStorage(throttle.StorageReading{Level: throttle.StorageOK})
	select {
	case err := <-ch:
		t.Fatalf("returned %v while the target is paused", err)
	case <-time.After(50 * time.Millisecond):
	}
	dst.SetStorage(throttle.StorageReading{Level: throttle.StorageSlow})
	if err := expectWait(t, ch, "both open"); err != nil {
		t.Fatalf("both open: %v", err)
	}

	stop := make(chan struct{})
	ch = waitStorageAsync(ctx, stop, pausedLimiter(t, "c"))
	close(stop)
	if err := expectWait(t, ch, "stop"); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("stop: want ErrInterrupted, got %v", err)
	}

	cctx, cancel := context.WithCancel(ctx)
	ch = waitStorageAsync(cctx, nil, pausedLimiter(t, "d"))
	cancel()
	if err := expectWait(t, ch, "cancel"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancel: want context.Canceled, got %v", err)
	}
}

func mustLimiter(t *testing.T) *throttle.Limiter {
	t.Helper()
	l, err := throttle.New("x", throttle.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return l
}
