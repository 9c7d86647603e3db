package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailferry/migrate"
	"mailferry/planner"
	"mailferry/state"
)

// updateGolden reports whether -update was given. The flag is registered
// here unless another test file of the package already did.
func updateGolden() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

var _ = func() bool {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files under testdata/")
	}
	return true
}()

const exampleInventory = "../../testdata/inventory/example.yaml"

// golden compares got with testdata/plan/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("..", "..", "testdata", "plan", name)
	if updateGolden() {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/mailferry -run Golden -update)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (rerun with -update if intended):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestPlanGolden(t *testing.T) {
	cases := []struct {
		name string
		args []string
		code int // 3: the goal is not met
	}{
		{"drain-bravo", []string{"--drain", "bravo"}, exitPartial}, // ceo@ is pinned
		{"relieve-bravo", []string{"--relieve", "bravo", "--same-tag", "region"}, exitOK},
		{"rebalance", []string{"--rebalance", "--max-moves", "60"}, exitPartial},
		{"rebalance-full", []string{"--rebalance"}, exitOK},
		{"whatif-drain-bravo", []string{"--drain", "bravo", "--assume", "charlie.capacity.load=50%",
			"--add-cluster", "echo:1TiB:150:region=eu-west", "--exclude-target", "delta"}, exitPartial},
		{"relieve-infeasible", []string{"--relieve", "bravo", "--same-tag", "region", "--target-load", "0.02"}, exitPartial},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"plan", "-i", exampleInventory}, tc.args...)
			code, out, errOut := runCLI(t, nil, args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d: %s", code, tc.code, errOut)
			}
			golden(t, tc.name+".txt", out)
			code, out, errOut = runCLI(t, nil, append(args, "--json")...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d: %s", code, tc.code, errOut)
			}
			if _, err := planner.ReadPlan(strings.NewReader(out)); err != nil {
				t.Fatalf("the JSON plan does not read back: %v", err)
			}
			golden(t, tc.name+".json", out)
		})
	}
}

func TestPlanOutputFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "plan.json")
	code, out, errOut := runCLI(t, nil, "plan", "-i", exampleInventory, "--drain", "bravo", "-o", path)
	if code != exitPartial { // ceo@ is pinned: the drain's goal is not met, the plan is written
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "Plan written to "+path) || !strings.Contains(out, "CLUSTER") {
		t.Fatalf("stdout: %s", out)
	}
	// The hint runs the plan with a cutover hook: without one no move is final.
	if hint := "mailferry apply " + path + " -i " + exampleInventory + " --cutover-exec "; !strings.Contains(out, hint) {
		t.Errorf("the run-it-with hint lacks %q:\n%s", hint, out)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, jsonOut, _ := runCLI(t, nil, "plan", "-i", exampleInventory, "--drain", "bravo", "--json")
	if string(data) != jsonOut {
		t.Fatal("-o and --json wrote different documents")
	}
	p, err := planner.ReadPlan(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if p.Version != planner.Version || len(p.Moves) != 320 || p.Moves[0].From != "bravo" {
		t.Fatalf("plan: version %d, %d moves", p.Version, len(p.Moves))
	}
}

func TestPlanUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"plan", "--drain", "bravo"}, "say -i FILE"},
		{[]string{"plan", "-i", exampleInventory}, "exactly one of"},
		{[]string{"plan", "-i", exampleInventory, "--drain", "bravo", "--rebalance"}, "exactly one of"},
		{[]string{"plan", "-i", exampleInventory, "--drain", "bravo", "--band", "0.1"}, "--band applies only to --rebalance"},
		{[]string{"plan", "-i", exampleInventory, "--drain", "zulu"}, `no cluster "zulu"`},
		{[]string{"plan", "-i", exampleInventory, "--drain", "bravo", "--assume", "bravo.colour=red"}, "unknown field"},
		{[]string{"plan", "-i", exampleInventory, "--drain", "bravo", "--max-bytes", "lots"}, "--max-bytes"},
		{[]string{"plan", "-i", "nope.yaml", "--drain", "bravo"}, "nope.yaml"},
	} {
		code, _, errOut := runCLI(t, nil, tc.args...)
		if code != exitUsage || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
}

