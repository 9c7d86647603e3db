package planner

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	"mailferry/inventory"
)

// drain moves every movable mailbox off cluster x, most relief per byte
// first. Because targets only fill up, a mailbox that fits nowhere when its
// turn comes fits nowhere at the end either.
func (e *engine) drain(x int) Goal {
	e.continueInFlight(func(c int) bool { return c == x })
	idx := slices.Clone(e.byHome[x])
	e.byRelief(idx)
	stay := 0
	var stayB int64
	for _, i := range idx {
		m := &e.mbs[i]
		if e.to[i] >= 0 {
			continue // in flight: going on to its target
		}
		if e.pinned[i] {
			e.unplace(i, e.pinReason(i))
			stay++
			stayB += m.Bytes
			continue
		}
		if !e.budget(m.Bytes) {
			stay++
			stayB += m.Bytes
			continue
		}
		t, ok := e.best(i)
		if !ok {
			e.unplace(i, "")
			stay++
			stayB += m.Bytes
			continue
		}
		e.commit(i, t)
	}
	name := e.cs[x].Name
	if stay == 0 {
		return Goal{Met: true, Detail: fmt.Sprintf("every mailbox leaves %s", name)}
	}
	return Goal{Detail: fmt.Sprintf("%s (%s) left on %s", plural(stay, "mailbox", "mailboxes"), inventory.FormatBytes(stayB), name)}
}

// pinReason says why a pinned mailbox stays.
func (e *engine) pinReason(i int32) string {
	if e.cooling != nil && e.cooling[i] {
		return fmt.Sprintf("moved here less than %s ago (cooldown)", fmtDuration(e.pol.CooldownSeconds))
	}
	return "pinned"
}

// fmtDuration renders seconds as hours, or days when whole.
func fmtDuration(s float64) string {
	h := s / 3600
	if d := h / 24; d == math.Trunc(d) && d >= 1 {
		return fmt.Sprintf("%.0fd", d)
	}
	return fmt.Sprintf("%gh", math.Round(h*10)/10)
}

// need is how much load and how many bytes cluster x must shed to be at or
// under the given levels (absolute, not fractions).
func (e *engine) need(x int, maxL, maxB float64) (needL, needB float64) {
	c := &e.cs[x]
	return c.l - maxL, float64(c.b) - maxB
}

// relieve moves the fewest bytes it can find that bring cluster x to at most
// maxL load and maxB bytes. It returns whether it got there and the
// fractional-knapsack lower bound on the bytes any plan must move (-1 when
// the mailboxes on x cannot meet the levels at all).
//
// Load is covered first: mailboxes are taken in relief-per-byte order; one
// that would complete the remaining need is not taken at once but remembered
// as a way to finish (the prefix so far plus it), and the scan goes on with
// smaller mailboxes that might finish more cheaply. The cheapest finish wins.
// Storage is then covered the same way in size order, and finally picks that
// are no longer needed are dropped, largest first.
//
// When the levels are not met, mailboxes that fit nowhere are listed as
// unplaceable if report is set.
func (e *engine) relieve(x int, maxL, maxB float64, report bool) (met bool, lowerBound float64) {
	needL, needB := e.need(x, maxL, maxB)
	if needL <= 0 && needB <= 0 {
		return true, 0
	}
	var cands []int32
	for _, i := range e.byHome[x] {
		if e.movable(i) {
			cands = append(cands, i)
		}
	}
	e.byRelief(cands)
	lowerBound = e.fractionalBound(cands, needL, needB)

	start := len(e.log)
	var tried []int32 // considered but fit nowhere
	cover := func(order []int32, need func() float64, weight func(i int32) float64) {
		type finish struct {
			prefix int // log length before the finishing move
			i      int32
			t      int
			cost   int64
		}
		best := finish{cost: math.MaxInt64}
		cost := e.bytes
		for _, i := range order {
			if need() <= 0 || cost >= best.cost {
				break
			}
			if e.to[i] >= 0 {
				continue
			}
			m := &e.mbs[i]
			if weight(i) <= 0 || !e.budget(m.Bytes) {
				continue
			}
			t, ok := e.best(i)
			if !ok {
				tried = append(tried, i)
				continue
			}
			if weight(i) >= need() {
				if c := cost + m.Bytes; c < best.cost {
					best = finish{prefix: len(e.log), i: i, t: t, cost: c}
				}
				continue
			}
			e.commit(i, t)
			cost += m.Bytes
		}
		if need() > 0 && best.cost < math.MaxInt64 {
			e.rollback(best.prefix)
			e.commit(best.i, best.t)
		}
	}
	if needL > 0 {
		cover(cands,
			func() float64 { return e.cs[x].l - maxL },
			func(i int32) float64 { return e.mbs[i].Load })
	}
	if float64(e.cs[x].b) > maxB {
		bySize := slices.Clone(cands)
		slices.SortFunc(bySize, e.largestFirst)
		cover(bySize,
			func() float64 { return float64(e.cs[x].b) - maxB },
			func(i int32) float64 { return float64(e.mbs[i].Bytes) })
	}
	// Drop picks the targets no longer need, largest first.
	picked := slices.Clone(e.log[start:])
	slices.SortFunc(picked, e.largestFirst)
	for _, i := range picked {
		if e.to[i] < 0 {
			continue
		}
		m := &e.mbs[i]
		c := &e.cs[x]
		if c.l+m.Load <= maxL && float64(c.b+m.Bytes) <= maxB {
			e.uncommit(i)
		}
	}
	e.compactLog(start)
	c := &e.cs[x]
	met = c.l <= maxL+1e-9 && float64(c.b) <= maxB
	if !met && report {
		// Each mailbox once: both passes may have tried it.
		slices.Sort(tried)
		for _, i := range slices.Compact(tried) {
			if e.to[i] < 0 {
				e.unplace(i, "")
			}
		}
	}
	return met, lowerBound
}

