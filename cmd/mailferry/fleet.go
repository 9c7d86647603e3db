package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"mailferry/fleet"
	"mailferry/internal/imapconn"
	"mailferry/inventory"
	"mailferry/inventory/discover"
	"mailferry/migrate"
	"mailferry/planner"
	"mailferry/state"
	"mailferry/throttle"
)

// fleetFlags are the worker's own flags, beside the apply flags.
type fleetFlags struct {
	name        string
	leaseTTL    time.Duration
	rescueAfter time.Duration
	heartbeat   time.Duration
}

// fleetWaitPoll is how often apply and wait on a PostgreSQL state look
// at the queue.
const fleetWaitPoll = 500 * time.Millisecond

// statePassword is the password of a PostgreSQL state, by the rules of
// openState (which has already refused one written in the URL): the file,
// else $MAILFERRY_STATE_PASSWORD, else "" (pgx looks itself).
func statePassword(passwordFile string) (string, error) {
	if passwordFile != "" {
		pw, err := imapconn.ReadSecret(passwordFile, "")
		if err != nil {
			return "", usageErrorf("--state-password-file: %v", err)
		}
		return pw, nil
	}
	return os.Getenv(statePasswordEnv), nil
}

// openFleet opens the state (which must be PostgreSQL) and the fleet's
// queue in it.
func openFleet(ctx context.Context, cmdName, url, passwordFile string) (*state.Store, *fleet.Fleet, error) {
	if !fleet.IsPostgres(url) {
		return nil, nil, usageErrorf("%s needs a postgres:// --state shared by the fleet (got %q)", cmdName, url)
	}
	st, err := openState(ctx, url, passwordFile)
	if err != nil {
		return nil, nil, err
	}
	pw, err := statePassword(passwordFile)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	// River's listener, fetches, completions and the heartbeat share a
	// few connections: a fleet of 100 workers must fit PostgreSQL's
	// max_connections with the state's own.
	f, err := fleet.Open(ctx, fleet.Config{URL: url, Password: pw, MaxConns: 3})
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return st, f, nil
}

// newLimiters makes each cluster's limiter from the inventory and the
// apply flags (apply, drain, complete, rebalance and a fleet worker alike).
func newLimiters(inv *inventory.Inventory, a *applyFlags, windows throttle.Windows) (map[string]*throttle.Limiter, error) {
	limiters := map[string]*throttle.Limiter{}
	for i := range inv.Clusters {
		c := &inv.Clusters[i]
		lim, err := throttle.New(c.Name, limiterConfig(c, a, windows))
		if err != nil {
			return nil, usageErrorf("cluster %s limits: %v", c.Name, err)
		}
		limiters[c.Name] = lim
	}
	return limiters, nil
}

// limiterConfig is a cluster's throttle config from the inventory and the
// apply flags.
func limiterConfig(c *inventory.Cluster, a *applyFlags, windows throttle.Windows) throttle.Config {
	cfg := throttle.Config{
		MaxConnections: c.Limits.Connections, BytesPerSecond: float64(c.Limits.BytesPerSec),
		MessagesPerSecond: c.Limits.MessagesPerSec, MaxLatency: c.Limits.MaxLatency,
		Windows: append(append(throttle.Windows(nil), c.Limits.Windows...), windows...), Degraded: c.Health == inventory.Degraded,
	}
	if cfg.MaxConnections == 0 {
		cfg.MaxConnections = a.parallel * a.connections
	}
	return cfg
}

// fleetClusters gives each limiter the fleet's connection gate and lists
// the clusters whose shares the worker follows.
func fleetClusters(inv *inventory.Inventory, limiters map[string]*throttle.Limiter, gates *fleet.Gates) []fleet.Cluster {
	var out []fleet.Cluster
	for _, c := range inv.Clusters {
		lim := limiters[c.Name]
		capacity := lim.Snapshot().Cap
		lim.SetConnGate(gates.Gate(c.Name, capacity))
		out = append(out, fleet.Cluster{Name: c.Name, Cap: capacity, Degraded: c.Health == inventory.Degraded, Limiter: lim})
	}
	return out
}

