package planner

import (
	"fmt"
	"math"

	"mailferry/inventory"
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
	e, err := newEngine(inv, pol)
	if err != nil {
		<-digestc
		return nil, err
	}
	if pol.Kind == Rebalance {
		e, goal := rebalanceBest(inv, pol, e)
		p := e.plan(pol, goal)
		p.InventoryDigest = <-digestc
		return p, nil
	}
	var goal Goal
	switch pol.Kind {
	case Drain:
		x, err := e.clusterIndex(pol.Cluster)
		if err != nil {
			return nil, fmt.Errorf("drain: %w", err)
		}
		goal = e.drain(x)
	case Relieve:
		x, err := e.clusterIndex(pol.Cluster)
		if err != nil {
			return nil, fmt.Errorf("relieve: %w", err)
		}
		c := &e.cs[x]
		met, lb := e.relieve(x, pol.TargetLoad*c.capL, pol.TargetStorage*c.capB, true)
		goal = Goal{Met: met}
		if lb >= 0 {
			goal.LowerBoundBytes = int64(math.Ceil(lb))
		}
		state := fmt.Sprintf("%s at load %s, storage %s (targets %s, %s)", c.Name,
			pct(c.loadUtil()), pct(c.storageUtil()), pct(pol.TargetLoad), pct(pol.TargetStorage))
		switch {
		case met:
			goal.Detail = state
		case lb < 0:
			goal.Detail = state + ": not reachable even by moving every mailbox that may move"
		default:
			goal.Detail = state + ": targets not met"
		}
	}
	p := e.plan(pol, goal)
	p.InventoryDigest = <-digestc
	return p, nil
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
	if t.Parallelism < 0 || t.StreamBytesPerSec < 0 || !(t.MessageOverhead >= 0) || t.AvgMessageBytes < 0 {
		return fmt.Errorf("throughput model: values must not be negative")
	}
	return nil
}

func (t Throughput) withDefaults() Throughput {
	if t.Parallelism == 0 {
		t.Parallelism = DefaultParallelism
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
	if e.deferredN > 0 {
		p.Deferred = &Deferred{Mailboxes: e.deferredN, Bytes: e.deferredB, Reason: e.deferredWhy}
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
