package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailferry/migrate"
)

// status after a run in which one move failed on its login and the others
// were held at ready, then completed by another run: the failed move says
// failed and why; a done move shows the totals of the whole move (not of
// the run that finished it, which copied nothing); rows are mailbox, from
// and to, with no login anywhere (the targets use a master login); the
// run lock is not a row; --plan counts the plan's moves by state.
func TestStatusE2EFailedAndDone(t *testing.T) {
	r := newApplyRig(t, 3)
	const wrong = "user02"
	var creds strings.Builder
	creds.WriteString("# mailbox,login,password\n")
	for _, mb := range r.mailboxes {
		pw := r.users[mb]
		if mb == wrong {
			pw = "not-" + pw
		}
		fmt.Fprintf(&creds, "%s,%s,%s\n", mb, mb, pw)
	}
	credsFile := filepath.Join(r.dir, "alpha.csv")
	must(t, os.WriteFile(credsFile, []byte(creds.String()), 0o600))
	inv := r.writeInventory("creds.yaml", rigInventory{auth: map[string]string{
		"alpha": "{method: credentials-file, credentials_file: " + credsFile + "}"}})
	plan := r.planFile(inv)
	db := filepath.Join(r.dir, "state.db")
	if code, out, stderr := runCLI(t, nil, "status", "--plan", plan, "--state", db); code != exitOK || !strings.Contains(out, "3 moves: 3 new") {
		t.Errorf("status --plan before any run: exit %d, %s\n%s", code, stderr, out)
	}

	code, stdout, stderr := runCLI(t, nil, "apply", plan, "-i", inv, "--state", db, "--hold-at-ready", "--skip-preflight")
	if code != exitPartial {
		t.Fatalf("apply --hold-at-ready: exit %d, want %d\nstderr:\n%s\nstdout:\n%s", code, exitPartial, stderr, stdout)
	}
	code, stdout, stderr = runCLI(t, nil, "complete", plan, "-i", inv, "--all", "--state", db, "--cutover-exec", "true", "--skip-preflight")
	if code != exitOK {
		t.Fatalf("complete --all: exit %d\nstderr:\n%s\nstdout:\n%s", code, stderr, stdout)
	}

	code, jsonOut, stderr := runCLI(t, nil, "status", "--json", "--state", db)
	if code != exitOK {
		t.Fatalf("status --json: exit %d\n%s", code, stderr)
	}
	var list []statusEntry
	must(t, json.Unmarshal([]byte(jsonOut), &list))
	if len(list) != len(r.mailboxes) {
		t.Errorf("status lists %d rows, want one per mailbox (%d), no run lock:\n%s", len(list), len(r.mailboxes), jsonOut)
	}
	byMailbox := map[string]statusEntry{}
	for _, e := range list {
		byMailbox[e.Mailbox] = e
		if e.From != "alpha" || (e.To != "bravo" && e.To != "charlie") {
			t.Errorf("row %s: from %q to %q, want alpha to a cluster of the rig", e.Mailbox, e.From, e.To)
		}
	}

	f, ok := byMailbox[wrong]
	switch {
	case !ok:
		t.Fatalf("no row for %s", wrong)
	case f.State != migrate.ResultFailed || f.Result != migrate.ResultFailed:
		t.Errorf("%s: state %q, result %q; want failed", wrong, f.State, f.Result)
	case !strings.Contains(strings.ToLower(f.LastError), "authenticat"):
		t.Errorf("%s: last error %q, want the refused login in words", wrong, f.LastError)
	case len(f.Passes) == 0 || f.Passes[len(f.Passes)-1].Result != "failed":
		t.Errorf("%s: passes %+v, want the failed pass", wrong, f.Passes)
	}

	for _, mb := range r.mailboxes {
		if mb == wrong {
			continue
		}
		e := byMailbox[mb]
		n, size := int64(r.corpora[mb].TotalMessages()), r.corpora[mb].TotalBytes()
		if e.State != migrate.PhaseDone || e.Phase != migrate.PhaseDone || e.Result != migrate.ResultDone || e.LastError != "" {
			t.Errorf("%s: state %q phase %q result %q error %q; want done", mb, e.State, e.Phase, e.Result, e.LastError)
		}
		if e.MessagesDone != n || e.MessagesTotal != n || e.BytesDone != size || e.BytesTotal != size || e.Verified != n {
			t.Errorf("%s: %d/%d messages, %d/%d bytes, %d verified; want the whole move: %d messages, %d bytes",
				mb, e.MessagesDone, e.MessagesTotal, e.BytesDone, e.BytesTotal, e.Verified, n, size)
		}
		if e.Totals.Copied != n || e.Totals.BytesCopied != size || e.Totals.Passes < 2 {
			t.Errorf("%s: totals %+v; want %d messages and %d bytes copied over at least 2 passes", mb, e.Totals, n, size)
		}
		var copied int64
		for _, p := range e.Passes {
			copied += p.Copied
		}
		if copied != n || e.Passes[0].Phase != migrate.PhaseCopying || e.Passes[len(e.Passes)-1].Phase != migrate.PhaseFinal {
			t.Errorf("%s: passes %+v; want copying first, final-delta last, %d copied in all", mb, e.Passes, n)
		}
		if e.Holder != nil {
			t.Errorf("%s: held by %+v after the runs ended", mb, e.Holder)
		}
	}

	code, text, stderr := runCLI(t, nil, "status", "--passes", "--state", db)
	if code != exitOK {
		t.Fatalf("status: exit %d\n%s", code, stderr)
	}
	t.Logf("status --passes:\n%s", text)
	for _, mb := range r.mailboxes {
		if mb != wrong && !strings.Contains(text, fmt.Sprintf("%d/%d", r.corpora[mb].TotalMessages(), r.corpora[mb].TotalMessages())) {
			t.Errorf("status text lacks the done totals of %s:\n%s", mb, text)
		}
	}
	if !strings.Contains(text, "failed") || !strings.Contains(strings.ToLower(text), "authenticat") {
		t.Errorf("status text lacks the failure of %s and its reason:\n%s", wrong, text)
	}
	if strings.Contains(text, inv) || strings.Contains(text, "run lock") {
		t.Errorf("status text lists the (free) run lock:\n%s", text)
	}
	master := r.clusters["bravo"].MasterUser
	for name, out := range map[string]string{"status --json": jsonOut, "status --passes": text} {
		for _, login := range []string{"*" + master, "%2A" + master, "%2a" + master, "@127.0.0.1", "imap://"} {
			if strings.Contains(out, login) {
				t.Errorf("%s shows a login or URL (%q):\n%s", name, login, out)
			}
		}
	}

	code, sumOut, stderr := runCLI(t, nil, "status", "--plan", plan, "--json", "--state", db)
	if code != exitOK {
		t.Fatalf("status --plan: exit %d\n%s", code, stderr)
	}
	var sum planSummary
	must(t, json.Unmarshal([]byte(sumOut), &sum))
	var doneBytes, allBytes int64
	for _, mb := range r.mailboxes {
		allBytes += r.corpora[mb].TotalBytes()
		if mb != wrong {
			doneBytes += r.corpora[mb].TotalBytes()
		}
	}
	if sum.Moves != 3 || sum.States["done"] != 2 || sum.States["failed"] != 1 || sum.BytesDone != doneBytes || sum.BytesTotal != allBytes {
		t.Errorf("status --plan: %+v; want 3 moves, 2 done, 1 failed, %d of %d bytes", sum, doneBytes, allBytes)
	}
	if len(sum.Failed) != 1 || sum.Failed[0].Mailbox != wrong || !strings.Contains(strings.ToLower(sum.Failed[0].Reason), "authenticat") {
		t.Errorf("status --plan failures %+v, want %s with its reason", sum.Failed, wrong)
	}
	code, sumText, _ := runCLI(t, nil, "status", "--plan", plan, "--state", db)
	t.Logf("status --plan:\n%s", sumText)
	if code != exitOK || !strings.Contains(sumText, "3 moves: 2 done, 1 failed") || !strings.Contains(sumText, wrong) {
		t.Errorf("status --plan text: exit %d\n%s", code, sumText)
	}
}

