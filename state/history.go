package state

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// HistoryPasses is how many of a migration's latest passes the state
// keeps; older ones leave the history (their changes stay in Totals).
const HistoryPasses = 20

// Results of a pass or of a run, as RecordPass and SetResult record them.
const (
	PassOK          = "ok"          // the pass ended with every message copied
	PassFailed      = "failed"      // messages or the whole mailbox failed
	PassInterrupted = "interrupted" // stopped by the operator or a shutdown
	PassWaiting     = "waiting"     // stopped outside the time windows
)

// Changes counts what passes changed on the target.
type Changes struct {
	Copied            int64 // messages appended
	BytesCopied       int64 // bytes of those
	Adopted           int64 // found on the target from an earlier run, not appended again
	FlagsUpdated      int64 // target copies whose flags were updated
	Expunged          int64 // target copies of messages deleted on the source
	TargetOnly        int64 // the target's own messages, left alone
	DuplicatesRemoved int64 // duplicate copies removed
}

func (c *Changes) add(o Changes) {
	c.Copied += o.Copied
	c.BytesCopied += o.BytesCopied
	c.Adopted += o.Adopted
	c.FlagsUpdated += o.FlagsUpdated
	c.Expunged += o.Expunged
	c.TargetOnly += o.TargetOnly
	c.DuplicatesRemoved += o.DuplicatesRemoved
}

// Pass is one copy pass over a migration, as its history keeps it.
type Pass struct {
	Seq            int64     // 1 for the migration's first pass, then 2, 3...
	Phase          string    // the phase the pass ran in (copying, converging, ...)
	Result         string    // PassOK, PassFailed, PassInterrupted, PassWaiting
	Error          string    // why it failed or stopped, in words; "" when OK
	Holder         string    // the process that ran it
	Started, Ended time.Time // UTC
	Messages       int64     // messages of the mailbox the pass saw
	Failed         int64     // of those, how many failed
	Changes
}

// Totals is what every pass of a migration changed, over all runs.
type Totals struct {
	Passes int64
	Changes
}

// MoveStatus is a migration as `mailferry status` shows it: List's
// Status with the last outcome, the lease's age, the totals of every pass
// and the latest passes.
type MoveStatus struct {
	Status
	// Result is the outcome of the last run (or of its last pass, while
	// a run goes on): "" when none ended yet.
	Result   string
	ResultAt time.Time // UTC; zero when Result is ""
	// Since is when the current Holder took the lease; zero when free.
	Since  time.Time
	Totals Totals
	// Passes are the latest passes (at most HistoryPasses), oldest first.
	Passes []Pass
}

