package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailferry/internal/imapconn"
	"mailferry/state"
	"mailferry/state/statetest"
)

var statePasswords = map[string]string{"MAILFERRY_FROM_PASSWORD": "src-pw", "MAILFERRY_TO_PASSWORD": "dst-pw"}

func migrationKey(t *testing.T, from, to string) state.Key {
	t.Helper()
	s, err := imapconn.ParseEndpoint(from)
	if err != nil {
		t.Fatal(err)
	}
	d, err := imapconn.ParseEndpoint(to)
	if err != nil {
		t.Fatal(err)
	}
	return state.Key{Source: s.Key(), Target: d.Key()}
}

// migrate records its progress; status lists it (text and JSON); a rerun
// says what earlier runs copied.
func TestMigrateStateAndStatus(t *testing.T) {
	src, dst, mbox := seededPair(t)
	db := filepath.Join(t.TempDir(), "ferry.db")
	args := []string{"migrate", "--from-tls", "none", "--to-tls", "none", "--state", db, "--from", "imap://alice@" + src.Addr, "--to", "imap://alice@" + dst.Addr}
	if code, stdout, stderr := runCLI(t, statePasswords, args...); code != exitOK {
		t.Fatalf("migrate: exit %d; %s %s", code, stderr, stdout)
	}
	if fi, err := os.Stat(db); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v, mode %v; want 0600", err, fi.Mode())
	}
	code, stdout, stderr := runCLI(t, nil, "status", "--state", db, "--json")
	if code != exitOK {
		t.Fatalf("status: exit %d; %s", code, stderr)
	}
	var list []statusEntry
	if err := json.Unmarshal([]byte(stdout), &list); err != nil {
		t.Fatalf("status --json: %v\n%s", err, stdout)
	}
	n := int64(mbox.TotalMessages())
	if len(list) != 1 || list[0].Phase != "done" || list[0].MessagesDone != n || list[0].MessagesTotal != n ||
		list[0].Verified != n || list[0].BytesDone != mbox.TotalBytes() || list[0].Holder != nil {
		t.Fatalf("status = %+v; want one done migration of %d messages", list, n)
	}
	if e := list[0]; e.Mailbox != "alice" || e.From != "imap://"+src.Addr || e.To != "imap://"+dst.Addr || e.LastActivity.IsZero() {
		t.Errorf("status entry %+v: want mailbox alice from imap://%s to imap://%s, with its activity", e, src.Addr, dst.Addr)
	}
	if e := list[0]; e.Totals.Passes != 1 || e.Totals.Copied != n || len(e.Passes) != 1 || e.Passes[0].Copied != n || e.Passes[0].Result != "ok" {
		t.Errorf("status entry %+v: want one pass that copied %d messages", e, n)
	}
	for _, secret := range []string{"src-pw", "dst-pw"} {
		raw, _ := os.ReadFile(db)
		if strings.Contains(string(raw), secret) || strings.Contains(stdout, secret) {
			t.Errorf("state or status holds the password %q", secret)
		}
	}
	if _, text, _ := runCLI(t, nil, "status", "--state", db); !strings.Contains(text, "done") || !strings.Contains(text, fmt.Sprintf("%d/%d", n, n)) {
		t.Errorf("status text:\n%s", text)
	}
	code, stdout, stderr = runCLI(t, statePasswords, args...)
	if code != exitOK || !strings.Contains(stdout, fmt.Sprintf("earlier    %d", n)) || !strings.Contains(stdout, "copied     0") {
		t.Errorf("rerun: exit %d; %s\n%s", code, stderr, stdout)
	}
	if code, _, stderr := runCLI(t, nil, "status", "--state", filepath.Join(t.TempDir(), "none.db")); code != exitFailure || !strings.Contains(stderr, "no state at") {
		t.Errorf("status of a missing file: exit %d, %q", code, stderr)
	}
}

