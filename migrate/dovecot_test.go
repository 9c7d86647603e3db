package migrate_test

import (
	"context"
	"io"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mailferry/internal/imapconn"
	"mailferry/internal/testrig/corpus"
	"mailferry/internal/testrig/dovecot"
	"mailferry/internal/testrig/faultproxy"
	"mailferry/migrate"
)

// endpoint builds a connection config for user on a rig server.
func endpoint(t testing.TB, side, addr, login, password string) imapconn.Config {
	t.Helper()
	ep, err := imapconn.ParseEndpoint("imap://" + login + "@" + addr)
	if err != nil {
		t.Fatal(err)
	}
	ep.TLS = imapconn.TLSNone // rig servers offer no STARTTLS unless started with TLS
	return imapconn.Config{Side: side, Endpoint: ep, Password: password}
}

func userCfg(t testing.TB, side string, s *dovecot.Server, user string) imapconn.Config {
	cfg := endpoint(t, side, s.Addr, user, s.Users[user])
	if s.CAFile != "" {
		cfg.Endpoint.TLS = imapconn.TLSStartTLS // a TLS rig server offers STARTTLS on Addr
	}
	return cfg
}

// copyAndCheck seeds src with m, copies, and asserts the target holds per
// folder the same multiset of (SHA-256, size, flags, date) while the
// source's flags did not move.
func copyAndCheck(t *testing.T, src, dst *dovecot.Server, srcCfg, dstCfg imapconn.Config, m *corpus.Mailbox, opts migrate.Options, mapName func(string) string) *migrate.Report {
	t.Helper()
	user := srcCfg.Endpoint.Mailbox
	corpus.Seed(t, src.Addr, user, src.Users[user], m)
	before := corpus.TakeSnapshot(t, src.Addr, user, src.Users[user])
	rep, err := migrate.Copy(context.Background(), srcCfg, dstCfg, opts)
	if err != nil {
		t.Fatalf("copy: %v", err)
	}
	after := corpus.TakeSnapshot(t, src.Addr, user, src.Users[user])
	if diff := corpus.CompareFlags(before, after); len(diff) > 0 {
		t.Errorf("the copy changed the source:\n%s", strings.Join(diff, "\n"))
	}
	target := corpus.TakeSnapshot(t, dst.Addr, user, dst.Users[user])
	if diff := corpus.Compare(before, target, mapName); len(diff) > 0 {
		t.Errorf("target differs from source:\n%s", strings.Join(diff, "\n"))
	}
	return rep
}

func TestCopyDotToSlashWithOddMessages(t *testing.T) {
	dovecot.Require(t)
	src := dovecot.Start(t, dovecot.Options{Name: "src", Separator: "."})
	dst := dovecot.Start(t, dovecot.Options{Name: "dst", Separator: "/", SpecialUse: map[string]string{
		`\Sent`: "Sent Messages", `\Trash`: "Deleted Items", `\Junk`: "Spam", `\Drafts`: "Drafts", `\Archive`: "Archive",
	}})
	m := corpus.Generate(corpus.Options{Seed: 11, Folders: 14, MessagesPerFolder: 25, MaxSize: 3 << 20, Odd: true})
	specialMap := map[string]string{"Sent": "Sent Messages", "Trash": "Deleted Items", "Junk": "Spam"}
	rep := copyAndCheck(t, src, dst, userCfg(t, "source", src, "alice"), userCfg(t, "target", dst, "alice"), m,
		migrate.Options{}, func(k string) string {
			if v, ok := specialMap[k]; ok {
				return v
			}
			return k
		})
	if rep.Failed != 0 || rep.Verified != m.TotalMessages() || rep.Copied != m.TotalMessages() {
		t.Errorf("report: %d copied, %d verified, %d failed; want %d, %d, 0 (failures %v)",
			rep.Copied, rep.Verified, rep.Failed, m.TotalMessages(), m.TotalMessages(), rep.Failures)
	}
	if rep.Folders != len(m.Folders) {
		t.Errorf("report: %d folders, corpus has %d", rep.Folders, len(m.Folders))
	}
	// copyAndCheck's Compare also checks every folder's subscription and
	// special-use attributes.
}

