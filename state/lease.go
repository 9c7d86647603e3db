package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"
)

// HeldError is returned by Acquire when another holder's lease on the
// migration has not expired.
type HeldError struct {
	Key     Key
	Holder  string
	Expires time.Time // UTC
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("migration %s is held by %q until %s (another mailferry is working on it; it expires if that process died)",
		e.Key, e.Holder, e.Expires.UTC().Format("15:04:05 UTC"))
}

// Lease is the right to work on one migration. All writes to the
// migration go through it and are fenced: each runs in one transaction
// that first checks the lease's epoch and holder, so once another process
// has acquired the migration (after this lease expired) or the lease was
// released, every write fails with ErrLeaseLost and changes nothing.
//
// A Lease is safe for concurrent use: a heartbeat goroutine may Renew
// while others write. Every write that returns nil is committed and
// durable; every write that returns an error changed nothing.
type Lease struct {
	// Migration is the migration as it was when the lease was acquired.
	Migration Migration
	Holder    string
	// Epoch is the fencing token: it grows with every acquisition of the
	// migration by anyone.
	Epoch int64
	// Unreleased, when set, says the previous holder never released the
	// lease (it crashed, or lost its host): it may have been sending until
	// that moment (the earlier of now and its lease's expiry), and a
	// server may still commit what it sent for a while after.
	Unreleased time.Time

	s   *Store
	ttl time.Duration

	mu      sync.Mutex
	expires time.Time
	// lateUntil: writes of a holder may still land until then (see MayLand).
	lateUntil time.Time
	// later is the deferred writes (see group.go), committed before the
	// lease's next write or within deferFor by laterTimer.
	later      []*queuedWrite
	laterTimer *time.Timer
	// order keeps the lease's writes in the order they were made.
	order sync.Mutex
}

// MayLand records that the holder sent writes to a server whose outcome it
// could not see (APPENDs on a connection that dropped) and that may still
// take effect until t. Release keeps the latest such t in the migration,
// and the next holder finds it in LateUntil.
func (l *Lease) MayLand(t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t.After(l.lateUntil) {
		l.lateUntil = t
	}
}

// LateUntil is when writes of this or an earlier holder, sent but never
// answered, can no longer land (see MayLand); zero if none may.
func (l *Lease) LateUntil() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lateUntil
}

// Acquire takes the lease on the migration key for holder (a name such as
// "host:pid 1234" that an operator can act on) for ttl, creating the
// migration if it is new. It succeeds if the lease is free or expired and
// then bumps the epoch; otherwise it returns a *HeldError naming the
// current holder. Of several processes racing for the same key, exactly
// one wins. A holder that already holds the lease is refused like any
// other: leases are not re-entrant.
func (s *Store) Acquire(ctx context.Context, key Key, holder string, ttl time.Duration) (*Lease, error) {
	return s.acquire(ctx, key, holder, ttl, "")
}

// AcquireFrom is Acquire that also takes the lease while stale holds it:
// the caller has proved that holder dead (a process of this host that no
// longer runs), so nobody needs to wait for its lease to expire. If anyone
// else holds it, it fails like Acquire.
func (s *Store) AcquireFrom(ctx context.Context, key Key, holder string, ttl time.Duration, stale string) (*Lease, error) {
	if stale == "" {
		return nil, fmt.Errorf("acquire migration %s: empty stale holder", key)
	}
	return s.acquire(ctx, key, holder, ttl, stale)
}

func (s *Store) acquire(ctx context.Context, key Key, holder string, ttl time.Duration, stale string) (*Lease, error) {
	switch {
	case key.Source == "" || key.Target == "":
		return nil, fmt.Errorf("acquire migration %s: empty source or target", key)
	case holder == "":
		return nil, fmt.Errorf("acquire migration %s: empty holder", key)
	case ttl <= 0:
		return nil, fmt.Errorf("acquire migration %s: ttl %v is not positive", key, ttl)
	}
	// The held row may be released between the failed update and the
	// read of its holder; try again then.
	for attempt := 0; ; attempt++ {
		l, held, err := s.tryAcquire(ctx, key, holder, ttl, stale)
		if err != nil {
			return nil, fmt.Errorf("acquire migration %s: %w", key, err)
		}
		if l != nil {
			return l, nil
		}
		if held.Holder != "" || attempt == 3 {
			return nil, held
		}
	}
}