// RecordPass adds one pass to the migration's history and totals, and
// takes the migration's result and last error from it: a failed or
// stopped pass sets them (Error says why), an OK one clears them (the run
// that ran it sets its own result with SetResult). Seq is assigned here.
func (l *Lease) RecordPass(ctx context.Context, p Pass) error {
	now := l.s.nowUTC()
	if p.Ended.IsZero() {
		p.Ended = now
	}
	if p.Started.IsZero() {
		p.Started = p.Ended
	}
	if p.Holder == "" {
		p.Holder = l.Holder
	}
	result, lastErr := p.Result, p.Error
	if result == PassOK {
		result, lastErr = "", ""
	}
	return l.write(ctx, "record pass", func(ctx context.Context, tx *sql.Tx) error {
		var seq int64
		if err := tx.QueryRowContext(ctx, l.s.q(`UPDATE mailferry_migration SET passes_total = passes_total + 1,
copied_total = copied_total + ?, bytes_copied_total = bytes_copied_total + ?, adopted_total = adopted_total + ?,
flags_updated_total = flags_updated_total + ?, expunged_total = expunged_total + ?, target_only_total = target_only_total + ?,
duplicates_removed_total = duplicates_removed_total + ?, result = ?, result_at_us = ?, last_error = ?
WHERE id = ? RETURNING passes_total`),
			p.Copied, p.BytesCopied, p.Adopted, p.FlagsUpdated, p.Expunged, p.TargetOnly, p.DuplicatesRemoved,
			result, resultTime(result, now), lastErr, l.Migration.ID).Scan(&seq); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, l.s.q(`INSERT INTO mailferry_pass (migration_id, seq, phase, result, error, holder,
started_at_us, ended_at_us, messages, copied, bytes_copied, adopted, flags_updated, expunged, target_only, duplicates_removed, failed)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			l.Migration.ID, seq, p.Phase, p.Result, p.Error, p.Holder, p.Started.UTC().UnixMicro(), p.Ended.UTC().UnixMicro(),
			p.Messages, p.Copied, p.BytesCopied, p.Adopted, p.FlagsUpdated, p.Expunged, p.TargetOnly, p.DuplicatesRemoved, p.Failed); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, l.s.q(`DELETE FROM mailferry_pass WHERE migration_id = ? AND seq <= ?`),
			l.Migration.ID, seq-HistoryPasses)
		return err
	})
}

func resultTime(result string, now time.Time) int64 {
	if result == "" {
		return 0
	}
	return now.UnixMicro()
}

// SetResult records the outcome of a run on the migration (done, failed,
// held, synced, interrupted...) and why, in words (lastErr "" clears the
// last error).
func (l *Lease) SetResult(ctx context.Context, result, lastErr string) error {
	now := l.s.nowUTC()
	return l.write(ctx, "set result", func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, l.s.q(`UPDATE mailferry_migration SET result = ?, result_at_us = ?, last_error = ? WHERE id = ?`),
			result, resultTime(result, now), lastErr, l.Migration.ID)
		return err
	})
}

// SetPhase records the migration's phase and last error ("" clears it),
// keeping its counters as the last pass recorded them.
func (l *Lease) SetPhase(ctx context.Context, phase, lastErr string) error {
	return l.write(ctx, "set phase", func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, l.s.q(`UPDATE mailferry_migration SET phase = ?, last_error = ? WHERE id = ?`),
			phase, lastErr, l.Migration.ID)
		return err
	})
}

// Moves returns every migration as List does, each with its last result,
// the time its holder took the lease, the totals of all its passes and
// its latest passes. It reads committed state only and takes no lock.
func (s *Store) Moves(ctx context.Context) ([]MoveStatus, error) {
	list, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	extra, err := s.moveExtras(ctx)
	if err != nil {
		return nil, fmt.Errorf("list moves in %s: %w", s.drv.location(), err)
	}
	passes, err := s.passes(ctx)
	if err != nil {
		return nil, fmt.Errorf("list passes in %s: %w", s.drv.location(), err)
	}
	out := make([]MoveStatus, len(list))
	for i, st := range list {
		m := extra[st.ID]
		m.Status = st
		if st.Holder == "" {
			m.Since = time.Time{}
		}
		m.Passes = passes[st.ID]
		out[i] = m
	}
	return out, nil
}

func (s *Store) moveExtras(ctx context.Context) (map[int64]MoveStatus, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, result, result_at_us, acquired_at_us, passes_total, copied_total,
bytes_copied_total, adopted_total, flags_updated_total, expunged_total, target_only_total, duplicates_removed_total
FROM mailferry_migration`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int64]MoveStatus{}
	for rows.Next() {
		var id, resultAt, since int64
		var m MoveStatus
		t := &m.Totals
		if err := rows.Scan(&id, &m.Result, &resultAt, &since, &t.Passes, &t.Copied, &t.BytesCopied, &t.Adopted,
			&t.FlagsUpdated, &t.Expunged, &t.TargetOnly, &t.DuplicatesRemoved); err != nil {
			return nil, err
		}
		m.ResultAt, m.Since = fromMicro(resultAt), fromMicro(since)
		out[id] = m
	}
	return out, rows.Err()
}

func (s *Store) passes(ctx context.Context) (map[int64][]Pass, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT migration_id, seq, phase, result, error, holder, started_at_us, ended_at_us,
messages, copied, bytes_copied, adopted, flags_updated, expunged, target_only, duplicates_removed, failed
FROM mailferry_pass ORDER BY migration_id, seq`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int64][]Pass{}
	for rows.Next() {
		var id, started, ended int64
		var p Pass
		if err := rows.Scan(&id, &p.Seq, &p.Phase, &p.Result, &p.Error, &p.Holder, &started, &ended,
			&p.Messages, &p.Copied, &p.BytesCopied, &p.Adopted, &p.FlagsUpdated, &p.Expunged, &p.TargetOnly,
			&p.DuplicatesRemoved, &p.Failed); err != nil {
			return nil, err
		}
		p.Started, p.Ended = fromMicro(started), fromMicro(ended)
		out[id] = append(out[id], p)
	}
	return out, rows.Err()
}
