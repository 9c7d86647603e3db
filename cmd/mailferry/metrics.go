package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/push"
	"github.com/prometheus/common/expfmt"
	"github.com/spf13/pflag"

	"mailferry/migrate"
	"mailferry/planner"
	"mailferry/throttle"
)

// metricsOptions say where a run's Prometheus series go: served on an
// address while it runs, written to a file for node_exporter's textfile
// collector, and/or pushed to a Pushgateway (for cron runs, which end
// before a scrape).
type metricsOptions struct {
	addr     string
	textfile string
	pushURL  string
	pushJob  string
	every    time.Duration // textfile and push: how often while running
}

func (o *metricsOptions) register(f *pflag.FlagSet) {
	f.StringVar(&o.addr, "metrics-addr", "", "serve Prometheus metrics on `ADDR` (e.g. :9464) while running")
	f.StringVar(&o.textfile, "metrics-textfile", "", "write Prometheus metrics to `FILE` (atomically; for node_exporter's textfile collector) while running and at the end")
	f.StringVar(&o.pushURL, "metrics-push", "", "push Prometheus metrics to the Pushgateway at `URL` while running and at the end (no password in the URL)")
	f.StringVar(&o.pushJob, "metrics-job", "mailferry", "job name of --metrics-push")
	f.DurationVar(&o.every, "metrics-interval", 15*time.Second, "how often --metrics-textfile and --metrics-push write while running")
}

func (o *metricsOptions) enabled() bool { return o.addr != "" || o.textfile != "" || o.pushURL != "" }

// validate checks the options before anything runs.
func (o *metricsOptions) validate() error {
	if o.pushURL != "" {
		u, err := url.Parse(o.pushURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return usageErrorf("--metrics-push %q: want http://HOST:PORT of a Pushgateway", o.pushURL)
		}
		if urlHasPassword(o.pushURL) {
			return usageErrorf("--metrics-push: the URL holds a password; secrets are not given on the command line")
		}
	}
	if (o.textfile != "" || o.pushURL != "") && o.every <= 0 {
		return usageErrorf("--metrics-interval %s: want a positive duration such as 15s", o.every)
	}
	return nil
}

// route is a move's pair of clusters.
type route struct{ from, to string }

// metrics are the Prometheus series of one apply (drain, complete,
// rebalance). A nil *metrics records nothing.
type metrics struct {
	bytes, messages *prometheus.CounterVec // by from, to
	moves           *prometheus.GaugeVec   // by phase
	results         *prometheus.CounterVec // by result
	finishedBytes   prometheus.Gauge

	routes  map[string]route // mailbox -> its move's clusters
	planned map[string]int64 // mailbox -> planned bytes

	mu    sync.Mutex
	phase map[string]string // mailbox -> phase
}

// buildRevision is the VCS revision Go recorded at build time ("" when
// it did not: a build outside a checkout, or with -buildvcs=false), with
// "+dirty" for a modified work tree.
func buildRevision() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var revision, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if revision != "" && modified == "true" {
		revision += "+dirty"
	}
	return revision
}

// newMetrics registers a run's series in reg: the build, the plan's
// totals, what the moves copied by route, their phases and results, and
// per cluster the throttle's state, IMAP latency (a histogram of every
// sample the limiter takes) and the time work waited.
func newMetrics(reg prometheus.Registerer, limiters map[string]*throttle.Limiter, moves []migrate.Move, plan *planner.Plan) *metrics {
	m := &metrics{
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailferry_bytes_copied_total",
			Help: "Message bytes appended to targets in this run, by source and target cluster."}, []string{"from", "to"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailferry_messages_copied_total",
			Help: "Messages appended to targets in this run, by source and target cluster."}, []string{"from", "to"}),
		moves:   prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mailferry_moves", Help: "Active moves by phase."}, []string{"phase"}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailferry_moves_finished_total", Help: "Moves finished, by result."}, []string{"result"}),
		finishedBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mailferry_moves_finished_bytes",
			Help: "Planned bytes of the moves that ended done or were found done; with mailferry_planned_bytes, the fraction of the plan done."}),
		routes: map[string]route{}, planned: map[string]int64{}, phase: map[string]string{},
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{Name: "mailferry_build_info", Help: "The mailferry binary: version and VCS revision; always 1.",
		ConstLabels: prometheus.Labels{"version": buildVersion(), "revision": buildRevision()}})
	build.Set(1)
	reg.MustRegister(m.bytes, m.messages, m.moves, m.results, m.finishedBytes, build)
	reg.MustRegister(healthCollector(limiters)) // metrics_health.go

	var plannedBytes, plannedMessages int64
	msgs := map[string]int64{}
	if plan != nil {
		for _, pm := range plan.Moves {
			msgs[pm.Mailbox] = pm.Messages
		}
	}
	for _, mv := range moves {
		r := route{mv.From, mv.To}
		m.routes[mv.Mailbox], m.planned[mv.Mailbox] = r, mv.Bytes
		plannedBytes += mv.Bytes
		plannedMessages += msgs[mv.Mailbox]
		// Every route is there from the start, at 0, so that rate() and
		// increase() see the first copies.
		m.bytes.WithLabelValues(r.from, r.to)
		m.messages.WithLabelValues(r.from, r.to)
	}
	for _, res := range []string{migrate.ResultDone, migrate.ResultFailed, migrate.ResultHeld, migrate.ResultInterrupted, migrate.ResultSkipped, migrate.ResultSynced} {
		m.results.WithLabelValues(res)
	}
	planned := func(name, help string, v int64) {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
		g.Set(float64(v))
		reg.MustRegister(g)
	}
	planned("mailferry_planned_moves", "Moves this run was given.", int64(len(moves)))
	planned("mailferry_planned_bytes", "Bytes of the moves this run was given, as planned.", plannedBytes)
	planned("mailferry_planned_messages", "Messages of the moves this run was given, as planned (0 where the inventory did not say).", plannedMessages)

	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mailferry_imap_latency_seconds",
		Help:    "IMAP latency by cluster and kind: command (sent to answered), fetch (wait per streamed message), append (answer after the last byte, per MiB beyond the first).",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"cluster", "kind"})
	waited := prometheus.NewDesc("mailferry_cluster_wait_seconds_total",
		"Time work waited on the cluster's throttle, by reason: connection (a connection place under the cap), slot (a command slot under the adaptive limit), rate (the bytes/s and messages/s buckets), window (a time window to open).",
		[]string{"cluster", "reason"}, nil)
	reg.MustRegister(latency, &waitCollector{desc: waited, limiters: limiters})
	for name, l := range limiters {
		l.OnLatency(func(k throttle.Kind, d time.Duration) { latency.WithLabelValues(name, k.String()).Observe(d.Seconds()) })
		labels := prometheus.Labels{"cluster": name}
		gauge := func(metric, help string, f func(throttle.Stats) float64) {
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: metric, Help: help, ConstLabels: labels},
				func() float64 { return f(l.Snapshot()) }))
		}
		counter := func(metric, help string, f func(throttle.Stats) float64) {
			reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: metric, Help: help, ConstLabels: labels},
				func() float64 { return f(l.Snapshot()) }))
		}
		gauge("mailferry_cluster_concurrency_limit", "Adaptive limit of commands in flight.", func(s throttle.Stats) float64 { return float64(s.Limit) })
		gauge("mailferry_cluster_in_flight", "Commands in flight.", func(s throttle.Stats) float64 { return float64(s.InFlight) })
		gauge("mailferry_cluster_connections", "Open connections.", func(s throttle.Stats) float64 { return float64(s.Conns) })
		gauge("mailferry_cluster_latency_baseline_seconds", "Latency the adaptive limit learned while the cluster was healthy (its reference, not a measurement).",
			func(s throttle.Stats) float64 { return s.Baseline.Seconds() })
		counter("mailferry_cluster_commands_total", "IMAP commands sent to the cluster.", func(s throttle.Stats) float64 { return float64(s.Sent) })
		counter("mailferry_cluster_backoffs_total", "Retries delayed by backoff.", func(s throttle.Stats) float64 { return float64(s.Backoffs) })
		counter("mailferry_cluster_backoff_seconds_total", "Time retries were delayed by backoff.", func(s throttle.Stats) float64 { return s.BackoffTime.Seconds() })
		counter("mailferry_cluster_errors_total", "Commands that failed.", func(s throttle.Stats) float64 { return float64(s.Errors) })
	}
	return m
}

// waitCollector reads the limiters' wait times at scrape time.
type waitCollector struct {
	desc     *prometheus.Desc
	limiters map[string]*throttle.Limiter
}

func (c *waitCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *waitCollector) Collect(ch chan<- prometheus.Metric) {
	for name, l := range c.limiters {
		s := l.Snapshot()
		for reason, d := range map[string]time.Duration{"connection": s.ConnWaited, "slot": s.SlotWaited, "rate": s.RateWaited, "window": s.WindowWaited} {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, d.Seconds(), name, reason)
		}
	}
}

