package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/spf13/cobra"

	"mailferry/internal/testrig/corpus"
	"mailferry/internal/testrig/faultproxy"
	"mailferry/internal/testrig/memserver"
	"mailferry/inventory"
	"mailferry/migrate"
	"mailferry/planner"
)

type demoOptions struct {
	mailboxes int
	folders   int
	messages  int
	maxSize   string
	parallel  int
	seed      uint64
}

// The demo's clusters, in inventory order; the second is the overloaded one.
var demoClusters = [3]string{"alpha", "bravo", "charlie"}

const demoOverloaded = "bravo"

func newDemoCommand(g *globalOptions) *cobra.Command {
	o := &demoOptions{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Drain an overloaded cluster of three in-process IMAP clusters, no setup needed",
		Long: `Start three in-memory IMAP clusters on loopback ports (alpha, bravo and
charlie), seed realistic mailboxes on them (nested and non-ASCII folders,
attachments, flags, keywords), half of them on bravo, which is degraded and
near its load capacity. Then do what an operator would: build the inventory
(per-mailbox credentials in a 0600 file), plan a drain of bravo, apply it
with the live view under bravo's throttle (it starts at a quarter of its
connection limit because it is degraded), verify every copy by SHA-256,
print the report and the final status.

On the way: bravo, reached through a fault proxy, gets slow for a few
seconds (its throttle's limit drops, then recovers); the second mailbox
moved fails alone, over a quota its target does not announce; mail reaches
the third during its first copy and a delta pass copies it; a cutover hook
script switches each converged mailbox's routing. About 15 seconds at the
default sizes. Sizes that would not fit in memory are refused before
seeding; Ctrl-C or SIGTERM while seeding stops at once. Nothing outside
this process is touched, and the temporary directory holding the
inventory's credentials, the state and the hook is removed at the end.`,
		Example: `  go run ./cmd/mailferry demo
  mailferry demo --mailboxes 100 --parallel 16
  mailferry demo --json | tail -1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.mailboxes < 2 || o.folders < 1 || o.messages < 1 || o.parallel < 1 {
				return usageErrorf("demo: --mailboxes must be at least 2, --folders, --messages and --parallel at least 1")
			}
			maxSize, err := inventory.ParseBytes(o.maxSize)
			if err != nil || maxSize < 4<<10 {
				return usageErrorf("demo: --max-size %q: want a size of at least 4KiB", o.maxSize)
			}
			return runDemo(cmd, g, o, maxSize)
		},
	}
	cmd.Flags().IntVar(&o.mailboxes, "mailboxes", 40, "mailboxes seeded over the three clusters (half of them on the overloaded one)")
	cmd.Flags().IntVar(&o.folders, "folders", 5, "folders per mailbox")
	cmd.Flags().IntVar(&o.messages, "messages", 6, "messages per folder (on average)")
	cmd.Flags().StringVar(&o.maxSize, "max-size", "256KiB", "largest message `SIZE`")
	cmd.Flags().IntVar(&o.parallel, "parallel", 8, "mailboxes moved at once")
	cmd.Flags().Uint64Var(&o.seed, "seed", 1, "corpus seed (same seed, same mailboxes)")
	return cmd
}

// demoMailbox is one seeded mailbox and where it lives.
type demoMailbox struct {
	name     string
	cluster  string
	bytes    int64
	messages int
	load     float64
	corpus   *corpus.Mailbox
}

// The demo's story: the second mailbox moved off bravo fails alone (its
// target account's quota is too small, and the server does not announce
// it), the third receives mail during its first copy (a delta pass
// copies it), and bravo slows down for a while during the drain.
const (
	demoFailing = 1 // index among the mailboxes on bravo
	demoLate    = 2
	// demoLateMessages reach demoLate's mailbox during its first copy.
	demoLateMessages = 3
	// demoLatency is what bravo's replies take longer while it struggles.
	demoLatency = 300 * time.Millisecond
	// demoSeconds is about how long the drain takes at default sizes:
	// bravo's bytes/s limit is set so (bravo's mail in that many seconds).
	demoSeconds = 10
)

func runDemo(cmd *cobra.Command, g *globalOptions, o *demoOptions, maxSize int64) error {
	ctx := cmd.Context()
	stop := stopChan(ctx)
	// Sizes first: a quick estimate from the flags, then every mailbox's
	// corpus (sizes and flags only: the bytes come when seeding), so that
	// what does not fit in memory is refused before anything is seeded.
	if est := demoEstimate(o, maxSize); est > 0 {
		if err := demoFits(g, o, maxSize, est, est/2, false); err != nil {
			return err
		}
	}
	var mbs []demoMailbox
	others := []string{demoClusters[0], demoClusters[2]}
	var seeded, drained int64
	for i := range o.mailboxes {
		m := demoMailbox{name: fmt.Sprintf("user%02d@demo.example", i+1), cluster: demoOverloaded}
		if i >= o.mailboxes/2 {
			m.cluster = others[i%2]
		}
		m.corpus = corpus.Generate(corpus.Options{Seed: o.seed<<20 + uint64(i), Folders: o.folders,
			MessagesPerFolder: o.messages, MaxSize: maxSize})
		m.bytes, m.messages = m.corpus.TotalBytes(), m.corpus.TotalMessages()
		m.load = 0.5 + float64(i*7%11)/10 // 0.5 to 1.5 load units
		seeded += m.bytes
		if m.cluster == demoOverloaded {
			drained += m.bytes
		}
		mbs = append(mbs, m)
	}
	if err := demoFits(g, o, maxSize, seeded, drained, true); err != nil {
		return err
	}

	dir, err := os.MkdirTemp("", "mailferry-demo-")
	if err != nil {
		return fmt.Errorf("demo: temporary directory: %w", err)
	}
	defer os.RemoveAll(dir)
	// A reader that goes away ("demo --json | head") must not kill the
	// process before the directory holding credentials is removed: with
	// SIGPIPE ignored, writes fail with EPIPE instead.
	signal.Ignore(syscall.SIGPIPE)
	defer signal.Reset(syscall.SIGPIPE)

	servers := map[string]*memserver.Server{}
	addrs := map[string]string{}
	for _, name := range demoClusters {
		s, err := memserver.Start()
		if err != nil {
			return fmt.Errorf("demo: start cluster %s: %w", name, err)
		}
		defer s.Close()
		servers[name], addrs[name] = s, s.Addr
	}
	// bravo is reached through a fault proxy, which makes it slow for a
	// while during the drain.
	slow, err := faultproxy.Listen(servers[demoOverloaded].Addr)
	if err != nil {
		return fmt.Errorf("demo: start bravo's proxy: %w", err)
	}
	defer slow.Close()
	addrs[demoOverloaded] = slow.Addr

	// Seed: half of the mailboxes on the overloaded cluster, the rest
	// spread over the other two. Every mailbox gets its own password on
	// every cluster, as a per-mailbox credentials file would hold.
	passwords := map[string]map[string]string{} // cluster -> mailbox -> password
	for _, c := range demoClusters {
		passwords[c] = map[string]string{}
	}
	if !g.json {
		fmt.Fprintf(g.stdout, "demo: seeding %d mailboxes (%s) into three in-process IMAP clusters (Ctrl-C stops)\n",
			len(mbs), inventory.FormatBytes(seeded))
	}
	sources := map[string]*memserver.User{} // mailbox -> its account on its cluster
	for _, m := range mbs {
		for _, c := range demoClusters {
			passwords[c][m.name] = randomPassword()
		}
		u := servers[m.cluster].AddUser(m.name, passwords[m.cluster][m.name])
		sources[m.name] = u
		if err := seedMem(ctx, stop, u, m.corpus); err != nil {
			return fmt.Errorf("demo: seed %s on %s: %w", m.name, m.cluster, err)
		}
	}

	inv, err := demoInventory(dir, addrs, passwords, mbs, drained)
	if err != nil {
		return err
	}
	plan, err := planner.Make(inv, planner.DefaultPolicy(planner.Drain, demoOverloaded))
	if err != nil {
		return fmt.Errorf("demo: plan: %w", err)
	}
	// Provision the target accounts, as an operator would before a move.
	for _, mv := range plan.Moves {
		servers[mv.To].AddUser(mv.Mailbox, passwords[mv.To][mv.Mailbox])
	}
	story := newDemoStory(plan, mbs, sources, slow)
	if story.failing != nil {
		// A quota the target does not announce (no QUOTA extension), so
		// the preflight cannot see it: the move fails alone.
		servers[story.failing.To].SetQuota(story.failing.Mailbox, max(story.failingBytes/3, 1))
	}

	if g.json {
		if err := json.NewEncoder(g.stdout).Encode(planLine{"plan", plan}); err != nil {
			return err
		}
	} else {
		var msgs int64
		on := map[string]int{}
		for _, m := range mbs {
			msgs += int64(m.messages)
			on[m.cluster]++
		}
		fmt.Fprintf(g.stdout, "demo: three in-process IMAP clusters: alpha %s, bravo %s (through a fault proxy), charlie %s\n",
			servers["alpha"].Addr, slow.Addr, servers["charlie"].Addr)
		fmt.Fprintf(g.stdout, "demo: seeded %d mailboxes, %d messages (%s): %d on alpha, %d on bravo, %d on charlie\n",
			len(mbs), msgs, inventory.FormatBytes(seeded), on["alpha"], on["bravo"], on["charlie"])
		fmt.Fprintf(g.stdout, "demo: bravo is degraded and near its load capacity: draining it, at most %s/s off it\n",
			inventory.FormatBytes(inv.Cluster(demoOverloaded).Limits.BytesPerSec))
		story.intro(g.stdout)
		fmt.Fprintln(g.stdout)
		if err := renderPlan(g.stdout, plan); err != nil {
			return err
		}
		fmt.Fprintln(g.stdout)
	}

	hook := filepath.Join(dir, "switch-routing.sh")
	if err := os.WriteFile(hook, []byte(demoHook), 0o700); err != nil {
		return fmt.Errorf("demo: write the cutover hook: %w", err)
	}
	a := &applyFlags{
		state:       filepath.Join(dir, "state.db"),
		parallel:    o.parallel,
		connections: 2,
		verify:      "full",
		// Low, so that each move has a converging pass after its first
		// copy: the pass that catches mail that arrived meanwhile.
		converge:       10,
		cutoverExec:    "/bin/sh " + shellQuote(hook),
		cutoverTimeout: time.Minute,
		report:         filepath.Join(dir, "report.json"),
		hooks:          &runHooks{observe: story.observe, reportTemp: true},
	}
	applyErr := runApply(cmd, g, a, inv, plan, false, nil)
	story.wait()
	if errors.Is(applyErr, migrate.ErrInterrupted) || ctx.Err() != nil {
		return applyErr
	}
	data, err := os.ReadFile(a.report)
	if err != nil {
		if applyErr != nil {
			return applyErr
		}
		return fmt.Errorf("demo: read the report: %w", err)
	}
	var rep migrate.ApplyReport
	if err := json.Unmarshal(data, &rep); err != nil {
		return fmt.Errorf("demo: read the report: %w", err)
	}
	if !story.asExpected(&rep) {
		return applyErr // not the story told: say what happened
	}
	if g.json {
		return nil
	}
	story.outro(g.stdout, &rep, dir)
	fmt.Fprintf(g.stdout, "\ndemo: mailferry status --state %s\n", a.state)
	st := newStatusCommand(g)
	st.SetArgs([]string{"--state", a.state})
	st.SetOut(g.stdout)
	st.SetErr(g.stderr)
	st.SilenceUsage, st.SilenceErrors = true, true
	return st.ExecuteContext(ctx)
}

// demoHook is the demo's cutover hook (--cutover-exec): where a real one
// switches the mailbox's mail routing (MX, LMTP, a proxy's table), it
// writes the new route into a routing table next to it.
const demoHook = `#!/bin/sh
# mailferry demo cutover hook: route $MAILFERRY_MAILBOX's mail to $MAILFERRY_TO.
echo "$MAILFERRY_MAILBOX $MAILFERRY_TO" >> "$(dirname "$0")/routes"
echo "mail for $MAILFERRY_MAILBOX now goes to $MAILFERRY_TO (was $MAILFERRY_FROM)"
`

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// demoFits refuses sizes whose clusters would not fit in this process's
// memory (the seeded mail, and the copies of bravo's on the targets), and
// warns when seeding takes a while.
func demoFits(g *globalOptions, o *demoOptions, maxSize, seeded, drained int64, warn bool) error {
	need := seeded + drained
	avail, ok := availableMemory()
	if !ok {
		avail = 4 << 30
	}
	if need > avail/2 {
		return usageErrorf("demo: --mailboxes %d, --folders %d, --messages %d, --max-size %s seed %s and copy %s of it, "+
			"all held in this process's memory: more than half of the %s available; choose fewer or smaller messages",
			o.mailboxes, o.folders, o.messages, inventory.FormatBytes(maxSize), inventory.FormatBytes(seeded),
			inventory.FormatBytes(drained), inventory.FormatBytes(avail))
	}
	if warn && need > 512<<20 {
		fmt.Fprintf(g.stderr, "mailferry: demo: warning: %s of mail to seed and %s to copy, held in memory: this takes a while\n",
			inventory.FormatBytes(seeded), inventory.FormatBytes(drained))
	}
	return nil
}

// demoEstimate is about how many bytes the flags seed: mailboxes ×
// folders × messages × the mean message size (corpus sizes are spread
// log-uniformly from 1 KiB to --max-size). Overflow counts as too much.
func demoEstimate(o *demoOptions, maxSize int64) int64 {
	const minSize = 1 << 10
	mean := float64(maxSize)
	if maxSize > minSize {
		mean = float64(maxSize-minSize) / math.Log(float64(maxSize)/minSize)
	}
	est := float64(o.mailboxes) * float64(o.folders) * float64(o.messages) * mean
	if est > math.MaxInt64/4 {
		return math.MaxInt64 / 4
	}
	return int64(est)
}

// availableMemory reads MemAvailable from /proc/meminfo (Linux).
func availableMemory() (int64, bool) {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb); err == nil && kb > 0 {
				return kb << 10, true
			}
		}
	}
	return 0, false
}

// demoStory plays the demo's events during the drain and tells them.
type demoStory struct {
	failing, late *planner.Move
	failingBytes  int64
	lateUser      *memserver.User
	slow          *faultproxy.Proxy
	slowFrom      time.Duration // after the drain's start
	slowFor       time.Duration

	once       sync.Once
	stopSlow   chan struct{}
	wg         sync.WaitGroup
	mu         sync.Mutex
	slowed     bool   // bravo's slow spell began
	latePhase  string // the late mailbox's phase
	delivered  int    // messages delivered to it during its first copy
	lateErr    error
	caught     map[string]int // its messages copied after its first pass, by phase
	deliverer  sync.Once
	delivering atomic.Bool   // the late mail is on its way
	lateDone   chan struct{} // closed once it is there
}

func newDemoStory(plan *planner.Plan, mbs []demoMailbox, sources map[string]*memserver.User, slow *faultproxy.Proxy) *demoStory {
	s := &demoStory{slow: slow, stopSlow: make(chan struct{}), caught: map[string]int{}, lateDone: make(chan struct{})}
	bytes := map[string]int64{}
	var drained int64
	for _, m := range mbs {
		bytes[m.name] = m.bytes
		if m.cluster == demoOverloaded {
			drained += m.bytes
		}
	}
	for i := range plan.Moves {
		switch i {
		case demoFailing:
			s.failing, s.failingBytes = &plan.Moves[i], bytes[plan.Moves[i].Mailbox]
		case demoLate:
			s.late, s.lateUser = &plan.Moves[i], sources[plan.Moves[i].Mailbox]
		}
	}
	// bravo slows down from a fifth of the drain's expected time, for a
	// third of it; then it recovers.
	expected := time.Duration(demoSeconds) * time.Second
	s.slowFrom, s.slowFor = expected/5, expected/3
	return s
}

func (s *demoStory) intro(w io.Writer) {
	fmt.Fprintf(w, "demo: bravo will slow down during the drain (%v more on every reply): watch its throttle's limit drop and recover\n", demoLatency)
	if s.failing != nil {
		fmt.Fprintf(w, "demo: %s's account on %s has a quota of a third of its mail, which the server does not announce: its move will fail alone\n",
			s.failing.Mailbox, s.failing.To)
	}
	if s.late != nil {
		fmt.Fprintf(w, "demo: %d messages will reach %s on bravo during its first copy: a delta pass catches them\n",
			demoLateMessages, s.late.Mailbox)
	}
	fmt.Fprintf(w, "demo: the cutover hook (--cutover-exec switch-routing.sh) switches each mailbox's routing once it has converged\n")
}

// observe follows the drain (runHooks.observe): it starts bravo's slow
// spell with the first move and delivers the late mail.
func (s *demoStory) observe(e migrate.Event, say func(format string, args ...any)) {
	s.once.Do(func() {
		s.wg.Add(1)
		go s.slowSpell(say)
	})
	if s.late == nil || e.Mailbox != s.late.Mailbox {
		return
	}
	if e.Kind == migrate.EventMovePhase && e.Text != migrate.PhaseCopying && s.delivering.Load() {
		// The next pass waits for the late mail to be there (it is
		// delivered aside: see below).
		select {
		case <-s.lateDone:
		case <-time.After(10 * time.Second):
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch e.Kind {
	case migrate.EventMovePhase:
		s.latePhase = e.Text
	case migrate.EventMessageCopied:
		if s.latePhase != migrate.PhaseCopying {
			s.caught[s.latePhase] += e.Messages
			return
		}
		// The folder of this message was listed by the first pass: mail
		// arriving in it now is for the next pass. Delivered aside: this
		// runs on the copy's goroutines.
		s.deliverer.Do(func() {
			s.delivering.Store(true)
			s.wg.Add(1)
			go s.deliver(e.Folder, say)
		})
	}
}

// deliver appends the late messages to the late mailbox's folder on bravo.
func (s *demoStory) deliver(folder string, say func(format string, args ...any)) {
	defer s.wg.Done()
	defer close(s.lateDone)
	late := corpus.Generate(corpus.Options{Seed: 4242, Folders: 1, MessagesPerFolder: 2 * demoLateMessages, MaxSize: 16 << 10})
	n := 0
	var err error
	for _, msg := range late.Folders[0].Messages {
		if _, err = s.lateUser.Append(folder, sized{msg.Open(), msg.Size}, &imap.AppendOptions{Time: msg.Date}); err != nil {
			break
		}
		if n++; n == demoLateMessages {
			break
		}
	}
	s.mu.Lock()
	s.delivered, s.lateErr = n, err
	s.mu.Unlock()
	say("demo: %d new messages reached %s in %q on bravo during its first copy", n, s.late.Mailbox, folder)
}

// slowSpell makes bravo slow for a while, then well again.
func (s *demoStory) slowSpell(say func(format string, args ...any)) {
	defer s.wg.Done()
	select {
	case <-time.After(s.slowFrom):
	case <-s.stopSlow:
		return
	}
	s.mu.Lock()
	s.slowed = true
	s.mu.Unlock()
	s.slow.SetLatency(demoLatency)
	say("demo: bravo slows down: every reply now takes %v longer", demoLatency)
	select {
	case <-time.After(s.slowFor):
	case <-s.stopSlow:
	}
	s.slow.SetLatency(0)
	say("demo: bravo recovers: its replies are fast again")
}

// wait ends the story's goroutines once the drain is over.
func (s *demoStory) wait() {
	close(s.stopSlow)
	s.wg.Wait()
}

// asExpected reports whether the drain went as told: every move done
// but the failing one, which failed.
func (s *demoStory) asExpected(rep *migrate.ApplyReport) bool {
	for _, m := range rep.Moves {
		want := migrate.ResultDone
		if s.failing != nil && m.Mailbox == s.failing.Mailbox {
			want = migrate.ResultFailed
		}
		if m.Result != want {
			return false
		}
	}
	return true
}

// outro tells what the drain showed.
func (s *demoStory) outro(w io.Writer, rep *migrate.ApplyReport, dir string) {
	t := rep.Totals
	fmt.Fprintf(w, "\ndemo: %d of %d mailboxes moved off %s, %d messages copied and verified by SHA-256 on their targets in %.1fs\n",
		t.Done, t.Moves, demoOverloaded, t.Verified, rep.Seconds)
	for _, m := range rep.Moves {
		if s.failing != nil && m.Mailbox == s.failing.Mailbox {
			fmt.Fprintf(w, "demo: %s failed alone, the others went on: %s\n", m.Mailbox, oneLine(m.Reason))
		}
	}
	s.mu.Lock()
	switch {
	case s.late == nil:
	case s.lateErr != nil:
		fmt.Fprintf(w, "demo: delivering to %s failed: %v\n", s.late.Mailbox, s.lateErr)
	case s.delivered == 0:
		fmt.Fprintf(w, "demo: %s's first copy ended before mail could reach it\n", s.late.Mailbox)
	case len(s.caught) == 0:
		fmt.Fprintf(w, "demo: %d messages reached %s during its first copy, and no pass after it copied anything\n", s.delivered, s.late.Mailbox)
	default:
		var passes []string
		for _, p := range []string{migrate.PhaseConverging, migrate.PhaseReady, migrate.PhaseFinal} {
			if n := s.caught[p]; n > 0 {
				passes = append(passes, fmt.Sprintf("the %s pass copied %d", p, n))
			}
		}
		fmt.Fprintf(w, "demo: %d messages reached %s during its first copy: caught by a delta pass (%s)\n",
			s.delivered, s.late.Mailbox, strings.Join(passes, ", "))
	}
	slowed := s.slowed
	s.mu.Unlock()
	for _, st := range rep.Throttle {
		switch {
		case st.Name != demoOverloaded:
		case slowed:
			fmt.Fprintf(w, "demo: bravo's throttle: started at %d of %d commands in flight (degraded), %d decreases while it was slow, %d increases, %d at the end\n",
				max(1, st.Cap/4), st.Cap, st.Decreases, st.Increases, st.Limit)
		default:
			fmt.Fprintf(w, "demo: the drain was over before bravo's slow spell (larger sizes show its throttle at work)\n")
		}
	}
	if routes, err := os.ReadFile(filepath.Join(dir, "routes")); err == nil {
		fmt.Fprintf(w, "demo: the cutover hook routed %d mailboxes to their new clusters\n", strings.Count(string(routes), "\n"))
	}
}

// demoInventory writes one credentials file per cluster (0600, in dir) and
// returns the inventory of the demo's clusters: bravo degraded with its
// load at 95% of capacity, alpha and charlie with room for it.
func demoInventory(dir string, addrs map[string]string, passwords map[string]map[string]string, mbs []demoMailbox, drained int64) (*inventory.Inventory, error) {
	var totalLoad, overLoad float64
	var totalBytes, overBytes int64
	for _, m := range mbs {
		totalLoad += m.load
		totalBytes += m.bytes
		if m.cluster == demoOverloaded {
			overLoad += m.load
			overBytes += m.bytes
		}
	}
	var y strings.Builder
	y.WriteString("version: 1\nclusters:\n")
	for _, c := range demoClusters {
		var creds strings.Builder
		creds.WriteString("# mailbox,login,password\n")
		for _, m := range mbs {
			fmt.Fprintf(&creds, "%s,%s,%s\n", m.name, m.name, passwords[c][m.name])
		}
		file := filepath.Join(dir, c+"-credentials.csv")
		if err := os.WriteFile(file, []byte(creds.String()), 0o600); err != nil {
			return nil, fmt.Errorf("demo: write credentials: %w", err)
		}
		capLoad, capBytes, health, limits := totalLoad, 2*totalBytes, inventory.Healthy, "connections: 16"
		if c == demoOverloaded {
			// Spared: a few connections, and about demoSeconds of drain.
			capLoad, capBytes, health = overLoad/0.95, overBytes*3/2, inventory.Degraded
			limits = fmt.Sprintf("connections: 8, bytes_per_sec: %d", max(drained/demoSeconds, 256<<10))
		}
		fmt.Fprintf(&y, "  - name: %s\n    url: imap://%s\n    tls: none\n", c, addrs[c])
		fmt.Fprintf(&y, "    auth: {method: credentials-file, credentials_file: %q}\n", file)
		fmt.Fprintf(&y, "    capacity: {bytes: %d, load: %.3f}\n    limits: {%s}\n    health: %s\n",
			capBytes, capLoad, limits, health)
	}
	y.WriteString("mailboxes:\n")
	for _, m := range mbs {
		fmt.Fprintf(&y, "  - {name: %q, cluster: %s, bytes: %d, messages: %d, load: %.1f}\n",
			m.name, m.cluster, m.bytes, m.messages, m.load)
	}
	inv, err := inventory.Parse("demo inventory", []byte(y.String()))
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	return inv, nil
}

// randomPassword returns a fresh password for a demo account.
func randomPassword() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// memUser is what seeding needs of an in-memory account.
type memUser interface {
	Create(name string, options *imap.CreateOptions) error
	Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error)
	Subscribe(name string) error
}

// seedMem writes a generated mailbox into an in-memory account (delimiter
// "/").
func seedMem(ctx context.Context, stop <-chan struct{}, u memUser, m *corpus.Mailbox) error {
	for _, f := range m.Folders {
		name := strings.Join(f.Path, "/")
		if !strings.EqualFold(name, "INBOX") {
			if err := u.Create(name, nil); err != nil {
				return fmt.Errorf("create %q: %w", name, err)
			}
		}
		if f.Subscribed {
			if err := u.Subscribe(name); err != nil {
				return fmt.Errorf("subscribe %q: %w", name, err)
			}
		}
		for _, msg := range f.Messages {
			if err := seedStopped(ctx, stop); err != nil {
				return err
			}
			flags := make([]imap.Flag, len(msg.Flags))
			for i, fl := range msg.Flags {
				flags[i] = imap.Flag(fl)
			}
			if _, err := u.Append(name, sized{msg.Open(), msg.Size}, &imap.AppendOptions{Flags: flags, Time: msg.Date}); err != nil {
				return fmt.Errorf("append to %q: %w", name, err)
			}
		}
	}
	return nil
}

// seedStopped says whether seeding is to stop: a Ctrl-C or SIGTERM (the
// first one: nothing is in flight worth finishing), or the context ended.
func seedStopped(ctx context.Context, stop <-chan struct{}) error {
	select {
	case <-stop:
		return fmt.Errorf("seeding %w: nothing was moved", migrate.ErrInterrupted)
	case <-ctx.Done():
		return ctx.Err()
	default:
		return nil
	}
}

type sized struct {
	io.Reader
	n int64
}

func (s sized) Size() int64 { return s.n }
