package planner

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"

	"mailferry/inventory"
)

// relieveGoal brings cluster x under its targets with the fewest bytes it
// can find. Before choosing any move it checks that the targets can be met
// at all (see relieveInfeasible); when they cannot, or when no plan is
// found, it makes no moves unless the policy asks for its best effort (the
// moves that get closest).
func (e *engine) relieveGoal(x int) Goal {
	c := &e.cs[x]
	maxL, maxB := e.pol.TargetLoad*c.capL, e.pol.TargetStorage*c.capB
	state := fmt.Sprintf("%s at load %s, storage %s (targets %s, %s)", c.Name,
		pct(c.loadUtil()), pct(c.storageUtil()), pct(e.pol.TargetLoad), pct(e.pol.TargetStorage))
	needL, needB := e.need(x, maxL, maxB)
	if needL <= 0 && needB <= 0 {
		return Goal{Met: true, Detail: state + ": already under its targets"}
	}
	if why := e.relieveInfeasible(x, maxL, maxB); why != "" {
		// Before anything moves, in flight or not.
		g := Goal{Detail: state + ": cannot be met: " + why, Infeasible: true}
		if !e.pol.BestEffort {
			g.Detail += "; no moves planned (--best-effort plans those that get closest)"
			return g
		}
		e.relieve(x, maxL, maxB, true)
		c := &e.cs[x]
		g.Detail += fmt.Sprintf("; best effort: load %s, storage %s", pct(c.loadUtil()), pct(c.storageUtil()))
		return g
	}
	// Moves in flight off x go on first; the rest is chosen around them.
	e.continueInFlight(func(c int) bool { return c == x })
	inflight := len(e.log)
	met, lb := e.relieve(x, maxL, maxB, true)
	g := Goal{Met: met}
	if lb >= 0 {
		g.LowerBoundBytes = int64(math.Ceil(lb))
	}
	if !met && !e.boundHit {
		// The greedy choice can fill the targets unevenly: choose against
		// the targets' joint room instead, then pack.
		e.rollback(inflight)
		e.unplaced = e.unplaced[:0]
		if e.selectPack(x, maxL, maxB) {
			met, g.Met = true, true
		} else if e.pol.BestEffort {
			e.relieve(x, maxL, maxB, true)
		}
	}
	c = &e.cs[x]
	after := fmt.Sprintf("%s at load %s, storage %s after the moves (targets %s, %s; before %s, %s)", c.Name,
		pct(c.loadUtil()), pct(c.storageUtil()), pct(e.pol.TargetLoad), pct(e.pol.TargetStorage), pct(c.l0/c.capL), pct(float64(c.b0)/c.capB))
	switch {
	case met:
		g.Detail = after
	case e.boundHit:
		g.Detail = "targets not met within the bounds: " + after
	case e.pol.BestEffort:
		g.Detail = "no plan found that meets the targets; best effort: " + after
	default:
		g.Detail = state + ": no plan found that meets the targets (the targets' room is too tight for these mailboxes); no moves planned (--best-effort plans those that get closest)"
	}
	return g
}

