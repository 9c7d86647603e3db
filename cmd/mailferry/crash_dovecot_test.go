package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mailferry/internal/testrig/corpus"
	"mailferry/internal/testrig/dovecot"
	"mailferry/internal/testrig/faultproxy"
	"mailferry/state/statetest"
)

// The crash-resume acceptance tests (issue 3): the real binary copies a
// mailbox between two Dovecot servers and is killed again and again while it
// copies, by SIGKILL at random moments, by its own failpoints inside a
// state commit, halfway through the APPEND of a large message and between
// an APPEND's answer and its record, or interrupted with SIGINT. Each time
// it is started again at once with the same arguments: no pause and no
// look at the servers in between, because a server may still commit the
// APPENDs of a killed client after the next run has begun, and that is the
// moment that must not make a duplicate. When it has finally finished, every folder of the target
// must hold exactly the source's messages (multiset of SHA-256, flags and
// internal dates: no duplicate, none missing), the source must be
// unchanged, and one more run must change nothing.
//
// Everything random derives from one seed, logged at the start; set
// MAILFERRY_CRASH_SEED to replay it.

// TestCrashResumeSIGKILL kills the copy 32 times, state in SQLite.
func TestCrashResumeSIGKILL(t *testing.T) {
	runCrashResume(t, func(t *testing.T) string { return statetest.SQLite(t) }, crashPlan{
		signal: syscall.SIGKILL, random: 20, stateCommit: 4, appendLiteral: 3, appendAnswered: 5,
	})
}

// TestCrashResumeSIGINT interrupts the copy gracefully: every interrupted
// run must stop on its own with exit 130 (or 0 if it had finished).
func TestCrashResumeSIGINT(t *testing.T) {
	runCrashResume(t, func(t *testing.T) string { return statetest.SQLite(t) }, crashPlan{
		signal: syscall.SIGINT, random: 10,
	})
}

// TestCrashResumePostgres is the SIGKILL test with the state on PostgreSQL.
func TestCrashResumePostgres(t *testing.T) {
	runCrashResume(t, func(t *testing.T) string { return statetest.Postgres(t) }, crashPlan{
		signal: syscall.SIGKILL, random: 20, stateCommit: 4, appendLiteral: 3, appendAnswered: 5,
	})
}

// crashPlan says how many interruptions of each kind must land.
type crashPlan struct {
	signal        syscall.Signal // sent at random moments: SIGKILL or SIGINT
	random        int            // landed random signals wanted
	stateCommit   int            // landed MAILFERRY_FAILPOINT=state-commit:K kills wanted
	appendLiteral int            // landed MAILFERRY_FAILPOINT=append-literal:1 kills wanted
	// landed MAILFERRY_FAILPOINT=append-answered:K kills wanted: the
	// process dies after the target answered an APPEND, before the copy
	// is recorded.
	appendAnswered int
}

// Kinds of interruption, as logged and counted.
const (
	killRandom        = "random"
	killStateCommit   = "state-commit"
	killAppendLiteral = "append-literal"
	killAppendAnswer  = "append-answered"
)

const (
	crashSeedEnv   = "MAILFERRY_CRASH_SEED"
	crashUser      = "alice"
	crashFolders   = 10 // built-in corpus folders: INBOX, special-use, UTF-8, nested
	crashMinDelay  = 30 * time.Millisecond
	crashRunLimit  = 3 * time.Minute // one run of the binary; longer is a hang
	crashMaxBigLen = 8 << 20
)

// crashRig is one crash-resume scenario: a source and a target Dovecot,
// the state URL, the binary, and the random stream that drives it all.
type crashRig struct {
	t        *testing.T
	bin      string
	work     string // working directory of the runs
	src, dst *dovecot.Server
	// late sits in front of the target and holds the client's bytes back
	// a little, and what a killed run had sent but the target had not yet
	// read up to 400 ms more: it reaches the target after the next run
	// started, and the APPENDs in it are committed late.
	late  *faultproxy.Late
	state string
	seed  uint64
	rng   *rand.Rand
	plan  crashPlan

	// written is everything the test appended to the source: the corpus
	// and each delivery. srcBase is the source after the corpus was
	// seeded. Together they prove that mailferry changed nothing there.
	written []*corpus.Mailbox
	srcBase *corpus.Snapshot

	hi        time.Duration // random delays are uniform in [crashMinDelay, hi)
	runs      int
	finished  int // runs that exited 0 before any interruption landed
	delivered int // deliveries of new mail into the source
	landed    map[string]int
	maxStop   time.Duration // SIGINT: longest time from signal to exit
}