// buildMove makes the move of a queued job from the inventory: logins,
// sides, timeouts. A cluster the inventory lacks, or a login that cannot
// be built, fails the move alone (Move.Err).
func buildMove(inv *inventory.Inventory, a *applyFlags, j fleet.MoveArgs) migrate.Move {
	m := migrate.Move{Mailbox: j.Mailbox, From: j.From, To: j.To, Bytes: j.Bytes}
	from, to := inv.Cluster(j.From), inv.Cluster(j.To)
	if from == nil || to == nil {
		m.Err = fmt.Errorf("the inventory %s lacks cluster %q or %q of this move", a.inventory, j.From, j.To)
		return m
	}
	m.Src, m.Err = discover.Config(from, j.Mailbox)
	if m.Err == nil {
		m.Dst, m.Err = discover.Config(to, j.Mailbox)
	}
	m.Src.Side, m.Dst.Side = "source", "target"
	if a.ioTimeout > 0 {
		m.Src.IdleTimeout, m.Dst.IdleTimeout = a.ioTimeout, a.ioTimeout
	}
	return m
}

// takeLeaseFor is takeLease with a lease duration.
func takeLeaseFor(ctx context.Context, st *state.Store, key state.Key, ttl time.Duration) (*state.Lease, error) {
	l, err := st.Acquire(ctx, key, holderName(), ttl)
	var held *state.HeldError
	if errors.As(err, &held) && held.Holder != "" && deadLocalHolder(held.Holder) {
		l, err = st.AcquireFrom(ctx, key, holderName(), ttl, held.Holder)
	}
	return l, err
}

// fleetRunner runs one queued move with the apply code (migrate's
// RunMove, the move's lease, the limiters), and tells the fleet whether
// the lease was held elsewhere or lost to another worker.
func fleetRunner(st *state.Store, opts migrate.ApplyOptions, ttl time.Duration, build func(fleet.MoveArgs) migrate.Move, done func(migrate.MoveResult)) func(context.Context, fleet.MoveArgs) fleet.Outcome {
	return func(ctx context.Context, j fleet.MoveArgs) fleet.Outcome {
		m := build(j)
		var held *state.HeldError
		var lease *state.Lease
		o := opts
		o.Acquire = func(ctx context.Context, k state.Key) (*state.Lease, error) {
			if _, err := st.Rekey(ctx, migrate.LegacyMoveKey(m), k); err != nil {
				return nil, err
			}
			l, err := takeLeaseFor(ctx, st, k, ttl)
			errors.As(err, &held)
			lease = l
			return l, err
		}
		res := o.RunMove(ctx, m)
		out := fleet.Outcome{Result: res, Held: held, Permanent: m.Err != nil}
		if lease != nil && res.Result != migrate.ResultDone && res.Result != migrate.ResultSkipped {
			lost, err := lease.Superseded(context.WithoutCancel(ctx))
			out.LeaseLost = lost && err == nil
		}
		if out.LeaseLost {
			out.Result.Result = migrate.ResultInterrupted
			out.Result.Reason = "given up: another worker took the move's lease over (this one stalled past it): " + res.Reason
		}
		if done != nil {
			done(out.Result)
		}
		return out
	}
}

// moveOptions is the apply template of every move a worker runs.
func moveOptions(g *globalOptions, a *applyFlags, inv *inventory.Inventory, limiters map[string]*throttle.Limiter, stop <-chan struct{}) (migrate.ApplyOptions, error) {
	mode, err := migrate.ParseVerifyMode(a.verify)
	if err != nil {
		return migrate.ApplyOptions{}, usageErrorf("--verify: %v", err)
	}
	opts := migrate.ApplyOptions{
		Copy:     migrate.Options{Verify: mode, Connections: a.connections, KeepDeleted: a.keepDeleted, ExitOutsideWindow: a.exitOutside, LateCommitWindow: a.lateWindow, NoMultiAppend: a.noMulti, AllowMassExpunge: a.allowMass},
		Parallel: a.parallel, ConvergeMessages: a.converge, HoldAtReady: a.holdAtReady, Routed: a.routed,
		Limiter: func(name string) *throttle.Limiter { return limiters[name] },
		Stop:    stop,
	}
	if a.cutoverExec != "" {
		say := func(format string, args ...any) { fmt.Fprintf(g.stderr, "mailferry: "+format+"\n", args...) }
		opts.Cutover = cutoverHook(say, a.cutoverExec, a.cutoverTimeout, inv)
	}
	return opts, nil
}

