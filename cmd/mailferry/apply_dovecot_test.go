package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mailferry/internal/corpus"
	"mailferry/internal/dovecot"
	"mailferry/migrate"
)

// applyRig is three Dovecot clusters (alpha overloaded, bravo and charlie
// with room) sharing mailbox names, an inventory naming them with master
// logins, and mailboxes seeded on alpha.
type applyRig struct {
	t         *testing.T
	dir       string
	inv       string
	clusters  map[string]*dovecot.Server
	mailboxes []string
	corpora   map[string]*corpus.Mailbox
}

func newApplyRig(t *testing.T, n int) *applyRig {
	t.Helper()
	dovecot.Require(t)
	r := &applyRig{t: t, dir: t.TempDir(), clusters: map[string]*dovecot.Server{}, corpora: map[string]*corpus.Mailbox{}}
	users := map[string]string{}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("user%02d", i)
		users[name] = "pw-" + name
		r.mailboxes = append(r.mailboxes, name)
	}
	for _, c := range []string{"alpha", "bravo", "charlie"} {
		sep := "."
		if c != "alpha" {
			sep = "/"
		}
		r.clusters[c] = dovecot.Start(t, dovecot.Options{Name: c, Separator: sep, Users: users,
			MasterUser: "ferry", MasterPassword: "master-" + c})
	}
	var yaml strings.Builder
	yaml.WriteString("clusters:\n")
	for _, c := range []string{"alpha", "bravo", "charlie"} {
		s := r.clusters[c]
		pw := filepath.Join(r.dir, c+".pw")
		must(t, os.WriteFile(pw, []byte(s.MasterPassword+"\n"), 0o600))
		health, load := "healthy", 100
		if c == "alpha" {
			health = "degraded"
		}
		fmt.Fprintf(&yaml, "  - name: %s\n    url: imap://%s\n    tls: none\n    auth: {method: master, user: %s, password_file: %s}\n"+
			"    capacity: {bytes: 10GiB, load: %d}\n    health: %s\n    limits: {connections: 8}\n", c, s.Addr, s.MasterUser, pw, load, health)
	}
	yaml.WriteString("mailboxes:\n")
	for i, mb := range r.mailboxes {
		m := corpus.Generate(corpus.Options{Seed: uint64(100 + i), Folders: 3, MessagesPerFolder: 4, MaxSize: 48 << 10})
		corpus.Seed(t, r.clusters["alpha"].Addr, mb, users[mb], m)
		r.corpora[mb] = m
		fmt.Fprintf(&yaml, "  - {name: %s, cluster: alpha, bytes: %d, load: 1}\n", mb, m.TotalBytes())
	}
	r.inv = filepath.Join(r.dir, "inv.yaml")
	must(t, os.WriteFile(r.inv, []byte(yaml.String()), 0o600))
	return r
}

// exact asserts every mailbox is on the cluster the report says, equal to
// its source.
func (r *applyRig) exact(rep *migrate.ApplyReport) {
	r.t.Helper()
	for _, m := range rep.Moves {
		src, dst := r.clusters[m.From], r.clusters[m.To]
		a := corpus.TakeSnapshot(r.t, src.Addr, m.Mailbox, src.Users[m.Mailbox])
		b := corpus.TakeSnapshot(r.t, dst.Addr, m.Mailbox, dst.Users[m.Mailbox])
		if diff := corpus.Compare(a, b, nil); len(diff) > 0 {
			r.t.Errorf("%s on %s differs from %s:\n%s", m.Mailbox, m.To, m.From, strings.Join(diff, "\n"))
		}
	}
}

// drain --yes moves every mailbox off alpha, verified, and the cutover hook
// runs once per mailbox.
func TestApplyDrainSmoke(t *testing.T) {
	r := newApplyRig(t, 6)
	db := filepath.Join(r.dir, "state.db")
	hookLog := filepath.Join(r.dir, "hook.log")
	report := filepath.Join(r.dir, "report.json")
	code, stdout, stderr := runCLI(t, nil, "drain", "alpha", "-i", r.inv, "--yes", "--state", db, "--report", report,
		"--cutover-exec", "echo \"$MAILFERRY_MAILBOX $MAILFERRY_FROM $MAILFERRY_TO\" >> "+hookLog)
	if code != exitOK {
		t.Fatalf("drain: exit %d\nstderr:\n%s\nstdout:\n%s", code, stderr, stdout)
	}
	data, err := os.ReadFile(report)
	must(t, err)
	var rep migrate.ApplyReport
	must(t, json.Unmarshal(data, &rep))
	if rep.Totals.Done != len(r.mailboxes) || rep.Totals.Verified != rep.Totals.Messages {
		t.Fatalf("report totals %+v", rep.Totals)
	}
	r.exact(&rep)
	hooks, err := os.ReadFile(hookLog)
	must(t, err)
	if n := strings.Count(string(hooks), "\n"); n != len(r.mailboxes) {
		t.Errorf("hook ran %d times for %d mailboxes:\n%s", n, len(r.mailboxes), hooks)
	}
	// A rerun finds everything done.
	code, stdout, _ = runCLI(t, nil, "drain", "alpha", "-i", r.inv, "--yes", "--state", db)
	if code != exitOK || !strings.Contains(stdout, fmt.Sprintf("%d skipped", len(r.mailboxes))) {
		t.Errorf("rerun: exit %d\n%s", code, stdout)
	}
}