func runCrashResume(t *testing.T, stateURL func(*testing.T) string, plan crashPlan) {
	dovecot.Require(t)
	state := stateURL(t) // may skip (PostgreSQL not configured)
	start := time.Now()

	seed := rand.Uint64()
	if s := os.Getenv(crashSeedEnv); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("%s=%q: %v", crashSeedEnv, s, err)
		}
	}
	t.Logf("seed %d (same corpus and draws: %s=%d), state %s", seed, crashSeedEnv, seed, state)

	r := &crashRig{
		t:      t,
		bin:    mailferryBinary(t),
		work:   t.TempDir(),
		src:    dovecot.Start(t, dovecot.Options{Name: "src", Separator: "."}),
		dst:    dovecot.Start(t, dovecot.Options{Name: "dst", Separator: "/"}),
		state:  state,
		seed:   seed,
		rng:    rand.New(rand.NewPCG(seed, 0x6372617368)), // "crash"
		plan:   plan,
		landed: map[string]int{},
	}
	r.late = faultproxy.StartLate(t, r.dst.Addr)

	// A few hundred messages in ten folders, the odd ones (duplicates and
	// identical twins among them) in INBOX, and three large messages in
	// three folders, so that kills land during a large APPEND.
	m := corpus.Generate(corpus.Options{Seed: seed, Folders: crashFolders, MessagesPerFolder: 24, MaxSize: 256 << 10, Odd: true})
	for i, key := range []string{"INBOX", "Archive", "日本語"} {
		f := m.Folder(key)
		if f == nil {
			t.Fatalf("corpus has no folder %q", key)
		}
		f.Messages = append(f.Messages, corpus.Big(4<<20+r.rng.Int64N(crashMaxBigLen-4<<20), seed+uint64(i)))
	}
	seedStart := time.Now()
	corpus.Seed(t, r.src.Addr, crashUser, r.src.Users[crashUser], m)
	seedTime := time.Since(seedStart)
	r.written = append(r.written, m)
	r.srcBase = corpus.TakeSnapshot(t, r.src.Addr, crashUser, r.src.Users[crashUser])
	t.Logf("source: %d messages, %.1f MiB in %d folders, seeded in %v",
		m.TotalMessages(), float64(m.TotalBytes())/(1<<20), len(m.Folders), seedTime.Round(time.Millisecond))

	// A first, low guess of how long the copy takes (a quarter of the
	// seeding time): landOne raises it a little with every kill that
	// lands and lowers it to the duration of a run that finished first.
	r.hi = max(seedTime/4, 10*crashMinDelay)

	var kinds []string
	for range plan.random {
		kinds = append(kinds, killRandom)
	}
	for range plan.stateCommit {
		kinds = append(kinds, killStateCommit)
	}
	for range plan.appendLiteral {
		kinds = append(kinds, killAppendLiteral)
	}
	for range plan.appendAnswered {
		kinds = append(kinds, killAppendAnswer)
	}
	r.rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	for _, kind := range kinds {
		r.landOne(kind)
	}

	r.finish()
	t.Logf("%d interruptions landed (%s) in %d runs, each restarted at once; %d runs finished first, %d deliveries of new mail; %s; total %v",
		crashTotal(r.landed), r.describeLanded(), r.runs, r.finished, r.delivered, r.stopSummary(), time.Since(start).Round(time.Millisecond))
}

func (r *crashRig) describeLanded() string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(r.landed)) {
		parts = append(parts, fmt.Sprintf("%d %s", r.landed[k], k))
	}
	return strings.Join(parts, ", ")
}

func (r *crashRig) stopSummary() string {
	if r.plan.signal != syscall.SIGINT {
		return "random signal SIGKILL"
	}
	return fmt.Sprintf("signal SIGINT, slowest stop %v", r.maxStop.Round(time.Millisecond))
}