// TestPlanNeverConnects points every cluster of an inventory at a listener
// of ours and checks that planning (with every policy) never dials it.
func TestPlanNeverConnects(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c
		}
	}()
	addr := ln.Addr().String()
	dir := t.TempDir()
	var y strings.Builder
	y.WriteString("clusters:\n")
	for _, name := range []string{"a", "b", "c"} {
		fmt.Fprintf(&y, "  - {name: %s, url: 'imap://%s', tls: none, auth: {method: master, user: admin, password_env: PW}, capacity: {bytes: 1TiB, load: 100}}\n", name, addr)
	}
	y.WriteString("mailboxes:\n")
	for i := range 30 {
		fmt.Fprintf(&y, "  - {name: u%d, cluster: %s, bytes: %dGiB, load: %d}\n", i, []string{"a", "b", "c"}[i%3], 1+i, 1+i%5)
	}
	path := filepath.Join(dir, "inv.yaml")
	if err := os.WriteFile(path, []byte(y.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"--drain", "a"}, {"--relieve", "b", "--target-load", "0.1"}, {"--rebalance", "--band", "0.01"}} {
		code, out, errOut := runCLI(t, map[string]string{"PW": "secret"}, append([]string{"plan", "-i", path}, args...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
		if !strings.Contains(out, "Moves:") {
			t.Fatalf("%v: no plan: %s", args, out)
		}
		if strings.Contains(out, "secret") {
			t.Fatal("the password reached the output")
		}
	}
	select {
	case c := <-accepted:
		c.Close()
		t.Fatal("mailferry plan opened a connection to a cluster")
	case <-time.After(50 * time.Millisecond):
	}
}

func TestInventoryCheck(t *testing.T) {
	// The example's secrets live on no test machine.
	code, out, errOut := runCLI(t, nil, "inventory", "check", "-i", exampleInventory, "--skip-secrets")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "ok: 4 clusters, 1002 mailboxes") || !strings.Contains(out, "bravo    degraded") {
		t.Fatalf("output:\n%s", out)
	}
	code, out, _ = runCLI(t, nil, "inventory", "check", "-i", exampleInventory, "--json", "--skip-secrets")
	if code != 0 || !strings.Contains(out, `"ok": true`) || !strings.Contains(out, `"mailboxes": 1002`) {
		t.Fatalf("json exit %d:\n%s", code, out)
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("clusters:\n  - name: a\n    url: imaps://a\n    auth: {method: master, user: x, password: hunter2}\n    capacity: {bytes: 1TiB, load: 1}\n    colour: red\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCLI(t, nil, "inventory", "check", "-i", bad)
	if code != exitUsage {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{bad + ":4: clusters[0].auth.password: inline secrets are not allowed", bad + ":6: clusters[0].colour: unknown field"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out+errOut, "hunter2") {
		t.Error("the inline password was echoed")
	}
	code, out, _ = runCLI(t, nil, "inventory", "check", "-i", bad, "--json")
	if code != exitUsage || !strings.Contains(out, `"ok": false`) || !strings.Contains(out, `"line": 6`) {
		t.Fatalf("json exit %d:\n%s", code, out)
	}
}

func TestPlanHelpHasExample(t *testing.T) {
	for _, args := range [][]string{{"plan", "--help"}, {"inventory", "check", "--help"}} {
		_, out, _ := runCLI(t, nil, args...)
		if !strings.Contains(out, "Examples:") || !strings.Contains(out, "testdata/inventory/example.yaml") {
			t.Errorf("%v: no worked example:\n%s", args, out)
		}
	}
}

// The plan's ETA assumes what mailferry apply does by default.
func TestPlanETADefaultsAreApplys(t *testing.T) {
	root := newRootCommand(strings.NewReader(""), io.Discard, newLogOutput(io.Discard, nil))
	flag := func(cmd, name string) string {
		c, _, err := root.Find([]string{cmd})
		if err != nil {
			t.Fatal(err)
		}
		f := c.Flags().Lookup(name)
		if f == nil {
			t.Fatalf("%s has no --%s", cmd, name)
		}
		return f.DefValue
	}
	for _, tc := range []struct{ apply, plan, planner string }{
		{"parallel", "parallel", strconv.Itoa(planner.DefaultParallelism)},
		{"connections", "connections", strconv.Itoa(planner.DefaultConnections)},
		{"verify", "verify", planner.DefaultVerify},
		{"state", "state", defaultState()},
	} {
		for _, cmd := range []string{"apply", "drain", "rebalance"} {
			if got := flag(cmd, tc.apply); got != tc.planner {
				t.Errorf("%s --%s defaults to %s, the plan's ETA assumes %s", cmd, tc.apply, got, tc.planner)
			}
		}
		if got := flag("plan", tc.plan); got != tc.planner {
			t.Errorf("plan --%s defaults to %s, want %s", tc.plan, got, tc.planner)
		}
	}
}

// doneMove records in the state at db that mailbox moved from one cluster
// to another, as apply does, started at start and done took later.
func doneMove(t *testing.T, db, mailbox, from, to string, bytes, msgs int64, start time.Time, took time.Duration) {
	t.Helper()
	ctx := context.Background()
	now := start
	st, err := state.Open(ctx, db, state.WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l, err := st.Acquire(ctx, migrate.MoveKey(migrate.Move{Mailbox: mailbox, From: from, To: to}), "test", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	now = start.Add(took)
	if err := l.SetProgress(ctx, state.Progress{Phase: migrate.PhaseDone, BytesTotal: bytes, MessagesTotal: msgs}); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// Plans start from where mailboxes are now: a mailbox a done move took off
// bravo is not planned again, is held by the cooldown, and the ETA is
// calibrated by how long such moves took.
func TestPlanFromState(t *testing.T) {
	db := filepath.Join(t.TempDir(), "state.db")
	recent := time.Now().Add(-time.Hour)
	for i, mb := range []string{"ines.0528@example.com", "kemal.0530@example.com", "pia.0475@example.com"} {
		doneMove(t, db, mb, "bravo", "charlie", 1<<30, 10000, recent.Add(time.Duration(i)*time.Minute), 10*time.Minute)
	}
	code, out, errOut := runCLI(t, nil, "plan", "-i", exampleInventory, "--drain", "bravo", "--state", db, "--json")
	if code != exitPartial {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	p, err := planner.ReadPlan(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if p.RelocatedMailboxes != 3 || len(p.Policy.CoolingDown) != 3 || p.Policy.CooldownSeconds != planner.DefaultCooldown.Seconds() {
		t.Fatalf("relocated %d, cooling %v", p.RelocatedMailboxes, p.Policy.CoolingDown)
	}
	for _, m := range p.Moves {
		if m.Mailbox == "ines.0528@example.com" {
			t.Fatalf("moved again: %+v", m)
		}
	}
	if len(p.Policy.Throughput.Calibration) != 2 || p.Policy.Throughput.Calibration[0].Cluster != "bravo" || !(p.Policy.Throughput.Calibration[0].Factor > 1) {
		t.Fatalf("calibration %+v", p.Policy.Throughput.Calibration)
	}
	// Text: says so.
	_, out, _ = runCLI(t, nil, "plan", "-i", exampleInventory, "--drain", "bravo", "--state", db)
	if !strings.Contains(out, "3 mailboxes placed where done moves took them; 3 moved within the cooldown (168h0m0s) stay; ETA calibrated by measured moves: bravo x") {
		t.Fatalf("output:\n%s", out)
	}
	// --state none plans from the inventory alone; --cooldown 0 holds nothing.
	_, out, _ = runCLI(t, nil, "plan", "-i", exampleInventory, "--drain", "bravo", "--state", "none", "--json")
	if p, _ := planner.ReadPlan(strings.NewReader(out)); p == nil || p.RelocatedMailboxes != 0 || len(p.Moves) != 320 {
		t.Fatalf("--state none: %v", p)
	}
	_, out, _ = runCLI(t, nil, "plan", "-i", exampleInventory, "--drain", "charlie", "--state", db, "--cooldown", "0", "--json")
	if p, _ := planner.ReadPlan(strings.NewReader(out)); p == nil || len(p.Policy.CoolingDown) != 0 ||
		!slices.ContainsFunc(p.Moves, func(m planner.Move) bool { return m.Mailbox == "ines.0528@example.com" }) {
		t.Fatalf("--cooldown 0: %v", p)
	}
	// drain (and rebalance) plan the same way and take --cooldown too.
	for _, c := range []struct {
		cooldown string
		held     int
	}{{"", 3}, {"0", 0}} {
		args := []string{"drain", "charlie", "-i", exampleInventory, "--state", db, "--dry-run", "--json"}
		if c.cooldown != "" {
			args = append(args, "--cooldown", c.cooldown)
		}
		_, out, errOut := runCLI(t, nil, args...)
		p, err := planner.ReadPlan(strings.NewReader(out))
		if err != nil || len(p.Policy.CoolingDown) != c.held {
			t.Fatalf("drain --cooldown %q: %v; plan %v\n%s", c.cooldown, err, p, errOut)
		}
	}
}

// The text plan lists the first moves, and every one with --moves.
func TestPlanListsMoves(t *testing.T) {
	_, out, _ := runCLI(t, nil, "plan", "-i", exampleInventory, "--drain", "bravo")
	if !strings.Contains(out, "Moves, in the order they start: the first 10 of 320 (--moves lists all") {
		t.Fatalf("output:\n%s", out)
	}
	_, out, _ = runCLI(t, nil, "plan", "-i", exampleInventory, "--drain", "bravo", "--moves")
	_, table, ok := strings.Cut(out, "Moves, in the order they start: 320\n")
	if !ok || strings.Count(table, " bravo ") < 320 {
		t.Fatalf("output:\n%s", out)
	}
}
