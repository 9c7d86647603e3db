package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mailferry/internal/testrig/corpus"
	"mailferry/migrate"
	"mailferry/state"
)

// The end-to-end acceptance tests of issue 6: drain, apply, complete and
// rebalance on three real Dovecot clusters (see newApplyRig), the CLI run
// in-process where it can be and as the real binary where a process must be
// killed or must hold a lock while another runs.

// TestApplyE2EDrain30 drains 30 mailboxes off alpha: every move done and
// verified, every target equal to its source, the sources untouched, and
// the cutover hook run exactly once per mailbox, after the move converged
// (ready) and before its final delta.
func TestApplyE2EDrain30(t *testing.T) {
	r := newApplyRig(t, 30)
	before := r.snapshotSources()
	db := filepath.Join(r.dir, "state.db")
	report := filepath.Join(r.dir, "report.json")
	hookLog := filepath.Join(r.dir, "hook.log")
	// One line per run: mailbox, start and end of the hook (Unix seconds
	// with nanoseconds), to hold against the times of the phase events.
	hook := r.script("hook.sh", `s=$(date +%s.%N)
echo "$MAILFERRY_MAILBOX $MAILFERRY_FROM $MAILFERRY_TO $s $(date +%s.%N)" >> `+hookLog+"\n")

	start := time.Now()
	code, stdout, stderr := runCLI(t, nil, "drain", "alpha", "-i", r.inv, "--yes", "--state", db,
		"--parallel", "8", "--report", report, "--json", "--cutover-exec", hook)
	t.Logf("drain of %d mailboxes: %v", len(r.mailboxes), time.Since(start).Round(time.Millisecond))
	if code != exitOK {
		t.Fatalf("drain: exit %d\nstderr:\n%s\nstdout:\n%s", code, stderr, crashTail(stdout, 4000))
	}
	rep := readReport(t, report)
	if tot := rep.Totals; tot.Moves != 30 || tot.Done != 30 || tot.Messages == 0 || tot.Verified != tot.Messages || tot.Copied != tot.Messages {
		t.Fatalf("report totals %+v, want 30 moves done, every message copied and verified", tot)
	}
	for _, m := range rep.Moves {
		if m.Result != migrate.ResultDone || m.Phase != migrate.PhaseDone || m.From != "alpha" || m.Verified != m.Messages {
			t.Errorf("move %+v: want done from alpha, every message verified", m)
		}
	}
	r.exact(rep)
	r.sourcesUntouched(before)

	// Each mailbox's phases, in order, and the hook between ready and
	// cutover.
	phases := phaseEvents(t, stdout)
	hooks := readHookLog(t, hookLog)
	for _, mb := range r.mailboxes {
		var seq []string
		for _, e := range phases[mb] {
			seq = append(seq, e.Text)
		}
		if !movePhases.MatchString(strings.Join(seq, " ")) {
			t.Errorf("%s went through phases %q, want %s", mb, seq, movePhases)
			continue
		}
		runs := hooks[mb]
		if len(runs) != 1 {
			t.Errorf("cutover hook ran %d times for %s, want once", len(runs), mb)
			continue
		}
		h := runs[0]
		ready, cutover, final := phaseTime(phases[mb], migrate.PhaseReady), phaseTime(phases[mb], migrate.PhaseCutover), phaseTime(phases[mb], migrate.PhaseFinal)
		if h.start.Before(ready) || h.end.After(cutover) || !cutover.Before(final) {
			t.Errorf("%s: hook ran %s..%s, want between ready (%s) and cutover (%s), before the final delta (%s)",
				mb, h.start.Format(time.StampMicro), h.end.Format(time.StampMicro), ready.Format(time.StampMicro),
				cutover.Format(time.StampMicro), final.Format(time.StampMicro))
		}
		if h.from != "alpha" || h.to == "alpha" || h.to == "" {
			t.Errorf("%s: hook saw MAILFERRY_FROM=%q MAILFERRY_TO=%q", mb, h.from, h.to)
		}
	}
	if extra := len(hooks) - len(r.mailboxes); extra != 0 {
		t.Errorf("hook log names %d mailboxes, want %d", len(hooks), len(r.mailboxes))
	}
}

