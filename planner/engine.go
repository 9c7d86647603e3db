package planner

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"

	"mailferry/inventory"
)

// cstate is one cluster's projection while planning.
type cstate struct {
	inventory.Cluster
	added bool
	capB  float64
	capL  float64
	// b, l, n are the projected bytes, load and mailbox count; b0, l0, n0
	// the inventory's.
	b, b0    int64
	l, l0    float64
	n, n0    int
	in, out  int
	receives bool
	// limB and limL are the most this cluster may hold as a target.
	limB float64
	limL float64
	// The search's goal bounds (see search.go): over above upL/upB, under
	// below loL/loB; a dimension it gains in ends at most at gainL/gainB.
	upL, upB, loL, loB float64
	gainL, gainB       float64
}

func (c *cstate) loadUtil() float64    { return c.l / c.capL }
func (c *cstate) storageUtil() float64 { return float64(c.b) / c.capB }
func (c *cstate) util() float64        { return max(c.loadUtil(), c.storageUtil()) }

// engine holds the state of one planning run. Mailboxes are referred to by
// their index in the inventory.
type engine struct {
	pol Policy
	mbs []inventory.Mailbox
	cs  []cstate
	// home is each mailbox's cluster index; to is where it moves (-1: stays).
	home   []int32
	to     []int32
	pinned []bool
	byHome [][]int32
	// compat[from][to] says whether the tag constraints allow the move.
	compat [][]bool
	// log is every commit in order; uncommitted entries are skipped at the end.
	log   []int32
	moves int
	bytes int64
	// unplaced lists mailboxes that stay; an empty reason is explained
	// against the final state (targets only fill up while a policy places,
	// so what did not fit then does not fit at the end either).
	unplaced []unplaced
	// boundHit: MaxMoves or MaxBytes kept a wanted change out.
	boundHit bool
	// outOfReach: no plan can reach the band (bandOutOfReach).
	outOfReach bool
	// cooling marks mailboxes held by the cooldown (and so pinned).
	cooling []bool

	// Local search state (search.go), built by prepareSearch.
	ratio      []float64
	sorted     [nOrders][][]int32 // each cluster's home mailboxes, in each order
	arr        [nOrders][][]int32 // each cluster's other mailboxes, in each order
	spare      [nOrders][][]int32 // the lists compact replaced, for reuse
	absent     []int              // entries of cluster x's lists no longer on x
	listed     []int32            // the cluster whose lists hold a mailbox, or -1
	logB       []float32          // log of each mailbox's size
	loadF      []float64          // each mailbox's load, dense
	keys       []uint64           // sort scratch
	seen       []uint32
	stamp      uint32
	buf        []int32
	xs, ys     []int32
	near       []nearCand
	scan       []int32
	ver        []uint32 // bumped whenever a cluster's holdings change
	tops       []topCache
	top        topK // the candidates of the pair being evaluated
	touched    []bool
	exhaustive int
	// alpha weighs cost in the search's choice: a change's worth is how
	// much it lowers V over its cost to this power (1: per byte; 0: most).
	alpha float64
	// eager: the search looks at every pair afresh after each change.
	eager bool
	// singlesFirst: swaps only when no single move helps (eager only).
	singlesFirst bool
}

