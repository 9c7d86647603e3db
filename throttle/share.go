package throttle

import (
	"context"
	"fmt"
	"math"

	"golang.org/x/time/rate"
)

// ConnGate is a budget of connection places outside this process, such as
// a fleet's per-cluster cap shared by many workers through a database. A
// Limiter with a gate (WithConnGate) takes a place from it, after its own,
// for every connection. Implementations must be safe for concurrent use;
// Acquire waits until a place is free or ctx ends, and release gives the
// place back (it is called exactly once).
type ConnGate interface {
	Acquire(ctx context.Context) (release func(), err error)
}

// WithConnGate makes every AcquireConn also hold a place of g while the
// connection is open, so the cap holds across every process sharing g.
func WithConnGate(g ConnGate) Option { return func(l *Limiter) { l.gate = g } }

func (l *Limiter) acquireGate(ctx context.Context) (func(), error) {
	if l.gate == nil {
		return func() {}, nil
	}
	release, err := l.gate.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("wait for a shared connection place on cluster %q: %w", l.name, err)
	}
	return release, nil
}

// SetRateShare runs the bytes/s and messages/s buckets at share (0 < share
// <= 1) of the configured rates, for a rate that several processes divide
// among themselves. Waits in progress keep the reservations they made;
// later ones see the new rate. Unlimited rates stay unlimited.
func (l *Limiter) SetRateShare(share float64) {
	if !(share > 0) || share > 1 || math.IsNaN(share) {
		share = 1
	}
	set := func(b *rate.Limiter, perSecond float64) {
		if b == nil {
			return
		}
		r := perSecond * share
		b.SetLimit(rate.Limit(r))
		b.SetBurst(max(1, int(math.Ceil(r*burstWindow.Seconds()))))
	}
	set(l.bytes, l.cfg.BytesPerSecond)
	set(l.msgs, l.cfg.MessagesPerSecond)
}

// LowerLimit brings the adaptive concurrency limit down to n (at least 1)
// if it is above: a decrease decided elsewhere (another worker of a fleet
// saw the cluster suffer). It counts as a decrease and never raises the
// limit; the limit grows back by the usual additive steps.
func (l *Limiter) LowerLimit(n int) {
	n = max(1, n)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.adapt.limit > n {
		l.adapt.limit = n
		l.st.Decreases++
	}
}

// SetConnGate is WithConnGate for a Limiter already built; call it before
// the first AcquireConn.
func (l *Limiter) SetConnGate(g ConnGate) { l.gate = g }

// Rates are the bytes/s and messages/s the buckets run at now (after
// SetRateShare); 0 means unlimited.
func (l *Limiter) Rates() (bytesPerSecond, messagesPerSecond float64) {
	get := func(b *rate.Limiter) float64 {
		if b == nil {
			return 0
		}
		return float64(b.Limit())
	}
	return get(l.bytes), get(l.msgs)
}