// A second mailferry on the same mailbox and state refuses, naming the
// holder; a holder on this host whose process died is taken over at once.
func TestMigrateRefusesConcurrentRun(t *testing.T) {
	src, dst, _ := seededPair(t)
	db := filepath.Join(t.TempDir(), "ferry.db")
	from, to := "imap://alice@"+src.Addr, "imap://alice@"+dst.Addr
	ctx := context.Background()
	st, err := state.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	lease, err := st.Acquire(ctx, migrationKey(t, from, to), "ops-host-7 pid 4242", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"migrate", "--from-tls", "none", "--to-tls", "none", "--state", db, "--from", from, "--to", to}
	code, _, stderr := runCLI(t, statePasswords, args...)
	if code != exitFailure || !strings.Contains(stderr, `held by "ops-host-7 pid 4242"`) || !strings.Contains(stderr, "refusing") {
		t.Fatalf("second run: exit %d, %q; want 1 naming the holder", code, stderr)
	}
	must(t, lease.Release(ctx))

	// A dead process of this host: a child that has exited.
	child := exec.Command("true")
	must(t, child.Run())
	host, _ := os.Hostname()
	if _, err := st.Acquire(ctx, migrationKey(t, from, to), fmt.Sprintf("%s pid %d", host, child.Process.Pid), time.Hour); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := runCLI(t, statePasswords, args...); code != exitOK {
		t.Fatalf("run after a dead local holder: exit %d, %q\n%s", code, stderr, stdout)
	}
}

// A state written by a newer mailferry is refused with a clear message and
// left untouched.
func TestMigrateStateSchemaTooNew(t *testing.T) {
	src, dst, _ := seededPair(t)
	db := filepath.Join(t.TempDir(), "ferry.db")
	args := []string{"migrate", "--from-tls", "none", "--to-tls", "none", "--state", db, "--from", "imap://alice@" + src.Addr, "--to", "imap://alice@" + dst.Addr}
	if code, _, stderr := runCLI(t, statePasswords, args...); code != exitOK {
		t.Fatalf("migrate: exit %d; %s", code, stderr)
	}
	raw := statetest.RawDB(t, "sqlite:"+db)
	if _, err := raw.Exec(fmt.Sprintf(`INSERT INTO mailferry_schema_version (version, applied_at_us) VALUES (%d, 0)`, state.SchemaVersion()+1)); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	code, _, stderr := runCLI(t, statePasswords, args...)
	if code != exitFailure || !strings.Contains(stderr, db) || !strings.Contains(stderr, "upgrade mailferry") {
		t.Fatalf("newer schema: exit %d, %q", code, stderr)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Outside its --window, with --exit-outside-window, migrate copies nothing
// and exits 75; a rerun without the window finishes the copy.
func TestMigrateOutsideWindowExits75(t *testing.T) {
	src, dst, mbox := seededPair(t)
	db := filepath.Join(t.TempDir(), "ferry.db")
	now := time.Now()
	closed := fmt.Sprintf("%s-%s", now.Add(2*time.Hour).Format("15:04"), now.Add(3*time.Hour).Format("15:04"))
	args := []string{"migrate", "--from-tls", "none", "--to-tls", "none", "--json", "--state", db, "--from", "imap://alice@" + src.Addr, "--to", "imap://alice@" + dst.Addr}
	code, stdout, stderr := runCLI(t, statePasswords, append(args, "--window", closed, "--exit-outside-window")...)
	if code != exitLater || !strings.Contains(stderr, "outside the allowed time windows") {
		t.Fatalf("outside the window: exit %d, %q", code, stderr)
	}
	var rep map[string]any
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, stdout)
	}
	if rep["copied"] != 0.0 || rep["source_bodies_fetched"] != 0.0 || rep["failed"] != 0.0 {
		t.Errorf("outside the window the copy moved bodies: %v", rep)
	}
	code, stdout, stderr = runCLI(t, statePasswords, args...)
	if code != exitOK {
		t.Fatalf("rerun: exit %d, %q", code, stderr)
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || rep["copied"] != float64(mbox.TotalMessages()) {
		t.Errorf("rerun copied %v of %d (%v)", rep["copied"], mbox.TotalMessages(), err)
	}
}
