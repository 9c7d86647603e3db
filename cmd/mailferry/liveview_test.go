package main

import (
	"bytes"
	"context"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"mailferry/migrate"
	"mailferry/throttle"
)

var (
	// The overall bar: "[=====>-----]  42%  12.6 MiB of 30.2 MiB, ...".
	liveBarRe = regexp.MustCompile(`^\[[-=>+]+\] +\d+%  .* of .*moves \d+/\d+ finished`)
	// A move's line in the live area: mailbox, route, phase, bytes, rate.
	liveMoveRe = regexp.MustCompile(`^  (user\d+@demo\.example) +bravo -> (alpha|charlie) +(copying|converging|ready|cutover|final-delta) +\S+ \S+.* \S+/s$`)
	// A move's result line, scrolled above the live area.
	liveResultRe = regexp.MustCompile(`^mailferry: (user\d+@demo\.example): (done|failed)[:;]`)
)

// The demo in a pseudo-terminal of 160×50, its screen captured four times
// a second: during the drain the overall bar is on screen, at the bottom,
// in (nearly) every capture; each active move has one line, redrawn in
// place (never scrolled into the terminal's history); each mailbox's
// result is told once; the drain shows its story (a mailbox failing alone
// with its reason, late mail caught by a delta pass); and the live area is
// gone when the report is printed.
func TestLiveViewOnTerminal(t *testing.T) {
	bin := mailferryBinary(t)
	cmd := exec.Command(bin, "demo")
	cmd.Env = append(crashEnviron(), "TMPDIR="+t.TempDir(), "XDG_STATE_HOME="+t.TempDir(), "TERM=xterm")
	screen, captures, waitErr := runInPTY(t, cmd)
	all := strings.Join(screen.transcript(), "\n")
	if waitErr != nil {
		t.Fatalf("demo: %v\n%s", waitErr, all)
	}

	// The drain's captures: from the first phase line on screen to the
	// report.
	var during [][]string
	for _, c := range captures {
		text := strings.Join(c, "\n")
		if strings.Contains(text, "MESSAGES COPIED") {
			break
		}
		if len(during) > 0 || strings.Contains(text, "(bravo -> ") {
			during = append(during, c)
		}
	}
	if len(during) < 8 {
		t.Fatalf("only %d captures during the drain, want 8 or more: the test proves little\n%s", len(during), all)
	}
	withBar, withMoves := 0, 0
	for i, c := range during {
		last := lastLine(c)
		if liveBarRe.MatchString(last) {
			withBar++
		} else if i > 0 && i < len(during)-1 {
			t.Logf("capture %d of %d has no bar at the bottom; its last line: %q", i, len(during), last)
		}
		seen := map[string]bool{}
		moves := 0
		for _, l := range c {
			if liveBarRe.MatchString(l) && l != last {
				t.Errorf("capture %d shows the overall bar above its bottom line:\n%s", i, strings.Join(c, "\n"))
			}
			m := liveMoveRe.FindStringSubmatch(l)
			if m == nil {
				continue
			}
			moves++
			if seen[m[1]] {
				t.Errorf("capture %d shows %s's line twice:\n%s", i, m[1], strings.Join(c, "\n"))
			}
			seen[m[1]] = true
		}
		if moves > 1 {
			withMoves++
		}
	}
	// A capture may fall in the middle of a frame (the terminal takes it
	// in pieces), and the first and last between the view and the rest.
	if withBar*10 < len(during)*9 {
		t.Errorf("the overall bar is at the bottom of %d of %d captures during the drain, want 90%% of them or more", withBar, len(during))
	}
	if withMoves == 0 {
		t.Errorf("no capture shows more than one move's line")
	}

	// What stays: no move line (they were redrawn in place, then taken
	// away), no bar, one result per mailbox.
	results := map[string]int{}
	for _, l := range screen.transcript() {
		if liveMoveRe.MatchString(l) || liveBarRe.MatchString(l) {
			t.Errorf("the terminal kept a line of the live area: %q", l)
		}
		if m := liveResultRe.FindStringSubmatch(l); m != nil {
			results[m[1]]++
		}
		if strings.Contains(l, "(bravo -> ") && strings.HasSuffix(l, ": done") {
			t.Errorf("a move's done is told as a phase too: %q", l)
		}
	}
	if len(results) != 20 {
		t.Errorf("%d mailboxes have a result line, want 20:\n%s", len(results), all)
	}
	for mb, n := range results {
		if n != 1 {
			t.Errorf("%s's result is told %d times, want once", mb, n)
		}
	}
	for _, want := range []string{
		"failed alone, the others went on:", "OVERQUOTA",
		"caught by a delta pass", "throttle bravo: limit",
		"19 done, 1 failed", "the cutover hook routed 19 mailboxes",
		"mailferry status --state",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("the demo's screen lacks %q:\n%s", want, all)
		}
	}
}

