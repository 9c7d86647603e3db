package planner

import (
	"math/rand/v2"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"mailferry/inventory"
)

var (
	bigOnce sync.Once
	bigInv  *inventory.Inventory
)

// bigInventory is 1,000,000 mailboxes on 50 clusters, built once.
func bigInventory() *inventory.Inventory {
	bigOnce.Do(func() {
		rng := rand.New(rand.NewPCG(1, 1))
		bigInv = genInventory(rng, shape{
			clusters: 50, perCluster: [2]int{20000, 20000}, utilRange: [2]float64{0.3, 0.85},
			unhealthy: 0.1, pinned: 0.001, regions: 3, capacityRange: [2]float64{20, 60},
		})
	})
	return bigInv
}

// cpuTime is the process's user and system time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Benchmark1M plans 1,000,000 mailboxes on 50 clusters with each policy.
// Run: go test -run '^$' -bench 1M -benchmem -benchtime 3x ./planner/
//
// Besides time and allocations per plan it reports the CPU time per plan
// (user and system, all threads: on a busy machine the wall time is not the
// planner's alone), the live heap at the plan's end and the most the Go
// runtime held from the system (heap-sys-MB, a high-water mark across the
// run) — the inventory itself, ~200 MB, included.
func Benchmark1M(b *testing.B) {
	inv := bigInventory()
	if len(inv.Mailboxes) != 1_000_000 {
		b.Fatalf("%d mailboxes", len(inv.Mailboxes))
	}
	relieve := DefaultPolicy(Relieve, "c07")
	relieve.Assume = []string{"c07.capacity.load=30%"} // at least 100% load: over target
	for _, pol := range []Policy{
		DefaultPolicy(Drain, "c07"),
		relieve,
		DefaultPolicy(Rebalance, ""),
	} {
		b.Run(string(pol.Kind), func(b *testing.B) {
			b.ReportAllocs()
			runtime.GC()
			var cpu time.Duration
			var p *Plan
			for b.Loop() {
				c0 := cpuTime()
				var err error
				p, err = Make(inv, pol)
				if err != nil {
					b.Fatal(err)
				}
				cpu += cpuTime() - c0
			}
			b.ReportMetric(float64(p.Totals.Moves), "moves")
			b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-inuse-MB")
			b.ReportMetric(float64(ms.HeapSys)/(1<<20), "heap-sys-MB")
			if p.Goal.LowerBoundBytes > 0 {
				b.ReportMetric(float64(p.Totals.Bytes)/float64(p.Goal.LowerBoundBytes), "bytes/lower-bound")
			}
		})
	}
}