// While a run works on a move, status names the holder (host, pid, since
// when) of that move and of the run lock, which is a line after the
// table, not a row.
func TestStatusE2EHolder(t *testing.T) {
	r := newApplyRig(t, 2)
	const slow = "user01"
	db := filepath.Join(r.dir, "state.db")
	request := filepath.Join(r.dir, "status.request")
	hook := r.script("hook.sh", `[ "$MAILFERRY_MAILBOX" = `+slow+` ] || exit 0
touch `+request+`
i=0
while [ -e `+request+` ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
[ ! -e `+request+` ]
`)
	done := make(chan int, 1)
	go func() {
		code, _, _ := runCLI(t, nil, "drain", "alpha", "-i", r.inv, "--yes", "--state", db, "--cutover-exec", hook)
		done <- code
	}()
	deadline := time.After(60 * time.Second)
	for waiting := true; waiting; {
		select {
		case code := <-done:
			t.Fatalf("drain ended (exit %d) before the hook of %s ran", code, slow)
		case <-deadline:
			t.Fatalf("the hook of %s did not run within 60 s", slow)
		case <-time.After(20 * time.Millisecond):
			_, err := os.Stat(request)
			waiting = err != nil
		}
	}
	code, jsonOut, stderr := runCLI(t, nil, "status", "--json", "--state", db)
	_, text, _ := runCLI(t, nil, "status", "--state", db)
	must(t, os.Remove(request))
	select {
	case c := <-done:
		if c != exitOK {
			t.Errorf("drain: exit %d", c)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("drain did not end within 60 s")
	}
	if code != exitOK {
		t.Fatalf("status: exit %d\n%s", code, stderr)
	}
	var list []statusEntry
	must(t, json.Unmarshal([]byte(jsonOut), &list))
	host, _ := os.Hostname()
	var found bool
	for _, e := range list {
		if e.Mailbox != slow {
			continue
		}
		found = true
		if h := e.Holder; h == nil || h.Host != host || h.PID != os.Getpid() || h.Since == nil || h.Since.After(time.Now()) {
			t.Errorf("%s in its cutover: holder %+v; want this host and pid, and since when", slow, h)
		}
		if e.State != migrate.PhaseReady {
			t.Errorf("%s in its cutover hook: state %q, want ready", slow, e.State)
		}
	}
	if !found || len(list) != len(r.mailboxes) {
		t.Errorf("status lists %d rows (want %d, no lock), %s among them: %v", len(list), len(r.mailboxes), slow, found)
	}
	if want := fmt.Sprintf("run lock of %s: held by %s pid %d since ", r.inv, host, os.Getpid()); !strings.Contains(text, want) {
		t.Errorf("status text lacks %q:\n%s", want, text)
	}
}
