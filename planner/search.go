package planner

import (
	"container/heap"
	"math"
	"slices"
	"sort"
)

// The local search behind Rebalance (and the repair step of Relieve).
//
// The state is where each mailbox is (its home, or the target of its move).
// Each cluster has goal bounds in both dimensions: a level above which it is
// over and one below which it is under; the violation V is the sum, over
// clusters and dimensions, of the distance outside those bounds as a
// fraction of capacity. The search repeatedly commits the most byte-efficient
// change that lowers V by more than improveEps: a single move (which may also
// send a mailbox moved earlier in this plan on to another cluster, or back
// home) or a swap of two mailboxes between two clusters. It stops when V is
// 0 or nothing in its neighbourhood lowers V.
//
// The neighbourhood is a function of the state alone (which mailboxes are on
// which cluster, and the clusters' totals), never of how the state was
// reached: a rerun on the result of a plan (the mailboxes placed on their
// targets) finds nothing to improve, so it makes no moves.
//
// Hard rules: a dimension a cluster gains in must end at or under its gain
// limit (the reserve, and for Rebalance the band's top), only clusters that
// may receive gain (a mailbox going back home is not a gain: it just stays),
// tag constraints hold between a mailbox's home and where it ends, pinned
// mailboxes stay home, and the bounds on moves and bytes hold.

const (
	// searchWindow is how many mailboxes of a cluster are candidates
	// around each position of its relief order the search looks at.
	searchWindow = 16
	// swapWindow is searchWindow for each side of a swap.
	swapWindow = 8
	// searchExhaustive: a cluster with at most this many mailboxes has all
	// of them as candidates.
	searchExhaustive = 48
	// moveCostBytes is what one more move costs besides its bytes (logins,
	// passes, verification), in bytes, when changes are compared by
	// efficiency: it keeps the search from preferring many tiny moves.
	moveCostBytes = 1 << 20
	// improveEps: a change must lower V by more than this (a fraction of
	// capacity) to count.
	improveEps = 1e-9
	// batchKeep: after a committed change, more of the same pair of
	// clusters are committed while they stay at least this efficient.
	batchKeep = 0.8
)

// viol is the violation of cluster c holding load l and bytes b.
func (c *cstate) viol(l, b float64) float64 {
	v := 0.0
	if l > c.upL {
		v += (l - c.upL) / c.capL
	} else if l < c.loL {
		v += (c.loL - l) / c.capL
	}
	if b > c.upB {
		v += (b - c.upB) / c.capB
	} else if b < c.loB {
		v += (c.loB - b) / c.capB
	}
	return v
}

func (c *cstate) violNow() float64 { return c.viol(c.l, float64(c.b)) }

// cand is one change the search may commit: mailbox i to cluster ti and, for
// a swap, mailbox j to cluster tj.
type cand struct {
	i, j   int32
	ti, tj int32
	dv     float64 // change of V (negative: better)
	cost   float64 // bytes-equivalent cost; <= 0 when it moves no new bytes
	// tier and val order candidates: changes that cost nothing first (by
	// how much they lower V), then by V lowered per cost^alpha.
	tier int
	val  float64
	ok   bool
}

func (e *engine) rate(c cand) cand {
	c.ok = true
	if c.cost <= 0 {
		c.tier, c.val = 1, -c.dv
		return c
	}
	switch e.alpha {
	case 1:
		c.val = -c.dv / c.cost
	case 0:
		c.val = -c.dv
	default:
		c.val = -c.dv / math.Pow(c.cost, e.alpha)
	}
	return c
}

// topK keeps the best few candidates, best first.
type topK struct {
	c [altKeep]cand
	n int
}

// altKeep is how many candidates a pair's evaluation keeps, so that after
// committing the best the next can be checked again instead of looking
// at the pair afresh.
const altKeep = 4

func (t *topK) offer(c cand) {
	if !c.ok {
		return
	}
	if t.n == altKeep && !c.better(t.c[altKeep-1]) {
		return
	}
	j := t.n
	if j < altKeep {
		t.n++
	} else {
		j = altKeep - 1
	}
	for j > 0 && c.better(t.c[j-1]) {
		t.c[j] = t.c[j-1]
		j--
	}
	t.c[j] = c
}

func (t *topK) best() cand {
	if t.n == 0 {
		return cand{}
	}
	return t.c[0]
}

func (c cand) better(o cand) bool {
	if !o.ok {
		return c.ok
	}
	if !c.ok {
		return false
	}
	if c.tier != o.tier {
		return c.tier > o.tier
	}
	if c.val != o.val {
		return c.val > o.val
	}
	return c.cost < o.cost
}

