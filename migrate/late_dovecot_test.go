package migrate_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"mailferry/internal/testrig/corpus"
	"mailferry/internal/testrig/dovecot"
	"mailferry/internal/testrig/faultproxy"
	"mailferry/migrate"
	"mailferry/state"
	"mailferry/state/statetest"
	"mailferry/throttle"
)

// Exactly once against a target that commits APPENDs after their client
// is gone. The faults come from faultproxy.Late in front of the target.

// lateRig is a source and target Dovecot, the target behind a Late proxy,
// and a state the runs share.
type lateRig struct {
	stateRig
	proxy *faultproxy.Late
}

func newLateRig(t *testing.T, url string, m *corpus.Mailbox) *lateRig {
	r := &lateRig{stateRig: *newStateRig(t, url, dovecot.Options{}, m)}
	r.proxy = faultproxy.StartLate(t, r.dst.Addr)
	return r
}

// run copies once through the proxy; it returns the report and error as
// they are, since faulty runs may fail.
func (r *lateRig) run(ctx context.Context, opts migrate.Options) (*migrate.Report, error) {
	r.t.Helper()
	opts.State = r.lease
	dstCfg := endpoint(r.t, "target", r.proxy.Addr, "alice", r.dst.Users["alice"])
	return migrate.Copy(ctx, userCfg(r.t, "source", r.src, "alice"), dstCfg, opts)
}

// smallMessages is a mailbox of small messages only (up to 4 KiB, so
// every APPEND literal is non-synchronizing and pipelines whole), with
// twins and duplicates among them.
func smallMessages(seed uint64, perFolder int) *corpus.Mailbox {
	return corpus.Generate(corpus.Options{Seed: seed, Folders: 3, MessagesPerFolder: perFolder, MaxSize: 4 << 10, Odd: true})
}

// TestLateCommitAfterTheNextScan is the deterministic late commit: the
// first run's connection dies with complete APPENDs that the proxy holds
// back from the server; they reach it only once the next run has looked at
// the target (its first FETCH answered). The server then stores copies
// nobody asked for any more. They must end up neither duplicated nor
// missing, and be removed as duplicates, never left or adopted twice.
func TestLateCommitAfterTheNextScan(t *testing.T) {
	for _, mode := range appendModes {
		t.Run(mode.name, func(t *testing.T) {
			statetest.EachDriver(t, func(t *testing.T, url string) {
				testLateCommitAfterTheNextScan(t, url, mode.opts, mode.per)
			})
		})
	}
}

// appendModes are the target's two APPEND paths: pipelined single APPENDs,
// and MULTIAPPEND batches (Dovecot offers it); per is the messages in one
// APPEND command.
var appendModes = []struct {
	name string
	opts migrate.Options
	per  int
}{
	{"single", migrate.Options{NoMultiAppend: true, Connections: 1, LateCommitWindow: 2 * time.Second}, 1},
	{"multiappend", migrate.Options{BatchMessages: 8, Connections: 1, LateCommitWindow: 2 * time.Second}, 8},
}

