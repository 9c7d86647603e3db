package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"mailferry/inventory"
	"mailferry/migrate"
	"mailferry/planner"
	"mailferry/throttle"
)

type planOptions struct {
	inventory       string
	drain           string
	relieve         string
	rebalance       bool
	targetLoad      float64
	targetStorage   float64
	band            float64
	reserve         float64
	maxBytes        string
	maxMoves        int
	exclude         []string
	pin             []string
	sameTag         []string
	assume          []string
	addCluster      []string
	parallelism     int
	connections     int
	verify          string
	windows         []string
	state           string
	statePassword   string
	cooldown        time.Duration
	streamRate      string
	messageOverhead time.Duration
	output          string
	html            string
	bestEffort      bool
	listMoves       bool
}

func newPlanCommand(g *globalOptions) *cobra.Command {
	o := &planOptions{}
	cmd := &cobra.Command{
		Use:   "plan -i INVENTORY (--drain CLUSTER | --relieve CLUSTER | --rebalance)",
		Short: "Dry run: which mailboxes move where, before/after, and how long it takes",
		Long: `Plan moves without touching mail: plan reads the inventory (and its mailbox
CSV) and never connects to a server.

Policies:
  --drain X       every mailbox off X, the most load per byte first
  --relieve X     the fewest bytes whose move brings X under --target-load
                  and --target-storage
  --rebalance     every cluster into --band around the fleet's mean
                  utilisation, in load and in storage

Each mailbox goes to the target that keeps the highest projected utilisation
(load or storage) lowest. Targets keep --reserve of their capacity free;
clusters that are degraded, draining or readonly never receive. What cannot
be placed is listed with the reason.

What-ifs change the inventory for this plan only:
  --assume 'bravo.capacity.load=50%'    (capacity.bytes, capacity.load,
        limits.connections, limits.bytes_per_sec, limits.messages_per_sec,
        health; a value or a percentage of the inventory's)
  --add-cluster echo:40TiB:2000[:region=eu-west]

The ETA comes from each cluster's limits (connections, bytes/s, messages/s),
--parallelism, --stream-rate and --message-overhead, and names the
bottleneck. --json prints the plan document; -o writes it to a file for
'mailferry apply'. The same inventory and flags always give the same plan.`,
		Example: `  # bravo is failing: where would its mailboxes go, and how long would it take?
  mailferry plan -i testdata/inventory/example.yaml --drain bravo

  # bring bravo under 70% load and 80% storage, staying in its region,
  # and save the plan for review
  mailferry plan -i inv.yaml --relieve bravo --target-load 0.7 --same-tag region -o plan.json

  # capacity planning: if charlie lost half its load capacity and a new
  # cluster echo came online, could bravo still be drained?
  mailferry plan -i inv.yaml --drain bravo --assume 'charlie.capacity.load=50%' \
    --add-cluster echo:2TiB:300:region=eu-west

  # nightly rebalance, at most 2 TiB and 500 moves, as JSON
  mailferry plan -i inv.yaml --rebalance --band 0.05 --max-bytes 2TiB --max-moves 500 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPlan(cmd, g, o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.inventory, "inventory", "i", "", "inventory YAML `FILE`")
	f.StringVar(&o.drain, "drain", "", "move every mailbox off `CLUSTER`")
	f.StringVar(&o.relieve, "relieve", "", "bring `CLUSTER` under the target utilisations, moving the fewest bytes")
	f.BoolVar(&o.rebalance, "rebalance", false, "bring every cluster into the band around the mean utilisation")
	f.Float64Var(&o.targetLoad, "target-load", planner.DefaultTargetLoad, "--relieve: get the load utilisation under this `FRACTION` of capacity")
	f.Float64Var(&o.targetStorage, "target-storage", planner.DefaultTargetStorage, "--relieve: get the storage utilisation under this `FRACTION` of capacity")
	f.Float64Var(&o.band, "band", planner.DefaultBand, "--rebalance: half-width of the band around the mean utilisation, a `FRACTION` of capacity")
	f.Float64Var(&o.reserve, "reserve", planner.DefaultReserve, "keep this `FRACTION` of each target's capacity free")
	f.StringVar(&o.maxBytes, "max-bytes", "", "move at most `SIZE` in total (e.g. 2TiB)")
	f.IntVar(&o.maxMoves, "max-moves", 0, "move at most `N` mailboxes")
	f.StringSliceVar(&o.exclude, "exclude-target", nil, "never move mailboxes onto `CLUSTER` (repeatable, or comma-separated)")
	f.StringArrayVar(&o.pin, "pin", nil, "never move `MAILBOX` (repeatable)")
	f.StringSliceVar(&o.sameTag, "same-tag", nil, "a target must have the same value of tag `KEY` as the source, e.g. region (repeatable)")
	f.StringArrayVar(&o.assume, "assume", nil, "what-if: `CLUSTER.FIELD=VALUE`, e.g. bravo.capacity.load=50% (repeatable)")
	f.StringArrayVar(&o.addCluster, "add-cluster", nil, "what-if: an empty healthy cluster `NAME:BYTES:LOAD[:key=value,...]` (repeatable)")
	f.IntVar(&o.parallelism, "parallel", planner.DefaultParallelism, "ETA: `N` mailboxes moved at once, as mailferry apply --parallel")
	f.IntVar(&o.parallelism, "parallelism", planner.DefaultParallelism, "ETA: `N` mailboxes copied at once")
	_ = f.MarkDeprecated("parallelism", "use --parallel (the flag mailferry apply takes)")
	f.IntVar(&o.connections, "connections", planner.DefaultConnections, "ETA: `N` folders copied at once per mailbox, as mailferry apply --connections")
	f.StringVar(&o.verify, "verify", planner.DefaultVerify, "ETA: how apply checks each copy, `MODE` full (reads it back), size or none, as mailferry apply --verify")
	f.StringArrayVar(&o.windows, "window", nil, "ETA: apply starts new work only within local `HH:MM-HH:MM` (repeatable), on every cluster, as mailferry apply --window")
	f.StringVar(&o.state, "state", defaultState(), "the state whose done moves the plan starts from (mailboxes where they put them, those within --cooldown held, the ETA calibrated by how long they took): a `FILE` (or sqlite:PATH), a postgres:// URL, or none (the inventory alone)")
	f.StringVar(&o.statePassword, "state-password-file", "", statePasswordUsage)
	f.DurationVar(&o.cooldown, "cooldown", planner.DefaultCooldown, cooldownUsage)
	f.StringVar(&o.streamRate, "stream-rate", inventory.FormatBytes(planner.DefaultStreamBytes), "ETA: bytes per second one copy stream sustains, a `SIZE` such as 20MiB")
	f.DurationVar(&o.messageOverhead, "message-overhead", time.Duration(planner.DefaultMessageOverhead*float64(time.Second)), "ETA: fixed cost per message, a `DURATION`")
	f.StringVarP(&o.output, "output", "o", "", "write the plan document (JSON) to `FILE` (a file name, never a format: --json prints it on stdout)")
	f.StringVar(&o.html, "html", "", "also write the plan as a self-contained HTML page to `FILE` (clusters before/after, moves)")
	f.BoolVar(&o.listMoves, "moves", false, fmt.Sprintf("list every move in the text plan (by default the first %d)", movesShown))
	f.BoolVar(&o.bestEffort, "best-effort", false, "--relieve: when the targets cannot be met, plan the moves that get closest instead of none")
	return cmd
}

// cooldownUsage is the --cooldown of plan, drain and rebalance.
const cooldownUsage = "do not move a mailbox a done move put where it is less than `D` ago (0: no cooldown)"

func runPlan(cmd *cobra.Command, g *globalOptions, o *planOptions) error {
	pol, err := o.policy(cmd)
	if err != nil {
		return err
	}
	inv, err := loadInventory(o.inventory)
	if err != nil {
		return err
	}
	h, err := readHistory(cmd.Context(), o.state, o.statePassword, inv)
	if err != nil {
		return err
	}
	inv, relocated := h.apply(inv, &pol, o.cooldown, time.Now())
	plan, err := planner.Make(inv, pol)
	if err != nil {
		return usageErrorf("plan: %w", err)
	}
	plan.Inventory = o.inventory
	plan.RelocatedMailboxes = relocated
	if o.output != "" {
		var buf bytes.Buffer
		if err := planner.WritePlan(&buf, plan); err != nil {
			return err
		}
		if err := writeFileAtomic(o.output, buf.Bytes()); err != nil {
			return fmt.Errorf("write plan: %w", err)
		}
	}
	if o.html != "" {
		if err := writePlanHTML(o.html, plan); err != nil {
			return err
		}
	}
	if g.json {
		if err := planner.WritePlan(g.stdout, plan); err != nil {
			return err
		}
		return goalError(plan)
	}
	if note := historyNote(h, plan); note != "" {
		fmt.Fprintln(g.stdout, note)
	}
	if err := renderPlanMoves(g.stdout, plan, o.listMoves); err != nil {
		return err
	}
	if o.output != "" {
		if _, err := fmt.Fprintf(g.stdout, "\nPlan written to %s; run it with:\n  mailferry apply %s -i %s --cutover-exec ./switch-routing.sh\n"+
			"(the hook switches one mailbox's routing to its target, named in MAILFERRY_MAILBOX and MAILFERRY_TO;\n"+
			"without it every move stays in sync at ready, not final, until mailferry complete --routed)\n",
			o.output, o.output, o.inventory); err != nil {
			return err
		}
	}
	return goalError(plan)
}

// goalError is the plan's outcome as an exit status: nil when the goal is
// met, else exit 3 (the plan, if any, was printed and written).
func goalError(p *planner.Plan) error {
	if p.Goal.Met {
		return nil
	}
	what := "goal not met"
	switch {
	case p.Goal.Infeasible && len(p.Moves) == 0:
		what = "goal cannot be met; no moves planned"
	case p.Goal.Infeasible:
		what = "goal cannot be met; best-effort plan"
	case p.Deferred != nil:
		what = "goal not met within the bounds; the rest is left for a later run"
	}
	return partialError{fmt.Sprintf("%s (%d moves)", what, len(p.Moves))}
}

// policy turns the flags into a planner policy, rejecting combinations that
// make no sense.
func (o *planOptions) policy(cmd *cobra.Command) (planner.Policy, error) {
	if o.inventory == "" {
		return planner.Policy{}, usageErrorf("plan: which inventory? say -i FILE")
	}
	var kind planner.Kind
	var cluster string
	n := 0
	if o.drain != "" {
		kind, cluster = planner.Drain, o.drain
		n++
	}
	if o.relieve != "" {
		kind, cluster = planner.Relieve, o.relieve
		n++
	}
	if o.rebalance {
		kind = planner.Rebalance
		n++
	}
	if n != 1 {
		return planner.Policy{}, usageErrorf("plan: say exactly one of --drain CLUSTER, --relieve CLUSTER or --rebalance")
	}
	only := map[string]planner.Kind{"target-load": planner.Relieve, "target-storage": planner.Relieve, "band": planner.Rebalance, "best-effort": planner.Relieve}
	for name, k := range only {
		if cmd.Flags().Changed(name) && k != kind {
			return planner.Policy{}, usageErrorf("plan: --%s applies only to --%s", name, k)
		}
	}
	pol := planner.DefaultPolicy(kind, cluster)
	pol.TargetLoad, pol.TargetStorage, pol.Band, pol.Reserve = o.targetLoad, o.targetStorage, o.band, o.reserve
	if kind != planner.Relieve {
		pol.TargetLoad, pol.TargetStorage = 0, 0
	}
	if kind != planner.Rebalance {
		pol.Band = 0
	}
	if o.maxBytes != "" {
		b, err := inventory.ParseBytes(o.maxBytes)
		if err != nil {
			return pol, usageErrorf("plan: --max-bytes: %w", err)
		}
		pol.MaxBytes = b
	}
	if o.maxMoves < 0 {
		return pol, usageErrorf("plan: --max-moves must not be negative")
	}
	pol.MaxMoves = o.maxMoves
	pol.BestEffort = o.bestEffort
	pol.ExcludeTargets, pol.Pinned, pol.SameTags = o.exclude, o.pin, o.sameTag
	pol.Assume, pol.AddClusters = o.assume, o.addCluster
	if o.parallelism <= 0 {
		return pol, usageErrorf("plan: --parallelism must be positive")
	}
	rate, err := inventory.ParseBytes(o.streamRate)
	if err != nil || rate <= 0 {
		return pol, usageErrorf("plan: --stream-rate: want a positive size per second such as 20MiB")
	}
	if o.messageOverhead < 0 {
		return pol, usageErrorf("plan: --message-overhead must not be negative")
	}
	if o.connections <= 0 {
		return pol, usageErrorf("plan: --connections must be positive")
	}
	mode, err := migrate.ParseVerifyMode(o.verify)
	if err != nil {
		return pol, usageErrorf("plan: --verify: %v", err)
	}
	if _, err := throttle.ParseWindows(o.windows...); err != nil {
		return pol, usageErrorf("plan: --window: %v", err)
	}
	if o.cooldown < 0 {
		return pol, usageErrorf("plan: --cooldown must not be negative")
	}
	pol.Throughput.Parallelism = o.parallelism
	pol.Throughput.Connections = o.connections
	pol.Throughput.Verify = string(mode)
	pol.Throughput.Windows = o.windows
	pol.Throughput.StreamBytesPerSec = rate
	pol.Throughput.MessageOverhead = o.messageOverhead.Seconds()
	return pol, nil
}

// loadInventory loads an inventory; its problems are configuration errors.
func loadInventory(path string) (*inventory.Inventory, error) {
	if path == "" {
		return nil, usageErrorf("which inventory? say -i FILE")
	}
	inv, err := inventory.Load(path)
	if err != nil {
		return nil, usageError{err}
	}
	return inv, nil
}

// writeFileAtomic writes data to path through a temporary file in the same
// directory, so a reader never sees half a plan.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

const barWidth = 20

// movesShown is how many moves the text plan lists without --moves.
const movesShown = 10

// renderPlan writes the plan as the table operators read, with its first
// moves.
func renderPlan(w io.Writer, p *planner.Plan) error { return renderPlanMoves(w, p, false) }

// renderPlanMoves is renderPlan listing every move when all is set.
func renderPlanMoves(w io.Writer, p *planner.Plan, all bool) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Plan: %s; targets keep %s in reserve\n", describePolicy(p.Policy), pct0(p.Policy.Reserve))
	for _, a := range p.Policy.Assume {
		fmt.Fprintf(&b, "  assuming %s\n", a)
	}
	for _, a := range p.Policy.AddClusters {
		fmt.Fprintf(&b, "  assuming a new cluster %s\n", a)
	}
	b.WriteString("\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tHEALTH\tMAILBOXES\tLOAD\t\tSTORAGE\t\tMOVES")
	for _, c := range p.Clusters {
		health := c.Health
		if c.Added {
			health += " (new)"
		} else if !c.Receives && c.Health == string(inventory.Healthy) {
			health += " (excluded)"
		}
		moves := ""
		switch {
		case c.MovesIn > 0 && c.MovesOut > 0:
			moves = fmt.Sprintf("+%d -%d", c.MovesIn, c.MovesOut)
		case c.MovesIn > 0:
			moves = fmt.Sprintf("+%d", c.MovesIn)
		case c.MovesOut > 0:
			moves = fmt.Sprintf("-%d", c.MovesOut)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d -> %d\t%s -> %s\t%s\t%s -> %s\t%s\t%s\n",
			c.Name, health, c.Before.Mailboxes, c.After.Mailboxes,
			pct0(c.Before.LoadUtil), pct0(c.After.LoadUtil), bar(c.Before.LoadUtil, c.After.LoadUtil),
			pct0(c.Before.StorageUtil), pct0(c.After.StorageUtil), bar(c.Before.StorageUtil, c.After.StorageUtil),
			moves)
	}
	tw.Flush()
	b.WriteString("(bars: █ stays  ▓ arrives  ░ leaves, 5% a cell)\n\n")

	t := p.Totals
	msgs := groupDigits(t.Messages)
	if t.MessagesEstimated {
		msgs = "~" + msgs
	}
	fmt.Fprintf(&b, "Moves:  %d mailboxes, %s, %s messages, load %s\n", t.Moves, inventory.FormatBytes(t.Bytes), msgs, trimFloat(t.Load))
	if t.Moves > 0 {
		th := p.Policy.Throughput
		from := ""
		if p.ETA.StartsAt != "" {
			from = ", from " + p.ETA.StartsAt + " when a window opens"
		}
		fmt.Fprintf(&b, "ETA:    %s as apply runs it (%d at once, up to %d connections each, verify %s%s)\n", duration(p.ETA.Seconds), th.Parallelism, th.Connections, th.Verify, from)
		fmt.Fprintf(&b, "        bottleneck: %s\n", p.ETA.Detail)
	}
	goal := "met: " + p.Goal.Detail
	if !p.Goal.Met {
		goal = "NOT met: " + p.Goal.Detail
	}
	fmt.Fprintf(&b, "Goal:   %s\n", goal)
	if lb := p.Goal.LowerBoundBytes; lb > 0 && t.Bytes > 0 {
		if p.Goal.Met {
			fmt.Fprintf(&b, "        moves %s, %.2fx the least any plan that meets the goal can move (%s)\n", inventory.FormatBytes(t.Bytes), float64(t.Bytes)/float64(lb), inventory.FormatBytes(lb))
		} else {
			fmt.Fprintf(&b, "        a plan that meets the goal moves at least %s\n", inventory.FormatBytes(lb))
		}
	}
	if d := p.Deferred; d != nil {
		wanted := ""
		if d.WantedMoves > 0 {
			wanted = fmt.Sprintf("of %d moves, %s wanted; ", d.WantedMoves, inventory.FormatBytes(d.WantedBytes))
		}
		fmt.Fprintf(&b, "Left for a later run: %d moves, %s (%s%s)\n", d.Mailboxes, inventory.FormatBytes(d.Bytes), wanted, d.Reason)
	}
	if n := len(p.Moves); n > 0 {
		shown := n
		if !all && n > movesShown {
			shown = movesShown
		}
		if shown == n {
			fmt.Fprintf(&b, "\nMoves, in the order they start: %d\n", n)
		} else {
			fmt.Fprintf(&b, "\nMoves, in the order they start: the first %d of %d (--moves lists all, --json has the plan)\n", shown, n)
		}
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  MAILBOX\tFROM\tTO\tSIZE\tLOAD")
		for _, m := range p.Moves[:shown] {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", m.Mailbox, m.From, m.To, inventory.FormatBytes(m.Bytes), trimFloat(m.Load))
		}
		tw.Flush()
	}
	if n := len(p.Unplaceable); n > 0 {
		fmt.Fprintf(&b, "\nUnplaceable: %d\n", n)
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  MAILBOX\tCLUSTER\tSIZE\tLOAD\tREASON")
		const show = 20
		for i, u := range p.Unplaceable {
			if i == show {
				fmt.Fprintf(tw, "  ... and %d more (see --json)\n", n-show)
				break
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", u.Mailbox, u.Cluster, inventory.FormatBytes(u.Bytes), trimFloat(u.Load), u.Reason)
		}
		tw.Flush()
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func describePolicy(p planner.Policy) string {
	var s string
	switch p.Kind {
	case planner.Drain:
		s = fmt.Sprintf("drain %s, most load per byte first", p.Cluster)
	case planner.Relieve:
		s = fmt.Sprintf("relieve %s to load <= %s and storage <= %s", p.Cluster, pct0(p.TargetLoad), pct0(p.TargetStorage))
	case planner.Rebalance:
		s = fmt.Sprintf("rebalance into +/-%s of the mean", pct0(p.Band))
	}
	var bounds []string
	if p.MaxBytes > 0 {
		bounds = append(bounds, "at most "+inventory.FormatBytes(p.MaxBytes))
	}
	if p.MaxMoves > 0 {
		bounds = append(bounds, fmt.Sprintf("at most %d moves", p.MaxMoves))
	}
	if len(p.SameTags) > 0 {
		bounds = append(bounds, "same "+strings.Join(p.SameTags, ", "))
	}
	if len(p.ExcludeTargets) > 0 {
		bounds = append(bounds, "not onto "+strings.Join(p.ExcludeTargets, ", "))
	}
	if len(bounds) > 0 {
		s += "; " + strings.Join(bounds, "; ")
	}
	return s
}

// bar draws a utilisation change in barWidth cells.
func bar(before, after float64) string {
	cells := func(f float64) int { return min(max(int(f*barWidth+0.5), 0), barWidth) }
	b, a := cells(before), cells(after)
	over := ""
	if after > 1 {
		over = "!"
	}
	if a >= b {
		return strings.Repeat("█", b) + strings.Repeat("▓", a-b) + strings.Repeat("·", barWidth-a) + over
	}
	return strings.Repeat("█", a) + strings.Repeat("░", b-a) + strings.Repeat("·", barWidth-b) + over
}

func pct0(f float64) string { return fmt.Sprintf("%.0f%%", 100*f) }

func trimFloat(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func groupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// duration renders seconds the way an operator reads an ETA: "2d4h",
// "5h47m", "12m30s", "45s".
func duration(secs float64) string {
	d := time.Duration(secs) * time.Second
	switch {
	case d >= 24*time.Hour:
		return fmt.Sprintf("%dd%dh", d/(24*time.Hour), (d%(24*time.Hour))/time.Hour)
	case d >= time.Hour:
		return fmt.Sprintf("%dh%02dm", d/time.Hour, (d%time.Hour)/time.Minute)
	case d >= time.Minute:
		return fmt.Sprintf("%dm%02ds", d/time.Minute, (d%time.Minute)/time.Second)
	default:
		return fmt.Sprintf("%ds", d/time.Second)
	}
}