// relieveInfeasible says why no plan can bring cluster x to at most maxL
// load and maxB bytes, even if mailboxes could be split, or "" when one
// may. It looks at the mailboxes of x that may move and fit on some target
// alone, and at the joint room of the clusters that may take them (each
// kept under its reserve line): what leaves x must cover what it must shed
// in load and in storage, and fit in that room in both.
func (e *engine) relieveInfeasible(x int, maxL, maxB float64) string {
	c := &e.cs[x]
	needL, needB := e.need(x, maxL, maxB)
	// The receivers and their room.
	var rl, rb float64
	var targets []int
	receivers := 0
	for t := range e.cs {
		tc := &e.cs[t]
		if t == x || !tc.receives {
			continue
		}
		receivers++
		if !e.compat[x][t] {
			continue
		}
		targets = append(targets, t)
		rl += max(0, tc.limL-tc.l)
		rb += max(0, tc.limB-float64(tc.b))
	}
	switch {
	case receivers == 0:
		return "no other cluster may receive (all are degraded, draining, readonly or excluded)"
	case len(targets) == 0:
		var tags []string
		for _, k := range e.pol.SameTags {
			tags = append(tags, fmt.Sprintf("%s=%s", k, c.Tags[k]))
		}
		return fmt.Sprintf("no cluster that may receive has the same %s", strings.Join(tags, ", "))
	}
	// What may move, and what stays whatever the plan.
	var cands []int32
	var stayL, stayB float64
	stuck := 0
	for _, i := range e.byHome[x] {
		m := &e.mbs[i]
		ok := e.movable(i)
		if ok {
			ok = false
			for _, t := range targets {
				tc := &e.cs[t]
				if tc.l+m.Load <= tc.limL && float64(tc.b+m.Bytes) <= tc.limB {
					ok = true
					break
				}
			}
			if !ok {
				stuck++
			}
		}
		if ok {
			cands = append(cands, i)
		} else {
			stayL += m.Load
			stayB += float64(m.Bytes)
		}
	}
	why := []string{"pinned"}
	if e.cooling != nil {
		why = append(why, "moved here within the cooldown")
	}
	if stuck > 0 {
		why = append(why, "bigger than any target's room")
	}
	stays := "its pinned mailboxes"
	if len(why) > 1 {
		stays = fmt.Sprintf("the mailboxes that cannot move (%s or %s)", strings.Join(why[:len(why)-1], ", "), why[len(why)-1])
	}
	reserve := fmt.Sprintf("%.0f%%", 100*e.pol.Reserve)
	switch {
	case stayL > maxL+1e-9:
		return fmt.Sprintf("%s alone carry load %s (%s, over the target)", stays, fmtLoad(stayL), pct(stayL/c.capL))
	case stayB > maxB:
		return fmt.Sprintf("%s alone hold %s (%s, over the target)", stays, inventory.FormatBytes(int64(stayB)), pct(stayB/c.capB))
	case needL > rl+1e-9:
		return fmt.Sprintf("it must shed load %s, but the clusters that may receive have room for load %s (keeping %s in reserve)",
			fmtLoad(needL), fmtLoad(rl), reserve)
	case needB > rb:
		return fmt.Sprintf("it must shed %s, but the clusters that may receive have room for %s (keeping %s in reserve)",
			inventory.FormatBytes(int64(needB)), inventory.FormatBytes(int64(rb)), reserve)
	}
	e.byRelief(cands)
	// Fractional curves: the fewest bytes for a load (most load per byte
	// first) and the most (least first).
	minBytes := func(load float64) float64 { // -1: not enough load
		got, bytes := 0.0, 0.0
		for _, i := range cands {
			m := &e.mbs[i]
			if got+m.Load >= load {
				if m.Load > 0 {
					bytes += float64(m.Bytes) * (load - got) / m.Load
				}
				return bytes
			}
			got += m.Load
			bytes += float64(m.Bytes)
		}
		if got >= load {
			return bytes
		}
		return -1
	}
	// loadAt is the load at which the cumulative bytes of cands in the
	// given direction reach bytes (the total load if they never do).
	loadAt := func(bytes float64, fromTop bool) float64 {
		got, load := 0.0, 0.0
		for k := range cands {
			i := cands[k]
			if !fromTop {
				i = cands[len(cands)-1-k]
			}
			m := &e.mbs[i]
			b := float64(m.Bytes)
			if got+b >= bytes {
				if b > 0 {
					load += m.Load * (bytes - got) / b
				}
				return load
			}
			got += b
			load += m.Load
		}
		return load
	}
	if needL > 0 {
		if b := minBytes(needL); b > rb {
			return fmt.Sprintf("shedding load %s moves at least %s (the mailboxes with the most load per byte first), but the clusters that may receive have room for %s (keeping %s in reserve)",
				fmtLoad(needL), inventory.FormatBytes(int64(b)), inventory.FormatBytes(int64(rb)), reserve)
		}
	}
	if needB > 0 {
		if l := loadAt(needB, false); l > rl+1e-9 {
			return fmt.Sprintf("shedding %s moves at least load %s (the mailboxes with the least load per byte first), but the clusters that may receive have room for load %s (keeping %s in reserve)",
				inventory.FormatBytes(int64(needB)), fmtLoad(l), fmtLoad(rl), reserve)
		}
	}
	// Both at once: some load L between what must go and what fits, whose
	// fewest bytes fit and whose most bytes cover what must go.
	lo := max(needL, 0.0)
	if needB > 0 {
		lo = max(lo, loadAt(needB, false))
	}
	if hi := min(rl, loadAt(rb, true)); lo > hi+1e-9 {
		return fmt.Sprintf("no set of its mailboxes sheds load %s and %s and fits in the room of the clusters that may receive (load %s, %s, keeping %s in reserve)",
			fmtLoad(max(needL, 0)), inventory.FormatBytes(int64(max(needB, 0))), fmtLoad(rl), inventory.FormatBytes(int64(rb)), reserve)
	}
	return ""
}

