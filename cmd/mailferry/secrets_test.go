package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailferry/inventory"
	"mailferry/migrate"
)

// The cutover hook's environment holds no secret: no PostgreSQL client
// variable (PGPASSWORD, PGPASSFILE...), no MAILFERRY_ variable but the
// move's own, no variable the inventory names as a password; the rest of
// the environment is kept.
func TestCutoverHookEnvHoldsNoSecret(t *testing.T) {
	for k, v := range map[string]string{
		"PGPASSWORD": "pg-secret", "PGPASSFILE": "/etc/pgpass-secret", "PGSERVICE": "svc-secret", "PGUSER": "pguser-secret",
		"MAILFERRY_STATE_PASSWORD": "state-secret", "INV_ADMIN_PW": "inv-secret", "KEEP_ME": "kept",
	} {
		t.Setenv(k, v)
	}
	inv := &inventory.Inventory{Clusters: []inventory.Cluster{{Name: "a", Auth: inventory.Auth{Method: inventory.AuthMaster, PasswordEnv: "INV_ADMIN_PW"}}}}
	out := filepath.Join(t.TempDir(), "env")
	hook := cutoverHook(func(string, ...any) {}, "env > "+out, time.Minute, inv)
	if err := hook(context.Background(), migrate.Move{Mailbox: "alice", From: "a", To: "b"}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	env := string(data)
	for _, line := range strings.Split(env, "\n") {
		if strings.HasPrefix(line, "PG") || strings.Contains(line, "secret") {
			t.Errorf("hook environment holds %q", line)
		}
	}
	for _, want := range []string{"KEEP_ME=kept", "MAILFERRY_MAILBOX=alice", "MAILFERRY_FROM=a", "MAILFERRY_TO=b"} {
		if !strings.Contains(env, want+"\n") {
			t.Errorf("hook environment lacks %s:\n%s", want, env)
		}
	}
}

// A malformed --from or --to URL holding a password is quoted in the error
// with the password masked.
func TestMalformedURLErrorsHidePassword(t *testing.T) {
	pw := writeFile(t, "x\n")
	for _, bad := range []string{
		"imap://alice:s3cr3t@127.0.0.1:bad",
		"imap://alice:s3cr3t@127.0.0.1:99999",
		"alice:s3cr3t@127.0.0.1",
		"imap://alice:s3cr3t%zz@127.0.0.1",
		"pop3://alice:s3cr3t@127.0.0.1",
	} {
		for _, flag := range []string{"--from", "--to"} {
			args := []string{"migrate", "--from", "imap://a@127.0.0.1:1", "--to", "imap://a@127.0.0.1:2", "--from-password-file", pw, "--to-password-file", pw}
			if flag == "--from" {
				args[2] = bad
			} else {
				args[4] = bad
			}
			code, stdout, stderr := runCLI(t, nil, args...)
			if code != exitUsage {
				t.Errorf("%s %s: exit %d, want %d (%s)", flag, bad, code, exitUsage, stderr)
			}
			if strings.Contains(stdout+stderr, "s3cr3t") {
				t.Errorf("%s %s: the error shows the password: %s", flag, bad, stderr)
			}
			if !strings.Contains(stderr, flag) {
				t.Errorf("%s %s: the error does not name the flag: %s", flag, bad, stderr)
			}
		}
	}
}

// inventory check says what is wrong with the secrets an inventory
// references (exit 2), instead of ok.
func TestInventoryCheckSecrets(t *testing.T) {
	dir := t.TempDir()
	inv := filepath.Join(dir, "inv.yaml")
	must(t, os.WriteFile(inv, []byte(`clusters:
  - name: a
    url: imaps://a.example
    auth: {method: master, user: admin, password_file: a.pw}
    capacity: {bytes: 1TiB, load: 1}
  - name: b
    url: imaps://b.example
    auth: {method: master, user: admin, password_env: MF_TEST_B_PW}
    capacity: {bytes: 1TiB, load: 1}
`), 0o600))
	t.Setenv("MF_TEST_B_PW", "")
	code, stdout, _ := runCLI(t, nil, "inventory", "check", "-i", inv)
	if code != exitUsage || strings.Contains(stdout, "ok") {
		t.Fatalf("exit %d, want %d:\n%s", code, exitUsage, stdout)
	}
	for _, w := range []string{inv + ":4: clusters[a].auth.password_file:", filepath.Join(dir, "a.pw"), inv + ":8: clusters[b].auth.password_env: environment variable $MF_TEST_B_PW is not set"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("output lacks %q:\n%s", w, stdout)
		}
	}
	must(t, os.WriteFile(filepath.Join(dir, "a.pw"), []byte("pw\n"), 0o640))
	t.Setenv("MF_TEST_B_PW", "set")
	if code, stdout, _ = runCLI(t, nil, "inventory", "check", "-i", inv); code != exitUsage || !strings.Contains(stdout, "has mode 0640") {
		t.Fatalf("group-readable password file: exit %d:\n%s", code, stdout)
	}
	must(t, os.Chmod(filepath.Join(dir, "a.pw"), 0o600))
	if code, stdout, _ = runCLI(t, nil, "inventory", "check", "-i", inv); code != exitOK || !strings.Contains(stdout, "ok: 2 clusters") {
		t.Fatalf("good secrets: exit %d:\n%s", code, stdout)
	}
	if code, stdout, _ = runCLI(t, nil, "inventory", "check", "-i", inv, "--skip-secrets"); code != exitOK {
		t.Fatalf("--skip-secrets: exit %d:\n%s", code, stdout)
	}
}