// TestApplyE2EFinalDeltaCatchesLateMail appends a message to one source
// mailbox while its cutover hook runs (routing is switching): the final
// delta must bring it to the target. While the hook blocks, the Prometheus
// endpoint serves the run's series.
func TestApplyE2EFinalDeltaCatchesLateMail(t *testing.T) {
	r := newApplyRig(t, 4)
	const late = "user02"
	db := filepath.Join(r.dir, "state.db")
	report := filepath.Join(r.dir, "report.json")
	hookLog := filepath.Join(r.dir, "hook.log")
	request := filepath.Join(r.dir, "append.request")
	// For the chosen mailbox the hook asks the test to deliver mail to the
	// source and waits (at most 10 s) until the test says it has.
	hook := r.script("hook.sh", `echo "$MAILFERRY_MAILBOX" >> `+hookLog+`
[ "$MAILFERRY_MAILBOX" = `+late+` ] || exit 0
touch `+request+`
i=0
while [ -e `+request+` ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
[ ! -e `+request+` ]
`)
	metricsAddr := freeAddr(t)

	type result struct {
		code           int
		stdout, stderr string
	}
	done := make(chan result, 1)
	go func() {
		code, stdout, stderr := runCLI(t, nil, "drain", "alpha", "-i", r.inv, "--yes", "--state", db, "--report", report,
			"--cutover-exec", hook, "--metrics-addr", metricsAddr)
		done <- result{code, stdout, stderr}
	}()

	// Wait for the hook's request (or the run's end: a failure).
	deadline := time.After(60 * time.Second)
	for waiting := true; waiting; {
		select {
		case res := <-done:
			t.Fatalf("drain ended before the hook of %s asked for mail: exit %d\nstderr:\n%s\nstdout:\n%s", late, res.code, res.stderr, res.stdout)
		case <-deadline:
			t.Fatalf("the hook of %s did not run within 60 s", late)
		case <-time.After(20 * time.Millisecond):
			_, err := os.Stat(request)
			waiting = err != nil
		}
	}

	// The run holds in the hook: its metrics are there to scrape.
	metrics := scrape(t, "http://"+metricsAddr+"/metrics")
	for _, want := range []string{`mailferry_cluster_concurrency_limit{cluster="alpha"}`, `mailferry_cluster_concurrency_limit{cluster="bravo"}`,
		`mailferry_cluster_in_flight{cluster="charlie"}`, `mailferry_cluster_backoffs_total{cluster="alpha"}`} {
		if _, ok := metrics[want]; !ok {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if v := metrics[`mailferry_cluster_concurrency_limit{cluster="alpha"}`]; v < 1 {
		t.Errorf("alpha's concurrency limit is %v, want at least 1", v)
	}
	if v := metrics[`mailferry_moves{phase="ready"}`]; v < 1 {
		t.Errorf(`mailferry_moves{phase="ready"} is %v while %s's hook runs, want at least 1`, v, late)
	}
	if v := sumSeries(metrics, "mailferry_messages_copied_total"); v < 1 {
		t.Errorf("mailferry_messages_copied_total is %v, want the messages copied so far", v)
	}

	// Mail reaches the source after the move converged.
	lateMail := corpus.Big(9000, 4711)
	inbox := r.corpora[late].Folder("INBOX")
	corpus.Seed(t, r.clusters["alpha"].Addr, late, r.users[late], &corpus.Mailbox{Folders: []corpus.Folder{
		{Path: []string{"INBOX"}, Subscribed: inbox.Subscribed, Messages: []corpus.Message{lateMail}}}})
	must(t, os.Remove(request))

	var res result
	select {
	case res = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("drain did not end within 60 s of the late mail")
	}
	if res.code != exitOK {
		t.Fatalf("drain: exit %d\nstderr:\n%s\nstdout:\n%s", res.code, res.stderr, res.stdout)
	}
	rep := readReport(t, report)
	r.exact(rep)
	dst := r.clusters[moveOf(t, rep, late).To]
	snap := corpus.TakeSnapshot(t, dst.Addr, late, dst.Users[late])
	found := 0
	for _, m := range snap.Folders["INBOX"].Messages {
		if m.SHA256 == lateMail.SHA256() {
			found++
		}
	}
	if found != 1 {
		t.Errorf("the mail delivered to %s during its cutover is %d times on %s, want once", late, found, dst.Name)
	}
	if got := len(snap.Folders["INBOX"].Messages); got != len(inbox.Messages)+1 {
		t.Errorf("%s INBOX on %s holds %d messages, want %d", late, dst.Name, got, len(inbox.Messages)+1)
	}
	hooks := readHookLog(t, hookLog)
	for _, mb := range r.mailboxes {
		if len(hooks[mb]) != 1 {
			t.Errorf("cutover hook ran %d times for %s, want once", len(hooks[mb]), mb)
		}
	}
}

// TestApplyE2EFailingHookHolds: a hook that fails for one mailbox holds
// that move at ready (exit 3, the reason in the report and the state); the
// others are done. The next run, with a hook that succeeds, completes the
// held move, running the hook for it alone.
func TestApplyE2EFailingHookHolds(t *testing.T) {
	r := newApplyRig(t, 4)
	const held = "user01"
	db := filepath.Join(r.dir, "state.db")
	report := filepath.Join(r.dir, "report.json")
	log1, log2 := filepath.Join(r.dir, "hook1.log"), filepath.Join(r.dir, "hook2.log")
	failing := r.script("failing.sh", `echo "$MAILFERRY_MAILBOX" >> `+log1+`
[ "$MAILFERRY_MAILBOX" != `+held+` ]
`)
	code, stdout, stderr := runCLI(t, nil, "drain", "alpha", "-i", r.inv, "--yes", "--state", db, "--report", report, "--cutover-exec", failing)
	if code != exitPartial {
		t.Fatalf("drain with a failing hook: exit %d, want %d\nstderr:\n%s\nstdout:\n%s", code, exitPartial, stderr, stdout)
	}
	if !strings.Contains(stdout, held) || !strings.Contains(stdout, "cutover hook failed") {
		t.Errorf("the final table does not show %s held by the hook:\n%s", held, stdout)
	}
	rep := readReport(t, report)
	for _, m := range rep.Moves {
		switch {
		case m.Mailbox == held:
			if m.Result != migrate.ResultHeld || m.Phase != migrate.PhaseReady || !strings.Contains(m.Reason, "cutover hook failed") || !strings.Contains(m.Reason, "exit status 1") {
				t.Errorf("move of %s: result %q, phase %q, reason %q; want held at ready by the hook's exit status 1", held, m.Result, m.Phase, m.Reason)
			}
		case m.Result != migrate.ResultDone:
			t.Errorf("move of %s: result %q (%s), want done", m.Mailbox, m.Result, m.Reason)
		}
	}
	if tot := rep.Totals; tot.Done != 3 || tot.Held != 1 {
		t.Errorf("report totals %+v, want 3 done, 1 held", tot)
	}
	st := statusByMailbox(t, db)
	if e := st[held]; e.Phase != migrate.PhaseReady || !strings.Contains(e.LastError, "cutover hook") || e.Holder != nil {
		t.Errorf("status of %s: %+v; want phase ready, the hook's failure as last error, no holder", held, e)
	}
	for _, mb := range r.mailboxes {
		if mb != held && st[mb].Phase != migrate.PhaseDone {
			t.Errorf("status of %s: phase %q, want done", mb, st[mb].Phase)
		}
	}
	if hooks := readHookLog(t, log1); len(hooks) != 4 {
		t.Errorf("first run: hook ran for %d mailboxes, want 4", len(hooks))
	}

	succeeding := r.script("succeeding.sh", `echo "$MAILFERRY_MAILBOX" >> `+log2+"\n")
	code, stdout, stderr = runCLI(t, nil, "drain", "alpha", "-i", r.inv, "--yes", "--state", db, "--report", report, "--cutover-exec", succeeding)
	if code != exitOK {
		t.Fatalf("rerun with a succeeding hook: exit %d\nstderr:\n%s\nstdout:\n%s", code, stderr, stdout)
	}
	rep = readReport(t, report)
	if m := moveOf(t, rep, held); m.Result != migrate.ResultDone || m.Verified != m.Messages {
		t.Errorf("rerun: move of %s %+v, want done and verified", held, m)
	}
	// The rerun plans from where the done moves put the mailboxes: only
	// the held one is left on alpha.
	if tot := rep.Totals; tot.Moves != 1 || tot.Done != 1 {
		t.Errorf("rerun totals %+v, want 1 move, done", tot)
	}
	hooks := readHookLog(t, log2)
	if len(hooks) != 1 || len(hooks[held]) != 1 {
		t.Errorf("rerun: hook ran for %v, want %s once", hooks, held)
	}
	r.exact(rep)
	if e := statusByMailbox(t, db)[held]; e.Phase != migrate.PhaseDone {
		t.Errorf("status of %s after the rerun: phase %q, want done", held, e.Phase)
	}
}

// TestApplyE2EHoldAtReadyComplete: apply --hold-at-ready stops every move
// at ready without running the hook (exit 3); complete finishes the named
// mailbox, then complete --all the rest.
func TestApplyE2EHoldAtReadyComplete(t *testing.T) {
	r := newApplyRig(t, 5)
	db := filepath.Join(r.dir, "state.db")
	plan := filepath.Join(r.dir, "plan.json")
	report := filepath.Join(r.dir, "report.json")
	hookLog := filepath.Join(r.dir, "hook.log")
	hook := r.script("hook.sh", `echo "$MAILFERRY_MAILBOX" >> `+hookLog+"\n")
	if code, stdout, stderr := runCLI(t, nil, "plan", "-i", r.inv, "--drain", "alpha", "-o", plan); code != exitOK {
		t.Fatalf("plan: exit %d\n%s%s", code, stdout, stderr)
	}

	// complete before apply: nothing is ready, nothing moves.
	code, stdout, stderr := runCLI(t, nil, "complete", plan, "-i", r.inv, "--all", "--state", db, "--report", report, "--cutover-exec", hook)
	for _, m := range readReport(t, report).Moves {
		if m.Result != migrate.ResultSkipped || !strings.Contains(m.Reason, "not ready") || m.Copied != 0 {
			t.Errorf("complete before apply (exit %d): move %+v, want skipped as not ready\nstderr:\n%s", code, m, stderr)
		}
	}

	code, stdout, stderr = runCLI(t, nil, "apply", plan, "-i", r.inv, "--state", db, "--hold-at-ready", "--report", report, "--cutover-exec", hook)
	if code != exitPartial {
		t.Fatalf("apply --hold-at-ready: exit %d, want %d\nstderr:\n%s\nstdout:\n%s", code, exitPartial, stderr, stdout)
	}
	rep := readReport(t, report)
	if tot := rep.Totals; tot.Held != 5 || tot.Verified != tot.Messages {
		t.Errorf("apply --hold-at-ready: totals %+v, want 5 held, every message verified", tot)
	}
	for _, m := range rep.Moves {
		if m.Result != migrate.ResultHeld || m.Phase != migrate.PhaseReady || !strings.Contains(m.Reason, "mailferry complete") {
			t.Errorf("move of %s: result %q, phase %q, reason %q; want held at ready, naming mailferry complete", m.Mailbox, m.Result, m.Phase, m.Reason)
		}
	}
	for mb, e := range statusByMailbox(t, db) {
		if e.Phase != migrate.PhaseReady {
			t.Errorf("status of %s: phase %q, want ready", mb, e.Phase)
		}
	}
	if _, err := os.Stat(hookLog); err == nil {
		t.Errorf("the cutover hook ran while every move was held at ready:\n%v", readHookLog(t, hookLog))
	}
	r.exact(rep) // converged: the targets already hold everything

	code, stdout, stderr = runCLI(t, nil, "complete", plan, "-i", r.inv, "user03", "--state", db, "--report", report, "--cutover-exec", hook)
	if code != exitOK {
		t.Fatalf("complete user03: exit %d\nstderr:\n%s\nstdout:\n%s", code, stderr, stdout)
	}
	if rep := readReport(t, report); len(rep.Moves) != 1 || rep.Moves[0].Mailbox != "user03" || rep.Moves[0].Result != migrate.ResultDone {
		t.Errorf("complete user03: report %+v, want user03 done alone", rep.Moves)
	}

	code, stdout, stderr = runCLI(t, nil, "complete", plan, "-i", r.inv, "--all", "--state", db, "--report", report, "--cutover-exec", hook)
	if code != exitOK {
		t.Fatalf("complete --all: exit %d\nstderr:\n%s\nstdout:\n%s", code, stderr, stdout)
	}
	rep = readReport(t, report)
	if tot := rep.Totals; tot.Done != 4 || tot.Skipped != 1 {
		t.Errorf("complete --all: totals %+v, want 4 done, user03 skipped", tot)
	}
	r.exact(rep)
	for mb, e := range statusByMailbox(t, db) {
		if e.Phase != migrate.PhaseDone {
			t.Errorf("status of %s: phase %q, want done", mb, e.Phase)
		}
	}
	hooks := readHookLog(t, hookLog)
	for _, mb := range r.mailboxes {
		if len(hooks[mb]) != 1 {
			t.Errorf("cutover hook ran %d times for %s, want once", len(hooks[mb]), mb)
		}
	}
}

// TestApplyE2EWrongPasswordFailsAlone: alpha logs in with each mailbox's
// own password from a credentials file; one password is wrong and one
// mailbox has no line at all. Those two moves fail with their reasons, the
// others are in sync (no hook: not final) (exit 3). Preflight would stop
// the run before (TestPreflightPerMailboxLogins); this is the copy's own
// guard, for a login that starts failing after the preflight.
func TestApplyE2EWrongPasswordFailsAlone(t *testing.T) {
	r := newApplyRig(t, 5)
	const wrong, missing = "user03", "user04"
	var creds strings.Builder
	creds.WriteString("# mailbox,login,password\n")
	for _, mb := range r.mailboxes {
		switch mb {
		case wrong:
			fmt.Fprintf(&creds, "%s,%s,not-%s\n", mb, mb, r.users[mb])
		case missing:
		default:
			fmt.Fprintf(&creds, "%s,%s,%s\n", mb, mb, r.users[mb])
		}
	}
	credsFile := filepath.Join(r.dir, "alpha.csv")
	must(t, os.WriteFile(credsFile, []byte(creds.String()), 0o600))
	inv := r.writeInventory("creds.yaml", rigInventory{auth: map[string]string{
		"alpha": "{method: credentials-file, credentials_file: " + credsFile + "}"}})
	db := filepath.Join(r.dir, "state.db")
	report := filepath.Join(r.dir, "report.json")

	start := time.Now()
	code, stdout, stderr := runCLI(t, nil, "drain", "alpha", "-i", inv, "--yes", "--state", db, "--report", report, "--skip-preflight")
	if code != exitPartial {
		t.Fatalf("drain: exit %d, want %d\nstderr:\n%s\nstdout:\n%s", code, exitPartial, stderr, stdout)
	}
	t.Logf("drain with a wrong password: %v", time.Since(start).Round(time.Millisecond))
	if strings.Contains(stdout+stderr, "not-"+r.users[wrong]) {
		t.Errorf("the wrong password is printed:\n%s\n%s", stdout, stderr)
	}
	rep := readReport(t, report)
	var done []migrate.MoveResult
	for _, m := range rep.Moves {
		switch m.Mailbox {
		case wrong:
			if m.Result != migrate.ResultFailed || !strings.Contains(strings.ToLower(m.Reason), "authenticat") {
				t.Errorf("move of %s (wrong password): result %q, reason %q; want failed, naming the authentication", wrong, m.Result, m.Reason)
			}
		case missing:
			if m.Result != migrate.ResultFailed || !strings.Contains(m.Reason, "no line for mailbox") {
				t.Errorf("move of %s (no credentials): result %q, reason %q; want failed, naming the missing line", missing, m.Result, m.Reason)
			}
		default:
			if m.Result != migrate.ResultSynced || m.Phase != migrate.PhaseReady {
				t.Errorf("move of %s: result %q at %q (%s), want synced at ready (no hook)", m.Mailbox, m.Result, m.Phase, m.Reason)
			}
			done = append(done, m)
		}
		// The table shows each reason on one line, cut to 100 characters
		// (the report keeps it whole).
		if shown := cutRunes(moveReason(m.Result, m.Reason, m.Phase), 100); m.Result != migrate.ResultDone && !strings.Contains(stdout, shown) {
			t.Errorf("the final table lacks the reason of %s (%q):\n%s", m.Mailbox, shown, stdout)
		}
	}
	if tot := rep.Totals; tot.Synced != 3 || tot.Failed != 2 || tot.Done != 0 {
		t.Errorf("report totals %+v, want 3 synced, 2 failed", tot)
	}
	r.exact(&migrate.ApplyReport{Moves: done})
	for _, mb := range []string{wrong, missing} {
		to := r.clusters[moveOf(t, rep, mb).To]
		if snap := corpus.TakeSnapshot(t, to.Addr, mb, to.Users[mb]); countMessages(snap) != 0 {
			t.Errorf("%s failed but %d messages reached %s", mb, countMessages(snap), to.Name)
		}
	}
}

// TestApplyE2EKill9 kills the real binary with SIGKILL at random moments
// while it applies a plan of 20 moves, 10 times, each time starting it
// again at once (a killed run's hook may still be running), then runs it
// until it finishes: every move
// completes exactly once (each target equal to its source as a multiset, so
// no message twice), the sources are untouched, and a further run skips
// everything. Under kill -9 the cutover hook is at least once: a kill while
// it runs, or after it succeeded but before the cutover was recorded, runs
// it again on the rerun; the test logs it when it happens.
func TestApplyE2EKill9(t *testing.T) {
	const n, kills = 20, 10
	bin := mailferryBinary(t)
	r := newApplyRig(t, n)
	before := r.snapshotSources()
	seed := rand.Uint64()
	if s := os.Getenv(crashSeedEnv); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("%s=%q: %v", crashSeedEnv, s, err)
		}
	}
	rng := rand.New(rand.NewPCG(seed, 0x6b696c6c39)) // "kill9"
	t.Logf("seed %d (%s=%d replays the delays)", seed, crashSeedEnv, seed)

	db := filepath.Join(r.dir, "state.db")
	plan := filepath.Join(r.dir, "plan.json")
	report := filepath.Join(r.dir, "report.json")
	hookLog := filepath.Join(r.dir, "hook.log")
	// The hook takes a while, so that kills land in it too.
	hook := r.script("hook.sh", `sleep 0.2
echo "$MAILFERRY_MAILBOX" >> `+hookLog+"\n")
	if code, stdout, stderr := runCLI(t, nil, "plan", "-i", r.inv, "--drain", "alpha", "-o", plan); code != exitOK {
		t.Fatalf("plan: exit %d\n%s%s", code, stdout, stderr)
	}
	args := []string{"apply", plan, "-i", r.inv, "--state", db, "--parallel", "4", "--json", "--report", report, "--cutover-exec", hook, "--late-commit-window", "1s"}

	landed, finished := 0, 0
	var killed []*binaryRun
	for run := 1; landed < kills; run++ {
		if run > 3*kills {
			t.Fatalf("%d runs, only %d kills landed", run-1, landed)
		}
		delay := 30*time.Millisecond + time.Duration(rng.Int64N(int64(300*time.Millisecond)))
		p := startBinary(t, bin, r.dir, args...)
		time.Sleep(delay)
		killedAt := p.kill9()
		res := p.wait(t, time.Minute)
		killed = append(killed, p) // its hook may outlive it; the next run starts now
		doneMoves := strings.Count(res.stdout, `"event":"move_done"`)
		switch {
		case res.signaled == syscall.SIGKILL:
			landed++
			t.Logf("run %d: SIGKILL after %v, %d moves had finished", run, killedAt.Round(time.Millisecond), doneMoves)
		case res.code == exitOK:
			finished++
			t.Logf("run %d: finished (exit 0) before the kill after %v", run, delay.Round(time.Millisecond))
		default:
			t.Fatalf("run %d: exit %d, signal %v\nstderr:\n%s", run, res.code, res.signaled, crashTail(res.stderr, 4000))
		}
		if finished > 0 {
			break // nothing left to interrupt
		}
	}

	p := startBinary(t, bin, r.dir, args...)
	res := p.wait(t, 2*time.Minute)
	if res.code != exitOK {
		t.Fatalf("final run: exit %d, signal %v\nstderr:\n%s", res.code, res.signaled, crashTail(res.stderr, 4000))
	}
	for _, k := range killed {
		k.waitGroupGone(t, 15*time.Second) // hooks of killed runs, before their log is read
	}
	rep := readReport(t, report)
	if tot := rep.Totals; tot.Done+tot.Skipped != n {
		t.Fatalf("final run totals %+v, want %d done or skipped", tot, n)
	}
	r.exact(rep)
	r.sourcesUntouched(before)

	hooks := readHookLog(t, hookLog)
	for _, mb := range r.mailboxes {
		switch c := len(hooks[mb]); {
		case c == 0:
			t.Errorf("cutover hook never ran for %s", mb)
		case c > 1:
			t.Logf("cutover hook ran %d times for %s: a run was killed after the hook started and before the cutover was recorded; the rerun ran it again", c, mb)
		}
	}

	p = startBinary(t, bin, r.dir, args...)
	res = p.wait(t, time.Minute)
	if rep := readReport(t, report); res.code != exitOK || rep.Totals.Skipped != n {
		t.Errorf("one more run: exit %d, totals %+v; want 0 and every move skipped\nstderr:\n%s", res.code, rep.Totals, crashTail(res.stderr, 2000))
	}
	t.Logf("%d kills landed, %d runs finished first", landed, finished)
}

