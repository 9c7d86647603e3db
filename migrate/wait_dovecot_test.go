package migrate_test

import (
	"context"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mailferry/internal/testrig/corpus"
	"mailferry/internal/testrig/dovecot"
	"mailferry/internal/testrig/faultproxy"
	"mailferry/migrate"
	"mailferry/state/statetest"
	"mailferry/throttle"
)

// A source that stalls in the middle of a FETCH response (bodies
// streaming) fails the folder with a timeout naming the source within the
// configured idle timeout (plus the folder's short retry), instead of
// hanging; once the stall ends, a rerun copies exactly what is missing.
func TestStallMidFetchTimesOutThenResumes(t *testing.T) {
	m := &corpus.Mailbox{Folders: []corpus.Folder{{Path: []string{"INBOX"}}}}
	for i := range 12 {
		m.Folders[0].Messages = append(m.Folders[0].Messages, corpus.Big(300<<10, uint64(i+1)))
	}
	r := newStateRig(t, statetest.SQLite(t), dovecot.Options{}, m)
	proxy := faultproxy.Start(t, r.src.Addr)
	proxy.SetBandwidth(2 << 20) // each body takes ~150ms: the stall lands inside one
	const idle = time.Second
	src := endpoint(t, "source", proxy.Addr, "alice", r.src.Users["alice"])
	src.IdleTimeout = idle
	dst := userCfg(t, "target", r.dst, "alice")
	dst.IdleTimeout = idle

	var copied atomic.Int32
	obs := migrate.ObserverFunc(func(e migrate.Event) {
		if e.Kind == migrate.EventMessageCopied && copied.Add(1) == 3 {
			proxy.Stall(true)
		}
	})
	start := time.Now()
	rep, err := migrate.Copy(context.Background(), src, dst, migrate.Options{
		State: r.lease, Observer: obs, Connections: 1, BatchMessages: 12, MailboxRetries: 1, Verify: migrate.VerifySize})
	took := time.Since(start)
	if err != nil {
		t.Fatalf("copy: %v", err)
	}
	if len(rep.Failures) == 0 {
		t.Fatalf("no failure after the stall (copied %d): the test proves nothing", rep.Copied)
	}
	reason := rep.Failures[0].Reason
	if !strings.Contains(reason, "source: 127.0.0.1:") || !strings.Contains(reason, "timed out after 1s without progress") {
		t.Errorf("failure does not say the source timed out: %q", reason)
	}
	// One timeout, a backoff, a reconnect that times out too: well under
	// 10 idle timeouts, where without deadlines of its own the copy hangs.
	if took > 10*idle {
		t.Errorf("the stalled copy took %s", took)
	}
	t.Logf("stalled copy ended after %s with %d copied: %s", took, rep.Copied, reason)

	proxy.Stall(false)
	proxy.SetBandwidth(0)
	again, err := migrate.Copy(context.Background(), src, dst, migrate.Options{State: r.lease})
	if err != nil || !again.OK() {
		t.Fatalf("rerun: %v %v", err, again.Failures)
	}
	exactCopy(t, r)
}

// exactCopy checks that the target holds the source's messages exactly.
func exactCopy(t *testing.T, r *stateRig) {
	t.Helper()
	if diff := corpus.Compare(corpus.TakeSnapshot(t, r.src.Addr, "alice", r.src.Users["alice"]),
		corpus.TakeSnapshot(t, r.dst.Addr, "alice", r.dst.Users["alice"]), nil); len(diff) > 0 {
		t.Errorf("target differs:\n%s", strings.Join(diff, "\n"))
	}
}

// A 5 MB message copied under a bytes/s limit, so that it takes several
// times the idle timeout, is not cut: the deadline follows progress, not
// the command. (The IMAP library's own 5-minute literal deadline is
// neutralised; internal/imapconn's TestLibraryDeadlinesNeutralised proves
// that none of its deadlines reaches the socket.)
func TestThrottledBigMessageNotCut(t *testing.T) {
	m := &corpus.Mailbox{Folders: []corpus.Folder{{Path: []string{"INBOX"}, Messages: []corpus.Message{corpus.Big(5<<20, 9)}}}}
	r := newStateRig(t, statetest.SQLite(t), dovecot.Options{}, m)
	lim := newLimiter(t, "source", throttle.Config{MaxConnections: 2, BytesPerSecond: 1 << 20})
	src := userCfg(t, "source", r.src, "alice")
	dst := userCfg(t, "target", r.dst, "alice")
	src.IdleTimeout, dst.IdleTimeout = time.Second, time.Second
	start := time.Now()
	rep, err := migrate.Copy(context.Background(), src, dst, migrate.Options{State: r.lease, Source: lim, MailboxRetries: 1})
	took := time.Since(start)
	if err != nil || !rep.OK() || rep.Copied != 1 {
		t.Fatalf("copy: %v, copied %d, failures %v", err, rep.Copied, rep.Failures)
	}
	if took < 3*time.Second {
		t.Fatalf("the copy took %s: the limit did not make it outlast the idle timeout", took)
	}
	t.Logf("5 MB at 1 MB/s took %s with a 1s idle timeout", took)
	exactCopy(t, r)
}