// where is the cluster mailbox i is on in the current state.
func (e *engine) where(i int32) int32 {
	if t := e.to[i]; t >= 0 {
		return t
	}
	return e.home[i]
}

// The search keeps each cluster's mailboxes in three orders: relief (most
// load per byte first), load (most first) and size (largest first). Each
// order of a cluster is a sorted list (at first its home mailboxes; entries
// that left are skipped) plus a short sorted list of the mailboxes that
// arrived since; when those add up, the cluster's lists are rebuilt.
const (
	ordRelief = iota
	ordLoad
	ordBytes
	nOrders
)

// prepareSearch builds the per-cluster orders and the bookkeeping the
// search needs.
func (e *engine) prepareSearch() {
	n := len(e.mbs)
	e.ratio = make([]float64, n)
	for i := range e.mbs {
		e.ratio[i] = ratio(&e.mbs[i])
	}
	for o := range nOrders {
		e.sorted[o] = make([][]int32, len(e.cs))
		e.arr[o] = make([][]int32, len(e.cs))
		e.spare[o] = make([][]int32, len(e.cs))
	}
	for x := range e.cs {
		l := slices.Clone(e.byHome[x])
		e.sortBy(ordRelief, l)
		if l == nil {
			l = []int32{}
		}
		e.sorted[ordRelief][x] = l
	}
	e.absent = make([]int, len(e.cs))
	e.listed = make([]int32, n)
	e.logB = make([]float32, n)
	e.loadF = make([]float64, n)
	for i := range e.mbs {
		e.listed[i] = e.home[i]
		e.logB[i] = float32(math.Log(float64(e.mbs[i].Bytes) + 1))
		e.loadF[i] = e.mbs[i].Load
		if t := e.to[i]; t >= 0 {
			e.arrInsert(int(t), int32(i))
			e.absent[e.home[i]]++
		}
	}
	e.seen = make([]uint32, n)
	e.stamp = 0
}

// reliefLess is the relief order: more load per byte first, then smaller,
// then by name (names are unique, so the order is total and depends on
// nothing but the mailboxes).
func (e *engine) reliefLess(a, b int32) bool {
	ra, rb := e.ratio[a], e.ratio[b]
	if ra != rb {
		return ra > rb
	}
	ma, mb := &e.mbs[a], &e.mbs[b]
	if ma.Bytes != mb.Bytes {
		return ma.Bytes < mb.Bytes
	}
	return ma.Name < mb.Name
}

// less is order o.
func (e *engine) less(o int, a, b int32) bool {
	ma, mb := &e.mbs[a], &e.mbs[b]
	switch o {
	case ordLoad:
		if ma.Load != mb.Load {
			return ma.Load > mb.Load
		}
	case ordBytes:
		if ma.Bytes != mb.Bytes {
			return ma.Bytes > mb.Bytes
		}
	default:
		return e.reliefLess(a, b)
	}
	return ma.Name < mb.Name
}

func (e *engine) sortBy(o int, idx []int32) {
	// By a float32 image of the key packed with the index (a plain sort of
	// integers), then runs whose images are equal by the full order.
	ks := e.keys[:0]
	for _, i := range idx {
		var k float32
		switch o {
		case ordLoad:
			k = float32(e.loadF[i])
		case ordBytes:
			k = float32(e.mbs[i].Bytes)
		default:
			k = float32(e.ratio[i])
		}
		// Descending: the larger key first; non-negative floats order as
		// their bits do.
		ks = append(ks, uint64(^math.Float32bits(k))<<32|uint64(uint32(i)))
	}
	slices.Sort(ks)
	for n, k := range ks {
		idx[n] = int32(uint32(k))
	}
	for lo := 0; lo < len(ks); {
		hi := lo + 1
		for hi < len(ks) && ks[hi]>>32 == ks[lo]>>32 {
			hi++
		}
		if hi-lo > 1 {
			slices.SortFunc(idx[lo:hi], func(a, b int32) int {
				switch {
				case a == b:
					return 0
				case e.less(o, a, b):
					return -1
				default:
					return 1
				}
			})
		}
		lo = hi
	}
	e.keys = ks
}

func (e *engine) sortRelief(idx []int32) { e.sortBy(ordRelief, idx) }

// list is cluster x's list in order o, built on first use for the load
// and size orders (from the relief list, which has the same entries).
func (e *engine) list(o, x int) []int32 {
	l := e.sorted[o][x]
	if l == nil {
		l = slices.Clone(e.sorted[ordRelief][x])
		e.sortBy(o, l)
		if l == nil {
			l = []int32{}
		}
		e.sorted[o][x] = l
	}
	return l
}