func crashTotal(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// landOne runs the binary until one interruption of kind has landed. A run
// that finishes first (the kill came too late, or the failpoint was never
// reached) is followed by new mail in the source, so that the next run has
// work to be interrupted in: that exercises delta passes too.
func (r *crashRig) landOne(kind string) {
	t := r.t
	t.Helper()
	for attempt := 1; ; attempt++ {
		switch {
		case kind == killRandom && attempt > 8:
			t.Fatalf("seed %d: %d runs in a row finished before a random %s could land", r.seed, attempt-1, crashSignalName(r.plan.signal))
		case kind != killRandom && attempt > 3:
			// Each delivery brings a message over 1 MiB and new mail in
			// every folder, so the failpoint had occasions to fire.
			t.Fatalf("seed %d: %d runs in a row finished although MAILFERRY_FAILPOINT=%s was set, with new mail delivered before each: is the failpoint implemented?",
				r.seed, attempt-1, kind)
		}
		var env []string
		var delay time.Duration
		var sig syscall.Signal
		label := kind
		switch kind {
		case killRandom:
			sig = r.plan.signal
			delay = crashMinDelay + time.Duration(r.rng.Int64N(int64(r.hi-crashMinDelay)))
			label = fmt.Sprintf("%s after %v (of <%v)", crashSignalName(sig), delay.Round(time.Millisecond), r.hi.Round(time.Millisecond))
		case killStateCommit:
			k := 1 + r.rng.IntN(6)
			env = []string{fmt.Sprintf("MAILFERRY_FAILPOINT=%s:%d", killStateCommit, k)}
			label = env[0]
		case killAppendLiteral:
			env = []string{"MAILFERRY_FAILPOINT=" + killAppendLiteral + ":1"}
			label = env[0]
		case killAppendAnswer:
			env = []string{fmt.Sprintf("MAILFERRY_FAILPOINT=%s:%d", killAppendAnswer, 1+r.rng.IntN(40))}
			label = env[0]
		}
		// The next run starts the moment this one is dead.
		res := r.run(env, delay, sig)

		switch outcome := r.classify(res, kind, sig); outcome {
		case "landed":
			r.landed[kind]++
			if kind == killRandom {
				// Spread the kills over the whole copy, later and later.
				r.hi = min(r.hi*9/8, time.Minute)
			}
			extra := ""
			if sig == syscall.SIGINT {
				stop := res.elapsed - res.sentAt
				r.maxStop = max(r.maxStop, stop)
				extra = fmt.Sprintf(", stopped %v after the signal", stop.Round(time.Millisecond))
			}
			t.Logf("run %d: %s: landed after %v%s", r.runs, label, res.elapsed.Round(time.Millisecond), extra)
			return
		case "finished":
			r.finished++
			t.Logf("run %d: %s: finished first, exit 0 after %v", r.runs, label, res.elapsed.Round(time.Millisecond))
			if kind == killRandom {
				// The whole remaining copy took res.elapsed: aim below it
				// (but not lower than half the old aim: the run may have
				// had almost nothing left to do).
				r.hi = max(res.elapsed, r.hi/2, 4*crashMinDelay)
			}
			r.deliver()
		case "early":
			t.Logf("run %d: %s: died of SIGINT before its handler was installed (%v), not counted", r.runs, label, res.elapsed.Round(time.Millisecond))
		}
	}
}

// crashRun is the outcome of one run of the binary.
type crashRun struct {
	code           int            // exit code; -1 when a signal ended it
	signaled       syscall.Signal // the signal that ended it, if any
	sentAt         time.Duration  // when the test sent its signal; 0 if it did not
	elapsed        time.Duration
	stdout, stderr string
}

func (res crashRun) String() string {
	s := fmt.Sprintf("exit %d", res.code)
	if res.signaled != 0 {
		s = "killed by " + res.signaled.String()
	}
	return fmt.Sprintf("%s after %v\nstderr:\n%s\nstdout:\n%s", s, res.elapsed.Round(time.Millisecond), crashTail(res.stderr, 4000), crashTail(res.stdout, 2000))
}

func crashTail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// classify decides what a run's end means: "landed" (the interruption it
// was meant to get), "finished" (exit 0, nothing landed), or "early" (a
// SIGINT so early that it killed the process like SIGKILL would). Anything
// else fails the test.
func (r *crashRig) classify(res crashRun, kind string, sig syscall.Signal) string {
	t := r.t
	t.Helper()
	fail := func(why string) {
		t.Helper()
		hint := ""
		switch {
		case strings.Contains(res.stderr, "unknown flag"):
			hint = "\n(the CLI does not know a flag this test passes: is --state wired into migrate yet?)"
		case strings.Contains(res.stderr, "held by"):
			hint = "\n(the rerun was refused because the killed run's lease is still held: a rerun right after a crash must resume)"
		}
		t.Fatalf("seed %d, run %d (%s): %s: %s%s", r.seed, r.runs, kind, why, res, hint)
	}
	switch {
	case res.signaled == syscall.SIGKILL && kind == killRandom && sig == syscall.SIGKILL && res.sentAt > 0:
		return "landed"
	case res.signaled == syscall.SIGKILL && (kind == killStateCommit || kind == killAppendLiteral || kind == killAppendAnswer):
		return "landed" // the failpoint fired: the process killed itself
	case res.signaled == syscall.SIGINT && sig == syscall.SIGINT && res.sentAt > 0 && res.sentAt < 200*time.Millisecond:
		return "early"
	case res.code == exitCanceled && sig == syscall.SIGINT && res.sentAt > 0:
		return "landed"
	case res.code == exitOK:
		return "finished" // a signal sent now reached a process that had already finished
	case res.signaled != 0:
		fail("unexpected signal")
	case res.code == exitCanceled:
		fail("exit 130 without an interrupt")
	default:
		fail("unexpected exit status (want 0, or the interruption)")
	}
	return ""
}

// run starts the binary with the rig's arguments and the extra environment,
// sends sig after delay (none when delay is 0), and waits for it to end.
// Passwords go through the environment only.
func (r *crashRig) run(extraEnv []string, delay time.Duration, sig syscall.Signal) crashRun {
	t := r.t
	t.Helper()
	r.runs++
	r.late.SetDelay(time.Duration(r.rng.Int64N(int64(3 * time.Millisecond))))
	r.late.SetDeadDelay(time.Duration(r.rng.Int64N(int64(400 * time.Millisecond))))
	cmd := exec.Command(r.bin, "migrate", "--from-tls", "none", "--to-tls", "none",
		"--from", "imap://"+crashUser+"@"+r.src.Addr,
		"--to", "imap://"+crashUser+"@"+r.late.Addr,
		"--state", r.state, "--json",
		// The proxy delivers a dead run's bytes at most 400 ms late; the
		// default window would make each restart's folders wait 10 s.
		"--late-commit-window", "1s")
	cmd.Dir = r.work
	cmd.Env = append(crashEnviron(),
		"MAILFERRY_FROM_PASSWORD="+r.src.Users[crashUser],
		"MAILFERRY_TO_PASSWORD="+r.dst.Users[crashUser])
	cmd.Env = append(cmd.Env, extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", r.bin, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	var res crashRun
	var fire <-chan time.Time
	if delay > 0 {
		timer := time.NewTimer(delay)
		defer timer.Stop()
		fire = timer.C
	}
	hang := time.NewTimer(crashRunLimit)
	defer hang.Stop()
	var err error
wait:
	for {
		select {
		case err = <-done:
			break wait
		case <-fire:
			fire = nil
			// Signalling a process that has exited but is not reaped yet
			// does nothing; its exit status tells (see classify).
			if cmd.Process.Signal(sig) == nil {
				res.sentAt = time.Since(start)
			}
		case <-hang.C:
			_ = cmd.Process.Kill()
			<-done
			t.Fatalf("seed %d, run %d: still running after %v (env %q), killed\nstderr:\n%s", r.seed, r.runs, crashRunLimit, extraEnv, crashTail(stderr.String(), 4000))
		}
	}
	res.elapsed = time.Since(start)
	res.stdout, res.stderr = stdout.String(), stderr.String()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("wait for %s: %v", r.bin, err)
	}
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	res.code = ws.ExitStatus()
	if ws.Signaled() {
		res.code, res.signaled = -1, ws.Signal()
	}
	return res
}

// crashEnviron is the test's environment without any MAILFERRY_ variable,
// so that no password, failpoint or test setting leaks into a run.
func crashEnviron() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MAILFERRY_") {
			env = append(env, kv)
		}
	}
	return env
}

