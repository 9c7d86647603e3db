package state_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"mailferry/state"
	"mailferry/state/statetest"
)

// fakeClock is the store's clock in tests: leases expire by Advance, not
// by sleeping.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func open(t testing.TB, url string, clk *fakeClock) *state.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := state.Open(ctx, url, state.WithClock(clk.Now))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func acquire(t testing.TB, s *state.Store, key state.Key, holder string) *state.Lease {
	t.Helper()
	l, err := s.Acquire(context.Background(), key, holder, time.Minute)
	if err != nil {
		t.Fatalf("Acquire(%s, %q): %v", key, holder, err)
	}
	return l
}

var key = state.Key{Source: "imap://alice@src:143", Target: "imap://alice@dst:143"}

// each runs f against every driver in parallel subtests.
func each(t *testing.T, f func(t *testing.T, url string)) {
	statetest.EachDriver(t, func(t *testing.T, url string) {
		t.Parallel()
		f(t, url)
	})
}

func TestOpenMigrateReopen(t *testing.T) {
	each(t, func(t *testing.T, url string) {
		clk := newClock()
		s := open(t, url, clk)
		l := acquire(t, s, key, "a")
		if err := l.SetProgress(context.Background(), state.Progress{Phase: "copy"}); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		// Reopening applies nothing and keeps the data.
		for range 2 {
			s = open(t, url, clk)
			st, err := s.List(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(st) != 1 || st[0].Phase != "copy" {
				t.Fatalf("List after reopen = %+v", st)
			}
			s.Close()
		}
		var n int
		if err := statetest.RawDB(t, url).QueryRow(`SELECT count(*) FROM mailferry_schema_version`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != state.SchemaVersion() {
			t.Fatalf("schema version rows = %d, want %d", n, state.SchemaVersion())
		}
	})
}

func TestSchemaTooNew(t *testing.T) {
	each(t, func(t *testing.T, url string) {
		clk := newClock()
		s := open(t, url, clk)
		acquire(t, s, key, "a")
		s.Close()

		raw := statetest.RawDB(t, url)
		newer := state.SchemaVersion() + 5
		if _, err := raw.Exec(fmt.Sprintf(`INSERT INTO mailferry_schema_version (version, applied_at_us) VALUES (%d, 0)`, newer)); err != nil {
			t.Fatal(err)
		}
		snapshot := func() string {
			var b strings.Builder
			for _, q := range []string{
				`SELECT version, applied_at_us FROM mailferry_schema_version ORDER BY version`,
				`SELECT id, source, target, holder, lease_expires_at_us, epoch, updated_at_us FROM mailferry_migration`,
			} {
				rows, err := raw.Query(q)
				if err != nil {
					t.Fatal(err)
				}
				cols, _ := rows.Columns()
				for rows.Next() {
					vals := make([]any, len(cols))
					ptrs := make([]any, len(cols))
					for i := range vals {
						ptrs[i] = &vals[i]
					}
					if err := rows.Scan(ptrs...); err != nil {
						t.Fatal(err)
					}
					fmt.Fprintln(&b, vals...)
				}
				rows.Close()
			}
			return b.String()
		}
		before := snapshot()
		var fileBefore []byte
		path, isSQLite := strings.CutPrefix(url, "sqlite:")
		if isSQLite {
			raw.Close()
			var err error
			if fileBefore, err = os.ReadFile(path); err != nil {
				t.Fatal(err)
			}
		}

		_, err := state.Open(context.Background(), url)
		var tooNew *state.SchemaTooNewError
		if !errors.As(err, &tooNew) {
			t.Fatalf("Open of a newer schema: err = %v, want *SchemaTooNewError", err)
		}
		wantSuffix := fmt.Sprintf(" has schema version %d; this mailferry knows up to %d: upgrade mailferry", newer, state.SchemaVersion())
		if !strings.HasPrefix(err.Error(), "state database ") || !strings.HasSuffix(err.Error(), wantSuffix) {
			t.Fatalf("error = %q, want state database ...%s", err, wantSuffix)
		}
		if isSQLite {
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name %s", err, path)
			}
			fileAfter, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(fileAfter) != string(fileBefore) {
				t.Errorf("the database file changed")
			}
			raw = statetest.RawDB(t, url)
		}
		if after := snapshot(); after != before {
			t.Errorf("database changed:\nbefore %s\nafter %s", before, after)
		}
	})
}

func TestSQLiteFileAndURLForms(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	for _, tc := range []struct{ url, file string }{
		{filepath.Join(dir, "bare.db"), "bare.db"},
		{"sqlite:" + filepath.Join(dir, "prefixed.db"), "prefixed.db"},
		{"sqlite://" + filepath.Join(dir, "slashes.db"), "slashes.db"},
		{filepath.Join(dir, "odd ?#%name.db"), "odd ?#%name.db"},
	} {
		s := open(t, tc.url, clk)
		if s.Driver() != "sqlite" {
			t.Errorf("%s: Driver() = %q", tc.url, s.Driver())
		}
		l := acquire(t, s, key, "a")
		if _, err := l.Folder(context.Background(), "INBOX"); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, tc.file)
		for _, f := range []string{p, p + "-wal"} {
			fi, err := os.Stat(f)
			if err != nil {
				t.Fatalf("%s: %v", tc.url, err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: mode %v, want 0600", f, fi.Mode().Perm())
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := state.Open(context.Background(), "mysql://x/y"); err == nil || !strings.Contains(err.Error(), "unknown scheme") {
		t.Errorf("Open(mysql://) err = %v", err)
	}
	if _, err := state.Open(context.Background(), filepath.Join(dir, "missing", "dir", "x.db")); err == nil {
		t.Errorf("Open in a missing directory succeeded")
	}
}

func TestPostgresPasswordNotInErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := state.Open(ctx, "postgres://bob:s3cret@127.0.0.1:1/none?sslmode=disable&connect_timeout=2")
	if err == nil {
		t.Fatal("Open of an unreachable server succeeded")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error leaks the password: %v", err)
	}
}

func TestLease(t *testing.T) {
	each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		clk := newClock()
		a := open(t, url, clk) // two stores: two processes
		b := open(t, url, clk)

		la := acquire(t, a, key, "host-a:pid 1")
		if la.Epoch != 1 {
			t.Errorf("first epoch = %d, want 1", la.Epoch)
		}
		f, err := la.Folder(ctx, "INBOX")
		if err != nil {
			t.Fatal(err)
		}

		_, err = b.Acquire(ctx, key, "host-b:pid 2", time.Minute)
		var held *state.HeldError
		if !errors.As(err, &held) {
			t.Fatalf("second Acquire: err = %v, want *HeldError", err)
		}
		if held.Holder != "host-a:pid 1" || !held.Expires.Equal(clk.Now().Add(time.Minute)) {
			t.Errorf("HeldError = %+v", held)
		}
		want := `migration imap://alice@src:143 -> imap://alice@dst:143 is held by "host-a:pid 1" until 12:01:00 UTC (another mailferry is working on it; it expires if that process died)`
		if err.Error() != want {
			t.Errorf("HeldError:\n got %s\nwant %s", err, want)
		}
		// Not re-entrant either.
		if _, err := a.Acquire(ctx, key, "host-a:pid 1", time.Minute); !errors.As(err, &held) {
			t.Errorf("re-Acquire by the holder: err = %v", err)
		}

		// Renew keeps it past the first expiry.
		clk.Advance(50 * time.Second)
		if err := la.Renew(ctx); err != nil {
			t.Fatal(err)
		}
		clk.Advance(50 * time.Second)
		if _, err := b.Acquire(ctx, key, "host-b:pid 2", time.Minute); !errors.As(err, &held) {
			t.Fatalf("Acquire of a renewed lease: err = %v", err)
		}

		// A stalled holder: its lease expires, b takes over.
		clk.Advance(2 * time.Minute)
		lb, err := b.Acquire(ctx, key, "host-b:pid 2", time.Minute)
		if err != nil {
			t.Fatalf("Acquire after expiry: %v", err)
		}
		if lb.Epoch != 2 || lb.Migration.ID != la.Migration.ID {
			t.Errorf("takeover lease = epoch %d id %d", lb.Epoch, lb.Migration.ID)
		}
		// a never released it: it may have sent until its lease ran out.
		if want := clk.Now().Add(-110 * time.Second); !lb.Unreleased.Equal(want) {
			t.Errorf("takeover of an expired lease: Unreleased = %v, want its expiry %v", lb.Unreleased, want)
		}
		if !la.Unreleased.IsZero() {
			t.Errorf("first lease: Unreleased = %v, want zero", la.Unreleased)
		}
		// Every write and Renew of the old lease now fails and changes nothing.
		msg := []state.Message{{SrcUID: 1, DstUID: 1, Size: 3}}
		for name, op := range map[string]func() error{
			"Renew":          func() error { return la.Renew(ctx) },
			"PutMessages":    func() error { return la.PutMessages(ctx, f.ID, msg, 9) },
			"SetMark":        func() error { return la.SetMark(ctx, f.ID, 9) },
			"SetProgress":    func() error { return la.SetProgress(ctx, state.Progress{Phase: "stale"}) },
			"Folder":         func() error { _, err := la.Folder(ctx, "Sent"); return err },
			"PutFolder":      func() error { _, err := la.PutFolder(ctx, state.Folder{Source: "INBOX", Target: "X"}); return err },
			"RenameFolder":   func() error { return la.RenameFolder(ctx, "INBOX", "I2", "I2") },
			"ResetFolder":    func() error { return la.ResetFolder(ctx, f.ID) },
			"DeleteMessages": func() error { return la.DeleteMessages(ctx, f.ID, []uint32{1}) },
			"Release":        func() error { return la.Release(ctx) },
		} {
			if err := op(); !errors.Is(err, state.ErrLeaseLost) {
				t.Errorf("old lease %s: err = %v, want ErrLeaseLost", name, err)
			}
		}
		folders, err := lb.Folders(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(folders) != 1 || folders[0] != f {
			t.Errorf("folders after stale writes = %+v", folders)
		}
		if msgs, _ := lb.Messages(ctx, f.ID); len(msgs) != 0 {
			t.Errorf("stale PutMessages wrote %v", msgs)
		}

		// Release frees it at once; the released lease can no longer write.
		if err := lb.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if err := lb.SetMark(ctx, f.ID, 1); !errors.Is(err, state.ErrLeaseLost) {
			t.Errorf("write after Release: err = %v", err)
		}
		lc := acquire(t, a, key, "host-c")
		if lc.Epoch != 3 {
			t.Errorf("epoch after release = %d", lc.Epoch)
		}
		if !lc.Unreleased.IsZero() || !lc.LateUntil().IsZero() {
			t.Errorf("lease after a release: Unreleased = %v, LateUntil %v, want zero", lc.Unreleased, lc.LateUntil())
		}
		// Writes that may still land are handed to the next holder, while
		// they may; the lease is free meanwhile.
		land := clk.Now().Add(10 * time.Second)
		lc.MayLand(land.Add(-time.Second))
		lc.MayLand(land)
		lc.MayLand(land.Add(-2 * time.Second))
		if err := lc.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if sts, _ := a.List(ctx); len(sts) != 1 || sts[0].Holder != "" {
			t.Errorf("a released lease with writes that may land is listed as held: %+v", sts)
		}
		ld := acquire(t, b, key, "host-d")
		if !ld.LateUntil().Equal(land) || !ld.Unreleased.IsZero() {
			t.Errorf("after a release with MayLand: LateUntil %v, Unreleased %v, want %v and zero", ld.LateUntil(), ld.Unreleased, land)
		}
		if err := ld.Release(ctx); err != nil {
			t.Fatal(err)
		}
		clk.Advance(11 * time.Second)
		if le := acquire(t, a, key, "host-e"); !le.LateUntil().IsZero() {
			t.Errorf("LateUntil %v passed on after it passed", le.LateUntil())
		}
	})
}

func TestAcquireRace(t *testing.T) {
	each(t, func(t *testing.T, url string) {
		clk := newClock()
		stores := []*state.Store{open(t, url, clk), open(t, url, clk)}
		const n = 8
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			winners []string
			helds   int
		)
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				holder := fmt.Sprintf("worker %d", i)
				_, err := stores[i%2].Acquire(context.Background(), key, holder, time.Minute)
				mu.Lock()
				defer mu.Unlock()
				var held *state.HeldError
				switch {
				case err == nil:
					winners = append(winners, holder)
				case errors.As(err, &held):
					helds++
				default:
					t.Errorf("%s: %v", holder, err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if len(winners) != 1 || helds != n-1 {
			t.Fatalf("winners %v, held errors %d; want exactly one winner", winners, helds)
		}
		st, err := stores[0].List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(st) != 1 || st[0].Holder != winners[0] {
			t.Errorf("List = %+v, want holder %q", st, winners[0])
		}
	})
}

func TestFoldersAndMessages(t *testing.T) {
	each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		clk := newClock()
		s := open(t, url, clk)
		l := acquire(t, s, key, "a")

		inbox, err := l.Folder(ctx, "INBOX")
		if err != nil {
			t.Fatal(err)
		}
		if inbox.ID == 0 || inbox.Source != "INBOX" || inbox.Target != "" || inbox.SrcUIDValidity != 0 {
			t.Fatalf("new folder = %+v", inbox)
		}
		again, err := l.Folder(ctx, "INBOX")
		if err != nil || again != inbox {
			t.Fatalf("Folder again = %+v, %v", again, err)
		}
		inbox.Target = "INBOX"
		inbox.SrcUIDValidity = 1<<32 - 1
		inbox.DstUIDValidity = 7
		inbox.DstUIDNextMark = 1<<32 - 2
		inbox.SrcHighestModSeq = 1<<63 - 1
		if id, err := l.PutFolder(ctx, inbox); err != nil || id != inbox.ID {
			t.Fatalf("PutFolder(INBOX) = %d, %v; want its ID %d", id, err, inbox.ID)
		}
		// LookupFolder reads only: a folder it does not find is not created.
		if f, ok, err := l.LookupFolder(ctx, "Sent/2019 ü"); err != nil || ok || f.ID != 0 || f.Source != "Sent/2019 ü" {
			t.Fatalf("LookupFolder of a new folder = %+v, %v, %v; want no record", f, ok, err)
		}
		if f, ok, err := l.LookupFolder(ctx, "INBOX"); err != nil || !ok || f.ID != inbox.ID {
			t.Fatalf("LookupFolder(INBOX) = %+v, %v, %v; want ID %d", f, ok, err, inbox.ID)
		}
		sent := state.Folder{Source: "Sent/2019 ü", Target: "Sent.2019 ü", Deleted: true}
		sentID, err := l.PutFolder(ctx, sent) // creates
		if err != nil || sentID == 0 || sentID == inbox.ID {
			t.Fatalf("PutFolder(new) = %d, %v; want a new ID", sentID, err)
		}
		if f, ok, err := l.LookupFolder(ctx, sent.Source); err != nil || !ok || f.ID != sentID {
			t.Fatalf("LookupFolder after PutFolder = %+v, %v, %v; want ID %d", f, ok, err, sentID)
		}
		if _, err := l.PutFolder(ctx, state.Folder{ID: inbox.ID + 100, Source: "INBOX"}); err == nil {
			t.Error("PutFolder with a wrong ID succeeded")
		}
		if _, err := l.PutFolder(ctx, state.Folder{Source: "X", SrcHighestModSeq: 1 << 63}); err == nil {
			t.Error("PutFolder with modseq 2^63 succeeded")
		}
		folders, err := l.Folders(ctx)
		if err != nil {
			t.Fatal(err)
		}
		sent.ID = folders[1].ID
		if want := []state.Folder{inbox, sent}; !reflect.DeepEqual(folders, want) {
			t.Fatalf("Folders =\n%+v\nwant\n%+v", folders, want)
		}

		msgs := []state.Message{
			{SrcUID: 1<<32 - 1, DstUID: 1<<32 - 1, Size: 1 << 40, SHA256: sha256.Sum256([]byte("big")), Verified: true, Flags: []string{`\Seen`, "$Label1"}},
			{SrcUID: 1, DstUID: 0, Size: 0, SHA256: sha256.Sum256(nil)},
			{SrcUID: 2, DstUID: 5, Size: 10, SHA256: sha256.Sum256([]byte("x")), Flags: []string{`\Flagged`}},
		}
		if err := l.PutMessages(ctx, inbox.ID, msgs, 6); err != nil {
			t.Fatal(err)
		}
		got, err := l.Messages(ctx, inbox.ID)
		if err != nil {
			t.Fatal(err)
		}
		msgs[0].Flags = []string{"$Label1", `\Seen`} // stored sorted
		want := []state.Message{msgs[1], msgs[2], msgs[0]}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Messages =\n%+v\nwant\n%+v", got, want)
		}

		// Upsert: replace one, add one; duplicates in a batch: the last wins.
		upd := state.Message{SrcUID: 2, DstUID: 6, Size: 11, SHA256: sha256.Sum256([]byte("y")), Verified: true}
		add := state.Message{SrcUID: 3, DstUID: 7, Size: 12, SHA256: sha256.Sum256([]byte("z"))}
		if err := l.PutMessages(ctx, inbox.ID, []state.Message{{SrcUID: 2, DstUID: 99}, upd, add}, 8); err != nil {
			t.Fatal(err)
		}
		got, _ = l.Messages(ctx, inbox.ID)
		want = []state.Message{msgs[1], upd, add, msgs[0]}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("after upsert =\n%+v\nwant\n%+v", got, want)
		}
		if err := l.PutMessages(ctx, inbox.ID, []state.Message{{SrcUID: 0}}, 1); err == nil {
			t.Error("PutMessages with UID 0 succeeded")
		}
		if err := l.PutMessages(ctx, inbox.ID, []state.Message{{SrcUID: 4, Flags: []string{"a b"}}}, 1); err == nil {
			t.Error("PutMessages with a flag containing a space succeeded")
		}
		// A failed batch changed nothing, not even the mark.
		if fs, _ := l.Folders(ctx); fs[0].DstUIDNextMark != 8 {
			t.Errorf("mark after failed batches = %d, want 8", fs[0].DstUIDNextMark)
		}
		// Suspects: a folder the state creates starts with every source
		// message suspect; SetSuspects and PutBatch replace them, PutMessages
		// keeps them.
		fresh, err := l.Folder(ctx, "Fresh")
		if err != nil {
			t.Fatal(err)
		}
		if fresh.Suspects != "*" {
			t.Errorf("new folder's suspects = %q, want *", fresh.Suspects)
		}
		if err := l.SetSuspects(ctx, inbox.ID, "1:40,77"); err != nil {
			t.Fatal(err)
		}
		if err := l.PutMessages(ctx, inbox.ID, []state.Message{add}, 9); err != nil {
			t.Fatal(err)
		}
		if fs, _ := l.Folders(ctx); fs[1].Suspects != "1:40,77" || fs[1].DstUIDNextMark != 9 {
			t.Errorf("after PutMessages: suspects %q mark %d, want 1:40,77 and 9", fs[1].Suspects, fs[1].DstUIDNextMark)
		}
		if err := l.PutBatch(ctx, inbox.ID, []state.Message{add}, 10, "77"); err != nil {
			t.Fatal(err)
		}
		if fs, _ := l.Folders(ctx); fs[1].Suspects != "77" || fs[1].DstUIDNextMark != 10 {
			t.Errorf("after PutBatch: suspects %q mark %d, want 77 and 10", fs[1].Suspects, fs[1].DstUIDNextMark)
		}
		if err := l.PutBatch(ctx, inbox.ID, []state.Message{{SrcUID: 0}}, 11, ""); err == nil {
			t.Error("PutBatch with UID 0 succeeded")
		}
		if fs, _ := l.Folders(ctx); fs[1].Suspects != "77" || fs[1].DstUIDNextMark != 10 {
			t.Errorf("a failed PutBatch changed suspects %q or mark %d", fs[1].Suspects, fs[1].DstUIDNextMark)
		}
		if err := l.SetSuspects(ctx, inbox.ID+1000, ""); !errors.Is(err, state.ErrNoFolder) {
			t.Errorf("SetSuspects of an unknown folder: %v, want ErrNoFolder", err)
		}
		if err := l.PutMessages(ctx, inbox.ID, nil, 8); err != nil {
			t.Fatal(err)
		}

		// Committed together: a new process sees records and mark.
		s2 := open(t, url, clk)
		st, err := s2.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(st) != 1 {
			t.Fatalf("List = %+v", st)
		}
		l.Release(ctx)
		l2 := acquire(t, s2, key, "b")
		f2, err := l2.Folder(ctx, "INBOX")
		if err != nil {
			t.Fatal(err)
		}
		if f2.DstUIDNextMark != 8 {
			t.Errorf("mark seen by another store = %d, want 8", f2.DstUIDNextMark)
		}
		if got, _ := l2.Messages(ctx, inbox.ID); !reflect.DeepEqual(got, want) {
			t.Errorf("records seen by another store = %+v", got)
		}
		l = l2

		if err := l.SetMark(ctx, inbox.ID, 0); err != nil {
			t.Fatal(err)
		}
		if err := l.DeleteMessages(ctx, inbox.ID, []uint32{2, 1<<32 - 1, 12345}); err != nil {
			t.Fatal(err)
		}
		got, _ = l.Messages(ctx, inbox.ID)
		if want := []state.Message{msgs[1], add}; !reflect.DeepEqual(got, want) {
			t.Fatalf("after delete =\n%+v\nwant\n%+v", got, want)
		}

		// Rename keeps the map; a taken or unknown name fails.
		if err := l.RenameFolder(ctx, "INBOX", "Sent/2019 ü", "x"); err == nil {
			t.Error("rename onto an existing folder succeeded")
		}
		if err := l.RenameFolder(ctx, "Nope", "Nope2", "x"); !errors.Is(err, state.ErrNoFolder) {
			t.Errorf("rename of unknown folder: err = %v", err)
		}
		if err := l.RenameFolder(ctx, "INBOX", "Inbox2", "Inbox2.t"); err != nil {
			t.Fatal(err)
		}
		renamed, err := l.Folder(ctx, "Inbox2")
		if err != nil {
			t.Fatal(err)
		}
		if renamed.ID != inbox.ID || renamed.Target != "Inbox2.t" || renamed.SrcUIDValidity != inbox.SrcUIDValidity {
			t.Errorf("renamed = %+v", renamed)
		}
		if got, _ := l.Messages(ctx, renamed.ID); len(got) != 2 {
			t.Errorf("renamed folder has %d messages", len(got))
		}

		// Reset forgets records, mark and modseq; keeps the rest.
		if err := l.SetMark(ctx, inbox.ID, 77); err != nil {
			t.Fatal(err)
		}
		if err := l.ResetFolder(ctx, inbox.ID); err != nil {
			t.Fatal(err)
		}
		if got, _ := l.Messages(ctx, inbox.ID); len(got) != 0 {
			t.Errorf("after reset: %d messages", len(got))
		}
		reset, _ := l.Folder(ctx, "Inbox2")
		if reset.DstUIDNextMark != 0 || reset.SrcHighestModSeq != 0 || reset.SrcUIDValidity != inbox.SrcUIDValidity || reset.Target != "Inbox2.t" {
			t.Errorf("after reset = %+v", reset)
		}

		// Folders of another migration are out of reach.
		other := acquire(t, s, state.Key{Source: "imap://bob@src", Target: "imap://bob@dst"}, "a")
		if _, err := other.Messages(ctx, inbox.ID); !errors.Is(err, state.ErrNoFolder) {
			t.Errorf("Messages of a foreign folder: err = %v", err)
		}
		for name, err := range map[string]error{
			"PutMessages":    other.PutMessages(ctx, inbox.ID, []state.Message{add}, 1),
			"SetMark":        other.SetMark(ctx, inbox.ID, 1),
			"ResetFolder":    other.ResetFolder(ctx, inbox.ID),
			"DeleteMessages": other.DeleteMessages(ctx, inbox.ID, []uint32{1}),
		} {
			if !errors.Is(err, state.ErrNoFolder) {
				t.Errorf("%s on a foreign folder: err = %v", name, err)
			}
		}
	})
}