// arrInsert and arrRemove keep the mailboxes on x that are not in x's
// lists.
func (e *engine) arrInsert(x int, i int32) {
	for o := range nOrders {
		a := e.arr[o][x]
		k := sort.Search(len(a), func(k int) bool { return !e.less(o, a[k], i) })
		e.arr[o][x] = slices.Insert(a, k, i)
	}
}

func (e *engine) arrRemove(x int, i int32) {
	for o := range nOrders {
		a := e.arr[o][x]
		k := sort.Search(len(a), func(k int) bool { return !e.less(o, a[k], i) })
		if k < len(a) && a[k] == i {
			e.arr[o][x] = slices.Delete(a, k, k+1)
		}
	}
}

// place puts mailbox i on cluster t: a new move, a move sent on to another
// target, or (t its home) an undone move.
func (e *engine) place(i int32, t int) {
	s := e.where(i)
	if e.listed[i] == s {
		e.absent[s]++
	} else {
		e.arrRemove(int(s), i)
	}
	if e.to[i] >= 0 {
		e.uncommit(i)
	}
	if int32(t) != e.home[i] {
		e.commit(i, t)
	}
	if e.listed[i] == int32(t) {
		e.absent[t]--
	} else {
		e.arrInsert(t, i)
	}
	e.touched[s] = true
	e.touched[t] = true
	for _, c := range [2]int{int(s), t} {
		if e.absent[c]+len(e.arr[ordRelief][c]) > compactAfter {
			e.compact(c)
		}
	}
}

// compactAfter: a cluster's lists are rebuilt, without the mailboxes that
// left and with those that arrived, once this many have.
const compactAfter = 512

func (e *engine) compact(x int) {
	for o := range nOrders {
		old, arr := e.sorted[o][x], e.arr[o][x]
		if old == nil { // not built yet: list builds it from the relief list
			e.arr[o][x] = arr[:0]
			continue
		}
		out := e.spare[o][x][:0]
		if cap(out) < e.cs[x].n {
			out = make([]int32, 0, e.cs[x].n+e.cs[x].n/4)
		}
		for _, i := range old {
			if e.where(i) == int32(x) {
				out = append(out, i)
			} else if o == 0 {
				e.listed[i] = -1
			}
		}
		// Merge the arrivals in, from the back: each goes before the
		// first entry it precedes.
		n := len(out)
		out = append(out, arr...)
		end := len(out)
		for k := len(arr) - 1; k >= 0; k-- {
			a := arr[k]
			p := sort.Search(n, func(j int) bool { return e.less(o, a, out[j]) })
			copy(out[p+k+1:end], out[p:n])
			end = p + k + 1
			n = p
			out[p+k] = a
		}
		e.spare[o][x] = old
		e.sorted[o][x] = out
		e.arr[o][x] = arr[:0]
	}
	for _, i := range e.sorted[0][x] {
		e.listed[i] = int32(x)
	}
	e.absent[x] = 0
}

// begin starts collecting candidates into buf (emptied): add skips repeats.
func (e *engine) begin(buf []int32) []int32 {
	e.stamp++
	if e.stamp == 0 { // wrapped: forget every mark
		clear(e.seen)
		e.stamp = 1
	}
	return buf[:0]
}

func (e *engine) add(buf []int32, i int32) []int32 {
	if e.seen[i] != e.stamp {
		e.seen[i] = e.stamp
		buf = append(buf, i)
	}
	return buf
}

// few reports whether cluster x holds so few mailboxes that every one is a
// candidate; all adds them.
func (e *engine) few(x int) bool { return e.cs[x].n <= e.exhaustive }

func (e *engine) all(buf []int32, x int) []int32 {
	for _, i := range e.sorted[ordRelief][x] {
		if e.where(i) == int32(x) {
			buf = e.add(buf, i)
		}
	}
	for _, i := range e.arr[ordRelief][x] {
		buf = e.add(buf, i)
	}
	return buf
}

// Candidates are picked from a cluster's orders: scan up to n mailboxes
// from a position in one direction, and keep the k best by a selector.
type selector int

const (
	selFirst    selector = iota // the first k
	selSize                     // size closest to a target (in ratio)
	selMaxBytes                 // largest
	selMinBytes                 // smallest
	selMaxLoad                  // most load
	selMinLoad                  // least load
	selMaxRatio                 // most load per byte
	selMinRatio                 // least load per byte
)

// pick adds to buf the k best by sel of the first n mailboxes on x in order
// o from positions im (home list) and ia (others) in direction dir. ls is
// the log of the target size for selSize.
func (e *engine) pick(buf []int32, o, x, im, ia, dir, n, k int, sel selector, ls float32) []int32 {
	if sel == selFirst {
		return e.walk(buf, o, x, im, ia, dir, k)
	}
	e.scan = e.walkAll(e.scan[:0], o, x, im, ia, dir, n)
	if len(e.scan) <= k {
		for _, i := range e.scan {
			buf = e.add(buf, i)
		}
		return buf
	}
	e.near = e.keep(e.near[:0], e.scan, k, sel, ls)
	for _, c := range e.near {
		buf = e.add(buf, c.i)
	}
	return buf
}

