package main

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailferry/internal/testrig/faultproxy"
	"mailferry/migrate"
	"mailferry/state/statetest"
)

// The fleet acceptance test (issue 14): three worker processes of the real
// binary on one PostgreSQL state and three Dovecots drain 30 mailboxes off
// alpha, whose inventory cap is 6 connections while the workers could open
// 18 (6 each, the cap applied per process). A proxy in front of alpha
// counts the connections open at once. One worker is SIGKILLed while it
// holds a move, another SIGSTOPped while it holds one, until its lease
// expired and another worker took the move over, and then resumed: it must
// write nothing more (fenced) and give the move up. At the end every target
// folder equals its source (no message missing, none twice), the sources
// are untouched, and the peak never went above 6.

const (
	fleetMailboxes = 30
	fleetSourceCap = 6
	fleetLeaseTTL  = "3s"
	fleetStepLimit = 90 * time.Second // any one wait of the scenario; longer is a hang
)

// TestFleetE2EThreeWorkers is the scenario above.
func TestFleetE2EThreeWorkers(t *testing.T) {
	bin := mailferryBinary(t)
	r := newApplyRig(t, fleetMailboxes)
	pg := statetest.Postgres(t)
	db := statetest.RawDB(t, pg)
	before := r.snapshotSources()
	proxy := faultproxy.Start(t, r.clusters["alpha"].Addr)
	proxy.SetLatency(80 * time.Millisecond) // moves last long enough to be caught mid-move, even on a loaded machine (40 ms let a faster engine finish w2's moves before one was caught with few places)
	inv := r.writeFleetInventory(proxy.Addr)
	plan := filepath.Join(r.dir, "plan.json")
	if code, stdout, stderr := runCLI(t, nil, "plan", "-i", inv, "--drain", "alpha", "-o", plan); code != exitOK {
		t.Fatalf("plan: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr := runCLI(t, nil, "submit", plan, "-i", inv, "--state", pg)
	if code != exitOK || !strings.Contains(stdout, fmt.Sprintf("%d queued", fleetMailboxes)) {
		t.Fatalf("submit: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, nil, "submit", plan, "-i", inv, "--state", pg)
	if code != exitOK || !strings.Contains(stdout, "0 queued") {
		t.Fatalf("second submit must queue nothing: exit %d\n%s%s", code, stdout, stderr)
	}

	host, _ := os.Hostname()
	workers := make([]*binaryRun, 3)
	start := func(i int) {
		workers[i] = startBinary(t, bin, r.dir, "worker", "-i", inv, "--state", pg, "--name", fmt.Sprintf("w%d", i+1),
			"--parallel", "8", "--connections", "2", "--routed", "--lease-ttl", fleetLeaseTTL, "--heartbeat", "500ms",
			"--rescue-after", "20s", "--late-commit-window", "1s")
	}
	t.Cleanup(func() {
		for _, w := range workers {
			if w != nil && !w.exited() {
				_ = syscall.Kill(w.cmd.Process.Pid, syscall.SIGCONT)
				_ = syscall.Kill(w.cmd.Process.Pid, syscall.SIGKILL)
				<-w.done
			}
		}
	})
	holder := func(w *binaryRun) string { return fmt.Sprintf("%s pid %d", host, w.cmd.Process.Pid) }

	// w1 starts first, so that the others find work left whatever the
	// machine's load: once it holds a move, w2 and w3 start, and w1 is
	// SIGKILLed with the three running.
	start(0)
	killed := waitHeld(t, db, holder(workers[0]), workers[0])
	start(1)
	start(2)
	_ = workers[0].cmd.Process.Signal(syscall.SIGKILL)
	<-workers[0].done
	t.Logf("w1 SIGKILLed holding %v", killed)

	// SIGSTOP w2 while it holds a move, and few of alpha's places: a
	// frozen worker keeps its places (its connections are open on the
	// server), and w3 needs some to make progress. Resume it once another
	// worker took one of its moves over.
	frozen := waitHeldFewPlaces(t, db, holder(workers[1]), "w2", workers[1])
	must(t, workers[1].cmd.Process.Signal(syscall.SIGSTOP))
	t.Logf("w2 SIGSTOPped holding %v", frozen)
	taken := waitTakenOver(t, db, frozen, holder(workers[1]))
	must(t, workers[1].cmd.Process.Signal(syscall.SIGCONT))
	t.Logf("w2 resumed after %v were taken over", taken)

	waitRun := startBinary(t, bin, r.dir, "wait", plan, "--state", pg, "--json", "--timeout", "3m")
	res := waitRun.wait(t, 4*time.Minute)
	if res.code != exitOK {
		t.Fatalf("wait: exit %d\nstdout:\n%s\nstderr:\n%s\nw2:\n%s\nw3:\n%s", res.code, crashTail(res.stdout, 4000), res.stderr,
			crashTail(workers[1].stderr.String(), 3000), crashTail(workers[2].stderr.String(), 3000))
	}
	// status lists the workers: w2 and w3 alive, w1 (killed) gone.
	code, stdout, stderr = runCLI(t, nil, "status", "--state", pg)
	if code != exitOK {
		t.Fatalf("status: exit %d\n%s", code, stderr)
	}
	for _, want := range []string{"w1 ", "w2 ", "w3 "} {
		line := ""
		for _, l := range strings.Split(stdout, "\n") {
			if strings.HasPrefix(l, want) {
				line = l
			}
		}
		switch alive := strings.Contains(line, "alive"); {
		case line == "":
			t.Errorf("status lists no worker %s:\n%s", want, stdout)
		case want == "w1 " && alive, want != "w1 " && !alive:
			t.Errorf("status: %q (w1 was killed, the others run)", line)
		}
	}
	for _, w := range workers[1:] {
		must(t, w.cmd.Process.Signal(syscall.SIGTERM))
	}
	for i, w := range workers[1:] {
		if res := w.wait(t, fleetStepLimit); res.code != exitOK {
			t.Errorf("w%d after SIGTERM: exit %d, signal %v\n%s", i+2, res.code, res.signaled, crashTail(res.stderr, 3000))
		}
	}

	// The resumed worker gave its moves up: each ended on its side as a
	// failure naming the lost lease, and it wrote nothing more (the targets
	// below hold every message once).
	w2 := workers[1].stderr.String()
	for _, key := range taken {
		mb := key[strings.LastIndex(key, "/")+1:]
		gaveUp := false
		for _, line := range strings.Split(w2, "\n") {
			gaveUp = gaveUp || strings.Contains(line, " "+mb+" alpha -> ") && strings.Contains(line, "given up: another worker took the move's lease over")
		}
		if !gaveUp {
			t.Errorf("w2 did not report giving up %s with a lost lease:\n%s", mb, crashTail(w2, 3000))
		}
	}
	rep := parseWaitReport(t, res.stdout)
	if tot := rep.Totals; tot.Moves != fleetMailboxes || tot.Done+tot.Skipped != fleetMailboxes {
		t.Fatalf("wait report totals %+v, want %d moves all done", tot, fleetMailboxes)
	}
	r.exact(rep)
	r.sourcesUntouched(before)
	if _, peak := proxy.Conns(); peak > fleetSourceCap || peak == 0 {
		t.Errorf("alpha saw %d connections at once, want 1..%d (the fleet-wide cap)", peak, fleetSourceCap)
	} else {
		t.Logf("alpha's peak: %d connections at once (cap %d, 3 workers of up to %d each)", peak, fleetSourceCap, fleetSourceCap)
	}
	var done int
	must(t, db.QueryRow(`SELECT count(*) FROM mailferry_migration WHERE phase = 'done'`).Scan(&done))
	if done != fleetMailboxes {
		t.Errorf("%d migrations done in the state, want %d", done, fleetMailboxes)
	}
}

// writeFleetInventory writes the rig's inventory with alpha behind addr
// (the proxy), healthy, capped at fleetSourceCap connections.
func (r *applyRig) writeFleetInventory(addr string) string {
	r.t.Helper()
	var b strings.Builder
	b.WriteString("clusters:\n")
	for _, c := range rigClusters {
		s := r.clusters[c]
		url, conns := s.Addr, 8
		if c == "alpha" {
			url, conns = addr, fleetSourceCap
		}
		fmt.Fprintf(&b, "  - name: %s\n    url: imap://%s\n    tls: none\n    auth: {method: master, user: %s, password_file: %s}\n"+
			"    capacity: {bytes: 10GiB, load: 100}\n    health: healthy\n    limits: {connections: %d}\n",
			c, url, s.MasterUser, filepath.Join(r.dir, c+".pw"), conns)
	}
	b.WriteString("mailboxes:\n")
	for _, mb := range r.mailboxes {
		fmt.Fprintf(&b, "  - {name: %s, cluster: alpha, bytes: %d, load: 1}\n", mb, r.corpora[mb].TotalBytes())
	}
	path := filepath.Join(r.dir, "fleet-inv.yaml")
	must(r.t, os.WriteFile(path, []byte(b.String()), 0o600))
	return path
}

// waitHeld waits until holder holds the lease of a mailbox's move and
// returns the sources of the moves it holds.
func waitHeld(t *testing.T, db *sql.DB, holder string, w *binaryRun) []string {
	t.Helper()
	deadline := time.Now().Add(fleetStepLimit)
	for time.Now().Before(deadline) {
		if w.exited() {
			t.Fatalf("%s exited before it held a move:\n%s", holder, crashTail(w.stderr.String(), 3000))
		}
		if held := heldBy(t, db, holder); len(held) > 0 {
			return held
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s held no move within %v", holder, fleetStepLimit)
	return nil
}

// waitHeldFewPlaces is waitHeld at a moment when the worker's gate
// session holds at most 2 places (advisory locks in pg_locks),
// so the others keep room on alpha while it is frozen (a worker frozen
// holding every place would stop them all until it is resumed, and the
// scenario resumes it only once another took its move over).
func waitHeldFewPlaces(t *testing.T, db *sql.DB, holder, name string, w *binaryRun) []string {
	t.Helper()
	deadline := time.Now().Add(fleetStepLimit)
	for time.Now().Before(deadline) {
		if w.exited() {
			t.Fatalf("%s exited before it held a move:\n%s", holder, crashTail(w.stderr.String(), 3000))
		}
		held := heldBy(t, db, holder)
		if len(held) == 0 {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		var places int
		must(t, db.QueryRow(`SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = $1`, "mailferry places "+name).Scan(&places))
		if places <= 2 {
			t.Logf("%s holds %v with %d places", name, held, places)
			return held
		}
		time.Sleep(5 * time.Millisecond)
	}
	var left int
	must(t, db.QueryRow(`SELECT count(*) FROM mailferry_migration WHERE source LIKE 'cluster:%' AND phase <> 'done'`).Scan(&left))
	t.Fatalf("%s held no move within %v (%d moves not done); its log:\n%s", holder, fleetStepLimit, left, crashTail(w.stderr.String(), 3000))
	return nil
}

// heldBy lists the unfinished moves whose lease holder is holder.
func heldBy(t *testing.T, db *sql.DB, holder string) []string {
	t.Helper()
	rows, err := db.Query(`SELECT source FROM mailferry_migration WHERE holder = $1 AND source LIKE 'cluster:%' AND phase <> 'done'`, holder)
	must(t, err)
	defer rows.Close()
	var held []string
	for rows.Next() {
		var s string
		must(t, rows.Scan(&s))
		held = append(held, s)
	}
	must(t, rows.Err())
	return held
}

// waitTakenOver waits until one of the moves has been acquired by another
// holder than old (its lease is someone else's, or the move is done), and
// returns those taken over.
func waitTakenOver(t *testing.T, db *sql.DB, sources []string, old string) []string {
	t.Helper()
	deadline := time.Now().Add(fleetStepLimit)
	for time.Now().Before(deadline) {
		var taken []string
		for _, s := range sources {
			var h, phase string
			must(t, db.QueryRow(`SELECT holder, phase FROM mailferry_migration WHERE source = $1`, s).Scan(&h, &phase))
			if h != old && (h != "" || phase == "done") {
				taken = append(taken, s)
			}
		}
		if len(taken) > 0 {
			return taken
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("none of the moves %v of the frozen worker was taken over within %v", sources, fleetStepLimit)
	return nil
}

// parseWaitReport reads the report event of `wait --json`.
func parseWaitReport(t *testing.T, stdout string) *migrate.ApplyReport {
	t.Helper()
	for _, line := range strings.Split(stdout, "\n") {
		if strings.Contains(line, `"event":"report"`) {
			var rep migrate.ApplyReport
			must(t, json.Unmarshal([]byte(line), &rep))
			return &rep
		}
	}
	t.Fatalf("no report in the output of wait:\n%s", crashTail(stdout, 3000))
	return nil
}

// apply on a PostgreSQL state goes through the fleet's queue (a fleet of
// one, which other workers could join): every move a job, done, the
// targets exact; a second apply finds every move done and queues nothing.
func TestFleetApplyOnPostgres(t *testing.T) {
	r := newApplyRig(t, 6)
	pg := statetest.Postgres(t)
	db := statetest.RawDB(t, pg)
	plan := filepath.Join(r.dir, "plan.json")
	report := filepath.Join(r.dir, "report.json")
	if code, stdout, stderr := runCLI(t, nil, "plan", "-i", r.inv, "--drain", "alpha", "-o", plan); code != exitOK {
		t.Fatalf("plan: exit %d\n%s%s", code, stdout, stderr)
	}
	// --converge-messages 1: any copying pass would call for a converging
	// one, but for --routed.
	code, stdout, stderr := runCLI(t, nil, "apply", plan, "-i", r.inv, "--state", pg, "--routed", "--converge-messages", "1", "--report", report)
	if code != exitOK {
		t.Fatalf("apply: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	rep := readReport(t, report)
	if tot := rep.Totals; tot.Moves != 6 || tot.Done != 6 || tot.Verified != tot.Messages || tot.Messages == 0 {
		t.Fatalf("report totals %+v, want 6 moves done and verified", tot)
	}
	r.exact(rep)
	// --routed: the routing already changed, so the final delta follows
	// the first pass at once, with no converging pass between them.
	var twoPasses int
	must(t, db.QueryRow(`SELECT count(*) FROM mailferry_migration WHERE phase = 'done' AND passes_total = 2`).Scan(&twoPasses))
	if twoPasses != 6 {
		t.Errorf("%d of the 6 moves done in 2 passes (copying, final delta), want all", twoPasses)
	}
	var jobs int
	must(t, db.QueryRow(`SELECT count(*) FROM river_job WHERE kind = 'mailferry_move' AND state = 'completed'`).Scan(&jobs))
	if jobs != 6 {
		t.Errorf("%d completed move jobs in the queue, want 6", jobs)
	}
	code, stdout, stderr = runCLI(t, nil, "apply", plan, "-i", r.inv, "--state", pg, "--routed", "--report", report)
	if code != exitOK {
		t.Fatalf("second apply: exit %d\n%s%s", code, stdout, stderr)
	}
	must(t, db.QueryRow(`SELECT count(*) FROM river_job WHERE kind = 'mailferry_move'`).Scan(&jobs))
	if rep := readReport(t, report); jobs != 6 || rep.Totals.Done+rep.Totals.Skipped != 6 {
		t.Errorf("second apply: %d jobs (want 6, none queued again), totals %+v", jobs, rep.Totals)
	}
}