func newEngine(inv *inventory.Inventory, pol Policy) (*engine, error) {
	e := &engine{pol: pol, mbs: inv.Mailboxes, exhaustive: searchExhaustive, alpha: 1}
	if !(pol.Reserve >= 0 && pol.Reserve < 1) {
		return nil, fmt.Errorf("reserve %v: want a fraction in [0, 1)", pol.Reserve)
	}
	if pol.MaxBytes < 0 || pol.MaxMoves < 0 {
		return nil, fmt.Errorf("max bytes and max moves must not be negative")
	}
	clusters := slices.Clone(inv.Clusters)
	for _, s := range pol.Assume {
		if err := applyAssumption(clusters, s); err != nil {
			return nil, err
		}
	}
	index := make(map[string]int32, len(clusters)+len(pol.AddClusters))
	for i, c := range clusters {
		index[c.Name] = int32(i)
	}
	nAdded := 0
	for _, s := range pol.AddClusters {
		c, err := parseNewCluster(s)
		if err != nil {
			return nil, err
		}
		if _, dup := index[c.Name]; dup {
			return nil, fmt.Errorf("add cluster %q: a cluster named %q already exists", s, c.Name)
		}
		index[c.Name] = int32(len(clusters))
		clusters = append(clusters, c)
		nAdded++
	}
	e.cs = make([]cstate, len(clusters))
	for i, c := range clusters {
		if c.Capacity.Bytes <= 0 || !(c.Capacity.Load > 0) {
			return nil, fmt.Errorf("cluster %q: capacity must be positive", c.Name)
		}
		e.cs[i] = cstate{Cluster: c, added: i >= len(clusters)-nAdded, capB: float64(c.Capacity.Bytes), capL: c.Capacity.Load}
	}
	excluded := map[string]bool{}
	for _, name := range pol.ExcludeTargets {
		if _, ok := index[name]; !ok {
			return nil, fmt.Errorf("exclude target %q: no such cluster", name)
		}
		excluded[name] = true
	}
	for i := range e.cs {
		c := &e.cs[i]
		c.receives = c.Health.CanReceive() && !excluded[c.Name]
		c.limB = (1 - pol.Reserve) * c.capB
		c.limL = (1 - pol.Reserve) * c.capL
		c.upL, c.upB = math.Inf(1), math.Inf(1)
		c.loL, c.loB = math.Inf(-1), math.Inf(-1)
		c.gainL, c.gainB = c.limL, c.limB
	}

	// Mailboxes: home cluster, initial totals, pins.
	e.home = make([]int32, len(e.mbs))
	e.to = make([]int32, len(e.mbs))
	e.pinned = make([]bool, len(e.mbs))
	counts := make([]int32, len(e.cs))
	last, lastIdx := "", int32(-1)
	for i := range e.mbs {
		m := &e.mbs[i]
		ci := lastIdx
		if m.Cluster != last || lastIdx < 0 {
			var ok bool
			if ci, ok = index[m.Cluster]; !ok {
				return nil, fmt.Errorf("mailbox %q is on unknown cluster %q", m.Name, m.Cluster)
			}
			last, lastIdx = m.Cluster, ci
		}
		e.home[i] = ci
		e.to[i] = -1
		e.pinned[i] = m.Pinned
		c := &e.cs[ci]
		c.b += m.Bytes
		c.l += m.Load
		c.n++
		counts[ci]++
	}
	for i := range e.cs {
		c := &e.cs[i]
		c.b0, c.l0, c.n0 = c.b, c.l, c.n
	}
	e.byHome = make([][]int32, len(e.cs))
	for i := range e.byHome {
		e.byHome[i] = make([]int32, 0, counts[i])
	}
	for i, h := range e.home {
		e.byHome[h] = append(e.byHome[h], int32(i))
	}
	if len(pol.CoolingDown) > 0 {
		cool := make(map[string]bool, len(pol.CoolingDown))
		for _, name := range pol.CoolingDown {
			cool[name] = true
		}
		e.cooling = make([]bool, len(e.mbs))
		for i := range e.mbs {
			if cool[e.mbs[i].Name] && !e.pinned[i] {
				e.pinned[i] = true
				e.cooling[i] = true
			}
		}
	}
	if len(pol.Pinned) > 0 {
		want := make(map[string]bool, len(pol.Pinned))
		for _, name := range pol.Pinned {
			want[name] = true
		}
		found := 0
		for i := range e.mbs {
			if want[e.mbs[i].Name] {
				e.pinned[i] = true
				found++
			}
		}
		if found < len(want) {
			for _, name := range pol.Pinned {
				if !slices.ContainsFunc(e.mbs, func(m inventory.Mailbox) bool { return m.Name == name }) {
					return nil, fmt.Errorf("pinned mailbox %q is not in the inventory", name)
				}
			}
		}
	}

	// Tag constraints.
	for _, key := range pol.SameTags {
		if !slices.ContainsFunc(e.cs, func(c cstate) bool { _, ok := c.Tags[key]; return ok }) {
			return nil, fmt.Errorf("same tag %q: no cluster has that tag", key)
		}
	}
	e.compat = make([][]bool, len(e.cs))
	for f := range e.cs {
		e.compat[f] = make([]bool, len(e.cs))
		for t := range e.cs {
			ok := f != t
			for _, key := range pol.SameTags {
				ok = ok && e.cs[f].Tags[key] == e.cs[t].Tags[key]
			}
			e.compat[f][t] = ok
		}
	}
	return e, nil
}