func TestCopySlashToDotAndDotInName(t *testing.T) {
	dovecot.Require(t)
	src := dovecot.Start(t, dovecot.Options{Name: "src", Separator: "/"})
	dst := dovecot.Start(t, dovecot.Options{Name: "dst", Separator: "."})
	m := corpus.Generate(corpus.Options{Seed: 5, Folders: 6, MessagesPerFolder: 8, MaxSize: 256 << 10})
	m.Folders = append(m.Folders, corpus.Folder{Path: []string{"Releases", "v1.2"}, Subscribed: true,
		Messages: m.Folders[len(m.Folders)-1].Messages})
	rep := copyAndCheck(t, src, dst, userCfg(t, "source", src, "alice"), userCfg(t, "target", dst, "alice"), m,
		migrate.Options{Connections: 2}, func(k string) string { return strings.ReplaceAll(k, "v1.2", "v1_2") })
	if rep.Failed != 0 {
		t.Errorf("failures: %v", rep.Failures)
	}
	if !strings.Contains(strings.Join(rep.Warnings, "\n"), "v1_2") {
		t.Errorf("no warning about the renamed folder: %q", rep.Warnings)
	}
}

func TestCopyAsAdmin(t *testing.T) {
	dovecot.Require(t)
	src := dovecot.Start(t, dovecot.Options{Name: "src"})
	dst := dovecot.Start(t, dovecot.Options{Name: "dst", Separator: "/"})
	m := corpus.Generate(corpus.Options{Seed: 3, Folders: 3, MessagesPerFolder: 5, MaxSize: 64 << 10})
	// Source: SASL PLAIN, authzid bob, authcid admin. Target: "bob*admin" LOGIN.
	srcCfg := endpoint(t, "source", src.Addr, "bob", src.MasterPassword)
	srcCfg.Endpoint.Admin = src.MasterUser
	dstCfg := endpoint(t, "target", dst.Addr, "bob*"+dst.MasterUser, dst.MasterPassword)
	if dstCfg.Endpoint.Mailbox != "bob" {
		t.Fatalf("mailbox of bob*admin = %q", dstCfg.Endpoint.Mailbox)
	}
	rep := copyAndCheck(t, src, dst, srcCfg, dstCfg, m, migrate.Options{}, nil)
	if rep.Failed != 0 || rep.Verified != m.TotalMessages() || rep.Mailbox != "bob" {
		t.Errorf("report %+v", rep)
	}
}

func TestCopyOverTLS(t *testing.T) {
	dovecot.Require(t)
	src := dovecot.Start(t, dovecot.Options{Name: "src", TLS: true})
	dst := dovecot.Start(t, dovecot.Options{Name: "dst", Separator: "/", TLS: true})
	m := corpus.Generate(corpus.Options{Seed: 9, Folders: 3, MessagesPerFolder: 6, MaxSize: 128 << 10})
	// Source over STARTTLS on the plain port, target over implicit TLS.
	srcCfg := userCfg(t, "source", src, "alice")
	srcCfg.CAFile = src.CAFile
	dstEP, err := imapconn.ParseEndpoint("imaps://alice@" + dst.TLSAddr)
	if err != nil {
		t.Fatal(err)
	}
	dstCfg := imapconn.Config{Side: "target", Endpoint: dstEP, Password: dst.Users["alice"], CAFile: dst.CAFile}
	rep := copyAndCheck(t, src, dst, srcCfg, dstCfg, m, migrate.Options{}, nil)
	if rep.Failed != 0 {
		t.Errorf("failures: %v", rep.Failures)
	}

	// Without trusting the CA, each side fails with one line naming it.
	srcCfg.CAFile = ""
	_, err = migrate.Copy(context.Background(), srcCfg, dstCfg, migrate.Options{})
	if err == nil || !strings.HasPrefix(err.Error(), "source: TLS") || !strings.Contains(err.Error(), "--ca-file") {
		t.Errorf("untrusted source certificate: err = %v", err)
	}
	srcCfg.CAFile = src.CAFile
	dstCfg.CAFile = ""
	_, err = migrate.Copy(context.Background(), srcCfg, dstCfg, migrate.Options{})
	if err == nil || !strings.HasPrefix(err.Error(), "target: TLS") {
		t.Errorf("untrusted target certificate: err = %v", err)
	}
	dstCfg.InsecureSkipVerify = true
	if _, err = migrate.Copy(context.Background(), srcCfg, dstCfg, migrate.Options{Verify: migrate.VerifySize}); err != nil {
		t.Errorf("with InsecureSkipVerify: %v", err)
	}
}

