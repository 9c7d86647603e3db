package planner

import (
	"fmt"
	"math"

	"mailferry/inventory"
	"mailferry/throttle"
)

// Make plans moves for inv under pol. It never changes inv, and the same
// inventory and policy always give the same plan. inv must be valid (as Load
// or Validate leave it). Every error it returns is a problem with the policy
// or its what-ifs, and names it.
//
// Zero Throughput fields take their defaults.
func Make(inv *inventory.Inventory, pol Policy) (*Plan, error) {
	if err := pol.check(); err != nil {
		return nil, err
	}
	pol.Throughput = pol.Throughput.withDefaults()
	// The digest reads the inventory only, as planning does: work it out
	// alongside.
	digestc := make(chan string, 1)
	go func() { digestc <- InventoryDigest(inv) }()
	e, goal, err := run(inv, pol)
	if err != nil {
		return nil, err
	}
	p := e.plan(pol, goal)
	if e.boundHit && (pol.MaxMoves > 0 || pol.MaxBytes > 0) {
		// What the bounds left for a later run: what the same policy
		// would move without them, beyond this plan; and what could not
		// move even then.
		free := pol
		free.MaxMoves, free.MaxBytes = 0, 0
		if f, fgoal, err := run(inv, free); err == nil {
			q := f.plan(free, fgoal)
			if n, b := q.Totals.Moves-p.Totals.Moves, q.Totals.Bytes-p.Totals.Bytes; n > 0 || b > 0 {
				p.Deferred = &Deferred{Mailboxes: max(n, 0), Bytes: max(b, 0), Reason: boundReason(pol, p),
					WantedMoves: q.Totals.Moves, WantedBytes: q.Totals.Bytes}
			}
			if pol.Kind != Rebalance {
				p.Unplaceable = q.Unplaceable
			}
		}
	}
	p.InventoryDigest = <-digestc
	return p, nil
}

// run plans on a fresh engine.
func run(inv *inventory.Inventory, pol Policy) (*engine, Goal, error) {
	e, err := newEngine(inv, pol)
	if err != nil {
		return nil, Goal{}, err
	}
	switch pol.Kind {
	case Rebalance:
		e, goal := rebalanceBest(inv, pol, e)
		return e, goal, nil
	case Drain:
		x, err := e.clusterIndex(pol.Cluster)
		if err != nil {
			return nil, Goal{}, fmt.Errorf("drain: %w", err)
		}
		return e, e.drain(x), nil
	default:
		x, err := e.clusterIndex(pol.Cluster)
		if err != nil {
			return nil, Goal{}, fmt.Errorf("relieve: %w", err)
		}
		return e, e.relieveGoal(x), nil
	}
}

// boundReason names the bound a plan reached.
func boundReason(pol Policy, p *Plan) string {
	if pol.MaxMoves > 0 && p.Totals.Moves >= pol.MaxMoves {
		return fmt.Sprintf("--max-moves %d reached", pol.MaxMoves)
	}
	return fmt.Sprintf("--max-bytes %s reached", inventory.FormatBytes(pol.MaxBytes))
}

func (p *Policy) check() error {
	switch p.Kind {
	case Drain, Relieve:
		if p.Cluster == "" {
			return fmt.Errorf("%s: which cluster?", p.Kind)
		}
	case Rebalance:
		if !(p.Band >= 0 && p.Band < 1) {
			return fmt.Errorf("band %v: want a fraction in [0, 1)", p.Band)
		}
	case "":
		return fmt.Errorf("no policy: say drain, relieve or rebalance")
	default:
		return fmt.Errorf("unknown policy %q: say drain, relieve or rebalance", p.Kind)
	}
	if p.Kind == Relieve {
		if !(p.TargetLoad > 0 && p.TargetLoad <= 1) || !(p.TargetStorage > 0 && p.TargetStorage <= 1) {
			return fmt.Errorf("relieve targets %v and %v: want fractions in (0, 1]", p.TargetLoad, p.TargetStorage)
		}
	}
	t := p.Throughput
	if t.Parallelism < 0 || t.Connections < 0 || t.StreamBytesPerSec < 0 || !(t.MessageOverhead >= 0) || t.AvgMessageBytes < 0 ||
		math.IsNaN(t.MoveOverhead) || math.IsInf(t.MoveOverhead, 0) || math.IsInf(t.MessageOverhead, 0) {
		return fmt.Errorf("throughput model: values must not be negative")
	}
	switch t.Verify {
	case "", "full", "size", "none":
	default:
		return fmt.Errorf("throughput model: verify %q: want full, size or none", t.Verify)
	}
	if _, err := throttle.ParseWindows(t.Windows...); err != nil {
		return fmt.Errorf("throughput model: %w", err)
	}
	for _, c := range t.Calibration {
		if !(c.Factor > 0) || math.IsInf(c.Factor, 0) {
			return fmt.Errorf("throughput model: calibration of %s: factor %v", c.Cluster, c.Factor)
		}
	}
	return nil
}

func (t Throughput) withDefaults() Throughput {
	if t.Parallelism == 0 {
		t.Parallelism = DefaultParallelism
	}
	if t.Connections == 0 {
		t.Connections = DefaultConnections
	}
	switch {
	case t.MoveOverhead == 0:
		t.MoveOverhead = DefaultMoveOverhead
	case t.MoveOverhead < 0:
		t.MoveOverhead = 0
	}
	if t.Verify == "" {
		t.Verify = DefaultVerify
	}
	if t.StreamBytesPerSec == 0 {
		t.StreamBytesPerSec = DefaultStreamBytes
	}
	if t.AvgMessageBytes == 0 {
		t.AvgMessageBytes = DefaultAvgMessageBytes
	}
	return t
}

// plan assembles the document from the engine's final state.
func (e *engine) plan(pol Policy, goal Goal) *Plan {
	p := &Plan{
		Version:     Version,
		Policy:      pol,
		Moves:       make([]Move, 0, len(e.log)),
		Unplaceable: e.unplaceable(),
		Goal:        goal,
	}
	var load float64
	for _, i := range e.log {
		m := &e.mbs[i]
		p.Moves = append(p.Moves, Move{
			Mailbox: m.Name, From: m.Cluster, To: e.cs[e.to[i]].Name,
			Bytes: m.Bytes, Load: m.Load, Messages: m.Messages,
		})
		p.Totals.Bytes += m.Bytes
		load += m.Load
	}
	p.Totals.Moves = len(p.Moves)
	p.Totals.Load = round(load)
	for i := range e.cs {
		c := &e.cs[i]
		p.Clusters = append(p.Clusters, ClusterProjection{
			Name:          c.Name,
			Health:        string(c.Health),
			Added:         c.added,
			Receives:      c.receives,
			CapacityBytes: c.Capacity.Bytes,
			CapacityLoad:  c.Capacity.Load,
			Before:        usage(c.n0, c.b0, c.l0, c),
			After:         usage(c.n, c.b, c.l, c),
			MovesIn:       c.in,
			MovesOut:      c.out,
		})
	}
	p.ETA, p.Totals.Messages, p.Totals.MessagesEstimated = e.eta(pol.Throughput)
	return p
}

func usage(n int, b int64, l float64, c *cstate) Usage {
	return Usage{
		Mailboxes:   n,
		Bytes:       b,
		Load:        round(l),
		LoadUtil:    round(l / c.capL),
		StorageUtil: round(float64(b) / c.capB),
	}
}
