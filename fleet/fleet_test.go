package fleet

import (
	"context"
	"sync"
	"testing"
	"time"

	"mailferry/migrate"
	"mailferry/state/statetest"
	"mailferry/throttle"
)

const testWait = 30 * time.Second // every wait of these tests; longer is a hang

func openTest(t *testing.T, url string) *Fleet {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	f, err := Open(ctx, Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f
}

// eventually polls cond every 20 ms until it holds or testWait passed.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, testWait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runWorker runs Work in the background until the test ends (stopped
// softly) and returns the moves it ran.
func runWorker(t *testing.T, f *Fleet, o WorkerOptions) func() []MoveArgs {
	t.Helper()
	var mu sync.Mutex
	var ran []MoveArgs
	if o.Run == nil {
		o.Run = func(_ context.Context, m MoveArgs) Outcome {
			mu.Lock()
			ran = append(ran, m)
			mu.Unlock()
			return Outcome{Result: migrate.MoveResult{Mailbox: m.Mailbox, From: m.From, To: m.To, Phase: migrate.PhaseDone, Result: migrate.ResultDone}}
		}
	}
	stop := make(chan struct{})
	o.Stop = stop
	done := make(chan error, 1)
	go func() { done <- f.Work(context.Background(), o) }()
	t.Cleanup(func() {
		close(stop)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("worker %s: %v", o.Name, err)
			}
		case <-time.After(testWait):
			t.Errorf("worker %s did not stop within %v", o.Name, testWait)
		}
	})
	return func() []MoveArgs {
		mu.Lock()
		defer mu.Unlock()
		return append([]MoveArgs(nil), ran...)
	}
}

// A move is queued once however often it is submitted, and not at all
// once a job finished it; a worker runs each exactly once.
func TestSubmitQueuesEachMoveOnce(t *testing.T) {
	f := openTest(t, statetest.Postgres(t))
	ctx := context.Background()
	moves := []MoveArgs{{Mailbox: "a", From: "x", To: "y"}, {Mailbox: "b", From: "x", To: "y"}, {Mailbox: "a", From: "x", To: "z"}}
	rep, err := f.Submit(ctx, moves)
	if err != nil || rep.Queued != 3 {
		t.Fatalf("first submit: %+v, %v; want 3 queued", rep, err)
	}
	moves[0].Plan = "another plan" // the plan does not make it another move
	if rep, err = f.Submit(ctx, moves); err != nil || rep.Queued != 0 || rep.Duplicate != 3 {
		t.Fatalf("second submit: %+v, %v; want 3 duplicates", rep, err)
	}
	ran := runWorker(t, f, WorkerOptions{Name: "w", Parallel: 2})
	eventually(t, "3 moves done", func() bool {
		jobs, err := f.Jobs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, j := range jobs {
			if j.Finished() {
				n++
			}
		}
		return n == 3
	})
	if rep, err = f.Submit(ctx, moves); err != nil || rep.Queued != 0 || rep.Done != 3 {
		t.Fatalf("submit after done: %+v, %v; want 3 done", rep, err)
	}
	if got := ran(); len(got) != 3 {
		t.Errorf("the worker ran %d moves, want 3: %+v", len(got), got)
	}
}

// Two workers' gates share a cluster's places; the places of a worker
// whose connection is gone (it died) come back at once.
func TestGatesShareCapAcrossWorkers(t *testing.T) {
	url := statetest.Postgres(t)
	g1, g2 := openTest(t, url).NewGates("w1"), openTest(t, url).NewGates("w2")
	defer g2.Close()
	a, b := g1.Gate("alpha", 3), g2.Gate("alpha", 3)
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	var releases []func()
	for _, g := range []*Gate{a, a, b} {
		rel, err := g.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, rel)
	}
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	if _, err := b.Acquire(short); err == nil {
		t.Fatal("a fourth place of a cluster with 3 was given")
	}
	cancelShort()
	if g1.Held("alpha") != 2 || g2.Held("alpha") != 1 {
		t.Fatalf("held %d and %d, want 2 and 1", g1.Held("alpha"), g2.Held("alpha"))
	}
	releases[2]() // given back: taken again
	rel, err := b.Acquire(ctx)
	if err != nil {
		t.Fatalf("a released place: %v", err)
	}
	defer rel()
	g1.Close() // the first worker dies: its two places come back
	for range 2 {
		if _, err := b.Acquire(ctx); err != nil {
			t.Fatalf("a dead worker's place: %v", err)
		}
	}
	if g2.Held("alpha") != 3 {
		t.Errorf("the second worker holds %d places, want all 3", g2.Held("alpha"))
	}
}

// An adaptive decrease on one worker lowers the other's limit and the
// cluster's places; the rates are divided among the workers alive.
func TestSharesReachEveryWorker(t *testing.T) {
	url := statetest.Postgres(t)
	f1, f2 := openTest(t, url), openTest(t, url)
	cfg := throttle.Config{MaxConnections: 8, BytesPerSecond: 1000, MessagesPerSecond: 10}
	l1, _ := throttle.New("alpha", cfg)
	l2, _ := throttle.New("alpha", cfg)
	g2 := f2.NewGates("w2")
	defer g2.Close()
	gate := g2.Gate("alpha", 8)
	l2.SetConnGate(gate)
	opts := func(name string, l *throttle.Limiter, g *Gates) WorkerOptions {
		return WorkerOptions{Name: name, Heartbeat: 100 * time.Millisecond, Recover: time.Hour,
			Clusters: []Cluster{{Name: "alpha", Cap: 8, Limiter: l}}, Gates: g}
	}
	runWorker(t, f1, opts("w1", l1, nil))
	runWorker(t, f2, opts("w2", l2, g2))
	eventually(t, "rates halved on both workers", func() bool {
		b1, m1 := l1.Rates()
		b2, m2 := l2.Rates()
		return b1 == 500 && m1 == 5 && b2 == 500 && m2 == 5
	})
	l1.LowerLimit(2) // w1's limiter decided the cluster suffers
	eventually(t, "w2's limit follows w1's decrease", func() bool { return l2.Snapshot().Limit == 2 })
	// w2 now has 2 places of alpha: a third waits.
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	for range 2 {
		if _, err := gate.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
	}
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	if _, err := gate.Acquire(short); err == nil {
		t.Error("a third place was given after the fleet's share fell to 2 of 8")
	}
}

// The moves of a worker whose heartbeat stopped (killed, frozen) go to
// another worker without waiting for River's age-based rescue.
func TestMovesOfADeadWorkerAreGivenBack(t *testing.T) {
	url := statetest.Postgres(t)
	f := openTest(t, url)
	ctx := context.Background()
	if _, err := f.Submit(ctx, []MoveArgs{{Mailbox: "a", From: "x", To: "y"}}); err != nil {
		t.Fatal(err)
	}
	db := statetest.RawDB(t, url)
	// A worker took the move and died: its job runs, its heartbeat is old.
	if _, err := db.Exec(`INSERT INTO mailferry_fleet_worker (name, host, pid, holder, heartbeat_at) VALUES ('ghost', 'h', 1, 'h pid 1', now() - interval '1 hour')`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE river_job SET state = 'running', attempt = 1, attempted_at = now(), attempted_by = '{ghost}'`); err != nil {
		t.Fatal(err)
	}
	ran := runWorker(t, f, WorkerOptions{Name: "alive", Heartbeat: 100 * time.Millisecond, RescueAfter: time.Hour})
	eventually(t, "the dead worker's move runs on the live one", func() bool { return len(ran()) == 1 })
}
