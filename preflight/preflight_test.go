package preflight

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"mailferry/internal/imapconn"
	"mailferry/inventory"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want Kind
	}{
		{&imapconn.SetupError{Side: "cluster b", Err: errors.New("x509: certificate signed by unknown authority")}, TLS},
		{fmt.Errorf("wrapped: %w", &imapconn.AuthError{Side: "cluster b", Login: "u*a", Addr: "h:1", Err: errors.New("no")}), Login},
		{&imapconn.TimeoutError{Side: "cluster b", Addr: "h:1"}, Unreachable},
		{context.DeadlineExceeded, Unreachable},
		{errors.New("cluster b: cannot connect to h:1: connection refused"), Unreachable},
		{errors.New("cluster b: TLS with h:1 failed: remote error"), TLS},
		{&configError{errors.New("cluster b: credentials_file f has no line for mailbox \"x\"")}, Secret},
		{&configError{errors.New("cluster b: url: bad")}, Config},
		{&quotaError{msg: "needs"}, Quota},
	} {
		if got := classify(tc.err); got != tc.want {
			t.Errorf("classify(%v) = %s, want %s", tc.err, got, tc.want)
		}
	}
}

func TestKinds(t *testing.T) {
	for k, want := range map[Kind][2]bool{Secret: {true, false}, TLS: {true, false}, Login: {true, false}, Config: {true, false},
		Unreachable: {false, false}, Quota: {false, true}, TooBig: {false, true}} {
		if k.Configuration() != want[0] || k.Fit() != want[1] {
			t.Errorf("%s: configuration %v, fit %v; want %v", k, k.Configuration(), k.Fit(), want)
		}
	}
}

func TestCapOf(t *testing.T) {
	for _, tc := range []struct {
		conns  int
		health inventory.Health
		dflt   int
		want   int
	}{
		{0, inventory.Healthy, 0, 4}, {0, inventory.Healthy, 16, 16}, {6, inventory.Healthy, 16, 6},
		{8, inventory.Degraded, 0, 2}, {2, inventory.Degraded, 0, 1},
	} {
		c := &inventory.Cluster{Health: tc.health, Limits: inventory.Limits{Connections: tc.conns}}
		if got := capOf(c, Options{Connections: tc.dflt}); got != tc.want {
			t.Errorf("%+v: cap %d, want %d", tc, got, tc.want)
		}
	}
}

func TestFeatureNames(t *testing.T) {
	offered, missing := imapconn.Features{UIDPlus: true, LiteralPlus: true, LiteralMinus: true, AppendLimit: 1 << 20, Quota: true}.Names()
	if got := strings.Join(offered, " "); got != "UIDPLUS LITERAL+ APPENDLIMIT=1048576 QUOTA" {
		t.Errorf("offered %q", got)
	}
	if got := strings.Join(missing, " "); got != "MULTIAPPEND CONDSTORE QRESYNC STATUS=SIZE SPECIAL-USE" {
		t.Errorf("missing %q", got)
	}
}

func TestClusterOfField(t *testing.T) {
	if c, f := clusterOfField("clusters[bravo].auth.password_file"); c != "bravo" || f != "auth.password_file" {
		t.Errorf("got %q %q", c, f)
	}
}

// A plan naming a cluster the inventory lacks is a configuration problem,
// found without any login.
func TestUnknownCluster(t *testing.T) {
	inv := &inventory.Inventory{}
	rep := Run(context.Background(), inv, []Move{{Mailbox: "m", From: "a", To: "b", Bytes: 1}}, Options{})
	if rep.OK() || len(rep.Problems) != 2 || !rep.Has(Kind.Configuration) {
		t.Fatalf("report %+v", rep)
	}
}
