package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"mailferry/inventory"
	"mailferry/inventory/discover"
	"mailferry/migrate"
	"mailferry/planner"
	"mailferry/state"
	"mailferry/throttle"
)

// applyFlags are shared by apply, drain, rebalance and complete.
type applyFlags struct {
	inventory      string
	state          string
	statePassword  string
	parallel       int
	connections    int
	verify         string
	converge       int
	cutoverExec    string
	cutoverTimeout time.Duration
	holdAtReady    bool
	report         string
	reportHTML     string
	// cooldown (drain and rebalance, which plan): see plan --cooldown.
	cooldown      time.Duration
	metrics       metricsOptions
	keepDeleted   bool
	windows       []string
	exitOutside   bool
	ioTimeout     time.Duration
	lateWindow    time.Duration
	noMulti       bool
	allowMass     bool
	routed        bool
	pop3Gate      bool
	skipPreflight bool
	debugIMAP     bool
	debugIMAPDir  string
	force         bool   // apply, complete: run moves Check refuses
	planPath      string // apply, complete: the plan file, for hints
	hooks         *runHooks
}

// runHooks are what the demo adds to a run in-process (nil for the
// commands).
type runHooks struct {
	// observe sees every event after the view; say prints a line among
	// the progress output.
	observe func(e migrate.Event, say func(format string, args ...any))
	// reportTemp: the --report file is the demo's, removed at its end,
	// so the table does not point to it.
	reportTemp bool
}

func (a *applyFlags) register(f *pflag.FlagSet) {
	f.StringVarP(&a.inventory, "inventory", "i", "", "inventory YAML `FILE` (clusters, logins, limits)")
	f.StringVar(&a.state, "state", defaultState(), stateUsage)
	f.StringVar(&a.statePassword, "state-password-file", "", statePasswordUsage)
	f.IntVar(&a.parallel, "parallel", 4, "mailboxes moved at once")
	f.IntVar(&a.connections, "connections", 2, "folders copied at once per mailbox (connections per side)")
	f.StringVar(&a.verify, "verify", "full", "check each copy on the target: full, size, or none")
	f.IntVar(&a.converge, "converge-messages", 50, "a delta pass changing fewer than `N` messages ends convergence")
	f.StringVar(&a.cutoverExec, "cutover-exec", "", "run `CMD` (sh -c) once per mailbox when it has converged; exit 0 means mail now goes to the target. Env: MAILFERRY_MAILBOX, MAILFERRY_FROM, MAILFERRY_TO")
	f.DurationVar(&a.cutoverTimeout, "cutover-timeout", 5*time.Minute, "give up on a cutover hook after `D` (the move holds at ready)")
	f.BoolVar(&a.holdAtReady, "hold-at-ready", false, "stop every move at ready; finish them with \"mailferry complete\"")
	f.BoolVar(&a.routed, "routed", false, "routing already sends these mailboxes' mail to their targets: moves at ready become final without a hook")
	f.StringVar(&a.report, "report", "", "also write the final report as JSON to `FILE`")
	f.StringVar(&a.reportHTML, "report-html", "", reportHTMLUsage)
	a.metrics.register(f)
	f.BoolVar(&a.keepDeleted, "keep-deleted", false, "keep target copies of messages and folders deleted on the source")
	f.StringArrayVar(&a.windows, "window", nil, "start new work only within local `HH:MM-HH:MM` (repeatable), on every cluster")
	f.BoolVar(&a.exitOutside, "exit-outside-window", false, "outside the windows, finish in-flight work and exit 75 instead of waiting")
	f.DurationVar(&a.ioTimeout, "io-timeout", 0, ioTimeoutUsage+" (default: each cluster's limits.io_timeout, else 2m0s)")
	f.DurationVar(&a.lateWindow, "late-commit-window", migrate.DefaultLateCommitWindow, lateCommitWindowUsage)
	f.BoolVar(&a.noMulti, "no-multiappend", false, noMultiUsage)
	f.BoolVar(&a.allowMass, "allow-mass-expunge", false, allowMassUsage)
	f.BoolVar(&a.pop3Gate, "pop3-gate", false, "hold at ready, before the cutover, a move whose source has a pop3 URL and whose POP3 UIDLs on the target do not match (POP clients would download everything again)")
	f.BoolVar(&a.debugIMAP, "debug-imap", false, debugIMAPUsage)
	f.StringVar(&a.debugIMAPDir, "debug-imap-dir", "", debugIMAPDirUsage)
	f.BoolVar(&a.skipPreflight, "skip-preflight", false, "do not check secrets, logins, TLS, quotas and APPENDLIMIT before the first move (see mailferry preflight)")
}

