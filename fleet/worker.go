package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"mailferry/migrate"
	"mailferry/state"
	"mailferry/throttle"
)

// Outcome is what running one move gave, as the worker's Run reports it.
type Outcome struct {
	Result migrate.MoveResult
	// Held: the move's lease is held by another process (a worker that
	// stalled or died and whose lease has not expired yet).
	Held *state.HeldError
	// LeaseLost: another process took the move over while this one worked
	// on it (this one stalled past its lease); nothing of this run's was
	// written after that, and the move is given up.
	LeaseLost bool
	// Permanent: the move cannot run as configured (a login that cannot
	// be built, a cluster the inventory lacks); it is not retried.
	Permanent bool
}

// Output is what a move's job records (River's job output) when it ends.
type Output struct {
	Worker string             `json:"worker"`
	Move   migrate.MoveResult `json:"move"`
}

// Cluster is one cluster's limits, as the fleet shares them.
type Cluster struct {
	Name     string
	Cap      int  // connection places fleet-wide
	Degraded bool // start at a quarter of the places
	// Limiter is this worker's limiter of the cluster; the worker sets its
	// rate share and lowers its limit as the fleet's share says.
	Limiter *throttle.Limiter
}

// WorkerOptions configure Work.
type WorkerOptions struct {
	// Name names the worker in the registry (`mailferry status`); unique
	// in the fleet.
	Name, Host string
	PID        int
	// Holder is the lease holder name this worker's moves carry.
	Holder string
	// Parallel moves at once; 0 means 4.
	Parallel int
	// Run runs one move to the end of what it may do now. It must be safe
	// for concurrent use.
	Run func(ctx context.Context, m MoveArgs) Outcome
	// Clusters are the clusters whose shares this worker follows.
	Clusters []Cluster
	// Gates hand out the clusters' connection places (NewGates); the
	// Limiters of Clusters must use them (throttle.WithConnGate).
	Gates *Gates
	// Heartbeat is the registry's heartbeat period; 0 means 2s. A worker
	// whose heartbeat is older than 3 periods is not counted alive.
	Heartbeat time.Duration
	// RescueAfter: a job running this long is taken back by River's
	// rescuer and run again elsewhere (a worker that died); 0 means 5m. A
	// rescue of a move still running is harmless: the second run finds the
	// lease held and waits.
	RescueAfter time.Duration
	// Recover is how long the fleet's share of a cluster must go without
	// a decrease to grow by one place; 0 means 10s.
	Recover time.Duration
	// LeaseTTL is the lease duration of the moves (a move given up waits
	// that long before it is tried again); 0 means 30s.
	LeaseTTL time.Duration
	// Stop, when closed, stops taking moves; moves in flight finish their
	// batches (Run sees the same channel) and are given back to the queue.
	Stop <-chan struct{}
	// Logger receives River's warnings; nil discards them.
	Logger *slog.Logger
	// OnBeat, when set, is called after each heartbeat with the number of
	// workers alive (tests, progress).
	OnBeat func(alive int)
}