func (s *Store) tryAcquire(ctx context.Context, key Key, holder string, ttl time.Duration, stale string) (*Lease, *HeldError, error) {
	now := s.nowUTC()
	expires := now.Add(ttl)
	defer s.writing()()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, nil, err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO mailferry_migration (source, target, created_at_us, updated_at_us)
VALUES (?, ?, ?, ?) ON CONFLICT (source, target) DO NOTHING`),
		key.Source, key.Target, now.UnixMicro(), now.UnixMicro()); err != nil {
		return nil, nil, err
	}
	// Who held it before: a holder that never released it may have been
	// sending until it died.
	var prevHolder string
	var prevExp int64
	if err := tx.QueryRowContext(ctx, s.q(`SELECT holder, lease_expires_at_us FROM mailferry_migration WHERE source = ? AND target = ?`),
		key.Source, key.Target).Scan(&prevHolder, &prevExp); err != nil {
		return nil, nil, err
	}
	// One conditional update decides the race: PostgreSQL re-checks the
	// WHERE clause after waiting for a competing update's row lock, and
	// SQLite runs one write transaction at a time. The previous holder
	// read above must still be the one replaced (else no row: try again).
	r, err := scanMigration(tx.QueryRowContext(ctx, s.q(`UPDATE mailferry_migration
SET holder = ?, lease_expires_at_us = ?, epoch = epoch + 1, acquired_at_us = ?
WHERE source = ? AND target = ? AND (holder = '' OR lease_expires_at_us <= ? OR holder = ?)
AND holder = ? AND lease_expires_at_us = ?
RETURNING `+migrationColumns),
		holder, expires.UnixMicro(), now.UnixMicro(), key.Source, key.Target, now.UnixMicro(), stale, prevHolder, prevExp))
	if errors.Is(err, sql.ErrNoRows) {
		var h string
		var exp int64
		if err := tx.QueryRowContext(ctx, s.q(`SELECT holder, lease_expires_at_us FROM mailferry_migration WHERE source = ? AND target = ?`),
			key.Source, key.Target).Scan(&h, &exp); err != nil {
			return nil, nil, err
		}
		if fromMicro(exp).After(now) {
			return nil, &HeldError{Key: key, Holder: h, Expires: fromMicro(exp)}, nil
		}
		return nil, &HeldError{Key: key}, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, nil, err
	}
	l := &Lease{Migration: r.Migration, Holder: holder, Epoch: r.epoch, s: s, ttl: ttl, expires: r.expires}
	switch e := fromMicro(prevExp); {
	case prevHolder != "":
		l.Unreleased = now
		if e.Before(now) {
			l.Unreleased = e
		}
	case prevExp != 0 && e.After(now):
		l.lateUntil = e // released with writes that may still land (MayLand)
	}
	return l, nil, nil
}

// Rekey renames the migration keyed old to new, when old exists and is not
// held, and new does not exist yet; it reports whether it did. It carries
// a migration over to a new way of naming it, with all its state.
func (s *Store) Rekey(ctx context.Context, old, new Key) (bool, error) {
	if old == new {
		return false, nil
	}
	defer s.writing()()
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE mailferry_migration SET source = ?, target = ?
WHERE source = ? AND target = ? AND (holder = '' OR lease_expires_at_us <= ?)
AND NOT EXISTS (SELECT 1 FROM mailferry_migration m2 WHERE m2.source = ? AND m2.target = ?)`),
		new.Source, new.Target, old.Source, old.Target, s.nowUTC().UnixMicro(), new.Source, new.Target)
	if err != nil {
		return false, fmt.Errorf("rekey migration %s to %s: %w", old, new, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// Expires returns when the lease runs out unless renewed.
func (l *Lease) Expires() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.expires
}

// TTL is the lease duration given to Acquire; Renew extends by it.
func (l *Lease) TTL() time.Duration { return l.ttl }

// Renew extends the lease to now+ttl. It fails with ErrLeaseLost if
// another holder acquired the migration or the lease was released. A lease
// that expired but was not taken by anyone can still be renewed. Call it
// well within ttl (a heartbeat every ttl/3, say).
func (l *Lease) Renew(ctx context.Context) error {
	expires := l.s.nowUTC().Add(l.ttl)
	unlock := l.s.writing()
	res, err := l.s.db.ExecContext(ctx, l.s.q(`UPDATE mailferry_migration SET lease_expires_at_us = ?
WHERE id = ? AND epoch = ? AND holder = ?`), expires.UnixMicro(), l.Migration.ID, l.Epoch, l.Holder)
	unlock()
	if err == nil {
		err = l.checkOne(res)
	}
	if err != nil {
		return fmt.Errorf("renew lease on migration %s: %w", l.Migration.Key, err)
	}
	l.mu.Lock()
	l.expires = expires
	l.mu.Unlock()
	return nil
}

// Release commits the lease's deferred writes and frees the lease so that
// another process may acquire the migration at once. It fails with
// ErrLeaseLost if the lease was already lost or released; the migration's
// state is kept. A free lease's expiry
// column keeps MayLand's time (0 if none) for the next holder.
func (l *Lease) Release(ctx context.Context) error {
	ferr := l.Flush(ctx)
	var late int64
	if t := l.LateUntil(); !t.IsZero() && t.After(l.s.nowUTC()) {
		late = t.UnixMicro()
	}
	unlock := l.s.writing()
	res, err := l.s.db.ExecContext(ctx, l.s.q(`UPDATE mailferry_migration SET holder = '', lease_expires_at_us = ?
WHERE id = ? AND epoch = ? AND holder = ?`), late, l.Migration.ID, l.Epoch, l.Holder)
	unlock()
	if err == nil {
		err = l.checkOne(res)
	}
	if err != nil {
		err = fmt.Errorf("release lease on migration %s: %w", l.Migration.Key, err)
	}
	return joinErrors(ferr, err)
}

// checkOne turns "no row matched the fence" into ErrLeaseLost.
func (l *Lease) checkOne(res sql.Result) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%w (epoch %d of %q)", ErrLeaseLost, l.Epoch, l.Holder)
	}
	return nil
}