// record feeds one event to the metrics; a nil *metrics ignores it.
func (m *metrics) record(e migrate.Event) {
	if m == nil {
		return
	}
	switch e.Kind {
	case migrate.EventMessageCopied:
		r := m.routes[e.Mailbox]
		m.messages.WithLabelValues(r.from, r.to).Add(float64(e.Messages))
		m.bytes.WithLabelValues(r.from, r.to).Add(float64(e.Bytes))
	case migrate.EventMovePhase:
		m.mu.Lock()
		if old, ok := m.phase[e.Mailbox]; ok {
			m.moves.WithLabelValues(old).Dec()
		}
		m.phase[e.Mailbox] = e.Text
		m.moves.WithLabelValues(e.Text).Inc()
		m.mu.Unlock()
	case migrate.EventMoveDone:
		m.mu.Lock()
		if old, ok := m.phase[e.Mailbox]; ok {
			m.moves.WithLabelValues(old).Dec()
			delete(m.phase, e.Mailbox)
		}
		m.mu.Unlock()
		m.results.WithLabelValues(e.Text).Inc()
		if e.Text == migrate.ResultDone || e.Phase == migrate.PhaseDone { // done now, or by an earlier run
			m.finishedBytes.Add(float64(m.planned[e.Mailbox]))
		}
	}
}

// startMetrics serves, writes and pushes the run's series as opts say,
// until the returned stop, which writes and pushes them a last time.
func startMetrics(g *globalOptions, opts metricsOptions, limiters map[string]*throttle.Limiter, moves []migrate.Move, plan *planner.Plan) (*metrics, func(), error) {
	if !opts.enabled() {
		return nil, func() {}, nil
	}
	if err := opts.validate(); err != nil {
		return nil, nil, err
	}
	reg := prometheus.NewRegistry()
	m := newMetrics(reg, limiters, moves, plan)
	var stops []func()
	if opts.addr != "" {
		// The scrape also has the Go runtime's and the process's series;
		// a textfile or a push does not (node_exporter and the Pushgateway
		// have their own, and would clash).
		runtime := prometheus.NewRegistry()
		runtime.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		stop, err := serveMetrics(g, opts.addr, prometheus.Gatherers{reg, runtime})
		if err != nil {
			return nil, nil, err
		}
		stops = append(stops, stop)
	}
	var pusher *push.Pusher
	if opts.pushURL != "" {
		host, _ := os.Hostname()
		pusher = push.New(opts.pushURL, opts.pushJob).Gatherer(reg).Grouping("instance", host)
	}
	write := func() {
		if opts.textfile != "" {
			if err := writeTextfile(opts.textfile, reg); err != nil {
				fmt.Fprintf(g.stderr, "mailferry: metrics: write %s: %v\n", opts.textfile, err)
			}
		}
		if pusher != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := pusher.PushContext(ctx); err != nil {
				fmt.Fprintf(g.stderr, "mailferry: metrics: push to %s: %v\n", opts.pushURL, err)
			}
		}
	}
	if opts.textfile != "" || pusher != nil {
		write() // the plan's totals are there before the first copy
		quit, ended := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(ended)
			t := time.NewTicker(opts.every)
			defer t.Stop()
			for {
				select {
				case <-quit:
					return
				case <-t.C:
					write()
				}
			}
		}()
		stops = append(stops, func() {
			close(quit)
			<-ended
			write() // the final values
		})
	}
	return m, func() {
		for _, stop := range stops {
			stop()
		}
	}, nil
}

// writeTextfile writes what gatherer has to path in the text exposition
// format, atomically: a hidden temporary file in the same directory (which
// node_exporter's textfile collector, reading *.prom, skips) renamed over
// path. The file is mode 0644, as the collector runs as another user, and
// metrics hold no secret. (prometheus.WriteToTextfile would leave it 0600.)
func writeTextfile(path string, gatherer prometheus.Gatherer) error {
	families, err := gatherer.Gather()
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	for _, mf := range families {
		if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
			return err
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// serveMetrics serves /metrics from gatherer on addr until the returned
// stop is called.
func serveMetrics(g *globalOptions, addr string, gatherer prometheus.Gatherer) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, usageErrorf("--metrics-addr %s: %v", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(g.stderr, "mailferry: metrics: %v\n", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
