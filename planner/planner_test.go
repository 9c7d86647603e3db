package planner

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"mailferry/inventory"
)

func small() *inventory.Inventory {
	cl := func(name string, gib int64, load float64, h inventory.Health, region string) inventory.Cluster {
		return inventory.Cluster{Name: name, URL: "imaps://" + name + ":993", Health: h,
			Capacity: inventory.Capacity{Bytes: gib << 30, Load: load},
			Limits:   inventory.Limits{Connections: 4, BytesPerSec: 100 << 20},
			Tags:     map[string]string{"region": region}}
	}
	inv := &inventory.Inventory{Clusters: []inventory.Cluster{
		cl("a", 100, 100, inventory.Degraded, "eu"),
		cl("b", 100, 100, inventory.Healthy, "eu"),
		cl("c", 100, 100, inventory.Healthy, "us"),
		cl("d", 100, 100, inventory.ReadOnly, "eu"),
	}}
	mb := func(name, c string, gib int64, load float64) {
		inv.Mailboxes = append(inv.Mailboxes, inventory.Mailbox{Name: name, Cluster: c, Bytes: gib << 30, Load: load, Messages: gib * 10000})
	}
	mb("big", "a", 60, 5)   // too big for anyone once the others moved
	mb("busy", "a", 10, 40) // most load per byte
	mb("mid", "a", 20, 20)  //
	mb("idle", "a", 5, 1)   //
	mb("b1", "b", 40, 30)   //
	mb("c1", "c", 40, 30)   //
	mb("d1", "d", 10, 10)   //
	return inv
}

func TestDrainSmall(t *testing.T) {
	p := mustPlan(t, small(), DefaultPolicy(Drain, "a"))
	var got []string
	for _, m := range p.Moves {
		got = append(got, m.Mailbox+"->"+m.To)
	}
	// busy (4/GiB) first, to the emptier of b and c (tie: b); mid next to
	// c; idle to c (65% storage beats b's 71% load); big fits nowhere (b
	// has 40 GiB left under its 90 GiB limit, c 25); d is readonly and
	// never receives.
	if want := "busy->b mid->c idle->c"; strings.Join(got, " ") != want {
		t.Fatalf("moves %q, want %q", strings.Join(got, " "), want)
	}
	if len(p.Unplaceable) != 1 || p.Unplaceable[0].Mailbox != "big" || !strings.Contains(p.Unplaceable[0].Reason, "needs 60.0 GiB; the most free storage on a target, keeping the reserve, is 40.0 GiB on b") {
		t.Fatalf("unplaceable %+v", p.Unplaceable)
	}
	if p.Goal.Met {
		t.Fatal("goal met with big left behind")
	}
	// ETA, as apply runs it: all three start at once (4 at a time); each
	// could use 2 connection pairs, but a allows 4 connections: busy gets
	// 2, mid and idle 1. A pair carries 20 MiB/s, every byte is read back
	// (verify full), and each message costs 10 ms: busy is 2024
	// pair-seconds, so 2 s (the per-move overhead) + 1012 s; mid (4048)
	// gets its second pair when busy ends and ends at 2532 s, with nothing
	// left to start.
	if p.ETA.Seconds != 2532 || p.ETA.BottleneckKind != "mailbox" || p.ETA.Bottleneck != "mid" || p.ETA.Clusters[0].Streams != 4 {
		t.Fatalf("eta %+v", p.ETA)
	}
	// With fast streams and no per-message cost, a's 100 MiB/s limit
	// binds: 35 GiB in 358 s, after the 2 s overhead, and a second while
	// a's throttle (degraded) grows from 1 to its cap of 4.
	pol := DefaultPolicy(Drain, "a")
	pol.Throughput.StreamBytesPerSec = 1 << 30
	pol.Throughput.MessageOverhead = 0
	p = mustPlan(t, small(), pol)
	if p.ETA.Bottleneck != "a" || p.ETA.Seconds != 361 || !strings.Contains(p.ETA.Detail, "bound by its limits.bytes_per_sec (100 MiB/s)") {
		t.Fatalf("eta %+v", p.ETA)
	}
	// One move at a time: the three in turn.
	pol.Throughput.Parallelism = 1
	p = mustPlan(t, small(), pol)
	if p.ETA.Seconds != 364 {
		t.Fatalf("one at a time: eta %+v", p.ETA)
	}
}

func TestSameTagAndExclude(t *testing.T) {
	pol := DefaultPolicy(Drain, "a")
	pol.SameTags = []string{"region"}
	p := mustPlan(t, small(), pol)
	for _, m := range p.Moves {
		if m.To != "b" {
			t.Fatalf("move to %s crosses regions", m.To)
		}
	}
	pol.ExcludeTargets = []string{"b"}
	p = mustPlan(t, small(), pol)
	if len(p.Moves) != 0 || len(p.Unplaceable) != 4 || !strings.Contains(p.Unplaceable[0].Reason, "no cluster that can receive has the same region=eu") {
		t.Fatalf("moves %v unplaceable %+v", p.Moves, p.Unplaceable)
	}
}