func TestLargeBatchAndList(t *testing.T) {
	each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		clk := newClock()
		s := open(t, url, clk)
		l := acquire(t, s, key, "host:pid 7")
		f, err := l.Folder(ctx, "INBOX")
		if err != nil {
			t.Fatal(err)
		}
		// More than one multi-row statement in one batch.
		const n = 2500
		msgs := make([]state.Message, n)
		uids := make([]uint32, 0, n)
		for i := range msgs {
			msgs[i] = state.Message{SrcUID: uint32(i + 1), DstUID: uint32(i + 1), Size: int64(i)}
			uids = append(uids, uint32(i+1))
		}
		if err := l.PutMessages(ctx, f.ID, msgs, n+1); err != nil {
			t.Fatal(err)
		}
		got, err := l.Messages(ctx, f.ID)
		if err != nil || len(got) != n || got[n-1].SrcUID != n {
			t.Fatalf("Messages: %d, %v", len(got), err)
		}
		if err := l.DeleteMessages(ctx, f.ID, uids[:n-1]); err != nil {
			t.Fatal(err)
		}
		if got, _ := l.Messages(ctx, f.ID); len(got) != 1 {
			t.Fatalf("after deleting %d: %d left", n-1, len(got))
		}

		clk.Advance(time.Second)
		p := state.Progress{Phase: "verify", MessagesDone: 5, MessagesTotal: 9, BytesDone: 50, BytesTotal: 90, Verified: 4, Failed: 1, LastError: "append uid 7: [OVERQUOTA]"}
		if err := l.SetProgress(ctx, p); err != nil {
			t.Fatal(err)
		}
		st, err := s.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(st) != 1 {
			t.Fatalf("List = %+v", st)
		}
		got0 := st[0]
		if got0.Key != key || got0.Progress != p || got0.Holder != "host:pid 7" ||
			!got0.LeaseExpires.Equal(l.Expires()) || !got0.Updated.Equal(clk.Now()) ||
			!got0.Created.Equal(clk.Now().Add(-time.Second)) || got0.Updated.Location() != time.UTC {
			t.Errorf("Status = %+v", got0)
		}
		// An expired lease is not shown as held.
		clk.Advance(2 * time.Minute)
		st, _ = s.List(ctx)
		if st[0].Holder != "" {
			t.Errorf("expired lease shown as held by %q", st[0].Holder)
		}
	})
}

