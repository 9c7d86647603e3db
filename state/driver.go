package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// driver is everything that differs between SQLite and PostgreSQL. The
// Store's queries, transactions and fencing are shared and written once in
// the common dialect of both (ON CONFLICT ... DO UPDATE, RETURNING, ?
// placeholders); a driver connects, rewrites placeholders, serializes
// schema migrations, says where its migration files are, and may replace
// the one hot statement (the message upsert) with a faster form.
type driver interface {
	// name is "sqlite" or "postgres".
	name() string
	// location names the database in messages, without secrets.
	location() string
	// open connects and returns a pool configured for this engine.
	open(ctx context.Context) (*sql.DB, error)
	// migrations holds the numbered NNN_name.sql files of this dialect.
	migrations() fs.FS
	// rebind rewrites the ? placeholders of a shared query.
	rebind(query string) string
	// lockSchema serializes concurrent Opens on the same database for
	// the rest of tx.
	lockSchema(ctx context.Context, tx *sql.Tx) error
	// tableExists reports whether table is visible to tx.
	tableExists(ctx context.Context, tx *sql.Tx, table string) (bool, error)
	// upsertMessages inserts or replaces up to maxRowsPerInsert message
	// records (distinct SrcUIDs) in one statement: the hot path.
	// exec is the Store's statement runner (execTx), which keeps
	// statements prepared where the driver needs it.
	upsertMessages(ctx context.Context, tx *sql.Tx, exec execFunc, folderID int64, rows []messageRow) error
}

// execFunc runs a statement of the shared dialect in a transaction.
type execFunc func(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error)

// newDriver chooses the driver by URL: "postgres://" and "postgresql://"
// select PostgreSQL; "sqlite:PATH" or a bare PATH select SQLite.
func newDriver(rawURL string) (driver, error) {
	switch {
	case strings.HasPrefix(rawURL, "postgres://"), strings.HasPrefix(rawURL, "postgresql://"):
		cfg, err := pgx.ParseConfig(rawURL)
		if err != nil {
			return nil, fmt.Errorf("parse state URL %q: %w", redactURL(rawURL), err)
		}
		return &postgresDriver{cfg: cfg, where: redactURL(rawURL)}, nil
	case strings.HasPrefix(rawURL, "sqlite:"):
		path := strings.TrimPrefix(rawURL, "sqlite:")
		if strings.HasPrefix(path, "//") { // sqlite:///abs/path
			path = strings.TrimPrefix(path, "//")
		}
		return newSQLiteDriver(path)
	case strings.Contains(rawURL, "://"):
		return nil, fmt.Errorf("state URL %q: unknown scheme (want sqlite:PATH, a file path, or postgres://...)", redactURL(rawURL))
	default:
		return newSQLiteDriver(rawURL)
	}
}

// redactURL hides a password in a URL meant for a message.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// rebindDollar rewrites ? placeholders as $1, $2, ... The shared queries
// contain no ? inside string literals.
func rebindDollar(query string) string {
	n := strings.Count(query, "?")
	if n == 0 {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + n*4)
	i := 0
	for _, r := range query {
		if r == '?' {
			i++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(i))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// sqliteDriver stores the state in one SQLite file through the pure-Go
// modernc.org/sqlite.
//
// Every connection runs with:
//   - journal_mode=WAL: readers (status, loading a folder's map) never
//     block the writer and a commit is one append to the log.
//   - synchronous=FULL: the log is fsynced at every commit, so a committed
//     mapping survives power loss and OS crashes, not only a killed process
//     (NORMAL would survive SIGKILL but may lose the last commits on power
//     loss). Commits are per batch of messages, so the fsync is cheap
//     next to the copy it records.
//   - busy_timeout=15s: another connection or process holding the write
//     lock is waited for instead of failing with SQLITE_BUSY.
//   - foreign_keys=ON: folders and messages cannot outlive their migration.
//   - transactions BEGIN IMMEDIATE (_txlock): a write transaction takes
//     the write lock up front, so two writers never deadlock upgrading a
//     read lock; busy_timeout applies to the wait.
type sqliteDriver struct {
	path string
}

func newSQLiteDriver(path string) (*sqliteDriver, error) {
	if path == "" {
		return nil, errors.New("state URL: empty SQLite path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("state database %s: %w", path, err)
	}
	return &sqliteDriver{path: abs}, nil
}

func (d *sqliteDriver) name() string     { return "sqlite" }
func (d *sqliteDriver) location() string { return d.path }

func (d *sqliteDriver) open(ctx context.Context) (*sql.DB, error) {
	// The file is created here, mode 0600, so that SQLite never creates it
	// with the process umask; SQLite gives the -wal and -shm files the
	// mode of the database file.
	f, err := os.OpenFile(d.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	// A file: URI with an escaped path, so ? # % in a file name stay part
	// of the name.
	dsn := "file:" + (&url.URL{Path: d.path}).EscapedPath() + "?" + url.Values{
		"_txlock": {"immediate"},
		"_pragma": {"busy_timeout(15000)", "journal_mode(WAL)", "synchronous(FULL)", "foreign_keys(ON)"},
	}.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	// SQLite has one writer at a time anyway; a few connections let
	// readers run beside it.
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(4)
	return db, nil
}

func (d *sqliteDriver) migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations/sqlite")
	if err != nil {
		panic(err)
	}
	return sub
}

func (d *sqliteDriver) rebind(query string) string { return query }

// lockSchema does nothing: the transaction began IMMEDIATE, which already
// excludes every other writer of the file.
func (d *sqliteDriver) lockSchema(context.Context, *sql.Tx) error { return nil }

func (d *sqliteDriver) upsertMessages(ctx context.Context, tx *sql.Tx, exec execFunc, folderID int64, rows []messageRow) error {
	return upsertMessagesValues(ctx, tx, exec, folderID, rows)
}

func (d *sqliteDriver) tableExists(ctx context.Context, tx *sql.Tx, table string) (bool, error) {
	var n int
	err := tx.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?`, table).Scan(&n)
	return n > 0, err
}

// postgresDriver stores the state in PostgreSQL through pgx's
// database/sql adapter. Tables are created in the connection's current
// schema (set search_path in the URL to choose another).
type postgresDriver struct {
	cfg   *pgx.ConnConfig
	where string
}

func (d *postgresDriver) name() string     { return "postgres" }
func (d *postgresDriver) location() string { return d.where }

func (d *postgresDriver) open(ctx context.Context) (*sql.DB, error) {
	db := stdlib.OpenDB(*d.cfg)
	db.SetMaxIdleConns(4)
	return db, nil
}

func (d *postgresDriver) migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations/postgres")
	if err != nil {
		panic(err)
	}
	return sub
}

func (d *postgresDriver) rebind(query string) string { return rebindDollar(query) }

// lockSchema takes a transaction-scoped advisory lock keyed by the current
// schema, so fleet workers starting together migrate one at a time, and
// tests in different schemas do not wait for each other.
func (d *postgresDriver) lockSchema(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext('mailferry schema ' || current_schema()))`)
	return err
}

func (d *postgresDriver) upsertMessages(ctx context.Context, tx *sql.Tx, _ execFunc, folderID int64, rows []messageRow) error {
	return upsertMessagesUnnest(ctx, tx, folderID, rows)
}

func (d *postgresDriver) tableExists(ctx context.Context, tx *sql.Tx, table string) (bool, error) {
	var ok bool
	err := tx.QueryRowContext(ctx, `SELECT to_regclass($1) IS NOT NULL`, table).Scan(&ok)
	return ok, err
}
