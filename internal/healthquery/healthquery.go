// Package healthquery reads a cluster's storage health from Prometheus
// (an inventory's health_query) and hands each reading to the cluster's
// throttle: above slow_above its concurrency limit shrinks, above
// pause_above its pause gate closes so that no new batch starts on it,
// and a query that fails or returns nothing counts as on_error says.
//
// The disks behind a mail cluster degrade before IMAP latency shows it;
// this is the signal the adaptive limit (throttle) cannot see itself.
package healthquery

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"mailferry/inventory"
	"mailferry/throttle"
)

// Change is a reading worth telling people about: the cluster's level
// changed, a query failed (or failed differently), or queries work again.
type Change struct {
	Cluster string
	Query   string
	// Previous is the level before the reading; Reading.Level the new one.
	Previous throttle.StorageLevel
	Reading  throttle.StorageReading
	// Recovered: the query works again after failing.
	Recovered bool
	// Text says it in a sentence that names the cluster (and, for a
	// failure, the query).
	Text string
}

// Warning reports whether the change is a failed query, which callers
// show as a warning.
func (c Change) Warning() bool { return c.Reading.Err != nil }

// Poller runs one cluster's health query.
type Poller struct {
	cluster string
	q       inventory.HealthQuery
	api     v1.API
	lim     *throttle.Limiter
	notify  func(Change)
	clock   throttle.Clock

	mu      sync.Mutex // serialises Poll
	level   throttle.StorageLevel
	lastErr string
}

// Option adjusts a Poller at construction.
type Option func(*Poller)

// WithClock makes Run wait between queries on c instead of the wall
// clock.
func WithClock(c throttle.Clock) Option { return func(p *Poller) { p.clock = c } }

// New returns the poller of cluster's health query q (as the inventory
// checked it: defaults filled in), applying readings to lim and telling
// notify (may be nil) about changes. It sends no query yet.
func New(cluster string, q inventory.HealthQuery, lim *throttle.Limiter, notify func(Change), opts ...Option) (*Poller, error) {
	if q.Every <= 0 || q.Timeout <= 0 {
		return nil, fmt.Errorf("health query of cluster %q: every and timeout must be positive (load it through inventory.Load)", cluster)
	}
	client, err := api.NewClient(api.Config{Address: q.Prometheus, Client: &http.Client{Timeout: q.Timeout}})
	if err != nil {
		return nil, fmt.Errorf("health query of cluster %q: prometheus %q: %w", cluster, q.Prometheus, err)
	}
	if notify == nil {
		notify = func(Change) {}
	}
	p := &Poller{cluster: cluster, q: q, api: v1.NewAPI(client), lim: lim, notify: notify, clock: throttle.System}
	for _, o := range opts {
		o(p)
	}
	return p, nil
}

// Poll runs the query once, within the query's timeout, applies the
// reading to the limiter and returns it.
func (p *Poller) Poll(ctx context.Context) throttle.StorageReading {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, err := p.query(ctx)
	r := throttle.StorageReading{Value: v, Err: err, Level: p.levelOf(v, err)}
	if ctx.Err() != nil && err != nil {
		return r // stopping: not the storage's fault, nothing to apply
	}
	p.lim.SetStorage(r)
	p.report(r)
	return r
}

// Run polls now and then every Every until ctx ends.
func (p *Poller) Run(ctx context.Context) {
	for {
		p.Poll(ctx)
		if err := p.clock.Sleep(ctx, p.q.Every); err != nil {
			return
		}
	}
}

// Start polls once (so the first batch already sees the storage's
// state), then runs the poller in the background until ctx ends. stop
// ends it and waits for it.
func (p *Poller) Start(ctx context.Context) (stop func()) {
	p.Poll(ctx)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if p.clock.Sleep(ctx, p.q.Every) == nil {
			p.Run(ctx)
		}
	}()
	return func() { cancel(); <-done }
}

// query runs the instant query and reduces its result to one value: the
// highest of the returned series (the worst device, the worst node).
func (p *Poller) query(ctx context.Context) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, p.q.Timeout)
	defer cancel()
	val, _, _, err := p.api.Query(ctx, p.q.Query, time.Now(), v1.WithTimeout(p.q.Timeout))
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return 0, fmt.Errorf("no answer within %v", p.q.Timeout)
		}
		return 0, err
	}
	switch v := val.(type) {
	case model.Vector:
		best, found := math.Inf(-1), false
		for _, s := range v {
			if f := float64(s.Value); !math.IsNaN(f) {
				best, found = max(best, f), true
			}
		}
		if !found {
			if len(v) == 0 {
				return 0, errors.New("returned no series")
			}
			return 0, errors.New("returned only NaN")
		}
		return best, nil
	case *model.Scalar:
		if f := float64(v.Value); !math.IsNaN(f) {
			return f, nil
		}
		return 0, errors.New("returned NaN")
	default:
		return 0, fmt.Errorf("returned a %s: want an instant vector or a scalar", val.Type())
	}
}

// levelOf is the level a reading means.
func (p *Poller) levelOf(v float64, err error) throttle.StorageLevel {
	switch {
	case err != nil && p.q.OnError == inventory.HealthErrorIgnore:
		return throttle.StorageOK
	case err != nil:
		return throttle.StoragePause
	case p.q.PauseAbove != nil && v > *p.q.PauseAbove:
		return throttle.StoragePause
	case p.q.SlowAbove != nil && v > *p.q.SlowAbove:
		return throttle.StorageSlow
	}
	return throttle.StorageOK
}

// report tells notify about a reading that changed something. p.mu is
// held.
func (p *Poller) report(r throttle.StorageReading) {
	c := Change{Cluster: p.cluster, Query: p.q.Query, Previous: p.level, Reading: r}
	errText := ""
	if r.Err != nil {
		errText = r.Err.Error()
	}
	c.Recovered = r.Err == nil && p.lastErr != ""
	changed := r.Level != p.level || errText != p.lastErr
	p.level, p.lastErr = r.Level, errText
	if !changed {
		return
	}
	switch {
	case r.Err != nil:
		c.Text = fmt.Sprintf("cluster %s: health query %q on %s failed: %v; on_error %s: %s",
			p.cluster, p.q.Query, p.q.Prometheus, r.Err, p.q.OnError, p.meaning(r.Level))
	default:
		c.Text = fmt.Sprintf("cluster %s: storage health %s (%s): %s", p.cluster, formatValue(r.Value), p.thresholds(), p.meaning(r.Level))
	}
	p.notify(c)
}

// meaning says what a level does to the cluster.
func (p *Poller) meaning(l throttle.StorageLevel) string {
	switch l {
	case throttle.StoragePause:
		return "paused, no new batch starts until the value falls"
	case throttle.StorageSlow:
		return "slowed, the concurrency limit shrinks"
	}
	return "normal"
}

func (p *Poller) thresholds() string {
	var s string
	if p.q.SlowAbove != nil {
		s = "slow_above " + formatValue(*p.q.SlowAbove)
	}
	if p.q.PauseAbove != nil {
		if s != "" {
			s += ", "
		}
		s += "pause_above " + formatValue(*p.q.PauseAbove)
	}
	return s
}

func formatValue(v float64) string { return fmt.Sprintf("%.4g", v) }
