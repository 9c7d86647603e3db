package state

import (
	"context"
	"fmt"
	"time"
)

// Reached is a migration found in a phase by InPhase: its key, the totals
// its last progress recorded, when it was created (its first lease) and
// when it last changed (for a finished migration: when it finished).
type Reached struct {
	Key      Key
	Messages int64
	Bytes    int64
	Created  time.Time // UTC
	Updated  time.Time // UTC
}

// InPhase lists the migrations whose phase is phase (such as "done"),
// oldest change first. It only reads committed state and takes no lock, so
// a planner can ask where earlier runs took mailboxes while a run goes on.
func (s *Store) InPhase(ctx context.Context, phase string) ([]Reached, error) {
	return s.reached(ctx, "phase = ?", phase, phase+" migrations")
}

// NotInPhase lists the migrations whose phase is anything but phase (such
// as every migration that is not "done": in flight, held, failed), oldest
// change first, like InPhase.
func (s *Store) NotInPhase(ctx context.Context, phase string) ([]Reached, error) {
	return s.reached(ctx, "phase <> ?", phase, "migrations not "+phase)
}

// reached lists the migrations matching cond (with one argument), oldest
// change first; what names them in errors.
func (s *Store) reached(ctx context.Context, cond, arg, what string) ([]Reached, error) {
	fail := func(err error) ([]Reached, error) {
		return nil, fmt.Errorf("list %s in %s: %w", what, s.drv.location(), err)
	}
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT source, target, messages_total, bytes_total, created_at_us, updated_at_us
		FROM mailferry_migration WHERE `+cond+` ORDER BY updated_at_us, id`), arg)
	if err != nil {
		return fail(err)
	}
	defer rows.Close()
	var out []Reached
	for rows.Next() {
		var r Reached
		var created, updated int64
		if err := rows.Scan(&r.Key.Source, &r.Key.Target, &r.Messages, &r.Bytes, &created, &updated); err != nil {
			return fail(err)
		}
		r.Created, r.Updated = fromMicro(created), fromMicro(updated)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return fail(err)
	}
	return out, nil
}
