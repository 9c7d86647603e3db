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

// TLS per cluster, on real Dovecot: alpha speaks no TLS, bravo offers
// STARTTLS with a certificate from its own CA. The inventory's ca_file
// (relative to the inventory) or insecure_skip_verify (warned) reach the
// fleet commands; without either the move fails saying what to set in the
// inventory; imap:// to a server without STARTTLS fails naming the cluster
// unless it says tls: none. The preflight stops such a drain before its
// first move; with --skip-preflight the move fails the same way.
func TestInventoryTLSPerCluster(t *testing.T) {
	dovecot.Require(t)
	users := map[string]string{"user00": "pw-user00"}
	alpha := dovecot.Start(t, dovecot.Options{Name: "alpha", Users: users, MasterUser: "ferry", MasterPassword: "master-alpha"})
	bravo := dovecot.Start(t, dovecot.Options{Name: "bravo", Users: users, MasterUser: "ferry", MasterPassword: "master-bravo", TLS: true})
	m := corpus.Generate(corpus.Options{Seed: 33, Folders: 2, MessagesPerFolder: 3, MaxSize: 8 << 10})
	corpus.Seed(t, alpha.Addr, "user00", users["user00"], m)
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "alpha.pw"), []byte("master-alpha\n"), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "bravo.pw"), []byte("master-bravo\n"), 0o600))
	ca, err := os.ReadFile(bravo.CAFile)
	must(t, err)
	must(t, os.MkdirAll(filepath.Join(dir, "certs"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "certs", "bravo-ca.pem"), ca, 0o644))
	t.Chdir(t.TempDir()) // relative paths are the inventory's, not the working directory's

	inventory := func(name, alphaTLS, bravoTLS string) string {
		inv := filepath.Join(dir, name)
		y := fmt.Sprintf(`clusters:
  - name: alpha
    url: imap://%s
%s    auth: {method: master, user: ferry, password_file: alpha.pw}
    capacity: {bytes: 10GiB, load: 100}
    health: draining
  - name: bravo
    url: imap://%s
%s    auth: {method: master, user: ferry, password_file: bravo.pw}
    capacity: {bytes: 10GiB, load: 100}
mailboxes:
  - {name: user00, cluster: alpha, bytes: %d, load: 1}
`, alpha.Addr, alphaTLS, bravo.Addr, bravoTLS, m.TotalBytes())
		must(t, os.WriteFile(inv, []byte(y), 0o600))
		return inv
	}
	drain := func(inv string, extra ...string) (int, string, *migrate.ApplyReport) {
		t.Helper()
		report := inv + ".report.json"
		code, stdout, stderr := runCLI(t, nil, append([]string{"drain", "alpha", "-i", inv, "--yes", "--state", inv + ".db", "--report", report, "--cutover-exec", "true"}, extra...)...)
		data, err := os.ReadFile(report)
		if err != nil {
			t.Fatalf("%s: no report (exit %d): %v\n%s\n%s", filepath.Base(inv), code, err, stderr, stdout)
		}
		var rep migrate.ApplyReport
		must(t, json.Unmarshal(data, &rep))
		if len(rep.Moves) != 1 {
			t.Fatalf("%s: %d moves, want 1", filepath.Base(inv), len(rep.Moves))
		}
		return code, stderr, &rep
	}
	noTLS := "    tls: none\n"

	// The preflight stops the drain before any move, saying what to set.
	preflightStops := func(t *testing.T, inv, cluster string, want ...string) {
		t.Helper()
		code, stdout, stderr := runCLI(t, nil, "drain", "alpha", "-i", inv, "--yes", "--state", inv+".db", "--cutover-exec", "true")
		if code != exitUsage || !strings.Contains(stdout, "cluster "+cluster+" (") {
			t.Fatalf("drain: exit %d, want %d with the preflight naming %s\nstdout:\n%s\nstderr:\n%s", code, exitUsage, cluster, stdout, stderr)
		}
		for _, w := range want {
			if !strings.Contains(stdout, w) {
				t.Errorf("the preflight report lacks %q:\n%s", w, stdout)
			}
		}
	}
	t.Run("no trust", func(t *testing.T) {
		preflightStops(t, inventory("notrust.yaml", noTLS, ""), "bravo", "ca_file", "certificate")
		code, _, rep := drain(inventory("notrust.yaml", noTLS, ""), "--skip-preflight")
		reason := rep.Moves[0].Reason
		if code != exitUsage || rep.Moves[0].Result != migrate.ResultFailed || !rep.Moves[0].ConfigurationError ||
			!strings.Contains(reason, "cluster bravo") || !strings.Contains(reason, "ca_file") || strings.Contains(reason, "--ca-file") {
			t.Fatalf("exit %d, move %s: %q; want exit 2 (every move failed on configuration), failed, telling to set ca_file for bravo", code, rep.Moves[0].Result, reason)
		}
	})
	t.Run("ca_file", func(t *testing.T) {
		code, stderr, rep := drain(inventory("ca.yaml", noTLS, "    ca_file: certs/bravo-ca.pem\n"))
		if code != exitOK || rep.Moves[0].Result != migrate.ResultDone || rep.Totals.Verified != m.TotalMessages() {
			t.Fatalf("exit %d, move %+v\n%s", code, rep.Moves[0], stderr)
		}
	})
	t.Run("insecure_skip_verify", func(t *testing.T) {
		code, stderr, rep := drain(inventory("insecure.yaml", noTLS, "    insecure_skip_verify: true\n"))
		if code != exitOK || rep.Moves[0].Result != migrate.ResultDone {
			t.Fatalf("exit %d, move %+v\n%s", code, rep.Moves[0], stderr)
		}
		if !strings.Contains(stderr, "warning: cluster bravo: insecure_skip_verify") {
			t.Errorf("no warning about insecure_skip_verify:\n%s", stderr)
		}
	})
	t.Run("STARTTLS required", func(t *testing.T) {
		preflightStops(t, inventory("starttls.yaml", "", "    ca_file: certs/bravo-ca.pem\n"), "alpha", "offers no STARTTLS", "tls: none")
		code, _, rep := drain(inventory("starttls.yaml", "", "    ca_file: certs/bravo-ca.pem\n"), "--skip-preflight")
		reason := rep.Moves[0].Reason
		if code != exitUsage || rep.Moves[0].Result != migrate.ResultFailed || !rep.Moves[0].ConfigurationError ||
			!strings.Contains(reason, "offers no STARTTLS") || !strings.Contains(reason, "cluster alpha") || !strings.Contains(reason, "tls: none") {
			t.Fatalf("exit %d, move %s: %q; want exit 2 (every move failed on configuration), failed, naming alpha and tls: none", code, rep.Moves[0].Result, reason)
		}
	})
}

