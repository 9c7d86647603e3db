package state

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailferry/state/statetest"
)

// Writes that queue while another holds the write turn are committed
// together, in one transaction, by the next writer to get it; each is
// still fenced by its own lease and applied whole or not at all: a lost
// lease, a write that fails after some of its statements ran, and a
// writer whose context ended fail alone, and the others are committed.
func TestGroupCommit(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 6
	leases := make([]*Lease, n)
	ids := make([]int64, n)
	for i := range leases {
		if leases[i], err = s.Acquire(ctx, Key{Source: fmt.Sprintf("s%d", i), Target: fmt.Sprintf("t%d", i)}, "test", time.Hour); err != nil {
			t.Fatal(err)
		}
		if ids[i], err = leases[i].PutFolder(ctx, Folder{Source: "INBOX", Target: "INBOX"}); err != nil {
			t.Fatal(err)
		}
	}
	const lost, failing, cancelled = 2, 3, 4
	if err := leases[lost].Release(ctx); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	updatedAt := func(i int) int64 {
		var us int64
		if err := s.db.QueryRowContext(ctx, `SELECT updated_at_us FROM mailferry_migration WHERE id = ?`, leases[i].Migration.ID).Scan(&us); err != nil {
			t.Fatal(err)
		}
		return us
	}
	failingBefore := updatedAt(failing)

	commits, writes := s.commits.Load(), s.writes.Load()
	release := s.writing() // another write holds the turn
	errs := make(chan [2]any, n)
	for i, l := range leases {
		go func() {
			var err error
			switch i {
			case failing:
				// Its upsert runs, then it fails: the folder's new
				// target name must be rolled back with its fence.
				_, err = l.PutFolder(ctx, Folder{ID: ids[i] + 100, Source: "INBOX", Target: "Renamed"})
			case cancelled:
				err = l.PutBatch(cctx, ids[i], []Message{{SrcUID: 1, DstUID: 1, Size: 1}}, 2, "")
			default:
				err = l.PutBatch(ctx, ids[i], []Message{{SrcUID: 1, DstUID: 7, Size: 10}, {SrcUID: 2, DstUID: 8, Size: 20}}, 9, "")
			}
			errs <- [2]any{i, err}
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.qmu.Lock()
		q := len(s.queued)
		s.qmu.Unlock()
		if q == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d writes queued", q, n)
		}
		time.Sleep(time.Millisecond)
	}
	release()
	got := make([]error, n)
	for range n {
		r := <-errs
		got[r[0].(int)], _ = r[1].(error)
	}
	if c := s.commits.Load() - commits; c != 1 {
		t.Errorf("%d writes queued behind another took %d commits, want 1", n, c)
	}
	if w := s.writes.Load() - writes; w != n-3 {
		t.Errorf("Writes counted %d, want %d (the writes that succeeded)", w, n-3)
	}
	for i, err := range got {
		switch i {
		case lost:
			if !errors.Is(err, ErrLeaseLost) {
				t.Errorf("write of the released lease: %v, want ErrLeaseLost", err)
			}
		case failing:
			if err == nil {
				t.Errorf("PutFolder with the wrong ID succeeded")
			}
		case cancelled:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("write with an ended context: %v, want context.Canceled", err)
			}
		default:
			if err != nil {
				t.Errorf("write %d: %v", i, err)
			}
		}
	}
	for i, l := range leases {
		if i == lost {
			continue
		}
		msgs, err := l.Messages(ctx, ids[i])
		if err != nil {
			t.Fatal(err)
		}
		f, _, err := l.LookupFolder(ctx, "INBOX")
		if err != nil {
			t.Fatal(err)
		}
		switch i {
		case failing, cancelled:
			if len(msgs) != 0 || f.Target != "INBOX" || f.DstUIDNextMark != 0 {
				t.Errorf("lease %d's failed write left %d messages, target %q, mark %d", i, len(msgs), f.Target, f.DstUIDNextMark)
			}
		default:
			if len(msgs) != 2 || msgs[1].DstUID != 8 || f.DstUIDNextMark != 9 {
				t.Errorf("lease %d: %d messages (%+v), mark %d; want 2, mark 9", i, len(msgs), msgs, f.DstUIDNextMark)
			}
		}
	}
	if after := updatedAt(failing); after != failingBefore {
		t.Errorf("the failed write's fence update was kept: updated_at %d, was %d", after, failingBefore)
	}
	// The turn is free again, and a write alone commits alone.
	commits = s.commits.Load()
	if err := leases[0].SetMark(ctx, ids[0], 11); err != nil {
		t.Fatal(err)
	}
	if c := s.commits.Load() - commits; c != 1 {
		t.Errorf("a write alone took %d commits", c)
	}
}