// newWorkerCommand is `mailferry worker`.
func newWorkerCommand(g *globalOptions) *cobra.Command {
	a := &applyFlags{}
	ff := &fleetFlags{}
	cmd := &cobra.Command{
		Use:   "worker -i INVENTORY --state postgres://...",
		Short: "Run moves from the fleet's queue (PostgreSQL) until stopped",
		Long: `Take moves from the queue that "mailferry submit" fills and run them, --parallel
at once, with the same code as apply: each move under its lease, from its
recorded phase as far as it may go. Run one worker per host, as many hosts
as you like, on one PostgreSQL state.

The inventory's limits hold for the whole fleet: a cluster's connections
(limits.connections) are places shared by every worker, held in PostgreSQL
while a connection is open (a dead worker's places come back at once);
bytes/s and messages/s are divided among the workers alive; a slowdown one
worker sees lowers every worker's share of that cluster.

A worker killed mid-move: another takes the move over once its lease
expired (--rescue-after after it started, River gives its job back). A
worker that stalled past its lease cannot write again: its writes are
fenced, and it gives the move up.

The first SIGTERM or Ctrl-C stops taking moves: moves in flight finish
their batches and go back to the queue for other workers; the second stops
at once. Exit 0 after a clean stop, 130 after the second signal.`,
		Example: `  mailferry worker -i inv.yaml --state postgres://mailferry@db/mailferry --parallel 8 --name $(hostname) --routed`,
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return runWorker(cmd.Context(), g, a, ff) },
	}
	a.register(cmd.Flags())
	registerFleetFlags(cmd, ff)
	return cmd
}

func registerFleetFlags(cmd *cobra.Command, ff *fleetFlags) {
	f := cmd.Flags()
	f.StringVar(&ff.name, "name", "", "this worker's `NAME` in the fleet (status); default HOST-PID")
	f.DurationVar(&ff.rescueAfter, "rescue-after", 5*time.Minute, "a move running this long without finishing is handed to another worker (one whose worker died); a live one just waits for its lease")
	f.DurationVar(&ff.leaseTTL, "lease-ttl", leaseTTL, "lease of each move: a worker that died blocks its move this long")
	f.DurationVar(&ff.heartbeat, "heartbeat", 2*time.Second, "heartbeat period of the worker registry (shared rates, status)")
	_ = f.MarkHidden("heartbeat")
}

