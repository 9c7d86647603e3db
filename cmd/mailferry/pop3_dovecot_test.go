package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"mailferry/internal/pop3"
	"mailferry/internal/testrig/corpus"
	"mailferry/internal/testrig/dovecot"
	"mailferry/migrate"
)

// pop3Rig is a source and a target Dovecot cluster that serve POP3 too,
// an inventory naming both with their pop3 URLs and master logins, and
// mailboxes seeded on the source.
type pop3Rig struct {
	t         *testing.T
	dir       string
	src, dst  *dovecot.Server
	users     map[string]string
	mailboxes []string
	corpora   map[string]*corpus.Mailbox
	inv, plan string
}

// pop3Opts varies the rig.
type pop3Opts struct {
	format      string // pop3_uidl_format on both sides; "" Dovecot's default (%08Xu%08Xv)
	noTargetURL bool   // the inventory gives the target no pop3 URL
}

func newPOP3Rig(t *testing.T, n int, o pop3Opts) *pop3Rig {
	t.Helper()
	dovecot.Require(t)
	r := &pop3Rig{t: t, dir: t.TempDir(), users: map[string]string{}, corpora: map[string]*corpus.Mailbox{}}
	for i := range n {
		mb := fmt.Sprintf("user%02d", i)
		r.users[mb] = "pw-" + mb
		r.mailboxes = append(r.mailboxes, mb)
	}
	var extra []string
	if o.format != "" {
		extra = []string{"pop3_uidl_format = " + o.format}
	}
	r.src = dovecot.Start(t, dovecot.Options{Name: "src", Users: r.users, MasterUser: "ferry", MasterPassword: "master-src", POP3: true, Extra: extra})
	r.dst = dovecot.Start(t, dovecot.Options{Name: "dst", Separator: "/", Users: r.users, MasterUser: "ferry", MasterPassword: "master-dst", POP3: true, Extra: extra})
	for i, mb := range r.mailboxes {
		m := corpus.Generate(corpus.Options{Seed: uint64(300 + i), Folders: 3, MessagesPerFolder: 6, MaxSize: 24 << 10})
		corpus.Seed(t, r.src.Addr, mb, r.users[mb], m)
		r.corpora[mb] = m
	}
	var y strings.Builder
	y.WriteString("clusters:\n")
	for _, c := range []struct {
		name, health string
		s            *dovecot.Server
		pop3         bool
	}{{"src", "degraded", r.src, true}, {"dst", "healthy", r.dst, !o.noTargetURL}} {
		pw := filepath.Join(r.dir, c.name+".pw")
		must(t, os.WriteFile(pw, []byte(c.s.MasterPassword+"\n"), 0o600))
		fmt.Fprintf(&y, "  - name: %s\n    url: imap://%s\n    tls: none\n", c.name, c.s.Addr)
		if c.pop3 {
			fmt.Fprintf(&y, "    pop3: pop3://%s\n", c.s.POP3Addr)
		}
		fmt.Fprintf(&y, "    auth: {method: master, user: ferry, password_file: %s}\n    capacity: {bytes: 10GiB, load: 100}\n    health: %s\n    limits: {connections: 8}\n", pw, c.health)
	}
	y.WriteString("mailboxes:\n")
	for _, mb := range r.mailboxes {
		fmt.Fprintf(&y, "  - {name: %s, cluster: src, bytes: %d, load: 1}\n", mb, r.corpora[mb].TotalBytes())
	}
	r.inv = filepath.Join(r.dir, "inv.yaml")
	must(t, os.WriteFile(r.inv, []byte(y.String()), 0o600))
	r.plan = filepath.Join(r.dir, "plan.json")
	if code, stdout, stderr := runCLI(t, nil, "plan", "-i", r.inv, "--drain", "src", "-o", r.plan); code != exitOK {
		t.Fatalf("plan: exit %d\n%s%s", code, stdout, stderr)
	}
	return r
}

// listing reads a mailbox over POP3 on a rig server as its own user.
func (r *pop3Rig) listing(s *dovecot.Server, mb string) *pop3.Listing {
	r.t.Helper()
	h, p, _ := net.SplitHostPort(s.POP3Addr)
	port, _ := strconv.Atoi(p)
	l, err := pop3.Read(context.Background(), pop3.Config{Side: s.Name, Host: h, Port: port, TLS: pop3.TLSNone,
		Login: mb, Password: s.Users[mb], IOTimeout: 10 * time.Second})
	if err != nil {
		r.t.Fatalf("POP3 %s on %s: %v", mb, s.Name, err)
	}
	return l
}

