package state_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailferry/state"
	"mailferry/state/statetest"
)

// The passes of a move add up over runs, the history keeps the latest
// HistoryPasses, and a failed pass leaves the move failed with its reason
// until a later one succeeds.
func TestPassHistoryAndTotals(t *testing.T) {
	statetest.EachDriver(t, func(t *testing.T, url string) {
		ctx := context.Background()
		clk := newClock()
		s := open(t, url, clk)
		key := state.Key{Source: "cluster:a/alice", Target: "cluster:b/alice"}

		l := acquire(t, s, key, "host1 pid 1")
		acquiredAt := clk.Now()
		clk.Advance(time.Second)
		if err := l.RecordPass(ctx, state.Pass{Phase: "copying", Result: state.PassFailed, Error: "login refused by the target",
			Messages: 10, Failed: 10}); err != nil {
			t.Fatal(err)
		}
		moves, err := s.Moves(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(moves) != 1 {
			t.Fatalf("Moves = %d rows, want 1", len(moves))
		}
		m := moves[0]
		if m.Result != state.PassFailed || m.LastError != "login refused by the target" {
			t.Errorf("after a failed pass: result %q, last error %q; want failed with the reason", m.Result, m.LastError)
		}
		if m.Holder != "host1 pid 1" || !m.Since.Equal(acquiredAt) {
			t.Errorf("holder %q since %v; want host1 pid 1 since %v", m.Holder, m.Since, acquiredAt)
		}
		if len(m.Passes) != 1 || m.Passes[0].Seq != 1 || m.Passes[0].Holder != "host1 pid 1" || m.Passes[0].Failed != 10 {
			t.Errorf("passes = %+v", m.Passes)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}

		// A second run: a pass per phase, more than the history keeps.
		l = acquire(t, s, key, "host2 pid 2")
		for i := 0; i < state.HistoryPasses+4; i++ {
			clk.Advance(time.Second)
			if err := l.RecordPass(ctx, state.Pass{Phase: "converging", Result: state.PassOK, Messages: 10,
				Changes: state.Changes{Copied: 2, BytesCopied: 200, Adopted: 1, FlagsUpdated: 3, Expunged: 1, TargetOnly: 1}}); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.SetResult(ctx, "done", ""); err != nil {
			t.Fatal(err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
		moves, err = s.Moves(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m = moves[0]
		n := int64(state.HistoryPasses + 4)
		want := state.Totals{Passes: n + 1, Changes: state.Changes{Copied: 2 * n, BytesCopied: 200 * n, Adopted: n, FlagsUpdated: 3 * n, Expunged: n, TargetOnly: n}}
		if m.Totals != want {
			t.Errorf("totals = %+v, want %+v", m.Totals, want)
		}
		if len(m.Passes) != state.HistoryPasses {
			t.Fatalf("history holds %d passes, want the latest %d", len(m.Passes), state.HistoryPasses)
		}
		if first, last := m.Passes[0].Seq, m.Passes[len(m.Passes)-1].Seq; first != n+1-state.HistoryPasses+1 || last != n+1 {
			t.Errorf("history seq %d..%d, want %d..%d", first, last, n+1-state.HistoryPasses+1, n+1)
		}
		if m.Result != "done" || m.LastError != "" || m.ResultAt.IsZero() {
			t.Errorf("after a done run: result %q at %v, last error %q", m.Result, m.ResultAt, m.LastError)
		}
		if m.Holder != "" || !m.Since.IsZero() {
			t.Errorf("released: holder %q since %v, want none", m.Holder, m.Since)
		}
	})
}

// SetPhase keeps the counters the last progress record wrote: a run that
// resumes a finished copy must not report 0 of N done.
func TestSetPhaseKeepsProgress(t *testing.T) {
	statetest.EachDriver(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s := open(t, url, newClock())
		l := acquire(t, s, state.Key{Source: "s", Target: "t"}, "h")
		if err := l.SetProgress(ctx, state.Progress{Phase: "final-delta", MessagesDone: 338, MessagesTotal: 338, BytesDone: 5000, BytesTotal: 5000}); err != nil {
			t.Fatal(err)
		}
		if err := l.SetPhase(ctx, "done", ""); err != nil {
			t.Fatal(err)
		}
		list, err := s.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if p := list[0].Progress; p.Phase != "done" || p.MessagesDone != 338 || p.MessagesTotal != 338 || p.BytesDone != 5000 {
			t.Errorf("progress after SetPhase = %+v, want done 338/338", p)
		}
	})
}

// The history is fenced like every write: a holder that lost the lease
// records nothing.
func TestRecordPassFenced(t *testing.T) {
	statetest.EachDriver(t, func(t *testing.T, url string) {
		ctx := context.Background()
		clk := newClock()
		s := open(t, url, clk)
		key := state.Key{Source: "s", Target: "t"}
		old := acquire(t, s, key, "old")
		clk.Advance(2 * time.Minute)
		acquire(t, s, key, "new")
		err := old.RecordPass(ctx, state.Pass{Phase: "copying", Result: state.PassFailed, Error: "x"})
		if !errors.Is(err, state.ErrLeaseLost) {
			t.Fatalf("RecordPass by a lost lease: %v, want ErrLeaseLost", err)
		}
		if err := old.SetResult(ctx, "failed", "x"); !errors.Is(err, state.ErrLeaseLost) {
			t.Fatalf("SetResult by a lost lease: %v, want ErrLeaseLost", err)
		}
		moves, err := s.Moves(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m := moves[0]; len(m.Passes) != 0 || m.Totals.Passes != 0 || m.Result != "" {
			t.Errorf("a lost lease wrote: %s", fmt.Sprintf("%+v", m))
		}
	})
}

// A state written by schema version 2 (a move at ready with its counters)
// is brought to version 3: the move keeps its progress, has no result and
// no passes yet, and records them from then on.
func TestUpgradeFromSchema2(t *testing.T) {
	statetest.EachDriver(t, func(t *testing.T, url string) {
		ctx := context.Background()
		driver := "sqlite"
		if !strings.HasPrefix(url, "sqlite:") {
			driver = "postgres"
		}
		raw := statetest.RawDB(t, url)
		if _, err := raw.Exec(`CREATE TABLE mailferry_schema_version (version INTEGER NOT NULL PRIMARY KEY, applied_at_us BIGINT NOT NULL)`); err != nil {
			t.Fatal(err)
		}
		for v, name := range []string{"001_initial.sql", "002_suspects.sql"} {
			body, err := os.ReadFile(filepath.Join("migrations", driver, name))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := raw.Exec(string(body)); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if _, err := raw.Exec(fmt.Sprintf(`INSERT INTO mailferry_schema_version (version, applied_at_us) VALUES (%d, 0)`, v+1)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := raw.Exec(`INSERT INTO mailferry_migration (source, target, phase, messages_done, messages_total, created_at_us, updated_at_us)
VALUES ('cluster:a/bob', 'cluster:b/bob', 'ready', 7, 7, 1, 1)`); err != nil {
			t.Fatal(err)
		}
		s := open(t, url, newClock())
		moves, err := s.Moves(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(moves) != 1 || moves[0].Phase != "ready" || moves[0].MessagesDone != 7 || moves[0].Result != "" ||
			moves[0].Totals != (state.Totals{}) || len(moves[0].Passes) != 0 {
			t.Fatalf("after the upgrade: %+v", moves)
		}
		l := acquire(t, s, moves[0].Key, "h")
		if err := l.RecordPass(ctx, state.Pass{Phase: "final-delta", Result: state.PassOK, Changes: state.Changes{Copied: 1}}); err != nil {
			t.Fatal(err)
		}
		if moves, err = s.Moves(ctx); err != nil || moves[0].Totals.Copied != 1 || len(moves[0].Passes) != 1 {
			t.Fatalf("a pass after the upgrade: %+v, %v", moves, err)
		}
	})
}