func testLateCommitAfterTheNextScan(t *testing.T, url string, opts migrate.Options, per int) {
	m := smallMessages(71, 120)
	r := newLateRig(t, url, m)
	r.proxy.HoldAfter(40 / per)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = r.run(ctx, opts)
	}()
	// The client pipelines (or waits for its one MULTIAPPEND): once it
	// waits for answers the proxy holds, it is stuck; that is the crash.
	want := max(8/per, 1)
	waitUntil(t, 20*time.Second, "APPENDs held back", func() bool { return r.proxy.HeldSoFar() >= want })
	cancel()
	<-done
	waitUntil(t, 10*time.Second, "the dead link parked", func() bool { return r.proxy.Held() >= want })
	held := r.proxy.Held()

	r.proxy.HoldAfter(0)
	r.proxy.ReleaseAfterScan()
	second, err := r.run(context.Background(), opts)
	if err != nil || second.Failed != 0 {
		t.Fatalf("second run: %v, %d failed: %v", err, failed(second), failures(second))
	}
	if got := r.proxy.Released(); got != held {
		t.Fatalf("the proxy released %d held APPENDs, want %d (was the next run's scan seen?)", got, held)
	}
	// The second run reported success: the target is exact already, and
	// a third run finds nothing to do.
	r.exact()
	third, err := r.run(context.Background(), opts)
	if err != nil || third.Failed != 0 {
		t.Fatalf("third run: %v, %d failed: %v", err, failed(third), failures(third))
	}
	r.exact()
	removed := second.DuplicatesRemoved
	t.Logf("held %d APPEND commands (%d messages each); second run: adopted %d, copied %d, removed %d; third: removed %d, copied %d",
		held, per, second.Adopted, second.Copied, second.DuplicatesRemoved, third.DuplicatesRemoved, third.Copied)
	// Every held APPEND landed late; so may a few the server had read
	// but not answered when the client died (at most a pipeline's worth).
	if removed < held*per || removed > held*per+32 {
		t.Errorf("removed %d duplicates, want the %d held late commits (and at most 32 more)", removed, held*per)
	}
	if second.TargetOnly+third.TargetOnly != 0 {
		t.Errorf("%d late copies were taken for the target's own mail", second.TargetOnly+third.TargetOnly)
	}
	if third.Copied+third.DuplicatesRemoved+third.Adopted != 0 {
		t.Errorf("third run changed something: copied %d, removed %d, adopted %d", third.Copied, third.DuplicatesRemoved, third.Adopted)
	}
}

// TestTargetDropsSwept drops the target connection after N commands, for
// 20 values of N, with APPENDs in flight whose bytes the server still
// gets, and once says BYE halfway through a literal. A run either fails
// naming what it did not verify, or succeeds, and then the target equals
// the source exactly, with no further run. Each N copies into a target
// account of its own, from nothing.
func TestTargetDropsSwept(t *testing.T) {
	dovecot.Require(t)
	for _, mode := range appendModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel() // most of it is waiting for late commits
			testTargetDropsSwept(t, mode.opts)
		})
	}
}

func testTargetDropsSwept(t *testing.T, mode migrate.Options) {
	ns := []int{7, 9, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 83, 97}
	users := map[string]string{"alice": "alice-pw"}
	for i := range ns {
		users[fmt.Sprintf("round%02d", i)] = "round-pw"
	}
	src := dovecot.Start(t, dovecot.Options{Name: "src"})
	dst := dovecot.Start(t, dovecot.Options{Name: "dst", Separator: "/", Users: users})
	m := smallMessages(72, 60)
	m.Folders[0].Messages = append(m.Folders[0].Messages, corpus.Big(3<<20, 72)) // a literal to cut
	corpus.Seed(t, src.Addr, "alice", src.Users["alice"], m)
	want := corpus.TakeSnapshot(t, src.Addr, "alice", src.Users["alice"])
	proxy := faultproxy.StartLate(t, dst.Addr)
	proxy.SetDelay(2 * time.Millisecond)
	// What a dropped connection had sent reaches the server 150 ms late:
	// after the reconnect has looked.
	proxy.SetDeadDelay(150 * time.Millisecond)
	ctx := context.Background()
	dropped := 0
	for i, n := range ns {
		user := fmt.Sprintf("round%02d", i)
		st, err := state.Open(ctx, statetest.SQLite(t))
		must(t, err)
		lease, err := st.Acquire(ctx, state.Key{Source: "src", Target: user}, "test", time.Hour)
		must(t, err)
		run := func() (*migrate.Report, error) {
			return migrate.Copy(ctx, userCfg(t, "source", src, "alice"),
				endpoint(t, "target", proxy.Addr, user, "round-pw"),
				migrate.Options{State: lease, Connections: 2, LateCommitWindow: 5 * time.Second,
					NoMultiAppend: mode.NoMultiAppend, BatchMessages: mode.BatchMessages})
		}
		proxy.DropAfter(n)
		if i == 3 {
			proxy.ByeMidLiteral(1)
		}
		before := proxy.Drops()
		var rep *migrate.Report
		for attempt := 0; attempt < 40; attempt++ {
			rep, err = run()
			if err == nil && rep.Failed == 0 {
				break
			}
			// A run that did not finish must say what it left unverified.
			if err == nil && len(rep.Failures) == 0 {
				t.Fatalf("N=%d: a run with %d failed lists no failure", n, rep.Failed)
			}
		}
		if err != nil || rep.Failed != 0 {
			t.Fatalf("N=%d: no clean run in 40: %v %v", n, err, failures(rep))
		}
		dropped += proxy.Drops() - before
		proxy.DropAfter(0)
		proxy.ByeMidLiteral(0)
		// A run that reports success is exact: once the server has done
		// what the dropped connections had sent, the target equals the
		// source with no further run (the pass waited for its lost
		// APPENDs, and a run after a failed one for the failed one's).
		if !proxy.Drain(10 * time.Second) {
			t.Fatalf("N=%d: the server still reads a dropped connection", n)
		}
		got := corpus.TakeSnapshot(t, dst.Addr, user, "round-pw")
		if diff := corpus.Compare(want, got, nil); len(diff) > 0 {
			t.Fatalf("N=%d: a run reported success, and the target differs from the source:\n%s", n, strings.Join(diff, "\n"))
		}
		if rep, err = run(); err != nil || rep.Copied+rep.DuplicatesRemoved+rep.Adopted != 0 {
			t.Fatalf("N=%d: a rerun changed something: %v; %s", n, err, failures(rep))
		}
		st.Close()
	}
	if dropped < len(ns) {
		t.Errorf("only %d connections were dropped", dropped)
	}
	t.Logf("%d connections dropped", dropped)
}

