package planner

import (
	"strings"
	"testing"

	"mailferry/inventory"
)

// A plan made from an inventory passes Check against it, whatever the
// policy: Check must never refuse what the planner itself proposes.
func TestCheckAcceptsFreshPlans(t *testing.T) {
	for _, pol := range []Policy{DefaultPolicy(Drain, "a"), DefaultPolicy(Relieve, "a"), DefaultPolicy(Rebalance, "")} {
		p := mustPlan(t, small(), pol)
		if len(p.Moves) == 0 {
			t.Fatalf("%s: no moves: the test proves nothing", pol.Kind)
		}
		if probs := Check(p, small()); len(probs) > 0 {
			t.Errorf("%s: a fresh plan has problems: %v", pol.Kind, probs)
		}
	}
}

func TestCheckRefusesWhatMayNotRun(t *testing.T) {
	base := mustPlan(t, small(), DefaultPolicy(Drain, "a")) // busy->b mid->c idle->c
	cases := []struct {
		name string
		edit func(p *Plan, inv *inventory.Inventory)
		want map[string]string // mailbox -> part of its reason
	}{
		{"reversed move into the drained cluster", func(p *Plan, _ *inventory.Inventory) {
			p.Moves = append(p.Moves, Move{Mailbox: "b1", From: "b", To: "a", Bytes: 40 << 30, Load: 30})
		}, map[string]string{"b1": "target a is degraded: it may not receive"}},
		{"target turned draining", func(_ *Plan, inv *inventory.Inventory) {
			inv.Cluster("c").Health = inventory.Draining
		}, map[string]string{"mid": "target c is draining", "idle": "target c is draining"}},
		{"unknown target", func(p *Plan, _ *inventory.Inventory) { p.Moves[0].To = "zulu" },
			map[string]string{"busy": `target cluster "zulu" is not in the inventory`}},
		{"unknown source", func(p *Plan, _ *inventory.Inventory) { p.Moves[0].From = "zulu" },
			map[string]string{"busy": `source cluster "zulu" is not in the inventory`}},
		{"mailbox moved since", func(_ *Plan, inv *inventory.Inventory) { inv.Mailboxes[1].Cluster = "b" },
			map[string]string{"busy": "the inventory has the mailbox on b, not on a"}},
		{"mailbox gone", func(_ *Plan, inv *inventory.Inventory) { inv.Mailboxes = inv.Mailboxes[2:] },
			map[string]string{"busy": "not in the inventory"}},
		{"mailbox pinned since", func(_ *Plan, inv *inventory.Inventory) { inv.Mailboxes[2].Pinned = true },
			map[string]string{"mid": "pins the mailbox"}},
		{"target shrank", func(_ *Plan, inv *inventory.Inventory) { inv.Cluster("c").Capacity.Bytes = 50 << 30 },
			map[string]string{"mid": "target c would be full", "idle": "target c would be full"}},
		{"target load capacity shrank", func(_ *Plan, inv *inventory.Inventory) { inv.Cluster("b").Capacity.Load = 60 },
			map[string]string{"busy": "target b would be full: it carries load 30, 70 after this plan"}},
		{"target excluded by the policy", func(p *Plan, _ *inventory.Inventory) { p.Policy.ExcludeTargets = []string{"b"} },
			map[string]string{"busy": "excluded"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := *base
			p.Moves = append([]Move(nil), base.Moves...)
			inv := small()
			tc.edit(&p, inv)
			got := map[string]string{}
			for _, pr := range Check(&p, inv) {
				got[pr.Mailbox] = pr.Reason
			}
			if len(got) != len(tc.want) {
				t.Errorf("problems %v, want one for each of %v", got, tc.want)
			}
			for mb, part := range tc.want {
				if !strings.Contains(got[mb], part) {
					t.Errorf("problem of %s: %q, want it to say %q", mb, got[mb], part)
				}
			}
		})
	}
}

func TestInventoryDigest(t *testing.T) {
	d := InventoryDigest(small())
	if !strings.HasPrefix(d, "sha256:") || len(d) != len("sha256:")+64 {
		t.Fatalf("digest %q", d)
	}
	reordered := small()
	reordered.Mailboxes[0], reordered.Mailboxes[3] = reordered.Mailboxes[3], reordered.Mailboxes[0]
	reordered.Clusters[0], reordered.Clusters[1] = reordered.Clusters[1], reordered.Clusters[0]
	reordered.Clusters[0].URL = "imaps://elsewhere:993" // not what plans are made of
	if got := InventoryDigest(reordered); got != d {
		t.Errorf("the same inventory in another order (and another URL) has another digest")
	}
	for name, edit := range map[string]func(*inventory.Inventory){
		"health":   func(inv *inventory.Inventory) { inv.Clusters[1].Health = inventory.Draining },
		"capacity": func(inv *inventory.Inventory) { inv.Clusters[1].Capacity.Bytes++ },
		"tag":      func(inv *inventory.Inventory) { inv.Clusters[1].Tags["region"] = "us" },
		"location": func(inv *inventory.Inventory) { inv.Mailboxes[0].Cluster = "b" },
		"size":     func(inv *inventory.Inventory) { inv.Mailboxes[0].Bytes++ },
		"pin":      func(inv *inventory.Inventory) { inv.Mailboxes[0].Pinned = true },
		"added": func(inv *inventory.Inventory) {
			inv.Mailboxes = append(inv.Mailboxes, inventory.Mailbox{Name: "new", Cluster: "b"})
		},
	} {
		inv := small()
		edit(inv)
		if InventoryDigest(inv) == d {
			t.Errorf("a changed %s keeps the digest", name)
		}
	}
	p := mustPlan(t, small(), DefaultPolicy(Drain, "a"))
	if !SameMoves(p, small()) {
		t.Error("a fresh plan does not have the moves its inventory and policy give")
	}
	edited := *p
	edited.Moves = append([]Move(nil), p.Moves...)
	edited.Moves[0].To = "c"
	if SameMoves(&edited, small()) {
		t.Error("a plan with an edited target has the same moves")
	}
	if edited.Moves = p.Moves[1:]; SameMoves(&edited, small()) {
		t.Error("a plan with a move removed has the same moves")
	}
	if p.InventoryDigest != d {
		t.Errorf("the plan carries digest %q, want %q", p.InventoryDigest, d)
	}
}