// TestApplyE2ERebalanceOverlap runs two rebalances at once: the first (the
// real binary) holds the run lock while its cutover hook waits; the second
// refuses with exit 5, naming the holder, and moves nothing. A lock held by
// another host refuses the same way.
func TestApplyE2ERebalanceOverlap(t *testing.T) {
	bin := mailferryBinary(t)
	r := newApplyRig(t, 4)
	// alpha 4/6 of its load, bravo and charlie empty: out of the band.
	inv := r.writeInventory("rebalance.yaml", rigInventory{load: map[string]int{"alpha": 6, "bravo": 6, "charlie": 6}})
	db := filepath.Join(r.dir, "state.db")
	started, release := filepath.Join(r.dir, "started"), filepath.Join(r.dir, "release")
	hook := r.script("hook.sh", `touch `+started+`
i=0
while [ ! -e `+release+` ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
[ -e `+release+` ]
`)
	report := filepath.Join(r.dir, "report.json")
	first := startBinary(t, bin, r.dir, "rebalance", "-i", inv, "--state", db, "--report", report, "--cutover-exec", hook)
	t.Cleanup(func() { _ = syscall.Kill(-first.cmd.Process.Pid, syscall.SIGKILL) })
	waitFile(t, started, 60*time.Second, first)

	code, stdout, stderr := runCLI(t, nil, "rebalance", "-i", inv, "--state", db, "--cutover-exec", "echo ran >> "+filepath.Join(r.dir, "second.log"))
	holder := fmt.Sprintf("pid %d", first.cmd.Process.Pid)
	if code != exitLocked || !strings.Contains(stderr, "another mailferry run") || !strings.Contains(stderr, holder) {
		t.Errorf("second rebalance while the first runs: exit %d, want %d with \"another mailferry run\" naming %q\nstderr:\n%s\nstdout:\n%s",
			code, exitLocked, holder, stderr, stdout)
	}
	t.Logf("the second rebalance refused: %s", strings.TrimSpace(stderr))
	if _, err := os.Stat(filepath.Join(r.dir, "second.log")); err == nil {
		t.Error("the refused rebalance ran a cutover hook")
	}

	must(t, os.WriteFile(release, nil, 0o600))
	res := first.wait(t, time.Minute)
	if res.code != exitOK {
		t.Fatalf("first rebalance: exit %d, signal %v\nstderr:\n%s\nstdout:\n%s", res.code, res.signaled, crashTail(res.stderr, 4000), res.stdout)
	}
	rep := readReport(t, report)
	if rep.Totals.Moves == 0 || rep.Totals.Done != rep.Totals.Moves {
		t.Fatalf("first rebalance: totals %+v, want some moves, all done", rep.Totals)
	}
	r.exact(rep)
	t.Logf("the first rebalance moved %d mailboxes", rep.Totals.Done)

	// A lock held by a process on another host: refused as well (its lease
	// has not expired, and it cannot be seen to have died).
	st, err := state.Open(context.Background(), db)
	must(t, err)
	defer st.Close()
	lock, err := st.Acquire(context.Background(), runLockKey(inv), "elsewhere.example pid 4242", time.Minute)
	must(t, err)
	code, _, stderr = runCLI(t, nil, "rebalance", "-i", inv, "--state", db)
	if code != exitLocked || !strings.Contains(stderr, "another mailferry run") || !strings.Contains(stderr, "elsewhere.example pid 4242") {
		t.Errorf("rebalance while another host holds the lock: exit %d, want %d naming the holder\nstderr:\n%s", code, exitLocked, stderr)
	}
	must(t, lock.Release(context.Background()))
	code, stdout, stderr = runCLI(t, nil, "rebalance", "-i", inv, "--state", db)
	if code != exitOK {
		t.Errorf("rebalance after the lock was released: exit %d\nstderr:\n%s\nstdout:\n%s", code, stderr, stdout)
	}
}

