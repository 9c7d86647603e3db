package migrate

import (
	"context"
	"errors"
	"fmt"
	"io"

	"mailferry/internal/imapconn"
	"mailferry/throttle"
)

// ErrOutsideWindow is returned (wrapped) by Copy with
// Options.ExitOutsideWindow when a time window closed: work in flight was
// finished and recorded, and running the copy again (inside a window)
// resumes.
var ErrOutsideWindow = errors.New("outside the allowed time windows")

// limiters fills in the run's limiters: the caller's, or unlimited ones
// with room for the copy's connections.
func (r *run) limiters() error {
	var err error
	r.srcLim, r.dstLim = r.opts.Source, r.opts.Target
	if r.srcLim == nil {
		if r.srcLim, err = throttle.New("source", throttle.Config{MaxConnections: r.opts.Connections}); err != nil {
			return err
		}
	}
	if r.dstLim == nil {
		r.dstLim, err = throttle.New("target", throttle.Config{MaxConnections: r.opts.Connections})
	}
	return err
}

// lockOrder is the order in which a copy takes its two clusters' places
// and slots (index 0 = source, 1 = target): by cluster name, the same in
// every copy, so that copies in opposite directions (a rebalance) never
// each hold one cluster's last place while waiting for the other's.
func (r *run) lockOrder() [2]int {
	if r.dstLim.Name() < r.srcLim.Name() {
		return [2]int{1, 0}
	}
	return [2]int{0, 1}
}

// beginPair takes a slot of both sides' adaptive limits for a batch, in
// lockOrder.
func (w *worker) beginPair(ctx context.Context) (src, dst *imapconn.Stream, err error) {
	sess := [2]*imapconn.Session{w.src, w.dst}
	var st [2]*imapconn.Stream
	order := w.run.lockOrder()
	if st[order[0]], err = sess[order[0]].Stream(ctx); err != nil {
		return nil, nil, err
	}
	if st[order[1]], err = sess[order[1]].Stream(ctx); err != nil {
		st[order[0]].End(err)
		return nil, nil, err
	}
	return st[0], st[1], nil
}

// window waits while any side is outside its time windows, or, with
// ExitOutsideWindow, stops the copy; then while any side's storage signal
// holds new batches (waitStorage).
func (r *run) window(ctx context.Context) error {
	for _, lim := range []*throttle.Limiter{r.srcLim, r.dstLim} {
		if lim.InWindow() {
			continue
		}
		if r.opts.ExitOutsideWindow {
			return ErrOutsideWindow
		}
		r.warn(fmt.Sprintf("%s: outside its time windows; waiting for the next one", lim.Name()))
		if err := lim.WaitWindow(ctx); err != nil {
			return err
		}
	}
	return waitStorage(ctx, r.opts.Stop, r.srcLim, r.dstLim)
}

// limitedReader reads a message body under both sides' bytes/s buckets.
func (r *run) limitedReader(ctx context.Context, lit io.Reader) io.Reader {
	return r.dstLim.Reader(ctx, r.srcLim.Reader(ctx, lit))
}

// Throttle is what one cluster's limiter observed, for reports.
type Throttle = throttle.Stats

// limOf is the limiter of the side an error came from (the Side of
// imapconn.Decide), for counting its backoff; the source when the side is
// unknown, as it is the side to spare.
func (r *run) limOf(side imapconn.Side) *throttle.Limiter {
	if side == imapconn.Target {
		return r.dstLim
	}
	return r.srcLim
}

// sideErr is err when it came from side, nil otherwise, so that a stream
// spanning both clusters counts each error on its own cluster's limiter
// only (an error of unknown side counts as the source's).
func sideErr(side imapconn.Side, err error) error {
	s := imapconn.Decide(err).Side
	if s == side || (s == imapconn.SideUnknown && side == imapconn.Source) {
		return err
	}
	return nil
}