// ReplaceFolder swaps the whole map and the folder's fields at once; a
// failing replacement leaves both as they were.
func TestReplaceFolder(t *testing.T) {
	each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s := open(t, url, newClock())
		l := acquire(t, s, key, "a")
		f, err := l.Folder(ctx, "INBOX")
		if err != nil {
			t.Fatal(err)
		}
		f.SrcUIDValidity, f.DstUIDValidity, f.DstUIDNextMark = 1, 2, 3
		old := []state.Message{{SrcUID: 1, DstUID: 1, Size: 5}, {SrcUID: 2, DstUID: 2, Size: 6}}
		if _, err := l.PutFolder(ctx, f); err != nil {
			t.Fatal(err)
		}
		if err := l.PutMessages(ctx, f.ID, old, 3); err != nil {
			t.Fatal(err)
		}
		bad := f
		bad.SrcUIDValidity = 9
		if err := l.ReplaceFolder(ctx, bad, []state.Message{{SrcUID: 0}}); err == nil {
			t.Fatal("ReplaceFolder with UID 0 succeeded")
		}
		if got, _ := l.Folder(ctx, "INBOX"); got != f {
			t.Fatalf("after failed replace folder = %+v, want %+v", got, f)
		}
		f.SrcUIDValidity, f.DstUIDNextMark = 10, 20
		repl := []state.Message{{SrcUID: 7, DstUID: 2, Size: 6, Verified: true}}
		if err := l.ReplaceFolder(ctx, f, repl); err != nil {
			t.Fatal(err)
		}
		got, _ := l.Folder(ctx, "INBOX")
		msgs, _ := l.Messages(ctx, f.ID)
		if got != f || !reflect.DeepEqual(msgs, repl) {
			t.Fatalf("after replace: %+v %+v", got, msgs)
		}
		if err := l.ReplaceFolder(ctx, state.Folder{ID: f.ID, Source: "Other"}, nil); err == nil {
			t.Error("ReplaceFolder with a mismatched name succeeded")
		}
	})
}

