package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mailferry/internal/testrig/corpus"
	"mailferry/internal/testrig/memserver"
)

// TestMain points the default state (and that of every mailferry the tests
// start) into a temporary directory, never the user's home.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mailferry-test-state-")
	if err != nil {
		panic(err)
	}
	os.Setenv("XDG_STATE_HOME", dir)
	os.Unsetenv(stateEnv)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runCLI runs the command tree as main does and returns exit code, stdout
// and stderr.
func runCLI(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	_, ownState := env[stateEnv]
	if _, ownXDG := env["XDG_STATE_HOME"]; !ownState && !ownXDG {
		// Each run its own default state (TestMain keeps every test
		// away from the real home's state too).
		t.Setenv("XDG_STATE_HOME", t.TempDir())
	}
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMigrateUsageErrors(t *testing.T) {
	pw := writeFile(t, "x\n")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no urls", []string{"migrate"}, "needs --from and --to"},
		{"bad verify", []string{"migrate", "--from", "imap://a@127.0.0.1:1", "--to", "imap://a@127.0.0.1:2", "--verify", "some", "--from-password-file", pw, "--to-password-file", pw}, "--verify"},
		{"password in url", []string{"migrate", "--from", "imap://a:secret@127.0.0.1:1", "--to", "imap://a@127.0.0.1:2"}, "password inside the URL"},
		{"no password", []string{"migrate", "--from", "imap://a@127.0.0.1:1", "--to", "imap://a@127.0.0.1:2"}, "source password"},
		{"missing password file", []string{"migrate", "--from", "imap://a@127.0.0.1:1", "--to", "imap://a@127.0.0.1:2", "--from-password-file", "/nonexistent/pw"}, "/nonexistent/pw"},
		{"bad exclude", []string{"migrate", "--from", "imap://a@127.0.0.1:1", "--to", "imap://a@127.0.0.1:2", "--from-password-file", pw, "--to-password-file", pw, "--exclude", "(["}, "--exclude"},
		{"bad folder map", []string{"migrate", "--from", "imap://a@127.0.0.1:1", "--to", "imap://a@127.0.0.1:2", "--from-password-file", pw, "--to-password-file", pw, "--folder-map", "nodest"}, "SRC=DST"},
		{"unknown flag", []string{"migrate", "--frm", "x"}, "unknown flag"},
		{"bad window", []string{"migrate", "--from", "imap://a@127.0.0.1:1", "--to", "imap://a@127.0.0.1:2", "--from-password-file", pw, "--to-password-file", pw, "--window", "9-5"}, "--window"},
		{"bad rate", []string{"migrate", "--from", "imap://a@127.0.0.1:1", "--to", "imap://a@127.0.0.1:2", "--from-password-file", pw, "--to-password-file", pw, "--max-bytes-per-second", "fast"}, "--max-bytes-per-second"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("MAILFERRY_FROM_PASSWORD", "")
			t.Setenv("MAILFERRY_TO_PASSWORD", "")
			code, _, stderr := runCLI(t, nil, tt.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d; stderr %q", code, exitUsage, stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr %q lacks %q", stderr, tt.want)
			}
			if strings.Contains(stderr, "secret") || strings.Contains(stderr, "goroutine") {
				t.Errorf("stderr leaks a secret or a stack trace: %q", stderr)
			}
		})
	}
}

func seededPair(t *testing.T) (src, dst *memserver.Server, mbox *corpus.Mailbox) {
	t.Helper()
	var err error
	if src, err = memserver.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	if dst, err = memserver.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dst.Close() })
	mbox = corpus.Generate(corpus.Options{Seed: 7, Folders: 5, MessagesPerFolder: 6, MaxSize: 64 << 10})
	if err := seedMem(context.Background(), nil, src.AddUser("alice", "src-pw"), mbox); err != nil {
		t.Fatal(err)
	}
	dst.AddUser("alice", "dst-pw")
	return src, dst, mbox
}

func TestMigrateSideErrorsAreOneLine(t *testing.T) {
	src, dst, _ := seededPair(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	tests := []struct {
		name, from, to, fromPW, toPW string
		want                         []string
	}{
		{"wrong source password", src.Addr, dst.Addr, "nope", "dst-pw", []string{"source:", "refused"}},
		{"wrong target password", src.Addr, dst.Addr, "src-pw", "nope", []string{"target:", "refused"}},
		{"target unreachable", src.Addr, closed, "src-pw", "dst-pw", []string{"target:", "cannot connect", closed}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, map[string]string{"MAILFERRY_FROM_PASSWORD": tt.fromPW, "MAILFERRY_TO_PASSWORD": tt.toPW},
				"migrate", "--from-tls", "none", "--to-tls", "none", "--from", "imap://alice@"+tt.from, "--to", "imap://alice@"+tt.to)
			if code != exitFailure {
				t.Errorf("exit %d, want %d", code, exitFailure)
			}
			if strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("want one line on stderr, got %q", stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q lacks %q", stderr, w)
				}
			}
			for _, secret := range []string{"nope", "src-pw", "dst-pw"} {
				if strings.Contains(stderr+stdout, secret) {
					t.Errorf("output leaks password %q: %q", secret, stderr+stdout)
				}
			}
		})
	}
}

