package state

import (
	"context"
	"database/sql"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRebindDollar(t *testing.T) {
	got := rebindDollar(`SELECT a FROM t WHERE b = ? AND c IN (?,?)`)
	if want := `SELECT a FROM t WHERE b = $1 AND c IN ($2,$3)`; got != want {
		t.Errorf("rebindDollar = %q", got)
	}
}

// Both dialects must have the same numbered migrations.
func TestMigrationsMatch(t *testing.T) {
	names := func(d driver) []string {
		ms, err := loadMigrations(d.migrations())
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range ms {
			out = append(out, m.name)
		}
		return out
	}
	lite, pg := names(&sqliteDriver{}), names(&postgresDriver{})
	if len(lite) == 0 || !reflect.DeepEqual(lite, pg) {
		t.Errorf("sqlite migrations %v, postgres %v", lite, pg)
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:secret@h/db":          "postgres://u:xxxxx@h/db",
		"postgres://h/db?password=secret":   "postgres://h/db?password=xxxxx",
		"postgres://u@h/db?sslmode=disable": "postgres://u@h/db?sslmode=disable",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// The DSN's pragmas must be in force on every pooled connection.
func TestSQLitePragmas(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	conns := make([]*sql.Conn, 3) // hold several, so they are distinct
	for i := range conns {
		if conns[i], err = s.db.Conn(ctx); err != nil {
			t.Fatal(err)
		}
		defer conns[i].Close()
	}
	for i, c := range conns {
		var journal string
		var sync, fk, busy int
		if err := c.QueryRowContext(ctx, `SELECT (SELECT journal_mode FROM pragma_journal_mode), (SELECT synchronous FROM pragma_synchronous),
(SELECT foreign_keys FROM pragma_foreign_keys), (SELECT timeout FROM pragma_busy_timeout)`).Scan(&journal, &sync, &fk, &busy); err != nil {
			t.Fatal(err)
		}
		if journal != "wal" || sync != 2 || fk != 1 || busy != 15000 {
			t.Errorf("conn %d: journal_mode=%s synchronous=%d foreign_keys=%d busy_timeout=%d; want wal 2 (FULL) 1 15000",
				i, journal, sync, fk, busy)
		}
	}
}

// Batches of every size are stored whole through a few statement texts:
// the chunks of the SQLite upsert are powers of two, and the cache of
// prepared statements ends up with one text per chunk size used plus the
// fixed statements, not one per batch size.
func TestUpsertChunksAndStatementCache(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l, err := s.Acquire(ctx, Key{Source: "s", Target: "t"}, "test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f, err := l.Folder(ctx, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	uid := uint32(0)
	sizes := []int{255, 256, 777, 1000}
	for n := 1; n <= 40; n++ {
		sizes = append(sizes, n)
	}
	for _, n := range sizes {
		msgs := make([]Message, n)
		for i := range msgs {
			uid++
			msgs[i] = Message{SrcUID: uid, DstUID: uid + 10, Size: int64(uid), SHA256: [32]byte{byte(uid), byte(uid >> 8)}}
		}
		if err := l.PutBatch(ctx, f.ID, msgs, uid+11, ""); err != nil {
			t.Fatalf("batch of %d: %v", n, err)
		}
	}
	got, err := l.Messages(ctx, f.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != int(uid) {
		t.Fatalf("stored %d messages, want %d", len(got), uid)
	}
	for i, m := range got {
		want := uint32(i + 1)
		if m.SrcUID != want || m.DstUID != want+10 || m.Size != int64(want) || m.SHA256[0] != byte(want) {
			t.Fatalf("message %d = %+v", i, m)
		}
	}
	s.stmts.mu.Lock()
	upserts := 0
	for q := range s.stmts.m {
		if strings.HasPrefix(q, "INSERT INTO mailferry_message") {
			upserts++
		}
	}
	s.stmts.mu.Unlock()
	// 44 batch sizes, at most 10 chunk sizes (1, 2, 4, ... 512).
	if upserts == 0 || upserts > 10 {
		t.Errorf("%d upsert texts prepared for 44 batch sizes; want one per power-of-two chunk size", upserts)
	}
	for n := 1; n <= 2000; n++ {
		c := upsertChunk(n)
		if c > n || c > 512 || c&(c-1) != 0 || (c*2 <= n && c < 512) {
			t.Fatalf("upsertChunk(%d) = %d", n, c)
		}
	}
}
