package main

import (
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"mailferry/inventory"
	"mailferry/migrate"
	"mailferry/planner"
	"mailferry/state"
)

// statusEntry is one move as `status --json` prints it: the mailbox and
// its route, never a login.
type statusEntry struct {
	Mailbox string `json:"mailbox"`
	// From and To are cluster names (apply, drain, rebalance) or, for
	// `migrate` runs, the server as imap://host:port.
	From string `json:"from"`
	To   string `json:"to"`
	// State says in one word where the move stands: its phase, or failed,
	// held, interrupted or waiting when its last run ended so (and no run
	// works on it now).
	State string `json:"state"`
	// Phase is the recorded phase the move resumes from ("new" before any).
	Phase string `json:"phase"`
	// Result is how the last run ended ("" while none has).
	Result        string     `json:"result,omitempty"`
	ResultAt      *time.Time `json:"result_at,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
	MessagesDone  int64      `json:"messages_done"`
	MessagesTotal int64      `json:"messages_total"`
	BytesDone     int64      `json:"bytes_done"`
	BytesTotal    int64      `json:"bytes_total"`
	Verified      int64      `json:"messages_verified"`
	Failed        int64      `json:"messages_failed"`
	// Totals is what every pass changed, over every run of the move.
	Totals       statusChanges `json:"totals"`
	Passes       []statusPass  `json:"passes"`
	Holder       *statusHolder `json:"holder,omitempty"`
	LastActivity time.Time     `json:"last_activity"`
	Created      time.Time     `json:"created"`
}

// statusChanges counts what passes changed on the target.
type statusChanges struct {
	Passes            int64 `json:"passes,omitempty"`
	Copied            int64 `json:"messages_copied"`
	BytesCopied       int64 `json:"bytes_copied"`
	Adopted           int64 `json:"messages_adopted"`
	FlagsUpdated      int64 `json:"flags_updated"`
	Expunged          int64 `json:"messages_expunged"`
	TargetOnly        int64 `json:"target_only_messages"`
	DuplicatesRemoved int64 `json:"duplicates_removed"`
}

// statusPass is one pass of a move's recent history.
type statusPass struct {
	Pass            int64     `json:"pass"`
	Phase           string    `json:"phase"`
	Result          string    `json:"result"`
	Error           string    `json:"error,omitempty"`
	Holder          string    `json:"holder,omitempty"`
	Started         time.Time `json:"started"`
	DurationSeconds float64   `json:"duration_seconds"`
	Messages        int64     `json:"messages"`
	Failed          int64     `json:"messages_failed"`
	statusChanges
}

// statusHolder is the process working on a move now.
type statusHolder struct {
	Name         string     `json:"name"`
	Host         string     `json:"host,omitempty"`
	PID          int        `json:"pid,omitempty"`
	Since        *time.Time `json:"since,omitempty"`
	LeaseExpires time.Time  `json:"lease_expires"`
}

// statusLock is a run lock: not a mailbox, shown apart.
type statusLock struct {
	Inventory string
	Holder    *statusHolder
}

// statusOutput is what status shows: the moves (`status --json` prints
// these) and the run locks.
type statusOutput struct {
	Moves []statusEntry
	Locks []statusLock
}

func newStatusCommand(g *globalOptions) *cobra.Command {
	var stateURL, statePasswordFile, planPath string
	var passes bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "List the moves in the state: phase, totals, last error, what each pass changed, who works on it",
		Long: `List every move recorded in the state, by mailbox and route (cluster names;
for single "mailferry migrate" runs the servers, never a login): where it
stands (its phase, or failed, held, interrupted or waiting when its last run
ended so), messages and bytes of the whole move done of its total, the last
error in words, what its passes changed over all runs (copied, adopted,
flags updated, expunged, the target's own messages left alone), and the
process working on it now (host, pid, since when).

--passes adds each move's latest passes (up to 20): phase, result and what
each changed. --plan PLAN summarises one plan instead: how many of its
moves are in each phase, bytes done of the total, and the failed moves with
their reasons. --json prints the same as JSON (snake_case, units in the
names: bytes, seconds): a list of the moves.

Run locks (one per inventory, held while apply, drain, complete or
rebalance runs) are not moves: a held one is named after the table.

Exit codes: 0 shown; 1 the state could not be read (or there is none yet);
2 usage error.`,
		Example: `  mailferry status
  mailferry status --passes
  mailferry status --plan plan.json
  mailferry status --state postgres://mailferry@db/mailferry --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if stateURL == "none" {
				return usageErrorf("--state none has nothing to show")
			}
			var plan *planner.Plan
			if planPath != "" {
				p, err := readPlanFile(planPath)
				if err != nil {
					return err
				}
				plan = p
			}
			var list []state.MoveStatus
			st, err := openState(cmd.Context(), stateURL, statePasswordFile, state.Existing())
			switch {
			case errors.Is(err, state.ErrNoState) && plan != nil:
				// Nothing ran yet: every move of the plan is new.
			case err != nil:
				return err
			default:
				defer st.Close()
				if list, err = st.Moves(cmd.Context()); err != nil {
					return err
				}
			}
			out := statusOf(list)
			if plan != nil {
				sum := summarisePlan(planPath, plan, list)
				if g.json {
					return writeJSON(g, sum)
				}
				return renderPlanSummary(g, sum)
			}
			if g.json {
				return writeJSON(g, out.Moves) // run locks are not moves
			}
			if err := renderStatus(g, out, passes); err != nil {
				return err
			}
			return renderFleetWorkers(cmd.Context(), g, stateURL, statePasswordFile) // fleet mode: fleet.go
		},
	}
	cmd.Flags().StringVar(&stateURL, "state", defaultState(), stateUsage)
	cmd.Flags().StringVar(&statePasswordFile, "state-password-file", "", statePasswordUsage)
	cmd.Flags().StringVar(&planPath, "plan", "", "summarise the moves of the plan `FILE` (phases, bytes done, failures)")
	cmd.Flags().BoolVar(&passes, "passes", false, "also list each move's latest passes and what each changed")
	return cmd
}