// A source that reports a wrong RFC822.SIZE (a few bytes off) plus a crash
// mid-copy: the resume matches the dead run's copies by their bytes, not
// their size, and appends none twice.
func TestLyingSizeAndCrash(t *testing.T) {
	for _, mode := range appendModes {
		t.Run(mode.name, func(t *testing.T) { testLyingSizeAndCrash(t, mode.opts, mode.per) })
	}
}

func testLyingSizeAndCrash(t *testing.T, opts migrate.Options, per int) {
	m := smallMessages(73, 100)
	r := newLateRig(t, statetest.SQLite(t), m)
	src := faultproxy.StartLate(t, r.src.Addr)
	src.LieSize(3)
	runSrc := func(ctx context.Context) (*migrate.Report, error) {
		srcCfg := endpoint(t, "source", src.Addr, "alice", r.src.Users["alice"])
		dstCfg := endpoint(t, "target", r.proxy.Addr, "alice", r.dst.Users["alice"])
		o := opts
		o.State = r.lease
		return migrate.Copy(ctx, srcCfg, dstCfg, o)
	}
	r.proxy.HoldAfter(32 / per)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _, _ = runSrc(ctx) }()
	want := max(4/per, 1)
	waitUntil(t, 20*time.Second, "APPENDs held back", func() bool { return r.proxy.HeldSoFar() >= want })
	cancel()
	<-done
	// The held APPENDs reach the server before the resume this time, so
	// the resume finds them as strangers of a size the source misreports
	// (and the server may still be committing the dead run's others).
	waitUntil(t, 10*time.Second, "the dead link parked", func() bool { return r.proxy.Held() >= want })
	r.proxy.HoldAfter(0)
	r.proxy.Release()
	rep, err := runSrc(context.Background())
	if err != nil || rep.Failed != 0 {
		t.Fatalf("resume: %v %v", err, failures(rep))
	}
	again, err := runSrc(context.Background())
	if err != nil || again.Failed != 0 {
		t.Fatalf("rerun: %v %v", err, failures(again))
	}
	r.exact()
	// Every copy the dead run made is known for ours by its bytes:
	// adopted, or removed once a second copy existed; none is taken for
	// the target's own mail.
	ours := rep.Adopted + rep.DuplicatesRemoved + again.DuplicatesRemoved
	dead := per * r.proxy.Released() // held, then stored
	if per == 1 {
		// Single APPENDs answered before the crash: recorded only with
		// their batch (256), so found by the resume too.
		dead += 32
	}
	if ours < dead {
		t.Errorf("recognised %d of the dead run's %d+ copies (adopted %d, removed %d+%d)",
			ours, dead, rep.Adopted, rep.DuplicatesRemoved, again.DuplicatesRemoved)
	}
	if n := rep.TargetOnly + again.TargetOnly; n != 0 {
		t.Errorf("%d of the dead run's copies were taken for the target's own", n)
	}
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func failed(r *migrate.Report) int {
	if r == nil {
		return -1
	}
	return r.Failed
}

