package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mailferry/internal/testrig/corpus"
	"mailferry/internal/testrig/dovecot"
	"mailferry/preflight"
)

// The preflight of issue 12 ("check before moving") on real Dovecot: the
// command, and apply/drain stopping before the first copy.

// preflightOut is `mailferry preflight --json`.
type preflightOut struct {
	OK bool `json:"ok"`
	preflight.Report
}

func runPreflightJSON(t *testing.T, env map[string]string, args ...string) (int, preflightOut, string) {
	t.Helper()
	code, stdout, stderr := runCLI(t, env, append([]string{"preflight", "--json"}, args...)...)
	var out preflightOut
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("preflight --json: exit %d, not JSON: %v\nstdout:\n%s\nstderr:\n%s", code, err, stdout, stderr)
	}
	return code, out, stderr
}

// clusterProblems are the problems reported for a whole cluster.
func clusterProblems(out preflightOut, cluster string) []preflight.Problem {
	var ps []preflight.Problem
	for _, p := range out.Problems {
		if p.Cluster == cluster && p.Mailbox == "" {
			ps = append(ps, p)
		}
	}
	return ps
}

// planFile writes the drain plan of alpha.
func (r *applyRig) planFile(inv string) string {
	r.t.Helper()
	plan := filepath.Join(r.dir, filepath.Base(inv)+".plan.json")
	if code, stdout, stderr := runCLI(r.t, nil, "plan", "-i", inv, "--drain", "alpha", "-o", plan); code != exitOK {
		r.t.Fatalf("plan: exit %d\n%s%s", code, stdout, stderr)
	}
	return plan
}

// nothingOn asserts no mailbox has any message on the cluster.
func (r *applyRig) nothingOn(cluster string) {
	r.t.Helper()
	s := r.clusters[cluster]
	for _, mb := range r.mailboxes {
		snap := corpus.TakeSnapshot(r.t, s.Addr, mb, s.Users[mb])
		for name, f := range snap.Folders {
			if len(f.Messages) > 0 {
				r.t.Errorf("%s has %d messages in %q on %s: something was copied", mb, len(f.Messages), name, cluster)
			}
		}
	}
}

// TestPreflightOK: every login works: exit 0, each cluster's logins and
// capabilities shown, the same as JSON; apply runs it before its moves,
// and a plan whose moves are done has nothing to check.
func TestPreflightOK(t *testing.T) {
	r := newApplyRig(t, 3)
	plan := r.planFile(r.inv)
	code, stdout, stderr := runCLI(t, nil, "preflight", plan, "-i", r.inv, "--state", "none")
	if code != exitOK {
		t.Fatalf("preflight: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"CLUSTER", "alpha", "source", "3/3", "UIDPLUS", "MULTIAPPEND", "CONDSTORE", "QRESYNC", "LITERAL+", "STATUS=SIZE", "SPECIAL-USE", "preflight: ok: 3 mailboxes"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("preflight output lacks %q:\n%s", want, stdout)
		}
	}
	code, out, stderr := runPreflightJSON(t, nil, plan, "-i", r.inv, "--state", "none")
	if code != exitOK || !out.OK || len(out.Mailboxes) != 3 || len(out.Clusters) < 2 {
		t.Fatalf("preflight --json: exit %d, %+v\n%s", code, out, stderr)
	}
	for _, m := range out.Mailboxes {
		if m.Source != "ok" || m.Target != "ok" {
			t.Errorf("mailbox %+v: want both logins ok", m)
		}
	}
	for _, c := range out.Clusters {
		if c.LoggedIn != c.Mailboxes || len(c.Capabilities) == 0 {
			t.Errorf("cluster %+v: want every login and its capabilities", c)
		}
	}

	// apply runs it first (a line per cluster), then moves; once every
	// move is done, the preflight has nothing left to check.
	db := filepath.Join(r.dir, "state.db")
	code, stdout, stderr = runCLI(t, nil, "apply", plan, "-i", r.inv, "--state", db, "--cutover-exec", "true")
	if code != exitOK || !strings.Contains(stderr, "mailferry: preflight: cluster alpha (source): 3/3 logins, UIDPLUS") {
		t.Fatalf("apply: exit %d, want %d after the preflight's lines\nstdout:\n%s\nstderr:\n%s", code, exitOK, stdout, stderr)
	}
	code, out, stderr = runPreflightJSON(t, nil, plan, "-i", r.inv, "--state", db)
	if code != exitOK || len(out.Mailboxes) != 0 || len(out.Clusters) != 0 {
		t.Errorf("preflight of a finished plan: exit %d, %+v, want nothing checked\n%s", code, out, stderr)
	}
}