// keep selects from scan the k best by sel into near, best first.
func (e *engine) keep(near []nearCand, scan []int32, k int, sel selector, ls float32) []nearCand {
	for _, i := range scan {
		var d float32
		switch sel {
		case selSize:
			d = e.logB[i] - ls
			if d < 0 {
				d = -d
			}
		case selMaxBytes:
			d = -e.logB[i]
		case selMinBytes:
			d = e.logB[i]
		case selMaxLoad:
			d = -float32(e.mbs[i].Load)
		case selMinLoad:
			d = float32(e.mbs[i].Load)
		case selMaxRatio:
			d = -float32(e.ratio[i])
		case selMinRatio:
			d = float32(e.ratio[i])
		}
		if len(near) == k && d >= near[k-1].d {
			continue
		}
		j := len(near)
		if j < k {
			near = append(near, nearCand{})
		} else {
			j = k - 1
		}
		for j > 0 && near[j-1].d > d {
			near[j] = near[j-1]
			j--
		}
		near[j] = nearCand{d, i}
	}
	return near
}

// under2 adds, of the scanFactor*(k1+k2) mailboxes on x with the most load
// (o ordLoad) or bytes (ordBytes) not above limit, the k1 best by sel1 and
// the k2 best by sel2.
func (e *engine) under2(buf []int32, o, x int, limit float64, k1 int, sel1 selector, k2 int, sel2 selector) []int32 {
	if !(limit >= 0) {
		return buf
	}
	im, ia := e.atMost(o, x, limit)
	e.scan = e.walkAll(e.scan[:0], o, x, im, ia, +1, scanFactor*(k1+k2)/2)
	e.near = e.keep(e.near[:0], e.scan, k1, sel1, 0)
	for _, c := range e.near {
		buf = e.add(buf, c.i)
	}
	e.near = e.keep(e.near[:0], e.scan, k2, sel2, 0)
	for _, c := range e.near {
		buf = e.add(buf, c.i)
	}
	return buf
}

// swapTops are the mailboxes on x every swap with x starts from (besides
// those chosen for the partner): most load with most load per byte, and
// most bytes with least; kept while x does not change.
func (e *engine) swapTops(x int) []int32 {
	tc := &e.tops[x]
	if tc.ok && tc.ver == e.ver[x] {
		return tc.ids
	}
	ids := e.begin(tc.ids)
	ids = e.under(ids, ordLoad, x, math.Inf(1), 3, selMaxRatio)
	ids = e.under(ids, ordBytes, x, math.Inf(1), 3, selMinRatio)
	*tc = topCache{ver: e.ver[x], ok: true, ids: ids}
	return ids
}

type topCache struct {
	ver uint32
	ok  bool
	ids []int32
}

// atRatio is the position of load per byte r in x's relief lists.
func (e *engine) atRatio(x int, r float64) (im, ia int) {
	mem, arr := e.sorted[ordRelief][x], e.arr[ordRelief][x]
	im = sort.Search(len(mem), func(k int) bool { return e.ratio[mem[k]] <= r })
	ia = sort.Search(len(arr), func(k int) bool { return e.ratio[arr[k]] <= r })
	return im, ia
}

// atMost is the position of the first mailbox whose load (order ordLoad)
// or size (ordBytes) is at most limit in x's lists of that order.
func (e *engine) atMost(o, x int, limit float64) (im, ia int) {
	mem, arr := e.list(o, x), e.arr[o][x]
	if o == ordLoad {
		load := e.loadF
		im = sort.Search(len(mem), func(k int) bool { return load[mem[k]] <= limit })
		ia = sort.Search(len(arr), func(k int) bool { return load[arr[k]] <= limit })
		return im, ia
	}
	im = sort.Search(len(mem), func(k int) bool { return float64(e.mbs[mem[k]].Bytes) <= limit })
	ia = sort.Search(len(arr), func(k int) bool { return float64(e.mbs[arr[k]].Bytes) <= limit })
	return im, ia
}

// near adds the candidates on x around load per byte r (NaN: none): k on
// each side, those closest to size when it is known (of scanFactor*k).
func (e *engine) nearRatio(buf []int32, x int, r, size float64, k int) []int32 {
	if math.IsNaN(r) {
		return buf
	}
	im, ia := e.atRatio(x, r)
	sel, ls := selFirst, float32(0)
	if size > 0 && !math.IsInf(size, 0) {
		sel, ls = selSize, float32(math.Log(size))
	}
	buf = e.pick(buf, ordRelief, x, im, ia, +1, scanFactor*k, k, sel, ls)
	return e.pick(buf, ordRelief, x, im-1, ia-1, -1, scanFactor*k, k, sel, ls)
}

