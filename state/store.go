// Package state records what mailferry has copied, so that a migration
// killed at any instant resumes exactly where it stopped.
//
// A Store is one database, SQLite (one host) or PostgreSQL (one host or a
// fleet of workers), chosen by URL. It holds, per migration (one mailbox
// copy), a lease, progress counters, the folders, and the message map from
// source UID to target UID with size, SHA-256 and flags. Nothing in the
// schema can hold a secret.
//
// All work on a migration goes through a Lease: only one holder at a time,
// and every write is fenced by the lease's epoch, so a process that stalled
// past its lease expiry and lost the migration to another can never commit
// again. A write that returns nil is committed: it survives the process
// being killed (and, on SQLite with synchronous=FULL, power loss).
package state

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

//go:embed migrations/sqlite/*.sql migrations/postgres/*.sql
var migrationFiles embed.FS

// Store is a state database. It is safe for concurrent use by multiple
// goroutines; several processes may open the same database, and the lease
// decides which of them works on a migration.
type Store struct {
	db  *sql.DB
	drv driver
	now func() time.Time
	// turn serialises this process's writes on SQLite (a token, held
	// while a write transaction runs): SQLite has one writer at a time,
	// and writers that collide wait in its busy handler, which sleeps up
	// to 100 ms a try; a channel hands over at once.
	turn chan struct{}
	// queued is the lease writes waiting for the turn, which the next
	// holder commits together (see group.go).
	qmu    sync.Mutex
	queued []*queuedWrite
	// existing: Open must not create the database (Existing).
	existing bool
	// password for a PostgreSQL state (WithPassword); "" leaves pgx's own
	// lookup (PGPASSWORD, PGPASSFILE or ~/.pgpass, a service file).
	password string
	// stmts keeps the hot statements prepared (SQLite; see prepared.go).
	stmts stmtCache
	// folderPuts counts PutFolder's writes (FolderPuts), writes every
	// fenced write (Writes).
	folderPuts, writes atomic.Int64
	// commits counts the lease writes' transactions (group.go): several
	// writes committed together count once.
	commits atomic.Int64
}

// FolderPuts is how many folder records (PutFolder) this Store has
// committed. Tests use it to hold the copy to one per folder and pass.
func (s *Store) FolderPuts() int64 { return s.folderPuts.Load() }

// Commits is how many transactions the lease writes took (see group.go):
// on SQLite, several writes committed together, or a deferred write
// committed with the next, count once. Tests use it to count fsyncs.
func (s *Store) Commits() int64 { return s.commits.Load() }

// Writes is how many fenced writes (a lease holder's writes: folder
// records, message maps, progress, history) this Store has committed;
// several may share a commit (see Commits). Tests use it to count a
// pass's writes.
func (s *Store) Writes() int64 { return s.writes.Load() }

// writing takes the write turn (on SQLite; PostgreSQL takes row locks) and
// returns its release.
func (s *Store) writing() func() {
	if s.drv.name() != "sqlite" {
		return func() {}
	}
	s.turn <- struct{}{}
	return func() { <-s.turn }
}

// Option configures Open.
type Option func(*Store)

// Existing makes Open fail with ErrNoState instead of creating a SQLite
// file that is not there (for readers such as `mailferry status`).
func Existing() Option { return func(s *Store) { s.existing = true } }

// ErrNoState is returned (wrapped) by Open with Existing when the
// database does not exist.
var ErrNoState = errors.New("no migration has run with this state")

// WithClock makes the store read the time from now instead of time.Now.
// Lease expiry and the created/updated times use it. Tests inject a fake
// clock; in a fleet, the workers' clocks must agree to well within a
// lease's ttl.
func WithClock(now func() time.Time) Option {
	return func(s *Store) { s.now = now }
}

// WithPassword gives the password of a PostgreSQL state by value, so that
// it need not be written in the URL (and so in argv). It replaces any
// password pgx would find itself (PGPASSWORD, PGPASSFILE, ~/.pgpass, a
// service file). Open fails when the state is not PostgreSQL.
func WithPassword(password string) Option {
	return func(s *Store) { s.password = password }
}

