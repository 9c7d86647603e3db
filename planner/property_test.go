package planner

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"mailferry/inventory"
)

// shape describes a family of random inventories.
type shape struct {
	clusters      int
	perCluster    [2]int     // mailboxes per cluster, min and max
	utilRange     [2]float64 // each cluster's utilisation before
	sameRatio     bool       // every cluster has the same load per byte of capacity
	maxShare      float64    // no mailbox above this share of its cluster's load (0: no limit)
	unhealthy     float64    // chance a cluster is not healthy
	pinned        float64    // chance a mailbox is pinned
	regions       int        // tag region values (0: no tags)
	capacityRange [2]float64 // capacity bytes in TiB
}

func genInventory(rng *rand.Rand, s shape) *inventory.Inventory {
	inv := &inventory.Inventory{}
	healths := []inventory.Health{inventory.Degraded, inventory.Draining, inventory.ReadOnly}
	seq := 0
	for c := range s.clusters {
		capB := int64((s.capacityRange[0] + rng.Float64()*(s.capacityRange[1]-s.capacityRange[0])) * (1 << 40))
		capL := float64(capB) / (1 << 30) * (0.5 + rng.Float64()) // load units per GiB vary per cluster
		if s.sameRatio {
			capL = float64(capB) / (1 << 30)
		}
		cl := inventory.Cluster{
			Name:     fmt.Sprintf("c%02d", c),
			URL:      fmt.Sprintf("imaps://c%02d.example:993", c),
			Capacity: inventory.Capacity{Bytes: capB, Load: capL},
			Health:   inventory.Healthy,
		}
		if rng.Float64() < s.unhealthy {
			cl.Health = healths[rng.IntN(len(healths))]
		}
		if s.regions > 0 {
			cl.Tags = map[string]string{"region": fmt.Sprintf("r%d", rng.IntN(s.regions))}
		}
		inv.Clusters = append(inv.Clusters, cl)

		n := s.perCluster[0] + rng.IntN(s.perCluster[1]-s.perCluster[0]+1)
		util := s.utilRange[0] + rng.Float64()*(s.utilRange[1]-s.utilRange[0])
		// Sizes log-normal, load per byte varying around the cluster's
		// capacity ratio; then scaled to the chosen utilisation.
		bs := make([]float64, n)
		ls := make([]float64, n)
		var sumB, sumL float64
		for i := range n {
			bs[i] = math.Exp(rng.NormFloat64()*0.9) + 0.01
			ls[i] = bs[i] * math.Exp(rng.NormFloat64()*0.6)
			sumB += bs[i]
			sumL += ls[i]
		}
		lutil := util
		if !s.sameRatio {
			lutil = s.utilRange[0] + rng.Float64()*(s.utilRange[1]-s.utilRange[0])
		}
		for i := range n {
			seq++
			m := inventory.Mailbox{
				Name:     fmt.Sprintf("u%06d@example.org", seq),
				Cluster:  cl.Name,
				Bytes:    int64(bs[i] / sumB * util * float64(capB)),
				Load:     ls[i] / sumL * lutil * capL,
				Messages: int64(rng.IntN(50000)),
				Pinned:   rng.Float64() < s.pinned,
			}
			if s.maxShare > 0 {
				m.Load = min(m.Load, s.maxShare*lutil*capL)
			}
			inv.Mailboxes = append(inv.Mailboxes, m)
		}
	}
	return inv
}

