package throttle

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// Tuning of the adaptive limit. Every evaluation interval (at least
// evalInterval long and holding at least minSamples outcomes, or 5
// intervals long with any) the p90 latency of the interval's successful
// commands is folded into a smoothed estimate (half old, half new). The
// interval is unhealthy when that estimate exceeds latencyFactor times the
// learned baseline or Config.MaxLatency, or when more than
// maxDistressRate of its commands failed with an overload signal. An
// unhealthy interval multiplies the limit by decreaseFactor (at most once
// per interval, so once per evalInterval); a healthy one in which the limit
// was reached adds 1, up to the cap.
const (
	evalInterval    = time.Second
	minSamples      = 4
	latencyFactor   = 2.0
	decreaseFactor  = 0.7
	maxDistressRate = 0.1
	maxSamples      = 1024 // kept per interval; beyond that the p90 uses the first ones
	// The baseline tracks healthy latency: quickly down, slowly up, and not
	// at all during unhealthy intervals, so that it does not follow a
	// degradation.
	baselineDown = 0.25
	baselineUp   = 0.01
	// latencyFloor: a rise smaller than this over the baseline is noise,
	// however large the ratio (loopback commands take microseconds).
	latencyFloor = 20 * time.Millisecond
)

// adaptive is the state of the concurrency limit, guarded by Limiter.mu.
type adaptive struct {
	limit    int
	inflight int

	smoothed time.Duration
	baseline time.Duration

	ivStart    time.Time
	ivSamples  []time.Duration
	ivDistress int
	ivPeak     int // most commands in flight during the interval
}

// Op is one command admitted by Begin. Call Done when it ends.
type Op struct {
	l     *Limiter
	start time.Time
	done  bool // guarded by l.mu
}

// Begin waits for a slot under the adaptive concurrency limit and starts
// timing a command. Every Begin that returns an Op must be paired with
// op.Done; waiting ends early with ctx's error.
func (l *Limiter) Begin(ctx context.Context) (*Op, error) {
	waited := false
	for {
		l.mu.Lock()
		if l.adapt.inflight < l.adapt.limit {
			l.adapt.inflight++
			l.adapt.ivPeak = max(l.adapt.ivPeak, l.adapt.inflight)
			l.mu.Unlock()
			return &Op{l: l, start: l.clock.Now()}, nil
		}
		if !waited {
			waited = true
			l.st.SlotWaits++
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for a command slot on cluster %q: %w", l.name, context.Cause(ctx))
		}
	}
}

// Done frees the command's slot and records its latency (from Begin, on
// the Limiter's clock) and outcome: nil is a success; an error whose
// Verdict (VerdictOf) is retryable (an overload signal, a reset, a timeout) counts
// toward the distress rate; any other error is a failure from a responsive
// server and its latency counts like a success's; a canceled context is not
// recorded. Calls after the first do nothing.
func (o *Op) Done(err error) { o.end(err, VerdictOf(err), true) }

// DoneAs is Done with the error's Verdict decided by the caller (the IMAP
// layer's decision) rather than read from the error.
func (o *Op) DoneAs(err error, v Verdict) { o.end(err, v, true) }

// DoneUntimed ends the command like Done but adds no latency sample: for
// long transfers whose duration says more about their size than about the
// server. Their caller reports the server's latency with Observe.
func (o *Op) DoneUntimed(err error) { o.end(err, VerdictOf(err), false) }

// DoneUntimedAs is DoneUntimed with the Verdict decided by the caller.
func (o *Op) DoneUntimedAs(err error, v Verdict) { o.end(err, v, false) }

// CountSent counts n IMAP commands sent to the cluster under this limiter.
func (l *Limiter) CountSent(n int) {
	l.mu.Lock()
	l.st.Sent += int64(n)
	l.mu.Unlock()
}

// Observe records one command latency the caller measured itself, such as
// the wait for each message of a streaming FETCH, without taking a slot.
func (l *Limiter) Observe(d time.Duration) {
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	a := &l.adapt
	l.st.Commands++
	if len(a.ivSamples) < maxSamples {
		a.ivSamples = append(a.ivSamples, max(0, d))
	}
	l.evaluate(now)
}

func (o *Op) end(err error, v Verdict, timed bool) {
	l := o.l
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if o.done {
		return
	}
	o.done = true
	a := &l.adapt
	a.inflight--
	l.wake()
	if errors.Is(err, context.Canceled) {
		return
	}
	l.st.Commands++
	if err != nil {
		l.st.Errors++
		if v.Retryable() {
			l.st.Distress++
			a.ivDistress++
			l.evaluate(now)
			return
		}
	}
	if timed && len(a.ivSamples) < maxSamples {
		a.ivSamples = append(a.ivSamples, max(0, now.Sub(o.start)))
	}
	l.evaluate(now)
}

// wake lets waiting Begin calls look again. l.mu must be held.
func (l *Limiter) wake() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// evaluate closes the current interval if it is complete and adjusts the
// limit. l.mu must be held.
func (l *Limiter) evaluate(now time.Time) {
	a := &l.adapt
	elapsed := now.Sub(a.ivStart)
	n := len(a.ivSamples) + a.ivDistress
	if elapsed < evalInterval || n == 0 || n < minSamples && elapsed < 5*evalInterval {
		return
	}
	if len(a.ivSamples) > 0 {
		p := p90(a.ivSamples)
		if a.smoothed == 0 {
			a.smoothed = p
		} else {
			a.smoothed = (a.smoothed + p) / 2
		}
	}
	distress := float64(a.ivDistress) / float64(n)
	saturated := a.ivPeak >= a.limit
	a.ivStart, a.ivSamples, a.ivDistress, a.ivPeak = now, a.ivSamples[:0], 0, a.inflight

	slow := a.smoothed > 0 &&
		(a.baseline > 0 && float64(a.smoothed) > latencyFactor*float64(a.baseline) && a.smoothed-a.baseline > latencyFloor ||
			l.cfg.MaxLatency > 0 && a.smoothed > l.cfg.MaxLatency)
	if slow || distress > maxDistressRate {
		if a.limit > 1 {
			a.limit = max(1, int(math.Floor(float64(a.limit)*decreaseFactor)))
			l.st.Decreases++
		}
		return
	}
	switch {
	case a.smoothed == 0:
	case a.baseline == 0:
		a.baseline = a.smoothed
	case a.smoothed < a.baseline:
		a.baseline += time.Duration(baselineDown * float64(a.smoothed-a.baseline))
	default:
		a.baseline += time.Duration(baselineUp * float64(a.smoothed-a.baseline))
	}
	if saturated && a.limit < l.cap {
		a.limit++
		l.st.Increases++
		l.wake()
	}
}

// p90 is the 90th percentile (nearest rank) of s; it sorts s.
func p90(s []time.Duration) time.Duration {
	slices.Sort(s)
	i := int(math.Ceil(0.9*float64(len(s)))) - 1
	return s[max(0, i)]
}
