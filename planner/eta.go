package planner

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"mailferry/inventory"
	"mailferry/throttle"
)

// The ETA is a schedule of the plan's moves as `mailferry apply` runs them
// (migrate.Apply and migrate.Copy), simulated as flows between events:
//
//   - moves start in plan order, at most Parallelism at once (apply's
//     --parallel); a started move waits for its first connection pair, one
//     connection on each side, under both clusters' connection caps
//     (limits.connections, or Parallelism x Connections when unset, as
//     apply sets them), and takes more pairs as places free up, up to
//     Connections (apply's --connections) and to what its size asks for:
//     one pair, plus one per PairMessages messages or PairBytes bytes,
//     whichever asks for more (migrate's pairsFor);
//   - a move first spends MoveOverhead (logins, listing, the convergence
//     and final passes, the final verification, the cutover), then copies:
//     each pair carries StreamBytesPerSec, and each message costs
//     MessageOverhead; with Verify "full" every copied byte is read back
//     from the target on the same pair;
//   - message bodies flow under both clusters' limits.bytes_per_sec and
//     limits.messages_per_sec, shared by the moves on them;
//   - a degraded cluster's throttle starts at a quarter of its connection
//     cap (at least 1) and grows by one a second while it is saturated;
//   - no copying happens while a time window (the cluster's
//     limits.windows, or Windows, apply's --window) is closed on either
//     side; moves keep their connections meanwhile. With windows the
//     schedule starts when the first window opens.
//
// Calibration factors (from moves the state measured) stretch the work of
// the moves on their clusters. The ETA says which limit bound the schedule
// for how long.

// Apply's copy model, as migrate has it (see migrate.pairsFor and the
// apply command's flags); a test holds them equal.
const (
	DefaultParallelism  = 4
	DefaultConnections  = 2
	DefaultVerify       = "full"
	DefaultMoveOverhead = 2.0      // seconds per move
	PairMessages        = 1000     // one more connection pair per this many messages
	PairBytes           = 32 << 20 // or this many bytes
	// degradedStart: a degraded cluster's throttle starts at its cap over
	// this (see throttle.Config.Degraded).
	degradedStart = 4
)

// simMove is one move in the schedule.
type simMove struct {
	i        int32 // mailbox
	src, dst int
	bytes    float64
	msgs     float64
	want     int     // pairs it can use
	t0       float64 // fixed work left, seconds
	work     float64 // copy work left, pair-seconds
	beta, mu float64 // bytes and messages per pair-second
	pairs    int
	rate     float64 // pair-seconds per second now
	label    string  // what bounds it now
	kind     string
}

