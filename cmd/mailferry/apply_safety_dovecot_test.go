package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailferry/internal/testrig/corpus"
	"mailferry/migrate"
	"mailferry/planner"
)

// The operator-safety tests of issue 12 for apply and drain: no move is
// final unless routing changed, one run at a time, plans checked against
// the inventory.

// deliver appends one message to a mailbox's INBOX on a cluster, as mail
// reaching it would.
func (r *applyRig) deliver(cluster, mailbox string, m corpus.Message) {
	r.t.Helper()
	inbox := r.corpora[mailbox].Folder("INBOX")
	corpus.Seed(r.t, r.clusters[cluster].Addr, mailbox, r.users[mailbox], &corpus.Mailbox{Folders: []corpus.Folder{
		{Path: []string{"INBOX"}, Subscribed: inbox.Subscribed, Messages: []corpus.Message{m}}}})
}

// copiesOf counts the messages with m's bytes in a mailbox's INBOX on a
// cluster.
func (r *applyRig) copiesOf(cluster, mailbox string, m corpus.Message) int {
	r.t.Helper()
	s := r.clusters[cluster]
	n := 0
	for _, got := range corpus.TakeSnapshot(r.t, s.Addr, mailbox, s.Users[mailbox]).Folders["INBOX"].Messages {
		if got.SHA256 == m.SHA256() {
			n++
		}
	}
	return n
}