// selectPack chooses what leaves x as if the clusters that may receive
// were one holding their joint room, then packs the chosen mailboxes onto
// them, largest first, each where the room left is most like it in shape.
// A mailbox it cannot pack is left out and the choice made again (a few
// times). It returns whether x ended under maxL and maxB; if not, every
// move it made is undone.
func (e *engine) selectPack(x int, maxL, maxB float64) bool {
	start := len(e.log)
	var targets []int
	var rl, rb float64
	for t := range e.cs {
		tc := &e.cs[t]
		if t != x && tc.receives && e.compat[x][t] {
			targets = append(targets, t)
			rl += max(0, tc.limL-tc.l)
			rb += max(0, tc.limB-float64(tc.b))
		}
	}
	if len(targets) == 0 || rl <= 0 || rb <= 0 {
		return false
	}
	var held []int32 // left out: pinned for the next choice
	defer func() {
		for _, i := range held {
			e.pinned[i] = false
		}
	}()
	for round := 0; round < 8; round++ {
		e.rollback(start)
		sel := e.selectPooled(x, maxL, maxB, targets, rl, rb)
		if sel == nil {
			return false
		}
		// Pack, largest (against the room) first.
		size := func(i int32) float64 { m := &e.mbs[i]; return max(m.Load/rl, float64(m.Bytes)/rb) }
		slices.SortFunc(sel, func(a, b int32) int {
			if c := cmp.Compare(size(b), size(a)); c != 0 {
				return c
			}
			return cmp.Compare(a, b)
		})
		var left []int32
		for _, i := range sel {
			m := &e.mbs[i]
			bestT, bestS := -1, math.Inf(-1)
			for _, t := range targets {
				if !e.fits(i, t) {
					continue
				}
				tc := &e.cs[t]
				s := m.Load/rl*(tc.limL-tc.l)/rl + float64(m.Bytes)/rb*(tc.limB-float64(tc.b))/rb
				if s > bestS {
					bestT, bestS = t, s
				}
			}
			if bestT < 0 {
				left = append(left, i)
				continue
			}
			e.commit(i, bestT)
		}
		c := &e.cs[x]
		if c.l <= maxL+1e-9 && float64(c.b) <= maxB {
			// Most relief first, as the other policies order moves.
			moved := slices.Clone(e.log[start:])
			e.byRelief(moved)
			e.log = append(e.log[:start], moved...)
			return true
		}
		if len(left) == 0 {
			break
		}
		for _, i := range left {
			e.pinned[i] = true
			held = append(held, i)
		}
	}
	e.rollback(start)
	return false
}

// selectPooled runs the relieve choice against one pooled target holding
// the joint room (rl load, rb bytes) of targets, and returns the chosen
// mailboxes with every move undone; nil if the choice does not meet the
// levels. Mailboxes too big for every target alone are not chosen.
func (e *engine) selectPooled(x int, maxL, maxB float64, targets []int, rl, rb float64) []int32 {
	k := len(e.cs)
	// Hold out what fits on no target alone.
	var held []int32
	for _, i := range e.byHome[x] {
		if !e.movable(i) {
			continue
		}
		ok := false
		for _, t := range targets {
			if e.fits(i, t) {
				ok = true
				break
			}
		}
		if !ok {
			e.pinned[i] = true
			held = append(held, i)
		}
	}
	recv := make([]bool, k)
	for t := range e.cs {
		recv[t] = e.cs[t].receives
		e.cs[t].receives = false
	}
	e.cs = append(e.cs, cstate{receives: true, capB: rb, capL: rl, limB: rb, limL: rl})
	for f := range e.compat {
		e.compat[f] = append(e.compat[f], f == x)
	}
	start := len(e.log)
	met, _ := e.relieve(x, maxL, maxB, false)
	var sel []int32
	for _, i := range e.log[start:] {
		if e.to[i] == int32(k) {
			sel = append(sel, i)
		}
	}
	e.rollback(start)
	e.cs = e.cs[:k]
	for f := range e.compat {
		e.compat[f] = e.compat[f][:k]
	}
	for t := range e.cs {
		e.cs[t].receives = recv[t]
	}
	for _, i := range held {
		e.pinned[i] = false
	}
	if !met {
		return nil
	}
	return sel
}