// checkInvariants verifies what must hold for every plan, recomputing the
// projection from the moves rather than trusting the plan's own figures.
func checkInvariants(t *testing.T, inv *inventory.Inventory, pol Policy, p *Plan) map[string]*cstateT {
	t.Helper()
	cs := map[string]*cstateT{}
	for _, c := range inv.Clusters {
		cs[c.Name] = &cstateT{c: c}
	}
	home := map[string]inventory.Mailbox{}
	for _, m := range inv.Mailboxes {
		home[m.Name] = m
		c := cs[m.Cluster]
		c.b += m.Bytes
		c.l += m.Load
		c.b0, c.l0 = c.b, c.l
	}
	excluded := map[string]bool{}
	for _, x := range pol.ExcludeTargets {
		excluded[x] = true
	}
	seen := map[string]bool{}
	var bytes int64
	for _, mv := range p.Moves {
		m, ok := home[mv.Mailbox]
		if !ok {
			t.Fatalf("move of unknown mailbox %q", mv.Mailbox)
		}
		if seen[mv.Mailbox] {
			t.Fatalf("mailbox %q moved twice", mv.Mailbox)
		}
		seen[mv.Mailbox] = true
		if mv.From != m.Cluster || mv.To == mv.From || mv.Bytes != m.Bytes || mv.Load != m.Load {
			t.Fatalf("move %+v does not match mailbox %+v", mv, m)
		}
		if m.Pinned || slices.Contains(pol.Pinned, m.Name) {
			t.Fatalf("pinned mailbox %q moved", m.Name)
		}
		to := cs[mv.To]
		if !to.c.Health.CanReceive() || excluded[mv.To] {
			t.Fatalf("move of %q onto %s (%s, excluded=%v)", m.Name, mv.To, to.c.Health, excluded[mv.To])
		}
		for _, k := range pol.SameTags {
			if cs[mv.From].c.Tags[k] != to.c.Tags[k] {
				t.Fatalf("move of %q from %s to %s crosses tag %s", m.Name, mv.From, mv.To, k)
			}
		}
		cs[mv.From].b -= m.Bytes
		cs[mv.From].l -= m.Load
		to.b += m.Bytes
		to.l += m.Load
		to.in++
		bytes += m.Bytes
	}
	if pol.MaxMoves > 0 && len(p.Moves) > pol.MaxMoves {
		t.Fatalf("%d moves, bound %d", len(p.Moves), pol.MaxMoves)
	}
	if pol.MaxBytes > 0 && bytes > pol.MaxBytes {
		t.Fatalf("%d bytes, bound %d", bytes, pol.MaxBytes)
	}
	if p.Totals.Moves != len(p.Moves) || p.Totals.Bytes != bytes {
		t.Fatalf("totals %+v, moves say %d moves, %d bytes", p.Totals, len(p.Moves), bytes)
	}
	for _, pc := range p.Clusters {
		c := cs[pc.Name]
		if pc.After.Bytes != c.b || math.Abs(pc.After.Load-c.l) > 1e-4*(1+c.l) {
			t.Fatalf("cluster %s: plan says after %+v, moves give %d bytes, %v load", pc.Name, pc.After, c.b, c.l)
		}
		// Capacity: a cluster that received anything stays within
		// capacity minus the reserve.
		if c.in > 0 {
			if float64(c.b) > (1-pol.Reserve)*float64(c.c.Capacity.Bytes)+1 {
				t.Fatalf("cluster %s over storage: %d > %.0f", pc.Name, c.b, (1-pol.Reserve)*float64(c.c.Capacity.Bytes))
			}
			if c.l > (1-pol.Reserve)*c.c.Capacity.Load*(1+1e-9) {
				t.Fatalf("cluster %s over load: %v > %v", pc.Name, c.l, (1-pol.Reserve)*c.c.Capacity.Load)
			}
		}
	}
	return cs
}

type cstateT struct {
	c     inventory.Cluster
	b, b0 int64
	l, l0 float64
	in    int
}

func mustPlan(t testing.TB, inv *inventory.Inventory, pol Policy) *Plan {
	t.Helper()
	p, err := Make(inv, pol)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPropertyDrain(t *testing.T) {
	for seed := range uint64(60) {
		rng := rand.New(rand.NewPCG(seed, 1))
		inv := genInventory(rng, shape{
			clusters: 2 + rng.IntN(6), perCluster: [2]int{5, 80}, utilRange: [2]float64{0.2, 0.95},
			unhealthy: 0.25, pinned: 0.03, regions: rng.IntN(3), capacityRange: [2]float64{0.5, 4},
		})
		x := inv.Clusters[rng.IntN(len(inv.Clusters))].Name
		pol := DefaultPolicy(Drain, x)
		if inv.Clusters[0].Tags != nil && rng.IntN(2) == 0 {
			pol.SameTags = []string{"region"}
		}
		if rng.IntN(4) == 0 {
			pol.ExcludeTargets = []string{inv.Clusters[rng.IntN(len(inv.Clusters))].Name}
		}
		if rng.IntN(5) == 0 {
			pol.MaxMoves = 1 + rng.IntN(20)
		}
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			p := mustPlan(t, inv, pol)
			cs := checkInvariants(t, inv, pol, p)
			// Nothing left on x could still be placed: check every
			// remaining movable mailbox against every eligible target.
			moved := map[string]bool{}
			for _, m := range p.Moves {
				moved[m.Mailbox] = true
			}
			left := 0
			for _, m := range inv.Mailboxes {
				if m.Cluster != x || moved[m.Name] {
					continue
				}
				left++
				if m.Pinned || pol.MaxMoves > 0 {
					continue
				}
				for _, tc := range cs {
					if tc.c.Name == x || !tc.c.Health.CanReceive() || slices.Contains(pol.ExcludeTargets, tc.c.Name) {
						continue
					}
					if len(pol.SameTags) > 0 && tc.c.Tags["region"] != cs[x].c.Tags["region"] {
						continue
					}
					if float64(tc.b+m.Bytes) <= 0.9*float64(tc.c.Capacity.Bytes) && tc.l+m.Load <= 0.9*tc.c.Capacity.Load {
						t.Fatalf("mailbox %q stays on %s but fits on %s", m.Name, x, tc.c.Name)
					}
				}
			}
			deferred := 0
			if p.Deferred != nil {
				deferred = p.Deferred.Mailboxes
			}
			if left != len(p.Unplaceable)+deferred {
				t.Fatalf("%d mailboxes stay on %s, but %d unplaceable + %d deferred reported", left, x, len(p.Unplaceable), deferred)
			}
			if p.Goal.Met != (left == 0) {
				t.Fatalf("goal met=%v with %d left", p.Goal.Met, left)
			}
			// Drain order: most load per byte first.
			for i := 1; i < len(p.Moves); i++ {
				a, b := p.Moves[i-1], p.Moves[i]
				if a.Load*float64(b.Bytes) < b.Load*float64(a.Bytes)*(1-1e-12) {
					t.Fatalf("move %d (%q) has more load per byte than move %d", i, b.Mailbox, i-1)
				}
			}
		})
	}
}