func TestBoundsAndPins(t *testing.T) {
	pol := DefaultPolicy(Drain, "a")
	pol.MaxMoves = 1
	pol.Pinned = []string{"mid"}
	p := mustPlan(t, small(), pol)
	if len(p.Moves) != 1 || p.Moves[0].Mailbox != "busy" {
		t.Fatalf("moves %+v", p.Moves)
	}
	// Without the bound the drain moves busy and idle; big fits nowhere
	// even then, and mid is pinned: one move left for a later run.
	if d := p.Deferred; d == nil || d.Mailboxes != 1 || d.Bytes != 5<<30 || d.WantedMoves != 2 || !strings.Contains(d.Reason, "--max-moves 1") {
		t.Fatalf("deferred %+v", p.Deferred)
	}
	if len(p.Unplaceable) != 2 || p.Unplaceable[0].Reason != "pinned" || p.Unplaceable[1].Mailbox != "big" {
		t.Fatalf("unplaceable %+v", p.Unplaceable)
	}
	pol = DefaultPolicy(Drain, "a")
	pol.MaxBytes = 16 << 30
	p = mustPlan(t, small(), pol)
	if p.Totals.Bytes != 15<<30 {
		t.Fatalf("max bytes 16 GiB: moved %d", p.Totals.Bytes)
	}
}

func TestWhatIf(t *testing.T) {
	pol := DefaultPolicy(Drain, "a")
	pol.Assume = []string{"b.capacity.load=50%", "c.health=draining"}
	pol.AddClusters = []string{"e:200GiB:50:region=eu"}
	p := mustPlan(t, small(), pol)
	var e *ClusterProjection
	for i := range p.Clusters {
		if p.Clusters[i].Name == "e" {
			e = &p.Clusters[i]
		}
		if p.Clusters[i].Name == "b" && p.Clusters[i].CapacityLoad != 50 {
			t.Fatalf("b capacity load %v", p.Clusters[i].CapacityLoad)
		}
	}
	if e == nil || !e.Added || e.MovesIn == 0 {
		t.Fatalf("added cluster %+v", e)
	}
	for _, m := range p.Moves {
		if m.To == "c" {
			t.Fatal("moved onto c, assumed draining")
		}
	}
	for _, bad := range [][2]string{
		{"b.capacity.load", "want CLUSTER.FIELD=VALUE"},
		{"b.colour=red", "unknown field"},
		{"zz.capacity.load=5", `no cluster "zz"`},
		{"b.capacity.bytes=-5%", "bad percentage"},
		{"b.health=sick", "unknown health"},
		{"b.capacity.load=0", "capacity must stay positive"},
	} {
		pol := DefaultPolicy(Drain, "a")
		pol.Assume = []string{bad[0]}
		if _, err := Make(small(), pol); err == nil || !strings.Contains(err.Error(), bad[1]) {
			t.Errorf("assume %q: error %v, want %q", bad[0], err, bad[1])
		}
	}
	for _, bad := range []string{"e:1TiB", "b:1TiB:5", "e:0:5", "e:1TiB:x", "e:1TiB:5:region"} {
		pol := DefaultPolicy(Drain, "a")
		pol.AddClusters = []string{bad}
		if _, err := Make(small(), pol); err == nil {
			t.Errorf("add cluster %q accepted", bad)
		}
	}
}

func TestPolicyErrors(t *testing.T) {
	for _, tc := range []struct {
		mod  func(*Policy)
		want string
	}{
		{func(p *Policy) { p.Cluster = "zz" }, `no cluster "zz" (known: a, b, c, d)`},
		{func(p *Policy) { p.Kind = "shuffle" }, "unknown policy"},
		{func(p *Policy) { p.Pinned = []string{"nobody"} }, `pinned mailbox "nobody" is not in the inventory`},
		{func(p *Policy) { p.ExcludeTargets = []string{"zz"} }, `exclude target "zz"`},
		{func(p *Policy) { p.SameTags = []string{"rack"} }, `no cluster has that tag`},
		{func(p *Policy) { p.Reserve = 1 }, "reserve"},
	} {
		pol := DefaultPolicy(Drain, "a")
		tc.mod(&pol)
		if _, err := Make(small(), pol); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want %q", err, tc.want)
		}
	}
}

