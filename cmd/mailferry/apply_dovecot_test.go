package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mailferry/internal/testrig/corpus"
	"mailferry/internal/testrig/dovecot"
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
	users     map[string]string // mailbox -> its own password (same on every cluster)
	mailboxes []string
	corpora   map[string]*corpus.Mailbox
}

// rigClusters are the rig's clusters in inventory order.
var rigClusters = []string{"alpha", "bravo", "charlie"}

func newApplyRig(t *testing.T, n int) *applyRig {
	t.Helper()
	return newApplyRigWith(t, n, nil)
}

// newApplyRigWith is newApplyRig with more dovecot.conf lines per cluster.
func newApplyRigWith(t *testing.T, n int, extra map[string][]string) *applyRig {
	t.Helper()
	dovecot.Require(t)
	r := &applyRig{t: t, dir: t.TempDir(), clusters: map[string]*dovecot.Server{}, users: map[string]string{}, corpora: map[string]*corpus.Mailbox{}}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("user%02d", i)
		r.users[name] = "pw-" + name
		r.mailboxes = append(r.mailboxes, name)
	}
	for _, c := range rigClusters {
		sep := "."
		if c != "alpha" {
			sep = "/"
		}
		r.clusters[c] = dovecot.Start(t, dovecot.Options{Name: c, Separator: sep, Users: r.users,
			MasterUser: "ferry", MasterPassword: "master-" + c, Extra: extra[c]})
		pw := filepath.Join(r.dir, c+".pw")
		must(t, os.WriteFile(pw, []byte(r.clusters[c].MasterPassword+"\n"), 0o600))
	}
	for i, mb := range r.mailboxes {
		m := corpus.Generate(corpus.Options{Seed: uint64(100 + i), Folders: 3, MessagesPerFolder: 4, MaxSize: 48 << 10})
		corpus.Seed(t, r.clusters["alpha"].Addr, mb, r.users[mb], m)
		r.corpora[mb] = m
	}
	r.inv = r.writeInventory("inv.yaml", rigInventory{})
	return r
}

// rigInventory varies the rig's inventory.
type rigInventory struct {
	load   map[string]int    // a cluster's capacity load; default 100
	auth   map[string]string // a cluster's auth as YAML flow; default its master login
	extra  []string          // more mailbox entries (YAML flow mappings)
	health map[string]string // a cluster's health; default degraded for alpha, healthy for the others
	on     map[string]string // the cluster a mailbox is on; default alpha
}

// writeInventory writes an inventory of the rig's clusters and mailboxes
// (all on alpha) to name in the rig's directory and returns its path.
func (r *applyRig) writeInventory(name string, o rigInventory) string {
	r.t.Helper()
	var yaml strings.Builder
	yaml.WriteString("clusters:\n")
	for _, c := range rigClusters {
		s := r.clusters[c]
		health, load := "healthy", 100
		if c == "alpha" {
			health = "degraded"
		}
		if l, ok := o.load[c]; ok {
			load = l
		}
		if h, ok := o.health[c]; ok {
			health = h
		}
		auth := fmt.Sprintf("{method: master, user: %s, password_file: %s}", s.MasterUser, filepath.Join(r.dir, c+".pw"))
		if a, ok := o.auth[c]; ok {
			auth = a
		}
		fmt.Fprintf(&yaml, "  - name: %s\n    url: imap://%s\n    tls: none\n    auth: %s\n"+
			"    capacity: {bytes: 10GiB, load: %d}\n    health: %s\n    limits: {connections: 8}\n", c, s.Addr, auth, load, health)
	}
	yaml.WriteString("mailboxes:\n")
	for _, mb := range r.mailboxes {
		on := "alpha"
		if c, ok := o.on[mb]; ok {
			on = c
		}
		fmt.Fprintf(&yaml, "  - {name: %s, cluster: %s, bytes: %d, load: 1}\n", mb, on, r.corpora[mb].TotalBytes())
	}
	for _, e := range o.extra {
		fmt.Fprintf(&yaml, "  - %s\n", e)
	}
	path := filepath.Join(r.dir, name)
	must(r.t, os.WriteFile(path, []byte(yaml.String()), 0o600))
	return path
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
	// A rerun finds everything done: the drain plans from where the done
	// moves put the mailboxes, so nothing is left on alpha.
	code, stdout, stderr = runCLI(t, nil, "drain", "alpha", "-i", r.inv, "--yes", "--state", db)
	if code != exitOK || !strings.Contains(stderr, "nothing to move") || !strings.Contains(stderr, fmt.Sprintf("%d mailboxes placed where done moves took them", len(r.mailboxes))) {
		t.Errorf("rerun: exit %d\n%s\n%s", code, stdout, stderr)
	}
}