// ends adds the k mailboxes at each end of x's relief order.
func (e *engine) ends(buf []int32, x, k int) []int32 {
	buf = e.walk(buf, ordRelief, x, 0, 0, +1, k)
	return e.walk(buf, ordRelief, x, len(e.sorted[ordRelief][x])-1, len(e.arr[ordRelief][x])-1, -1, k)
}

// under adds, of the scanFactor*k mailboxes on x with the most load (o
// ordLoad) or bytes (ordBytes) not above limit, the k best by sel.
func (e *engine) under(buf []int32, o, x int, limit float64, k int, sel selector) []int32 {
	if !(limit >= 0) {
		return buf
	}
	im, ia := e.atMost(o, x, limit)
	return e.pick(buf, o, x, im, ia, +1, scanFactor*k, k, sel, 0)
}

// scanFactor: how many mailboxes a pick looks at for each one it keeps.
const scanFactor = 8

type nearCand struct {
	d float32
	i int32
}

// walk adds up to w mailboxes on x in order o (dir +1) or against it (dir
// -1), from position im of x's home list and ia of its other mailboxes.
func (e *engine) walk(buf []int32, o, x, im, ia, dir, w int) []int32 {
	return e.walkInto(buf, o, x, im, ia, dir, w, true)
}

// walkAll is walk without the dedup (into a scratch list).
func (e *engine) walkAll(out []int32, o, x, im, ia, dir, w int) []int32 {
	return e.walkInto(out, o, x, im, ia, dir, w, false)
}

// walkInto is walk and walkAll: dedup adds through e.add, else appends.
func (e *engine) walkInto(buf []int32, o, x, im, ia, dir, w int, dedup bool) []int32 {
	mem, arr := e.list(o, x), e.arr[o][x]
	put := func(m int32) {
		if dedup {
			buf = e.add(buf, m)
		} else {
			buf = append(buf, m)
		}
	}
	for n := 0; n < w; n++ {
		for im >= 0 && im < len(mem) && e.where(mem[im]) != int32(x) {
			im += dir
		}
		okM := im >= 0 && im < len(mem)
		okA := ia >= 0 && ia < len(arr)
		switch {
		case okM && (!okA || (dir > 0) == e.less(o, mem[im], arr[ia])):
			put(mem[im])
			im += dir
		case okA:
			put(arr[ia])
			ia += dir
		default:
			return buf
		}
	}
	return buf
}

// idealShift is how much of one dimension moving from a cluster holding vs
// (bounds los, ups, capacity caps) to one holding vt (lot, upt, capt) keeps
// lowering their violation: 0 when the first unit already does not.
func idealShift(vs, los, ups, caps, vt, lot, upt, capt float64) float64 {
	slope := func(a float64) float64 {
		s := 0.0
		switch v := vs - a; {
		case v > ups:
			s -= 1 / caps
		case v < los:
			s += 1 / caps
		}
		switch v := vt + a; {
		case v < lot:
			s -= 1 / capt
		case v > upt:
			s += 1 / capt
		}
		return s
	}
	pts := [4]float64{vs - ups, vs - los, lot - vt, upt - vt}
	slices.Sort(pts[:])
	prev := 0.0
	for _, p := range pts {
		if !(p > prev) || math.IsInf(p, 0) {
			continue
		}
		if slope((prev+p)/2) >= 0 {
			return prev
		}
		prev = p
	}
	if slope(prev+1) >= 0 {
		return prev
	}
	return math.Inf(1)
}

// ideal is the load and bytes whose move from s to t lowers V the most.
func (e *engine) ideal(s, t int) (dl, db float64) {
	a, b := &e.cs[s], &e.cs[t]
	dl = idealShift(a.l, a.loL, a.upL, a.capL, b.l, b.loL, b.upL, b.capL)
	db = idealShift(float64(a.b), a.loB, a.upB, a.capB, float64(b.b), b.loB, b.upB, b.capB)
	return dl, db
}

// idealRatio turns ideal amounts into a load per byte to look around.
func idealRatio(dl, db float64) float64 {
	switch {
	case dl <= 0 && db <= 0:
		return math.NaN()
	case db <= 0 || math.IsInf(dl, 1) && !math.IsInf(db, 1):
		return math.Inf(1)
	case dl <= 0 || math.IsInf(db, 1) && !math.IsInf(dl, 1):
		return 0
	case math.IsInf(dl, 1):
		return math.NaN()
	}
	return dl / db
}