// An infeasible relieve says so and why before choosing any move, and
// plans nothing unless asked for its best effort.
func TestRelieveInfeasible(t *testing.T) {
	pol := DefaultPolicy(Relieve, "a")
	pol.TargetLoad = 0.04 // a carries 66: everything must go, and big fits nowhere
	p := mustPlan(t, small(), pol)
	if p.Goal.Met || !p.Goal.Infeasible || len(p.Moves) != 0 ||
		!strings.Contains(p.Goal.Detail, "cannot be met: the mailboxes that cannot move (pinned or bigger than any target's room) alone carry load 5 (5.0%, over the target)") {
		t.Fatalf("goal %+v, %d moves", p.Goal, len(p.Moves))
	}
	pol.BestEffort = true
	p = mustPlan(t, small(), pol)
	if p.Goal.Met || !p.Goal.Infeasible || len(p.Moves) == 0 || len(p.Unplaceable) != 1 || p.Unplaceable[0].Mailbox != "big" ||
		!strings.Contains(p.Goal.Detail, "best effort: load") {
		t.Fatalf("best effort: goal %+v, %d moves, unplaceable %+v", p.Goal, len(p.Moves), p.Unplaceable)
	}
}

func TestPlanJSONRoundTrip(t *testing.T) {
	p := mustPlan(t, small(), DefaultPolicy(Drain, "a"))
	var buf bytes.Buffer
	if err := WritePlan(&buf, p); err != nil {
		t.Fatal(err)
	}
	q, err := ReadPlan(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	if err := WritePlan(&again, q); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Fatalf("round trip changed the plan:\n%s\n%s", buf.String(), again.String())
	}
}

func TestReadPlanRejects(t *testing.T) {
	valid := `{"version":1,"policy":{"kind":"drain","reserve":0.1,"throughput":{"parallelism":1,"stream_bytes_per_sec":1,"message_overhead_seconds":0,"avg_message_bytes":1}},"moves":[%s],"clusters":[],"unplaceable":[],"totals":{"moves":0,"bytes":0,"load":0,"messages":0},"goal":{"met":true,"detail":""},"eta":{"seconds":0}}`
	for _, tc := range [][2]string{
		{`{"version":2}`, "plan version 2 is not supported: this mailferry reads version 1"},
		{`{"moves":[]}`, "no version field"},
		{`[]`, "not a plan document"},
		{strings.Replace(strings.Replace(valid, "%s", "", 1), `"version":1,`, `"version":1,"colour":"red",`, 1), `unknown field "colour"`},
		{strings.Replace(valid, "%s", `{"mailbox":"x","from":"a","to":"a","bytes":1,"load":1}`, 1), `from and to are both "a"`},
		{strings.Replace(valid, "%s", `{"mailbox":"x","from":"a","to":"b","bytes":-1,"load":1}`, 1), "negative size"},
		{strings.Replace(valid, "%s", `{"mailbox":"x","from":"a","to":"b","bytes":1,"load":1},{"mailbox":"x","from":"a","to":"c","bytes":1,"load":1}`, 1), "moved twice"},
		{strings.Replace(valid, "%s", ``, 1) + "{}", "trailing data"},
	} {
		if _, err := ReadPlan(strings.NewReader(tc[0])); err == nil || !strings.Contains(err.Error(), tc[1]) {
			t.Errorf("ReadPlan(%.60s): error %v, want %q", tc[0], err, tc[1])
		}
	}
	if _, err := ReadPlan(strings.NewReader(strings.Replace(valid, "%s", `{"mailbox":"x","from":"a","to":"b","bytes":1,"load":1}`, 1))); err != nil {
		t.Fatalf("valid plan rejected: %v", err)
	}
}

func FuzzReadPlan(f *testing.F) {
	var buf bytes.Buffer
	if err := WritePlan(&buf, mustPlan(f, small(), DefaultPolicy(Drain, "a"))); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte(`{"version":2}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ReadPlan(bytes.NewReader(data))
		if err != nil {
			return
		}
		// What ReadPlan accepts encodes and reads back.
		var out bytes.Buffer
		if err := WritePlan(&out, p); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadPlan(&out); err != nil {
			t.Fatalf("re-read: %v", err)
		}
	})
}

// TestPurity: the planner cannot open a connection because nothing it links
// can: no net (net/url, for parsing, is fine), no IMAP, no state. The
// inventory it reads parses time windows with throttle and masks URL
// passwords with internal/secret, which are pure too (their own imports
// are checked here as well).
func TestPurity(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		switch {
		case dep == "net", dep == "net/http", dep == "crypto/tls", dep == "os/exec",
			strings.Contains(dep, "imap"), strings.HasPrefix(dep, "mailferry/") && dep != "mailferry/inventory" && dep != "mailferry/planner" && dep != "mailferry/throttle" && dep != "mailferry/internal/secret":
			t.Errorf("planner depends on %s", dep)
		}
	}
}
