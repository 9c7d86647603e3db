package planner

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"mailferry/inventory"
)

// The rebalance acceptance tests: an independent heuristic, written here
// and sharing no code with the planner, says whether the band is reachable
// on an inventory; wherever it reaches the band the planner must too, within
// the same hard rules, and a rerun on the planner's result makes no moves.

// band is the goal of a rebalance, computed from scratch.
type band struct {
	loL, hiL, loS, hiS float64
}

func bandOf(inv *inventory.Inventory, width float64) band {
	var l, cl, b, cb float64
	for _, c := range inv.Clusters {
		cl += c.Capacity.Load
		cb += float64(c.Capacity.Bytes)
	}
	for _, m := range inv.Mailboxes {
		l += m.Load
		b += float64(m.Bytes)
	}
	return band{l/cl - width, l/cl + width, b/cb - width, b/cb + width}
}

// heuristic is the independent one: steepest descent on the violation
// (how far clusters are outside the band, in fractions of capacity), each
// step the single move or swap, over every mailbox and every pair, that
// lowers it most. Its hard rules are the planner's: only healthy clusters
// take mailboxes in, a dimension a cluster gains in stays at or under both
// its reserve line and the band's top, pinned mailboxes stay, a mailbox's
// final cluster shares the tags asked for with its home. Swaps are tried
// only when maxSwapScan allows (0: every pair).
type heuristic struct {
	inv     *inventory.Inventory
	pol     Policy
	bd      band
	cluster map[string]int
	at      []int // where each mailbox is
	home    []int
	l       []float64
	b       []float64
	swaps   bool
}

func newHeuristic(inv *inventory.Inventory, pol Policy) *heuristic {
	h := &heuristic{inv: inv, pol: pol, bd: bandOf(inv, pol.Band), cluster: map[string]int{}, swaps: true}
	for i, c := range inv.Clusters {
		h.cluster[c.Name] = i
	}
	h.l = make([]float64, len(inv.Clusters))
	h.b = make([]float64, len(inv.Clusters))
	for _, m := range inv.Mailboxes {
		c := h.cluster[m.Cluster]
		h.at = append(h.at, c)
		h.home = append(h.home, c)
		h.l[c] += m.Load
		h.b[c] += float64(m.Bytes)
	}
	return h
}

func (h *heuristic) receives(c int) bool { return h.inv.Clusters[c].Health == inventory.Healthy }

// violation of cluster c at load l, bytes b.
func (h *heuristic) violation(c int, l, b float64) float64 {
	cl := h.inv.Clusters[c].Capacity
	lu, su := l/cl.Load, b/float64(cl.Bytes)
	v := math.Max(0, lu-h.bd.hiL) + math.Max(0, su-h.bd.hiS)
	if h.receives(c) {
		v += math.Max(0, h.bd.loL-lu) + math.Max(0, h.bd.loS-su)
	}
	return v
}

func (h *heuristic) total() float64 {
	v := 0.0
	for c := range h.inv.Clusters {
		v += h.violation(c, h.l[c], h.b[c])
	}
	return v
}

// gainOK: cluster c going from (l, b) by (dl, db).
func (h *heuristic) gainOK(c int, dl, db float64) bool {
	cl := h.inv.Clusters[c].Capacity
	limL := math.Min((1-h.pol.Reserve)*cl.Load, h.bd.hiL*cl.Load)
	limB := math.Min((1-h.pol.Reserve)*float64(cl.Bytes), h.bd.hiS*float64(cl.Bytes))
	if dl > 0 && h.l[c]+dl > math.Max(limL, h.l[c]) {
		return false
	}
	if db > 0 && h.b[c]+db > math.Max(limB, h.b[c]) {
		return false
	}
	return true
}

// mayGo: mailbox i may end on cluster t.
func (h *heuristic) mayGo(i, t int) bool {
	m := h.inv.Mailboxes[i]
	if t == h.home[i] {
		return true
	}
	if m.Pinned || !h.receives(t) {
		return false
	}
	for _, k := range h.pol.SameTags {
		if h.inv.Clusters[h.home[i]].Tags[k] != h.inv.Clusters[t].Tags[k] {
			return false
		}
	}
	return true
}

// delta of V when cluster s changes by (-dl, -db) and t by (+dl, +db).
func (h *heuristic) delta(s, t int, dl, db float64) float64 {
	return h.violation(s, h.l[s]-dl, h.b[s]-db) - h.violation(s, h.l[s], h.b[s]) +
		h.violation(t, h.l[t]+dl, h.b[t]+db) - h.violation(t, h.l[t], h.b[t])
}