// TestPreflightSecrets: a password file readable by others and a password
// variable that is not set are configuration errors (exit 2), each named
// once for its cluster by file, line and field; no login is tried there.
func TestPreflightSecrets(t *testing.T) {
	r := newApplyRig(t, 3)
	loose := filepath.Join(r.dir, "loose.pw")
	must(t, os.WriteFile(loose, []byte(r.clusters["bravo"].MasterPassword+"\n"), 0o644))
	inv := r.writeInventory("secrets.yaml", rigInventory{auth: map[string]string{
		"bravo":   "{method: master, user: ferry, password_file: " + loose + "}",
		"charlie": "{method: master, user: ferry, password_env: MAILFERRY_TEST_UNSET_PW}",
	}})
	plan := r.planFile(inv)
	code, out, stderr := runPreflightJSON(t, nil, plan, "-i", inv, "--state", "none")
	if code != exitUsage || out.OK {
		t.Fatalf("exit %d, want %d\n%s", code, exitUsage, stderr)
	}
	for cluster, field := range map[string]string{"bravo": "auth.password_file", "charlie": "auth.password_env"} {
		ps := clusterProblems(out, cluster)
		if len(ps) != 1 || ps[0].Kind != preflight.Secret || ps[0].Field != "clusters["+cluster+"]."+field || ps[0].Line == 0 || ps[0].File != inv || ps[0].Fix == "" {
			t.Errorf("cluster %s: problems %+v, want one secret problem naming %s, its line and a fix", cluster, ps, field)
		}
	}
	if len(out.Problems) > 2 {
		t.Errorf("%d problems, want one per cluster: %+v", len(out.Problems), out.Problems)
	}
}

