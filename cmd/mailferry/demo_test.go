package main

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

// The demo off a terminal, at small sizes: it exits 0 telling its story
// (one mailbox fails alone with its reason, late mail is caught by a
// delta pass, the cutover hook routes the others, the final status),
// draws nothing of the live view (plain lines, each result once), and
// leaves nothing behind.
func TestDemo(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // the demo's own temporary directory lands here
	args := []string{"demo", "--mailboxes", "6", "--folders", "2", "--messages", "3", "--max-size", "16KiB", "--parallel", "3"}
	code, stdout, stderr := runCLI(t, nil, args...)
	if code != exitOK {
		t.Fatalf("exit %d; stderr %q\n%s", code, stderr, stdout)
	}
	for _, w := range []string{
		"seeded 6 mailboxes", "on bravo", "drain bravo", "bravo    degraded  3 -> 0",
		"MESSAGES COPIED", "2 done, 1 failed, 0 held, 0 interrupted",
		"2 of 3 mailboxes moved off bravo",
		"user01@demo.example failed alone, the others went on: ", "NO [OVERQUOTA]",
		"3 messages reached user03@demo.example during its first copy: caught by a delta pass (the final-delta pass copied 3)",
		"the cutover hook routed 2 mailboxes",
		"demo: mailferry status --state",
	} {
		if !strings.Contains(stdout, w) {
			t.Errorf("demo output lacks %q:\n%s", w, stdout)
		}
	}
	if strings.Contains(stderr, "\x1b[") || regexp.MustCompile(`(?m)^\[[-=>+]+\]`).MatchString(stderr) {
		t.Errorf("off a terminal the progress has escape codes or a bar:\n%q", stderr)
	}
	// The plan's order (most load per byte first) is user02, user01,
	// user03: the second fails, the third gets the late mail.
	for _, mb := range []string{"user02", "user03"} {
		if n := strings.Count(stderr, "mailferry: "+mb+"@demo.example: done;"); n != 1 {
			t.Errorf("%s's result is told %d times, want once:\n%s", mb, n, stderr)
		}
	}
	if n := strings.Count(stderr, "mailferry: user01@demo.example: failed: "); n != 1 {
		t.Errorf("user01's failure is told %d times, want once:\n%s", n, stderr)
	}
	if !strings.Contains(stderr, "cutover user02@demo.example: mail for user02@demo.example now goes to") {
		t.Errorf("the cutover hook's output is not shown:\n%s", stderr)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("demo left %d files behind in TMPDIR (first: %s)", len(left), left[0].Name())
	}

	code, stdout, stderr = runCLI(t, nil, append(args, "--json")...)
	if code != exitOK {
		t.Fatalf("--json: exit %d; stderr %q", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	var events []string
	for _, l := range lines {
		var e struct{ Event string }
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("--json: not a JSON line: %v\n%s", err, l)
		}
		events = append(events, e.Event)
	}
	if events[0] != "plan" || events[len(events)-1] != "report" {
		t.Errorf("--json events %v: want plan first and report last", events)
	}
	var rep struct {
		Moves []struct{ Mailbox, From, Result, Reason string }
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rep); err != nil {
		t.Fatal(err)
	}
	for _, m := range rep.Moves {
		want := "done"
		if m.Mailbox == "user01@demo.example" {
			want = "failed"
		}
		if m.From != "bravo" || m.Result != want {
			t.Errorf("--json report move %+v: want from bravo, %s", m, want)
		}
	}
}