func (h *heuristic) move(i, t int) {
	m := h.inv.Mailboxes[i]
	s := h.at[i]
	h.l[s] -= m.Load
	h.b[s] -= float64(m.Bytes)
	h.l[t] += m.Load
	h.b[t] += float64(m.Bytes)
	h.at[i] = t
}

// run descends until nothing lowers V; it reports whether the band was
// reached and how many mailboxes ended away from home.
func (h *heuristic) run() (bool, int) {
	n := len(h.inv.Mailboxes)
	for step := 0; step < 10*n; step++ {
		if h.total() <= 1e-9 {
			break
		}
		bestDV, bi, bt, bj := -1e-9, -1, -1, -1
		for i := range n {
			m := h.inv.Mailboxes[i]
			for t := range h.inv.Clusters {
				s := h.at[i]
				if t == s || !h.mayGo(i, t) {
					continue
				}
				if t != h.home[i] && !h.gainOK(t, m.Load, float64(m.Bytes)) {
					continue
				}
				if dv := h.delta(s, t, m.Load, float64(m.Bytes)); dv < bestDV {
					bestDV, bi, bt, bj = dv, i, t, -1
				}
			}
		}
		if bi < 0 && h.swaps {
			for i := range n {
				x := h.at[i]
				for j := i + 1; j < n; j++ {
					y := h.at[j]
					if x == y || !h.mayGo(i, y) || !h.mayGo(j, x) {
						continue
					}
					if h.violation(x, h.l[x], h.b[x]) == 0 && h.violation(y, h.l[y], h.b[y]) == 0 {
						continue
					}
					mi, mj := h.inv.Mailboxes[i], h.inv.Mailboxes[j]
					dl, db := mi.Load-mj.Load, float64(mi.Bytes-mj.Bytes) // x to y, net
					if (!h.receives(x) && h.home[j] != x) || (!h.receives(y) && h.home[i] != y) {
						continue
					}
					if !h.gainOK(y, dl, db) || !h.gainOK(x, -dl, -db) {
						continue
					}
					if dv := h.delta(x, y, dl, db); dv < bestDV {
						bestDV, bi, bt, bj = dv, i, y, j
					}
				}
			}
		}
		if bi < 0 {
			break
		}
		if bj >= 0 {
			x := h.at[bi]
			h.move(bi, bt)
			h.move(bj, x)
		} else {
			h.move(bi, bt)
		}
	}
	moved := 0
	for i := range h.at {
		if h.at[i] != h.home[i] {
			moved++
		}
	}
	return h.total() <= 1e-9, moved
}

// applied is inv after p: every moved mailbox on its target.
func applied(inv *inventory.Inventory, p *Plan) *inventory.Inventory {
	out := *inv
	out.Mailboxes = slices.Clone(inv.Mailboxes)
	to := map[string]string{}
	for _, m := range p.Moves {
		to[m.Mailbox] = m.To
	}
	for i := range out.Mailboxes {
		if t, ok := to[out.Mailboxes[i].Name]; ok {
			out.Mailboxes[i].Cluster = t
		}
	}
	return &out
}

// inBand checks the projection against the band computed from scratch.
func inBand(t *testing.T, inv *inventory.Inventory, pol Policy, p *Plan) bool {
	t.Helper()
	cs := checkInvariants(t, inv, pol, p)
	bd := bandOf(inv, pol.Band)
	ok := true
	for _, c := range cs {
		lu, su := c.l/c.c.Capacity.Load, float64(c.b)/float64(c.c.Capacity.Bytes)
		if lu > bd.hiL+1e-9 || su > bd.hiS+1e-9 || c.c.Health == inventory.Healthy && (lu < bd.loL-1e-9 || su < bd.loS-1e-9) {
			ok = false
		}
		// The reserve holds on every cluster that gained.
		if c.in > 0 {
			if c.l > (1-pol.Reserve)*c.c.Capacity.Load+1e-9 && c.l > c.l0+1e-9 ||
				float64(c.b) > (1-pol.Reserve)*float64(c.c.Capacity.Bytes) && c.b > c.b0 {
				t.Fatalf("cluster %s gained past its reserve: load %.4f, storage %.4f", c.c.Name, lu, su)
			}
		}
	}
	if ok != p.Goal.Met {
		t.Fatalf("goal met=%v, but the projection is inside=%v: %s", p.Goal.Met, ok, p.Goal.Detail)
	}
	return ok
}

