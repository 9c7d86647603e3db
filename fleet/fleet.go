// Package fleet runs a plan's moves on many mailferry processes (workers,
// on many hosts) that share one PostgreSQL database: the state's database.
//
// The queue is River (github.com/riverqueue/river), not a home-made one: a
// move is a River job (MoveArgs), unique per move, so a move already
// queued or done is never queued twice; River claims jobs with FOR UPDATE
// SKIP LOCKED, retries failures with backoff, and rescues the jobs of a
// worker that died. River's tables live in the same schema as the state
// (the search_path of the state URL).
//
// River decides who runs a move; mailferry's own lease (state.Lease),
// renewed by heartbeat and fenced by its epoch, still decides who may write
// a move's data. River can run a job twice (a rescue of a job whose worker
// only stalled); the lease makes the second run wait, or find the move
// done, and a stalled worker that lost its lease cannot write again.
//
// The inventory's per-cluster limits hold for the whole fleet: connection
// places are PostgreSQL advisory locks held on a dedicated connection per
// worker (Gate: a dead worker's places come back with its connection),
// bytes/s and messages/s are divided among the workers alive by heartbeat,
// and an adaptive decrease on one worker lowers a per-cluster share every
// worker follows (see Worker).
package fleet

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"
)

// MoveKind is the River job kind of a move.
const MoveKind = "mailferry_move"

// MoveArgs is one move as a River job: the mailbox and its source and
// target clusters by the inventory's names. Two jobs with the same
// mailbox, source and target are the same move: River refuses the second
// while the first is queued or running, and Submit skips a move whose
// last job finished it (done). A move whose job ended without finishing
// it (in sync at ready with no cutover, held, failed for good) may be
// submitted again, as apply runs it again.
type MoveArgs struct {
	Mailbox string `json:"mailbox" river:"unique"`
	From    string `json:"from" river:"unique"`
	To      string `json:"to" river:"unique"`
	// Bytes is the plan's size of the mailbox (for progress).
	Bytes int64 `json:"bytes,omitempty"`
	// Plan names the plan that submitted the move (informative).
	Plan string `json:"plan,omitempty"`
}

// Kind is the River job kind.
func (MoveArgs) Kind() string { return MoveKind }

// DefaultMaxAttempts is how often a move that fails is tried before its
// job is discarded (a lease held elsewhere, a stop, a lost lease do not
// count: they snooze the job).
const DefaultMaxAttempts = 5

// InsertOpts makes a move unique by its mailbox and clusters.
func (MoveArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: DefaultMaxAttempts, UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: liveStates}}
}

// liveStates are the job states in which a move is unique: queued or
// running (River requires the first four).
var liveStates = []rivertype.JobState{rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRunning,
	rivertype.JobStateScheduled, rivertype.JobStateRetryable}

// Fleet is a connection to the fleet's database: River's queue and the
// workers' registry and shared budgets, in the state's schema.
type Fleet struct {
	pool   *pgxpool.Pool
	cfg    *pgxpool.Config
	schema string
	client *river.Client[pgx.Tx] // an insert-only client
}

// Config says how to reach the fleet's database.
type Config struct {
	// URL is the state's postgres:// URL (its search_path, if any, is the
	// schema of the state and of River's tables).
	URL string
	// Password, when set, replaces whatever pgx would find itself.
	Password string
	// Tracer, when set, sees every query (counting round trips).
	Tracer pgx.QueryTracer
	// MaxConns bounds the pool; 0 means pgxpool's default.
	MaxConns int32
	// Reader opens without creating or migrating anything (status): a
	// database without a fleet reads as an empty one.
	Reader bool
}

// IsPostgres reports whether a state URL names PostgreSQL.
func IsPostgres(url string) bool {
	return strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://")
}