func (e *engine) clusterIndex(name string) (int, error) {
	for i := range e.cs {
		if e.cs[i].Name == name {
			return i, nil
		}
	}
	names := make([]string, len(e.cs))
	for i := range e.cs {
		names[i] = e.cs[i].Name
	}
	return 0, fmt.Errorf("no cluster %q (known: %s)", name, strings.Join(names, ", "))
}

// continueInFlight commits the policy's in-flight moves of mailboxes on
// the clusters for which from holds (all when nil) that still may and fit
// (within each target's gain limits), first in the plan.
func (e *engine) continueInFlight(from func(c int) bool) {
	if len(e.pol.InFlight) == 0 {
		return
	}
	idx := make(map[string]int32, len(e.pol.InFlight))
	for _, f := range e.pol.InFlight {
		idx[f.Mailbox] = -1
	}
	for i := range e.mbs {
		if _, ok := idx[e.mbs[i].Name]; ok {
			idx[e.mbs[i].Name] = int32(i)
		}
	}
	for _, f := range e.pol.InFlight {
		i := idx[f.Mailbox]
		if i < 0 || !e.movable(i) {
			continue
		}
		h := int(e.home[i])
		if e.cs[h].Name != f.From || (from != nil && !from(h)) {
			continue
		}
		t, err := e.clusterIndex(f.To)
		if err != nil || t == h || !e.compat[h][t] || !e.fits(i, t) || !e.budget(e.mbs[i].Bytes) {
			continue
		}
		c := &e.cs[t]
		m := &e.mbs[i]
		if c.l+m.Load > c.gainL || float64(c.b+m.Bytes) > c.gainB {
			continue
		}
		e.commit(i, t)
	}
}

// movable reports whether mailbox i may be chosen for a move.
func (e *engine) movable(i int32) bool { return !e.pinned[i] && e.to[i] < 0 }

// fits reports whether target t can take mailbox i within its limits.
func (e *engine) fits(i int32, t int) bool {
	c := &e.cs[t]
	m := &e.mbs[i]
	return c.receives && float64(c.b+m.Bytes) <= c.limB && c.l+m.Load <= c.limL
}

// best picks the target for mailbox i that keeps the worst projected
// utilisation lowest; ties go to the earlier cluster.
func (e *engine) best(i int32) (int, bool) {
	from := e.home[i]
	m := &e.mbs[i]
	bestT, bestScore := -1, math.Inf(1)
	compat := e.compat[from]
	for t := range e.cs {
		if !compat[t] || !e.fits(i, t) {
			continue
		}
		c := &e.cs[t]
		score := max((c.l+m.Load)/c.capL, float64(c.b+m.Bytes)/c.capB)
		if score < bestScore {
			bestT, bestScore = t, score
		}
	}
	return bestT, bestT >= 0
}

// budget reports whether one more move of b bytes stays within the bounds.
func (e *engine) budget(b int64) bool {
	ok := (e.pol.MaxMoves == 0 || e.moves < e.pol.MaxMoves) &&
		(e.pol.MaxBytes == 0 || e.bytes+b <= e.pol.MaxBytes)
	if !ok {
		e.boundHit = true
	}
	return ok
}

func (e *engine) commit(i int32, t int) {
	m := &e.mbs[i]
	from, to := &e.cs[e.home[i]], &e.cs[t]
	from.b -= m.Bytes
	from.l -= m.Load
	from.n--
	from.out++
	to.b += m.Bytes
	to.l += m.Load
	to.n++
	to.in++
	e.to[i] = int32(t)
	e.log = append(e.log, i)
	e.moves++
	e.bytes += m.Bytes
}

// uncommit undoes the move of mailbox i.
func (e *engine) uncommit(i int32) {
	m := &e.mbs[i]
	from, to := &e.cs[e.home[i]], &e.cs[e.to[i]]
	from.b += m.Bytes
	from.l += m.Load
	from.n++
	from.out--
	to.b -= m.Bytes
	to.l -= m.Load
	to.n--
	to.in--
	e.to[i] = -1
	e.moves--
	e.bytes -= m.Bytes
}