// rebalanceCase is one generated inventory for the property test.
func rebalanceCase(seed uint64, perCluster [2]int) (*inventory.Inventory, Policy) {
	rng := rand.New(rand.NewPCG(seed, 15))
	s := shape{
		clusters: 3 + rng.IntN(4), perCluster: perCluster, utilRange: [2]float64{0.2, 0.85},
		sameRatio: rng.IntN(3) == 0, capacityRange: [2]float64{1, 4},
	}
	if rng.IntN(3) == 0 {
		s.unhealthy = 0.15
	}
	if rng.IntN(4) == 0 {
		s.pinned = 0.05
	}
	if rng.IntN(4) == 0 {
		s.regions = 2
	}
	inv := genInventory(rng, s)
	pol := DefaultPolicy(Rebalance, "")
	pol.Band = []float64{0.03, 0.05, 0.08}[rng.IntN(3)]
	if s.regions > 0 && rng.IntN(2) == 0 {
		pol.SameTags = []string{"region"}
	}
	return inv, pol
}

// propertyCases is how many inventories TestPropertyRebalanceReachesBand
// generates (1500 pass too; fewer keep the suite quick).
var propertyCases = 400

func TestPropertyRebalanceReachesBand(t *testing.T) {
	reachable, both := 0, 0
	for seed := range uint64(propertyCases) {
		inv, pol := rebalanceCase(seed, [2]int{6, 30})
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			h := newHeuristic(inv, pol)
			hOK, hMoved := h.run()
			p := mustPlan(t, inv, pol)
			ok := inBand(t, inv, pol, p)
			if hOK {
				reachable++
				if !ok {
					t.Fatalf("the heuristic reaches the band (%d mailboxes moved), the planner does not (%d moves): %s", hMoved, len(p.Moves), p.Goal.Detail)
				}
				both++
			}
			// A rerun on the result makes no moves.
			if q := mustPlan(t, applied(inv, p), pol); len(q.Moves) != 0 {
				t.Fatalf("a rerun on the result makes %d moves (first %+v); goal was met=%v", len(q.Moves), q.Moves[0], p.Goal.Met)
			}
		})
	}
	t.Logf("%d of %d inventories reachable by the heuristic; the planner reached all %d", reachable, propertyCases, both)
	if reachable < propertyCases/4 {
		t.Fatalf("only %d reachable cases: the generator no longer tests the property", reachable)
	}
}

// TestPropertyRebalanceWindows is the same on clusters too big for the
// planner to look at every mailbox (it looks at windows of its orders),
// against the heuristic without swaps (moves only, every mailbox).
func TestPropertyRebalanceWindows(t *testing.T) {
	reachable := 0
	for seed := range uint64(40) {
		inv, pol := rebalanceCase(1000+seed, [2]int{80, 160})
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			h := newHeuristic(inv, pol)
			h.swaps = false
			hOK, _ := h.run()
			p := mustPlan(t, inv, pol)
			ok := inBand(t, inv, pol, p)
			if hOK {
				reachable++
				if !ok {
					t.Fatalf("the heuristic reaches the band, the planner does not (%d moves): %s", len(p.Moves), p.Goal.Detail)
				}
			}
			if q := mustPlan(t, applied(inv, p), pol); len(q.Moves) != 0 {
				t.Fatalf("a rerun on the result makes %d moves", len(q.Moves))
			}
		})
	}
	t.Logf("%d of 40 reachable by the heuristic without swaps", reachable)
}

// fourClusters: A heavy in load, B heavy in storage, C and D at the mean
// with little room. Moves alone cannot fix A and B (neither may gain in the
// dimension it is over in); swapping mailboxes between them puts all four
// inside the band.
func fourClusters() *inventory.Inventory {
	inv := &inventory.Inventory{}
	for _, n := range []string{"A", "B", "C", "D"} {
		inv.Clusters = append(inv.Clusters, inventory.Cluster{Name: n, URL: "imaps://" + n + ":993", Health: inventory.Healthy,
			Capacity: inventory.Capacity{Bytes: 1000 << 30, Load: 1000}})
	}
	rng := rand.New(rand.NewPCG(4, 4))
	add := func(c string, n int, gib, load float64) {
		for k := range n {
			f := 0.8 + 0.4*rng.Float64()
			inv.Mailboxes = append(inv.Mailboxes, inventory.Mailbox{Name: fmt.Sprintf("%s%03d", c, k), Cluster: c,
				Bytes: int64(gib * f * (1 << 30)), Load: load * (0.8 + 0.4*rng.Float64())})
		}
	}
	add("A", 50, 8, 16)  // 40% storage, 80% load
	add("B", 50, 16, 8)  // 80% storage, 40% load
	add("C", 50, 12, 12) // 60%, 60%
	add("D", 50, 12, 12)
	return inv
}

