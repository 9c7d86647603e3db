package migrate_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"mailferry/internal/imapconn"
	"mailferry/internal/testrig/corpus"
	"mailferry/internal/testrig/dovecot"
	"mailferry/internal/testrig/faultproxy"
	"mailferry/migrate"
)

// The target's APPEND paths, each against a Dovecot that offers what the
// path needs and no more: MULTIAPPEND with LITERAL+ (Dovecot's default),
// MULTIAPPEND with synchronising literals only, and no MULTIAPPEND at all
// (one pipelined APPEND per message). Each copy is exact, and the
// commands that reached the server say which path ran.
func TestAppendPaths(t *testing.T) {
	dovecot.Require(t)
	const base = "IMAP4rev1 SASL-IR ID ENABLE IDLE SPECIAL-USE NAMESPACE LIST-EXTENDED LIST-STATUS STATUS=SIZE UIDPLUS CONDSTORE ESEARCH"
	for _, tc := range []struct {
		name  string
		caps  string // "" : Dovecot's own
		multi bool
		plus  bool
	}{
		{"multiappend", "", true, true},
		{"multiappend-sync-literals", base + " MULTIAPPEND", true, false},
		{"single-appends", base + " LITERAL+", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var extra []string
			if tc.caps != "" {
				extra = []string{"imap_capability = " + tc.caps}
			}
			src := dovecot.Start(t, dovecot.Options{Name: "src"})
			dst := dovecot.Start(t, dovecot.Options{Name: "dst", Separator: "/", Extra: extra})
			m := corpus.Generate(corpus.Options{Seed: 31, Folders: 5, MessagesPerFolder: 70, MaxSize: 256 << 10, Odd: true})
			proxy := faultproxy.StartLate(t, dst.Addr)
			dstCfg := endpoint(t, "target", proxy.Addr, "alice", dst.Users["alice"])
			probe, err := imapconn.Dial(context.Background(), dstCfg)
			if err != nil {
				t.Fatal(err)
			}
			if probe.Features.MultiAppend != tc.multi || probe.Features.LiteralPlus != tc.plus {
				t.Fatalf("target offers MULTIAPPEND %v LITERAL+ %v, want %v %v: the test would prove nothing",
					probe.Features.MultiAppend, probe.Features.LiteralPlus, tc.multi, tc.plus)
			}
			probe.Logout()
			rep := copyAndCheck(t, src, dst, userCfg(t, "source", src, "alice"), dstCfg, m, migrate.Options{BatchMessages: 32}, nil)
			if rep.Failed != 0 || rep.Verified != m.TotalMessages() {
				t.Fatalf("copied %d verified %d failed %d: %v", rep.Copied, rep.Verified, rep.Failed, rep.Failures)
			}
			appends := proxy.CommandsByName()["APPEND"]
			if tc.multi {
				// One command per batch of at most 32 per folder (or 16 MiB).
				if max := m.TotalMessages()/32 + 2*len(m.Folders); appends > max || appends == 0 {
					t.Errorf("%d APPEND commands for %d messages, want at most %d (one per batch)", appends, m.TotalMessages(), max)
				}
			} else if appends != m.TotalMessages() {
				t.Errorf("%d APPEND commands for %d messages, want one each", appends, m.TotalMessages())
			}
			t.Logf("%d messages in %d APPEND commands", m.TotalMessages(), appends)
		})
	}
}

// A batch the target refuses because of one message (larger than its
// quota's per-message limit): MULTIAPPEND stores nothing of a refused
// batch, so the batch is split until that message is alone; it fails with
// the server's reason and every other message is copied. With APPENDLIMIT
// advertised, the message is not even sent.
func TestMultiAppendOneRefusedMessageFailsAlone(t *testing.T) {
	dovecot.Require(t)
	quota := []string{
		"mail_plugins = $mail_plugins quota",
		"plugin {\n  quota = count:User quota\n  quota_vsizes = yes\n  quota_max_mail_size = 64k\n}",
	}
	for _, tc := range []struct {
		name     string
		caps     string
		limit    bool // APPENDLIMIT advertised
		inReason string
		single   bool // one APPEND per message
	}{
		// Dovecot 2.3 does not advertise the quota's limit itself.
		{"appendlimit-advertised", "+APPENDLIMIT=65536", true, "APPENDLIMIT", false},
		{"appendlimit-not-advertised", "", false, "refused by the target", false},
		{"single-appends", "", false, "refused by the target", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			extra := quota
			if tc.caps != "" {
				extra = append(extra[:len(extra):len(extra)], "imap_capability = "+tc.caps)
			}
			src := dovecot.Start(t, dovecot.Options{Name: "src"})
			dst := dovecot.Start(t, dovecot.Options{Name: "dst", Separator: "/", Extra: extra})
			var msgs []corpus.Message
			for i := 0; i < 60; i++ {
				body := fmt.Sprintf("From: a@example.net\r\nSubject: message %d\r\nMessage-ID: <q%d@example.net>\r\n\r\nbody %d\r\n", i, i, i)
				if i == 37 {
					body += strings.Repeat("a line of an attachment too big for the quota\r\n", 3000) // ~140 KiB
				}
				msgs = append(msgs, corpus.Message{Size: int64(len(body)), Flags: []string{`\Seen`},
					Date: time.Date(2021, 3, 1, 0, 0, i, 0, time.UTC), Open: func() io.Reader { return strings.NewReader(body) }})
			}
			m := &corpus.Mailbox{Folders: []corpus.Folder{{Path: []string{"INBOX"}, Messages: msgs}}}
			corpus.Seed(t, src.Addr, "alice", src.Users["alice"], m)
			want := corpus.TakeSnapshot(t, src.Addr, "alice", src.Users["alice"])
			dstCfg := userCfg(t, "target", dst, "alice")
			probe, err := imapconn.Dial(context.Background(), dstCfg)
			if err != nil {
				t.Fatal(err)
			}
			if !probe.Features.MultiAppend || (probe.Features.AppendLimit > 0) != tc.limit {
				t.Fatalf("target: MULTIAPPEND %v, APPENDLIMIT %d; want MULTIAPPEND and limit %v", probe.Features.MultiAppend, probe.Features.AppendLimit, tc.limit)
			}
			probe.Logout()
			start := time.Now()
			rep, err := migrate.Copy(context.Background(), userCfg(t, "source", src, "alice"), dstCfg, migrate.Options{NoMultiAppend: tc.single})
			t.Logf("copy took %v", time.Since(start))
			if err != nil {
				t.Fatal(err)
			}
			if rep.Failed != 1 || len(rep.Failures) != 1 || rep.Failures[0].UID != 38 || !strings.Contains(rep.Failures[0].Reason, tc.inReason) {
				t.Fatalf("failed %d: %+v; want only uid 38, with %q in the reason", rep.Failed, rep.Failures, tc.inReason)
			}
			got := corpus.TakeSnapshot(t, dst.Addr, "alice", dst.Users["alice"])
			// The target holds every message but the refused one.
			inbox := want.Folders["INBOX"]
			inbox.Messages = append(inbox.Messages[:37:37], inbox.Messages[38:]...)
			want.Folders["INBOX"] = inbox
			if diff := corpus.Compare(want, got, nil); len(diff) > 0 {
				t.Errorf("target differs from source without the refused message:\n%s", strings.Join(diff, "\n"))
			}
			t.Logf("failure: %s", rep.Failures[0].Reason)
		})
	}
}