// deliver appends new mail to the source's folders, as a mail server
// would between two passes: a small generated corpus (same folders, other
// messages) and one message larger than 1 MiB (so that the append-literal
// failpoint always has something to fire in).
func (r *crashRig) deliver() {
	t := r.t
	t.Helper()
	r.delivered++
	s := r.seed + 1000*uint64(r.delivered)
	m := corpus.Generate(corpus.Options{Seed: s, Folders: crashFolders, MessagesPerFolder: 10, MaxSize: 192 << 10})
	folder := &m.Folders[r.rng.IntN(len(m.Folders))]
	folder.Messages = append(folder.Messages, corpus.Big(3<<19+r.rng.Int64N(3<<20), s))
	corpus.Seed(t, r.src.Addr, crashUser, r.src.Users[crashUser], m)
	r.written = append(r.written, m)
	t.Logf("delivered %d new messages (%.1f MiB) to the source, one of them large in %q",
		m.TotalMessages(), float64(m.TotalBytes())/(1<<20), folder.Key())
}

// expected is the source as the test wrote it: the corpus and every
// delivery, per folder, without UIDs.
func (r *crashRig) expected() *corpus.Snapshot {
	out := &corpus.Snapshot{Folders: map[string]*corpus.FolderSnap{}}
	for _, m := range r.written {
		for key, f := range corpus.Expect(m).Folders {
			if have := out.Folders[key]; have != nil {
				have.Messages = append(have.Messages, f.Messages...)
			} else {
				out.Folders[key] = f
			}
		}
	}
	return out
}

