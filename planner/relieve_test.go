package planner

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"mailferry/inventory"
)

// tightRelieve is an inventory where c00 must shed load and storage and
// the other clusters have, together, head times the room the fewest bytes
// that do it need, in both dimensions (each its share).
func tightRelieve(seed uint64, head float64) (*inventory.Inventory, Policy) {
	return tightRelieve2(seed, head, head)
}

// tightRelieve2 has headL times the load room and headB times the room in
// bytes.
func tightRelieve2(seed uint64, headL, headB float64) (*inventory.Inventory, Policy) {
	rng := rand.New(rand.NewPCG(seed, 9))
	inv := genInventory(rng, shape{clusters: 6, perCluster: [2]int{300, 3000}, utilRange: [2]float64{0.3, 0.6},
		maxShare: 0.01, capacityRange: [2]float64{1, 4}})
	use := map[string][2]float64{}
	for _, m := range inv.Mailboxes {
		u := use[m.Cluster]
		u[0] += m.Load
		u[1] += float64(m.Bytes)
		use[m.Cluster] = u
	}
	x := &inv.Clusters[0]
	x.Capacity.Load = use[x.Name][0] / 0.95
	x.Capacity.Bytes = int64(use[x.Name][1] / 0.85)
	pol := DefaultPolicy(Relieve, x.Name)
	needL := use[x.Name][0] - pol.TargetLoad*x.Capacity.Load
	needB := use[x.Name][1] - pol.TargetStorage*float64(x.Capacity.Bytes)
	lb := lowerBound(inv, x.Name, needL, needB)
	shares := make([]float64, len(inv.Clusters))
	var tot float64
	for i := 1; i < len(shares); i++ {
		shares[i] = 0.5 + rng.Float64()
		tot += shares[i]
	}
	for i := 1; i < len(inv.Clusters); i++ {
		c := &inv.Clusters[i]
		c.Capacity.Load = (use[c.Name][0] + headL*needL*shares[i]/tot) / (1 - pol.Reserve)
		c.Capacity.Bytes = int64((use[c.Name][1] + headB*lb*shares[i]/tot) / (1 - pol.Reserve))
	}
	return inv, pol
}

// At 1.01x the room the fewest bytes need, a plan exists (the mailboxes
// are small): relieve must find it.
func TestRelieveTightHeadroom(t *testing.T) {
	for seed := range uint64(20) {
		inv, pol := tightRelieve(seed, 1.01)
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			p := mustPlan(t, inv, pol)
			checkInvariants(t, inv, pol, p)
			if !p.Goal.Met {
				t.Fatalf("not met at 1.01x headroom: %s", p.Goal.Detail)
			}
			if r := float64(p.Totals.Bytes) / float64(p.Goal.LowerBoundBytes); r > 1.01 {
				t.Errorf("moves %.4fx the lower bound", r)
			}
		})
	}
}

// Short of room, no plan exists, and relieve knows it before choosing a
// move, says why, and plans nothing unless asked for its best effort.
func TestRelieveShortOfRoom(t *testing.T) {
	for _, tc := range []struct {
		headL, headB float64
		want         string
	}{
		{0.95, 2, "it must shed load"},
		{2, 0.95, "shedding load"},
	} {
		inv, pol := tightRelieve2(3, tc.headL, tc.headB)
		p := mustPlan(t, inv, pol)
		if p.Goal.Met || !p.Goal.Infeasible || len(p.Moves) != 0 || !strings.Contains(p.Goal.Detail, "cannot be met: "+tc.want) {
			t.Fatalf("goal %+v, %d moves", p.Goal, len(p.Moves))
		}
		t.Log(p.Goal.Detail)
		pol.BestEffort = true
		p = mustPlan(t, inv, pol)
		checkInvariants(t, inv, pol, p)
		if p.Goal.Met || len(p.Moves) == 0 {
			t.Fatalf("best effort: goal %+v, %d moves", p.Goal, len(p.Moves))
		}
	}
}
