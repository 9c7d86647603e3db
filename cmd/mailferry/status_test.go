package main

import (
	"testing"

	"mailferry/state"
)

// A move's key becomes mailbox and route, without any login: apply's
// cluster keys, migrate's server keys, and the URL keys of mailferry
// before schema 2 (with a Dovecot master login).
func TestStatusRouteOf(t *testing.T) {
	for _, tc := range []struct{ key, mailbox, where string }{
		{"cluster:alpha/u001", "u001", "alpha"},
		{"cluster:alpha/shared/team", "shared/team", "alpha"},
		{"imap://127.0.0.1:143/alice", "alice", "imap://127.0.0.1:143"},
		{"imap://u001%2Aadmin@10.0.0.1:993", "u001", "imap://10.0.0.1:993"},
		{"imaps://bob@mail.example.com:993", "bob", "imaps://mail.example.com:993"},
	} {
		mailbox, where := routeOf(tc.key)
		if mailbox != tc.mailbox || where != tc.where {
			t.Errorf("routeOf(%q) = %q, %q; want %q, %q", tc.key, mailbox, where, tc.mailbox, tc.where)
		}
	}
}

// A run that ended failed, held, interrupted or waiting says so instead of
// the phase; a done move is done whatever a later run said.
func TestStatusStateWord(t *testing.T) {
	for _, tc := range []struct{ phase, result, want string }{
		{"new", "failed", "failed"},
		{"copying", "interrupted", "interrupted"},
		{"ready", "held", "held"},
		{"ready", "synced", "ready"},
		{"converging", "waiting", "waiting"},
		{"done", "done", "done"},
		{"done", "failed", "done"},
		{"copying", "", "copying"},
	} {
		if got := stateWord(tc.phase, tc.result); got != tc.want {
			t.Errorf("stateWord(%q, %q) = %q, want %q", tc.phase, tc.result, got, tc.want)
		}
	}
}

// Run locks are not rows; a move's row has mailbox, from and to.
func TestStatusOfSeparatesLocks(t *testing.T) {
	out := statusOf([]state.MoveStatus{
		{Status: state.Status{Migration: state.Migration{Key: state.Key{Source: "run", Target: "/etc/inv.yaml"}}, Holder: "h pid 7"}},
		{Status: state.Status{Migration: state.Migration{Key: state.Key{Source: "rebalance", Target: "/etc/old.yaml"}}}},
		{Status: state.Status{Migration: state.Migration{Key: state.Key{Source: "cluster:a/bob", Target: "cluster:b/bob"}}}, Result: "failed"},
	})
	if len(out.Moves) != 1 || len(out.Locks) != 2 {
		t.Fatalf("statusOf: %d moves, %d locks; want 1 and 2", len(out.Moves), len(out.Locks))
	}
	if e := out.Moves[0]; e.Mailbox != "bob" || e.From != "a" || e.To != "b" || e.State != "failed" || e.Phase != "new" {
		t.Errorf("row %+v", e)
	}
	if h := out.Locks[0].Holder; h == nil || h.Host != "h" || h.PID != 7 {
		t.Errorf("lock holder %+v, want host h pid 7", h)
	}
}

func TestStatusOneLine(t *testing.T) {
	if got := statusLine("a\nb  c", 10); got != "a b c" {
		t.Errorf("oneLine = %q", got)
	}
	if got := statusLine("abcdefghijkl", 5); got != "abcd…" {
		t.Errorf("oneLine cut = %q", got)
	}
}