// statusOf turns the state's migrations into moves and run locks.
func statusOf(list []state.MoveStatus) statusOutput {
	out := statusOutput{Moves: []statusEntry{}, Locks: []statusLock{}}
	for _, s := range list {
		if isRunLock(s.Key) {
			out.Locks = append(out.Locks, statusLock{Inventory: s.Key.Target, Holder: holderOf(s)})
			continue
		}
		out.Moves = append(out.Moves, entryOf(s))
	}
	sort.SliceStable(out.Moves, func(i, j int) bool {
		a, b := out.Moves[i], out.Moves[j]
		if a.Mailbox != b.Mailbox {
			return a.Mailbox < b.Mailbox
		}
		if a.From != b.From {
			return a.From < b.From
		}
		return a.To < b.To
	})
	return out
}

// isRunLock: the run lock's key ("rebalance": of older versions).
func isRunLock(k state.Key) bool { return k.Source == runLockSource || k.Source == "rebalance" }

func entryOf(s state.MoveStatus) statusEntry {
	mailbox, from := routeOf(s.Key.Source)
	_, to := routeOf(s.Key.Target)
	e := statusEntry{
		Mailbox: mailbox, From: from, To: to, Phase: phaseOrNew(s.Phase), Result: s.Result, LastError: s.LastError,
		MessagesDone: s.MessagesDone, MessagesTotal: s.MessagesTotal, BytesDone: s.BytesDone, BytesTotal: s.BytesTotal,
		Verified: s.Verified, Failed: s.Failed, Totals: changesOf(s.Totals.Changes), Passes: []statusPass{},
		Holder: holderOf(s), LastActivity: s.Updated, Created: s.Created,
	}
	e.Totals.Passes = s.Totals.Passes
	if !s.ResultAt.IsZero() {
		t := s.ResultAt
		e.ResultAt = &t
	}
	e.State = e.Phase
	if s.Holder == "" { // a run working on it now is past the last one's result
		e.State = stateWord(e.Phase, s.Result)
	}
	for _, p := range s.Passes {
		e.Passes = append(e.Passes, statusPass{
			Pass: p.Seq, Phase: p.Phase, Result: p.Result, Error: p.Error, Holder: p.Holder, Started: p.Started,
			DurationSeconds: p.Ended.Sub(p.Started).Seconds(), Messages: p.Messages, Failed: p.Failed, statusChanges: changesOf(p.Changes),
		})
	}
	return e
}

// stateWord is where a move stands in one word: a run that ended failed,
// held, interrupted or waiting says so; otherwise its phase.
func stateWord(phase, result string) string {
	switch result {
	case migrate.ResultFailed, migrate.ResultHeld, migrate.ResultInterrupted, state.PassWaiting:
		if phase == migrate.PhaseDone {
			return phase
		}
		return result
	}
	return phase
}

func phaseOrNew(p string) string {
	if p == "" {
		return "new"
	}
	return p
}