func lastLine(lines []string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		if lines[i] != "" {
			return lines[i]
		}
	}
	return ""
}

// Ctrl-C or SIGTERM while the demo seeds stops it at once (exit 130),
// before anything is moved.
func TestDemoStopsWhileSeeding(t *testing.T) {
	bin := mailferryBinary(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			// About 200 MiB to seed: seconds of work.
			p := startBinary(t, bin, t.TempDir(), "demo", "--mailboxes", "12", "--folders", "5", "--messages", "20", "--max-size", "1MiB")
			deadline := time.Now().Add(time.Minute)
			for !strings.Contains(p.stdout.String(), "demo: seeding") {
				if p.exited() || time.Now().After(deadline) {
					t.Fatalf("the demo did not start seeding:\nstdout:\n%s\nstderr:\n%s", p.stdout.String(), p.stderr.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			time.Sleep(200 * time.Millisecond)
			if err := p.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			res := p.wait(t, 15*time.Second)
			if res.code != exitCanceled {
				t.Errorf("exit %d after %v, want %d\nstdout:\n%s\nstderr:\n%s", res.code, sig, exitCanceled, res.stdout, res.stderr)
			}
			if strings.Contains(res.stdout, "demo: seeded") || !strings.Contains(res.stderr, "seeding interrupted: nothing was moved") {
				t.Errorf("the demo did not stop while seeding:\nstdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
			}
		})
	}
}

// Sizes whose clusters cannot fit in the process's memory are refused
// before anything is seeded.
func TestDemoRefusesWhatDoesNotFit(t *testing.T) {
	code, stdout, stderr := runCLI(t, nil, "demo", "--mailboxes", "100000", "--messages", "400", "--max-size", "100MiB")
	if code != exitUsage || !strings.Contains(stderr, "held in this process's memory") || strings.Contains(stdout, "seeding") {
		t.Errorf("exit %d, want %d with the sizes refused\nstdout:\n%s\nstderr:\n%s", code, exitUsage, stdout, stderr)
	}
}

// On a resumed run, the moves done before are not this run's progress:
// not counted as finished, their bytes not in the work the ETA is made
// of; a move half copied before counts what it has left.
func TestApplyViewResumeCountsThisRunOnly(t *testing.T) {
	var out bytes.Buffer
	g := &globalOptions{stdout: io.Discard, stderr: &out}
	var moves []migrate.Move
	before := map[string]moveBefore{}
	for i, name := range []string{"a", "b", "c", "d"} {
		moves = append(moves, migrate.Move{Mailbox: name, From: "x", To: "y", Bytes: 1000})
		switch i {
		case 0, 1:
			before[name] = moveBefore{phase: migrate.PhaseDone, bytesDone: 1000, bytesTotal: 1000}
		case 2:
			before[name] = moveBefore{phase: migrate.PhaseCopying, bytesDone: 600, bytesTotal: 1000}
		}
	}
	lim, err := throttle.New("x", throttle.Config{})
	if err != nil {
		t.Fatal(err)
	}
	v := newApplyView(g, moves, 2, []*throttle.Limiter{lim}, before)
	defer v.done()
	for _, e := range []migrate.Event{
		{Kind: migrate.EventMoveDone, Mailbox: "a", Text: migrate.ResultSkipped, Reason: "already done"},
		{Kind: migrate.EventMoveDone, Mailbox: "b", Text: migrate.ResultSkipped, Reason: "already done"},
		{Kind: migrate.EventMovePhase, Mailbox: "c", Text: migrate.PhaseConverging},
		{Kind: migrate.EventBytes, Mailbox: "c", Bytes: 200},
		{Kind: migrate.EventMovePhase, Mailbox: "d", Text: migrate.PhaseCopying},
		{Kind: migrate.EventPlanned, Mailbox: "d", Bytes: 1500},
		{Kind: migrate.EventBytes, Mailbox: "d", Bytes: 300},
	} {
		v.event(e)
	}
	v.mu.Lock()
	status := v.statusText(time.Now())
	v.mu.Unlock()
	// c has 400 left, d 1500 (its listing): 1900 of this run's work.
	for _, want := range []string{"500 B of 1.86 KiB", "moves 0/2 finished, 2 active (2 done before this run)"} {
		if !strings.Contains(status, want) {
			t.Errorf("status %q lacks %q", status, want)
		}
	}
	v.event(migrate.Event{Kind: migrate.EventMoveDone, Mailbox: "c", Text: migrate.ResultDone})
	if !strings.Contains(out.String(), "mailferry: c: done; 0 messages (0 B) copied in ") || !strings.Contains(out.String(), "[1/2]") {
		t.Errorf("c's result line:\n%s", out.String())
	}
}

// The final table stays a table: a reason over several lines is one
// line, long reasons are cut (their full text is in the --report file), a
// stop reads as words, and the copied columns are what this run copied.
func TestApplyTableStaysATable(t *testing.T) {
	long := "append refused by the target: imap: NO [OVERQUOTA] " + strings.Repeat("quota exceeded ", 12)
	rep := &migrate.ApplyReport{Moves: []migrate.MoveResult{
		{Mailbox: "one", From: "a", To: "b", Result: migrate.ResultDone, Messages: 40, Copied: 3, Verified: 40},
		{Mailbox: "two", From: "a", To: "b", Result: migrate.ResultFailed, Reason: "login refused:\nNO [AUTHENTICATIONFAILED]\r\nInvalid credentials"},
		{Mailbox: "three", From: "a", To: "b", Phase: migrate.PhaseCopying, Result: migrate.ResultInterrupted, Reason: migrate.ErrInterrupted.Error()},
		{Mailbox: "four", From: "a", To: "b", Phase: migrate.PhaseConverging, Result: migrate.ResultInterrupted, Reason: "context canceled"},
		{Mailbox: "five", From: "a", To: "b", Result: migrate.ResultFailed, Reason: long},
	}}
	rep.Totals.Copied = 3
	copied := func(mb string) int64 {
		if mb == "one" {
			return 3 << 10
		}
		return 0
	}
	var out bytes.Buffer
	if err := renderApplyTable(&out, rep, copied, ""); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	lines := strings.Split(text, "\n")
	header := lines[0]
	col := strings.Index(header, "RESULT")
	for i, l := range lines[1 : len(rep.Moves)+2] {
		if len(l) < col || l[col-2:col] != "  " {
			t.Errorf("row %d breaks the columns:\n%s", i+1, text)
		}
	}
	for _, bad := range []string{"interrupted: interrupted", "context canceled", "\r"} {
		if strings.Contains(text, bad) {
			t.Errorf("the table says %q:\n%s", bad, text)
		}
	}
	for _, want := range []string{
		"MESSAGES COPIED", "BYTES COPIED", "3.00 KiB",
		"login refused: / NO [AUTHENTICATIONFAILED] / Invalid credentials",
		"interrupted: stopped by Ctrl-C/SIGTERM during copying (messages in flight finished); run again to resume",
		"stopped at once", "(reasons cut to 100 characters: --report FILE keeps them whole)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the table lacks %q:\n%s", want, text)
		}
	}
	if strings.Count(lines[5], "quota exceeded") >= 12 {
		t.Errorf("the long reason is not cut in the table:\n%s", lines[5])
	}
	out.Reset()
	if err := renderApplyTable(&out, rep, copied, "/tmp/report.json"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "/tmp/report.json has them whole") {
		t.Errorf("with --report the table points to it:\n%s", out.String())
	}
}

