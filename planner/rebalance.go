package planner

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"

	"mailferry/inventory"
)

// rebalanceStrategies are the ways rebalance tries, in turn, until one
// reaches the band: by bytes first (alpha 1, which moves the fewest), then
// taking bigger steps, where that gets stuck; and, for inventories small
// enough, true greedy searches that look at every pair after each change.
var rebalanceStrategies = []struct {
	alpha        float64
	eager        bool
	singlesFirst bool
}{{1, false, false}, {0.5, false, false}, {0, false, false}, {0, true, false}, {1, true, false}, {0, true, true}}

// eagerMailboxes and eagerClusters: inventories with at most this many
// mailboxes and clusters get the eager strategies too (each change looks
// at every pair of clusters again).
const (
	eagerMailboxes = 20000
	eagerClusters  = 16
)

// rebalanceBest runs rebalance on e and, when it does not reach the band
// (and no bound stopped it), on fresh engines with the other strategies;
// it returns the first that reaches the band, or the one that got closest.
func rebalanceBest(inv *inventory.Inventory, pol Policy, e *engine) (*engine, Goal) {
	if pol.MaxMoves > 0 && pol.MaxBytes == 0 {
		// Moves are scarce: bigger steps than bytes alone would take.
		e.alpha = 0.5
	}
	best, goal := e, e.rebalance()
	if goal.Met || e.boundHit || e.outOfReach {
		return best, goal
	}
	v := e.totalViolation()
	for _, st := range rebalanceStrategies[1:] {
		if st.eager && (len(inv.Mailboxes) > eagerMailboxes || len(e.cs) > eagerClusters) {
			continue
		}
		f, err := newEngine(inv, pol)
		if err != nil {
			break
		}
		f.alpha, f.eager, f.singlesFirst = st.alpha, st.eager, st.singlesFirst
		g := f.rebalance()
		if g.Met {
			return f, g
		}
		if fv := f.totalViolation(); fv < v-improveEps {
			best, goal, v = f, g, fv
		}
	}
	return best, goal
}

func (e *engine) totalViolation() float64 {
	v := 0.0
	for i := range e.cs {
		v += e.cs[i].violNow()
	}
	return v
}

// bandTolerance: a cluster within this fraction of capacity of the band's
// edge is inside (sums of many loads are not exact).
const bandTolerance = 1e-9

// maxNamed bounds how many clusters a goal's detail names.
const maxNamed = 5

// rebalance brings every cluster into [mean-band, mean+band] in load and in
// storage utilisation, the means being the fleet's (total over capacity).
// Clusters that may not receive only need to be under the band's top. It is
// the local search of search.go with the band as the goal bounds; the
// targets' gain limit is the lower of the reserve and the band's top.
func (e *engine) rebalance() Goal {
	var sumL, sumCL, sumB, sumCB float64
	for i := range e.cs {
		c := &e.cs[i]
		sumL += c.l
		sumCL += c.capL
		sumB += float64(c.b)
		sumCB += c.capB
	}
	band := e.pol.Band
	meanL, meanS := sumL/sumCL, sumB/sumCB
	hiL, hiS := meanL+band, meanS+band
	loL, loS := meanL-band, meanS-band
	for i := range e.cs {
		c := &e.cs[i]
		c.upL, c.upB = hiL*c.capL, hiS*c.capB
		if c.receives {
			c.loL, c.loB = loL*c.capL, loS*c.capB
		}
		c.gainL, c.gainB = min(c.limL, c.upL), min(c.limB, c.upB)
	}
	// Moves in flight go on where they fit; the search may still undo
	// them when that brings the clusters closer to the band.
	e.continueInFlight(nil)
	e.prepareSearch()
	lb, reachable := e.bandBound()
	why := e.bandOutOfReach()
	if why != "" {
		reachable = false
		e.outOfReach = true
	}
	e.search(true)
	e.compactLog(0)

	type outside struct {
		name string
		v    float64
		lu   float64
		su   float64
	}
	var out []outside
	for i := range e.cs {
		c := &e.cs[i]
		if e.outsideBand(c) {
			out = append(out, outside{c.Name, c.violNow(), c.loadUtil(), c.storageUtil()})
		}
	}
	bandText := fmt.Sprintf("load %s-%s, storage %s-%s", pct(max(loL, 0)), pct(hiL), pct(max(loS, 0)), pct(hiS))
	g := Goal{Met: len(out) == 0}
	if reachable {
		g.LowerBoundBytes = int64(math.Ceil(lb))
	}
	if g.Met {
		g.Detail = "every cluster inside the band: " + bandText
		return g
	}
	slices.SortStableFunc(out, func(a, b outside) int { return cmp.Compare(b.v, a.v) })
	var names []string
	for k, o := range out {
		if k == maxNamed {
			names = append(names, fmt.Sprintf("and %d more", len(out)-maxNamed))
			break
		}
		names = append(names, fmt.Sprintf("%s (load %s, storage %s)", o.name, pct(o.lu), pct(o.su)))
	}
	g.Detail = fmt.Sprintf("%s outside the band (%s): %s", plural(len(out), "cluster", "clusters"), bandText, strings.Join(names, ", "))
	switch {
	case why != "":
		g.Detail += "; out of reach: " + why
	case !reachable:
		g.Detail += "; the mailboxes that may move cannot bring every cluster inside"
	}
	return g
}

