package main

import (
	"encoding/base64"
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

// --debug-imap against real Dovecot with passwords that are not plain
// ASCII: the source logs in with LOGIN (go-imap sends such a password as a
// literal), the target as a master user with SASL PLAIN. The trace shows
// both logins, never a password's bytes or its SASL encoding.
func TestDebugIMAPHidesLiteralPassword(t *testing.T) {
	dovecot.Require(t)
	const pw, master = "pässwörd-ü€", "mäster-pw€"
	users := map[string]string{"alice": pw}
	src := dovecot.Start(t, dovecot.Options{Name: "src", Users: users})
	dst := dovecot.Start(t, dovecot.Options{Name: "dst", Users: users, MasterUser: "admin", MasterPassword: master})
	corpus.Seed(t, src.Addr, "alice", pw, corpus.Generate(corpus.Options{Seed: 12, Folders: 1, MessagesPerFolder: 2, MaxSize: 4 << 10}))
	code, stdout, stderr := runCLI(t, map[string]string{"MAILFERRY_FROM_PASSWORD": pw, "MAILFERRY_TO_PASSWORD": master},
		"migrate", "--from-tls", "none", "--to-tls", "none", "--debug-imap", "--state", "none",
		"--from", "imap://alice@"+src.Addr, "--to", "imap://alice@"+dst.Addr, "--to-admin", "admin")
	if code != exitOK {
		t.Fatalf("exit %d\nstderr:\n%s\nstdout:\n%s", code, stderr, stdout)
	}
	if !strings.Contains(stderr, "source: ") || !strings.Contains(stderr, "LOGIN <redacted>") || !strings.Contains(stderr, "AUTHENTICATE PLAIN") {
		t.Fatalf("the trace shows no redacted LOGIN and AUTHENTICATE:\n%s", stderr)
	}
	plain := base64.StdEncoding.EncodeToString([]byte("alice\x00admin\x00" + master))
	for _, part := range []string{pw, "pässwörd", "ü€", master, "mäster", plain, plain[8:24]} {
		if strings.Contains(stderr+stdout, part) {
			t.Fatalf("the trace leaks a password (%q):\n%s", part, stderr)
		}
	}
}

// An inventory naming its password files relative to itself works from any
// working directory (a cron job's is not the operator's): the moves log in
// and finish.
func TestInventoryRelativePasswordFiles(t *testing.T) {
	r := newApplyRig(t, 2)
	auth := map[string]string{}
	for _, c := range rigClusters {
		auth[c] = fmt.Sprintf("{method: master, user: %s, password_file: %s.pw}", r.clusters[c].MasterUser, c)
	}
	inv := r.writeInventory("relative.yaml", rigInventory{auth: auth})
	t.Chdir(t.TempDir())
	if code, stdout, stderr := runCLI(t, nil, "inventory", "check", "-i", inv); code != exitOK {
		t.Fatalf("inventory check: exit %d\n%s%s", code, stdout, stderr)
	}
	report := filepath.Join(r.dir, "report.json")
	code, stdout, stderr := runCLI(t, nil, "drain", "alpha", "-i", inv, "--yes", "--state", filepath.Join(r.dir, "state.db"),
		"--report", report, "--cutover-exec", "true")
	if code != exitOK {
		t.Fatalf("drain from another directory: exit %d\nstderr:\n%s\nstdout:\n%s", code, stderr, stdout)
	}
	data, err := os.ReadFile(report)
	must(t, err)
	var rep migrate.ApplyReport
	must(t, json.Unmarshal(data, &rep))
	if rep.Totals.Done != 2 {
		t.Fatalf("report totals %+v", rep.Totals)
	}
	r.exact(&rep)
}