// lowerBound is the fractional-knapsack minimum number of bytes to move off
// x to shed needL load and needB bytes, written independently of the planner.
func lowerBound(inv *inventory.Inventory, x string, needL, needB float64) float64 {
	var ms []inventory.Mailbox
	for _, m := range inv.Mailboxes {
		if m.Cluster == x && !m.Pinned {
			ms = append(ms, m)
		}
	}
	slices.SortFunc(ms, func(a, b inventory.Mailbox) int {
		// a before b when a has more load per byte
		return cmpFloat(b.Load*float64(a.Bytes), a.Load*float64(b.Bytes))
	})
	got, bytes := 0.0, 0.0
	for _, m := range ms {
		if got >= needL {
			break
		}
		take := math.Min(1, (needL-got)/m.Load)
		got += take * m.Load
		bytes += take * float64(m.Bytes)
	}
	return math.Max(bytes, needB)
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestPropertyRelieveRealistic(t *testing.T) {
	worst := 0.0
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 2))
		inv := genInventory(rng, shape{
			clusters: 3 + rng.IntN(4), perCluster: [2]int{200, 600}, utilRange: [2]float64{0.15, 0.5},
			maxShare: 0.01, capacityRange: [2]float64{1, 4},
		})
		// The cluster to relieve is overloaded in load, storage or both.
		x := &inv.Clusters[0]
		var b int64
		var l float64
		for _, m := range inv.Mailboxes {
			if m.Cluster == x.Name {
				b += m.Bytes
				l += m.Load
			}
		}
		x.Capacity.Load = l / (0.72 + 0.3*rng.Float64())
		x.Capacity.Bytes = int64(float64(b) / (0.6 + 0.35*rng.Float64()))
		pol := DefaultPolicy(Relieve, x.Name)
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			p := mustPlan(t, inv, pol)
			cs := checkInvariants(t, inv, pol, p)
			c := cs[x.Name]
			if c.l > pol.TargetLoad*x.Capacity.Load+1e-9 || float64(c.b) > pol.TargetStorage*float64(x.Capacity.Bytes) {
				t.Fatalf("targets not met: load %v/%v, bytes %d/%d", c.l, x.Capacity.Load, c.b, x.Capacity.Bytes)
			}
			if !p.Goal.Met {
				t.Fatalf("goal says not met: %s", p.Goal.Detail)
			}
			lb := lowerBound(inv, x.Name, l-pol.TargetLoad*x.Capacity.Load, float64(b)-pol.TargetStorage*float64(x.Capacity.Bytes))
			if math.Abs(lb-float64(p.Goal.LowerBoundBytes)) > 1+1e-9*lb {
				t.Errorf("plan's lower bound %d, independent %v", p.Goal.LowerBoundBytes, lb)
			}
			ratio := float64(p.Totals.Bytes) / lb
			worst = max(worst, ratio)
			if ratio > 1.05 {
				t.Fatalf("moves %d bytes, %.3f x the lower bound %.0f", p.Totals.Bytes, ratio, lb)
			}
		})
	}
	t.Logf("worst ratio to the fractional lower bound: %.4f", worst)
}

