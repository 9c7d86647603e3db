package planner

import (
	"fmt"
	"math"
	"testing"

	"mailferry/inventory"
	"mailferry/throttle"
)

// etaInventory: 20 mailboxes of 1 GiB on a, to drain onto b, no limits
// (so apply caps connections at --parallel x --connections).
func etaInventory(health inventory.Health) *inventory.Inventory {
	inv := &inventory.Inventory{}
	for _, n := range []string{"a", "b"} {
		inv.Clusters = append(inv.Clusters, inventory.Cluster{Name: n, URL: "imaps://" + n + ":993", Health: inventory.Healthy,
			Capacity: inventory.Capacity{Bytes: 1 << 40, Load: 1000}})
	}
	inv.Clusters[0].Health = health
	for i := range 20 {
		inv.Mailboxes = append(inv.Mailboxes, inventory.Mailbox{Name: fmt.Sprintf("m%02d", i), Cluster: "a", Bytes: 1 << 30, Load: 1, Messages: 1000})
	}
	return inv
}

// Each move: 2 s + (2 GiB / 20 MiB/s + 1000 x 10 ms) / 2 pairs = 58.2 s;
// 4 at a time (apply's --parallel default), 20 moves: 5 rounds, 291 s,
// bound by the parallelism.
func TestETAParallel(t *testing.T) {
	p := mustPlan(t, etaInventory(inventory.Healthy), DefaultPolicy(Drain, "a"))
	if p.ETA.Seconds != 291 || p.ETA.Bottleneck != "parallelism" || p.ETA.Limits[0].Limit != "parallel" {
		t.Fatalf("eta %+v", p.ETA)
	}
	// Without the read-back, and 8 at a time: 2 + 61.2/2 = 32.6 s each,
	// 20 in 8 at a time takes three rounds, but a's 8 connections allow
	// only 4 moves of 2 pairs (or 8 of 1).
	pol := DefaultPolicy(Drain, "a")
	pol.Throughput.Verify = "none"
	pol.Throughput.Parallelism = 8
	inv := etaInventory(inventory.Healthy)
	inv.Clusters[0].Limits.Connections = 8
	p = mustPlan(t, inv, pol)
	if p.ETA.Seconds <= 3*32.6 || p.ETA.Clusters[0].Streams != 8 || p.ETA.Bottleneck != "a" || p.ETA.Limits[0].Limit != "a limits.connections" {
		t.Fatalf("eta %+v", p.ETA)
	}
}

// A degraded source starts its throttle at a quarter of its cap: slower.
func TestETADegradedStart(t *testing.T) {
	healthy := mustPlan(t, etaInventory(inventory.Healthy), DefaultPolicy(Drain, "a"))
	degraded := mustPlan(t, etaInventory(inventory.Degraded), DefaultPolicy(Drain, "a"))
	if !(degraded.ETA.Seconds > healthy.ETA.Seconds) {
		t.Fatalf("degraded %v, healthy %v", degraded.ETA.Seconds, healthy.ETA.Seconds)
	}
}

// Time windows: work runs only while they are open on both sides.
func TestETAWindows(t *testing.T) {
	pol := DefaultPolicy(Drain, "a")
	pol.Throughput.StreamBytesPerSec = 64 << 10 // 20 GiB at 8 x 64 KiB/s: ~11.4 h of copying
	base := mustPlan(t, etaInventory(inventory.Healthy), pol)
	pol.Throughput.Windows = []string{"01:00-06:00"}
	win := mustPlan(t, etaInventory(inventory.Healthy), pol)
	days := math.Floor(base.ETA.Seconds / (5 * 3600))
	rest := base.ETA.Seconds - days*5*3600
	if want := days*86400 + rest; math.Abs(win.ETA.Seconds-want) > 300 || win.ETA.StartsAt != "01:00" {
		t.Fatalf("with a 5 h window: %v s (from %s), want about %v (%v without)", win.ETA.Seconds, win.ETA.StartsAt, want, base.ETA.Seconds)
	}
	if win.ETA.Limits[0].Kind != "windows" && win.ETA.Limits[1].Kind != "windows" {
		t.Errorf("limits %+v", win.ETA.Limits)
	}
	// A cluster's own window counts too.
	inv := etaInventory(inventory.Healthy)
	w, _ := throttle.ParseWindows("01:00-06:00")
	inv.Clusters[1].Limits.Windows = w
	pol.Throughput.Windows = nil
	if p := mustPlan(t, inv, pol); math.Abs(p.ETA.Seconds-win.ETA.Seconds) > 1 {
		t.Fatalf("target's window: %v, global: %v", p.ETA.Seconds, win.ETA.Seconds)
	}
}

// The schedule runs the moves in plan order: a big mailbox last makes a
// long tail.
func TestETAPlanOrder(t *testing.T) {
	inv := etaInventory(inventory.Healthy)
	inv.Mailboxes[0].Bytes = 20 << 30
	pol := DefaultPolicy(Drain, "a")
	order := func(big int) float64 {
		pol := pol
		pol.Throughput = pol.Throughput.withDefaults()
		e, err := newEngine(inv, pol)
		if err != nil {
			t.Fatal(err)
		}
		if big == 0 {
			e.commit(0, 1)
		}
		for i := 1; i < len(inv.Mailboxes); i++ {
			e.commit(int32(i), 1)
		}
		if big != 0 {
			e.commit(0, 1)
		}
		eta, _, _ := e.eta(pol.Throughput)
		return eta.Seconds
	}
	first, last := order(0), order(1)
	if !(last > 1.15*first) {
		t.Fatalf("big first %v s, big last %v s", first, last)
	}
}
