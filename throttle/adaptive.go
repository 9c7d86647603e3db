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

// Kind is what a latency sample measures. Each kind has its own smoothed
// p90 and baseline, so that one kind's normal cost is never read as
// distress of another: a FETCH response that carries a big body, or an
// APPEND answered after a batch was stored, takes longer than a SELECT on
// a healthy server.
type Kind int

const (
	// KindCommand: a short command, from sent to answered (Op.Done).
	KindCommand Kind = iota
	// KindFetch: the wait for one response of a streaming FETCH (Observe).
	KindFetch
	// KindAppend: the wait for an APPEND's answer once its last byte was
	// sent, per MiB sent beyond the first (ObserveAppend).
	KindAppend
	numKinds
)

// kindStat is one kind's latency state.
type kindStat struct {
	smoothed, baseline time.Duration
	samples            []time.Duration // of the current interval
}

// adaptive is the state of the concurrency limit, guarded by Limiter.mu.
type adaptive struct {
	limit    int
	inflight int

	kinds [numKinds]kindStat

	ivStart    time.Time
	ivDistress int
	ivPeak     int // most commands in flight during the interval
}

// sample adds one latency sample of kind k to the interval.
func (a *adaptive) sample(k Kind, d time.Duration) {
	if ks := &a.kinds[k]; len(ks.samples) < maxSamples {
		ks.samples = append(ks.samples, max(0, d))
	}
}

func (a *adaptive) nSamples() int {
	n := 0
	for i := range a.kinds {
		n += len(a.kinds[i].samples)
	}
	return n
}

// worst is the kind whose smoothed latency is highest against its
// baseline: the one to report.
func (a *adaptive) worst() *kindStat {
	best, ratio := &a.kinds[KindCommand], -1.0
	for i := range a.kinds {
		ks := &a.kinds[i]
		if ks.smoothed == 0 {
			continue
		}
		r := float64(ks.smoothed) / float64(max(ks.baseline, 1))
		if r > ratio {
			best, ratio = ks, r
		}
	}
	return best
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
	var waitStart time.Time // zero: admitted without waiting
	for {
		l.mu.Lock()
		if l.adapt.inflight < l.adapt.limit {
			l.adapt.inflight++
			l.adapt.ivPeak = max(l.adapt.ivPeak, l.adapt.inflight)
			now := l.clock.Now()
			if !waitStart.IsZero() {
				l.st.SlotWaited += now.Sub(waitStart)
			}
			l.mu.Unlock()
			return &Op{l: l, start: now}, nil
		}
		if waitStart.IsZero() {
			waitStart = l.clock.Now()
			l.st.SlotWaits++
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			l.mu.Lock()
			l.st.SlotWaited += l.clock.Now().Sub(waitStart)
			l.mu.Unlock()
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

// Observe records one latency the caller measured itself, the wait for
// one message of a streaming FETCH (KindFetch), without taking a slot.
func (l *Limiter) Observe(d time.Duration) { l.ObserveAs(KindFetch, d) }

// ObserveAs records one latency of kind k the caller measured itself.
func (l *Limiter) ObserveAs(k Kind, d time.Duration) {
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.st.Commands++
	l.adapt.sample(k, d)
	l.latencyObserved(k, d)
	l.evaluate(now)
}

// OnLatency makes f receive every latency sample the limiter takes (of
// timed commands, streaming FETCH responses and APPEND answers), for
// metrics such as a histogram. f is called with the limiter's lock held:
// it must be fast and must not call the limiter. Set it before use.
func (l *Limiter) OnLatency(f func(k Kind, d time.Duration)) {
	l.mu.Lock()
	l.onLatency = f
	l.mu.Unlock()
}

// latencyObserved passes a sample to OnLatency's f. l.mu must be held.
func (l *Limiter) latencyObserved(k Kind, d time.Duration) {
	if l.onLatency != nil {
		l.onLatency(k, d)
	}
}

// String names the kind in metrics: command, fetch or append.
func (k Kind) String() string {
	switch k {
	case KindCommand:
		return "command"
	case KindFetch:
		return "fetch"
	case KindAppend:
		return "append"
	}
	return fmt.Sprintf("kind%d", int(k))
}

// ObserveAppend records the wait for an APPEND's answer (one message, or a
// MULTIAPPEND batch) after its last byte of bytes was sent. A server needs
// longer to store more; the wait counts per MiB beyond the first, so that
// a healthy server storing 16 MiB is not taken for a slow one.
func (l *Limiter) ObserveAppend(d time.Duration, bytes int64) {
	if bytes > 1<<20 {
		d = time.Duration(float64(d) * float64(1<<20) / float64(bytes))
	}
	l.ObserveAs(KindAppend, d)
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
	if timed {
		a.sample(KindCommand, now.Sub(o.start))
		l.latencyObserved(KindCommand, now.Sub(o.start))
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
	n := a.nSamples() + a.ivDistress
	if elapsed < evalInterval || n == 0 || n < minSamples && elapsed < 5*evalInterval {
		return
	}
	slow := false
	for i := range a.kinds {
		ks := &a.kinds[i]
		if len(ks.samples) > 0 {
			p := p90(ks.samples)
			if ks.smoothed == 0 {
				ks.smoothed = p
			} else {
				ks.smoothed = (ks.smoothed + p) / 2
			}
			ks.samples = ks.samples[:0]
		}
		slow = slow || ks.smoothed > 0 &&
			(ks.baseline > 0 && float64(ks.smoothed) > latencyFactor*float64(ks.baseline) && ks.smoothed-ks.baseline > latencyFloor ||
				l.cfg.MaxLatency > 0 && ks.smoothed > l.cfg.MaxLatency)
	}
	distress := float64(a.ivDistress) / float64(n)
	saturated := a.ivPeak >= a.limit
	a.ivStart, a.ivDistress, a.ivPeak = now, 0, a.inflight

	if slow || distress > maxDistressRate {
		if a.limit > 1 {
			a.limit = max(1, int(math.Floor(float64(a.limit)*decreaseFactor)))
			l.st.Decreases++
		}
		return
	}
	for i := range a.kinds {
		ks := &a.kinds[i]
		switch {
		case ks.smoothed == 0:
		case ks.baseline == 0:
			ks.baseline = ks.smoothed
		case ks.smoothed < ks.baseline:
			ks.baseline += time.Duration(baselineDown * float64(ks.smoothed-ks.baseline))
		default:
			ks.baseline += time.Duration(baselineUp * float64(ks.smoothed-ks.baseline))
		}
	}
	if saturated && a.limit < l.cap && !l.storageHolds() {
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