// mailferry migrate in a pseudo-terminal: one bar, redrawn in place at
// the bottom while the copy runs (bytes as they stream), gone when the
// report is printed.
func TestMigrateProgressOnTerminal(t *testing.T) {
	src, dst, _ := seededPair(t)
	bin := mailferryBinary(t)
	// A bytes/s limit makes the copy last a few seconds.
	cmd := exec.Command(bin, "migrate", "--from-tls", "none", "--to-tls", "none", "--max-bytes-per-second", "200KiB",
		"--from", "imap://alice@"+src.Addr, "--to", "imap://alice@"+dst.Addr)
	cmd.Env = append(crashEnviron(), "XDG_STATE_HOME="+t.TempDir(), "TERM=xterm",
		"MAILFERRY_FROM_PASSWORD=src-pw", "MAILFERRY_TO_PASSWORD=dst-pw")
	screen, captures, err := runInPTY(t, cmd)
	all := strings.Join(screen.transcript(), "\n")
	if err != nil {
		t.Fatalf("migrate: %v\n%s", err, all)
	}
	barRe := regexp.MustCompile(`^\[[-=>+]+\] +\d+%  copied \d+/\d+ messages, \S+ \S+ of \S+ \S+, \S+ \S+/s`)
	var during, withBar int
	for _, c := range captures {
		text := strings.Join(c, "\n")
		if strings.Contains(text, "verified") && strings.Contains(text, "copied") && !barRe.MatchString(lastLine(c)) {
			break // the report
		}
		if during == 0 && !barRe.MatchString(lastLine(c)) {
			continue // not started
		}
		during++
		if barRe.MatchString(lastLine(c)) {
			withBar++
		}
	}
	if during < 4 || withBar < during-1 {
		t.Errorf("the bar is at the bottom of %d of %d captures during the copy, want all (and 4 or more):\n%s", withBar, during, all)
	}
	for _, l := range screen.transcript() {
		if barRe.MatchString(l) {
			t.Errorf("the terminal kept the bar: %q", l)
		}
	}
}

