package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailferry/internal/testrig/corpus"
	"mailferry/internal/testrig/dovecot"
	"mailferry/planner"
)

// BenchmarkETADrainDovecot measures how close the plan's ETA of a drain is
// to an apply of it, on three Dovecot clusters of this machine: alpha
// (degraded, the one drained), bravo and charlie. Each iteration seeds
// alpha with realistic mailboxes, drains a first chunk of them (plan
// --max-moves, apply) so that the state has measured moves, then plans the
// rest — from where mailboxes are now, its ETA calibrated by the first
// chunk — and applies that plan, timing it. It reports the calibrated
// ETA over the apply's wall time (eta/actual) and the uncalibrated one
// (the model's defaults, made for real networks, not loopback).
//
//	go test ./cmd/mailferry -run '^$' -bench ETADrainDovecot -benchtime 1x
//
// MAILFERRY_ETA_MAILBOXES and MAILFERRY_ETA_MESSAGES change its size
// (default 32 mailboxes of 100 to 700 messages).
func BenchmarkETADrainDovecot(b *testing.B) {
	dovecot.Require(b)
	n, msgs := envInt("MAILFERRY_ETA_MAILBOXES", 32), envInt("MAILFERRY_ETA_MESSAGES", 700)
	for b.Loop() {
		b.StopTimer()
		r := newETARig(b, n, msgs)
		b.StartTimer()
		ratio, raw, took := r.measure(b)
		b.ReportMetric(ratio, "eta/actual")
		b.ReportMetric(raw, "eta-uncalibrated/actual")
		b.ReportMetric(took.Seconds(), "apply-s")
	}
}

func envInt(name string, def int) int {
	var v int
	if _, err := fmt.Sscan(os.Getenv(name), &v); err != nil || v <= 0 {
		return def
	}
	return v
}

type etaRig struct {
	dir, inv, db string
	mailboxes    []string
}

func newETARig(b *testing.B, n, maxMsgs int) *etaRig {
	r := &etaRig{dir: b.TempDir()}
	r.db = filepath.Join(r.dir, "state.db")
	users := map[string]string{}
	for i := range n {
		name := fmt.Sprintf("user%03d", i)
		users[name] = "pw-" + name
		r.mailboxes = append(r.mailboxes, name)
	}
	servers := map[string]*dovecot.Server{}
	for _, c := range rigClusters {
		servers[c] = dovecot.Start(b, dovecot.Options{Name: c, Separator: ".", Users: users, MasterUser: "ferry", MasterPassword: "master-" + c})
		if err := os.WriteFile(filepath.Join(r.dir, c+".pw"), []byte(servers[c].MasterPassword+"\n"), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(42, 42))
	var y strings.Builder
	y.WriteString("clusters:\n")
	for _, c := range rigClusters {
		health := "healthy"
		if c == "alpha" {
			health = "degraded"
		}
		fmt.Fprintf(&y, "  - {name: %s, url: 'imap://%s', tls: none, health: %s, auth: {method: master, user: ferry, password_file: %s},\n"+
			"     capacity: {bytes: 100GiB, load: 1000}, limits: {connections: 8}}\n", c, servers[c].Addr, health, filepath.Join(r.dir, c+".pw"))
	}
	y.WriteString("mailboxes:\n")
	start := time.Now()
	var total int64
	for i, mb := range r.mailboxes {
		m := corpus.GenerateRealistic(corpus.RealisticOptions{Seed: uint64(1000 + i), Messages: 100 + rng.IntN(maxMsgs-99)})
		corpus.Seed(b, servers["alpha"].Addr, mb, users[mb], m)
		total += m.TotalBytes()
		fmt.Fprintf(&y, "  - {name: %s, cluster: alpha, bytes: %d, messages: %d, load: %.3f}\n", mb, m.TotalBytes(), m.TotalMessages(), 1+rng.Float64())
	}
	b.Logf("seeded %d mailboxes, %s, in %v", n, fmtBytesB(total), time.Since(start).Round(time.Millisecond))
	r.inv = filepath.Join(r.dir, "inv.yaml")
	if err := os.WriteFile(r.inv, []byte(y.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	return r
}

func fmtBytesB(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

// cli runs mailferry in-process.
func (r *etaRig) cli(b *testing.B, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// measure drains a quarter of alpha (the calibration), then plans and
// applies the rest.
func (r *etaRig) measure(b *testing.B) (ratio, raw float64, took time.Duration) {
	first := filepath.Join(r.dir, "first.json")
	chunk := max(4, len(r.mailboxes)/4)
	if code, _, errOut := r.cli(b, "plan", "-i", r.inv, "--drain", "alpha", "--max-moves", fmt.Sprint(chunk), "--state", r.db, "-o", first); code != exitPartial {
		b.Fatalf("plan the first chunk: exit %d: %s", code, errOut)
	}
	t0 := time.Now()
	if code, out, errOut := r.cli(b, "apply", first, "-i", r.inv, "--state", r.db, "--routed", "--skip-preflight"); code != exitOK {
		b.Fatalf("apply the first chunk: exit %d: %s\n%s", code, errOut, out)
	}
	b.Logf("first chunk, %d moves: %v", chunk, time.Since(t0).Round(time.Millisecond))

	rest := filepath.Join(r.dir, "rest.json")
	code, _, errOut := r.cli(b, "plan", "-i", r.inv, "--drain", "alpha", "--state", r.db, "--cooldown", "0", "-o", rest)
	if code != exitOK {
		b.Fatalf("plan the rest: exit %d: %s", code, errOut)
	}
	p, err := readPlanFile(rest)
	if err != nil {
		b.Fatal(err)
	}
	if p.RelocatedMailboxes != chunk || len(p.Moves) != len(r.mailboxes)-chunk || len(p.Policy.Throughput.Calibration) == 0 {
		b.Fatalf("plan of the rest: %d relocated, %d moves, calibration %+v", p.RelocatedMailboxes, len(p.Moves), p.Policy.Throughput.Calibration)
	}
	// The same plan's ETA without the calibration: the model's defaults.
	inv, err := loadInventory(r.inv)
	if err != nil {
		b.Fatal(err)
	}
	h, err := readHistory(context.Background(), r.db, "", inv)
	if err != nil {
		b.Fatal(err)
	}
	now, _ := planner.Relocate(inv, h.done)
	pol := p.Policy
	pol.Throughput.Calibration = nil
	q, err := planner.Make(now, pol)
	if err != nil {
		b.Fatal(err)
	}

	t0 = time.Now()
	if code, out, errOut := r.cli(b, "apply", rest, "-i", r.inv, "--state", r.db, "--routed", "--skip-preflight"); code != exitOK {
		b.Fatalf("apply the rest: exit %d: %s\n%s", code, errOut, out)
	}
	took = time.Since(t0)
	ratio, raw = p.ETA.Seconds/took.Seconds(), q.ETA.Seconds/took.Seconds()
	b.Logf("rest, %d moves: apply took %v; ETA %v calibrated (%+v; bound by %s), %v uncalibrated",
		len(p.Moves), took.Round(time.Millisecond), time.Duration(p.ETA.Seconds)*time.Second, p.Policy.Throughput.Calibration,
		p.ETA.Detail, time.Duration(q.ETA.Seconds)*time.Second)
	return ratio, raw, took
}