// rollback undoes the commits after the first n entries of the log.
func (e *engine) rollback(n int) {
	for _, i := range e.log[n:] {
		if e.to[i] >= 0 {
			e.uncommit(i)
		}
	}
	e.log = e.log[:n]
}

type unplaced struct {
	i      int32
	reason string
}

func (e *engine) unplace(i int32, reason string) {
	e.unplaced = append(e.unplaced, unplaced{i, reason})
}

// unplaceable renders the mailboxes that stay, with their reasons.
func (e *engine) unplaceable() []Unplaceable {
	out := make([]Unplaceable, 0, len(e.unplaced))
	for _, u := range e.unplaced {
		m := &e.mbs[u.i]
		if u.reason == "" {
			u.reason = e.whyNot(u.i)
		}
		out = append(out, Unplaceable{Mailbox: m.Name, Cluster: m.Cluster, Bytes: m.Bytes, Load: round(m.Load), Reason: u.reason})
	}
	return out
}

// whyNot explains why mailbox i fits on no target in the current state.
func (e *engine) whyNot(i int32) string {
	from := int(e.home[i])
	m := &e.mbs[i]
	var (
		receivers, eligible int
		headB, headL        = math.Inf(-1), math.Inf(-1)
		nameB, nameL        string
	)
	for t := range e.cs {
		c := &e.cs[t]
		if t == from || !c.receives {
			continue
		}
		receivers++
		if !e.compat[from][t] {
			continue
		}
		eligible++
		if h := c.limB - float64(c.b); h > headB {
			headB, nameB = h, c.Name
		}
		if h := c.limL - c.l; h > headL {
			headL, nameL = h, c.Name
		}
	}
	switch {
	case receivers == 0:
		return "no other cluster can receive (all are degraded, draining, readonly or excluded)"
	case eligible == 0:
		var tags []string
		for _, k := range e.pol.SameTags {
			tags = append(tags, fmt.Sprintf("%s=%s", k, e.cs[from].Tags[k]))
		}
		return fmt.Sprintf("no cluster that can receive has the same %s", strings.Join(tags, ", "))
	case float64(m.Bytes) > headB:
		return fmt.Sprintf("needs %s; the most free storage on a target, keeping the reserve, is %s on %s",
			inventory.FormatBytes(m.Bytes), inventory.FormatBytes(int64(max(headB, 0))), nameB)
	case m.Load > headL:
		return fmt.Sprintf("carries load %s; the most free load on a target, keeping the reserve, is %s on %s",
			fmtLoad(m.Load), fmtLoad(max(headL, 0)), nameL)
	default:
		return fmt.Sprintf("no single target has room for both its %s and its load %s", inventory.FormatBytes(m.Bytes), fmtLoad(m.Load))
	}
}

// byRelief sorts mailbox indices by load per byte, highest first; a mailbox
// with load and no bytes comes first. Ties: smaller first, then by name.
func (e *engine) byRelief(idx []int32) {
	keys := make([]reliefKey, len(idx))
	for k, i := range idx {
		keys[k] = reliefKey{ratio: ratio(&e.mbs[i]), bytes: e.mbs[i].Bytes, i: i}
	}
	slices.SortFunc(keys, func(a, b reliefKey) int {
		if c := cmp.Compare(b.ratio, a.ratio); c != 0 {
			return c
		}
		if c := cmp.Compare(a.bytes, b.bytes); c != 0 {
			return c
		}
		if c := strings.Compare(e.mbs[a.i].Name, e.mbs[b.i].Name); c != 0 {
			return c
		}
		return cmp.Compare(a.i, b.i)
	})
	for k := range keys {
		idx[k] = keys[k].i
	}
}

type reliefKey struct {
	ratio float64
	bytes int64
	i     int32
}

func ratio(m *inventory.Mailbox) float64 {
	if m.Bytes == 0 {
		if m.Load > 0 {
			return math.Inf(1)
		}
		return 0
	}
	return m.Load / float64(m.Bytes)
}

// round keeps six decimals, so that sums of loads print without noise.
func round(f float64) float64 { return math.Round(f*1e6) / 1e6 }

func fmtLoad(f float64) string { return fmt.Sprintf("%.4g", f) }
