package throttle

import (
	"context"
	"time"
)

// Clock is the time source of everything in this package that depends on
// time: latency measurement, the adaptive limit's intervals, rate waits,
// backoff sleeps and time windows. Tests inject a fake one so that nothing
// really sleeps (internal/testrig/fakeclock).
type Clock interface {
	Now() time.Time
	// Sleep pauses for d, or until ctx ends, in which case it returns
	// ctx's error. A d <= 0 returns at once.
	Sleep(ctx context.Context, d time.Duration) error
}

// System is the wall clock.
var System Clock = systemClock{}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