func TestCopyExcludeAndFolderMap(t *testing.T) {
	dovecot.Require(t)
	src := dovecot.Start(t, dovecot.Options{Name: "src"})
	dst := dovecot.Start(t, dovecot.Options{Name: "dst", Separator: "/"})
	m := corpus.Generate(corpus.Options{Seed: 21, Folders: 5, MessagesPerFolder: 4, MaxSize: 32 << 10})
	m.Folders = append(m.Folders,
		corpus.Folder{Path: []string{"Old Sent"}, Messages: m.Folders[0].Messages},
		corpus.Folder{Path: []string{"Noise"}, Messages: m.Folders[0].Messages},
		corpus.Folder{Path: []string{"Noise", "Deeper"}, Messages: m.Folders[0].Messages},
	)
	user := "carol"
	corpus.Seed(t, src.Addr, user, src.Users[user], m)
	rep, err := migrate.Copy(context.Background(), userCfg(t, "source", src, user), userCfg(t, "target", dst, user), migrate.Options{
		Exclude:   []*regexp.Regexp{regexp.MustCompile(`^Noise(/|$)`)},
		FolderMap: map[string]string{"Old Sent": "Archive/Sent 2010"},
	})
	if err != nil {
		t.Fatal(err)
	}
	srcSnap := corpus.TakeSnapshot(t, src.Addr, user, src.Users[user])
	dstSnap := corpus.TakeSnapshot(t, dst.Addr, user, dst.Users[user])
	for k := range dstSnap.Folders {
		if strings.HasPrefix(k, "Noise") {
			t.Errorf("excluded folder %q was copied", k)
		}
	}
	delete(srcSnap.Folders, "Noise")
	delete(srcSnap.Folders, "Noise/Deeper")
	if diff := corpus.Compare(srcSnap, dstSnap, func(k string) string {
		if k == "Old Sent" {
			return "Archive/Sent 2010"
		}
		return k
	}); len(diff) > 0 {
		t.Errorf("target differs:\n%s", strings.Join(diff, "\n"))
	}
	if rep.Failed != 0 {
		t.Errorf("failures: %v", rep.Failures)
	}
}

func TestVerifyModes(t *testing.T) {
	dovecot.Require(t)
	src := dovecot.Start(t, dovecot.Options{Name: "src"})
	m := corpus.Generate(corpus.Options{Seed: 4, Folders: 3, MessagesPerFolder: 5, MaxSize: 64 << 10})
	corpus.Seed(t, src.Addr, "alice", src.Users["alice"], m)
	for _, mode := range []migrate.VerifyMode{migrate.VerifySize, migrate.VerifyNone} {
		dst := dovecot.Start(t, dovecot.Options{Name: "dst-" + string(mode), Separator: "/"})
		rep, err := migrate.Copy(context.Background(), userCfg(t, "source", src, "alice"), userCfg(t, "target", dst, "alice"), migrate.Options{Verify: mode})
		if err != nil {
			t.Fatal(err)
		}
		wantVerified := m.TotalMessages()
		if mode == migrate.VerifyNone {
			wantVerified = 0
		}
		if rep.Copied != m.TotalMessages() || rep.Verified != wantVerified || rep.Failed != 0 || rep.Verify != mode {
			t.Errorf("%s: copied %d verified %d failed %d", mode, rep.Copied, rep.Verified, rep.Failed)
		}
		if diff := corpus.Compare(corpus.TakeSnapshot(t, src.Addr, "alice", src.Users["alice"]),
			corpus.TakeSnapshot(t, dst.Addr, "alice", dst.Users["alice"]), nil); len(diff) > 0 {
			t.Errorf("%s: target differs:\n%s", mode, strings.Join(diff, "\n"))
		}
	}
}