// Open opens the state database named by url, creating it if needed, and
// brings its schema up to date.
//
// url is "sqlite:PATH", a bare PATH (SQLite), or "postgres://..." /
// "postgresql://..." (PostgreSQL). A new SQLite file is created with mode
// 0600.
//
// The embedded migrations are applied in one transaction, serialized
// against other processes opening the same database at the same time; a
// failure leaves the schema as it was. A database whose schema is newer
// than this binary knows is refused untouched.
func Open(ctx context.Context, url string, opts ...Option) (*Store, error) {
	drv, err := newDriver(url)
	if err != nil {
		return nil, err
	}
	s := &Store{drv: drv, now: time.Now, turn: make(chan struct{}, 1)}
	for _, o := range opts {
		o(s)
	}
	if s.existing {
		if sq, ok := drv.(*sqliteDriver); ok {
			if _, err := os.Stat(sq.path); err != nil {
				return nil, fmt.Errorf("no state at %s: %w", sq.path, ErrNoState)
			}
		}
	}
	if s.password != "" {
		pg, ok := drv.(*postgresDriver)
		if !ok {
			return nil, fmt.Errorf("state %s: a password is only used by a postgres:// state", drv.location())
		}
		cfg := pg.cfg.Copy()
		cfg.Password = s.password
		drv = &postgresDriver{cfg: cfg, where: pg.where}
		s.drv = drv
	}
	db, err := drv.open(ctx)
	if err != nil {
		return nil, fmt.Errorf("open state database %s: %w", drv.location(), err)
	}
	s.db = db
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open state database %s: %w", drv.location(), err)
	}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the database. Leases still held stay in the database until
// they expire; Release them first.
func (s *Store) Close() error {
	s.closeStmts()
	return s.db.Close()
}

// Driver returns "sqlite" or "postgres".
func (s *Store) Driver() string { return s.drv.name() }

// Location names the database for messages: the SQLite file's absolute
// path, or the PostgreSQL URL with any password masked.
func (s *Store) Location() string { return s.drv.location() }

// SchemaVersion is the newest schema version this binary knows.
func SchemaVersion() int {
	n, err := loadMigrations((&sqliteDriver{}).migrations())
	if err != nil {
		panic(err)
	}
	return len(n)
}

func (s *Store) q(query string) string { return s.drv.rebind(query) }

func (s *Store) nowUTC() time.Time { return s.now().UTC() }

type schemaMigration struct {
	version int
	name    string
	sql     string
}

// loadMigrations reads NNN_name.sql files; versions must run 1, 2, 3...
func loadMigrations(fsys fs.FS) ([]schemaMigration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, err
	}
	var ms []schemaMigration
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".sql") {
			continue
		}
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration file %q: want NNN_name.sql", name)
		}
		body, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, schemaMigration{version: v, name: name, sql: string(body)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration file %q: expected version %d", m.name, i+1)
		}
	}
	return ms, nil
}