// migrate: imap:// requires STARTTLS; a server without it is refused with
// the flag that allows clear text, and --from-tls/--to-tls none connect.
func TestMigrateTLSFlags(t *testing.T) {
	dovecot.Require(t)
	src := dovecot.Start(t, dovecot.Options{Name: "src"})
	dst := dovecot.Start(t, dovecot.Options{Name: "dst", TLS: true})
	corpus.Seed(t, src.Addr, "alice", src.Users["alice"], corpus.Generate(corpus.Options{Seed: 34, Folders: 1, MessagesPerFolder: 3, MaxSize: 8 << 10}))
	env := map[string]string{"MAILFERRY_FROM_PASSWORD": src.Users["alice"], "MAILFERRY_TO_PASSWORD": dst.Users["alice"]}
	base := []string{"migrate", "--state", "none", "--from", "imap://alice@" + src.Addr, "--to", "imap://alice@" + dst.Addr, "--ca-file", dst.CAFile}

	code, _, stderr := runCLI(t, env, base...)
	if code != exitFailure || !strings.Contains(stderr, "source: "+src.Addr+" offers no STARTTLS") || !strings.Contains(stderr, "--from-tls none") {
		t.Fatalf("no STARTTLS on the source: exit %d: %s", code, stderr)
	}
	code, stdout, stderr := runCLI(t, env, append(base, "--from-tls", "none")...)
	if code != exitOK || !strings.Contains(stdout, "failed     0") {
		t.Fatalf("--from-tls none, STARTTLS to the target: exit %d\n%s\n%s", code, stderr, stdout)
	}
	for _, bad := range [][]string{{"--from-tls", "maybe"}, {"--from-tls", "tls"}, {"--to-tls", "none", "--to", "imaps://alice@" + dst.TLSAddr}} {
		if code, _, stderr := runCLI(t, env, append(append([]string(nil), base...), bad...)...); code != exitUsage || !strings.Contains(stderr, bad[0]) {
			t.Errorf("%v: exit %d: %s", bad, code, stderr)
		}
	}
}
