package migrate

import (
	"context"

	"mailferry/throttle"
)

// waitStorage waits while the storage signal of any of lims (nil ones
// skipped) holds new batches (throttle.Limiter.WaitStorage), until all
// their gates are open at once. It ends with ctx, and with ErrInterrupted
// at the first stop signal: a paused copy stops like one between batches.
func waitStorage(ctx context.Context, stop <-chan struct{}, lims ...*throttle.Limiter) error {
	for {
		var paused *throttle.Limiter
		for _, lim := range lims {
			if lim != nil && lim.StoragePaused() {
				paused = lim
				break
			}
		}
		if paused == nil {
			return nil
		}
		if err := waitGate(ctx, stop, paused); err != nil {
			return err
		}
	}
}

// waitGate waits for one limiter's pause gate to open, or for ctx or stop.
func waitGate(ctx context.Context, stop <-chan struct{}, lim *throttle.Limiter) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if stop != nil {
		go func() {
			select {
			case <-stop:
				cancel(ErrInterrupted)
			case <-ctx.Done():
			}
		}()
	}
	err := lim.WaitStorage(ctx)
	if err != nil && context.Cause(ctx) == ErrInterrupted {
		return ErrInterrupted
	}
	return err
}