// TestPreflightWrongAdminPassword: the target's admin password is wrong.
// Before preflight, apply started every move and failed each one with the
// same refused login (exit 3). Now preflight reports it once for the
// cluster, says what to fix, and apply stops before anything is copied
// (exit 2); --skip-preflight still runs the moves (and they fail).
func TestPreflightWrongAdminPassword(t *testing.T) {
	r := newApplyRig(t, 4)
	wrong := filepath.Join(r.dir, "wrong.pw")
	must(t, os.WriteFile(wrong, []byte("not-the-password\n"), 0o600))
	inv := r.writeInventory("wrong.yaml", rigInventory{
		auth:   map[string]string{"bravo": "{method: master, user: ferry, password_file: " + wrong + "}"},
		health: map[string]string{"charlie": "readonly"}, // every move goes to bravo
	})
	plan := r.planFile(inv)

	code, out, stderr := runPreflightJSON(t, nil, plan, "-i", inv, "--state", "none")
	ps := clusterProblems(out, "bravo")
	if code != exitUsage || len(ps) != 1 || ps[0].Kind != preflight.Login || ps[0].Mailboxes != 4 {
		t.Fatalf("exit %d, bravo's problems %+v; want %d, one login problem for the 4 mailboxes\n%s", code, ps, exitUsage, stderr)
	}
	if len(out.Problems) != 1 {
		t.Errorf("%d problems, want only bravo's: %+v", len(out.Problems), out.Problems)
	}
	if !strings.Contains(ps[0].Fix, wrong) || !strings.Contains(ps[0].Fix, `"ferry"`) {
		t.Errorf("fix %q does not name the admin and its password file", ps[0].Fix)
	}
	tried := 0
	for _, m := range out.Mailboxes {
		if m.Target == "failed" {
			tried++
		}
	}
	if tried != 2 {
		t.Errorf("%d logins with the wrong admin password, want 2 (then it is the cluster's problem)", tried)
	}

	db := filepath.Join(r.dir, "state.db")
	code, stdout, stderr := runCLI(t, nil, "apply", plan, "-i", inv, "--state", db, "--cutover-exec", "true")
	if code != exitUsage {
		t.Fatalf("apply: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitUsage, stdout, stderr)
	}
	if n := strings.Count(stdout, "refused"); n != 1 {
		t.Errorf("the refused login is reported %d times, want once:\n%s", n, stdout)
	}
	if !strings.Contains(stdout, "cluster bravo (target, 4 mailboxes): login") || !strings.Contains(stdout, "fix: ") ||
		!strings.Contains(stderr, "--skip-preflight") || strings.Contains(stdout, "MESSAGES") {
		t.Errorf("apply does not stop at the preflight with its report:\nstdout:\n%s\nstderr:\n%s", stdout, stderr)
	}
	if strings.Contains(stdout+stderr, "not-the-password") {
		t.Errorf("the password is in the output")
	}
	r.nothingOn("bravo")

	// Without the preflight every move fails alone, each on its refused
	// login: a run whose every move failed on configuration exits 2.
	code, stdout, stderr = runCLI(t, nil, "apply", plan, "-i", inv, "--state", db, "--cutover-exec", "true", "--skip-preflight")
	if code != exitUsage || strings.Count(stdout, "refused") != 4 || !strings.Contains(stderr, "every move failed on its configuration") {
		t.Errorf("apply --skip-preflight: exit %d, want %d with 4 refused moves\nstdout:\n%s\nstderr:\n%s", code, exitUsage, stdout, stderr)
	}
}

// TestPreflightPerMailboxLogins: per-mailbox credentials, one password
// wrong and one mailbox without a line: each is its own problem, named by
// mailbox, the others log in (exit 2); drain stops before copying.
func TestPreflightPerMailboxLogins(t *testing.T) {
	r := newApplyRig(t, 4)
	const wrong, missing = "user02", "user03"
	var creds strings.Builder
	for _, mb := range r.mailboxes {
		switch mb {
		case wrong:
			fmt.Fprintf(&creds, "%s,%s,not-%s\n", mb, mb, r.users[mb])
		case missing:
		default:
			fmt.Fprintf(&creds, "%s,%s,%s\n", mb, mb, r.users[mb])
		}
	}
	credsFile := filepath.Join(r.dir, "alpha.csv")
	must(t, os.WriteFile(credsFile, []byte(creds.String()), 0o600))
	inv := r.writeInventory("creds.yaml", rigInventory{auth: map[string]string{
		"alpha": "{method: credentials-file, credentials_file: " + credsFile + "}"}})
	plan := r.planFile(inv)
	code, out, stderr := runPreflightJSON(t, nil, plan, "-i", inv, "--state", "none")
	if code != exitUsage || len(clusterProblems(out, "alpha")) != 0 || len(out.Problems) != 2 {
		t.Fatalf("exit %d, problems %+v; want %d, one problem for each of %s and %s\n%s", code, out.Problems, exitUsage, wrong, missing, stderr)
	}
	for _, p := range out.Problems {
		switch {
		case p.Mailbox == wrong && p.Kind == preflight.Login && p.Side == "source":
		case p.Mailbox == missing && p.Kind == preflight.Secret && strings.Contains(p.Fix, credsFile):
		default:
			t.Errorf("unexpected problem %+v", p)
		}
	}
	for _, m := range out.Mailboxes {
		if want := m.Mailbox != wrong && m.Mailbox != missing; (m.Source == "ok") != want || m.Target != "ok" {
			t.Errorf("mailbox %+v: source ok %v, target ok", m, want)
		}
	}
	code, stdout, stderr := runCLI(t, nil, "drain", "alpha", "-i", inv, "--yes", "--state", filepath.Join(r.dir, "state.db"))
	if code != exitUsage || !strings.Contains(stdout, wrong) || !strings.Contains(stdout, missing) {
		t.Fatalf("drain: exit %d, want %d naming both mailboxes\nstdout:\n%s\nstderr:\n%s", code, exitUsage, stdout, stderr)
	}
	r.nothingOn("bravo")
	r.nothingOn("charlie")
}

// quotaConf gives every user of a Dovecot a storage quota, visible over
// IMAP (GETQUOTAROOT).
func quotaConf(limit string) []string {
	return []string{
		"mail_plugins = $mail_plugins quota",
		"protocol imap {\n  mail_plugins = $mail_plugins imap_quota\n}",
		"plugin {\n  quota = count:User quota\n  quota_vsizes = yes\n  quota_rule = *:storage=" + limit + "\n}",
	}
}

// TestPreflightQuota: bravo's quota is smaller than the mailboxes. Before
// preflight, apply copied into it until the server refused, and failed
// every move (exit 3). Now each mailbox that does not fit is named with
// what it needs and what is free (exit 6), and apply copies nothing.
func TestPreflightQuota(t *testing.T) {
	r := newApplyRigWith(t, 3, map[string][]string{"bravo": quotaConf("64K")})
	inv := r.writeInventory("quota.yaml", rigInventory{health: map[string]string{"charlie": "readonly"}})
	plan := r.planFile(inv)
	code, out, stderr := runPreflightJSON(t, nil, plan, "-i", inv, "--state", "none")
	if code != exitWontFit {
		t.Fatalf("exit %d, want %d\n%+v\n%s", code, exitWontFit, out, stderr)
	}
	for _, c := range out.Clusters {
		if c.Name == "bravo" && !strings.Contains(strings.Join(c.Capabilities, " "), "QUOTA") {
			t.Errorf("bravo's capabilities %v lack QUOTA", c.Capabilities)
		}
	}
	if len(out.Problems) != 3 {
		t.Errorf("problems %+v, want one per mailbox", out.Problems)
	}
	for _, p := range out.Problems {
		if p.Kind != preflight.Quota || p.Cluster != "bravo" || p.Mailbox == "" || !strings.Contains(p.Message, "64.0 KiB") || !strings.Contains(p.Fix, "quota") {
			t.Errorf("problem %+v: want a quota problem naming the mailbox, bravo's 64 KiB and a fix", p)
		}
	}
	for _, m := range out.Mailboxes {
		if m.QuotaFree == nil || *m.QuotaFree != 64<<10 {
			t.Errorf("mailbox %+v: want 64 KiB free", m)
		}
	}
	code, stdout, stderr := runCLI(t, nil, "apply", plan, "-i", inv, "--state", filepath.Join(r.dir, "state.db"), "--cutover-exec", "true")
	if code != exitWontFit || !strings.Contains(stdout, "quota") || strings.Contains(stdout, "MESSAGES") {
		t.Fatalf("apply: exit %d, want %d with the quota problems\nstdout:\n%s\nstderr:\n%s", code, exitWontFit, stdout, stderr)
	}
	r.nothingOn("bravo")

	// Without the preflight, the old behaviour: copies until the quota
	// refuses, every move fails.
	code, stdout, stderr = runCLI(t, nil, "apply", plan, "-i", inv, "--state", filepath.Join(r.dir, "state.db"), "--cutover-exec", "true", "--skip-preflight")
	if code != exitPartial || !strings.Contains(stdout, "3 failed") {
		t.Errorf("apply --skip-preflight: exit %d, want %d with 3 failed moves\nstdout:\n%s\nstderr:\n%s", code, exitPartial, stdout, stderr)
	}
}

// TestPreflightAppendLimit: bravo names an APPENDLIMIT below some
// messages: preflight finds them on the source (SEARCH LARGER) and says how
// many per mailbox (exit 6).
func TestPreflightAppendLimit(t *testing.T) {
	const limit = 20000
	r := newApplyRigWith(t, 3, map[string][]string{"bravo": {fmt.Sprintf("imap_capability = +APPENDLIMIT=%d", limit)}})
	inv := r.writeInventory("limit.yaml", rigInventory{health: map[string]string{"charlie": "readonly"}})
	plan := r.planFile(inv)
	want := map[string]int{}
	for mb, m := range r.corpora {
		for _, f := range m.Folders {
			for _, msg := range f.Messages {
				if msg.Size > limit {
					want[mb]++
				}
			}
		}
	}
	code, out, stderr := runPreflightJSON(t, nil, plan, "-i", inv, "--state", "none")
	if code != exitWontFit {
		t.Fatalf("exit %d, want %d\n%+v\n%s", code, exitWontFit, out, stderr)
	}
	got := map[string]int{}
	for _, p := range out.Problems {
		if p.Kind != preflight.TooBig || p.Cluster != "bravo" {
			t.Errorf("unexpected problem %+v", p)
		}
	}
	for _, m := range out.Mailboxes {
		if m.TooBig > 0 {
			got[m.Mailbox] = m.TooBig
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || len(want) == 0 {
		t.Errorf("messages above the APPENDLIMIT per mailbox: %v, want %v", got, want)
	}
	for _, c := range out.Clusters {
		if c.Name == "bravo" && c.AppendLimit != limit {
			t.Errorf("bravo: append limit %d, want %d", c.AppendLimit, limit)
		}
	}
}

// TestPreflightTLSOnce: bravo's certificate comes from a CA the inventory
// does not trust, charlie offers no STARTTLS on imap://, and delta's port
// is closed. Each is one problem for its cluster, whatever the number of
// mailboxes (the x509 error printed once, not once per mailbox), saying
// what to fix; drain stops before any copy.
func TestPreflightTLSOnce(t *testing.T) {
	dovecot.Require(t)
	users := map[string]string{}
	for i := range 5 {
		users[fmt.Sprintf("user%02d", i)] = fmt.Sprintf("pw-user%02d", i)
	}
	alpha := dovecot.Start(t, dovecot.Options{Name: "alpha", Users: users, MasterUser: "ferry", MasterPassword: "master-alpha"})
	bravo := dovecot.Start(t, dovecot.Options{Name: "bravo", Users: users, MasterUser: "ferry", MasterPassword: "master-bravo", TLS: true})
	charlie := dovecot.Start(t, dovecot.Options{Name: "charlie", Users: users, MasterUser: "ferry", MasterPassword: "master-charlie"})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	closed := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	for c, pw := range map[string]string{"alpha": "master-alpha", "bravo": "master-bravo", "charlie": "master-charlie", "delta": "x"} {
		must(t, os.WriteFile(filepath.Join(dir, c+".pw"), []byte(pw+"\n"), 0o600))
	}
	var y strings.Builder
	fmt.Fprintf(&y, "clusters:\n  - {name: alpha, url: 'imap://%s', tls: none, health: draining, capacity: {bytes: 10GiB, load: 100}, auth: {method: master, user: ferry, password_file: alpha.pw}}\n", alpha.Addr)
	for _, c := range []struct{ name, addr string }{{"bravo", bravo.Addr}, {"charlie", charlie.Addr}, {"delta", closed}} {
		fmt.Fprintf(&y, "  - {name: %s, url: 'imap://%s', capacity: {bytes: 10GiB, load: 100}, limits: {io_timeout: 5s}, auth: {method: master, user: ferry, password_file: %s.pw}}\n", c.name, c.addr, c.name)
	}
	y.WriteString("mailboxes:\n")
	for mb := range users {
		fmt.Fprintf(&y, "  - {name: %s, cluster: alpha, bytes: 1000, load: 1}\n", mb)
	}
	inv := filepath.Join(dir, "inv.yaml")
	must(t, os.WriteFile(inv, []byte(y.String()), 0o600))
	plan := filepath.Join(dir, "plan.json")
	if code, stdout, stderr := runCLI(t, nil, "plan", "-i", inv, "--drain", "alpha", "-o", plan); code != exitOK {
		t.Fatalf("plan: exit %d\n%s%s", code, stdout, stderr)
	}

	code, out, stderr := runPreflightJSON(t, nil, plan, "-i", inv, "--state", "none")
	if code != exitUsage {
		t.Fatalf("exit %d, want %d\n%+v\n%s", code, exitUsage, out, stderr)
	}
	used := map[string]int{}
	for _, m := range out.Mailboxes {
		used[m.To]++
	}
	t.Logf("mailboxes per target: %v", used)
	for cluster, want := range map[string]struct {
		kind     preflight.Kind
		msg, fix string
	}{
		"bravo":   {preflight.TLS, "certificate", "ca_file"},
		"charlie": {preflight.TLS, "offers no STARTTLS", "tls: none"},
		"delta":   {preflight.Unreachable, "cannot connect", "url"},
	} {
		if used[cluster] == 0 {
			continue
		}
		ps := clusterProblems(out, cluster)
		if len(ps) != 1 || ps[0].Kind != want.kind || !strings.Contains(ps[0].Message, want.msg) || !strings.Contains(ps[0].Fix, want.fix) || ps[0].Mailboxes != used[cluster] {
			t.Errorf("cluster %s (%d mailboxes): problems %+v, want one %s problem saying %q, fix naming %q", cluster, used[cluster], ps, want.kind, want.msg, want.fix)
		}
	}
	if len(out.Problems) != len(used) {
		t.Errorf("%d problems for %d target clusters: %+v", len(out.Problems), len(used), out.Problems)
	}

	code, stdout, stderr := runCLI(t, nil, "drain", "alpha", "-i", inv, "--yes", "--state", filepath.Join(dir, "state.db"))
	if code != exitUsage || strings.Count(stdout, "x509") > 1 || strings.Contains(stdout, "MESSAGES") {
		t.Fatalf("drain: exit %d, want %d with each cluster's problem once\nstdout:\n%s\nstderr:\n%s", code, exitUsage, stdout, stderr)
	}
}

// TestPreflightConnectionCap: the preflight logs in to every mailbox, but
// never with more connections at once to a cluster than its
// limits.connections (bravo, behind a proxy that counts the connections
// the client holds open: 2).
func TestPreflightConnectionCap(t *testing.T) {
	r := newApplyRig(t, 8)
	proxy := newCountingProxy(t, r.clusters["bravo"].Addr)
	y, err := os.ReadFile(r.writeInventory("cap.yaml", rigInventory{health: map[string]string{"charlie": "readonly"}}))
	must(t, err)
	s := strings.Replace(string(y), r.clusters["bravo"].Addr, proxy.addr, 1)
	at := strings.Index(s, proxy.addr)
	s = s[:at] + strings.Replace(s[at:], "connections: 8", "connections: 2", 1)
	inv := filepath.Join(r.dir, "cap.yaml")
	must(t, os.WriteFile(inv, []byte(s), 0o600))
	plan := r.planFile(inv)
	code, out, stderr := runPreflightJSON(t, nil, plan, "-i", inv, "--state", "none")
	if code != exitOK {
		t.Fatalf("exit %d\n%+v\n%s", code, out, stderr)
	}
	for _, c := range out.Clusters {
		if c.Name == "bravo" && c.LoggedIn != 8 {
			t.Errorf("bravo: %d of %d logins, want 8", c.LoggedIn, c.Mailboxes)
		}
	}
	peak, total := proxy.counts()
	t.Logf("bravo: %d connections, at most %d at once", total, peak)
	if peak > 2 || total != 8 {
		t.Errorf("bravo saw %d connections, %d at once; want 8, at most 2 (its cap)", total, peak)
	}
}

// countingProxy forwards TCP connections to an upstream and counts those
// the client holds open. The greeting is held back 20 ms, so that every
// connection lasts that long, and a connection counts from 5 ms after its
// accept to the client's end of the stream: the client closing one and at
// once dialing the next is never seen as two at once.
type countingProxy struct {
	addr              string
	mu                sync.Mutex
	open, peak, total int
}

func newCountingProxy(t *testing.T, upstream string) *countingProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	p := &countingProxy{addr: ln.Addr().String()}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", upstream)
				if err != nil {
					return
				}
				defer u.Close()
				time.Sleep(5 * time.Millisecond)
				p.mu.Lock()
				p.open++
				p.total++
				p.peak = max(p.peak, p.open)
				p.mu.Unlock()
				go func() {
					time.Sleep(15 * time.Millisecond)
					_, _ = io.Copy(c, u)
				}()
				_, _ = io.Copy(u, c) // until the client closes
				p.mu.Lock()
				p.open--
				p.mu.Unlock()
			}()
		}
	}()
	return p
}

func (p *countingProxy) counts() (peak, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.peak, p.total
}
