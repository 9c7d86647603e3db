// Package throttle keeps mailferry from making a sick cluster sicker. Per
// cluster, a Limiter combines a connection cap, bytes/s and messages/s token
// buckets (golang.org/x/time/rate), an adaptive concurrency limit that
// shrinks when the cluster's command latency or error rate rises and grows
// back slowly when it recovers, and retries with jittered backoff on the
// signals a busy server sends. Windows pause new work outside allowed hours.
//
// The package knows nothing about IMAP and reads no error text: what a
// server's reply means (a signal, a requested wait) reaches it as a
// Verdict decided by the IMAP layer. It never prints; callers read a Limiter's state with Snapshot.
package throttle

import (
	"context"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
	"golang.org/x/time/rate"
)

// DefaultMaxConnections is the connection cap when Config.MaxConnections
// is 0.
const DefaultMaxConnections = 4

// burstWindow sizes the token buckets: a bucket holds this long a share of
// its rate, so an idle period buys at most that much of a burst.
const burstWindow = 100 * time.Millisecond

// Config holds one cluster's limits. The zero value means
// DefaultMaxConnections connections and no other limit.
type Config struct {
	// MaxConnections caps open connections (AcquireConn) and is the ceiling
	// of the adaptive concurrency limit (Begin). 0 means
	// DefaultMaxConnections.
	MaxConnections int
	// BytesPerSecond and MessagesPerSecond are token-bucket rates for
	// WaitBytes and WaitMessages; 0 means unlimited.
	BytesPerSecond, MessagesPerSecond float64
	// MaxLatency is an absolute latency ceiling: when the smoothed p90
	// command latency exceeds it, the adaptive limit shrinks whatever the
	// learned baseline says. 0 means none.
	MaxLatency time.Duration
	// Degraded starts the adaptive limit at a quarter of the cap (at least
	// 1) instead of at the cap; it still grows while the cluster is healthy.
	Degraded bool
	// Windows are the hours in which new work may start (WaitWindow);
	// empty means always.
	Windows Windows
	// Backoff shapes the delays of Retry; zero fields take defaults.
	Backoff Backoff
}

// Validate reports a limit that makes no sense, naming the field.
func (c Config) Validate() error {
	switch {
	case c.MaxConnections < 0:
		return fmt.Errorf("max connections %d: must not be negative", c.MaxConnections)
	case c.BytesPerSecond < 0 || math.IsNaN(c.BytesPerSecond) || math.IsInf(c.BytesPerSecond, 0):
		return fmt.Errorf("bytes per second %v: must be a finite number, 0 or more", c.BytesPerSecond)
	case c.MessagesPerSecond < 0 || math.IsNaN(c.MessagesPerSecond) || math.IsInf(c.MessagesPerSecond, 0):
		return fmt.Errorf("messages per second %v: must be a finite number, 0 or more", c.MessagesPerSecond)
	case c.MaxLatency < 0:
		return fmt.Errorf("max latency %v: must not be negative", c.MaxLatency)
	}
	return nil
}

// Option adjusts a Limiter at construction.
type Option func(*Limiter)

// WithClock makes the Limiter read time and sleep on c instead of the wall
// clock.
func WithClock(c Clock) Option { return func(l *Limiter) { l.clock = c } }

// Limiter is one cluster's throttle. All methods are safe for concurrent
// use; every wait takes a context and returns its error when it ends first.
type Limiter struct {
	name  string
	cfg   Config
	cap   int
	clock Clock
	conns *semaphore.Weighted
	bytes *rate.Limiter // nil: unlimited
	msgs  *rate.Limiter // nil: unlimited
	gate  ConnGate      // nil: no outside budget (see WithConnGate)

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when a slot frees or the limit grows
	adapt   adaptive
	storage storage // the storage signal and its pause gate (storage.go)
	st      Stats
	// onLatency receives every latency sample (OnLatency).
	onLatency func(Kind, time.Duration)
}

// New returns the Limiter of the cluster called name. A Config that fails
// Validate is an error.
func New(name string, cfg Config, opts ...Option) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("limits of cluster %q: %w", name, err)
	}
	capacity := cfg.MaxConnections
	if capacity == 0 {
		capacity = DefaultMaxConnections
	}
	l := &Limiter{
		name:    name,
		cfg:     cfg,
		cap:     capacity,
		clock:   System,
		conns:   semaphore.NewWeighted(int64(capacity)),
		bytes:   bucket(cfg.BytesPerSecond),
		msgs:    bucket(cfg.MessagesPerSecond),
		changed: make(chan struct{}),
	}
	for _, o := range opts {
		o(l)
	}
	start := capacity
	if cfg.Degraded {
		start = max(1, capacity/4)
	}
	l.adapt = adaptive{limit: start, ivStart: l.clock.Now()}
	l.st = Stats{Name: name, Cap: capacity}
	return l, nil
}

func bucket(perSecond float64) *rate.Limiter {
	if perSecond == 0 {
		return nil
	}
	burst := int(math.Ceil(perSecond * burstWindow.Seconds()))
	return rate.NewLimiter(rate.Limit(perSecond), max(1, burst))
}

// Name is the cluster's name.
func (l *Limiter) Name() string { return l.name }