// TestPropertyRelieveFeasible: on any shape, when every movable mailbox of x
// fits on the other clusters at once, relieve must meet its targets.
func TestPropertyRelieveFeasible(t *testing.T) {
	met := 0
	for seed := range uint64(60) {
		rng := rand.New(rand.NewPCG(seed, 3))
		inv := genInventory(rng, shape{
			clusters: 2 + rng.IntN(5), perCluster: [2]int{3, 60}, utilRange: [2]float64{0.05, 0.95},
			unhealthy: 0.2, pinned: 0.05, capacityRange: [2]float64{0.5, 4},
		})
		x := inv.Clusters[rng.IntN(len(inv.Clusters))].Name
		pol := DefaultPolicy(Relieve, x)
		pol.TargetLoad = 0.3 + 0.5*rng.Float64()
		pol.TargetStorage = 0.3 + 0.5*rng.Float64()
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			p := mustPlan(t, inv, pol)
			cs := checkInvariants(t, inv, pol, p)
			// Feasible if the pinned mailboxes alone are under target and
			// all the movable ones fit on a single target together.
			var pinB int64
			var pinL, movL float64
			var movB int64
			for _, m := range inv.Mailboxes {
				if m.Cluster != x {
					continue
				}
				if m.Pinned {
					pinB += m.Bytes
					pinL += m.Load
				} else {
					movB += m.Bytes
					movL += m.Load
				}
			}
			xc := cs[x].c
			feasible := pinL <= pol.TargetLoad*xc.Capacity.Load && float64(pinB) <= pol.TargetStorage*float64(xc.Capacity.Bytes)
			roomy := false
			for _, c := range inv.Clusters {
				if c.Name == x || !c.Health.CanReceive() {
					continue
				}
				var b int64
				var l float64
				for _, m := range inv.Mailboxes {
					if m.Cluster == c.Name {
						b += m.Bytes
						l += m.Load
					}
				}
				if float64(b+movB) <= 0.9*float64(c.Capacity.Bytes) && l+movL <= 0.9*c.Capacity.Load {
					roomy = true
				}
			}
			if feasible && roomy {
				if !p.Goal.Met {
					t.Fatalf("feasible but not met: %s", p.Goal.Detail)
				}
				met++
			}
			after := cs[x]
			ok := after.l <= pol.TargetLoad*xc.Capacity.Load+1e-9 && float64(after.b) <= pol.TargetStorage*float64(xc.Capacity.Bytes)
			if ok != p.Goal.Met {
				t.Fatalf("goal met=%v but the projection says %v", p.Goal.Met, ok)
			}
		})
	}
	if met < 10 {
		t.Fatalf("only %d feasible cases were generated; the generator no longer tests the property", met)
	}
}

func TestPropertyRebalance(t *testing.T) {
	for seed := range uint64(30) {
		rng := rand.New(rand.NewPCG(seed, 4))
		inv := genInventory(rng, shape{
			clusters: 3 + rng.IntN(6), perCluster: [2]int{200, 500}, utilRange: [2]float64{0.2, 0.8},
			sameRatio: true, maxShare: 0.01, capacityRange: [2]float64{1, 4},
		})
		pol := DefaultPolicy(Rebalance, "")
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			p := mustPlan(t, inv, pol)
			cs := checkInvariants(t, inv, pol, p)
			var l, cl, b, cb float64
			for _, c := range cs {
				l += c.l
				cl += c.c.Capacity.Load
				b += float64(c.b)
				cb += float64(c.c.Capacity.Bytes)
			}
			meanL, meanS := l/cl, b/cb
			for _, c := range cs {
				lu, su := c.l/c.c.Capacity.Load, float64(c.b)/float64(c.c.Capacity.Bytes)
				if math.Abs(lu-meanL) > pol.Band+1e-9 || math.Abs(su-meanS) > pol.Band+1e-9 {
					t.Fatalf("cluster %s outside the band: load %.3f (mean %.3f), storage %.3f (mean %.3f)", c.c.Name, lu, meanL, su, meanS)
				}
			}
			if !p.Goal.Met {
				t.Fatalf("goal not met: %s", p.Goal.Detail)
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	inv := genInventory(rng, shape{clusters: 6, perCluster: [2]int{50, 200}, utilRange: [2]float64{0.1, 0.9},
		unhealthy: 0.2, pinned: 0.02, regions: 2, capacityRange: [2]float64{1, 3}})
	for _, pol := range []Policy{DefaultPolicy(Drain, "c01"), DefaultPolicy(Relieve, "c02"), DefaultPolicy(Rebalance, "")} {
		var first []byte
		for range 3 {
			var buf bytes.Buffer
			if err := WritePlan(&buf, mustPlan(t, inv, pol)); err != nil {
				t.Fatal(err)
			}
			if first == nil {
				first = buf.Bytes()
			} else if !bytes.Equal(first, buf.Bytes()) {
				t.Fatalf("%s: two runs gave different plans", pol.Kind)
			}
		}
	}
}