// bandOutOfReach says why no plan can bring every cluster into the band,
// when the clusters mailboxes may move between (all, or those sharing the
// policy's tags) together hold more than their tops allow or less than
// their floors need; "" otherwise.
func (e *engine) bandOutOfReach() string {
	type group struct {
		l, b, maxL, maxB, minL, minB float64
	}
	groups := map[string]*group{}
	var keys []string
	for i := range e.cs {
		c := &e.cs[i]
		var tags []string
		for _, k := range e.pol.SameTags {
			tags = append(tags, k+"="+c.Tags[k])
		}
		key := strings.Join(tags, ", ")
		g := groups[key]
		if g == nil {
			g = &group{}
			groups[key] = g
			keys = append(keys, key)
		}
		g.l += c.l
		g.b += float64(c.b)
		g.maxL += c.upL
		g.maxB += c.upB
		if c.receives {
			g.minL += c.loL
			g.minB += c.loB
		}
	}
	for _, key := range keys {
		g := groups[key]
		who := "the clusters"
		if key != "" {
			who = "the clusters with " + key
		}
		tl, tb := bandTolerance*max(g.maxL, 1), bandTolerance*max(g.maxB, 1)
		switch {
		case g.l > g.maxL+tl:
			return fmt.Sprintf("%s together carry more load than the band's top allows them", who)
		case g.b > g.maxB+tb:
			return fmt.Sprintf("%s together hold more than the band's top allows them", who)
		case g.l < g.minL-tl:
			return fmt.Sprintf("%s together carry less load than the band's floor asks of them", who)
		case g.b < g.minB-tb:
			return fmt.Sprintf("%s together hold less than the band's floor asks of them", who)
		}
	}
	return ""
}

// outsideBand reports whether c is outside its goal bounds by more than
// the tolerance.
func (e *engine) outsideBand(c *cstate) bool {
	tl, tb := bandTolerance*c.capL, bandTolerance*c.capB
	b := float64(c.b)
	return c.l > c.upL+tl || b > c.upB+tb || c.l < c.loL-tl || b < c.loB-tb
}

// bandBound is a lower bound on the bytes any plan that brings every
// cluster into the band moves. Each moved mailbox leaves one cluster and
// arrives on one, so the bytes are at least the sum over clusters of the
// bytes that must leave them, and at least the sum of those that must
// arrive. What must leave a cluster above the band is at least the least
// that sheds its excess (the fractional knapsack, most load per byte
// first); what must arrive on one below it, the least that brings what it
// lacks (most load per byte first, from wherever it may come). And storage
// couples the two: what leaves must be made up by what arrives where that
// would take the cluster under the band's floor, and what arrives must be
// made up by what leaves where it would take it over the top. reachable is
// false when some cluster cannot shed or take in enough even so.
func (e *engine) bandBound() (lb float64, reachable bool) {
	reachable = true
	k := len(e.cs)
	out := make([]float64, k) // least bytes that must leave each cluster
	in := make([]float64, k)  // and arrive on it
	var cands []int32
	for x := range e.cs {
		c := &e.cs[x]
		needL, needB := c.l-c.upL, float64(c.b)-c.upB
		if needL <= c.capL*bandTolerance && needB <= c.capB*bandTolerance {
			continue
		}
		cands = cands[:0]
		for _, i := range e.sorted[ordRelief][x] {
			if !e.pinned[i] {
				cands = append(cands, i)
			}
		}
		b := e.fractionalBound(cands, needL, needB)
		if b < 0 {
			reachable = false
			continue
		}
		out[x] = b
	}
	pos := make([]int, len(e.cs))
	for y := range e.cs {
		c := &e.cs[y]
		needL, needB := c.loL-c.l, c.loB-float64(c.b)
		if needL <= c.capL*bandTolerance && needB <= c.capB*bandTolerance {
			continue
		}
		// Merge the other clusters' relief orders, most load per byte
		// first, skipping what may not come to y.
		clear(pos)
		next := func() int32 {
			best := int32(-1)
			for s := range e.cs {
				if s == y || !e.compat[s][y] {
					continue
				}
				l := e.sorted[ordRelief][s]
				for pos[s] < len(l) && e.pinned[l[pos[s]]] {
					pos[s]++
				}
				if pos[s] < len(l) && (best < 0 || e.reliefLess(l[pos[s]], best)) {
					best = l[pos[s]]
				}
			}
			if best >= 0 {
				pos[e.home[best]]++
			}
			return best
		}
		bytes := 0.0
		if needL > 0 {
			var ok bool
			if bytes, ok = e.shedLoad(needL, next); !ok {
				reachable = false
				continue
			}
		}
		in[y] = max(bytes, needB)
	}
	// Storage: final bytes = b - out + in, between the floor (clusters that
	// receive) and the top.
	for range 4 {
		for x := range e.cs {
			c := &e.cs[x]
			b := float64(c.b)
			if c.receives {
				in[x] = max(in[x], c.loB-b+out[x])
			}
			out[x] = max(out[x], b+in[x]-c.upB)
		}
	}
	var shed, gain float64
	for x := range e.cs {
		shed += out[x]
		gain += in[x]
	}
	return max(shed, gain), reachable
}