// finish runs the binary without interruption until it is done, checks the
// target against the source, then reruns it and checks that nothing changed.
func (r *crashRig) finish() {
	t := r.t
	t.Helper()
	// A late commit that lands after a run's last look is the next run's
	// to find; so the final run starts once the target has done what the
	// killed runs had sent (it closed their connections).
	if !r.late.Drain(10 * time.Second) {
		t.Fatalf("seed %d: the target still reads a killed run's connection after 10 s", r.seed)
	}
	res := r.run(nil, 0, 0)
	if res.code != exitOK || res.signaled != 0 {
		t.Fatalf("seed %d: the uninterrupted final run (run %d) did not finish: %s", r.seed, r.runs, res)
	}
	t.Logf("run %d: uninterrupted, exit 0 after %v", r.runs, res.elapsed.Round(time.Millisecond))

	pw := r.src.Users[crashUser]
	srcSnap := corpus.TakeSnapshot(t, r.src.Addr, crashUser, pw)
	dstSnap := corpus.TakeSnapshot(t, r.dst.Addr, crashUser, r.dst.Users[crashUser])
	r.assertSame(srcSnap, dstSnap, "after the final run")
	// The source holds what the test wrote, with the flags it wrote, and
	// the messages of the first corpus kept their UIDs and flags.
	d := corpus.Compare(r.expected(), srcSnap, nil)
	for _, l := range corpus.CompareFlags(r.srcBase, srcSnap) {
		if !crashDeliveredLine.MatchString(l) {
			d = append(d, l)
		}
	}
	if len(d) > 0 {
		t.Errorf("seed %d: the source changed (%d differences):\n%s", r.seed, len(d), crashLines(d, 40))
	}

	// A finished migration rerun is a no-op.
	res = r.run(nil, 0, 0)
	if res.code != exitOK || res.signaled != 0 {
		t.Fatalf("seed %d: rerun of the finished migration (run %d): %s", r.seed, r.runs, res)
	}
	t.Logf("run %d: rerun of the finished migration, exit 0 after %v", r.runs, res.elapsed.Round(time.Millisecond))
	var rep map[string]any
	if err := json.Unmarshal([]byte(res.stdout), &rep); err == nil {
		if n, ok := rep["copied"].(float64); ok && n != 0 {
			t.Errorf("seed %d: rerun of the finished migration reports copied %v, want 0", r.seed, n)
		}
	}
	dstAgain := corpus.TakeSnapshot(t, r.dst.Addr, crashUser, r.dst.Users[crashUser])
	if d := corpus.CompareFlags(dstSnap, dstAgain); len(d) > 0 {
		t.Errorf("seed %d: the rerun of a finished migration changed the target (%d differences):\n%s", r.seed, len(d), crashLines(d, 40))
	}
	srcAgain := corpus.TakeSnapshot(t, r.src.Addr, crashUser, pw)
	if d := corpus.CompareFlags(srcSnap, srcAgain); len(d) > 0 {
		t.Errorf("seed %d: the rerun of a finished migration changed the source (%d differences):\n%s", r.seed, len(d), crashLines(d, 40))
	}
}