// AcquireConn waits for a free connection under the cap. The caller must
// call release exactly once when the connection is closed (later calls do
// nothing).
func (l *Limiter) AcquireConn(ctx context.Context) (release func(), err error) {
	if !l.conns.TryAcquire(1) {
		start := l.clock.Now()
		l.mu.Lock()
		l.st.ConnWaits++
		l.mu.Unlock()
		err := l.conns.Acquire(ctx, 1)
		l.mu.Lock()
		l.st.ConnWaited += l.clock.Now().Sub(start)
		l.mu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("wait for a connection to cluster %q: %w", l.name, err)
		}
	}
	releaseGate, err := l.acquireGate(ctx)
	if err != nil {
		l.conns.Release(1)
		return nil, err
	}
	l.mu.Lock()
	l.st.Conns++
	l.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			l.st.Conns--
			l.mu.Unlock()
			releaseGate()
			l.conns.Release(1)
		})
	}, nil
}

// WaitBytes waits until n bytes may be transferred under the bytes/s
// bucket. Any n works: a request larger than the bucket is taken in
// bucket-sized parts. Without a bytes/s limit it returns at once.
func (l *Limiter) WaitBytes(ctx context.Context, n int) error {
	return l.waitN(ctx, l.bytes, n)
}

// WaitMessages waits until n messages may be transferred under the
// messages/s bucket, like WaitBytes.
func (l *Limiter) WaitMessages(ctx context.Context, n int) error {
	return l.waitN(ctx, l.msgs, n)
}

// waitN reserves n tokens in bucket-sized parts at the clock's time and
// sleeps on the clock for each part's delay, so a fake clock drives the
// real token bucket without sleeping.
func (l *Limiter) waitN(ctx context.Context, b *rate.Limiter, n int) error {
	if b == nil || n <= 0 {
		return ctx.Err()
	}
	for n > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		k := min(n, b.Burst())
		now := l.clock.Now()
		r := b.ReserveN(now, k)
		if !r.OK() { // cannot happen: k <= burst and the rate is finite
			return fmt.Errorf("rate limit of cluster %q: cannot reserve %d", l.name, k)
		}
		if d := r.DelayFrom(now); d > 0 {
			l.mu.Lock()
			l.st.RateWaits++
			l.st.RateWaited += d
			l.mu.Unlock()
			if err := l.clock.Sleep(ctx, d); err != nil {
				r.CancelAt(l.clock.Now())
				return err
			}
		}
		n -= k
	}
	return nil
}

// Reader returns r limited by the bytes/s bucket: after each read it waits
// for the bytes it returned. A wait that ends with ctx is a read error.
func (l *Limiter) Reader(ctx context.Context, r io.Reader) io.Reader {
	if l.bytes == nil {
		return r
	}
	return &limitedReader{ctx: ctx, r: r, l: l}
}

type limitedReader struct {
	ctx context.Context
	r   io.Reader
	l   *Limiter
}

func (lr *limitedReader) Read(p []byte) (int, error) {
	n, err := lr.r.Read(p)
	if n > 0 {
		if werr := lr.l.WaitBytes(lr.ctx, n); werr != nil {
			return n, werr
		}
	}
	return n, err
}

// InWindow reports whether new work may start now.
func (l *Limiter) InWindow() bool { return l.cfg.Windows.Open(l.clock.Now()) }

// WaitWindow returns at once inside the configured windows and otherwise
// waits, on the Limiter's clock, for the next one to open.
func (l *Limiter) WaitWindow(ctx context.Context) error {
	if l.cfg.Windows.Open(l.clock.Now()) {
		return nil
	}
	l.mu.Lock()
	l.st.WindowWaits++
	l.mu.Unlock()
	start := l.clock.Now()
	err := l.cfg.Windows.Wait(ctx, l.clock)
	l.mu.Lock()
	l.st.WindowWaited += l.clock.Now().Sub(start)
	l.mu.Unlock()
	return err
}

// Stats is a Limiter's observable state, for progress output and metrics.
type Stats struct {
	Name     string
	Limit    int // current adaptive concurrency limit, 1..Cap
	Cap      int // connection cap and ceiling of Limit
	InFlight int // commands between Begin and Done
	Conns    int // connections held through AcquireConn

	Latency  time.Duration // smoothed p90 command latency; 0 before the first interval
	Baseline time.Duration // latency learned while healthy; 0 until learned

	Commands int64 // commands that ended (Done), cancellations excluded
	// Sent counts the IMAP commands sent to the cluster under this
	// limiter (CountSent): one per command, however it was timed.
	Sent      int64
	Errors    int64 // of those, how many failed
	Distress  int64 // of those, how many failed with an overload signal (see Signal.Retryable)
	Decreases int64 // times the limit shrank
	Increases int64 // times the limit grew

	ConnWaits    int64         // AcquireConn calls that had to wait
	ConnWaited   time.Duration // total time they waited
	SlotWaits    int64         // Begin calls that had to wait for the limit
	SlotWaited   time.Duration // total time they waited
	RateWaits    int64         // token-bucket waits (bytes or messages)
	RateWaited   time.Duration // total time those waits asked for
	WindowWaits  int64         // WaitWindow calls made outside the windows
	WindowWaited time.Duration // total time they waited for a window to open

	Backoffs    int64         // retries delayed by Retry
	BackoffTime time.Duration // total of those delays
	LastSignal  Signal        // the signal of the most recent backoff

	StorageStats // the storage signal (health_query), zero without one
}

// Snapshot returns a copy of the Limiter's state.
func (l *Limiter) Snapshot() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.st
	s.Limit = l.adapt.limit
	s.InFlight = l.adapt.inflight
	w := l.adapt.worst()
	s.Latency = w.smoothed
	s.Baseline = w.baseline
	s.StorageStats = l.storageStats(l.clock.Now())
	return s
}