func newApplyCommand(g *globalOptions) *cobra.Command {
	a := &applyFlags{}
	cmd := &cobra.Command{
		Use:   "apply PLAN.json -i INVENTORY",
		Short: "Execute a plan: move its mailboxes in parallel, converge, cut over, verify",
		Long: `Execute the moves of a plan written by "mailferry plan -o". Each move: a first
copy, delta passes until little changes between passes, the cutover hook,
a final delta (mail that reached the source before routing changed), a
final verification. Moves, phases and every copied message live in the
state, so apply resumes after any crash and skips what is done.

A move that fails (bad login, target over quota, a folder the target
refuses) fails alone; the others go on. The first Ctrl-C stops starting
work and finishes what is in flight; a second stops at once.

A move becomes final (done) only after the cutover hook succeeded, or with
--routed. Without either it stays in sync at ready: each run copies what
still reaches the source, and the run exits 4.

Before anything moves, each move is held against the inventory: a target
that is not in it, may not receive (degraded, draining, readonly, the
cluster the plan drains) or would be full, or a mailbox the inventory no
longer has on the move's source, refuses the whole run (exit 2), naming
each move, unless --force. An inventory changed since the plan was made
is reported as a warning.

One run at a time per inventory: apply, drain, complete and rebalance take
a run lock in the state; a second run exits 5, naming the holder.

Then, before the first move, the preflight (see "mailferry preflight"):
secrets, logins on both sides, TLS, capabilities, quota headroom and
APPENDLIMIT; a failing preflight stops the run before anything is copied,
with its report (a problem a whole cluster shares reported once), unless
--skip-preflight.

Exit codes: 0 every move done and verified; 3 finished with failed or held
moves; 4 every move not done is in sync but not final (no hook ran); 5
another run holds the lock; 1 could not run (or the preflight could not
reach a cluster); 2 usage or configuration error (or a plan refused, or a
preflight configuration error); 6 the preflight found mailboxes that will
not fit their target; 75 stopped outside the windows; 130 interrupted.`,
		Example: `  mailferry plan -i inv.yaml --drain bravo -o drain.json
  mailferry apply drain.json -i inv.yaml --parallel 8 --cutover-exec ./switch-routing.sh`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			inv, plan, err := a.load(args[0])
			if err != nil {
				return err
			}
			a.planPath = args[0]
			return runApply(cmd, g, a, inv, plan, false, nil)
		},
	}
	a.register(cmd.Flags())
	cmd.Flags().BoolVar(&a.force, "force", false, "run moves the inventory check refuses (a target that may not receive, a mailbox no longer on its source)")
	return cmd
}

func newCompleteCommand(g *globalOptions) *cobra.Command {
	a := &applyFlags{}
	var all bool
	cmd := &cobra.Command{
		Use:   "complete PLAN.json -i INVENTORY [MAILBOX...|--all]",
		Short: "Finish moves held at ready: cutover hook, final delta, verification",
		Long: `Finish moves left at ready by "apply --hold-at-ready", a failed cutover hook,
or an apply without a hook: run the cutover hook (--cutover-exec), or take
the operator's word that routing already changed (--routed), then the final
delta and the final verification. One of the two is required. Name the
mailboxes, or --all for every move of the plan that is ready.`,
		Example: `  mailferry complete drain.json -i inv.yaml --all --cutover-exec ./switch-routing.sh
  mailferry complete drain.json -i inv.yaml user17 --routed   # routing switched by hand`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if all == (len(args) > 1) {
				return usageErrorf("complete: name mailboxes or say --all (not both)")
			}
			if a.cutoverExec == "" && !a.routed {
				return usageErrorf("complete: say --cutover-exec CMD (the hook switches routing) or --routed (routing already changed): without either no move may become final")
			}
			inv, plan, err := a.load(args[0])
			if err != nil {
				return err
			}
			a.planPath = args[0]
			return runApply(cmd, g, a, inv, plan, true, args[1:])
		},
	}
	a.register(cmd.Flags())
	cmd.Flags().BoolVar(&all, "all", false, "every ready move of the plan")
	cmd.Flags().BoolVar(&a.force, "force", false, "run moves the inventory check refuses")
	return cmd
}

