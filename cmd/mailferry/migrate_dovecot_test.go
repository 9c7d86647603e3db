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