// migrate applies the missing migrations in one transaction.
func (s *Store) migrate(ctx context.Context) error {
	where := s.drv.location()
	ms, err := loadMigrations(s.drv.migrations())
	if err != nil {
		return fmt.Errorf("migrate state database %s: %w", where, err)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate state database %s: %w", where, err)
	}
	defer tx.Rollback()
	if err := s.drv.lockSchema(ctx, tx); err != nil {
		return fmt.Errorf("migrate state database %s: lock: %w", where, err)
	}
	exists, err := s.drv.tableExists(ctx, tx, "mailferry_schema_version")
	if err != nil {
		return fmt.Errorf("migrate state database %s: %w", where, err)
	}
	current := 0
	if exists {
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM mailferry_schema_version`).Scan(&current); err != nil {
			return fmt.Errorf("read schema version of state database %s: %w", where, err)
		}
	}
	if current > len(ms) {
		return &SchemaTooNewError{Location: where, Version: current, Known: len(ms)}
	}
	if current == len(ms) {
		return nil // up to date: nothing to commit
	}
	if !exists {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE mailferry_schema_version (
    version       INTEGER NOT NULL PRIMARY KEY,
    applied_at_us BIGINT  NOT NULL
)`); err != nil {
			return fmt.Errorf("migrate state database %s: %w", where, err)
		}
	}
	for _, m := range ms[current:] {
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("migrate state database %s: apply %s: %w", where, m.name, err)
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO mailferry_schema_version (version, applied_at_us) VALUES (?, ?)`),
			m.version, s.nowUTC().UnixMicro()); err != nil {
			return fmt.Errorf("migrate state database %s: record %s: %w", where, m.name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate state database %s: commit: %w", where, err)
	}
	return nil
}

// SchemaTooNewError is returned by Open for a database written by a newer
// mailferry. The database is left untouched.
type SchemaTooNewError struct {
	Location string // file path or redacted URL
	Version  int    // the database's schema version
	Known    int    // the newest version this binary knows
}

func (e *SchemaTooNewError) Error() string {
	return fmt.Sprintf("state database %s has schema version %d; this mailferry knows up to %d: upgrade mailferry",
		e.Location, e.Version, e.Known)
}

// Key identifies a migration: one mailbox copy from Source to Target.
// Both are secret-free strings the caller builds, such as
// "imap://alice@src:143".
type Key struct{ Source, Target string }

func (k Key) String() string { return k.Source + " -> " + k.Target }

// Progress is what a migration reports about itself.
type Progress struct {
	Phase         string
	MessagesDone  int64
	MessagesTotal int64
	BytesDone     int64
	BytesTotal    int64
	Verified      int64
	Failed        int64
	LastError     string
}

// Migration is one mailbox copy. Progress is embedded, so m.Phase and the
// counters read directly.
type Migration struct {
	ID  int64
	Key Key
	Progress
	Created time.Time // UTC
	Updated time.Time // UTC; the last committed write (last activity)
}

// Status is a migration as List reports it.
type Status struct {
	Migration
	// Holder and LeaseExpires name the process working on the migration
	// now; Holder is "" when the lease is free or has expired.
	Holder       string
	LeaseExpires time.Time
}

const migrationColumns = `id, source, target, phase, messages_done, messages_total, bytes_done, bytes_total,
	verified, failed, last_error, holder, lease_expires_at_us, epoch, created_at_us, updated_at_us`

type migrationRow struct {
	Migration
	holder  string
	expires time.Time
	epoch   int64
}

type scanner interface{ Scan(dest ...any) error }

func scanMigration(sc scanner) (migrationRow, error) {
	var r migrationRow
	var expires, created, updated int64
	err := sc.Scan(&r.ID, &r.Key.Source, &r.Key.Target, &r.Phase, &r.MessagesDone, &r.MessagesTotal,
		&r.BytesDone, &r.BytesTotal, &r.Verified, &r.Failed, &r.LastError,
		&r.holder, &expires, &r.epoch, &created, &updated)
	r.expires = fromMicro(expires)
	r.Created = fromMicro(created)
	r.Updated = fromMicro(updated)
	return r, err
}

func fromMicro(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

// List returns every migration, ordered by key, with its progress, last
// error, last activity, and the holder of its lease if one is held. It
// reads committed state only and takes no lock.
func (s *Store) List(ctx context.Context) ([]Status, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+migrationColumns+` FROM mailferry_migration ORDER BY source, target`)
	if err != nil {
		return nil, fmt.Errorf("list migrations in %s: %w", s.drv.location(), err)
	}
	defer rows.Close()
	now := s.nowUTC()
	var out []Status
	for rows.Next() {
		r, err := scanMigration(rows)
		if err != nil {
			return nil, fmt.Errorf("list migrations in %s: %w", s.drv.location(), err)
		}
		st := Status{Migration: r.Migration}
		if r.holder != "" && now.Before(r.expires) {
			st.Holder, st.LeaseExpires = r.holder, r.expires
		}
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list migrations in %s: %w", s.drv.location(), err)
	}
	return out, nil
}

// ErrLeaseLost is returned (wrapped) by every Lease method once another
// holder has acquired the migration or the lease was released: nothing was
// written. The caller must stop working on the migration.
var ErrLeaseLost = errors.New("lease lost: another mailferry took over this migration")

// ErrNoFolder is returned (wrapped) when a folder is not part of the
// lease's migration.
var ErrNoFolder = errors.New("no such folder in this migration")