// assertSame checks per folder that the target holds the source's
// multiset of SHA-256 (naming every duplicate and every missing message),
// then that flags, dates and subscriptions match (corpus.Compare).
func (r *crashRig) assertSame(src, dst *corpus.Snapshot, when string) {
	t := r.t
	t.Helper()
	type content struct {
		sha  string
		size int64
	}
	var dups, missing []string
	ndup, nmiss, total := 0, 0, 0
	for _, key := range slices.Sorted(maps.Keys(src.Folders)) {
		counts := map[content][2]int{}
		for _, m := range src.Folders[key].Messages {
			c := counts[content{m.SHA256, m.Size}]
			c[0]++
			counts[content{m.SHA256, m.Size}] = c
			total++
		}
		if df := dst.Folders[key]; df != nil {
			for _, m := range df.Messages {
				c := counts[content{m.SHA256, m.Size}]
				c[1]++
				counts[content{m.SHA256, m.Size}] = c
			}
		}
		for k, c := range counts {
			line := fmt.Sprintf("folder %q: sha256 %.16s size %d: %d on source, %d on target", key, k.sha, k.size, c[0], c[1])
			switch {
			case c[1] > c[0]:
				ndup += c[1] - c[0]
				dups = append(dups, line)
			case c[1] < c[0]:
				nmiss += c[0] - c[1]
				missing = append(missing, line)
			}
		}
	}
	slices.Sort(dups)
	slices.Sort(missing)
	t.Logf("%s: source %d messages in %d folders; target has %d duplicates, %d missing", when, total, len(src.Folders), ndup, nmiss)
	if ndup > 0 {
		t.Errorf("seed %d: %s: %d duplicate messages on the target:\n%s", r.seed, when, ndup, crashLines(dups, 40))
	}
	if nmiss > 0 {
		t.Errorf("seed %d: %s: %d messages missing on the target:\n%s", r.seed, when, nmiss, crashLines(missing, 40))
	}
	if d := corpus.Compare(src, dst, nil); len(d) > 0 {
		t.Errorf("seed %d: %s: target differs from source in %d ways (content, flags, dates, folders, subscriptions):\n%s", r.seed, when, len(d), crashLines(d, 60))
	}
}

// crashDeliveredLine matches CompareFlags' line for a message that the test
// delivered after its baseline snapshot.
var crashDeliveredLine = regexp.MustCompile(`: uid [0-9]+ appeared$`)

func crashSignalName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGKILL:
		return "SIGKILL"
	case syscall.SIGINT:
		return "SIGINT"
	}
	return sig.String()
}

func crashLines(l []string, n int) string {
	if len(l) > n {
		return strings.Join(l[:n], "\n") + fmt.Sprintf("\n... and %d more", len(l)-n)
	}
	return strings.Join(l, "\n")
}

// crashBinary is the mailferry binary the crash tests run, built once and
// shared while any test uses it; the last user's cleanup removes it.
var crashBinary struct {
	mu    sync.Mutex
	users int
	dir   string
	path  string
}

// mailferryBinary builds cmd/mailferry (the real binary: kill tests need a
// process of their own) and returns its path.
func mailferryBinary(t *testing.T) string {
	t.Helper()
	b := &crashBinary
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.users == 0 {
		dir, err := os.MkdirTemp("", "mailferry-crash-*")
		if err != nil {
			t.Fatal(err)
		}
		gobin, err := exec.LookPath("go")
		if err != nil {
			os.RemoveAll(dir)
			t.Fatalf("build mailferry: %v", err)
		}
		path := filepath.Join(dir, "mailferry")
		out, err := exec.Command(gobin, "build", "-o", path, "mailferry/cmd/mailferry").CombinedOutput()
		if err != nil {
			os.RemoveAll(dir)
			t.Fatalf("build mailferry: %v\n%s", err, out)
		}
		b.dir, b.path = dir, path
	}
	b.users++
	t.Cleanup(func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.users--; b.users == 0 {
			os.RemoveAll(b.dir)
		}
	})
	return b.path
}