// script writes an executable shell script to the rig's directory and
// returns the command that runs it.
func (r *applyRig) script(name, body string) string {
	r.t.Helper()
	path := filepath.Join(r.dir, name)
	must(r.t, os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o700))
	return "/bin/sh " + path
}

// snapshotSources reads every mailbox on alpha.
func (r *applyRig) snapshotSources() map[string]*corpus.Snapshot {
	r.t.Helper()
	src := r.clusters["alpha"]
	out := map[string]*corpus.Snapshot{}
	for _, mb := range r.mailboxes {
		out[mb] = corpus.TakeSnapshot(r.t, src.Addr, mb, src.Users[mb])
	}
	return out
}

// sourcesUntouched asserts every mailbox on alpha is as before: the same
// folders, UIDs, flags and messages.
func (r *applyRig) sourcesUntouched(before map[string]*corpus.Snapshot) {
	r.t.Helper()
	for mb, after := range r.snapshotSources() {
		diff := corpus.CompareFlags(before[mb], after)
		diff = append(diff, corpus.Compare(before[mb], after, nil)...)
		if len(diff) > 0 {
			r.t.Errorf("source %s changed:\n%s", mb, strings.Join(diff, "\n"))
		}
	}
}

func readReport(t *testing.T, path string) *migrate.ApplyReport {
	t.Helper()
	data, err := os.ReadFile(path)
	must(t, err)
	var rep migrate.ApplyReport
	must(t, json.Unmarshal(data, &rep))
	return &rep
}

