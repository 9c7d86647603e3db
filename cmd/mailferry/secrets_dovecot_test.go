package main

import (
	"strings"
	"testing"

	"mailferry/internal/testrig/corpus"
	"mailferry/internal/testrig/dovecot"
)

// --debug-imap against real Dovecot with a password that is not plain
// ASCII (go-imap sends it as a literal): the trace shows the LOGIN, never
// the password's bytes.
func TestDebugIMAPHidesLiteralPassword(t *testing.T) {
	dovecot.Require(t)
	const pw = "pässwörd-ü€"
	users := map[string]string{"alice": pw}
	src := dovecot.Start(t, dovecot.Options{Name: "src", Users: users})
	dst := dovecot.Start(t, dovecot.Options{Name: "dst", Users: users})
	corpus.Seed(t, src.Addr, "alice", pw, corpus.Generate(corpus.Options{Seed: 12, Folders: 1, MessagesPerFolder: 2, MaxSize: 4 << 10}))
	code, stdout, stderr := runCLI(t, map[string]string{"MAILFERRY_FROM_PASSWORD": pw, "MAILFERRY_TO_PASSWORD": pw},
		"migrate", "--debug-imap", "--state", "none", "--from", "imap://alice@"+src.Addr, "--to", "imap://alice@"+dst.Addr)
	if code != exitOK {
		t.Fatalf("exit %d\nstderr:\n%s\nstdout:\n%s", code, stderr, stdout)
	}
	if !strings.Contains(stderr, "LOGIN <redacted>") {
		t.Fatalf("the trace shows no redacted LOGIN:\n%s", stderr)
	}
	for _, part := range []string{pw, "pässwörd", "ü€"} {
		if strings.Contains(stderr+stdout, part) {
			t.Fatalf("the trace leaks the password (%q):\n%s", part, stderr)
		}
	}
}
