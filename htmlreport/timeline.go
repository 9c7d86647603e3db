// Package htmlreport renders plans and runs as self-contained HTML pages
// (inline CSS and SVG, no external assets, no script needed to see them):
// per cluster load and storage before and after, a timeline of the moves,
// throughput per cluster with the throttle's limit and pauses, the ETA
// against what happened, and the table of moves with their reasons.
//
// It also records what the page needs of a run (Recorder), which the
// apply report keeps (RunDocument), so `mailferry report FILE.json --html`
// draws the same page later.
package htmlreport

import (
	"context"
	"sync"
	"time"

	"mailferry/migrate"
	"mailferry/throttle"
)

// Timeline is what happened during one run, in time.
type Timeline struct {
	Start           time.Time       `json:"start"`
	End             time.Time       `json:"end"`
	IntervalSeconds float64         `json:"interval_seconds"`
	Moves           []MoveTimeline  `json:"moves"`
	Clusters        []ClusterSeries `json:"clusters"`
}

// MoveTimeline is one move's phases as the run entered them.
type MoveTimeline struct {
	Mailbox string      `json:"mailbox"`
	From    string      `json:"from"`
	To      string      `json:"to"`
	Phases  []PhaseMark `json:"phases"`
	// Result is the move's result when the run ended ("" if it never
	// reported one).
	Result string `json:"result,omitempty"`
}

// PhaseMark says when a move entered a phase (or, for the last mark, ended
// with a result).
type PhaseMark struct {
	Phase     string  `json:"phase"`
	AtSeconds float64 `json:"at_seconds"` // since Timeline.Start
}

// ClusterSeries is one cluster's samples, one per interval.
type ClusterSeries struct {
	Cluster string          `json:"cluster"`
	Cap     int             `json:"cap"`
	Samples []ClusterSample `json:"samples"`
}

// ClusterSample is one interval of one cluster: the bytes copied off it
// (as a source) and onto it (as a target) during the interval, and its
// throttle at the interval's end.
type ClusterSample struct {
	AtSeconds float64 `json:"at_seconds"`
	BytesOut  int64   `json:"bytes_out"`
	BytesIn   int64   `json:"bytes_in"`
	Limit     int     `json:"limit"`
	InFlight  int     `json:"in_flight"`
	// Paused: no new work started on the cluster at the sample: outside
	// its time windows, or its health_query paused it (HealthPaused).
	Paused       bool     `json:"paused"`
	HealthPaused bool     `json:"health_paused,omitempty"`
	HealthValue  *float64 `json:"health_value,omitempty"` // the storage signal's latest reading
	LatencyP90   float64  `json:"latency_p90_seconds"`    // smoothed p90 command latency
}

// Recorder is a migrate.Observer that builds a Timeline: each move's
// phase changes and, every interval, each cluster's bytes and throttle.
// It is safe for concurrent use.
type Recorder struct {
	interval time.Duration
	now      func() time.Time
	limiter  func(cluster string) *throttle.Limiter

	mu       sync.Mutex
	start    time.Time
	moves    []MoveTimeline
	byName   map[string]int // mailbox -> index in moves
	clusters []ClusterSeries
	byClus   map[string]int
	out, in  map[string]int64 // bytes of the current interval per cluster

	stop chan struct{}
	done chan struct{}
}

// NewRecorder records the moves' phases and samples the clusters (in
// order) every interval (a second when 0). limiter returns a cluster's
// limiter, or nil.
func NewRecorder(moves []migrate.Move, clusters []string, limiter func(string) *throttle.Limiter, interval time.Duration) *Recorder {
	if interval <= 0 {
		interval = time.Second
	}
	r := &Recorder{
		interval: interval, now: time.Now, limiter: limiter,
		byName: make(map[string]int, len(moves)), byClus: make(map[string]int, len(clusters)),
		out: map[string]int64{}, in: map[string]int64{},
	}
	for _, m := range moves {
		r.byName[m.Mailbox] = len(r.moves)
		r.moves = append(r.moves, MoveTimeline{Mailbox: m.Mailbox, From: m.From, To: m.To})
	}
	for _, c := range clusters {
		r.byClus[c] = len(r.clusters)
		s := ClusterSeries{Cluster: c}
		if lim := r.lim(c); lim != nil {
			s.Cap = lim.Snapshot().Cap
		}
		r.clusters = append(r.clusters, s)
	}
	return r
}

func (r *Recorder) lim(c string) *throttle.Limiter {
	if r.limiter == nil {
		return nil
	}
	return r.limiter(c)
}

// Start begins sampling; Stop ends it. The sampler also ends with ctx.
// A nil Recorder records nothing.
func (r *Recorder) Start(ctx context.Context) {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.start = r.now()
	r.stop, r.done = make(chan struct{}), make(chan struct{})
	r.mu.Unlock()
	go func() {
		defer close(r.done)
		t := time.NewTicker(r.interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				r.sample()
			case <-r.stop:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
}

// Stop ends sampling, takes a last sample and returns the timeline.
func (r *Recorder) Stop() *Timeline {
	if r == nil {
		return nil
	}
	if r.stop != nil {
		close(r.stop)
		<-r.done
		r.stop = nil
	}
	r.sample()
	r.mu.Lock()
	defer r.mu.Unlock()
	tl := &Timeline{Start: r.start, End: r.now(), IntervalSeconds: r.interval.Seconds()}
	tl.Moves = append([]MoveTimeline(nil), r.moves...)
	tl.Clusters = append([]ClusterSeries(nil), r.clusters...)
	return tl
}

// Event records a phase change, a move's end or a copied message.
func (r *Recorder) Event(e migrate.Event) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	i, ok := r.byName[e.Mailbox]
	if !ok || r.start.IsZero() {
		return
	}
	m := &r.moves[i]
	switch e.Kind {
	case migrate.EventMovePhase:
		if n := len(m.Phases); n > 0 && m.Phases[n-1].Phase == e.Text {
			return
		}
		m.Phases = append(m.Phases, PhaseMark{Phase: e.Text, AtSeconds: r.since()})
	case migrate.EventMoveDone:
		m.Result = e.Text
		m.Phases = append(m.Phases, PhaseMark{Phase: "end:" + e.Text, AtSeconds: r.since()})
	case migrate.EventMessageCopied:
		r.out[m.From] += e.Bytes
		r.in[m.To] += e.Bytes
	}
}

func (r *Recorder) since() float64 { return r.now().Sub(r.start).Seconds() }

// sample closes the current interval.
func (r *Recorder) sample() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.start.IsZero() {
		return
	}
	at := r.since()
	for i := range r.clusters {
		c := &r.clusters[i]
		s := ClusterSample{AtSeconds: at, BytesOut: r.out[c.Cluster], BytesIn: r.in[c.Cluster]}
		if lim := r.lim(c.Cluster); lim != nil {
			st := lim.Snapshot()
			s.Limit, s.InFlight, s.LatencyP90 = st.Limit, st.InFlight, st.Latency.Seconds()
			s.HealthPaused, s.HealthValue = st.HealthPaused, st.HealthValue
			s.Paused = !lim.InWindow() || st.HealthPaused
		}
		c.Samples = append(c.Samples, s)
	}
	clear(r.out)
	clear(r.in)
}