// A copy corrupted on its way to the target is caught by the read-back,
// deleted, and copied again; a copy that stays corrupt is reported failed
// and no bad copy is left behind.
func TestVerifyCatchesCorruption(t *testing.T) {
	dovecot.Require(t)
	src := dovecot.Start(t, dovecot.Options{Name: "src"})
	marker := []byte("PLEASE-CORRUPT-THIS-LINE")
	body := "From: a@example.net\r\nTo: b@example.net\r\nSubject: marked\r\nMessage-ID: <m1@example.net>\r\n\r\n" +
		string(marker) + "\r\n" + strings.Repeat("padding line\r\n", 600)
	marked := corpus.Message{Size: int64(len(body)), Flags: []string{`\Seen`, "$Important"}, Date: time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC),
		Open: func() io.Reader { return strings.NewReader(body) }}
	m := corpus.Generate(corpus.Options{Seed: 8, Folders: 2, MessagesPerFolder: 5, MaxSize: 16 << 10})
	m.Folders[0].Messages = append(m.Folders[0].Messages, marked)
	corpus.Seed(t, src.Addr, "alice", src.Users["alice"], m)
	srcSnap := corpus.TakeSnapshot(t, src.Addr, "alice", src.Users["alice"])
	folder := strings.Join(m.Folders[0].Path, "/")

	for _, tc := range []struct {
		name       string
		times      int
		wantFailed int
	}{{"once", 1, 0}, {"always", -1, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			dst := dovecot.Start(t, dovecot.Options{Name: "dst", Separator: "/"})
			proxy := faultproxy.Start(t, dst.Addr)
			proxy.CorruptUpstream(marker, tc.times)
			rep, err := migrate.Copy(context.Background(), userCfg(t, "source", src, "alice"),
				endpoint(t, "target", proxy.Addr, "alice", dst.Users["alice"]), migrate.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if proxy.Corruptions() < 1 {
				t.Fatal("the proxy corrupted nothing: the test proves nothing")
			}
			if rep.Failed != tc.wantFailed {
				t.Fatalf("failed = %d, want %d (failures %v)", rep.Failed, tc.wantFailed, rep.Failures)
			}
			dstSnap := corpus.TakeSnapshot(t, dst.Addr, "alice", dst.Users["alice"])
			diff := corpus.Compare(srcSnap, dstSnap, nil)
			if tc.wantFailed == 0 && len(diff) > 0 {
				t.Errorf("target differs after a retried corruption:\n%s", strings.Join(diff, "\n"))
			}
			if tc.wantFailed == 1 {
				if len(rep.Failures) != 1 || rep.Failures[0].Folder == "" || !strings.Contains(rep.Failures[0].Reason, "SHA-256") {
					t.Errorf("failures = %+v, want one SHA-256 mismatch", rep.Failures)
				}
				// Exactly the marked message is missing; no corrupt copy stays.
				if len(diff) != 1 || !strings.Contains(diff[0], folder) {
					t.Errorf("want exactly one difference (the missing message) in %q, got:\n%s", folder, strings.Join(diff, "\n"))
				}
				if n := len(dstSnap.Folders[folder].Messages); n != len(m.Folders[0].Messages)-1 {
					t.Errorf("target %q holds %d messages, want %d", folder, n, len(m.Folders[0].Messages)-1)
				}
			}
		})
	}
}

// A 50 MB message streams through without the heap holding it.
func TestBigMessageBoundedHeap(t *testing.T) {
	dovecot.Require(t)
	if testing.Short() {
		t.Skip("-short: skips the 50 MB copy")
	}
	src := dovecot.Start(t, dovecot.Options{Name: "src"})
	dst := dovecot.Start(t, dovecot.Options{Name: "dst", Separator: "/"})
	m := &corpus.Mailbox{Folders: []corpus.Folder{{Path: []string{"INBOX"}, Messages: []corpus.Message{corpus.Big(50<<20, 1)}}}}
	corpus.Seed(t, src.Addr, "alice", src.Users["alice"], m)

	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	rep, err := migrate.Copy(context.Background(), userCfg(t, "source", src, "alice"), userCfg(t, "target", dst, "alice"), migrate.Options{})
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if rep.Verified != 1 || rep.Bytes < 50<<20 {
		t.Fatalf("report %+v", rep)
	}
	grew := int64(peak.Load()) - int64(base.HeapInuse)
	t.Logf("heap in use: base %.1f MB, peak %.1f MB, growth %.1f MB for a %.0f MB message",
		float64(base.HeapInuse)/1e6, float64(peak.Load())/1e6, float64(grew)/1e6, float64(rep.Bytes)/1e6)
	if grew > 16<<20 {
		t.Errorf("heap grew by %d MB copying a 50 MB message: not streaming", grew>>20)
	}
	if diff := corpus.Compare(corpus.TakeSnapshot(t, src.Addr, "alice", src.Users["alice"]),
		corpus.TakeSnapshot(t, dst.Addr, "alice", dst.Users["alice"]), nil); len(diff) > 0 {
		t.Errorf("target differs:\n%s", strings.Join(diff, "\n"))
	}
}

