package migrate_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"mailferry/internal/testrig/corpus"
	"mailferry/internal/testrig/dovecot"
	"mailferry/internal/testrig/faultproxy"
	"mailferry/migrate"
	"mailferry/throttle"
)

// busyText is a busy reply without a response code, as some servers send
// it: only its text says to wait.
const busyText = "NO Server busy, try again in 1 seconds"

// A code-less busy NO (no [UNAVAILABLE], only "try again in 1 seconds"
// in the text) to a source body FETCH, a source EXAMINE, a target APPEND
// or a target SELECT is waited for — the server's second, with jitter —
// and retried, never a failed message: the copy ends exact with nothing
// failed, and the waits are counted on the limiter of the side that sent
// the replies, never on the other.
func TestCodelessBusyRepliesAreWaitedFor(t *testing.T) {
	dovecot.Require(t)
	const replies = 3
	for _, tc := range []struct {
		name    string
		side    string // where the proxy sits
		pattern string // the commands it answers itself
		// perReply: every reply fails one folder attempt, so each is one
		// backoff; APPENDs pipelined in one batch may share a backoff.
		perReply bool
	}{
		{"source body FETCH", "source", "BODY.PEEK[]", true},
		{"source EXAMINE", "source", "EXAMINE", true},
		{"target APPEND", "target", "APPEND", false},
		{"target SELECT", "target", "SELECT", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := dovecot.Start(t, dovecot.Options{Name: "src"})
			dst := dovecot.Start(t, dovecot.Options{Name: "dst", Separator: "/"})
			// Sizes from 1 KiB to 64 KiB: APPENDs with LITERAL+ literals
			// (swallowed by the proxy, refused after) and synchronizing
			// ones (refused before the literal).
			m := corpus.Generate(corpus.Options{Seed: 71, Folders: 4, MessagesPerFolder: 12, MaxSize: 64 << 10})
			corpus.Seed(t, src.Addr, "alice", src.Users["alice"], m)
			before := corpus.TakeSnapshot(t, src.Addr, "alice", src.Users["alice"])

			srcCfg, dstCfg := userCfg(t, "source", src, "alice"), userCfg(t, "target", dst, "alice")
			var proxy *faultproxy.Proxy
			if tc.side == "source" {
				proxy = faultproxy.Start(t, src.Addr)
				srcCfg = endpoint(t, "source", proxy.Addr, "alice", src.Users["alice"])
			} else {
				proxy = faultproxy.Start(t, dst.Addr)
				dstCfg = endpoint(t, "target", proxy.Addr, "alice", dst.Users["alice"])
			}
			proxy.ReplyText([]byte(tc.pattern), replies, busyText)
			srcLim := newLimiter(t, "source", throttle.Config{MaxConnections: 4})
			dstLim := newLimiter(t, "target", throttle.Config{MaxConnections: 4})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			rep, err := migrate.Copy(ctx, srcCfg, dstCfg, migrate.Options{Source: srcLim, Target: dstLim, Connections: 4, BatchMessages: 8})
			took := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			if n := proxy.Unavailable(); n != replies {
				t.Fatalf("the proxy answered %d %s commands, want %d: the test proves nothing", n, tc.pattern, replies)
			}
			if rep.Failed != 0 || rep.Verified != m.TotalMessages() {
				t.Errorf("verified %d of %d, failed %d: %v", rep.Verified, m.TotalMessages(), rep.Failed, rep.Failures)
			}

			busy, calm := rep.Throttle[0], rep.Throttle[1]
			if tc.side == "target" {
				busy, calm = calm, busy
			}
			t.Logf("%s: copy took %v; %s limiter: %d backoffs for %v, last signal %v, %d distress; %s limiter: %d backoffs, %d distress",
				tc.name, took.Round(time.Millisecond), busy.Name, busy.Backoffs, busy.BackoffTime, busy.LastSignal, busy.Distress,
				calm.Name, calm.Backoffs, calm.Distress)
			if busy.Name != tc.side {
				t.Fatalf("limiter %q in the report where %q was expected", busy.Name, tc.side)
			}
			if busy.Backoffs == 0 || (tc.perReply && busy.Backoffs < replies) {
				t.Errorf("%s limiter backed off %d times for %d busy replies", tc.side, busy.Backoffs, replies)
			}
			// Each backoff waited at least the second the reply asked for.
			if busy.BackoffTime < time.Duration(busy.Backoffs)*time.Second {
				t.Errorf("%s limiter: %d backoffs for %v; the server's 1 s was not honoured", tc.side, busy.Backoffs, busy.BackoffTime)
			}
			if busy.LastSignal != throttle.SignalTryLater {
				t.Errorf("%s limiter's last signal %v, want %v", tc.side, busy.LastSignal, throttle.SignalTryLater)
			}
			if busy.Distress == 0 {
				t.Errorf("%s limiter counted no overload signal for %d busy replies", tc.side, replies)
			}
			if calm.Backoffs != 0 || calm.Distress != 0 {
				t.Errorf("%s limiter: %d backoffs (last signal %v), %d distress; only the %s was busy",
					calm.Name, calm.Backoffs, calm.LastSignal, calm.Distress, tc.side)
			}
			if diff := corpus.CompareFlags(before, corpus.TakeSnapshot(t, src.Addr, "alice", src.Users["alice"])); len(diff) > 0 {
				t.Errorf("retries changed the source:\n%s", strings.Join(diff, "\n"))
			}
			if diff := corpus.Compare(before, corpus.TakeSnapshot(t, dst.Addr, "alice", dst.Users["alice"]), nil); len(diff) > 0 {
				t.Errorf("target differs from source:\n%s", strings.Join(diff, "\n"))
			}
		})
	}
}