func (o *WorkerOptions) defaults() {
	if o.Parallel <= 0 {
		o.Parallel = 4
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = 2 * time.Second
	}
	if o.RescueAfter <= 0 {
		o.RescueAfter = 5 * time.Minute
	}
	if o.Recover <= 0 {
		o.Recover = 10 * time.Second
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// moveWorker is the River worker of moves.
type moveWorker struct {
	river.WorkerDefaults[MoveArgs]
	o       *WorkerOptions
	running atomic.Int64
	done    atomic.Int64
}

// Work runs one move and turns its outcome into River's terms: done,
// synced and held moves complete the job; a move interrupted by a stop,
// held by another process, or taken over by one goes back to the queue
// without using an attempt; a failed move is retried with backoff.
func (w *moveWorker) Work(ctx context.Context, job *river.Job[MoveArgs]) error {
	w.running.Add(1)
	defer w.running.Add(-1)
	out := w.o.Run(ctx, job.Args)
	if err := river.RecordOutput(ctx, Output{Worker: w.o.Name, Move: out.Result}); err != nil {
		return fmt.Errorf("record the outcome of move %s: %w", job.Args.Mailbox, err)
	}
	switch r := out.Result; {
	case out.LeaseLost:
		return river.JobSnooze(w.o.LeaseTTL)
	case out.Held != nil:
		wait := time.Until(out.Held.Expires) + time.Second
		return river.JobSnooze(min(max(wait, time.Second), w.o.LeaseTTL+time.Second))
	case r.Result == migrate.ResultInterrupted:
		if stopped(w.o.Stop) || ctx.Err() != nil {
			return river.JobSnooze(0) // given back: another worker takes it now
		}
		return river.JobSnooze(time.Minute) // a closed time window
	case r.Result == migrate.ResultFailed && out.Permanent:
		return river.JobCancel(fmt.Errorf("move %s from %s to %s: %s", r.Mailbox, r.From, r.To, r.Reason))
	case r.Result == migrate.ResultFailed:
		return fmt.Errorf("move %s from %s to %s: %s", r.Mailbox, r.From, r.To, r.Reason)
	}
	w.done.Add(1)
	return nil
}

func stopped(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// Work runs moves from the queue until Stop closes (moves in flight
// finish their batches and go back to the queue; Work returns nil) or ctx
// ends (moves in flight are cancelled; Work returns ctx's error). While it
// runs, the worker is in the registry with a heartbeat, and follows the
// fleet's shares of every cluster's limits.
func (f *Fleet) Work(ctx context.Context, o WorkerOptions) error {
	o.defaults()
	if o.Name == "" || o.Run == nil {
		return errors.New("fleet: a worker needs a name and a Run")
	}
	if err := f.register(ctx, &o); err != nil {
		return err
	}
	defer f.deregister(context.WithoutCancel(ctx), o.Name)
	w := &moveWorker{o: &o}
	workers := river.NewWorkers()
	river.AddWorker(workers, w)
	client, err := river.NewClient(riverpgxv5.New(f.pool), &river.Config{
		ID:                   o.Name,
		Queues:               map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: o.Parallel}},
		Workers:              workers,
		JobTimeout:           -1, // a move takes as long as it takes; the lease guards it
		RescueStuckJobsAfter: o.RescueAfter,
		FetchCooldown:        10 * time.Millisecond,
		FetchPollInterval:    500 * time.Millisecond,
		Logger:               o.Logger,
	})
	if err != nil {
		return fmt.Errorf("fleet: worker %s: %w", o.Name, err)
	}
	beatCtx, stopBeat := context.WithCancel(context.WithoutCancel(ctx))
	var beats sync.WaitGroup
	beats.Add(1)
	go func() {
		defer beats.Done()
		f.heartbeat(beatCtx, &o, w)
	}()
	defer func() {
		stopBeat()
		beats.Wait()
	}()
	if err := client.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("fleet: worker %s: start: %w", o.Name, err)
	}
	select {
	case <-o.Stop:
		f.markStopping(ctx, o.Name)
		// Moves in flight see Stop too: they finish their batches and
		// return; a second signal (ctx) cancels them.
		soft := make(chan error, 1)
		go func() { soft <- client.Stop(context.WithoutCancel(ctx)) }()
		select {
		case err := <-soft:
			return err
		case <-ctx.Done():
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			_ = client.StopAndCancel(cctx)
			return ctx.Err()
		}
	case <-ctx.Done():
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = client.StopAndCancel(cctx)
		return ctx.Err()
	}
}

func (f *Fleet) register(ctx context.Context, o *WorkerOptions) error {
	if _, err := f.pool.Exec(ctx, `INSERT INTO mailferry_fleet_worker (name, host, pid, holder, heartbeat_s) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (name) DO UPDATE SET host = excluded.host, pid = excluded.pid, holder = excluded.holder, heartbeat_s = excluded.heartbeat_s,
started_at = now(), heartbeat_at = now(), moves = 0, moves_done = 0, stopping = false`,
		o.Name, o.Host, o.PID, o.Holder, o.Heartbeat.Seconds()); err != nil {
		return fmt.Errorf("fleet: register worker %s: %w", o.Name, err)
	}
	for _, c := range o.Clusters {
		start := 1.0
		if c.Degraded {
			start = 0.25
		}
		if _, err := f.pool.Exec(ctx, `INSERT INTO mailferry_fleet_cluster AS t (name, cap, degraded, share) VALUES ($1, $2, $3, $4)
ON CONFLICT (name) DO UPDATE SET cap = excluded.cap, degraded = excluded.degraded,
share = CASE WHEN t.degraded IS DISTINCT FROM excluded.degraded THEN excluded.share ELSE t.share END`,
			c.Name, c.Cap, c.Degraded, start); err != nil {
			return fmt.Errorf("fleet: register cluster %s: %w", c.Name, err)
		}
	}
	return nil
}

func (f *Fleet) markStopping(ctx context.Context, name string) {
	_, _ = f.pool.Exec(context.WithoutCancel(ctx), `UPDATE mailferry_fleet_worker SET stopping = true WHERE name = $1`, name)
}

