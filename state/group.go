package state

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Every lease write is a transaction, and on SQLite with synchronous=FULL
// each commit is an fsync: in `apply --parallel 4` on the realistic bench,
// 37 commits per mailbox held the write turn for half of the run, and with
// the state's fsyncs off the run took a fifth less time. Two things cut
// the commits without weakening what a write means:
//
//   - Group commit (SQLite): writes that queue up while another holds the
//     write turn are committed together by the next writer to get it,
//     each in a SAVEPOINT of one transaction, under one fsync. Each write
//     is still fenced by its own lease, applied whole or not at all (one
//     that fails is rolled back to its savepoint and fails alone), and
//     answered only once the transaction is committed. PostgreSQL groups
//     concurrent commits on its own; its writes are not queued.
//   - Deferred writes (Lease.writeLater): a write that nothing waits on
//     before the next step (a folder's last batch record, progress) is
//     committed in the same transaction as the lease's next write, or by
//     Flush, Release, or after deferFor at the latest. Only writes whose
//     loss in a crash the next run recovers from may be deferred.
//
// database/sql and modernc.org/sqlite have neither.

// deferFor bounds how long a deferred write waits for the lease's next
// write before it is committed on its own.
const deferFor = time.Second

// queuedWrite is a lease write waiting to be committed.
type queuedWrite struct {
	l   *Lease
	ctx context.Context
	fn  func(ctx context.Context, tx *sql.Tx) error
	// op and folder: what a deferred write is (for errors), and the folder
	// whose record it changes (0: the migration's row only).
	op     string
	folder int64
	// bestEffort: the write's failure is not returned (see DeferProgress).
	bestEffort bool
	// err is the write's outcome, set before fin is closed.
	err error
	fin chan struct{}
}

func newWrite(l *Lease, ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) *queuedWrite {
	return &queuedWrite{l: l, ctx: ctx, fn: fn, fin: make(chan struct{})}
}

func (w *queuedWrite) answer(err error) {
	w.err = err
	close(w.fin)
}

// writeTx commits the lease's deferred writes, then fn (nil: none), in
// one transaction when there are several (with other leases' queued
// writes, on SQLite). It returns fn's error, and any deferred write's.
func (l *Lease) writeTx(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	// The lease's writes are committed in the order they were made (two
	// progress records must not land the older last): taking the
	// deferred writes and queueing them is one step.
	l.order.Lock()
	later := l.takeLater()
	writes := later
	var own *queuedWrite
	if fn != nil {
		own = newWrite(l, ctx, fn)
		writes = append(writes, own)
	}
	switch {
	case len(writes) == 0:
		l.order.Unlock()
		return nil
	case l.s.drv.name() == "sqlite":
		l.s.enqueue(writes)
		l.order.Unlock()
		l.s.await(writes[len(writes)-1])
	default:
		l.s.commitGroup(writes)
		l.order.Unlock()
	}
	var errs []error
	if own != nil && own.err != nil {
		errs = append(errs, own.err)
	}
	for _, w := range later {
		if w.err != nil && !w.bestEffort {
			errs = append(errs, fmt.Errorf("%s (deferred): %w", w.op, w.err))
		}
	}
	return joinErrors(errs...)
}

// joinErrors joins the non-nil errs on one line ("a; b"), each still
// found by errors.Is and errors.As; nil if none.
func joinErrors(errs ...error) error {
	var out error
	for _, err := range errs {
		switch {
		case err == nil:
		case out == nil:
			out = err
		default:
			out = fmt.Errorf("%w; %w", out, err)
		}
	}
	return out
}

// enqueue queues writes (in order, together) for the write turn.
func (s *Store) enqueue(writes []*queuedWrite) {
	s.qmu.Lock()
	s.queued = append(s.queued, writes...)
	s.qmu.Unlock()
}

// await returns once last (and every write queued with it) is answered:
// committed by this writer, which then commits every write queued so far,
// or by another that got the turn first.
func (s *Store) await(last *queuedWrite) {
	select {
	case <-last.fin:
		return // committed (or refused) in another writer's group
	case s.turn <- struct{}{}:
	}
	s.qmu.Lock()
	group := s.queued
	s.queued = nil
	s.qmu.Unlock()
	// group holds last unless the previous holder of the turn took it,
	// in which case it is answered already: the turn is handed over only
	// after every write of a group has its answer.
	if len(group) > 0 {
		s.commitGroup(group)
	}
	<-s.turn
	<-last.fin
}