// write runs fn in one transaction after fencing it (Lease.fenced), after
// the lease's deferred writes; on SQLite the transaction may hold other
// leases' writes too (see group.go). op names the operation in errors.
func (l *Lease) write(ctx context.Context, op string, fn func(ctx context.Context, tx *sql.Tx) error) error {
	err := l.writeTx(ctx, fn)
	if err != nil {
		return fmt.Errorf("%s in migration %s: %w", op, l.Migration.Key, err)
	}
	return nil
}

// SetProgress records the migration's phase, counters and last error
// (LastError "" clears it).
func (l *Lease) SetProgress(ctx context.Context, p Progress) error {
	return l.write(ctx, "set progress", l.progressWrite(p))
}

// DeferProgress is SetProgress deferred (see group.go): committed with
// the lease's next write, or within a second. For the progress of a
// running pass, which a crash makes stale anyway. It is best effort: its
// failure fails no other write (a lost lease or a broken database fails
// the next write on its own).
func (l *Lease) DeferProgress(ctx context.Context, p Progress) {
	l.writeLater(ctx, "set progress", 0, true, l.progressWrite(p))
}

func (l *Lease) progressWrite(p Progress) func(ctx context.Context, tx *sql.Tx) error {
	return func(ctx context.Context, tx *sql.Tx) error {
		_, err := l.s.execTx(ctx, tx, `UPDATE mailferry_migration SET phase = ?, messages_done = ?, messages_total = ?,
bytes_done = ?, bytes_total = ?, verified = ?, failed = ?, last_error = ? WHERE id = ?`,
			p.Phase, p.MessagesDone, p.MessagesTotal, p.BytesDone, p.BytesTotal, p.Verified, p.Failed, p.LastError, l.Migration.ID)
		return err
	}
}
