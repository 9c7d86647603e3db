package planner

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"mailferry/inventory"
)

var t0 = time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)

func TestRelocate(t *testing.T) {
	inv := small()
	done := []DoneMove{
		{Mailbox: "mid", From: "a", To: "c", Done: t0},
		{Mailbox: "busy", From: "a", To: "b", Done: t0.Add(time.Hour)},
		{Mailbox: "busy", From: "b", To: "c", Done: t0.Add(2 * time.Hour)}, // moved on
		{Mailbox: "b1", From: "a", To: "c", Done: t0},                      // not where the inventory has it
		{Mailbox: "gone", From: "a", To: "b", Done: t0},                    // not in the inventory
		{Mailbox: "idle", From: "a", To: "zz", Done: t0},                   // unknown target
	}
	slices.Reverse(done) // any order: oldest first is Relocate's
	out, n := Relocate(inv, done)
	if n != 2 {
		t.Fatalf("relocated %d, want 2", n)
	}
	on := map[string]string{}
	for _, m := range out.Mailboxes {
		on[m.Name] = m.Cluster
	}
	if on["mid"] != "c" || on["busy"] != "c" || on["b1"] != "b" || on["idle"] != "a" {
		t.Fatalf("placed %v", on)
	}
	if inv.Mailboxes[1].Cluster != "a" {
		t.Fatal("Relocate changed its input")
	}
	if same, n := Relocate(inv, nil); same != inv || n != 0 {
		t.Fatal("no moves: a copy")
	}
	// Cooling: moved to where they are within the cooldown.
	now := t0.Add(3 * time.Hour)
	if got := Cooling(out, done, now, 2*time.Hour+30*time.Minute); !slices.Equal(got, []string{"busy"}) {
		t.Fatalf("cooling %v", got)
	}
	if got := Cooling(out, done, now, DefaultCooldown); !slices.Equal(got, []string{"busy", "mid"}) {
		t.Fatalf("cooling %v", got)
	}
}

// A plan from where mailboxes are now: a drain after some moves finished
// does not plan them again, and holds those in the cooldown.
func TestPlanFromDoneMoves(t *testing.T) {
	inv := small()
	done := []DoneMove{{Mailbox: "busy", From: "a", To: "b", Done: t0}}
	now, _ := Relocate(inv, done)
	pol := DefaultPolicy(Drain, "b")
	pol.CooldownSeconds = DefaultCooldown.Seconds()
	pol.CoolingDown = Cooling(now, done, t0.Add(time.Hour), DefaultCooldown)
	p := mustPlan(t, now, pol)
	for _, m := range p.Moves {
		if m.Mailbox == "busy" {
			t.Fatalf("moved busy again: %+v", m)
		}
	}
	var held *Unplaceable
	for i := range p.Unplaceable {
		if p.Unplaceable[i].Mailbox == "busy" {
			held = &p.Unplaceable[i]
		}
	}
	if held == nil || held.Reason != "moved here less than 7d ago (cooldown)" {
		t.Fatalf("unplaceable %+v", p.Unplaceable)
	}
	// Past the cooldown it moves with the rest.
	pol.CoolingDown = Cooling(now, done, t0.Add(8*24*time.Hour), DefaultCooldown)
	p = mustPlan(t, now, pol)
	if !slices.ContainsFunc(p.Moves, func(m Move) bool { return m.Mailbox == "busy" }) {
		t.Fatalf("busy stays after the cooldown: %+v", p.Moves)
	}
}

// A rebalance, its moves done, then the next night's: nothing to move
// (converged), and with a cooldown nothing it moved is a candidate.
func TestRebalanceAfterDone(t *testing.T) {
	inv, err := inventory.Load("../testdata/inventory/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pol := DefaultPolicy(Rebalance, "")
	p := mustPlan(t, inv, pol)
	var done []DoneMove
	for _, m := range p.Moves {
		done = append(done, DoneMove{Mailbox: m.Mailbox, From: m.From, To: m.To, Bytes: m.Bytes, Done: t0})
	}
	now, n := Relocate(inv, done)
	if n != len(p.Moves) {
		t.Fatalf("relocated %d of %d", n, len(p.Moves))
	}
	next := pol
	next.CoolingDown = Cooling(now, done, t0.Add(24*time.Hour), DefaultCooldown)
	if len(next.CoolingDown) != len(p.Moves) {
		t.Fatalf("%d cooling, %d moved", len(next.CoolingDown), len(p.Moves))
	}
	if q := mustPlan(t, now, next); len(q.Moves) != 0 || !q.Goal.Met {
		t.Fatalf("the next rebalance makes %d moves: %s", len(q.Moves), q.Goal.Detail)
	}
	if q := mustPlan(t, now, pol); len(q.Moves) != 0 {
		t.Fatalf("without the cooldown the next rebalance makes %d moves", len(q.Moves))
	}
}

func TestCalibrate(t *testing.T) {
	inv := small()
	th := DefaultPolicy(Drain, "a").Throughput
	// 1 GiB, 1000 messages: 2 s + (2 GiB / 20 MiB/s + 10 s) / 2 pairs = 58.2 s
	// alone; these took twice that.
	var done []DoneMove
	for i := range 4 {
		done = append(done, DoneMove{Mailbox: "m" + string(rune('0'+i)), From: "a", To: "b", Bytes: 1 << 30, Messages: 1000,
			Started: t0, Done: t0.Add(time.Duration(2 * 58.2 * float64(time.Second)))})
	}
	done = append(done, DoneMove{Mailbox: "x", From: "a", To: "c", Bytes: 1 << 30, Messages: 1000, Started: t0, Done: t0.Add(30 * 24 * time.Hour)}) // resumed a month later
	cal := Calibrate(th, inv, done)
	if len(cal) != 2 || cal[0].Cluster != "a" || cal[0].Moves != 4 || math.Abs(cal[0].Factor-2) > 0.01 || cal[1].Cluster != "b" {
		t.Fatalf("calibration %+v", cal)
	}
	// The ETA of moves on a calibrated cluster doubles their work.
	pol := DefaultPolicy(Drain, "a")
	slow := pol
	slow.Throughput.Calibration = []Calibration{{Cluster: "a", Moves: 4, Factor: 2}}
	p, q := mustPlan(t, small(), pol), mustPlan(t, small(), slow)
	if r := q.ETA.Seconds / p.ETA.Seconds; math.Abs(r-2) > 0.05 {
		t.Fatalf("calibrated ETA %v, uncalibrated %v", q.ETA.Seconds, p.ETA.Seconds)
	}
	slow.Throughput.Calibration[0].Factor = 0
	if _, err := Make(small(), slow); err == nil || !strings.Contains(err.Error(), "calibration") {
		t.Fatalf("factor 0: %v", err)
	}
}

// Moves in flight go on to their targets when the policy moves their
// mailboxes, where they still fit.
func TestInFlight(t *testing.T) {
	pol := DefaultPolicy(Drain, "a")
	pol.InFlight = []InFlight{
		{Mailbox: "busy", From: "a", To: "c"}, // the drain would take it to b
		{Mailbox: "big", From: "a", To: "b"},  // does not fit on b
		{Mailbox: "b1", From: "b", To: "c"},   // not what a drain of a moves
	}
	p := mustPlan(t, small(), pol)
	if p.Moves[0].Mailbox != "busy" || p.Moves[0].To != "c" {
		t.Fatalf("moves %+v", p.Moves)
	}
	for _, m := range p.Moves {
		if m.Mailbox == "b1" || m.Mailbox == "big" {
			t.Fatalf("moves %+v", p.Moves)
		}
	}
	if !SameMoves(p, small()) {
		t.Fatal("the plan does not replay")
	}
	reb := DefaultPolicy(Rebalance, "")
	reb.InFlight = []InFlight{{Mailbox: "c1", From: "c", To: "b"}}
	q := mustPlan(t, small(), reb)
	checkInvariants(t, small(), reb, q)
}