// largestFirst orders mailboxes by size, largest first, then by index.
func (e *engine) largestFirst(a, b int32) int {
	if c := cmp.Compare(e.mbs[b].Bytes, e.mbs[a].Bytes); c != 0 {
		return c
	}
	return cmp.Compare(a, b)
}

// compactLog drops log entries after start whose moves were undone, and
// repeats (a mailbox the search sent on keeps its first place).
func (e *engine) compactLog(start int) {
	out := e.log[:start]
	var seen map[int32]bool
	for _, i := range e.log[start:] {
		if e.to[i] < 0 {
			continue
		}
		if seen == nil {
			seen = make(map[int32]bool)
		}
		if seen[i] {
			continue
		}
		seen[i] = true
		out = append(out, i)
	}
	e.log = out
}

// shedLoad is the fractional-knapsack step of the lower bounds: it takes
// mailboxes from next (in relief order; -1 when there are no more) until
// their load covers needL, the last one in part, and returns their bytes;
// ok is false when they run out first.
func (e *engine) shedLoad(needL float64, next func() int32) (bytes float64, ok bool) {
	load := 0.0
	for load < needL {
		i := next()
		if i < 0 {
			return bytes, false
		}
		m := &e.mbs[i]
		if load+m.Load >= needL {
			if m.Load > 0 {
				bytes += float64(m.Bytes) * (needL - load) / m.Load
			}
			return bytes, true
		}
		load += m.Load
		bytes += float64(m.Bytes)
	}
	return bytes, true
}

// fractionalBound is the least number of bytes that sheds needL load and
// needB bytes if mailboxes could be split: the relief-ordered prefix that
// covers needL, the last one taken in part, and at least needB. cands must
// be in relief order. It returns -1 if the mailboxes cannot cover the need.
func (e *engine) fractionalBound(cands []int32, needL, needB float64) float64 {
	var bytes, total float64
	for _, i := range cands {
		total += float64(e.mbs[i].Bytes)
	}
	if needB > total {
		return -1
	}
	if needL > 0 {
		k := 0
		var ok bool
		if bytes, ok = e.shedLoad(needL, func() int32 {
			if k == len(cands) {
				return -1
			}
			k++
			return cands[k-1]
		}); !ok {
			return -1
		}
	}
	return max(bytes, needB)
}

// sortedClusters returns the clusters for which keep holds, largest key
// first, ties in inventory order.
func (e *engine) sortedClusters(keep func(int) bool, key func(int) float64) []int {
	var out []int
	for i := range e.cs {
		if keep(i) {
			out = append(out, i)
		}
	}
	slices.SortStableFunc(out, func(a, b int) int { return cmp.Compare(key(b), key(a)) })
	return out
}

func pct(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) }

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
