package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"mailferry/inventory"
	"mailferry/migrate"
	"mailferry/planner"
	"mailferry/state"
)

// Plans start from where mailboxes are now: what the state says about the
// moves earlier runs finished (see planner.Relocate).

// history is what the state records about earlier moves, for an
// inventory: those done, and those started and not finished (in flight)
// that changed in the last inFlightAge.
type history struct {
	done     []planner.DoneMove
	inflight []planner.InFlight
	where    string // the state's location; "" without one
}

// inFlightAge: a move not finished and untouched for longer is taken as
// given up, and a plan does not carry it on.
const inFlightAge = 7 * 24 * time.Hour

// readHistory reads the done moves from the state at url, if there is
// one; a state that does not exist yet (nothing has run) or "none" is no
// history. Moves whose clusters the inventory does not name are left out.
func readHistory(ctx context.Context, url, passwordFile string, inv *inventory.Inventory) (history, error) {
	if url == "none" {
		return history{}, nil
	}
	st, err := openState(ctx, url, passwordFile, state.Existing())
	switch {
	case errors.Is(err, state.ErrNoState):
		return history{}, nil
	case err != nil:
		return history{}, err
	case st == nil:
		return history{}, nil
	}
	defer st.Close()
	rs, err := st.InPhase(ctx, migrate.PhaseDone)
	if err != nil {
		return history{}, fmt.Errorf("state: %w", err)
	}
	started, err := st.NotInPhase(ctx, migrate.PhaseDone)
	if err != nil {
		return history{}, fmt.Errorf("state: %w", err)
	}
	h := history{where: st.Location()}
	names := make([]string, 0, len(inv.Clusters))
	for _, c := range inv.Clusters {
		names = append(names, c.Name)
	}
	// Longest first: a cluster name may be a prefix of another's.
	slices.SortFunc(names, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	for _, r := range rs {
		from, mb, ok := splitMoveKey(r.Key.Source, names)
		if !ok {
			continue
		}
		to, mb2, ok := splitMoveKey(r.Key.Target, names)
		if !ok || mb2 != mb || to == from {
			continue
		}
		h.done = append(h.done, planner.DoneMove{Mailbox: mb, From: from, To: to, Bytes: r.Bytes, Messages: r.Messages,
			Started: r.Created, Done: r.Updated})
	}
	for _, r := range started {
		if time.Since(r.Updated) > inFlightAge {
			continue
		}
		from, mb, ok := splitMoveKey(r.Key.Source, names)
		if !ok {
			continue
		}
		if to, mb2, ok := splitMoveKey(r.Key.Target, names); ok && mb2 == mb && to != from {
			h.inflight = append(h.inflight, planner.InFlight{Mailbox: mb, From: from, To: to})
		}
	}
	return h, nil
}

// splitMoveKey takes one side of a migrate.MoveKey apart: "cluster:" +
// a cluster of names + "/" + the mailbox.
func splitMoveKey(side string, names []string) (cluster, mailbox string, ok bool) {
	rest, ok := strings.CutPrefix(side, "cluster:")
	if !ok {
		return "", "", false
	}
	for _, n := range names {
		if mb, ok := strings.CutPrefix(rest, n+"/"); ok && mb != "" {
			return n, mb, true
		}
	}
	return "", "", false
}

// fromHistory applies the history to a plan's inputs: the inventory with
// mailboxes where their done moves took them, the mailboxes the cooldown
// holds, and the ETA's calibration. It returns the inventory to plan from
// and how many mailboxes it relocated.
func (h history) apply(inv *inventory.Inventory, pol *planner.Policy, cooldown time.Duration, now time.Time) (*inventory.Inventory, int) {
	pol.InFlight = h.inflight
	if len(h.done) == 0 {
		return inv, 0
	}
	inv, n := planner.Relocate(inv, h.done)
	if cooldown > 0 {
		pol.CooldownSeconds = cooldown.Seconds()
		pol.CoolingDown = planner.Cooling(inv, h.done, now, cooldown)
	}
	pol.Throughput.Calibration = planner.Calibrate(pol.Throughput, inv, h.done)
	return inv, n
}

// historyNote says what the state changed about a plan, or "".
func historyNote(h history, p *planner.Plan) string {
	var parts []string
	if p.RelocatedMailboxes > 0 {
		parts = append(parts, fmt.Sprintf("%d mailboxes placed where done moves took them", p.RelocatedMailboxes))
	}
	if n := inFlightPlanned(p); n > 0 {
		parts = append(parts, fmt.Sprintf("%d moves in flight go on to their targets", n))
	}
	if n := len(p.Policy.CoolingDown); n > 0 {
		parts = append(parts, fmt.Sprintf("%d moved within the cooldown (%s) stay", n, time.Duration(p.Policy.CooldownSeconds*float64(time.Second))))
	}
	if cal := p.Policy.Throughput.Calibration; len(cal) > 0 {
		var cs []string
		for _, c := range cal {
			cs = append(cs, fmt.Sprintf("%s x%.2f (%d moves)", c.Cluster, c.Factor, c.Moves))
		}
		parts = append(parts, "ETA calibrated by measured moves: "+strings.Join(cs, ", "))
	}
	if len(parts) == 0 {
		return ""
	}
	where := h.where
	if where == "" {
		where = "the state"
	}
	return "From " + where + ": " + strings.Join(parts, "; ")
}

// inFlightPlanned counts the plan's moves that carry on a move in flight.
func inFlightPlanned(p *planner.Plan) int {
	if len(p.Policy.InFlight) == 0 {
		return 0
	}
	fl := map[planner.InFlight]bool{}
	for _, f := range p.Policy.InFlight {
		fl[f] = true
	}
	n := 0
	for _, m := range p.Moves {
		if fl[planner.InFlight{Mailbox: m.Mailbox, From: m.From, To: m.To}] {
			n++
		}
	}
	return n
}

// applyThroughput is the ETA model of an apply run with these flags.
func applyThroughput(a *applyFlags) planner.Throughput {
	t := planner.DefaultPolicy(planner.Drain, "").Throughput
	t.Parallelism, t.Connections, t.Verify = a.parallel, a.connections, a.verify
	t.Windows = a.windows
	return t
}

// planFromState makes the policy's plan for drain and rebalance from where
// mailboxes are now (the state's done moves, the cooldown) with the ETA of
// the apply run these flags ask for.
func planFromState(ctx context.Context, a *applyFlags, inv *inventory.Inventory, pol planner.Policy) (*inventory.Inventory, *planner.Plan, history, error) {
	pol.Throughput = applyThroughput(a)
	pol.Throughput.Verify = strings.ToLower(pol.Throughput.Verify)
	h, err := readHistory(ctx, a.state, a.statePassword, inv)
	if err != nil {
		return nil, nil, h, err
	}
	inv, n := h.apply(inv, &pol, a.cooldown, time.Now())
	p, err := planner.Make(inv, pol)
	if err != nil {
		return nil, nil, h, usageErrorf("plan: %w", err)
	}
	p.RelocatedMailboxes = n
	p.Inventory = a.inventory
	return inv, p, h, nil
}

// relocateFromState is the inventory an apply checks its plan against:
// mailboxes where the state's done moves took them, as when the plan was
// made. The plan's own moves that are done since are left out: they are
// the plan's, and the run skips them.
func relocateFromState(ctx context.Context, a *applyFlags, inv *inventory.Inventory, plan *planner.Plan) (*inventory.Inventory, error) {
	h, err := readHistory(ctx, a.state, a.statePassword, inv)
	if err != nil || len(h.done) == 0 {
		return inv, err
	}
	own := make(map[[3]string]bool, len(plan.Moves))
	for _, m := range plan.Moves {
		own[[3]string{m.Mailbox, m.From, m.To}] = true
	}
	others := h.done[:0:0]
	for _, d := range h.done {
		if !own[[3]string{d.Mailbox, d.From, d.To}] {
			others = append(others, d)
		}
	}
	inv, _ = planner.Relocate(inv, others)
	return inv, nil
}