func TestRebalanceFourClustersSwaps(t *testing.T) {
	inv := fourClusters()
	pol := DefaultPolicy(Rebalance, "")
	p := mustPlan(t, inv, pol)
	if !inBand(t, inv, pol, p) {
		t.Fatalf("not every cluster inside: %s", p.Goal.Detail)
	}
	var ab, ba int
	for _, m := range p.Moves {
		switch {
		case m.From == "A" && m.To == "B":
			ab++
		case m.From == "B" && m.To == "A":
			ba++
		}
	}
	if ab == 0 || ba == 0 {
		t.Errorf("no swaps between A and B (A->B %d, B->A %d)", ab, ba)
	}
	if q := mustPlan(t, applied(inv, p), pol); len(q.Moves) != 0 {
		t.Fatalf("a rerun makes %d moves", len(q.Moves))
	}
	if p.Goal.LowerBoundBytes <= 0 || p.Totals.Bytes < p.Goal.LowerBoundBytes {
		t.Fatalf("lower bound %d, moved %d", p.Goal.LowerBoundBytes, p.Totals.Bytes)
	}
	t.Logf("%d moves, %s (lower bound %s, %.2fx)", len(p.Moves), inventory.FormatBytes(p.Totals.Bytes),
		inventory.FormatBytes(p.Goal.LowerBoundBytes), float64(p.Totals.Bytes)/float64(p.Goal.LowerBoundBytes))
}

// The example inventory: every cluster ends inside the band, delta too
// (in load and in storage), and a rerun on the result makes no moves.
func TestRebalanceExample(t *testing.T) {
	inv, err := inventory.Load("../testdata/inventory/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pol := DefaultPolicy(Rebalance, "")
	p := mustPlan(t, inv, pol)
	if !inBand(t, inv, pol, p) {
		t.Fatalf("not inside: %s", p.Goal.Detail)
	}
	for _, c := range p.Clusters {
		if c.Name == "delta" && (c.After.LoadUtil > c.Before.LoadUtil || c.After.StorageUtil < c.Before.StorageUtil) {
			t.Errorf("delta went from %+v to %+v", c.Before, c.After)
		}
	}
	if q := mustPlan(t, applied(inv, p), pol); len(q.Moves) != 0 {
		t.Fatalf("a rerun makes %d moves", len(q.Moves))
	}
	if r := float64(p.Totals.Bytes) / float64(p.Goal.LowerBoundBytes); r > 1.25 {
		t.Errorf("moves %s, %.2fx the lower bound %s", inventory.FormatBytes(p.Totals.Bytes), r, inventory.FormatBytes(p.Goal.LowerBoundBytes))
	}
}

// A goal not met names at most a few clusters, however many are outside.
func TestRebalanceDetailShort(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	inv := genInventory(rng, shape{clusters: 50, perCluster: [2]int{3, 6}, utilRange: [2]float64{0.1, 0.9}, capacityRange: [2]float64{1, 4}})
	pol := DefaultPolicy(Rebalance, "")
	pol.Band = 0.001
	pol.MaxMoves = 3
	p := mustPlan(t, inv, pol)
	if p.Goal.Met || len(p.Goal.Detail) > 400 || !strings.Contains(p.Goal.Detail, "more") {
		t.Fatalf("detail (%d characters): %s", len(p.Goal.Detail), p.Goal.Detail)
	}
}

// With moves kept inside regions whose clusters together are above the
// band, the band is out of reach, and the goal says which.
func TestRebalanceOutOfReach(t *testing.T) {
	rng := rand.New(rand.NewPCG(0, 77))
	inv := genInventory(rng, shape{clusters: 20, perCluster: [2]int{50, 300}, utilRange: [2]float64{0.2, 0.85}, regions: 3, capacityRange: [2]float64{1, 4}})
	pol := DefaultPolicy(Rebalance, "")
	pol.SameTags = []string{"region"}
	p := mustPlan(t, inv, pol)
	checkInvariants(t, inv, pol, p)
	if p.Goal.Met || !strings.Contains(p.Goal.Detail, "out of reach: the clusters with region=") {
		t.Fatalf("goal %+v", p.Goal)
	}
	if q := mustPlan(t, applied(inv, p), pol); len(q.Moves) != 0 {
		t.Fatalf("a rerun makes %d moves", len(q.Moves))
	}
}
