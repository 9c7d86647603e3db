package planner

import (
	"math/rand/v2"
	"sync"
	"testing"

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

// Benchmark1M plans 1,000,000 mailboxes on 50 clusters with each policy.
// Run: go test -run '^$' -bench 1M -benchmem -benchtime 3x ./planner/
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
			for b.Loop() {
				p, err := Make(inv, pol)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(p.Totals.Moves), "moves")
			}
		})
	}
}
