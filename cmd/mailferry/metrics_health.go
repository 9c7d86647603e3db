package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"mailferry/throttle"
)

// healthCollector exports each cluster's storage signal (health_query)
// at scrape time, for the clusters that have had a reading.
type healthCollector map[string]*throttle.Limiter

var (
	healthValueDesc = prometheus.NewDesc("mailferry_health_value",
		"Latest value of the cluster's health_query.", []string{"cluster"}, nil)
	healthPausedDesc = prometheus.NewDesc("mailferry_health_paused",
		"1 while the cluster's health_query holds new batches, else 0.", []string{"cluster"}, nil)
	healthPausedSecondsDesc = prometheus.NewDesc("mailferry_health_paused_seconds_total",
		"Time new batches on the cluster were held by its health_query.", []string{"cluster"}, nil)
	healthErrorsDesc = prometheus.NewDesc("mailferry_health_query_errors_total",
		"Failed or empty health_query readings.", []string{"cluster"}, nil)
)

// Describe implements prometheus.Collector.
func (healthCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- healthValueDesc
	ch <- healthPausedDesc
	ch <- healthPausedSecondsDesc
	ch <- healthErrorsDesc
}

// Collect implements prometheus.Collector.
func (h healthCollector) Collect(ch chan<- prometheus.Metric) {
	for name, l := range h {
		s := l.Snapshot()
		if s.HealthLevel == "" {
			continue
		}
		if s.HealthValue != nil {
			ch <- prometheus.MustNewConstMetric(healthValueDesc, prometheus.GaugeValue, *s.HealthValue, name)
		}
		paused := 0.0
		if s.HealthPaused {
			paused = 1
		}
		ch <- prometheus.MustNewConstMetric(healthPausedDesc, prometheus.GaugeValue, paused, name)
		ch <- prometheus.MustNewConstMetric(healthPausedSecondsDesc, prometheus.CounterValue, s.HealthPausedSeconds, name)
		ch <- prometheus.MustNewConstMetric(healthErrorsDesc, prometheus.CounterValue, float64(s.HealthErrors), name)
	}
}