func newDrainCommand(g *globalOptions) *cobra.Command {
	a := &applyFlags{}
	var yes, dryRun bool
	cmd := &cobra.Command{
		Use:   "drain CLUSTER -i INVENTORY",
		Short: "Move every mailbox off a cluster: plan, confirm, apply",
		Long: `Plan a drain of CLUSTER from the inventory (as "mailferry plan --drain"), print
it, ask, and apply it (as "mailferry apply"). A move becomes final only after
its cutover hook (--cutover-exec) succeeded, or with --routed; without either
every move stays in sync at ready, each run copies what still reaches the
source, and the run exits 4. A second run on the same inventory while one
runs exits 5, naming the holder.`,
		Example: `  mailferry drain bravo -i inv.yaml --dry-run
  mailferry drain bravo -i inv.yaml --yes --parallel 8 --cutover-exec ./switch-routing.sh`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			inv, err := loadInventory(a.inventory)
			if err != nil {
				return err
			}
			inv, plan, h, err := planFromState(cmd.Context(), a, inv, planner.DefaultPolicy(planner.Drain, args[0]))
			if err != nil {
				return err
			}
			if note := historyNote(h, plan); note != "" {
				fmt.Fprintln(g.stderr, note)
			}
			switch {
			case dryRun && g.json:
				return planner.WritePlan(g.stdout, plan) // the plan document, as plan --json
			case g.json:
				if err := json.NewEncoder(g.stdout).Encode(planLine{"plan", plan}); err != nil {
					return err
				}
			default:
				if err := renderPlan(g.stderr, plan); err != nil {
					return err
				}
			}
			if dryRun {
				return nil
			}
			if len(plan.Moves) == 0 {
				fmt.Fprintln(g.stderr, "mailferry: nothing to move")
				return nil
			}
			if !yes {
				ok, err := confirm(g, fmt.Sprintf("Move %d mailboxes off %s?", len(plan.Moves), args[0]))
				if err != nil {
					return err
				}
				if !ok {
					return errors.New("not confirmed; nothing moved")
				}
			}
			return runApply(cmd, g, a, inv, plan, false, nil)
		},
	}
	a.register(cmd.Flags())
	cmd.Flags().BoolVar(&yes, "yes", false, "do not ask for confirmation")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan only (with --json the plan document, as plan --json prints it)")
	cmd.Flags().DurationVar(&a.cooldown, "cooldown", planner.DefaultCooldown, cooldownUsage)
	return cmd
}

