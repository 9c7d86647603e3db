package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/spf13/cobra"

	"mailferry/internal/testrig/corpus"
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
with live progress under bravo's throttle (it starts at a quarter of its
connection limit because it is degraded), verify every copy by SHA-256, and
print the report. Nothing outside this process is touched, and the
temporary directory holding the inventory's credentials and the state is
removed at the end.`,
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
}

func runDemo(cmd *cobra.Command, g *globalOptions, o *demoOptions, maxSize int64) error {
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
	for _, name := range demoClusters {
		s, err := memserver.Start()
		if err != nil {
			return fmt.Errorf("demo: start cluster %s: %w", name, err)
		}
		defer s.Close()
		servers[name] = s
	}

	// Seed: half of the mailboxes on the overloaded cluster, the rest
	// spread over the other two. Every mailbox gets its own password on
	// every cluster, as a per-mailbox credentials file would hold.
	passwords := map[string]map[string]string{} // cluster -> mailbox -> password
	for _, c := range demoClusters {
		passwords[c] = map[string]string{}
	}
	var mbs []demoMailbox
	others := []string{demoClusters[0], demoClusters[2]}
	for i := range o.mailboxes {
		m := demoMailbox{name: fmt.Sprintf("user%02d@demo.example", i+1), cluster: demoOverloaded}
		if i >= o.mailboxes/2 {
			m.cluster = others[i%2]
		}
		for _, c := range demoClusters {
			passwords[c][m.name] = randomPassword()
		}
		gen := corpus.Generate(corpus.Options{Seed: o.seed<<20 + uint64(i), Folders: o.folders,
			MessagesPerFolder: o.messages, MaxSize: maxSize})
		if err := seedMem(servers[m.cluster].AddUser(m.name, passwords[m.cluster][m.name]), gen); err != nil {
			return fmt.Errorf("demo: seed %s on %s: %w", m.name, m.cluster, err)
		}
		m.bytes, m.messages = gen.TotalBytes(), gen.TotalMessages()
		m.load = 0.5 + float64(i*7%11)/10 // 0.5 to 1.5 load units
		mbs = append(mbs, m)
	}

	inv, err := demoInventory(dir, servers, passwords, mbs)
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

	if g.json {
		if err := json.NewEncoder(g.stdout).Encode(planLine{"plan", plan}); err != nil {
			return err
		}
	} else {
		var msgs, bytes int64
		on := map[string]int{}
		for _, m := range mbs {
			msgs += int64(m.messages)
			bytes += m.bytes
			on[m.cluster]++
		}
		fmt.Fprintf(g.stdout, "demo: three in-process IMAP clusters: alpha %s, bravo %s, charlie %s\n",
			servers["alpha"].Addr, servers["bravo"].Addr, servers["charlie"].Addr)
		fmt.Fprintf(g.stdout, "demo: seeded %d mailboxes, %d messages (%s): %d on alpha, %d on bravo, %d on charlie\n",
			len(mbs), msgs, humanBytes(bytes), on["alpha"], on["bravo"], on["charlie"])
		fmt.Fprintf(g.stdout, "demo: bravo is degraded and near its load capacity: draining it\n\n")
		if err := renderPlan(g.stdout, plan); err != nil {
			return err
		}
		fmt.Fprintln(g.stdout)
	}

	a := &applyFlags{
		state:          filepath.Join(dir, "state.db"),
		parallel:       o.parallel,
		connections:    2,
		verify:         "full",
		converge:       50,
		cutoverTimeout: time.Minute,
		report:         filepath.Join(dir, "report.json"),
		// No mail reaches the demo's servers but what it seeded: routing
		// counts as switched (a real drain runs --cutover-exec).
		routed: true,
	}
	if err := runApply(cmd, g, a, inv, plan, false, nil); err != nil {
		return err
	}
	if !g.json {
		data, err := os.ReadFile(a.report)
		if err != nil {
			return fmt.Errorf("demo: read the report: %w", err)
		}
		var rep migrate.ApplyReport
		if err := json.Unmarshal(data, &rep); err != nil {
			return fmt.Errorf("demo: read the report: %w", err)
		}
		t := rep.Totals
		fmt.Fprintf(g.stdout, "\ndemo: %d of %d mailboxes moved off %s, %d messages (%s) copied and verified by SHA-256 on their targets in %.1fs\n",
			t.Done, len(plan.Moves), demoOverloaded, t.Verified, humanBytes(t.Bytes), rep.Seconds)
	}
	return nil
}

// demoInventory writes one credentials file per cluster (0600, in dir) and
// returns the inventory of the demo's clusters: bravo degraded with its
// load at 95% of capacity, alpha and charlie with room for it.
func demoInventory(dir string, servers map[string]*memserver.Server, passwords map[string]map[string]string, mbs []demoMailbox) (*inventory.Inventory, error) {
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
		capLoad, capBytes, health, conns := totalLoad, 2*totalBytes, inventory.Healthy, 16
		if c == demoOverloaded {
			capLoad, capBytes, health, conns = overLoad/0.95, overBytes*3/2, inventory.Degraded, 8
		}
		fmt.Fprintf(&y, "  - name: %s\n    url: imap://%s\n    tls: none\n", c, servers[c].Addr)
		fmt.Fprintf(&y, "    auth: {method: credentials-file, credentials_file: %q}\n", file)
		fmt.Fprintf(&y, "    capacity: {bytes: %d, load: %.3f}\n    limits: {connections: %d}\n    health: %s\n",
			capBytes, capLoad, conns, health)
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
func seedMem(u memUser, m *corpus.Mailbox) error {
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

type sized struct {
	io.Reader
	n int64
}

func (s sized) Size() int64 { return s.n }
