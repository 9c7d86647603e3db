package main

import (
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailferry/internal/testrig/corpus"
	"mailferry/internal/testrig/dovecot"
	"mailferry/internal/testrig/faultproxy"
)

// The CLI on real Dovecot: a message that stays corrupt on its way to the
// target makes the run exit 3 and list it; the rest is copied and verified.
func TestMigrateExit3ListsFailures(t *testing.T) {
	dovecot.Require(t)
	src := dovecot.Start(t, dovecot.Options{Name: "src"})
	dst := dovecot.Start(t, dovecot.Options{Name: "dst", Separator: "/"})
	marker := "CORRUPTED-IN-TRANSIT"
	body := "From: a@example.net\r\nSubject: doomed\r\n\r\n" + marker + "\r\n"
	m := corpus.Generate(corpus.Options{Seed: 2, Folders: 3, MessagesPerFolder: 4, MaxSize: 32 << 10})
	m.Folders[1].Messages = append(m.Folders[1].Messages, corpus.Message{Size: int64(len(body)), Date: time.Unix(1600000000, 0).UTC(),
		Open: func() io.Reader { return strings.NewReader(body) }})
	corpus.Seed(t, src.Addr, "alice", src.Users["alice"], m)
	proxy := faultproxy.Start(t, dst.Addr)
	proxy.CorruptUpstream([]byte(marker), -1)
	pw := writeFile(t, dst.Users["alice"]+"\n")
	code, stdout, stderr := runCLI(t, map[string]string{"MAILFERRY_FROM_PASSWORD": src.Users["alice"]},
		"migrate", "--from-tls", "none", "--to-tls", "none", "--from", "imap://alice@"+src.Addr, "--to", "imap://alice@"+proxy.Addr, "--to-password-file", pw)
	if code != exitPartial {
		t.Fatalf("exit %d, want %d; stderr %q\n%s", code, exitPartial, stderr, stdout)
	}
	folder := strings.Join(m.Folders[1].Path, "/")
	wantLines := []string{"failed     1", "verified   " + itoa(m.TotalMessages()-1), "failures:", `"` + folder + `" uid `, "SHA-256"}
	for _, w := range wantLines {
		if !strings.Contains(stdout, w) {
			t.Errorf("output lacks %q:\n%s", w, stdout)
		}
	}
	if !strings.Contains(stderr, "1 of "+itoa(m.TotalMessages())+" messages failed") {
		t.Errorf("stderr %q does not summarise the failure", stderr)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// A migration is the mailbox on its two servers, not the way mailferry
// logs in or the working directory it runs from: reaching the same
// mailboxes as localhost instead of 127.0.0.1, through an admin login, and
// from another directory (the default state is not in it) resumes the
// migration instead of starting it over.
func TestMigrateStateIdentity(t *testing.T) {
	dovecot.Require(t)
	src := dovecot.Start(t, dovecot.Options{Name: "src"})
	dst := dovecot.Start(t, dovecot.Options{Name: "dst", Separator: "/"})
	m := corpus.Generate(corpus.Options{Seed: 4, Folders: 4, MessagesPerFolder: 8, MaxSize: 16 << 10})
	corpus.Seed(t, src.Addr, "alice", src.Users["alice"], m)
	env := map[string]string{"XDG_STATE_HOME": t.TempDir()}
	run := func(args ...string) map[string]any {
		t.Helper()
		t.Chdir(t.TempDir())
		return migrateJSON(t, env, append([]string{"migrate", "--json", "--from-tls", "none", "--to-tls", "none"}, args...)...)
	}
	srcPort := src.Addr[strings.LastIndex(src.Addr, ":")+1:]
	env["MAILFERRY_FROM_PASSWORD"], env["MAILFERRY_TO_PASSWORD"] = src.Users["alice"], dst.Users["alice"]
	first := run("--from", "imap://alice@"+src.Addr, "--to", "imap://alice@"+dst.Addr)
	if first["copied"] != float64(m.TotalMessages()) {
		t.Fatalf("first run copied %v of %d", first["copied"], m.TotalMessages())
	}
	env["MAILFERRY_FROM_PASSWORD"] = src.MasterPassword
	again := run("--from", "imap://alice@localhost:"+srcPort, "--from-admin", src.MasterUser, "--to", "imap://alice@"+dst.Addr)
	if again["already_copied"] != float64(m.TotalMessages()) || again["adopted"] != 0.0 {
		t.Errorf("same mailboxes through localhost and an admin login: already copied %v, adopted %v; want %d, 0 (the migration resumed)",
			again["already_copied"], again["adopted"], m.TotalMessages())
	}
}