// eta schedules the moves and returns the ETA, the total message count and
// whether any count was estimated.
func (e *engine) eta(t Throughput) (ETA, int64, bool) {
	var eta ETA
	if len(e.log) == 0 {
		return eta, 0, false
	}
	stream := float64(t.StreamBytesPerSec)
	verify := 1.0
	if t.Verify == "full" {
		verify = 2 // the read-back
	}
	factor := t.factors(e)
	moves := make([]*simMove, 0, len(e.log))
	var totalM int64
	estimated := false
	type work struct {
		read, write, msgs int64
		peak              int
		busy              float64
	}
	w := make([]work, len(e.cs))
	for _, i := range e.log {
		m := &e.mbs[i]
		msgs := m.Messages
		if msgs == 0 && m.Bytes > 0 {
			msgs = (m.Bytes + t.AvgMessageBytes - 1) / t.AvgMessageBytes
			estimated = true
		}
		totalM += msgs
		src, dst := int(e.home[i]), int(e.to[i])
		w[src].read += m.Bytes
		w[src].msgs += msgs
		w[dst].write += m.Bytes
		w[dst].msgs += msgs
		k := max(factor[src], factor[dst])
		wk := (float64(m.Bytes)*verify/stream + float64(msgs)*t.MessageOverhead) * k
		sm := &simMove{i: i, src: src, dst: dst, bytes: float64(m.Bytes), msgs: float64(msgs),
			want: min(t.Connections, int(1+max(msgs/PairMessages, m.Bytes/PairBytes))),
			t0:   t.MoveOverhead * k, work: wk}
		if wk > 0 {
			sm.beta, sm.mu = sm.bytes/wk, sm.msgs/wk
		}
		moves = append(moves, sm)
	}

	// Clusters: connection caps, rates, windows, degraded starts.
	k := len(e.cs)
	caps := make([]int, k)
	limit := make([]float64, k) // the adaptive limit of a degraded cluster
	held := make([]int, k)
	global, _ := throttle.ParseWindows(t.Windows...)
	wins := make([]throttle.Windows, k)
	var allWins throttle.Windows
	for c := range e.cs {
		cl := &e.cs[c]
		caps[c] = cl.Limits.Connections
		if caps[c] <= 0 {
			caps[c] = t.Parallelism * t.Connections
		}
		limit[c] = float64(caps[c])
		if cl.Health == inventory.Degraded {
			limit[c] = float64(max(1, caps[c]/degradedStart))
		}
		wins[c] = append(append(throttle.Windows(nil), cl.Limits.Windows...), global...)
		if w[c].read+w[c].write > 0 {
			allWins = append(allWins, wins[c]...)
		}
	}
	// With windows, the schedule starts when the first one opens.
	var start time.Duration
	if len(allWins) > 0 {
		start = 24 * time.Hour
		for _, win := range allWins {
			start = min(start, win.Start)
		}
		eta.StartsAt = fmt.Sprintf("%02d:%02d", int(start/time.Hour), int(start%time.Hour/time.Minute))
	}
	base := time.Date(2000, 1, 3, 0, 0, 0, 0, time.UTC).Add(start)
	open := func(c int, now float64) bool {
		return len(wins[c]) == 0 || wins[c].Open(base.Add(time.Duration(now*float64(time.Second))))
	}
	// nextEdge is the first window start or end after now (seconds), +Inf
	// without windows.
	nextEdge := func(now float64) float64 {
		if len(allWins) == 0 {
			return math.Inf(1)
		}
		tod := math.Mod(float64(start)/1e9+now, 86400)
		best := math.Inf(1)
		for _, win := range allWins {
			for _, edge := range [2]time.Duration{win.Start, win.End} {
				d := float64(edge)/1e9 - tod
				for d <= 1e-6 {
					d += 86400
				}
				best = min(best, d)
			}
		}
		return now + best
	}

	slices.SortFunc(allWins, func(a, b throttle.Window) int {
		if c := cmp.Compare(a.Start, b.Start); c != 0 {
			return c
		}
		return cmp.Compare(a.End, b.End)
	})
	allWins = slices.Compact(allWins)
	useB, useM, usePairs := make([]float64, k), make([]float64, k), make([]float64, k)
	bound := map[string]float64{} // seconds each limit bound
	kinds := map[string]string{}
	var active []*simMove
	next := 0
	now := 0.0
	tailOf := ""
	for next < len(moves) || len(active) > 0 {
		for len(active) < t.Parallelism && next < len(moves) {
			active = append(active, moves[next])
			next++
		}
		// Connection places: first pairs in plan order, then more.
		for _, m := range active {
			if m.pairs == 0 && held[m.src] < caps[m.src] && held[m.dst] < caps[m.dst] {
				m.pairs++
				held[m.src]++
				held[m.dst]++
			}
		}
		for _, m := range active {
			for m.pairs > 0 && m.pairs < m.want && m.t0 <= 0 && held[m.src] < caps[m.src] && held[m.dst] < caps[m.dst] {
				m.pairs++
				held[m.src]++
				held[m.dst]++
			}
		}
		for c := range held {
			w[c].peak = max(w[c].peak, held[c])
		}
		// Rates, then shares of the clusters' limits.
		for _, m := range active {
			m.rate, m.label, m.kind = 0, "", ""
			switch {
			case m.pairs == 0:
				c := m.src
				if held[m.dst] >= caps[m.dst] {
					c = m.dst
				}
				m.label, m.kind = e.cs[c].Name+" limits.connections", "cluster"
			case m.t0 > 0:
				m.rate, m.label, m.kind = 1, "per-move overhead", "overhead"
			case !open(m.src, now) || !open(m.dst, now):
				m.label, m.kind = "time windows", "windows"
			default:
				m.rate = float64(m.pairs)
				m.label, m.kind = "streams", "streams"
				if m.pairs < m.want {
					// Fewer pairs than it could use: a connection cap.
					for _, c := range [2]int{m.src, m.dst} {
						if held[c] >= caps[c] && e.cs[c].Limits.Connections > 0 {
							m.label, m.kind = e.cs[c].Name+" limits.connections", "cluster"
							break
						}
					}
				}
			}
		}
		for range 2 {
			clear(useB)
			clear(useM)
			clear(usePairs)
			for _, m := range active {
				if m.kind != "streams" && m.kind != "cluster" {
					continue
				}
				for _, c := range [2]int{m.src, m.dst} {
					useB[c] += m.rate * m.beta
					useM[c] += m.rate * m.mu
					usePairs[c] += float64(m.pairs)
				}
			}
			for _, m := range active {
				if m.rate == 0 || m.t0 > 0 {
					continue
				}
				worst, why := 1.0, ""
				for _, c := range [2]int{m.src, m.dst} {
					cl := &e.cs[c]
					if b := cl.Limits.BytesPerSec; b > 0 && useB[c]/float64(b) > worst {
						worst, why = useB[c]/float64(b), cl.Name+" limits.bytes_per_sec"
					}
					if r := cl.Limits.MessagesPerSec; r > 0 && useM[c]/r > worst {
						worst, why = useM[c]/r, cl.Name+" limits.messages_per_sec"
					}
					if usePairs[c] > limit[c] && usePairs[c]/limit[c] > worst {
						worst, why = usePairs[c]/limit[c], cl.Name+" degraded start"
					}
				}
				if worst > 1 {
					m.rate /= worst
					m.label, m.kind = why, "cluster"
				}
			}
		}
		// The next event.
		dt := math.Inf(1)
		for _, m := range active {
			switch {
			case m.t0 > 0 && m.rate > 0:
				dt = min(dt, m.t0)
			case m.rate > 0:
				dt = min(dt, m.work/m.rate)
			}
		}
		dt = min(dt, nextEdge(now)-now)
		ramping := false
		for c := range e.cs {
			if limit[c] < float64(caps[c]) && held[c] > 0 {
				ramping = true
			}
		}
		tick := math.Floor(now+1e-9) + 1
		if ramping {
			dt = min(dt, tick-now)
		}
		if math.IsInf(dt, 1) || dt < 0 {
			// Nothing can progress (cannot happen with caps of at least one).
			break
		}
		// What bound this stretch: each active move's share.
		queued := next < len(moves)
		for _, m := range active {
			label, kind := m.label, m.kind
			if kind == "streams" || kind == "overhead" {
				switch {
				case !queued:
					label, kind = "tail", "mailbox"
				case held[m.src] >= caps[m.src] && e.cs[m.src].Limits.Connections > 0:
					// More moves at once would wait for its connections
					// (a cap apply derives from --parallel grows with it).
					label, kind = e.cs[m.src].Name+" limits.connections", "cluster"
				case held[m.dst] >= caps[m.dst] && e.cs[m.dst].Limits.Connections > 0:
					label, kind = e.cs[m.dst].Name+" limits.connections", "cluster"
				default:
					label, kind = "parallel", "parallelism"
				}
			}
			bound[label] += dt / float64(len(active))
			kinds[label] = kind
		}
		for c := range e.cs {
			if held[c] > 0 {
				w[c].busy += dt
			}
		}
		now += dt
		kept := active[:0]
		for _, m := range active {
			if m.t0 > 0 && m.rate > 0 {
				m.t0 -= dt
				if m.t0 < 1e-9 {
					m.t0 = 0
				}
			} else if m.rate > 0 {
				m.work -= m.rate * dt
			}
			if m.t0 <= 0 && m.work <= 1e-9*(1+m.rate) {
				held[m.src] -= m.pairs
				held[m.dst] -= m.pairs
				m.pairs = 0
				if !queued {
					tailOf = e.mbs[m.i].Name
				}
				continue
			}
			kept = append(kept, m)
		}
		active = kept
		// Degraded throttles grow while saturated.
		if ramping && now >= tick-1e-9 {
			for c := range e.cs {
				if limit[c] < float64(caps[c]) && float64(held[c]) >= limit[c] {
					limit[c]++
				}
			}
		}
	}
	eta.Seconds = math.Round(now)

	// Which limits bound, longest first.
	for label, s := range bound {
		eta.Limits = append(eta.Limits, ETALimit{Limit: label, Kind: kinds[label], Seconds: math.Round(s)})
	}
	slices.SortFunc(eta.Limits, func(a, b ETALimit) int {
		if c := cmp.Compare(b.Seconds, a.Seconds); c != 0 {
			return c
		}
		return strings.Compare(a.Limit, b.Limit)
	})
	if len(eta.Limits) > 0 {
		top := eta.Limits[0]
		share := 100 * top.Seconds / max(eta.Seconds, 1)
		eta.Bottleneck, eta.BottleneckKind = top.Limit, top.Kind
		switch top.Kind {
		case "parallelism":
			eta.Bottleneck = "parallelism"
			eta.Detail = fmt.Sprintf("%d moves at once (--parallel), up to %d connection pairs each at %s/s, bind %.0f%% of the time",
				t.Parallelism, t.Connections, inventory.FormatBytes(t.StreamBytesPerSec), share)
		case "mailbox":
			eta.Bottleneck = tailOf
			eta.Detail = fmt.Sprintf("the last moves run with nothing left to start (%.0f%% of the time); %s ends last", share, tailOf)
		case "windows":
			eta.Detail = fmt.Sprintf("time windows are closed %.0f%% of the time (counted from %s, when the first opens)", share, eta.StartsAt)
		default:
			name, _, _ := strings.Cut(top.Limit, " ")
			c, _ := e.clusterIndex(name)
			cw := w[c]
			var rw []string
			if cw.read > 0 {
				rw = append(rw, "reads "+inventory.FormatBytes(cw.read))
			}
			if cw.write > 0 {
				rw = append(rw, "writes "+inventory.FormatBytes(cw.write))
			}
			cl := &e.cs[c]
			what := "its " + strings.TrimPrefix(top.Limit, name+" ")
			switch {
			case strings.HasSuffix(top.Limit, "bytes_per_sec"):
				what = fmt.Sprintf("its limits.bytes_per_sec (%s/s)", inventory.FormatBytes(cl.Limits.BytesPerSec))
			case strings.HasSuffix(top.Limit, "messages_per_sec"):
				what = fmt.Sprintf("its limits.messages_per_sec (%s)", fmtLoad(cl.Limits.MessagesPerSec))
			case strings.HasSuffix(top.Limit, "connections"):
				what = fmt.Sprintf("its connection cap (%d)", caps[c])
			case strings.HasSuffix(top.Limit, "degraded start"):
				what = "its throttle starting low (degraded)"
			}
			eta.Bottleneck = name
			eta.Detail = fmt.Sprintf("%s %s, bound by %s %.0f%% of the time", name, strings.Join(rw, " and "), what, share)
		}
	}
	for c := range e.cs {
		cw := w[c]
		if cw.read == 0 && cw.write == 0 {
			continue
		}
		ce := ClusterETA{Cluster: e.cs[c].Name, ReadBytes: cw.read, WriteBytes: cw.write, Messages: cw.msgs,
			Streams: cw.peak, Seconds: math.Round(cw.busy)}
		if cw.busy > 0 {
			ce.BytesPerSec = math.Round(float64(cw.read+cw.write) / cw.busy)
		}
		eta.Clusters = append(eta.Clusters, ce)
	}
	return eta, totalM, estimated
}

// factors are the calibration's stretch of each cluster's work (1 where
// nothing was measured).
func (t Throughput) factors(e *engine) []float64 {
	f := make([]float64, len(e.cs))
	for c := range f {
		f[c] = 1
		for _, cal := range t.Calibration {
			if cal.Cluster == e.cs[c].Name && cal.Factor > 0 {
				f[c] = cal.Factor
			}
		}
	}
	return f
}