func newRebalanceCommand(g *globalOptions) *cobra.Command {
	a := &applyFlags{}
	var maxBytes string
	var maxMoves int
	cmd := &cobra.Command{
		Use:   "rebalance -i INVENTORY",
		Short: "Plan and apply a rebalance, non-interactively (for cron and systemd timers)",
		Long: `Plan a rebalance (every cluster into the band around the mean utilisation)
and apply it without asking. A lock in the state keeps two runs from
overlapping (nor a rebalance and an apply or drain of the same inventory):
a second run exits 5, naming the holder. Without --cutover-exec no move
becomes final: each run keeps them in sync (exit 4). Exit 0 when every move
is done, 3 when some failed or are held.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			inv, err := loadInventory(a.inventory)
			if err != nil {
				return err
			}
			pol := planner.DefaultPolicy(planner.Rebalance, "")
			pol.MaxMoves = maxMoves
			if maxBytes != "" {
				if pol.MaxBytes, err = inventory.ParseBytes(maxBytes); err != nil {
					return usageErrorf("--max-bytes %q: %v", maxBytes, err)
				}
			}
			inv, plan, _, err := planFromState(cmd.Context(), a, inv, pol)
			if err != nil {
				return err
			}
			if g.json {
				if err := json.NewEncoder(g.stdout).Encode(planLine{"plan", plan}); err != nil {
					return err
				}
			}
			return runApply(cmd, g, a, inv, plan, false, nil)
		},
	}
	a.register(cmd.Flags())
	cmd.Flags().StringVar(&maxBytes, "max-bytes", "", "move at most `SIZE` this run (e.g. 500GiB)")
	cmd.Flags().IntVar(&maxMoves, "max-moves", 0, "move at most `N` mailboxes this run")
	cmd.Flags().DurationVar(&a.cooldown, "cooldown", planner.DefaultCooldown, cooldownUsage)
	return cmd
}

// load reads the inventory (-i) and the plan file.
func (a *applyFlags) load(planPath string) (*inventory.Inventory, *planner.Plan, error) {
	inv, err := loadInventory(a.inventory)
	if err != nil {
		return nil, nil, err
	}
	plan, err := readPlanFile(planPath)
	return inv, plan, err
}

func readPlanFile(path string) (*planner.Plan, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, usageErrorf("plan: %v", err)
	}
	defer f.Close()
	p, err := planner.ReadPlan(f)
	if err != nil {
		return nil, usageErrorf("plan %s: %v", path, err)
	}
	return p, nil
}

// confirm asks on the terminal; without one it refuses to guess.
func confirm(g *globalOptions, question string) (bool, error) {
	f, ok := g.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return false, usageErrorf("%s (no terminal to ask on: say --yes)", question)
	}
	fmt.Fprintf(g.logs.raw, "%s [y/N] ", question) // the terminal itself: a prompt is no log line
	line, err := bufio.NewReader(g.stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	ans := strings.ToLower(strings.TrimSpace(line))
	return ans == "y" || ans == "yes", nil
}

// runApply executes plan's moves (only the named mailboxes, if any).
func runApply(cmd *cobra.Command, g *globalOptions, a *applyFlags, inv *inventory.Inventory, plan *planner.Plan, complete bool, only []string) error {
	ctx := cmd.Context()
	mode, err := migrate.ParseVerifyMode(a.verify)
	if err != nil {
		return usageErrorf("--verify: %v", err)
	}
	if a.parallel < 1 || a.connections < 1 {
		return usageErrorf("--parallel and --connections must be at least 1")
	}
	if a.ioTimeout < 0 {
		return usageErrorf("--io-timeout %s: want a positive duration such as 30s", a.ioTimeout)
	}
	if a.lateWindow < 0 {
		return usageErrorf("--late-commit-window %s: want a positive duration such as 10s", a.lateWindow)
	}
	if a.routed && a.cutoverExec != "" {
		return usageErrorf("--routed says routing already changed, --cutover-exec changes it: say one")
	}
	if inv, err = relocateFromState(ctx, a, inv, plan); err != nil {
		return err
	}
	if err := checkPlan(g, a, inv, plan, only); err != nil {
		return err
	}
	windows, err := throttle.ParseWindows(a.windows...)
	if err != nil {
		return usageErrorf("--window: %v", err)
	}
	warnInsecure(g, inv)
	limiters, err := newLimiters(inv, a, windows)
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, m := range only {
		want[m] = true
	}
	var traces *traceFiles
	if a.debugIMAPDir != "" {
		if traces, err = newTraceFiles(a.debugIMAPDir); err != nil {
			return err
		}
		defer func() {
			if terr := traces.close(); terr != nil {
				g.log.Warn(terr.Error())
			}
		}()
	}
	tracer := g.logs.tracer() // --debug-imap: every move's trace, as debug lines
	var moves []migrate.Move
	for _, pm := range plan.Moves {
		if len(only) > 0 && !want[pm.Mailbox] {
			continue
		}
		delete(want, pm.Mailbox)
		m := migrate.Move{Mailbox: pm.Mailbox, From: pm.From, To: pm.To, Bytes: pm.Bytes}
		from, to := inv.Cluster(pm.From), inv.Cluster(pm.To)
		if from == nil || to == nil {
			return usageErrorf("plan moves %s from %s to %s, but the inventory lacks one of them", pm.Mailbox, pm.From, pm.To)
		}
		m.Src, m.Err = discover.Config(from, pm.Mailbox)
		if m.Err == nil {
			m.Dst, m.Err = discover.Config(to, pm.Mailbox)
		}
		m.Src.Side, m.Dst.Side = "source", "target"
		switch {
		case traces != nil:
			m.Src.Debug, m.Dst.Debug = traces.writer(pm.Mailbox, "source"), traces.writer(pm.Mailbox, "target")
		case a.debugIMAP:
			m.Src.Debug, m.Dst.Debug = prefixWriter{w: tracer, prefix: pm.Mailbox + ": source: "}, prefixWriter{w: tracer, prefix: pm.Mailbox + ": target: "}
		}
		if a.ioTimeout > 0 {
			m.Src.IdleTimeout, m.Dst.IdleTimeout = a.ioTimeout, a.ioTimeout
		}
		if m.Err == nil {
			m.SrcPOP3, m.DstPOP3, m.Err = pop3Logins(from, to, m.Src, m.Dst)
		}
		moves = append(moves, m)
	}
	for m := range want {
		return usageErrorf("%s is not a move of this plan", m)
	}

	st, err := openState(ctx, a.state, a.statePassword)
	if err != nil {
		return err
	}
	if st == nil {
		return usageErrorf("apply needs a state (--state none is for single migrations)")
	}
	defer st.Close()
	lock, err := acquireRunLock(ctx, st, a.inventory)
	if err != nil {
		return err
	}
	defer lock.Release(context.WithoutCancel(ctx))
	held, release := migrate.Hold(ctx, lock)
	defer release()
	ctx = held
	if !a.skipPreflight {
		if err := applyPreflight(ctx, g, a, inv, plan, only, st); err != nil {
			return err
		}
	}
	served, stopMetrics, err := startMetrics(g, a.metrics, limiters, moves, plan)
	if err != nil {
		return err
	}
	defer stopMetrics()

	lims := make([]*throttle.Limiter, 0, len(inv.Clusters))
	for _, c := range inv.Clusters {
		lims = append(lims, limiters[c.Name])
	}
	view := newApplyView(g, moves, a.parallel, lims, movesBefore(ctx, st, moves))
	rec := newRunRecorder(a, moves, inv, limiters)
	byKey := make(map[state.Key]migrate.Move, len(moves))
	for _, m := range moves {
		byKey[migrate.MoveKey(m)] = m
	}
	opts := migrate.ApplyOptions{
		Copy: migrate.Options{Verify: mode, Connections: a.connections, KeepDeleted: a.keepDeleted, ExitOutsideWindow: a.exitOutside, LateCommitWindow: a.lateWindow, NoMultiAppend: a.noMulti, AllowMassExpunge: a.allowMass},
		Acquire: func(ctx context.Context, k state.Key) (*state.Lease, error) {
			if m, ok := byKey[k]; ok {
				if _, err := st.Rekey(ctx, migrate.LegacyMoveKey(m), k); err != nil {
					return nil, err
				}
			}
			return acquire(ctx, st, k)
		},
		Parallel: a.parallel, ConvergeMessages: a.converge,
		HoldAtReady: a.holdAtReady, POP3Gate: a.pop3Gate, Complete: complete, Named: complete && len(only) > 0, Routed: a.routed,
		Limiter:  func(name string) *throttle.Limiter { return limiters[name] },
		Observer: migrate.ObserverFunc(func(e migrate.Event) { view.event(e); served.record(e); rec.Event(e) }),
		Stop:     stopChan(cmd.Context()),
	}
	if a.cutoverExec != "" {
		opts.Cutover = cutoverHook(view.say, a.cutoverExec, a.cutoverTimeout, inv)
	}
	if h := a.hooks; h != nil && h.observe != nil {
		observe := opts.Observer
		opts.Observer = migrate.ObserverFunc(func(e migrate.Event) { observe.Event(e); h.observe(e, view.say) })
	}
	stopHealth, err := startHealthQueries(ctx, inv, limiters, func(text string) { view.say("warning: %s", text) }, opts.Observer.Event)
	if err != nil {
		return err
	}
	defer stopHealth()
	rec.Start(ctx)
	var rep *migrate.ApplyReport
	if st.Driver() == "postgres" && !complete {
		rep, err = applyFleet(ctx, g, a, inv, st, moves, opts, limiters) // fleet mode: fleet.go
	} else {
		rep, err = migrate.Apply(ctx, moves, opts)
	}
	stopHealth()
	view.done()
	for _, c := range inv.Clusters {
		rep.Throttle = append(rep.Throttle, limiters[c.Name].Snapshot())
	}
	writeRunReports(g, a, rep, plan, rec)
	reportPath := a.report
	if a.hooks != nil && a.hooks.reportTemp {
		reportPath = "-"
	}
	if werr := renderApplyReport(g, rep, view.copiedBytes, reportPath); werr != nil {
		return werr
	}
	switch {
	case errors.Is(err, migrate.ErrInterrupted):
		return fmt.Errorf("%w: run the same command again to resume", err)
	case errors.Is(err, migrate.ErrOutsideWindow):
		return fmt.Errorf("%w: run the same command again inside a window", err)
	case err != nil:
		return err
	}
	t := rep.Totals
	switch {
	case t.Failed > 0 && t.Failed == t.ConfigurationFailed && t.Done+t.Held+t.Interrupted+t.Synced == 0:
		// Nothing but configuration failures: no rerun helps until the
		// inventory, the secrets or the accounts change (exit 2).
		return usageErrorf("every move failed on its configuration (%d of %d: a login that could not be built, credentials refused, TLS): "+
			"fix the inventory, the secrets or the accounts (reasons above) and run again", t.Failed, t.Moves)
	case rep.Unfinished():
		synced := ""
		if t.Synced > 0 {
			synced = fmt.Sprintf("; %d more in sync but not final: routing has not changed", t.Synced)
		}
		return partialError{fmt.Sprintf("%d of %d moves not done (%d failed, %d held, %d interrupted)%s",
			t.Failed+t.Held+t.Interrupted, t.Moves, t.Failed, t.Held, t.Interrupted, synced)}
	case t.Synced > 0:
		return syncedError{fmt.Sprintf("%d of %d moves in sync but NOT final: no cutover hook ran, so routing has not changed "+
			"and mail still reaches the source (each run copies it). Finish them with --cutover-exec CMD, or once routing "+
			"has changed: %s", t.Synced, t.Moves, completeHint(a, plan))}
	}
	return nil
}

// completeHint is the command that finishes synced moves once routing
// changed: complete of the plan file, or, for drain and rebalance, of the
// same plan saved first.
func completeHint(a *applyFlags, plan *planner.Plan) string {
	inv := a.inventory
	if inv == "" {
		inv = "INVENTORY"
	}
	if a.planPath != "" {
		return fmt.Sprintf("mailferry complete %s -i %s --all --routed", a.planPath, inv)
	}
	save := "mailferry plan -i " + inv + " ... -o plan.json (the same plan)"
	if plan.Policy.Kind == planner.Drain {
		save = fmt.Sprintf("mailferry plan -i %s --drain %s -o plan.json", inv, plan.Policy.Cluster)
	}
	return save + ", then mailferry complete plan.json -i " + inv + " --all --routed"
}

// checkPlan holds the plan's moves (only the named ones, if any) against
// the inventory before anything moves: what planner.Check finds refuses the
// run as a configuration error, naming each move, unless --force. An
// inventory that changed since the plan was made, or a plan without the
// digest, is a warning: the moves were checked against today's inventory.
func checkPlan(g *globalOptions, a *applyFlags, inv *inventory.Inventory, plan *planner.Plan, only []string) error {
	switch digest := planner.InventoryDigest(inv); {
	case plan.InventoryDigest == "":
		fmt.Fprintf(g.stderr, "mailferry: warning: the plan carries no inventory digest (made by an older mailferry): "+
			"each move is checked against the inventory %s\n", a.inventory)
	case plan.InventoryDigest != digest:
		fmt.Fprintf(g.stderr, "mailferry: warning: the inventory %s changed since the plan was made (plan %s, now %s): "+
			"each move is checked against it; make a new plan if the moves no longer fit\n",
			a.inventory, shortDigest(plan.InventoryDigest), shortDigest(digest))
	case a.planPath != "" && !planner.SameMoves(plan, inv):
		fmt.Fprintf(g.stderr, "mailferry: warning: the moves of %s are not what its inventory and policy give (edited by hand?): "+
			"each move is checked against the inventory\n", a.planPath)
	}
	want := map[string]bool{}
	for _, m := range only {
		want[m] = true
	}
	var problems []string
	for _, p := range planner.Check(plan, inv) {
		if len(only) == 0 || want[p.Mailbox] {
			problems = append(problems, "  "+p.String())
		}
	}
	switch {
	case len(problems) == 0:
		return nil
	case a.force:
		fmt.Fprintf(g.stderr, "mailferry: warning: --force: running %d moves the inventory refuses:\n%s\n", len(problems), strings.Join(problems, "\n"))
		return nil
	}
	return usageErrorf("the plan has %d moves that must not run, per the inventory %s; nothing was moved "+
		"(make a new plan, fix the inventory, or say --force):\n%s", len(problems), a.inventory, strings.Join(problems, "\n"))
}

func shortDigest(d string) string {
	if len(d) > len("sha256:")+12 {
		return d[:len("sha256:")+12]
	}
	return d
}

// cutoverHook runs the operator's command once per converged mailbox. Its
// environment names the move and holds no secret: mailferry's own
// variables, every variable the inventory names as a secret, and every
// PostgreSQL client variable (PGPASSWORD, PGPASSFILE, PGSERVICE...) are
// removed.
func cutoverHook(say func(format string, args ...any), command string, timeout time.Duration, inv *inventory.Inventory) func(context.Context, migrate.Move) error {
	secret := map[string]bool{}
	for _, c := range inv.Clusters {
		if c.Auth.PasswordEnv != "" {
			secret[c.Auth.PasswordEnv] = true
		}
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !secret[k] && !strings.HasPrefix(k, "MAILFERRY_") && !strings.HasPrefix(k, "PG") {
			env = append(env, kv)
		}
	}
	return func(ctx context.Context, m migrate.Move) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		c := exec.CommandContext(ctx, "/bin/sh", "-c", command)
		c.Env = append(env[:len(env):len(env)], "MAILFERRY_MAILBOX="+m.Mailbox, "MAILFERRY_FROM="+m.From, "MAILFERRY_TO="+m.To)
		var out bytes.Buffer
		c.Stdout, c.Stderr = &out, &out
		err := c.Run()
		for _, line := range strings.Split(strings.TrimRight(out.String(), "\n"), "\n") {
			if line != "" {
				say("cutover %s: %s", m.Mailbox, line)
			}
		}
		if ctx.Err() == context.DeadlineExceeded {
			return fmt.Errorf("timed out after %v", timeout)
		}
		return err
	}
}

func renderApplyReport(g *globalOptions, rep *migrate.ApplyReport, copiedBytes func(mailbox string) int64, reportPath string) error {
	if g.json {
		return json.NewEncoder(g.stdout).Encode(reportLine{"report", rep})
	}
	if err := renderApplyTable(g.stdout, rep, copiedBytes, reportPath); err != nil {
		return err
	}
	renderPOP3(g.stdout, rep)
	for _, st := range rep.Throttle {
		if line := healthLine(st); line != "" {
			fmt.Fprintln(g.stdout, line)
		}
	}
	return nil
}

// movesBefore is what the state holds of the moves before the run (for
// the live view: what is left to copy); nothing when it cannot tell.
func movesBefore(ctx context.Context, st *state.Store, moves []migrate.Move) map[string]moveBefore {
	list, err := st.List(ctx)
	if err != nil {
		return nil
	}
	byKey := make(map[state.Key]state.Status, len(list))
	for _, s := range list {
		byKey[s.Key] = s
	}
	out := map[string]moveBefore{}
	for _, m := range moves {
		s, ok := byKey[migrate.MoveKey(m)]
		if !ok {
			s, ok = byKey[migrate.LegacyMoveKey(m)]
		}
		if ok {
			out[m.Mailbox] = moveBefore{phase: s.Phase, bytesDone: s.BytesDone, bytesTotal: s.BytesTotal}
		}
	}
	return out
}
