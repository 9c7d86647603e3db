package state

import (
	"context"
	"database/sql"
	"sync"
)

// stmtCache keeps the hot statements prepared. modernc.org/sqlite parses
// and plans a statement on every ExecContext/QueryContext that is not
// prepared, and on the copy path that parse was about a third of
// mailferry's own CPU per batch (issue 11's profile: sqlite3Prepare under
// every Lease write). database/sql prepares a *sql.Stmt once per pooled
// connection and Tx.StmtContext reuses that preparation inside a
// transaction, so a statement prepared here is parsed at most once per
// connection for the life of the Store.
//
// PostgreSQL needs none of this: pgx's database/sql adapter already keeps
// a per-connection statement cache, so its queries pass through.
type stmtCache struct {
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

// maxCachedStmts bounds the cache. The multi-row message upsert has one
// text per row count; batches repeat a few counts (full batches and the
// tails), and a text beyond the bound is simply not kept.
const maxCachedStmts = 128

// prepared returns the cached statement for query (already rebound), or
// nil when the driver does not need one or the cache is full.
func (s *Store) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	if s.drv.name() != "sqlite" {
		return nil, nil
	}
	c := &s.stmts
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.m[query]; ok {
		return st, nil
	}
	if len(c.m) >= maxCachedStmts {
		return nil, nil
	}
	st, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if c.m == nil {
		c.m = make(map[string]*sql.Stmt)
	}
	c.m[query] = st
	return st, nil
}

// closeStmts closes the cached statements (before the pool closes).
func (s *Store) closeStmts() {
	c := &s.stmts
	c.mu.Lock()
	defer c.mu.Unlock()
	for q, st := range c.m {
		st.Close()
		delete(c.m, q)
	}
}

// execTx runs a write statement in tx, prepared once where that pays.
// query is in the shared dialect (? placeholders).
func (s *Store) execTx(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	query = s.q(query)
	st, err := s.prepared(ctx, query)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return tx.ExecContext(ctx, query, args...)
	}
	return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
}

// queryRowTx runs a one-row statement in tx (a read, or a write with
// RETURNING), prepared once where that pays.
func (s *Store) queryRowTx(ctx context.Context, tx *sql.Tx, query string, args ...any) scanner {
	query = s.q(query)
	st, err := s.prepared(ctx, query)
	if err != nil {
		return errRow{err}
	}
	if st == nil {
		return tx.QueryRowContext(ctx, query, args...)
	}
	return tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
}

// queryRowDB runs a one-row read outside any transaction, prepared once
// where that pays. A preparation error is returned by Scan.
func (s *Store) queryRowDB(ctx context.Context, query string, args ...any) scanner {
	query = s.q(query)
	st, err := s.prepared(ctx, query)
	if err != nil {
		return errRow{err}
	}
	if st == nil {
		return s.db.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// queryDB runs a read outside any transaction, prepared once where that
// pays.
func (s *Store) queryDB(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	query = s.q(query)
	st, err := s.prepared(ctx, query)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return s.db.QueryContext(ctx, query, args...)
	}
	return st.QueryContext(ctx, args...)
}

// errRow is a row whose query could not even be prepared.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }
