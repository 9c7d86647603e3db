package state

import (
	"context"
	"database/sql"
	"path/filepath"
	"reflect"
	"testing"
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