// idealSize is the size of a mailbox that would make the ideal shift (dl,
// db) at load per byte r, or NaN when no size is better than another.
func idealSize(r, dl, db float64) float64 {
	switch {
	case math.IsNaN(r):
		return math.NaN()
	case db > 0 && !math.IsInf(db, 1):
		return db
	case r > 0 && dl > 0 && !math.IsInf(dl, 1) && !math.IsInf(r, 1):
		return dl / r
	}
	return math.NaN()
}

// canGain reports whether cluster t may take load l and bytes b on top of
// what it holds (for a mailbox that is not going home).
func (e *engine) canGain(t int, l, b float64) bool {
	c := &e.cs[t]
	if !c.receives {
		return false
	}
	if l > 0 && c.l+l > c.gainL {
		return false
	}
	if b > 0 && float64(c.b)+b > c.gainB {
		return false
	}
	return true
}

// moveDelta is what moving mailbox i to t does to the plan's move count and
// bytes, and whether it is allowed at all apart from cluster limits.
func (e *engine) moveDelta(i int32, t int) (dMoves int, dBytes int64, ok bool) {
	h := e.home[i]
	if int32(t) == e.where(i) {
		return 0, 0, false
	}
	if int32(t) == h {
		return -1, -e.mbs[i].Bytes, true
	}
	if !e.compat[h][t] {
		return 0, 0, false
	}
	if e.to[i] >= 0 {
		return 0, 0, true
	}
	if e.pinned[i] {
		return 0, 0, false
	}
	return 1, e.mbs[i].Bytes, true
}

func (e *engine) withinBudget(dMoves int, dBytes int64) bool {
	if dMoves <= 0 && dBytes <= 0 {
		return true
	}
	ok := (e.pol.MaxMoves == 0 || e.moves+dMoves <= e.pol.MaxMoves) &&
		(e.pol.MaxBytes == 0 || e.bytes+dBytes <= e.pol.MaxBytes)
	if !ok {
		e.boundHit = true
	}
	return ok
}

func changeCost(dMoves int, dBytes int64) float64 {
	return float64(dBytes) + float64(dMoves)*moveCostBytes
}

// evalMove rates moving mailbox i (wherever it is) to cluster t.
func (e *engine) evalMove(i int32, t int) cand {
	dMoves, dBytes, ok := e.moveDelta(i, t)
	if !ok {
		return cand{}
	}
	m := &e.mbs[i]
	l, b := m.Load, float64(m.Bytes)
	if int32(t) != e.home[i] && !e.canGain(t, l, b) {
		return cand{}
	}
	if !e.withinBudget(dMoves, dBytes) {
		return cand{}
	}
	s := int(e.where(i))
	cs, ct := &e.cs[s], &e.cs[t]
	dv := cs.viol(cs.l-l, float64(cs.b)-b) - cs.violNow() + ct.viol(ct.l+l, float64(ct.b)+b) - ct.violNow()
	if !(dv < -improveEps) {
		return cand{}
	}
	return e.rate(cand{i: i, j: -1, ti: int32(t), tj: -1, dv: dv, cost: changeCost(dMoves, dBytes)})
}

// evalSwap rates moving i (on x) to y and j (on y) to x together.
func (e *engine) evalSwap(i int32, x int, j int32, y int) cand {
	dmi, dbi, ok := e.moveDelta(i, y)
	if !ok {
		return cand{}
	}
	dmj, dbj, ok := e.moveDelta(j, x)
	if !ok {
		return cand{}
	}
	mi, mj := &e.mbs[i], &e.mbs[j]
	// Net gains; a mailbox going home does not need its home to receive,
	// but the other one does.
	dlx, dbx := mj.Load-mi.Load, float64(mj.Bytes-mi.Bytes)
	dly, dby := -dlx, -dbx
	if !e.gainOK(x, dlx, dbx, int32(x) == e.home[j]) || !e.gainOK(y, dly, dby, int32(y) == e.home[i]) {
		return cand{}
	}
	if !e.withinBudget(dmi+dmj, dbi+dbj) {
		return cand{}
	}
	cx, cy := &e.cs[x], &e.cs[y]
	dv := cx.viol(cx.l+dlx, float64(cx.b)+dbx) - cx.violNow() + cy.viol(cy.l+dly, float64(cy.b)+dby) - cy.violNow()
	if !(dv < -improveEps) {
		return cand{}
	}
	return e.rate(cand{i: i, j: j, ti: int32(y), tj: int32(x), dv: dv, cost: changeCost(dmi+dmj, dbi+dbj)})
}