func moveOf(t *testing.T, rep *migrate.ApplyReport, mailbox string) migrate.MoveResult {
	t.Helper()
	for _, m := range rep.Moves {
		if m.Mailbox == mailbox {
			return m
		}
	}
	t.Fatalf("the report has no move of %s", mailbox)
	return migrate.MoveResult{}
}

func countMessages(s *corpus.Snapshot) int {
	n := 0
	for _, f := range s.Folders {
		n += len(f.Messages)
	}
	return n
}

// movePhases is the phase events of a move run from start to done in one
// apply.
var movePhases = regexp.MustCompile(`^copying( converging)* ready cutover final-delta done$`)

type phaseEvent struct {
	Event   string    `json:"event"`
	Time    time.Time `json:"time"`
	Mailbox string    `json:"mailbox"`
	Text    string    `json:"text"`
}

// phaseEvents reads the move_phase events of an NDJSON stdout, by mailbox
// in order.
func phaseEvents(t *testing.T, stdout string) map[string][]phaseEvent {
	t.Helper()
	out := map[string][]phaseEvent{}
	sc := bufio.NewScanner(strings.NewReader(stdout))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var e phaseEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("stdout line %q is not JSON: %v", sc.Text(), err)
		}
		if e.Event == "move_phase" {
			out[e.Mailbox] = append(out[e.Mailbox], e)
		}
	}
	must(t, sc.Err())
	return out
}