// TestApplyE2ENoHookStaysSynced: a drain without --cutover-exec does not
// pretend routing changed. Every move stays in sync at ready (exit 4, the
// table and the last line say "not final" and how to finish); mail that
// reaches the source afterwards is copied by the next run; complete
// without a hook or --routed refuses; complete --routed finishes every
// move, its final delta catching the mail delivered in between.
func TestApplyE2ENoHookStaysSynced(t *testing.T) {
	r := newApplyRig(t, 3)
	const late = "user01"
	db := filepath.Join(r.dir, "state.db")
	report := filepath.Join(r.dir, "report.json")
	code, stdout, stderr := runCLI(t, nil, "drain", "alpha", "-i", r.inv, "--yes", "--state", db, "--report", report)
	if code != exitSynced {
		t.Fatalf("drain without a hook: exit %d, want %d (synced, not final)\nstderr:\n%s\nstdout:\n%s", code, exitSynced, stderr, stdout)
	}
	if !strings.Contains(stdout, "synced: in sync at ready, NOT final") || !strings.Contains(stdout, "3 synced (not final)") {
		t.Errorf("the final table does not say the moves are in sync but not final:\n%s", stdout)
	}
	for _, want := range []string{"3 of 3 moves in sync but NOT final", "--cutover-exec",
		"mailferry plan -i " + r.inv + " --drain alpha -o plan.json, then mailferry complete plan.json -i " + r.inv + " --all --routed"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	rep := readReport(t, report)
	for _, m := range rep.Moves {
		if m.Result != migrate.ResultSynced || m.Phase != migrate.PhaseReady || m.Verified != m.Messages {
			t.Errorf("move %+v: want synced at ready, every message verified", m)
		}
	}
	if tot := rep.Totals; tot.Synced != 3 || tot.Done != 0 {
		t.Errorf("totals %+v, want 3 synced, none done", tot)
	}
	r.exact(rep)
	for mb, e := range statusByMailbox(t, db) {
		if e.Phase != migrate.PhaseReady {
			t.Errorf("status of %s: phase %q, want ready", mb, e.Phase)
		}
	}

	// Routing did not change: mail still reaches the source, and the next
	// run copies it.
	to := moveOf(t, rep, late).To
	mail1 := corpus.Big(7000, 1201)
	r.deliver("alpha", late, mail1)
	code, stdout, stderr = runCLI(t, nil, "drain", "alpha", "-i", r.inv, "--yes", "--state", db, "--report", report)
	if code != exitSynced {
		t.Fatalf("rerun without a hook: exit %d, want %d\nstderr:\n%s\nstdout:\n%s", code, exitSynced, stderr, stdout)
	}
	rep = readReport(t, report)
	for _, m := range rep.Moves {
		want := 0
		if m.Mailbox == late {
			want = 1
		}
		if m.Result != migrate.ResultSynced || m.Copied != want {
			t.Errorf("rerun: move %+v, want synced with %d copied", m, want)
		}
	}
	if n := r.copiesOf(to, late, mail1); n != 1 {
		t.Errorf("mail delivered to the source after the first run is %d times on %s, want once", n, to)
	}
	r.exact(rep)

	plan := filepath.Join(r.dir, "plan.json")
	if code, stdout, stderr := runCLI(t, nil, "plan", "-i", r.inv, "--drain", "alpha", "-o", plan); code != exitOK {
		t.Fatalf("plan: exit %d\n%s%s", code, stdout, stderr)
	}
	code, _, stderr = runCLI(t, nil, "complete", plan, "-i", r.inv, "--all", "--state", db)
	if code != exitUsage || !strings.Contains(stderr, "--routed") {
		t.Errorf("complete without a hook or --routed: exit %d, want %d naming --routed\nstderr:\n%s", code, exitUsage, stderr)
	}

	// The operator switched routing by hand; mail that reached the source
	// before that is caught by the final delta.
	mail2 := corpus.Big(8000, 1202)
	r.deliver("alpha", late, mail2)
	code, stdout, stderr = runCLI(t, nil, "complete", plan, "-i", r.inv, "--all", "--routed", "--state", db, "--report", report)
	if code != exitOK {
		t.Fatalf("complete --routed: exit %d\nstderr:\n%s\nstdout:\n%s", code, stderr, stdout)
	}
	rep = readReport(t, report)
	if tot := rep.Totals; tot.Done != 3 || tot.Verified != tot.Messages {
		t.Errorf("complete --routed: totals %+v, want 3 done, every message verified", tot)
	}
	if n := r.copiesOf(to, late, mail2); n != 1 {
		t.Errorf("mail delivered before the routing changed is %d times on %s, want once", n, to)
	}
	r.exact(rep)
	for mb, e := range statusByMailbox(t, db) {
		if e.Phase != migrate.PhaseDone {
			t.Errorf("status of %s: phase %q, want done", mb, e.Phase)
		}
	}
}

// TestApplyE2EDrainOverlap: while a drain runs (the real binary, held in
// its cutover hook), a second drain of the same cluster and an apply of
// the same plan refuse at once with exit 5, naming the holder's host and
// pid, and touch nothing; the first finishes every move.
func TestApplyE2EDrainOverlap(t *testing.T) {
	bin := mailferryBinary(t)
	r := newApplyRig(t, 3)
	db := filepath.Join(r.dir, "state.db")
	started, release := filepath.Join(r.dir, "started"), filepath.Join(r.dir, "release")
	hook := r.script("hook.sh", `touch `+started+`
i=0
while [ ! -e `+release+` ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
[ -e `+release+` ]
`)
	plan := filepath.Join(r.dir, "plan.json")
	if code, stdout, stderr := runCLI(t, nil, "plan", "-i", r.inv, "--drain", "alpha", "-o", plan); code != exitOK {
		t.Fatalf("plan: exit %d\n%s%s", code, stdout, stderr)
	}
	report := filepath.Join(r.dir, "report.json")
	first := startBinary(t, bin, r.dir, "drain", "alpha", "-i", r.inv, "--yes", "--state", db, "--report", report, "--cutover-exec", hook)
	t.Cleanup(func() { _ = syscall.Kill(-first.cmd.Process.Pid, syscall.SIGKILL) })
	waitFile(t, started, 60*time.Second, first)

	host, err := os.Hostname()
	must(t, err)
	holder := fmt.Sprintf("%s pid %d", host, first.cmd.Process.Pid)
	second := filepath.Join(r.dir, "second.log")
	report2 := filepath.Join(r.dir, "report2.json")
	for _, args := range [][]string{
		{"drain", "alpha", "-i", r.inv, "--yes"},
		{"apply", plan, "-i", r.inv},
	} {
		args = append(args, "--state", db, "--report", report2, "--cutover-exec", "echo ran >> "+second)
		code, stdout, stderr := runCLI(t, nil, args...)
		if code != exitLocked || !strings.Contains(stderr, "another mailferry run") || !strings.Contains(stderr, holder) {
			t.Errorf("%s while a drain runs: exit %d, want %d naming %q\nstderr:\n%s\nstdout:\n%s", args[0], code, exitLocked, holder, stderr, stdout)
		}
		if strings.Contains(stdout, "failed") {
			t.Errorf("%s while a drain runs reports failed moves:\n%s", args[0], stdout)
		}
	}
	for _, f := range []string{second, report2} {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a refused run wrote %s (%v)", f, err)
		}
	}

	must(t, os.WriteFile(release, nil, 0o600))
	res := first.wait(t, time.Minute)
	if res.code != exitOK {
		t.Fatalf("first drain: exit %d, signal %v\nstderr:\n%s\nstdout:\n%s", res.code, res.signaled, crashTail(res.stderr, 4000), res.stdout)
	}
	rep := readReport(t, report)
	if tot := rep.Totals; tot.Done != 3 {
		t.Fatalf("first drain: totals %+v, want 3 done", tot)
	}
	r.exact(rep)
}