// The issue's own case, at full length: a 5.4 MB message under a 16 KiB/s
// limit takes about 340 s, longer than the IMAP library's 5-minute
// literal deadline that used to cut it every time. It is copied, and the
// idle timeout (30 s here) never fires while bytes move. It runs only
// with MAILFERRY_LONG_TESTS=1 (six minutes); TestThrottledBigMessageNotCut
// shows the same at 1 MB/s in every run.
func TestSlowLiteralOutlastsFiveMinutes(t *testing.T) {
	if os.Getenv("MAILFERRY_LONG_TESTS") != "1" {
		t.Skip("six minutes long: set MAILFERRY_LONG_TESTS=1 (TestThrottledBigMessageNotCut covers the mechanism in every run)")
	}
	size := int64(5400 << 10)
	m := &corpus.Mailbox{Folders: []corpus.Folder{{Path: []string{"INBOX"}, Messages: []corpus.Message{corpus.Big(size, 9)}}}}
	r := newStateRig(t, statetest.SQLite(t), dovecot.Options{}, m)
	lim := newLimiter(t, "source", throttle.Config{MaxConnections: 2, BytesPerSecond: 16 << 10})
	src := userCfg(t, "source", r.src, "alice")
	dst := userCfg(t, "target", r.dst, "alice")
	src.IdleTimeout, dst.IdleTimeout = 30*time.Second, 30*time.Second
	start := time.Now()
	rep, err := migrate.Copy(context.Background(), src, dst, migrate.Options{State: r.lease, Source: lim, MailboxRetries: 1})
	took := time.Since(start)
	if err != nil || !rep.OK() || rep.Copied != 1 {
		t.Fatalf("copy after %s: %v, copied %d, failures %v", took, err, rep.Copied, rep.Failures)
	}
	if took < 5*time.Minute {
		t.Fatalf("the copy took %s: it did not outlast the library's 5-minute literal deadline", took)
	}
	t.Logf("%d bytes at 16 KiB/s took %s with a 30s idle timeout", size, took)
	exactCopy(t, r)
}

// A source listing a folder in invalid modified UTF-7, and sending unknown
// untagged responses, loses only that folder: every other folder is
// copied exactly, and the bad one is reported failed with its raw name.
// (Dovecot escapes such names on disk as "&-Jjo", so a proxy adds them.)
func TestInvalidFolderNameFailsAlone(t *testing.T) {
	m := corpus.Generate(corpus.Options{Seed: 21, Folders: 4, MessagesPerFolder: 5, MaxSize: 32 << 10})
	r := newStateRig(t, statetest.SQLite(t), dovecot.Options{Separator: "."}, m)
	inj := faultproxy.StartInjector(t, r.src.Addr)
	inj.InjectAfter([]byte("Logged in"), []byte("* XSTRANGE 1 2\r\n"))
	inj.InjectAfter([]byte(`"." INBOX`), []byte("* LIST (\\HasNoChildren) \".\" \"&Jjo\"\r\n* BANANA\r\n* LIST (\\HasNoChildren) \".\" {5}\r\n&AGE-\r\n"))
	src := endpoint(t, "source", inj.Addr, "alice", r.src.Users["alice"])
	rep, err := migrate.Copy(context.Background(), src, userCfg(t, "target", r.dst, "alice"), migrate.Options{State: r.lease})
	if err != nil {
		t.Fatalf("copy: %v", err)
	}
	var bad []string
	for _, f := range rep.Failures {
		bad = append(bad, f.Folder)
		if want := "folder name \"" + f.Folder + "\" from the source is not valid modified UTF-7; skipped"; f.Reason != want {
			t.Errorf("failure %q: %q, want %q", f.Folder, f.Reason, want)
		}
	}
	if strings.Join(bad, " ") != "&AGE- &Jjo" {
		t.Errorf("failed folders %q, want the two bad names", bad)
	}
	if rep.Copied != m.TotalMessages() || rep.Failed != 2 {
		t.Errorf("copied %d of %d, failed %d", rep.Copied, m.TotalMessages(), rep.Failed)
	}
	exactCopy(t, r)
}