// phaseTime is when the move first entered phase.
func phaseTime(events []phaseEvent, phase string) time.Time {
	for _, e := range events {
		if e.Text == phase {
			return e.Time
		}
	}
	return time.Time{}
}

// hookRun is one line of a hook log: the mailbox, then optionally
// MAILFERRY_FROM, MAILFERRY_TO and the hook's start and end.
type hookRun struct {
	from, to   string
	start, end time.Time
}

// readHookLog reads a hook log, by mailbox.
func readHookLog(t *testing.T, path string) map[string][]hookRun {
	t.Helper()
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	must(t, err)
	out := map[string][]hookRun{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		var h hookRun
		if len(f) == 5 {
			h.from, h.to = f[1], f[2]
			h.start, h.end = unixTime(t, f[3]), unixTime(t, f[4])
		}
		out[f[0]] = append(out[f[0]], h)
	}
	return out
}

// unixTime parses date +%s.%N.
func unixTime(t *testing.T, s string) time.Time {
	t.Helper()
	sec, frac, _ := strings.Cut(s, ".")
	a, err := strconv.ParseInt(sec, 10, 64)
	must(t, err)
	b, err := strconv.ParseInt((frac + "000000000")[:9], 10, 64)
	must(t, err)
	return time.Unix(a, b)
}

// statusByMailbox runs status --json and keys its entries by mailbox (the
// user of the source login, without the master part).
func statusByMailbox(t *testing.T, db string) map[string]statusEntry {
	t.Helper()
	code, stdout, stderr := runCLI(t, nil, "status", "--json", "--state", db)
	if code != exitOK {
		t.Fatalf("status: exit %d\n%s", code, stderr)
	}
	var list []statusEntry
	must(t, json.Unmarshal([]byte(stdout), &list))
	out := map[string]statusEntry{}
	for _, e := range list {
		if e.Mailbox == "" || e.From == "" || e.To == "" {
			t.Fatalf("status entry %+v: not a move (mailbox, from, to)", e)
		}
		out[e.Mailbox] = e
	}
	return out
}

// freeAddr is a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	addr := ln.Addr().String()
	must(t, ln.Close())
	return addr
}