func (f *Fleet) deregister(ctx context.Context, name string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, _ = f.pool.Exec(ctx, `DELETE FROM mailferry_fleet_worker WHERE name = $1`, name)
}

// heartbeat keeps the worker's registry row fresh and follows the fleet:
// the rates divided by the workers alive, and each cluster's share of
// its connection places and concurrency (lowered by any worker's adaptive
// decrease, grown back by one place per Recover without one). Errors are
// retried at the next beat.
func (f *Fleet) heartbeat(ctx context.Context, o *WorkerOptions, w *moveWorker) {
	decreases := map[string]int64{}
	for _, c := range o.Clusters {
		decreases[c.Name] = c.Limiter.Snapshot().Decreases
	}
	t := time.NewTicker(o.Heartbeat)
	defer t.Stop()
	for {
		f.beat(ctx, o, w, decreases)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (f *Fleet) beat(ctx context.Context, o *WorkerOptions, w *moveWorker, decreases map[string]int64) {
	var alive int
	err := f.pool.QueryRow(ctx, `WITH me AS (UPDATE mailferry_fleet_worker SET heartbeat_at = now(), moves = $2, moves_done = $3 WHERE name = $1)
SELECT count(*) FROM mailferry_fleet_worker WHERE `+aliveClause+` OR name = $1`,
		o.Name, w.running.Load(), w.done.Load()).Scan(&alive)
	if err != nil {
		return
	}
	f.giveBack(ctx)
	for _, c := range o.Clusters {
		st := c.Limiter.Snapshot()
		if st.Decreases > decreases[c.Name] && st.Cap > 0 {
			// This worker's limiter shrank on its own: the cluster suffers,
			// every worker follows.
			_, _ = f.pool.Exec(ctx, `UPDATE mailferry_fleet_cluster SET share = LEAST(share, $2), updated_at = now() WHERE name = $1`,
				c.Name, float64(st.Limit)/float64(st.Cap))
		}
	}
	// One worker's beat per Recover grows a share that had no decrease.
	_, _ = f.pool.Exec(ctx, `UPDATE mailferry_fleet_cluster SET share = LEAST(1, share + 1.0 / GREATEST(cap, 1)), updated_at = now()
WHERE name = ANY($1) AND share < 1 AND updated_at < now() - $2 * interval '1 second'`, clusterNames(o.Clusters), o.Recover.Seconds())
	rows, err := f.pool.Query(ctx, `SELECT name, share FROM mailferry_fleet_cluster WHERE name = ANY($1)`, clusterNames(o.Clusters))
	if err != nil {
		return
	}
	shares := map[string]float64{}
	for rows.Next() {
		var name string
		var share float64
		if rows.Scan(&name, &share) == nil {
			shares[name] = share
		}
	}
	rows.Close()
	for _, c := range o.Clusters {
		c.Limiter.SetRateShare(1 / float64(max(1, alive)))
		if share, ok := shares[c.Name]; ok {
			n := placesFor(c.Cap, share)
			if o.Gates != nil {
				o.Gates.SetPlaces(c.Name, n)
			}
			c.Limiter.LowerLimit(n)
		}
		decreases[c.Name] = c.Limiter.Snapshot().Decreases
	}
	if o.OnBeat != nil {
		o.OnBeat(alive)
	}
}

func clusterNames(cs []Cluster) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Name
	}
	return out
}

// giveBack makes the moves of workers whose heartbeat stopped (killed,
// frozen, cut off) available to the others at once, without using an
// attempt. River's own rescuer does the same by age only (RescueAfter,
// checked every 30 s by the leader), and knows nothing of liveness: this
// is the registry's part. Whoever takes such a move still waits for its
// lease to expire (or finds its holder dead on the same host), and the
// stalled worker, if it runs again, is fenced and cannot write.
func (f *Fleet) giveBack(ctx context.Context) {
	_, _ = f.pool.Exec(ctx, `UPDATE river_job SET state = 'available', scheduled_at = now(), max_attempts = max_attempts + 1
WHERE kind = $1 AND state = 'running' AND attempted_by[array_upper(attempted_by, 1)] IN
(SELECT name FROM mailferry_fleet_worker WHERE NOT (`+aliveClause+`))`, MoveKind)
}

// aliveClause says a registry row's worker is alive: its heartbeat is
// younger than 3 of its own periods.
const aliveClause = `heartbeat_at > now() - 3 * heartbeat_s * interval '1 second'`