func (ff *fleetFlags) workerName() string {
	if ff.name != "" {
		return ff.name
	}
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

func runWorker(ctx context.Context, g *globalOptions, a *applyFlags, ff *fleetFlags) error {
	if a.parallel < 1 || a.connections < 1 {
		return usageErrorf("--parallel and --connections must be at least 1")
	}
	if ff.leaseTTL < time.Second || ff.rescueAfter <= 0 || ff.heartbeat <= 0 {
		return usageErrorf("--lease-ttl must be at least 1s, --rescue-after and --heartbeat positive")
	}
	inv, err := loadInventory(a.inventory)
	if err != nil {
		return err
	}
	windows, err := throttle.ParseWindows(a.windows...)
	if err != nil {
		return usageErrorf("--window: %v", err)
	}
	warnInsecure(g, inv)
	st, f, err := openFleet(ctx, "worker", a.state, a.statePassword)
	if err != nil {
		return err
	}
	defer st.Close()
	defer f.Close()
	name := ff.workerName()
	gates := f.NewGates(name)
	defer gates.Close()
	limiters, err := newLimiters(inv, a, windows)
	if err != nil {
		return err
	}
	clusters := fleetClusters(inv, limiters, gates)
	served, stopMetrics, err := startMetrics(g, a.metrics, limiters, nil, nil)
	if err != nil {
		return err
	}
	defer stopMetrics()
	stop := stopChan(ctx)
	opts, err := moveOptions(g, a, inv, limiters, stop)
	if err != nil {
		return err
	}
	opts.Observer = migrate.ObserverFunc(func(e migrate.Event) { served.record(e) })
	host, _ := os.Hostname()
	var mu sync.Mutex
	say := func(res migrate.MoveResult) {
		mu.Lock()
		defer mu.Unlock()
		line := fmt.Sprintf("mailferry worker %s: %s %s -> %s: %s", name, res.Mailbox, res.From, res.To, res.Result)
		if res.Reason != "" && res.Result != migrate.ResultDone {
			line += ": " + res.Reason
		}
		fmt.Fprintln(g.stderr, line)
	}
	build := func(j fleet.MoveArgs) migrate.Move { return buildMove(inv, a, j) }
	fmt.Fprintf(g.stderr, "mailferry worker %s: taking moves from %s (%d at once)\n", name, st.Location(), a.parallel)
	err = f.Work(ctx, fleet.WorkerOptions{
		Name: name, Host: host, PID: os.Getpid(), Holder: holderName(), Parallel: a.parallel,
		Run:      fleetRunner(st, opts, ff.leaseTTL, build, say),
		Clusters: clusters, Gates: gates, Heartbeat: ff.heartbeat, RescueAfter: ff.rescueAfter, LeaseTTL: ff.leaseTTL,
		Stop: stop, Logger: slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stderr, "mailferry worker %s: stopped; moves in flight went back to the queue\n", name)
	return nil
}

// planArgs are the queue's jobs of a plan's moves.
func planArgs(plan *planner.Plan, name string) []fleet.MoveArgs {
	out := make([]fleet.MoveArgs, 0, len(plan.Moves))
	for _, pm := range plan.Moves {
		out = append(out, fleet.MoveArgs{Mailbox: pm.Mailbox, From: pm.From, To: pm.To, Bytes: pm.Bytes, Plan: name})
	}
	return out
}

// newSubmitCommand is `mailferry submit`.
func newSubmitCommand(g *globalOptions) *cobra.Command {
	a := &applyFlags{}
	cmd := &cobra.Command{
		Use:   "submit PLAN.json -i INVENTORY --state postgres://...",
		Short: "Put a plan's moves in the fleet's queue (PostgreSQL) for workers",
		Long: `Put every move of a plan in the queue that "mailferry worker" processes take
moves from, and return. A move already queued, running or done is not
queued again (so submitting the same plan twice, or from cron, is safe); a
move that ended without being done (failed for good, held, in sync at
ready without a cutover) is queued anew, as apply would run it again. The plan is
checked against the inventory first, as apply does (--force to override).
Then "mailferry wait PLAN.json" waits for the moves to end.`,
		Example: `  mailferry submit drain.json -i inv.yaml --state postgres://mailferry@db/mailferry
  mailferry wait drain.json --state postgres://mailferry@db/mailferry`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			inv, plan, err := a.load(args[0])
			if err != nil {
				return err
			}
			a.planPath = args[0]
			if err := checkPlan(g, a, inv, plan, nil); err != nil {
				return err
			}
			st, f, err := openFleet(cmd.Context(), "submit", a.state, a.statePassword)
			if err != nil {
				return err
			}
			defer st.Close()
			defer f.Close()
			rep, err := f.Submit(cmd.Context(), planArgs(plan, args[0]))
			if err != nil {
				return err
			}
			if g.json {
				return writeJSON(g, struct {
					Event string `json:"event"`
					fleet.SubmitReport
				}{"submitted", rep})
			}
			_, err = fmt.Fprintf(g.stdout, "submitted %d moves of %s: %d queued, %d already queued or running, %d done before\n",
				len(plan.Moves), args[0], rep.Queued, rep.Duplicate, rep.Done)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVarP(&a.inventory, "inventory", "i", "", "inventory YAML `FILE` (clusters, logins, limits)")
	f.StringVar(&a.state, "state", defaultState(), stateUsage)
	f.StringVar(&a.statePassword, "state-password-file", "", statePasswordUsage)
	f.BoolVar(&a.force, "force", false, "submit moves the inventory check refuses")
	return cmd
}

// newWaitCommand is `mailferry wait`.
func newWaitCommand(g *globalOptions) *cobra.Command {
	var stateURL, passwordFile string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "wait PLAN.json --state postgres://...",
		Short: "Wait until every move of a submitted plan is final, then report like apply",
		Long: `Wait until every move of the plan has ended in the fleet's queue (done, in
sync, held, or failed for good), then print the report as apply does.
Exit codes as apply: 0 every move done and verified; 3 some failed or are
held; 4 every move not done is in sync but not final (no hook ran); 1 the
wait timed out (--timeout) or could not run; 130 interrupted.`,
		Example: `  mailferry wait drain.json --state postgres://mailferry@db/mailferry --timeout 12h`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			plan, err := readPlanFile(args[0])
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			st, f, err := openFleet(ctx, "wait", stateURL, passwordFile)
			if err != nil {
				return err
			}
			defer st.Close()
			defer f.Close()
			rep, err := waitPlan(ctx, st, f, planArgs(plan, args[0]), nil)
			if err != nil {
				if errors.Is(err, context.DeadlineExceeded) && cmd.Context().Err() == nil {
					return fmt.Errorf("wait %s: not every move ended within --timeout %s", args[0], timeout)
				}
				return err
			}
			// The moves ran in the fleet's workers: the table shows each
			// move's bytes as the workers reported them.
			bytesOf := map[string]int64{}
			for _, m := range rep.Moves {
				bytesOf[m.Mailbox] = m.Bytes
			}
			if err := renderApplyReport(g, rep, func(mb string) int64 { return bytesOf[mb] }, "-"); err != nil {
				return err
			}
			return fleetExit(rep)
		},
	}
	cmd.Flags().StringVar(&stateURL, "state", defaultState(), stateUsage)
	cmd.Flags().StringVar(&passwordFile, "state-password-file", "", statePasswordUsage)
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up after `D` (0: wait until interrupted)")
	return cmd
}

// waitPlan polls the queue until every move of want has a final job, and
// returns the moves' results in want's order. A move never submitted is an
// error at once. stop, when closed, ends the wait with ErrInterrupted.
func waitPlan(ctx context.Context, st *state.Store, f *fleet.Fleet, want []fleet.MoveArgs, stop <-chan struct{}) (*migrate.ApplyReport, error) {
	start := time.Now()
	t := time.NewTicker(fleetWaitPoll)
	defer t.Stop()
	for {
		jobs, err := f.Jobs(ctx)
		if err != nil {
			return nil, err
		}
		final := true
		for _, w := range want {
			j, ok := jobs[fleet.MoveKey(w)]
			if !ok {
				return nil, fmt.Errorf("move %s from %s to %s is not in the queue: submit the plan first (mailferry submit)", w.Mailbox, w.From, w.To)
			}
			final = final && fleet.Final(j.State)
		}
		if final {
			rep, err := fleetReport(ctx, st, want, jobs)
			if err == nil {
				rep.Seconds = time.Since(start).Seconds()
			}
			return rep, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-stop:
			return nil, migrate.ErrInterrupted
		case <-t.C:
		}
	}
}

// fleetReport is an ApplyReport from the moves' jobs and the state: what
// the last run of each move recorded, a job discarded or cancelled as
// failed, and a move the state has done as done whatever its job says.
func fleetReport(ctx context.Context, st *state.Store, want []fleet.MoveArgs, jobs map[fleet.MoveArgs]fleet.MoveJob) (*migrate.ApplyReport, error) {
	list, err := st.List(ctx)
	if err != nil {
		return nil, err
	}
	phase := map[state.Key]string{}
	for _, s := range list {
		phase[s.Key] = s.Phase
	}
	rep := &migrate.ApplyReport{}
	for _, w := range want {
		j := jobs[fleet.MoveKey(w)]
		r := migrate.MoveResult{Mailbox: w.Mailbox, From: w.From, To: w.To}
		if j.Output != nil {
			r = j.Output.Move
		}
		switch j.State {
		case fleet.StateDiscarded, fleet.StateCancelled:
			r.Result = migrate.ResultFailed
			if len(j.Errors) > 0 {
				r.Reason = fmt.Sprintf("%s after %d attempts: %s", j.State, j.Attempt, j.Errors[len(j.Errors)-1])
			} else if r.Reason == "" {
				r.Reason = j.State
			}
		case fleet.StateCompleted:
			if r.Result == "" {
				r.Result = migrate.ResultDone
			}
		}
		if p := phase[migrate.MoveKey(migrate.Move{Mailbox: w.Mailbox, From: w.From, To: w.To})]; p == migrate.PhaseDone && r.Result != migrate.ResultDone {
			r.Phase, r.Result, r.Reason = migrate.PhaseDone, migrate.ResultSkipped, "done (by an earlier run)"
		}
		rep.Moves = append(rep.Moves, r)
	}
	rep.Tally()
	return rep, nil
}

// fleetExit is apply's exit for a fleet report.
func fleetExit(rep *migrate.ApplyReport) error {
	t := rep.Totals
	switch {
	case rep.Unfinished():
		return partialError{fmt.Sprintf("%d of %d moves not done (%d failed, %d held, %d interrupted)",
			t.Failed+t.Held+t.Interrupted, t.Moves, t.Failed, t.Held, t.Interrupted)}
	case t.Synced > 0:
		return syncedError{fmt.Sprintf("%d of %d moves in sync but NOT final: no cutover hook ran, so routing has not changed", t.Synced, t.Moves)}
	}
	return nil
}

// applyFleet is apply on a PostgreSQL state: the plan's moves go into the
// fleet's queue, and this process works as one worker of the fleet (with
// any other workers) until every move of the plan has ended.
func applyFleet(ctx context.Context, g *globalOptions, a *applyFlags, inv *inventory.Inventory, st *state.Store,
	moves []migrate.Move, opts migrate.ApplyOptions, limiters map[string]*throttle.Limiter) (*migrate.ApplyReport, error) {
	pw, err := statePassword(a.statePassword)
	if err != nil {
		return nil, err
	}
	f, err := fleet.Open(ctx, fleet.Config{URL: a.state, Password: pw})
	if err != nil {
		return nil, err
	}
	defer f.Close()
	host, _ := os.Hostname()
	name := fmt.Sprintf("%s-%d", host, os.Getpid())
	gates := f.NewGates(name)
	defer gates.Close()
	clusters := fleetClusters(inv, limiters, gates)
	want := make([]fleet.MoveArgs, 0, len(moves))
	byKey := map[fleet.MoveArgs]migrate.Move{}
	for _, m := range moves {
		j := fleet.MoveArgs{Mailbox: m.Mailbox, From: m.From, To: m.To, Bytes: m.Bytes, Plan: a.planPath}
		want = append(want, j)
		byKey[fleet.MoveKey(j)] = m
	}
	if _, err := f.Submit(ctx, want); err != nil {
		return nil, err
	}
	userStop := opts.Stop
	stop := make(chan struct{})
	opts.Stop = stop
	var once sync.Once
	stopWorker := func() { once.Do(func() { close(stop) }) }
	build := func(j fleet.MoveArgs) migrate.Move {
		if m, ok := byKey[fleet.MoveKey(j)]; ok {
			return m
		}
		return buildMove(inv, a, j)
	}
	workCtx, cancelWork := context.WithCancel(ctx)
	defer cancelWork()
	worked := make(chan error, 1)
	go func() {
		worked <- f.Work(workCtx, fleet.WorkerOptions{
			Name: name, Host: host, PID: os.Getpid(), Holder: holderName(), Parallel: a.parallel,
			Run: fleetRunner(st, opts, leaseTTL, build, nil), Clusters: clusters, Gates: gates, Stop: stop,
			Logger: slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		})
	}()
	rep, werr := waitPlan(ctx, st, f, want, userStop)
	stopWorker()
	if err := <-worked; err != nil && werr == nil && ctx.Err() == nil {
		werr = err
	}
	if werr != nil {
		if rep == nil {
			rep = &migrate.ApplyReport{}
			for _, m := range moves {
				rep.Moves = append(rep.Moves, migrate.MoveResult{Mailbox: m.Mailbox, From: m.From, To: m.To, Result: migrate.ResultInterrupted, Reason: "not final when the run stopped (the queue keeps it)"})
			}
			rep.Tally()
		}
		if errors.Is(werr, context.Canceled) {
			werr = migrate.ErrInterrupted
		}
		return rep, werr
	}
	return rep, nil
}

// fleetWorkers lists the fleet's workers of a PostgreSQL state (nil for
// another state, or a state without a fleet).
func fleetWorkers(ctx context.Context, url, passwordFile string) ([]fleet.WorkerInfo, error) {
	if !fleet.IsPostgres(url) {
		return nil, nil
	}
	pw, err := statePassword(passwordFile)
	if err != nil {
		return nil, err
	}
	f, err := fleet.Open(ctx, fleet.Config{URL: url, Password: pw, MaxConns: 2, Reader: true})
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Workers(ctx)
}

// renderFleetWorkers prints the fleet's workers under `mailferry status`
// (nothing for a state that is not PostgreSQL).
func renderFleetWorkers(ctx context.Context, g *globalOptions, url, passwordFile string) error {
	workers, err := fleetWorkers(ctx, url, passwordFile)
	if err != nil || len(workers) == 0 {
		return err
	}
	fmt.Fprintln(g.stdout)
	tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKER\tHOST\tPID\tMOVES\tDONE\tHEARTBEAT\tSTATE")
	for _, w := range workers {
		state := "alive"
		switch {
		case !w.Alive:
			state = "gone (no heartbeat)"
		case w.Stopping:
			state = "stopping"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\n", w.Name, w.Host, w.PID, w.Moves, w.MovesDone,
			w.Heartbeat.Local().Format("2006-01-02 15:04:05"), state)
	}
	return tw.Flush()
}