// gainOK checks the net change (dl, db) of cluster x in a swap. A cluster
// that may not receive takes part only when the mailbox it gets goes home.
func (e *engine) gainOK(x int, dl, db float64, home bool) bool {
	c := &e.cs[x]
	if !c.receives && !home {
		return false
	}
	if dl > 0 && c.l+dl > max(c.gainL, c.l) {
		return false
	}
	if db > 0 && float64(c.b)+db > max(c.gainB, float64(c.b)) {
		return false
	}
	return true
}

func (e *engine) commitCand(c cand) {
	e.place(c.i, int(c.ti))
	if c.j >= 0 {
		e.place(c.j, int(c.tj))
	}
}

// bestPair is the best single move from cluster s to cluster t.
func (e *engine) bestPair(s, t int) cand {
	var best cand
	if s == t || e.cs[s].n == 0 {
		return best
	}
	if !e.cs[t].receives {
		// Only mailboxes going home to t.
		for _, i := range e.arr[ordRelief][s] {
			if e.home[i] == int32(t) {
				c := e.evalMove(i, t)
				e.top.offer(c)
				if c.better(best) {
					best = c
				}
			}
		}
		return best
	}
	dl, db := e.ideal(s, t)
	if dl <= 0 && db <= 0 {
		// V is a sum over dimensions of convex functions of the shift:
		// when neither dimension gains from the first unit, no move does.
		return best
	}
	r := idealRatio(dl, db)
	buf := e.begin(e.buf)
	if e.few(s) {
		buf = e.all(buf, s)
	} else {
		buf = e.nearRatio(buf, s, r, idealSize(r, dl, db), searchWindow/2)
		buf = e.ends(buf, s, searchWindow/4)
		// What still fits on t where it is close to its limit.
		ct := &e.cs[t]
		if roomL := ct.gainL - ct.l; roomL < ct.capL*fitMargin {
			buf = e.under(buf, ordLoad, s, roomL, searchWindow/4, selMaxBytes)
		}
		if roomB := ct.gainB - float64(ct.b); roomB < ct.capB*fitMargin {
			buf = e.under(buf, ordBytes, s, roomB, searchWindow/4, selMaxLoad)
		}
	}
	e.buf = buf
	for _, i := range buf {
		c := e.evalMove(i, t)
		e.top.offer(c)
		if c.better(best) {
			best = c
		}
	}
	return best
}

// fitMargin: a cluster with less room than this fraction of its capacity
// left in a dimension gets candidates chosen to fit that room.
const fitMargin = 0.02

// bestSwap is the best swap of a mailbox on x (among a few) with one on y
// (among more, chosen for each).
func (e *engine) bestSwap(x, y int) cand {
	var best cand
	cx, cy := &e.cs[x], &e.cs[y]
	if x == y || cx.n == 0 || cy.n == 0 {
		return best
	}
	if !cx.receives && !cy.receives {
		return best
	}
	if cx.violNow() == 0 && cy.violNow() == 0 {
		return best // a swap changes only x and y
	}
	dl, db := e.ideal(x, y)
	r := idealRatio(dl, db)
	var tops []int32
	if !e.few(x) {
		tops = e.swapTops(x)
	}
	xs := e.begin(e.xs)
	if e.few(x) {
		xs = e.all(xs, x)
	} else {
		for _, i := range tops {
			xs = e.add(xs, i)
		}
		xs = e.nearRatio(xs, x, r, idealSize(r, dl, db), 1)
	}
	e.xs = xs
	ys := e.ys
	defer func() { e.ys = ys }()
	for _, i := range xs {
		mi := &e.mbs[i]
		// What y would best send back once i is there, and what x has
		// room for then.
		cx.l, cx.b = cx.l-mi.Load, cx.b-mi.Bytes
		cy.l, cy.b = cy.l+mi.Load, cy.b+mi.Bytes
		dl2, db2 := e.ideal(y, x)
		roomL, roomB := cx.gainL-cx.l, cx.gainB-float64(cx.b)
		cx.l, cx.b = cx.l+mi.Load, cx.b+mi.Bytes
		cy.l, cy.b = cy.l-mi.Load, cy.b-mi.Bytes
		r2 := idealRatio(dl2, db2)
		ys = e.begin(ys)
		if e.few(y) {
			ys = e.all(ys, y)
		} else {
			ys = e.nearRatio(ys, y, r2, idealSize(r2, dl2, db2), 2)
			limL, limB := max(roomL, mi.Load), max(roomB, float64(mi.Bytes))
			ys = e.under2(ys, ordLoad, y, limL, 3, selMaxBytes, 2, selMinBytes)
			ys = e.under2(ys, ordBytes, y, limB, 3, selMaxLoad, 2, selMinLoad)
		}
		for _, j := range ys {
			c := e.evalSwap(i, x, j, y)
			e.top.offer(c)
			if c.better(best) {
				best = c
			}
		}
	}
	return best
}