// AcquireFrom takes a live lease only from the holder named as dead, and
// fences the dead holder's writes.
func TestAcquireFrom(t *testing.T) {
	each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		clk := newClock()
		s := open(t, url, clk)
		dead := acquire(t, s, key, "h pid 1")
		var held *state.HeldError
		if _, err := s.AcquireFrom(ctx, key, "h pid 3", time.Minute, "h pid 2"); !errors.As(err, &held) || held.Holder != "h pid 1" {
			t.Fatalf("AcquireFrom naming another holder: err = %v", err)
		}
		l, err := s.AcquireFrom(ctx, key, "h pid 3", time.Minute, "h pid 1")
		if err != nil {
			t.Fatal(err)
		}
		if l.Epoch <= dead.Epoch {
			t.Errorf("epoch %d not above the dead holder's %d", l.Epoch, dead.Epoch)
		}
		// The dead holder was alive moments ago: it may have sent until now.
		if !l.Unreleased.Equal(clk.Now()) {
			t.Errorf("takeover from a dead holder: Unreleased = %v, want now", l.Unreleased)
		}
		if err := dead.SetMark(ctx, 1, 1); !errors.Is(err, state.ErrLeaseLost) {
			t.Errorf("write by the dead holder: err = %v, want ErrLeaseLost", err)
		}
	})
}