// A deferred write is committed with the lease's next write, in the same
// transaction and before it; by a read of its folder; within deferFor on
// its own; and by Release. Until then no other reader sees it. A deferred
// write that fails fails the write that commits it, which still commits.
func TestDeferredWrites(t *testing.T) {
	statetest.EachDriver(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s, err := Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		other, err := Open(ctx, url) // another reader: sees committed state only
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		l, err := s.Acquire(ctx, Key{Source: "s", Target: "t"}, "test", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		a, err := l.PutFolder(ctx, Folder{Source: "A", Target: "A"})
		if err != nil {
			t.Fatal(err)
		}
		b, err := l.PutFolder(ctx, Folder{Source: "B", Target: "B"})
		if err != nil {
			t.Fatal(err)
		}
		committed := func(folder int64) (msgs int, modseq int64, phase string) {
			t.Helper()
			if err := other.db.QueryRowContext(ctx, other.q(`SELECT
(SELECT count(*) FROM mailferry_message WHERE folder_id = ?),
(SELECT src_highest_modseq FROM mailferry_folder WHERE id = ?),
(SELECT phase FROM mailferry_migration WHERE id = ?)`), folder, folder, l.Migration.ID).Scan(&msgs, &modseq, &phase); err != nil {
				t.Fatal(err)
			}
			return
		}
		two := []Message{{SrcUID: 1, DstUID: 1, Size: 5}, {SrcUID: 2, DstUID: 2, Size: 6}}

		commits := s.commits.Load()
		if err := l.DeferLastBatch(ctx, a, two, 3, "", 7); err != nil {
			t.Fatal(err)
		}
		l.DeferProgress(ctx, Progress{Phase: "copying", MessagesDone: 2})
		if n, m, p := committed(a); n != 0 || m != 0 || p == "copying" || s.commits.Load() != commits {
			t.Fatalf("deferred writes seen before the next write: %d messages, modseq %d, phase %q", n, m, p)
		}
		// The next write commits them first, in its own transaction; an
		// older progress does not land over a newer phase.
		l.DeferProgress(ctx, Progress{Phase: "older"})
		if err := l.SetPhase(ctx, "converging", ""); err != nil {
			t.Fatal(err)
		}
		if n, m, p := committed(a); n != 2 || m != 7 || p != "converging" {
			t.Errorf("after the next write: %d messages, modseq %d, phase %q; want 2, 7, converging", n, m, p)
		}
		if c := s.commits.Load() - commits; c != 1 {
			t.Errorf("the deferred writes and the next took %d commits, want 1", c)
		}

		// A read of the folder commits what changes it first.
		if err := l.DeferLastBatch(ctx, b, two, 3, "", 9); err != nil {
			t.Fatal(err)
		}
		if got, err := l.Messages(ctx, b); err != nil || len(got) != 2 {
			t.Errorf("Messages of a folder with a deferred batch: %d, %v; want 2", len(got), err)
		}
		if err := l.DeferLastBatch(ctx, b, two[:1], 3, "", 11); err != nil {
			t.Fatal(err)
		}
		if f, ok, err := l.LookupFolder(ctx, "B"); err != nil || !ok || f.SrcHighestModSeq != 11 {
			t.Errorf("LookupFolder of a folder with a deferred batch: modseq %d, %v, %v; want 11", f.SrcHighestModSeq, ok, err)
		}

		// Alone, it is committed within deferFor.
		l.DeferProgress(ctx, Progress{Phase: "alone"})
		deadline := time.Now().Add(deferFor + 5*time.Second)
		for {
			if _, _, p := committed(a); p == "alone" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("a deferred write alone was not committed within %v", deferFor+5*time.Second)
			}
			time.Sleep(20 * time.Millisecond)
		}

		// A failing deferred write fails the write that commits it; that
		// write is committed all the same.
		if err := l.DeferLastBatch(ctx, b+1000, two, 3, "", 1); err != nil {
			t.Fatal(err)
		}
		if err := l.SetPhase(ctx, "ready", ""); !errors.Is(err, ErrNoFolder) || !strings.Contains(err.Error(), "(deferred)") {
			t.Errorf("write after a failing deferred one: %v, want ErrNoFolder, named deferred", err)
		}
		if _, _, p := committed(a); p != "ready" {
			t.Errorf("phase %q, want ready", p)
		}

		// Release commits what is deferred.
		if err := l.DeferLastBatch(ctx, a, append(two, Message{SrcUID: 3, DstUID: 3, Size: 7}), 4, "", 13); err != nil {
			t.Fatal(err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if n, m, _ := committed(a); n != 3 || m != 13 {
			t.Errorf("after Release: %d messages, modseq %d; want 3, 13", n, m)
		}
	})
}