func failures(r *migrate.Report) string {
	if r == nil {
		return "no report"
	}
	var s []string
	for _, f := range r.Failures {
		s = append(s, fmt.Sprintf("%s uid %d: %s", f.Folder, f.UID, f.Reason))
	}
	return strings.Join(s, "; ")
}

// Every command that reaches a server, counted at a proxy in front of it,
// went through that cluster's limiter (counted by the limiter), over a
// first copy and a delta pass with new mail, a flag change, a deleted
// message and a renamed folder. Only the connection's own STARTTLS, LOGIN
// and LOGOUT are outside: the connection cap governs those.
func TestEveryCommandRunsUnderItsLimiter(t *testing.T) {
	m := corpus.Generate(corpus.Options{Seed: 74, Folders: 8, MessagesPerFolder: 12, MaxSize: 64 << 10})
	r := newStateRig(t, statetest.SQLite(t), dovecot.Options{}, m)
	srcProxy := faultproxy.StartLate(t, r.src.Addr)
	dstProxy := faultproxy.StartLate(t, r.dst.Addr)
	pass := func() *migrate.Report {
		t.Helper()
		srcLim, err := throttle.New("src", throttle.Config{MaxConnections: 4})
		must(t, err)
		dstLim, err := throttle.New("dst", throttle.Config{MaxConnections: 4})
		must(t, err)
		before := [2]map[string]int{srcProxy.CommandsByName(), dstProxy.CommandsByName()}
		rep, err := migrate.Copy(context.Background(),
			endpoint(t, "source", srcProxy.Addr, "alice", r.src.Users["alice"]),
			endpoint(t, "target", dstProxy.Addr, "alice", r.dst.Users["alice"]),
			migrate.Options{State: r.lease, Source: srcLim, Target: dstLim})
		if err != nil || rep.Failed != 0 {
			t.Fatalf("copy: %v %v", err, failures(rep))
		}
		for i, p := range []*faultproxy.Late{srcProxy, dstProxy} {
			lim := []*throttle.Limiter{srcLim, dstLim}[i]
			reached, names := 0, map[string]int{}
			for name, n := range p.CommandsByName() {
				n -= before[i][name]
				if n == 0 || name == "LOGIN" || name == "LOGOUT" || name == "AUTHENTICATE" || name == "STARTTLS" {
					continue
				}
				reached += n
				names[name] = n
			}
			if sent := lim.Snapshot().Sent; int64(reached) != sent {
				t.Errorf("%s: %d commands reached the server (%v), its limiter counted %d", lim.Name(), reached, names, sent)
			}
		}
		return rep
	}
	pass()
	// Changes on the source for a delta pass: new mail, a flag, an
	// expunge, a rename.
	more := smallMessages(75, 5)
	corpus.Seed(t, r.src.Addr, "alice", r.src.Users["alice"], more)
	f := plainFolder(t, m)
	on(t, r.src, func(c *imapclient.Client) {
		name := strings.Join(f.Path, ".")
		_, err := c.Select(name, nil).Wait()
		must(t, err)
		must(t, c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{"$Delta"}}, nil).Close())
		must(t, c.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close())
		must(t, c.Expunge().Close())
		_ = c.Unselect().Wait()
		must(t, c.Rename(name, name+" renamed", nil).Wait())
	})
	rep := pass()
	if rep.Copied == 0 || rep.FlagsUpdated == 0 || rep.Expunged == 0 {
		t.Errorf("delta pass: copied %d, flags %d, expunged %d; want all > 0", rep.Copied, rep.FlagsUpdated, rep.Expunged)
	}
	r.exact()
}