// Without UIDPLUS there is no APPENDUID: the copies are found on the target
// by size and SHA-256 among the UIDs above the folder's UIDNEXT.
func TestTargetWithoutUIDPLUS(t *testing.T) {
	dovecot.Require(t)
	src := dovecot.Start(t, dovecot.Options{Name: "src"})
	dst := dovecot.Start(t, dovecot.Options{Name: "dst", Separator: "/", Extra: []string{
		"imap_capability = IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE SPECIAL-USE NAMESPACE LIST-EXTENDED LIST-STATUS STATUS=SIZE",
	}})
	m := corpus.Generate(corpus.Options{Seed: 17, Folders: 6, MessagesPerFolder: 12, MaxSize: 512 << 10, Odd: true})
	dstCfg := userCfg(t, "target", dst, "alice")
	probe, err := imapconn.Dial(context.Background(), dstCfg)
	if err != nil {
		t.Fatal(err)
	}
	if probe.Features.UIDPlus {
		t.Fatal("the target still offers UIDPLUS: the test would prove nothing")
	}
	probe.Logout()
	rep := copyAndCheck(t, src, dst, userCfg(t, "source", src, "alice"), dstCfg, m, migrate.Options{}, nil)
	if rep.Failed != 0 || rep.Verified != m.TotalMessages() {
		t.Errorf("copied %d verified %d failed %d: %v", rep.Copied, rep.Verified, rep.Failed, rep.Failures)
	}
}

// Connections reset mid-copy (on either side, while APPENDs are in flight)
// are reopened, and messages whose APPEND outcome was lost are found on the
// target instead of being appended twice.
func TestConnectionResetsMidCopy(t *testing.T) {
	dovecot.Require(t)
	src := dovecot.Start(t, dovecot.Options{Name: "src"})
	dst := dovecot.Start(t, dovecot.Options{Name: "dst", Separator: "/"})
	m := corpus.Generate(corpus.Options{Seed: 23, Folders: 8, MessagesPerFolder: 40, MaxSize: 256 << 10, Odd: true})
	corpus.Seed(t, src.Addr, "alice", src.Users["alice"], m)
	before := corpus.TakeSnapshot(t, src.Addr, "alice", src.Users["alice"])
	srcProxy := faultproxy.Start(t, src.Addr)
	dstProxy := faultproxy.Start(t, dst.Addr)
	var copied atomic.Int64
	drops := map[int64]func(){40: dstProxy.DropAll, 120: srcProxy.DropAll, 200: func() { srcProxy.DropAll(); dstProxy.DropAll() }}
	var dropped atomic.Int64
	obs := migrate.ObserverFunc(func(e migrate.Event) {
		if e.Kind == migrate.EventMessageCopied {
			if f, ok := drops[copied.Add(1)]; ok {
				dropped.Add(1)
				go f()
			}
		}
	})
	rep, err := migrate.Copy(context.Background(), endpoint(t, "source", srcProxy.Addr, "alice", src.Users["alice"]),
		endpoint(t, "target", dstProxy.Addr, "alice", dst.Users["alice"]), migrate.Options{Observer: obs, BatchMessages: 16})
	if err != nil {
		t.Fatal(err)
	}
	if dropped.Load() != 3 {
		t.Fatalf("only %d of 3 drops happened: the test proves nothing", dropped.Load())
	}
	if rep.Failed != 0 || rep.Verified != m.TotalMessages() {
		t.Errorf("copied %d verified %d failed %d: %v", rep.Copied, rep.Verified, rep.Failed, rep.Failures)
	}
	after := corpus.TakeSnapshot(t, src.Addr, "alice", src.Users["alice"])
	if diff := corpus.CompareFlags(before, after); len(diff) > 0 {
		t.Errorf("reconnecting changed the source:\n%s", strings.Join(diff, "\n"))
	}
	if diff := corpus.Compare(before, corpus.TakeSnapshot(t, dst.Addr, "alice", dst.Users["alice"]), nil); len(diff) > 0 {
		t.Errorf("target differs (duplicates or losses after resets):\n%s", strings.Join(diff, "\n"))
	}
}