// commitGroup commits the writes of group, answering each.
func (s *Store) commitGroup(group []*queuedWrite) {
	if len(group) == 1 {
		w := group[0]
		w.answer(s.commitOne(w))
		return
	}
	// The transaction is shared, so no writer's context may roll it back
	// (database/sql does that for the context given to BeginTx, and
	// modernc.org/sqlite interrupts a statement whose context ends, which
	// makes SQLite roll back the whole transaction): a writer whose
	// context has ended before its turn is refused; once started, its
	// statements run to their end (short ones; busy_timeout bounds the
	// wait for another process's lock).
	tx, err := s.db.BeginTx(context.Background(), nil)
	if err != nil {
		for _, w := range group {
			w.answer(err)
		}
		return
	}
	defer tx.Rollback()
	errs := make([]error, len(group))
	var broken error // the transaction itself failed: nothing of it holds
	for i, w := range group {
		if err := w.ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		ctx := context.WithoutCancel(w.ctx)
		if _, err := tx.ExecContext(ctx, `SAVEPOINT mailferry_write`); err != nil {
			broken = err
			break
		}
		errs[i] = w.l.fenced(ctx, tx, w.fn)
		if errs[i] == nil {
			_, err = tx.ExecContext(ctx, `RELEASE mailferry_write`)
		} else if _, err = tx.ExecContext(ctx, `ROLLBACK TO mailferry_write`); err == nil {
			_, err = tx.ExecContext(ctx, `RELEASE mailferry_write`)
		}
		if err != nil {
			broken = err
			break
		}
	}
	if broken == nil {
		if broken = tx.Commit(); broken == nil {
			s.commits.Add(1)
		}
	}
	for i, w := range group {
		switch {
		case broken != nil && errs[i] == nil:
			w.answer(fmt.Errorf("commit of %d writes together: %w", len(group), broken))
		case errs[i] != nil:
			w.answer(errs[i])
		default:
			s.writes.Add(1)
			w.answer(nil)
		}
	}
}

// commitOne commits w in a transaction of its own, under its context.
func (s *Store) commitOne(w *queuedWrite) error {
	tx, err := s.db.BeginTx(w.ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := w.l.fenced(w.ctx, tx, w.fn); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	s.commits.Add(1)
	s.writes.Add(1)
	return nil
}

// fenced runs fn in tx after the lease's fence: the migration row is
// updated (last activity) only if the lease still has its epoch and
// holder, else ErrLeaseLost. On PostgreSQL that update also locks the row
// until commit, so a competing Acquire waits for this write instead of
// overtaking it.
func (l *Lease) fenced(ctx context.Context, tx *sql.Tx, fn func(ctx context.Context, tx *sql.Tx) error) error {
	res, err := l.s.execTx(ctx, tx, `UPDATE mailferry_migration SET updated_at_us = ?
WHERE id = ? AND epoch = ? AND holder = ?`, l.s.nowUTC().UnixMicro(), l.Migration.ID, l.Epoch, l.Holder)
	if err != nil {
		return err
	}
	if err := l.checkOne(res); err != nil {
		return err
	}
	return fn(ctx, tx)
}

// writeLater defers a write (see the top of this file): it is committed
// with the lease's next write, by Flush or Release, or within deferFor.
// Its failure is returned by the write that commits it, unless
// bestEffort. folder is the
// folder whose record fn changes (0: none), so that reads of it commit it
// first.
func (l *Lease) writeLater(ctx context.Context, op string, folder int64, bestEffort bool, fn func(ctx context.Context, tx *sql.Tx) error) {
	w := newWrite(l, context.WithoutCancel(ctx), fn)
	w.op, w.folder, w.bestEffort = op, folder, bestEffort
	l.mu.Lock()
	defer l.mu.Unlock()
	l.later = append(l.later, w)
	if l.laterTimer == nil {
		l.laterTimer = time.AfterFunc(deferFor, func() {
			// Committed on its own; a failure here is found again by
			// the lease's next write (the fence) or lost with the
			// process, like a crash before the commit.
			_ = l.Flush(context.Background())
		})
	} else if len(l.later) == 1 {
		l.laterTimer.Reset(deferFor)
	}
}

// takeLater returns the deferred writes, oldest first, and forgets them.
func (l *Lease) takeLater() []*queuedWrite {
	l.mu.Lock()
	defer l.mu.Unlock()
	later := l.later
	l.later = nil
	if l.laterTimer != nil {
		l.laterTimer.Stop()
	}
	return later
}

// deferredFor reports whether a deferred write changes folder's record
// (folder < 0: any folder's).
func (l *Lease) deferredFor(folder int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, w := range l.later {
		if w.folder != 0 && (folder < 0 || w.folder == folder) {
			return true
		}
	}
	return false
}

// Flush commits the lease's deferred writes now (nothing if none).
func (l *Lease) Flush(ctx context.Context) error {
	if err := l.writeTx(ctx, nil); err != nil {
		return fmt.Errorf("commit deferred writes in migration %s: %w", l.Migration.Key, err)
	}
	return nil
}