// Existing opens a state that is there and refuses to create one.
func TestOpenExisting(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	if _, err := state.Open(ctx, "sqlite:"+path, state.Existing()); !errors.Is(err, state.ErrNoState) {
		t.Fatalf("Open Existing of a missing file: err = %v, want ErrNoState", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open Existing created %s", path)
	}
	s, err := state.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = state.Open(ctx, path, state.Existing())
	if err != nil {
		t.Fatalf("Open Existing of an existing state: %v", err)
	}
	s.Close()
}

// Rekey carries a migration, with its state, over to a new key; never one
// that is held, and never onto a key in use.
func TestRekey(t *testing.T) {
	each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s := open(t, url, newClock())
		old := state.Key{Source: "imap://admin*alice@src:143", Target: "imap://alice@dst:143"}
		nu := state.Key{Source: "imap://src:143/alice", Target: "imap://dst:143/alice"}
		l := acquire(t, s, old, "h pid 1")
		if _, err := l.Folder(ctx, "INBOX"); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.Rekey(ctx, old, nu); err != nil || ok {
			t.Fatalf("rekey of a held migration: %v %v, want not done", ok, err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.Rekey(ctx, old, nu); err != nil || !ok {
			t.Fatalf("rekey: %v %v, want done", ok, err)
		}
		l2 := acquire(t, s, nu, "h pid 2")
		if fs, err := l2.Folders(ctx); err != nil || len(fs) != 1 || fs[0].Source != "INBOX" {
			t.Errorf("after rekey the new key has folders %v (%v), want INBOX", fs, err)
		}
		must := func(err error) {
			if err != nil {
				t.Fatal(err)
			}
		}
		must(l2.Release(ctx))
		// The old key again (a new migration under it) is not moved onto
		// the one in use.
		l3 := acquire(t, s, old, "h pid 3")
		must(l3.Release(ctx))
		if ok, err := s.Rekey(ctx, old, nu); err != nil || ok {
			t.Errorf("rekey onto a key in use: %v %v, want not done", ok, err)
		}
	})
}