// runInPTY runs cmd in a pseudo-terminal of 160×50 and captures its
// screen four times a second until it exits (2 minutes at most).
func runInPTY(t *testing.T, cmd *exec.Cmd) (*vtScreen, [][]string, error) {
	t.Helper()
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 50, Cols: 160})
	if err != nil {
		t.Fatalf("start %v in a pty: %v", cmd.Args, err)
	}
	defer tty.Close()
	screen := newVTScreen(160, 50)
	read := make(chan struct{})
	go func() {
		defer close(read)
		_, _ = io.Copy(screen, tty) // ends with EIO once the process is gone
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var captures [][]string
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	limit := time.After(2 * time.Minute)
	var waitErr error
wait:
	for {
		select {
		case <-tick.C:
			captures = append(captures, screen.capture())
		case waitErr = <-exited:
			break wait
		case <-limit:
			_ = cmd.Process.Kill()
			<-exited
			t.Fatalf("%v still runs after 2 minutes:\n%s", cmd.Args, strings.Join(screen.transcript(), "\n"))
		}
	}
	select {
	case <-read:
	case <-time.After(10 * time.Second):
		t.Fatal("the pty was not closed 10s after the process exited")
	}
	return screen, captures, waitErr
}

// The live view in-process, its stderr a pseudo-terminal: what the race
// detector sees of it (the other terminal tests run the built binary).
func TestLiveViewInProcess(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	if err := pty.Setsize(tty, &pty.Winsize{Rows: 50, Cols: 160}); err != nil {
		t.Fatal(err)
	}
	screen := newVTScreen(160, 50)
	read := make(chan struct{})
	go func() {
		defer close(read)
		_, _ = io.Copy(screen, ptmx)
	}()
	var stdout bytes.Buffer
	code := run(context.Background(), []string{"demo", "--mailboxes", "8", "--folders", "2", "--messages", "4", "--max-size", "64KiB", "--parallel", "2"},
		strings.NewReader(""), &stdout, tty)
	tty.Close()
	select {
	case <-read:
	case <-time.After(10 * time.Second):
		t.Fatal("the pty was not closed")
	}
	all := strings.Join(screen.transcript(), "\n")
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nterminal:\n%s", code, stdout.String(), all)
	}
	for _, l := range screen.transcript() {
		if liveMoveRe.MatchString(l) || liveBarRe.MatchString(l) {
			t.Errorf("the terminal kept a line of the live area: %q", l)
		}
	}
	if n := strings.Count(all, "@demo.example: done;"); n != 3 {
		t.Errorf("%d results done on the terminal, want 3:\n%s", n, all)
	}
}