func TestMigrateJSONReport(t *testing.T) {
	src, dst, mbox := seededPair(t)
	code, stdout, stderr := runCLI(t, map[string]string{"MAILFERRY_FROM_PASSWORD": "src-pw", "MAILFERRY_TO_PASSWORD": "dst-pw"},
		"migrate", "--from-tls", "none", "--to-tls", "none", "--json", "--from", "imap://alice@"+src.Addr, "--to", "imap://alice@"+dst.Addr)
	if code != exitOK {
		t.Fatalf("exit %d; stderr %q; stdout %s", code, stderr, stdout)
	}
	var rep map[string]any
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, stdout)
	}
	for _, k := range []string{"mailbox", "folders", "messages", "bytes", "copied", "verified", "failed", "seconds"} {
		if _, ok := rep[k]; !ok {
			t.Errorf("report lacks %q", k)
		}
	}
	n := float64(mbox.TotalMessages())
	if rep["mailbox"] != "alice" || rep["messages"] != n || rep["verified"] != n || rep["failed"] != 0.0 || rep["bytes"] != float64(mbox.TotalBytes()) {
		t.Errorf("report %v: want alice, %v messages of %d bytes, all verified, 0 failed", rep, n, mbox.TotalBytes())
	}
}

// The default state does not depend on the working directory: a run from
// another directory (cron) resumes the migration instead of starting over.
// It lives in the XDG state directory, created 0700, or $MAILFERRY_STATE.
func TestDefaultStateIgnoresWorkingDirectory(t *testing.T) {
	src, dst, mbox := seededPair(t)
	xdg := t.TempDir()
	env := map[string]string{"MAILFERRY_FROM_PASSWORD": "src-pw", "MAILFERRY_TO_PASSWORD": "dst-pw", "XDG_STATE_HOME": xdg}
	args := []string{"migrate", "--from-tls", "none", "--to-tls", "none", "--json", "--from", "imap://alice@" + src.Addr, "--to", "imap://alice@" + dst.Addr}
	var reps []map[string]any
	for _, dir := range []string{t.TempDir(), t.TempDir()} {
		t.Chdir(dir)
		reps = append(reps, migrateJSON(t, env, args...))
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("the run left %d files in its working directory", len(entries))
		}
	}
	n := float64(mbox.TotalMessages())
	if reps[1]["already_copied"] != n || reps[1]["adopted"] != 0.0 {
		t.Errorf("second run from another directory: already copied %v, adopted %v; want %v and 0 (the state resumed)", reps[1]["already_copied"], reps[1]["adopted"], n)
	}
	fi, err := os.Stat(filepath.Join(xdg, "mailferry"))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("default state directory: %v, mode %v; want it, 0700", err, fi)
	}
	// $MAILFERRY_STATE names another state: a new migration there (which
	// adopts what the target has instead of copying it again).
	env[stateEnv] = filepath.Join(t.TempDir(), "other.db")
	if rep := migrateJSON(t, env, args...); rep["adopted"] != n {
		t.Errorf("with $MAILFERRY_STATE: adopted %v, want %v", rep["adopted"], n)
	}
	if _, err := os.Stat(env[stateEnv]); err != nil {
		t.Errorf("$MAILFERRY_STATE not used: %v", err)
	}
}

// migrateJSON runs a command that must exit 0 and print one JSON report
// (migrate --json), and returns the report.
func migrateJSON(t *testing.T, env map[string]string, args ...string) map[string]any {
	t.Helper()
	code, stdout, stderr := runCLI(t, env, args...)
	if code != exitOK {
		t.Fatalf("%v: exit %d; stderr %q", args[0], code, stderr)
	}
	var rep map[string]any
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v: stdout is not one JSON object: %v\n%s", args[0], err, stdout)
	}
	return rep
}

func TestVersion(t *testing.T) {
	code, stdout, _ := runCLI(t, nil, "version")
	if code != exitOK || !strings.HasPrefix(stdout, "mailferry ") {
		t.Fatalf("version: exit %d, %q", code, stdout)
	}
}