// A pair entry is what the search knows about one pair of clusters: the
// best single moves from a to b (swap false), or the best swaps of a
// mailbox on a (among a few) with one on b (among more), as found when both
// clusters were at the versions recorded; best is the first of them.
type pairEntry struct {
	a, b   int32
	swap   bool
	va, vb uint32
	alts   topK
	next   int // alts before next were committed or found wanting
	best   cand
}

// pairHeap orders entries by their best candidate, best first.
type pairHeap []*pairEntry

func (h pairHeap) Len() int           { return len(h) }
func (h pairHeap) Less(i, j int) bool { return h[i].best.better(h[j].best) }
func (h pairHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *pairHeap) Push(x any)        { *h = append(*h, x.(*pairEntry)) }
func (h *pairHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// evalPair finds p's best candidates in the current state.
func (e *engine) evalPair(p *pairEntry) {
	e.top = topK{}
	if p.swap {
		e.bestSwap(int(p.a), int(p.b))
	} else {
		e.bestPair(int(p.a), int(p.b))
	}
	p.alts, p.next = e.top, 0
	p.best = p.alts.best()
	p.va, p.vb = e.ver[p.a], e.ver[p.b]
}

func (p *pairEntry) recheckable() bool { return p.next < p.alts.n }

// recheck evaluates p's next kept candidate again in the current state
// (the clusters changed since it was found), passing over those that no
// longer improve; false when none is left.
func (e *engine) recheck(p *pairEntry) bool {
	for ; p.next < p.alts.n; p.next++ {
		c := p.alts.c[p.next]
		var n cand
		if c.j >= 0 {
			if e.where(c.i) == p.a && e.where(c.j) == p.b {
				n = e.evalSwap(c.i, int(c.tj), c.j, int(c.ti))
			}
		} else if e.where(c.i) == p.a {
			n = e.evalMove(c.i, int(c.ti))
		}
		if n.ok {
			p.best = n
			return true
		}
	}
	p.best = cand{}
	return false
}

// search runs the local search until V is 0 or nothing improves it (or, as
// a safeguard, after very many changes). It returns how many changes it
// committed.
//
// It is a lazy greedy over pairs of clusters: every pair's best change sits
// in a heap; the top one is committed if, checked again against the
// current state, it still improves and is still at least as good as the
// next; otherwise the pair is looked at afresh and put back. When the heap
// runs dry every pair is looked at afresh; the search ends when that finds
// nothing.
func (e *engine) search(swaps bool) int {
	k := len(e.cs)
	e.touched = make([]bool, k)
	e.ver = make([]uint32, k)
	e.tops = make([]topCache, k)
	for x := range e.ver {
		e.ver[x] = 1 // never 0, so that a decremented version is stale
	}
	commits := 0
	maxCommits := 4*len(e.mbs) + 1000
	var h pairHeap
	fill := func() {
		h = h[:0]
		for s := range e.cs {
			for t := range e.cs {
				if s == t {
					continue
				}
				p := &pairEntry{a: int32(s), b: int32(t)}
				if e.evalPair(p); p.best.ok {
					h = append(h, p)
				}
			}
		}
		if swaps && (!e.singlesFirst || len(h) == 0) {
			for s := range e.cs {
				for t := range e.cs {
					if s == t {
						continue
					}
					p := &pairEntry{a: int32(s), b: int32(t), swap: true}
					if e.evalPair(p); p.best.ok {
						h = append(h, p)
					}
				}
			}
		}
		heap.Init(&h)
	}
	for commits < maxCommits {
		fill()
		if len(h) == 0 {
			break
		}
		for len(h) > 0 && commits < maxCommits {
			p := h[0]
			fresh := p.va == e.ver[p.a] && p.vb == e.ver[p.b]
			if !fresh {
				if !e.recheck(p) {
					e.evalPair(p)
				}
				if !p.best.ok {
					heap.Pop(&h)
					continue
				}
				heap.Fix(&h, 0)
				if h[0] != p {
					continue
				}
			}
			e.commitCand(p.best)
			if e.eager {
				// Every pair afresh after each change: true greedy.
				commits++
				for c, t := range e.touched {
					if t {
						e.ver[c]++
						e.touched[c] = false
					}
				}
				break
			}
			commits++
			for c, t := range e.touched {
				if t {
					e.ver[c]++
					e.touched[c] = false
				}
			}
			// Next time, the pair's next kept candidate is checked first.
			p.next++
			p.va-- // stale
			if p.recheckable() {
				p.best = p.alts.c[p.next]
				heap.Fix(&h, 0)
			} else if e.evalPair(p); p.best.ok {
				heap.Fix(&h, 0)
			} else {
				heap.Pop(&h)
			}
		}
	}
	return commits
}