// inboxUIDValidity is a mailbox's INBOX UIDVALIDITY on a rig server.
func inboxUIDValidity(t *testing.T, s *dovecot.Server, mb string) uint32 {
	t.Helper()
	c, err := imapclient.DialInsecure(s.Addr, nil)
	must(t, err)
	defer c.Close()
	must(t, c.Login(mb, s.Users[mb]).Wait())
	st, err := c.Status("INBOX", &imap.StatusOptions{UIDValidity: true}).Wait()
	must(t, err)
	return st.UIDValidity
}

// expungeFirst expunges the INBOX's first message on a rig server: an
// expunge gap at UID 1.
func expungeFirst(t *testing.T, s *dovecot.Server, mb string) {
	t.Helper()
	c, err := imapclient.DialInsecure(s.Addr, nil)
	must(t, err)
	defer c.Close()
	must(t, c.Login(mb, s.Users[mb]).Wait())
	_, err = c.Select("INBOX", nil).Wait()
	must(t, err)
	uid := imap.UIDSetNum(1)
	must(t, c.Store(uid, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close())
	must(t, c.UIDExpunge(uid).Close())
}

// TestApplyPOP3UIDLsMatch: with pop3_uidl_format = %08Xu on both sides
// and source INBOXes without expunge gaps, the POP3 check before the
// cutover finds the UIDLs equal, so --pop3-gate lets the cutover proceed;
// the final check says so again. The target's POP3 view is the source's:
// the same UIDLs and sizes in the same message order, and message N is the
// source's message N byte for byte (appended in source UID order).
func TestApplyPOP3UIDLsMatch(t *testing.T) {
	r := newPOP3Rig(t, 2, pop3Opts{format: "%08Xu"})
	db, report, hookLog := filepath.Join(r.dir, "state.db"), filepath.Join(r.dir, "report.json"), filepath.Join(r.dir, "hook.log")
	srcBefore := map[string]*corpus.Snapshot{}
	for _, mb := range r.mailboxes {
		srcBefore[mb] = corpus.TakeSnapshot(t, r.src.Addr, mb, r.users[mb])
	}
	code, stdout, stderr := runCLI(t, nil, "apply", r.plan, "-i", r.inv, "--state", db, "--report", report, "--pop3-gate",
		"--cutover-exec", `echo "$MAILFERRY_MAILBOX" >> `+hookLog)
	if code != exitOK {
		t.Fatalf("apply --pop3-gate: exit %d\nstderr:\n%s\nstdout:\n%s", code, stderr, stdout)
	}
	rep := readReport(t, report)
	for _, m := range rep.Moves {
		inbox := len(r.corpora[m.Mailbox].Folder("INBOX").Messages)
		c := m.POP3
		if m.Result != migrate.ResultDone || c == nil || c.Checked != migrate.POP3Final || !c.UIDLsMatch || !c.OrderMatch ||
			c.RefetchMessages != 0 || c.SourceMessages != inbox || c.TargetMessages != inbox || c.Error != "" {
			t.Errorf("move of %s: result %q, POP3 %+v; want done, UIDLs and order matching over %d messages", m.Mailbox, m.Result, c, inbox)
		}
		if !strings.Contains(stdout, "pop3 "+m.Mailbox+": POP3 UIDLs match") {
			t.Errorf("the text report does not say %s's UIDLs match:\n%s", m.Mailbox, stdout)
		}
	}
	hooks := readHookLog(t, hookLog)
	for _, mb := range r.mailboxes {
		if len(hooks[mb]) != 1 {
			t.Errorf("cutover hook ran %d times for %s, want once", len(hooks[mb]), mb)
		}
		// POP order on the target: the source's, message by message.
		src, dst := r.listing(r.src, mb), r.listing(r.dst, mb)
		if len(src.Messages) == 0 || fmt.Sprint(src.Messages) != fmt.Sprint(dst.Messages) {
			t.Errorf("%s: POP3 view differs:\nsource %v\ntarget %v", mb, src.Messages, dst.Messages)
		}
		a := corpus.TakeSnapshot(t, r.src.Addr, mb, r.users[mb]).Folders["INBOX"].Messages
		b := corpus.TakeSnapshot(t, r.dst.Addr, mb, r.users[mb]).Folders["INBOX"].Messages
		if len(a) != len(dst.Messages) || len(b) != len(dst.Messages) {
			t.Fatalf("%s: %d source, %d target INBOX messages, %d over POP3", mb, len(a), len(b), len(dst.Messages))
		}
		for i := range b {
			if a[i].SHA256 != b[i].SHA256 || !strings.EqualFold(dst.Messages[i].UIDL, fmt.Sprintf("%08X", b[i].UID)) {
				t.Errorf("%s: POP3 message %d is target UID %d (UIDL %s), not the source's message %d", mb, i+1, b[i].UID, dst.Messages[i].UIDL, i+1)
			}
		}
		// The POP3 check changed nothing on the source (no RETR, no DELE).
		if diff := corpus.CompareFlags(srcBefore[mb], corpus.TakeSnapshot(t, r.src.Addr, mb, r.users[mb])); len(diff) > 0 {
			t.Errorf("%s: the source changed:\n%s", mb, strings.Join(diff, "\n"))
		}
	}
}

// TestApplyPOP3GateHoldsMismatch: with Dovecot's default pop3_uidl_format
// (%08Xu%08Xv) the UIDLs carry the INBOX's UIDVALIDITY, which differs on
// the target: the check before the cutover reports every message as one a
// POP client would fetch again, and --pop3-gate holds the move at ready
// without running the hook. The held move keeps following the source: a
// message delivered meanwhile is copied by the next apply, which holds it
// again. complete without --pop3-gate then accepts it: done, the final
// check still reporting the mismatch.
func TestApplyPOP3GateHoldsMismatch(t *testing.T) {
	r := newPOP3Rig(t, 2, pop3Opts{})
	// A new INBOX's UIDVALIDITY is the time it was made (in seconds): once
	// the clock is past the sources', the targets' INBOXes, made by the
	// copy, cannot share theirs.
	var newest uint32
	for _, mb := range r.mailboxes {
		newest = max(newest, inboxUIDValidity(t, r.src, mb))
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Unix() <= int64(newest); {
		if time.Now().After(deadline) {
			t.Fatalf("the clock does not pass the sources' UIDVALIDITY %d", newest)
		}
		time.Sleep(20 * time.Millisecond)
	}
	db, report, hookLog := filepath.Join(r.dir, "state.db"), filepath.Join(r.dir, "report.json"), filepath.Join(r.dir, "hook.log")
	hook := `echo "$MAILFERRY_MAILBOX" >> ` + hookLog
	code, stdout, stderr := runCLI(t, nil, "apply", r.plan, "-i", r.inv, "--state", db, "--report", report, "--pop3-gate", "--cutover-exec", hook)
	if code != exitPartial {
		t.Fatalf("apply --pop3-gate: exit %d, want %d (held)\nstderr:\n%s\nstdout:\n%s", code, exitPartial, stderr, stdout)
	}
	t.Logf("apply --pop3-gate:\n%s", stdout)
	raw, err := os.ReadFile(report)
	must(t, err)
	for _, field := range []string{`"uidls_match": false`, `"refetch_messages"`, `"checked": "before-cutover"`} {
		if !strings.Contains(string(raw), field) {
			t.Errorf("the JSON report lacks %s:\n%s", field, raw)
		}
	}
	for _, m := range readReport(t, report).Moves {
		inbox := len(r.corpora[m.Mailbox].Folder("INBOX").Messages)
		c := m.POP3
		if m.Result != migrate.ResultHeld || m.Phase != migrate.PhaseReady || !strings.Contains(m.Reason, "--pop3-gate") {
			t.Errorf("move of %s: result %q phase %q reason %q; want held at ready by --pop3-gate", m.Mailbox, m.Result, m.Phase, m.Reason)
		}
		if c == nil || c.Checked != migrate.POP3BeforeCutover || c.UIDLsMatch || !c.OrderMatch || c.RefetchMessages != inbox || c.TargetMessages != inbox {
			t.Errorf("move of %s: POP3 %+v; want %d of %d to fetch again, order kept", m.Mailbox, c, inbox, inbox)
		}
		if !strings.Contains(stdout, fmt.Sprintf("pop3 %s: POP3 UIDLs DIFFER (before the cutover): a POP client would download %d of %d messages again", m.Mailbox, inbox, inbox)) {
			t.Errorf("the text report does not show %s's mismatch:\n%s", m.Mailbox, stdout)
		}
		if vs, vd := inboxUIDValidity(t, r.src, m.Mailbox), inboxUIDValidity(t, r.dst, m.Mailbox); vs == vd {
			t.Fatalf("%s: both INBOXes have UIDVALIDITY %d: the test needs them to differ", m.Mailbox, vs)
		}
	}
	if _, err := os.Stat(hookLog); err == nil {
		t.Fatalf("the cutover hook ran although every move was held by --pop3-gate")
	}
	for mb, e := range statusByMailbox(t, db) {
		if e.Phase != migrate.PhaseReady {
			t.Errorf("status of %s: phase %q, want ready", mb, e.Phase)
		}
	}

	// Held, it follows the source: mail delivered now is copied.
	late := corpus.Generate(corpus.Options{Seed: 999, Folders: 1, MessagesPerFolder: 1, MaxSize: 4096}).Folders[0].Messages[0]
	corpus.Seed(t, r.src.Addr, "user00", r.users["user00"], &corpus.Mailbox{Folders: []corpus.Folder{{Path: []string{"INBOX"}, Subscribed: true, Messages: []corpus.Message{late}}}})
	code, stdout, stderr = runCLI(t, nil, "apply", r.plan, "-i", r.inv, "--state", db, "--report", report, "--pop3-gate", "--cutover-exec", hook)
	if code != exitPartial {
		t.Fatalf("second apply --pop3-gate: exit %d\nstderr:\n%s\nstdout:\n%s", code, stderr, stdout)
	}
	want := len(r.corpora["user00"].Folder("INBOX").Messages) + 1
	if m := moveOf(t, readReport(t, report), "user00"); m.Result != migrate.ResultHeld || m.POP3 == nil || m.POP3.TargetMessages != want || m.POP3.RefetchMessages != want {
		t.Errorf("second apply, user00: %+v / POP3 %+v; want held again with %d messages on the target", m, m.POP3, want)
	}
	if _, err := os.Stat(hookLog); err == nil {
		t.Fatalf("the cutover hook ran on the second apply")
	}

	// complete without the gate: the operator accepts the re-download.
	code, stdout, stderr = runCLI(t, nil, "complete", r.plan, "-i", r.inv, "--all", "--state", db, "--report", report, "--cutover-exec", hook)
	if code != exitOK {
		t.Fatalf("complete: exit %d\nstderr:\n%s\nstdout:\n%s", code, stderr, stdout)
	}
	for _, m := range readReport(t, report).Moves {
		if c := m.POP3; m.Result != migrate.ResultDone || c == nil || c.Checked != migrate.POP3Final || c.UIDLsMatch || c.RefetchMessages != c.SourceMessages || c.SourceMessages == 0 {
			t.Errorf("complete, %s: result %q, POP3 %+v; want done, the final check reporting the mismatch", m.Mailbox, m.Result, c)
		}
	}
	if !strings.Contains(stdout, "POP3 UIDLs DIFFER (after the final delta)") {
		t.Errorf("complete's text report does not show the final mismatch:\n%s", stdout)
	}
}

// TestApplyPOP3GateWithoutTargetURL: a source with POP3 and a target the
// inventory gives no pop3 URL: nothing can be compared, and --pop3-gate
// holds the move, naming the missing URL.
func TestApplyPOP3GateWithoutTargetURL(t *testing.T) {
	r := newPOP3Rig(t, 1, pop3Opts{format: "%08Xu", noTargetURL: true})
	db, report := filepath.Join(r.dir, "state.db"), filepath.Join(r.dir, "report.json")
	code, stdout, stderr := runCLI(t, nil, "apply", r.plan, "-i", r.inv, "--state", db, "--report", report, "--pop3-gate", "--routed")
	if code != exitPartial {
		t.Fatalf("apply: exit %d\nstderr:\n%s\nstdout:\n%s", code, stderr, stdout)
	}
	m := moveOf(t, readReport(t, report), "user00")
	if m.Result != migrate.ResultHeld || m.POP3 == nil || !strings.Contains(m.POP3.Error, "has no pop3 URL") || m.POP3.SourceMessages == 0 {
		t.Errorf("move %+v, POP3 %+v; want held, naming the target's missing pop3 URL", m, m.POP3)
	}
}

// TestPreflightPOP3AtRisk: preflight lists the mailboxes whose POP clients
// would download everything again: with the default format every sampled
// mailbox (the UIDVALIDITY is in the UIDL), the unsampled ones inferred
// from the sample; with %08Xu, only the mailbox whose INBOX has an
// expunge gap. Being at risk changes no exit code.
func TestPreflightPOP3AtRisk(t *testing.T) {
	t.Run("default format", func(t *testing.T) {
		r := newPOP3Rig(t, 3, pop3Opts{})
		code, stdout, stderr := runCLI(t, nil, "preflight", r.plan, "-i", r.inv, "--state", "none", "--pop3-sample", "2")
		if code != exitOK {
			t.Fatalf("preflight: exit %d\nstderr:\n%s\nstdout:\n%s", code, stderr, stdout)
		}
		t.Logf("preflight:\n%s", stdout)
		if !strings.Contains(stdout, "pop3: 3 of 3 mailboxes looked at are at risk") || !strings.Contains(stdout, "%08Xu%08Xv") {
			t.Errorf("preflight output:\n%s", stdout)
		}
		_, stdout, _ = runCLI(t, nil, "--json", "preflight", r.plan, "-i", r.inv, "--state", "none", "--pop3-sample", "2")
		var rep struct {
			POP3 []struct {
				Mailbox, Checked string
				AtRisk           bool   `json:"at_risk"`
				Format           string `json:"uidl_format"`
				Refetch          int    `json:"refetch_messages"`
				Source           int    `json:"source_messages"`
			} `json:"pop3"`
		}
		must(t, json.Unmarshal([]byte(stdout), &rep))
		checked := map[string]int{}
		for _, p := range rep.POP3 {
			checked[p.Checked]++
			if !p.AtRisk || p.Format != "%08Xu%08Xv" || (p.Checked == "sampled" && (p.Refetch != p.Source || p.Source == 0)) {
				t.Errorf("POP3 entry %+v", p)
			}
		}
		if checked["sampled"] != 2 || checked["inferred"] != 1 {
			t.Errorf("checked %v, want 2 sampled and 1 inferred\n%s", checked, stdout)
		}
	})
	t.Run("uid format with a gap", func(t *testing.T) {
		r := newPOP3Rig(t, 2, pop3Opts{format: "%08Xu"})
		expungeFirst(t, r.src, "user01")
		code, stdout, stderr := runCLI(t, nil, "preflight", r.plan, "-i", r.inv, "--state", "none")
		if code != exitOK {
			t.Fatalf("preflight: exit %d\nstderr:\n%s\nstdout:\n%s", code, stderr, stdout)
		}
		if !strings.Contains(stdout, "pop3: 1 of 2 mailboxes looked at are at risk") || !strings.Contains(stdout, "expunge gaps") {
			t.Errorf("preflight output:\n%s", stdout)
		}
		for _, line := range strings.Split(stdout, "\n") {
			if strings.HasPrefix(line, "user00 ") {
				t.Errorf("user00 (no gap) listed at risk: %s", line)
			}
		}
	})
}

// TestApplyPOP3Synced: without a hook a move stays in sync at ready, and
// the POP3 check still reports before the cutover; a rerun follows the
// source with one delta pass, not two, and checks again.
func TestApplyPOP3Synced(t *testing.T) {
	r := newPOP3Rig(t, 1, pop3Opts{format: "%08Xu"})
	db, report := filepath.Join(r.dir, "state.db"), filepath.Join(r.dir, "report.json")
	for run := 1; run <= 2; run++ {
		code, stdout, stderr := runCLI(t, nil, "apply", r.plan, "-i", r.inv, "--state", db, "--report", report)
		if code != exitSynced {
			t.Fatalf("apply %d: exit %d, want %d\nstderr:\n%s\nstdout:\n%s", run, code, exitSynced, stderr, stdout)
		}
		m := moveOf(t, readReport(t, report), "user00")
		if c := m.POP3; m.Result != migrate.ResultSynced || c == nil || c.Checked != migrate.POP3BeforeCutover || !c.UIDLsMatch || c.TargetMessages == 0 {
			t.Errorf("apply %d: result %q, POP3 %+v; want synced, UIDLs matching", run, m.Result, c)
		}
		if run == 2 && m.Passes != 1 {
			t.Errorf("rerun: %d passes, want one delta pass", m.Passes)
		}
	}
}