// scrape reads a Prometheus text exposition into series -> value.
func scrape(t *testing.T, u string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(u)
	must(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	must(t, err)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", u, resp.Status, body)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("GET %s: line %q: %v", u, line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// binaryRun is the real binary running in its own process group (so that
// a hook it started can be waited for after it was killed).
type binaryRun struct {
	cmd            *exec.Cmd
	stdout, stderr syncBuf
	started        time.Time
	done           chan struct{}
	err            error
}

type binaryResult struct {
	code           int // -1 when killed by a signal
	signaled       syscall.Signal
	stdout, stderr string
}

func startBinary(t *testing.T, bin, dir string, args ...string) *binaryRun {
	t.Helper()
	p := &binaryRun{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Dir = dir
	p.cmd.Env = crashEnviron()
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p
}

// kill9 sends SIGKILL to the binary alone (not to its hook) and returns
// how long it had run.
func (p *binaryRun) kill9() time.Duration {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	return time.Since(p.started)
}

func (p *binaryRun) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *binaryRun) wait(t *testing.T, limit time.Duration) binaryResult {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(limit):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		t.Fatalf("%v: still running after %v, killed\nstderr:\n%s", p.cmd.Args, limit, crashTail(p.stderr.String(), 4000))
	}
	var exitErr *exec.ExitError
	if p.err != nil && !errors.As(p.err, &exitErr) {
		t.Fatalf("wait for %v: %v", p.cmd.Args, p.err)
	}
	res := binaryResult{stdout: p.stdout.String(), stderr: p.stderr.String()}
	ws := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	res.code = ws.ExitStatus()
	if ws.Signaled() {
		res.code, res.signaled = -1, ws.Signal()
	}
	return res
}

// waitGroupGone waits until no live process of the binary's group (a hook
// it started) is left. Zombies count as gone: orphans are not always
// reaped in a container.
func (p *binaryRun) waitGroupGone(t *testing.T, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for groupAlive(p.cmd.Process.Pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			t.Fatalf("processes of %v still running %v after it ended", p.cmd.Args, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// groupAlive reports whether a process of group pgid runs (per /proc).
func groupAlive(pgid int) bool {
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces.
		i := bytes.LastIndexByte(data, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data[i+1:]))
		if len(f) >= 3 && f[0] != "Z" && f[2] == strconv.Itoa(pgid) {
			return true
		}
	}
	return false
}

// waitFile waits for path to appear while p runs.
func waitFile(t *testing.T, path string, limit time.Duration, p *binaryRun) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if p.exited() {
			res := p.wait(t, time.Minute)
			t.Fatalf("%v ended (exit %d) before %s appeared\nstderr:\n%s", p.cmd.Args, res.code, path, crashTail(res.stderr, 4000))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear within %v", path, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestApplyE2EMoveHeldElsewhere: a move whose migration another mailferry
// holds (a second apply of an overlapping plan, on another host) is not
// done: apply reports it with the holder and exits 3; the others are in
// sync (no hook). Once the other process let go, a rerun brings it in sync
// too (exit 4: synced, not final).
func TestApplyE2EMoveHeldElsewhere(t *testing.T) {
	r := newApplyRig(t, 3)
	const busy = "user01"
	db := filepath.Join(r.dir, "state.db")
	plan := filepath.Join(r.dir, "plan.json")
	report := filepath.Join(r.dir, "report.json")
	if code, stdout, stderr := runCLI(t, nil, "plan", "-i", r.inv, "--drain", "alpha", "-o", plan); code != exitOK {
		t.Fatalf("plan: exit %d\n%s%s", code, stdout, stderr)
	}
	p, err := readPlanFile(plan)
	must(t, err)
	var key state.Key
	for _, m := range p.Moves {
		if m.Mailbox == busy {
			key = migrate.MoveKey(migrate.Move{Mailbox: m.Mailbox, From: m.From, To: m.To})
		}
	}
	st, err := state.Open(context.Background(), db)
	must(t, err)
	defer st.Close()
	const holder = "elsewhere.example pid 4242"
	lease, err := st.Acquire(context.Background(), key, holder, time.Minute)
	must(t, err)

	code, stdout, stderr := runCLI(t, nil, "apply", plan, "-i", r.inv, "--state", db, "--report", report)
	if code != exitPartial {
		t.Errorf("apply while another process holds %s: exit %d, want %d\nstderr:\n%s\nstdout:\n%s", busy, code, exitPartial, stderr, stdout)
	}
	rep := readReport(t, report)
	for _, m := range rep.Moves {
		switch {
		case m.Mailbox == busy:
			if m.Result == migrate.ResultDone || m.Result == migrate.ResultSkipped || !strings.Contains(m.Reason, holder) {
				t.Errorf("move of %s held elsewhere: result %q, reason %q; want not done, naming %q", busy, m.Result, m.Reason, holder)
			}
		case m.Result != migrate.ResultSynced:
			t.Errorf("move of %s: result %q (%s), want synced", m.Mailbox, m.Result, m.Reason)
		}
	}

	must(t, lease.Release(context.Background()))
	code, stdout, stderr = runCLI(t, nil, "apply", plan, "-i", r.inv, "--state", db, "--report", report)
	if code != exitSynced {
		t.Fatalf("rerun: exit %d, want %d\nstderr:\n%s\nstdout:\n%s", code, exitSynced, stderr, stdout)
	}
	rep = readReport(t, report)
	if m := moveOf(t, rep, busy); m.Result != migrate.ResultSynced {
		t.Errorf("rerun: move of %s %+v, want synced", busy, m)
	}
	r.exact(rep)
}

// The first Ctrl-C of an apply stops starting work, finishes what is in
// flight, says how to resume and exits 130; nothing in flight is left to
// adopt; the rerun completes every move exactly once.
func TestApplyE2ESIGINT(t *testing.T) {
	const n = 12
	bin := mailferryBinary(t)
	r := newApplyRig(t, n)
	db := filepath.Join(r.dir, "state.db")
	plan := filepath.Join(r.dir, "plan.json")
	if code, stdout, stderr := runCLI(t, nil, "plan", "-i", r.inv, "--drain", "alpha", "-o", plan); code != exitOK {
		t.Fatalf("plan: exit %d\n%s%s", code, stdout, stderr)
	}
	// A slow hook keeps the run long enough to be interrupted in the middle.
	hook := r.script("slow-hook.sh", "sleep 0.3\n")
	args := []string{"apply", plan, "-i", r.inv, "--state", db, "--parallel", "2", "--json", "--cutover-exec", hook}
	p := startBinary(t, bin, r.dir, args...)
	// Interrupt once the first move is done: the others are in flight or
	// not started.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(p.stdoutText(), `"event":"move_done"`) && !p.exited() {
		if time.Now().After(deadline) {
			t.Fatal("no move finished within 30 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if p.exited() {
		t.Fatal("the whole apply finished before it could be interrupted: the test proves nothing")
	}
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	res := p.wait(t, time.Minute)
	if res.code != exitCanceled || !strings.Contains(res.stderr, "run the same command again") {
		t.Fatalf("interrupted apply: exit %d (signal %v), want 130 with a resume hint\nstderr:\n%s", res.code, res.signaled, crashTail(res.stderr, 2000))
	}
	done := strings.Count(res.stdout, `"text":"done"`)
	t.Logf("interrupted after %d of %d moves were done", done, n)

	code, stdout, stderr := runCLI(t, nil, args...)
	if code != exitOK {
		t.Fatalf("rerun: exit %d\n%s\n%s", code, stderr, stdout)
	}
	var rep migrate.ApplyReport
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	must(t, json.Unmarshal([]byte(lines[len(lines)-1]), &rep))
	if rep.Totals.Done+rep.Totals.Skipped != n || rep.Totals.Skipped < 1 {
		t.Errorf("rerun totals %+v: want every move done, the finished ones skipped", rep.Totals)
	}
	r.exact(&rep)
}

// syncBuf collects a child's output while the test reads it.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (p *binaryRun) stdoutText() string { return p.stdout.String() }

// Outside its windows with --exit-outside-window, apply moves nothing and
// exits 75; inside them the rerun brings every move in sync (no hook: exit
// 4).
func TestApplyE2EOutsideWindowExits75(t *testing.T) {
	r := newApplyRig(t, 2)
	db := filepath.Join(r.dir, "state.db")
	now := time.Now()
	closed := now.Add(2*time.Hour).Format("15:04") + "-" + now.Add(3*time.Hour).Format("15:04")
	code, stdout, stderr := runCLI(t, nil, "drain", "alpha", "-i", r.inv, "--yes", "--state", db, "--window", closed, "--exit-outside-window")
	if code != exitLater || !strings.Contains(stderr, "inside a window") {
		t.Fatalf("outside the window: exit %d, want %d\nstderr:\n%s\nstdout:\n%s", code, exitLater, stderr, stdout)
	}
	if code, stdout, stderr := runCLI(t, nil, "drain", "alpha", "-i", r.inv, "--yes", "--state", db); code != exitSynced || !strings.Contains(stdout, "2 synced") {
		t.Fatalf("inside: exit %d\n%s\n%s", code, stderr, stdout)
	}
}

// TestApplyE2ESilentClusterFailsAlone drains alpha onto bravo and charlie
// where charlie's server goes silent after login: its moves fail with a
// timeout naming the target once --io-timeout passes without progress,
// bravo's moves are in sync (no hook), and apply exits 3 instead of hanging
// (--skip-preflight: the server goes silent after the preflight).
func TestApplyE2ESilentClusterFailsAlone(t *testing.T) {
	bin := mailferryBinary(t)
	r := newApplyRig(t, 6)
	stuck, _ := stuckServer(t, false)
	inv, err := os.ReadFile(r.inv)
	must(t, err)
	silent := strings.Replace(string(inv), r.clusters["charlie"].Addr, stuck, 1)
	if silent == string(inv) {
		t.Fatal("charlie's address is not in the inventory")
	}
	must(t, os.WriteFile(r.inv, []byte(silent), 0o600))
	plan := filepath.Join(r.dir, "plan.json")
	if code, stdout, stderr := runCLI(t, nil, "plan", "-i", r.inv, "--drain", "alpha", "-o", plan); code != exitOK {
		t.Fatalf("plan: exit %d\n%s%s", code, stdout, stderr)
	}
	report := filepath.Join(r.dir, "report.json")
	start := time.Now()
	p := startBinary(t, bin, r.dir, "apply", plan, "-i", r.inv, "--state", filepath.Join(r.dir, "state.db"),
		"--parallel", "6", "--io-timeout", "2s", "--json", "--report", report, "--skip-preflight")
	res := p.wait(t, 90*time.Second)
	took := time.Since(start)
	if res.code != exitPartial {
		t.Fatalf("apply: exit %d after %v, want %d\nstderr:\n%s", res.code, took, exitPartial, crashTail(res.stderr, 3000))
	}
	rep := readReport(t, report)
	toCharlie, toBravo := 0, 0
	for _, mv := range rep.Moves {
		switch mv.To {
		case "charlie":
			toCharlie++
			if mv.Result != "failed" || !strings.Contains(mv.Reason, "target") || !strings.Contains(mv.Reason, "timed out") {
				t.Errorf("%s to charlie: %s, %q; want failed with a target timeout", mv.Mailbox, mv.Result, mv.Reason)
			}
		case "bravo":
			toBravo++
			if mv.Result != migrate.ResultSynced {
				t.Errorf("%s to bravo: %s, %q; want synced", mv.Mailbox, mv.Result, mv.Reason)
			}
		}
	}
	if toCharlie == 0 || toBravo == 0 {
		t.Fatalf("the plan sends %d moves to charlie and %d to bravo; want some of each", toCharlie, toBravo)
	}
	t.Logf("apply ended after %v: %d moves to bravo in sync, %d to the silent charlie failed", took.Round(time.Millisecond), toBravo, toCharlie)
}
