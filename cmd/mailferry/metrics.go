package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"mailferry/migrate"
	"mailferry/throttle"
)

// metrics are the Prometheus series of one apply, served by
// --metrics-addr.
type metrics struct {
	bytes, messages prometheus.Counter
	moves           *prometheus.GaugeVec // by phase
	results         *prometheus.CounterVec

	mu    sync.Mutex
	phase map[string]string // mailbox -> phase
}

// record feeds one event to the metrics; a nil *metrics (no
// --metrics-addr) ignores it.
func (m *metrics) record(e migrate.Event) {
	if m == nil {
		return
	}
	switch e.Kind {
	case migrate.EventMessageCopied:
		m.messages.Add(float64(e.Messages))
		m.bytes.Add(float64(e.Bytes))
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
	}
}

// serveMetrics serves /metrics on addr until the returned stop is called.
// Per-cluster series read the limiters at scrape time; the rest come from
// the events given to the returned metrics' record.
func serveMetrics(addr string, limiters map[string]*throttle.Limiter) (*metrics, func(), error) {
	reg := prometheus.NewRegistry()
	m := &metrics{
		bytes:    prometheus.NewCounter(prometheus.CounterOpts{Name: "mailferry_bytes_copied_total", Help: "Message bytes appended to targets."}),
		messages: prometheus.NewCounter(prometheus.CounterOpts{Name: "mailferry_messages_copied_total", Help: "Messages appended to targets."}),
		moves:    prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mailferry_moves", Help: "Active moves by phase."}, []string{"phase"}),
		results:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailferry_moves_finished_total", Help: "Moves finished, by result."}, []string{"result"}),
		phase:    map[string]string{},
	}
	reg.MustRegister(m.bytes, m.messages, m.moves, m.results)
	reg.MustRegister(healthCollector(limiters)) // metrics_health.go
	for name, l := range limiters {
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
		gauge("mailferry_cluster_latency_seconds", "Smoothed p90 command latency.", func(s throttle.Stats) float64 { return s.Latency.Seconds() })
		gauge("mailferry_cluster_latency_baseline_seconds", "Latency learned while healthy.", func(s throttle.Stats) float64 { return s.Baseline.Seconds() })
		counter("mailferry_cluster_backoffs_total", "Retries delayed by backoff.", func(s throttle.Stats) float64 { return float64(s.Backoffs) })
		counter("mailferry_cluster_errors_total", "Commands that failed.", func(s throttle.Stats) float64 { return float64(s.Errors) })
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, usageErrorf("--metrics-addr %s: %v", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(os.Stderr, "mailferry: metrics: %v\n", err)
		}
	}()
	return m, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