// TestApplyE2ERefusesUncheckedPlan: apply holds every move against the
// inventory before it copies anything. A hand-edited plan that moves a
// mailbox back into the draining cluster is refused (exit 2, naming the
// move and why), nothing copied, unless --force; a plan run with an
// inventory that changed since (a target now draining, a mailbox now
// elsewhere) is refused the same way, with a warning about the digest; a
// plan without the digest (older versions) runs with a warning.
func TestApplyE2ERefusesUncheckedPlan(t *testing.T) {
	r := newApplyRig(t, 4)
	before := r.snapshotSources()
	inv := r.writeInventory("draining.yaml", rigInventory{health: map[string]string{"alpha": "draining"}})
	planFile := filepath.Join(r.dir, "plan.json")
	if code, stdout, stderr := runCLI(t, nil, "plan", "-i", inv, "--drain", "alpha", "-o", planFile); code != exitOK {
		t.Fatalf("plan: exit %d\n%s%s", code, stdout, stderr)
	}
	plan, err := readPlanFile(planFile)
	must(t, err)
	if plan.InventoryDigest == "" {
		t.Fatal("the plan carries no inventory digest")
	}
	writePlan := func(name string, p *planner.Plan) string {
		var b bytes.Buffer
		must(t, planner.WritePlan(&b, p))
		path := filepath.Join(r.dir, name)
		must(t, os.WriteFile(path, b.Bytes(), 0o600))
		return path
	}
	targetsEmpty := func(when string) {
		t.Helper()
		for _, m := range plan.Moves {
			s := r.clusters[m.To]
			if n := countMessages(corpus.TakeSnapshot(t, s.Addr, m.Mailbox, s.Users[m.Mailbox])); n != 0 {
				t.Errorf("%s: %d messages of %s reached %s", when, n, m.Mailbox, m.To)
			}
		}
	}

	// A hand edit reverses the first move: into the draining alpha, from a
	// cluster the inventory does not have the mailbox on.
	edited := *plan
	edited.Moves = append([]planner.Move(nil), plan.Moves...)
	rev := &edited.Moves[0]
	rev.From, rev.To = rev.To, rev.From
	editedFile := writePlan("edited.json", &edited)
	code, stdout, stderr := runCLI(t, nil, "apply", editedFile, "-i", inv, "--state", filepath.Join(r.dir, "s1.db"))
	if code != exitUsage {
		t.Fatalf("apply of a reversed move: exit %d, want %d\nstderr:\n%s\nstdout:\n%s", code, exitUsage, stderr, stdout)
	}
	for _, want := range []string{"1 moves that must not run", rev.Mailbox + " (" + rev.From + " -> alpha)", "target alpha is draining",
		"the inventory has the mailbox on alpha, not on " + rev.From, "--force", "nothing was moved"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("the refusal lacks %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "changed since") || !strings.Contains(stderr, "edited by hand?") {
		t.Errorf("the inventory is the plan's own, so apply should say the plan was edited, not the inventory:\n%s", stderr)
	}
	targetsEmpty("refused plan")
	r.sourcesUntouched(before)

	// --force runs it anyway, saying so.
	code, stdout, stderr = runCLI(t, nil, "apply", editedFile, "-i", inv, "--state", filepath.Join(r.dir, "s2.db"), "--force")
	if code != exitSynced || !strings.Contains(stderr, "--force: running 1 moves") || !strings.Contains(stderr, rev.Mailbox) {
		t.Errorf("apply --force: exit %d, want %d with a warning naming %s\nstderr:\n%s\nstdout:\n%s", code, exitSynced, rev.Mailbox, stderr, stdout)
	}

	// The inventory changed since the plan: charlie drains now, and the
	// inventory has one mailbox on bravo.
	var toCharlie []string
	moved := ""
	for _, m := range plan.Moves {
		switch {
		case m.To == "charlie":
			toCharlie = append(toCharlie, m.Mailbox)
		case moved == "" && m.Mailbox != rev.Mailbox:
			moved = m.Mailbox
		}
	}
	if len(toCharlie) == 0 || moved == "" {
		t.Fatalf("the plan %v sends nothing to charlie or everything: the test proves nothing", plan.Moves)
	}
	changed := r.writeInventory("changed.yaml", rigInventory{health: map[string]string{"alpha": "draining", "charlie": "draining"},
		on: map[string]string{moved: "bravo"}})
	code, stdout, stderr = runCLI(t, nil, "apply", planFile, "-i", changed, "--state", filepath.Join(r.dir, "s3.db"))
	if code != exitUsage {
		t.Fatalf("apply with a changed inventory: exit %d, want %d\nstderr:\n%s\nstdout:\n%s", code, exitUsage, stderr, stdout)
	}
	wants := []string{"changed since the plan was made", fmt.Sprintf("%d moves that must not run", len(toCharlie)+1),
		moved + " (alpha -> bravo): the inventory has the mailbox on bravo, not on alpha"}
	for _, mb := range toCharlie {
		wants = append(wants, mb+" (alpha -> charlie): target charlie is draining")
	}
	for _, want := range wants {
		if !strings.Contains(stderr, want) {
			t.Errorf("the refusal lacks %q:\n%s", want, stderr)
		}
	}

	// A plan of an older mailferry (no digest) runs, with a warning.
	old := *plan
	old.InventoryDigest = ""
	code, stdout, stderr = runCLI(t, nil, "apply", writePlan("old.json", &old), "-i", inv, "--state", filepath.Join(r.dir, "s4.db"),
		"--cutover-exec", "true")
	if code != exitOK || !strings.Contains(stderr, "no inventory digest") {
		t.Errorf("apply of a plan without a digest: exit %d, want %d with a warning\nstderr:\n%s\nstdout:\n%s", code, exitOK, stderr, stdout)
	}
}