// Open connects to the fleet's database and brings River's tables and the
// fleet's own up to date (serialized against other workers starting at the
// same time).
func Open(ctx context.Context, c Config) (*Fleet, error) {
	cfg, err := pgxpool.ParseConfig(c.URL)
	if err != nil {
		return nil, fmt.Errorf("fleet: parse the state URL: %w", err)
	}
	if c.Password != "" {
		cfg.ConnConfig.Password = c.Password
	}
	if c.Tracer != nil {
		cfg.ConnConfig.Tracer = c.Tracer
	}
	if c.MaxConns > 0 {
		cfg.MaxConns = c.MaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("fleet: connect: %w", err)
	}
	f := &Fleet{pool: pool, cfg: cfg}
	if c.Reader {
		return f, nil
	}
	if err := f.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if err := pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&f.schema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("fleet: read the current schema: %w", err)
	}
	f.client, err = river.NewClient(riverpgxv5.New(pool), &river.Config{})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("fleet: river client: %w", err)
	}
	return f, nil
}

// Close closes the pool.
func (f *Fleet) Close() { f.pool.Close() }

// fleetSchema is the fleet's own tables: the registry of workers (their
// heartbeat divides the shared rates) and each cluster's shared share of
// its limits (adaptive decreases and the degraded start, fleet-wide).
const fleetSchema = `
CREATE TABLE IF NOT EXISTS mailferry_fleet_worker (
	name         text PRIMARY KEY,
	host         text NOT NULL,
	pid          integer NOT NULL,
	holder       text NOT NULL,
	started_at   timestamptz NOT NULL DEFAULT now(),
	heartbeat_at timestamptz NOT NULL DEFAULT now(),
	moves        integer NOT NULL DEFAULT 0,
	moves_done   bigint NOT NULL DEFAULT 0,
	heartbeat_s  double precision NOT NULL DEFAULT 2,
	stopping     boolean NOT NULL DEFAULT false
);
CREATE TABLE IF NOT EXISTS mailferry_fleet_cluster (
	name       text PRIMARY KEY,
	cap        integer NOT NULL,
	degraded   boolean NOT NULL,
	share      double precision NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now()
);`

// migrate runs River's migrations (each in its own transaction: some
// cannot share one) and creates the fleet's tables, under a session
// advisory lock of the schema, so workers starting together migrate one
// at a time.
func (f *Fleet) migrate(ctx context.Context) error {
	conn, err := f.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("fleet: migrate: %w", err)
	}
	defer conn.Release()
	const key = `hashtext('mailferry fleet schema ' || current_schema())`
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(`+key+`)`); err != nil {
		return fmt.Errorf("fleet: migrate: lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(`+key+`)`)
	m, err := rivermigrate.New(riverpgxv5.New(f.pool), nil)
	if err != nil {
		return fmt.Errorf("fleet: migrate: %w", err)
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("fleet: migrate River's tables: %w", err)
	}
	if _, err := conn.Exec(ctx, fleetSchema); err != nil {
		return fmt.Errorf("fleet: create the fleet's tables: %w", err)
	}
	return nil
}

// SubmitReport says what Submit did.
type SubmitReport struct {
	Queued    int `json:"queued"`
	Duplicate int `json:"duplicate"` // already queued or running
	Done      int `json:"done"`      // finished by an earlier job
}

// Submit queues the moves. A move already queued or running is not queued
// again (River's unique jobs), nor one whose last job finished it.
func (f *Fleet) Submit(ctx context.Context, moves []MoveArgs) (SubmitReport, error) {
	var rep SubmitReport
	jobs, err := f.Jobs(ctx)
	if err != nil {
		return rep, err
	}
	todo := make([]MoveArgs, 0, len(moves))
	for _, m := range moves {
		if j, ok := jobs[MoveKey(m)]; ok && j.Finished() {
			rep.Done++
			continue
		}
		todo = append(todo, m)
	}
	const chunk = 1000
	for len(todo) > 0 {
		n := min(chunk, len(todo))
		params := make([]river.InsertManyParams, n)
		for i, m := range todo[:n] {
			params[i] = river.InsertManyParams{Args: m}
		}
		res, err := f.client.InsertMany(ctx, params)
		if err != nil {
			return rep, fmt.Errorf("fleet: submit %d moves: %w", n, err)
		}
		for _, r := range res {
			if r.UniqueSkippedAsDuplicate {
				rep.Duplicate++
			} else {
				rep.Queued++
			}
		}
		todo = todo[n:]
	}
	return rep, nil
}