func changesOf(c state.Changes) statusChanges {
	return statusChanges{Copied: c.Copied, BytesCopied: c.BytesCopied, Adopted: c.Adopted, FlagsUpdated: c.FlagsUpdated,
		Expunged: c.Expunged, TargetOnly: c.TargetOnly, DuplicatesRemoved: c.DuplicatesRemoved}
}

// holderOf names the process holding the lease, nil when it is free.
func holderOf(s state.MoveStatus) *statusHolder {
	if s.Holder == "" {
		return nil
	}
	h := &statusHolder{Name: s.Holder, LeaseExpires: s.LeaseExpires}
	if host, pid, ok := strings.Cut(s.Holder, " pid "); ok { // holderName's form
		if n, err := strconv.Atoi(pid); err == nil {
			h.Host, h.PID = host, n
		}
	}
	if !s.Since.IsZero() {
		t := s.Since
		h.Since = &t
	}
	return h
}

// routeOf splits one side of a move's key into the mailbox and where it
// is: "cluster:NAME/MAILBOX" (apply) gives the cluster's name;
// "imap://host:port/MAILBOX" (migrate) the server. A key of mailferry
// before schema 2 ("imap://login@host:port") loses its login: the mailbox
// is the login up to a Dovecot master user's "*".
func routeOf(side string) (mailbox, where string) {
	if rest, ok := strings.CutPrefix(side, "cluster:"); ok {
		cluster, mailbox, _ := strings.Cut(rest, "/")
		return mailbox, cluster
	}
	u, err := url.Parse(side)
	if err != nil || u.Host == "" {
		return side, ""
	}
	where = u.Scheme + "://" + u.Host
	if u.User != nil {
		login := u.User.Username()
		mailbox, _, _ = strings.Cut(login, "*")
		return mailbox, where
	}
	return strings.TrimPrefix(u.Path, "/"), where
}

func renderStatus(g *globalOptions, out statusOutput, passes bool) error {
	if len(out.Moves) == 0 {
		fmt.Fprintln(g.stdout, "no moves recorded")
	} else {
		tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "MAILBOX\tFROM\tTO\tSTATE\tMESSAGES\tBYTES\tPASSES\tCHANGED\tHELD BY\tLAST ACTIVITY\tLAST ERROR")
		for _, e := range out.Moves {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s/%s\t%d\t%s\t%s\t%s\t%s\n",
				e.Mailbox, e.From, e.To, e.State, e.MessagesDone, e.MessagesTotal,
				inventory.FormatBytes(e.BytesDone), inventory.FormatBytes(e.BytesTotal), e.Totals.Passes,
				changedText(e.Totals), holderText(e.Holder), e.LastActivity.Local().Format("2006-01-02 15:04:05"),
				statusLine(orDash(e.LastError), 100))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if passes {
		if err := renderPasses(g, out.Moves); err != nil {
			return err
		}
	}
	for _, l := range out.Locks {
		if l.Holder != nil {
			fmt.Fprintf(g.stdout, "run lock of %s: held by %s\n", l.Inventory, holderText(l.Holder))
		}
	}
	return nil
}

func renderPasses(g *globalOptions, moves []statusEntry) error {
	fmt.Fprintln(g.stdout)
	tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MAILBOX\tFROM\tTO\tPASS\tPHASE\tRESULT\tSTARTED\tSECONDS\tCOPIED\tBYTES\tADOPTED\tFLAGS\tEXPUNGED\tTARGET ONLY\tERROR")
	for _, e := range moves {
		for _, p := range e.Passes {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%.1f\t%d\t%s\t%d\t%d\t%d\t%d\t%s\n",
				e.Mailbox, e.From, e.To, p.Pass, p.Phase, p.Result, p.Started.Local().Format("2006-01-02 15:04:05"),
				p.DurationSeconds, p.Copied, inventory.FormatBytes(p.BytesCopied), p.Adopted, p.FlagsUpdated, p.Expunged,
				p.TargetOnly, statusLine(orDash(p.Error), 100))
		}
	}
	return tw.Flush()
}

