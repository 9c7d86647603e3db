// Package statetest gives tests a fresh, isolated state database for each
// driver, so that one suite runs against SQLite and PostgreSQL alike.
//
// PostgreSQL comes from the environment: MAILFERRY_TEST_POSTGRES holds a
// URL such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable.
// When it is unset the PostgreSQL half is skipped with a message, unless
// MAILFERRY_REQUIRE_POSTGRES=1 (CI), which turns the skip into a failure.
// Each call gets its own schema, dropped at cleanup, so parallel tests and
// packages never see each other's tables.
package statetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
	_ "modernc.org/sqlite"             // registers "sqlite"
)

// Environment variables read by Postgres.
const (
	EnvPostgres        = "MAILFERRY_TEST_POSTGRES"
	EnvRequirePostgres = "MAILFERRY_REQUIRE_POSTGRES"
)

// Drivers are the names EachDriver runs, in order.
var Drivers = []string{"sqlite", "postgres"}

// URL returns a state URL for a fresh, empty database of driver ("sqlite"
// or "postgres"), removed when the test ends.
func URL(t testing.TB, driver string) string {
	t.Helper()
	switch driver {
	case "sqlite":
		return SQLite(t)
	case "postgres":
		return Postgres(t)
	}
	t.Fatalf("statetest: unknown driver %q", driver)
	return ""
}

// SQLite returns "sqlite:PATH" for a file in a new temporary directory.
func SQLite(t testing.TB) string {
	t.Helper()
	return "sqlite:" + filepath.Join(t.TempDir(), "state.db")
}

// Postgres returns a URL whose search_path is a new schema, dropped (with
// everything in it) when the test ends. Without MAILFERRY_TEST_POSTGRES it
// skips the test, or fails it when MAILFERRY_REQUIRE_POSTGRES=1.
func Postgres(t testing.TB) string {
	t.Helper()
	base := os.Getenv(EnvPostgres)
	if base == "" {
		if os.Getenv(EnvRequirePostgres) == "1" {
			t.Fatalf("%s is not set but %s=1: the PostgreSQL tests must run (e.g. %s=postgres://postgres@127.0.0.1:5432/test?sslmode=disable)",
				EnvPostgres, EnvRequirePostgres, EnvPostgres)
		}
		t.Skipf("skipping the PostgreSQL half: set %s (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable) to run it",
			EnvPostgres)
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("%s: %v", EnvPostgres, err)
	}
	var b [8]byte
	rand.Read(b[:])
	schema := "mf_test_" + hex.EncodeToString(b[:])

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("connect to %s: %v", EnvPostgres, err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema %s in %s database: %v", schema, EnvPostgres, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		db, err := sql.Open("pgx", base)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer db.Close()
		if _, err := db.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// RawDB opens the database behind a URL from this package directly,
// bypassing the state package, for tests that must tamper with it.
func RawDB(t testing.TB, stateURL string) *sql.DB {
	t.Helper()
	var db *sql.DB
	var err error
	if path, ok := strings.CutPrefix(stateURL, "sqlite:"); ok {
		db, err = sql.Open("sqlite", path)
	} else {
		db, err = sql.Open("pgx", stateURL)
	}
	if err != nil {
		t.Fatalf("open %s: %v", stateURL, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Runner is *testing.T or *testing.B.
type Runner[T any] interface {
	testing.TB
	Run(name string, f func(T)) bool
}

// EachDriver runs f as a subtest per driver ("sqlite", "postgres"), with
// the URL of a fresh database of that driver.
func EachDriver[T Runner[T]](t T, f func(t T, url string)) {
	t.Helper()
	for _, d := range Drivers {
		t.Run(d, func(t T) {
			t.Helper()
			f(t, URL(t, d))
		})
	}
}
