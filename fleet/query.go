package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"mailferry/migrate"
)

// Job states as River names them.
const (
	StateAvailable = "available"
	StateRunning   = "running"
	StateRetryable = "retryable"
	StateScheduled = "scheduled"
	StatePending   = "pending"
	StateCompleted = "completed"
	StateDiscarded = "discarded"
	StateCancelled = "cancelled"
)

// Final reports whether a job in River state s will not run again.
func Final(s string) bool {
	return s == StateCompleted || s == StateDiscarded || s == StateCancelled
}

// MoveJob is the newest job of one move.
type MoveJob struct {
	MoveArgs
	ID      int64
	State   string
	Attempt int
	Errors  []string  // the errors of the attempts, oldest first
	Output  *Output   // nil until an attempt recorded one
	Ended   time.Time // zero until final
}

// Finished reports whether the job ended with the move done (a finished
// move is not submitted again).
func (j MoveJob) Finished() bool {
	if j.State != StateCompleted || j.Output == nil {
		return false
	}
	r := j.Output.Move.Result
	return r == migrate.ResultDone || r == migrate.ResultSkipped && j.Output.Move.Phase == migrate.PhaseDone
}

// Jobs returns the newest job of each move in the queue, by mailbox, from
// and to (MoveKey).
func (f *Fleet) Jobs(ctx context.Context) (map[MoveArgs]MoveJob, error) {
	rows, err := f.pool.Query(ctx, `SELECT DISTINCT ON (args->>'mailbox', args->>'from', args->>'to')
id, args, state, attempt, coalesce(metadata->'output', 'null'::jsonb), coalesce(finalized_at, 'epoch'::timestamptz),
coalesce(array(SELECT e->>'error' FROM jsonb_array_elements(to_jsonb(errors)) e), '{}')
FROM river_job WHERE kind = $1 ORDER BY args->>'mailbox', args->>'from', args->>'to', id DESC`, MoveKind)
	if err != nil {
		return nil, fmt.Errorf("fleet: list moves: %w", err)
	}
	defer rows.Close()
	out := map[MoveArgs]MoveJob{}
	for rows.Next() {
		var j MoveJob
		var args, output []byte
		if err := rows.Scan(&j.ID, &args, &j.State, &j.Attempt, &output, &j.Ended, &j.Errors); err != nil {
			return nil, fmt.Errorf("fleet: list moves: %w", err)
		}
		if err := json.Unmarshal(args, &j.MoveArgs); err != nil {
			return nil, fmt.Errorf("fleet: job %d: args: %w", j.ID, err)
		}
		if string(output) != "null" {
			j.Output = &Output{}
			if err := json.Unmarshal(output, j.Output); err != nil {
				return nil, fmt.Errorf("fleet: job %d: output: %w", j.ID, err)
			}
		}
		out[MoveKey(j.MoveArgs)] = j
	}
	return out, rows.Err()
}

// MoveKey is a move's identity in the queue: mailbox, from and to only.
func MoveKey(m MoveArgs) MoveArgs { return MoveArgs{Mailbox: m.Mailbox, From: m.From, To: m.To} }

// WorkerInfo is one worker of the registry.
type WorkerInfo struct {
	Name      string    `json:"name"`
	Host      string    `json:"host"`
	PID       int       `json:"pid"`
	Holder    string    `json:"holder"`
	Started   time.Time `json:"started"`
	Heartbeat time.Time `json:"heartbeat"`
	Moves     int       `json:"moves"`      // running now
	MovesDone int64     `json:"moves_done"` // since it started
	Stopping  bool      `json:"stopping,omitempty"`
	Alive     bool      `json:"alive"` // heartbeat younger than 3 of its periods
}

// Workers lists the registry; Alive says whose heartbeat is younger than
// 3 of its periods.
func (f *Fleet) Workers(ctx context.Context) ([]WorkerInfo, error) {
	var exists bool
	if err := f.pool.QueryRow(ctx, `SELECT to_regclass('mailferry_fleet_worker') IS NOT NULL`).Scan(&exists); err != nil {
		return nil, fmt.Errorf("fleet: list workers: %w", err)
	}
	if !exists {
		return nil, nil // no worker ever ran on this state
	}
	rows, err := f.pool.Query(ctx, `SELECT name, host, pid, holder, started_at, heartbeat_at, moves, moves_done, stopping,
`+aliveClause+` FROM mailferry_fleet_worker ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("fleet: list workers: %w", err)
	}
	defer rows.Close()
	var out []WorkerInfo
	for rows.Next() {
		var w WorkerInfo
		if err := rows.Scan(&w.Name, &w.Host, &w.PID, &w.Holder, &w.Started, &w.Heartbeat, &w.Moves, &w.MovesDone, &w.Stopping, &w.Alive); err != nil {
			return nil, fmt.Errorf("fleet: list workers: %w", err)
		}
		out = append(out, w)
	}
	return out, rows.Err()
}
