package main

import (
	"context"
	"fmt"

	"mailferry/internal/healthquery"
	"mailferry/inventory"
	"mailferry/migrate"
	"mailferry/throttle"
)

// startHealthQueries starts the poller of every cluster with a
// health_query, each after a first reading (so the first batch already
// sees the storage's state). A change goes to observe as an
// EventClusterHealth; a failed query also to warn. stop ends the pollers
// and waits for them; it may be called more than once.
func startHealthQueries(ctx context.Context, inv *inventory.Inventory, limiters map[string]*throttle.Limiter,
	warn func(string), observe func(migrate.Event)) (stop func(), err error) {
	var stops []func()
	stop = func() {
		for _, s := range stops {
			s()
		}
		stops = nil
	}
	for _, c := range inv.Clusters {
		if c.HealthQuery == nil {
			continue
		}
		notify := func(ch healthquery.Change) {
			if ch.Warning() {
				warn(ch.Text)
			}
			observe(migrate.Event{Kind: migrate.EventClusterHealth, Cluster: ch.Cluster, Text: ch.Text})
		}
		p, err := healthquery.New(c.Name, *c.HealthQuery, limiters[c.Name], notify)
		if err != nil {
			stop()
			return nil, usageErrorf("cluster %s: %v", c.Name, err)
		}
		stops = append(stops, p.Start(ctx))
	}
	return stop, nil
}

// healthLine describes a cluster's storage signal at the end of a run, or
// "" for a cluster without one.
func healthLine(st throttle.Stats) string {
	if st.HealthLevel == "" {
		return ""
	}
	value := "none read"
	if st.HealthValue != nil {
		value = fmt.Sprintf("%.4g", *st.HealthValue)
	}
	return fmt.Sprintf("storage health %s: %s at the end (value %s), paused %d times for %.0fs, %d limit decreases, %d of %d queries failed",
		st.Name, st.HealthLevel, value, st.HealthPauses, st.HealthPausedSeconds, st.HealthDecreases, st.HealthErrors, st.HealthReadings)
}
