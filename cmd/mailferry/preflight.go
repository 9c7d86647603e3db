package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"mailferry/inventory"
	"mailferry/migrate"
	"mailferry/planner"
	"mailferry/preflight"
	"mailferry/state"
)

// exitWontFit: preflight found mailboxes that will not fit their target
// (quota headroom, messages above its APPENDLIMIT); nothing else is wrong.
const exitWontFit = 6

// preflightError is a failed preflight: its report was rendered; code is
// the exit code (2 configuration, 1 a cluster unreachable, 6 will not fit).
type preflightError struct {
	code int
	msg  string
}

func (e preflightError) Error() string { return e.msg }

type preflightOptions struct {
	inventory     string
	state         string
	statePassword string
	ioTimeout     time.Duration
	pop3Sample    int
}

func newPreflightCommand(g *globalOptions) *cobra.Command {
	o := &preflightOptions{}
	cmd := &cobra.Command{
		Use:   "preflight PLAN.json -i INVENTORY",
		Short: "Check, before anything moves, that every move of a plan can run",
		Long: `Check a plan's moves without moving anything: every secret the clusters
reference resolves (password files exist with mode 0600 or stricter,
variables are set, CA files hold a certificate); every mailbox logs in on
its source and its target, at most limits.connections logins at once per
cluster (a quarter on a degraded one), every wait bounded by the cluster's
io_timeout; each cluster's capabilities are recorded (UIDPLUS, MULTIAPPEND,
CONDSTORE, QRESYNC, LITERAL+/-, APPENDLIMIT, STATUS=SIZE, SPECIAL-USE,
QUOTA); each mailbox is held against its target's quota (GETQUOTAROOT
"INBOX", when the target offers QUOTA) and, when the target names an
APPENDLIMIT below the mailbox's size, its messages above that limit are
looked for on the source (one SEARCH LARGER per folder).

For moves whose source cluster has a pop3 URL, it lists the mailboxes at
risk of their POP clients downloading everything again after the cutover:
a target without a pop3 URL; and, for a sample of mailboxes per source
cluster (--pop3-sample), the source's UIDLs (POP3 STAT, UIDL, LIST) and
INBOX UIDs (IMAP, read-only) held against what the target would give: its
own UIDLs when it holds mail already, else a fresh INBOX's (UIDs from 1, a
new UIDVALIDITY) in the source's format. Being at risk changes no exit code
(see apply --pop3-gate).

A problem a whole cluster shares (an untrusted certificate, no STARTTLS, a
refused admin login, an unreachable server) is reported once for the
cluster. Each problem says what to fix. What the state says is already
copied is not counted again (it already counts in the target's quota); done
moves are not checked. apply, drain, complete and rebalance run the same
check before their first move (--skip-preflight leaves it out).

Exit codes: 0 every move can run; 2 configuration error (a secret, TLS
trust, a login refused, a cluster the inventory lacks); 1 a cluster could
not be reached; 6 some mailboxes will not fit their target.`,
		Example: `  mailferry plan -i inv.yaml --drain bravo -o drain.json
  mailferry preflight drain.json -i inv.yaml
  mailferry preflight drain.json -i inv.yaml --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			inv, err := loadInventory(o.inventory)
			if err != nil {
				return err
			}
			plan, err := readPlanFile(args[0])
			if err != nil {
				return err
			}
			if o.ioTimeout < 0 {
				return usageErrorf("--io-timeout %s: want a positive duration such as 30s", o.ioTimeout)
			}
			st, err := openState(cmd.Context(), o.state, o.statePassword)
			if err != nil {
				return err
			}
			if st != nil {
				defer st.Close()
			}
			if o.pop3Sample < 0 {
				return usageErrorf("--pop3-sample %d: want 0 (every mailbox) or more", o.pop3Sample)
			}
			sample := o.pop3Sample
			if sample == 0 {
				sample = -1 // every mailbox
			}
			rep, err := runPreflight(cmd.Context(), inv, plan, nil, st, preflight.Options{IOTimeout: o.ioTimeout, POP3: true, POP3Sample: sample})
			if err != nil {
				return err
			}
			if g.json {
				if err := writeJSON(g, preflightJSON{OK: rep.OK(), Report: rep}); err != nil {
					return err
				}
			} else if err := renderPreflight(g.stdout, rep); err != nil {
				return err
			}
			return preflightVerdict(rep)
		},
	}
	cmd.Flags().StringVarP(&o.inventory, "inventory", "i", "", "inventory YAML `FILE` (clusters, logins, limits)")
	cmd.Flags().StringVar(&o.state, "state", defaultState(), stateUsage+"; what it says is copied is not counted again, done moves are left out (none: check the plan's sizes)")
	cmd.Flags().StringVar(&o.statePassword, "state-password-file", "", statePasswordUsage)
	cmd.Flags().IntVar(&o.pop3Sample, "pop3-sample", preflight.DefaultPOP3Sample, "read the POP3 UIDLs of at most `N` mailboxes per source cluster with a pop3 URL (0: every mailbox)")
	cmd.Flags().DurationVar(&o.ioTimeout, "io-timeout", 0, ioTimeoutUsage+" (default: each cluster's limits.io_timeout, else 2m0s); also bounds connecting and logging in (else 30s)")
	return cmd
}

type preflightJSON struct {
	OK bool `json:"ok"`
	*preflight.Report
}

// runPreflight checks the plan's moves (only the named ones, if any) that
// the state does not know as done, counting only what is left to copy.
func runPreflight(ctx context.Context, inv *inventory.Inventory, plan *planner.Plan, only []string, st *state.Store, opts preflight.Options) (*preflight.Report, error) {
	known := map[state.Key]state.Migration{}
	if st != nil {
		list, err := st.List(ctx)
		if err != nil {
			return nil, err
		}
		for _, s := range list {
			known[s.Key] = s.Migration
		}
	}
	want := map[string]bool{}
	for _, m := range only {
		want[m] = true
	}
	msgs := map[string]int64{}
	for _, mb := range inv.Mailboxes {
		msgs[mb.Cluster+"/"+mb.Name] = mb.Messages
	}
	var moves []preflight.Move
	for _, pm := range plan.Moves {
		if len(only) > 0 && !want[pm.Mailbox] {
			continue
		}
		m := preflight.Move{Mailbox: pm.Mailbox, From: pm.From, To: pm.To, Bytes: pm.Bytes, Messages: msgs[pm.From+"/"+pm.Mailbox]}
		if s, ok := known[migrate.MoveKey(migrate.Move{Mailbox: pm.Mailbox, From: pm.From, To: pm.To})]; ok {
			if s.Phase == migrate.PhaseDone {
				continue
			}
			m.Bytes = max(0, m.Bytes-s.BytesDone)
			if m.Messages > 0 {
				m.Messages = max(0, m.Messages-s.MessagesDone)
			}
		}
		moves = append(moves, m)
	}
	rep := preflight.Run(ctx, inv, moves, opts)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("preflight: %w", err) // interrupted: its failures say nothing
	}
	return rep, nil
}

// preflightVerdict is the exit of a preflight: nil when every move can
// run; else 2 for a configuration error, 1 for a cluster that could not
// be reached, 6 when only some mailboxes will not fit.
func preflightVerdict(rep *preflight.Report) error {
	if rep.OK() {
		return nil
	}
	n := len(rep.Problems)
	switch {
	case rep.Has(preflight.Kind.Configuration):
		return preflightError{exitUsage, fmt.Sprintf("preflight: %d problem(s), configuration errors among them: fix them (see the fix of each) and run again", n)}
	case rep.Has(func(k preflight.Kind) bool { return !k.Fit() }):
		return preflightError{exitFailure, fmt.Sprintf("preflight: %d problem(s): a cluster could not be reached", n)}
	}
	return preflightError{exitWontFit, fmt.Sprintf("preflight: %d mailbox(es) will not fit their target", n)}
}

// renderPreflight prints the clusters (one line each: role, logins,
// capabilities, its shared problem), then every problem with its fix.
func renderPreflight(w io.Writer, rep *preflight.Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tROLE\tLOGINS\tCAPABILITIES\tMISSING\tRESULT")
	for _, c := range rep.Clusters {
		result := "ok"
		if c.Problem != "" {
			kind, _, _ := strings.Cut(c.Problem, ":")
			result = kind + " (below)"
		}
		caps, missing := strings.Join(c.Capabilities, " "), strings.Join(c.Missing, " ")
		if caps == "" {
			caps = "-"
		}
		if missing == "" {
			missing = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\t%s\n", c.Name, c.Role, c.LoggedIn, c.Mailboxes, caps, missing, result)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var cluster, mailbox []preflight.Problem
	for _, p := range rep.Problems {
		if p.Mailbox == "" {
			cluster = append(cluster, p)
		} else {
			mailbox = append(mailbox, p)
		}
	}
	if len(cluster) > 0 {
		fmt.Fprintln(w)
		for _, p := range cluster {
			where := ""
			if p.File != "" {
				where = fmt.Sprintf(" (%s:%d: %s)", p.File, p.Line, p.Field)
			}
			fmt.Fprintf(w, "cluster %s (%s, %d mailboxes): %s: %s%s\n  fix: %s\n", p.Cluster, p.Side, p.Mailboxes, p.Kind, p.Message, where, p.Fix)
		}
	}
	if len(mailbox) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "MAILBOX\tCLUSTER\tSIDE\tPROBLEM\tFIX")
		for _, p := range mailbox {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s: %s\t%s\n", p.Mailbox, p.Cluster, p.Side, p.Kind, p.Message, p.Fix)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, wm := range rep.Warnings {
		fmt.Fprintf(w, "warning: %s\n", wm)
	}
	if err := renderPOP3Risks(w, rep); err != nil {
		return err
	}
	verdict := fmt.Sprintf("preflight: ok: %d mailboxes on %d clusters can move", len(rep.Mailboxes), len(rep.Clusters))
	if !rep.OK() {
		verdict = fmt.Sprintf("preflight: %d problem(s); nothing was moved", len(rep.Problems))
	}
	_, err := fmt.Fprintln(w, verdict)
	return err
}

// applyPreflight runs the preflight of an apply, drain, complete or
// rebalance before its first move: on success a line per cluster on
// stderr; on failure the whole report (on stdout, or a {"event":"preflight"}
// line with --json) and the error that stops the run.
func applyPreflight(ctx context.Context, g *globalOptions, a *applyFlags, inv *inventory.Inventory, plan *planner.Plan, only []string, st *state.Store) error {
	rep, err := runPreflight(ctx, inv, plan, only, st, preflight.Options{IOTimeout: a.ioTimeout, Connections: a.parallel * a.connections})
	if err != nil {
		return err
	}
	if rep.OK() {
		for _, c := range rep.Clusters {
			fmt.Fprintf(g.stderr, "mailferry: preflight: cluster %s (%s): %d/%d logins, %s\n", c.Name, c.Role, c.LoggedIn, c.Mailboxes, strings.Join(c.Capabilities, " "))
		}
		for _, w := range rep.Warnings {
			fmt.Fprintf(g.stderr, "mailferry: preflight: warning: %s\n", w)
		}
		return nil
	}
	if g.json {
		if err := json.NewEncoder(g.stdout).Encode(preflightLine{"preflight", false, rep}); err != nil {
			return err
		}
	} else if err := renderPreflight(g.stdout, rep); err != nil {
		return err
	}
	perr := preflightVerdict(rep).(preflightError)
	perr.msg += " (or say --skip-preflight)"
	return perr
}
