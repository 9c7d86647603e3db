package migrate

import (
	"context"
	"errors"
	"fmt"
	"time"

	"mailferry/state"
)

// progressEvery spaces the progress records of one copy (each is a
// durable commit).
const progressEvery = 2 * time.Second

// ErrInterrupted is returned (wrapped) by Copy when Options.Stop closed:
// messages in flight were finished and recorded, nothing new was started,
// and running the same copy again resumes.
var ErrInterrupted = errors.New("interrupted")

// Hold renews lease every third of its TTL until release is called. If a
// renewal finds the lease lost (another process took the migration over),
// the returned context is cancelled with that error as its cause, so the
// copy stops at once; fencing already keeps it from writing. Transient
// renewal errors are retried at the next tick.
func Hold(ctx context.Context, lease *state.Lease) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(lease.TTL() / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := lease.Renew(ctx); errors.Is(err, state.ErrLeaseLost) {
					cancel(fmt.Errorf("migration %s: %w", lease.Migration.Key, err))
					return
				}
			}
		}
	}()
	return ctx, func() {
		cancel(nil)
		<-done
	}
}

// stopping reports whether the copy was asked to stop starting work.
func (r *run) stopping() bool {
	select {
	case <-r.opts.Stop:
		return true
	default:
		return false
	}
}

// progress records the report's counters in the state for `mailferry
// status`. It is best effort: a failure is a warning, never a failed copy.
func (r *run) progress(ctx context.Context, phase, lastErr string) {
	lease := r.opts.State
	if lease == nil {
		return
	}
	r.mu.Lock()
	if phase == r.lastPhase && lastErr == "" && time.Since(r.lastProgress) < progressEvery {
		r.mu.Unlock()
		return // the same phase, recorded moments ago
	}
	r.lastPhase, r.lastProgress = phase, time.Now()
	rep := r.report
	p := state.Progress{
		Phase: phase, MessagesDone: int64(rep.Copied + rep.Done), MessagesTotal: int64(r.totalMsgs),
		BytesDone: r.bytesDone, BytesTotal: r.totalBytes, Verified: int64(rep.Verified), Failed: int64(rep.Failed),
		LastError: lastErr,
	}
	r.mu.Unlock()
	if lastErr == "" {
		// The progress of a running pass: committed with the next write
		// (a crash makes it stale anyway).
		lease.DeferProgress(ctx, p)
		return
	}
	if err := lease.SetProgress(context.WithoutCancel(ctx), p); err != nil && !errors.Is(err, state.ErrLeaseLost) {
		r.warn(fmt.Sprintf("record progress: %v", err))
	}
}