// changedText is what passes changed, the non-zero counts only.
func changedText(c statusChanges) string {
	var parts []string
	add := func(n int64, what string) {
		if n != 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(c.Copied, "copied")
	add(c.Adopted, "adopted")
	add(c.FlagsUpdated, "flags")
	add(c.Expunged, "expunged")
	add(c.TargetOnly, "target only")
	add(c.DuplicatesRemoved, "duplicates removed")
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

func holderText(h *statusHolder) string {
	if h == nil {
		return "-"
	}
	if h.Since != nil {
		return fmt.Sprintf("%s since %s", h.Name, h.Since.Local().Format("15:04:05"))
	}
	return h.Name
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// statusLine keeps a table row on one line: newlines become spaces and a
// text longer than max runes is cut with "…" (--json has it whole).
func statusLine(s string, max int) string {
	return cutRunes(strings.Join(strings.Fields(s), " "), max)
}

// planSummary is `status --plan PLAN`: where the plan's moves stand.
type planSummary struct {
	Plan          string         `json:"plan"`
	Moves         int            `json:"moves"`
	States        map[string]int `json:"states"`
	BytesDone     int64          `json:"bytes_done"`
	BytesTotal    int64          `json:"bytes_total"`
	MessagesDone  int64          `json:"messages_done"`
	MessagesTotal int64          `json:"messages_total"`
	Failed        []planFailure  `json:"failed"`
}

// planFailure is a failed move of the plan with its reason.
type planFailure struct {
	Mailbox string `json:"mailbox"`
	From    string `json:"from"`
	To      string `json:"to"`
	Reason  string `json:"reason"`
}

// summarisePlan counts the plan's moves by state and adds up their bytes:
// a move the state does not know yet is new, with the plan's bytes as its
// total.
func summarisePlan(path string, plan *planner.Plan, list []state.MoveStatus) planSummary {
	byKey := make(map[state.Key]state.MoveStatus, len(list))
	for _, s := range list {
		byKey[s.Key] = s
	}
	sum := planSummary{Plan: path, Moves: len(plan.Moves), States: map[string]int{}, Failed: []planFailure{}}
	for _, pm := range plan.Moves {
		s, ok := byKey[migrate.MoveKey(migrate.Move{Mailbox: pm.Mailbox, From: pm.From, To: pm.To})]
		if !ok {
			sum.States["new"]++
			sum.BytesTotal += pm.Bytes
			sum.MessagesTotal += pm.Messages
			continue
		}
		e := entryOf(s)
		sum.States[e.State]++
		total, done := max(e.BytesTotal, pm.Bytes), e.BytesDone
		if e.Phase == migrate.PhaseDone {
			done = total
		}
		sum.BytesDone += min(done, total)
		sum.BytesTotal += total
		sum.MessagesDone += e.MessagesDone
		sum.MessagesTotal += max(e.MessagesTotal, pm.Messages)
		if e.State == migrate.ResultFailed {
			sum.Failed = append(sum.Failed, planFailure{Mailbox: pm.Mailbox, From: pm.From, To: pm.To, Reason: e.LastError})
		}
	}
	return sum
}

// phaseOrder lists states in the order a move goes through them.
var phaseOrder = []string{"new", migrate.PhaseCopying, migrate.PhaseConverging, migrate.PhaseReady, migrate.PhaseCutover,
	migrate.PhaseFinal, migrate.PhaseDone, migrate.ResultHeld, state.PassWaiting, migrate.ResultInterrupted, migrate.ResultFailed}

func renderPlanSummary(g *globalOptions, sum planSummary) error {
	var parts []string
	seen := map[string]bool{}
	for _, p := range phaseOrder {
		seen[p] = true
		if n := sum.States[p]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, p))
		}
	}
	var rest []string
	for p := range sum.States {
		if !seen[p] {
			rest = append(rest, p)
		}
	}
	sort.Strings(rest)
	for _, p := range rest {
		parts = append(parts, fmt.Sprintf("%d %s", sum.States[p], p))
	}
	fmt.Fprintf(g.stdout, "plan %s: %d moves: %s\n", sum.Plan, sum.Moves, strings.Join(parts, ", "))
	pct := 100.0
	if sum.BytesTotal > 0 {
		pct = 100 * float64(sum.BytesDone) / float64(sum.BytesTotal)
	}
	fmt.Fprintf(g.stdout, "bytes: %s of %s done (%.0f%%)\n", inventory.FormatBytes(sum.BytesDone), inventory.FormatBytes(sum.BytesTotal), pct)
	if len(sum.Failed) == 0 {
		return nil
	}
	fmt.Fprintf(g.stdout, "failed:\n")
	tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	for _, f := range sum.Failed {
		fmt.Fprintf(tw, "  %s\t%s -> %s\t%s\n", f.Mailbox, f.From, f.To, statusLine(orDash(f.Reason), 160))
	}
	return tw.Flush()
}
