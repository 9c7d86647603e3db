package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"mailferry/internal/testrig/corpus"
	"mailferry/internal/testrig/dovecot"
	"mailferry/migrate"
)

// The realistic bench (-corpus realistic): a fleet of mailboxes shaped like
// real mail (corpus.GenerateRealistic), copied in three modes by mailferry
// and, in the same rounds and on the same source, by mbsync and by doveadm
// backup over imapc, each run into a fresh, empty target server.
//
//	single   one mailbox alone: mailferry migrate, mbsync, doveadm backup
//	migrate  every mailbox, one `mailferry migrate` process per mailbox, K at a time
//	apply    every mailbox, one `mailferry apply --parallel K` over an inventory and a plan
//
// The peers of migrate and apply are the same runs: one mbsync and one
// doveadm process per mailbox, K at a time.

// Modes and peers of the realistic bench.
const (
	modeSingle  = "single"
	modeMigrate = "migrate"
	modeApply   = "apply"
	peerMbsync  = "mbsync"
	peerDoveadm = "doveadm"

	groupSingle = "single" // one mailbox
	groupFleet  = "fleet"  // every mailbox, K at a time
)

// entry is one thing a round measures: a tool copying in a group.
type entry struct {
	Group string `json:"group"` // groupSingle or groupFleet
	Tool  string `json:"tool"`  // "mailferry migrate", "mailferry apply", "mbsync", "doveadm backup"
}

func (e entry) mailferry() bool { return strings.HasPrefix(e.Tool, "mailferry") }

// fleetRun is one measured run of one entry.
type fleetRun struct {
	Round       int     `json:"round"`
	Position    int     `json:"position"` // 0: ran first in its round
	WallSeconds float64 `json:"wall_seconds"`
	// ToolCPU is the user+system time of the tool's processes, their own
	// children included (rusage at wait).
	ToolCPU float64 `json:"tool_cpu_seconds"`
	// SourceCPU and TargetCPU are the Dovecot servers' CPU time during the
	// run (every process of their process groups, reaped ones included).
	SourceCPU float64 `json:"source_dovecot_cpu_seconds"`
	TargetCPU float64 `json:"target_dovecot_cpu_seconds"`
	// MachineCPU is the machine's busy time (/proc/stat, all CPUs) during
	// the run: the tool, both Dovecots, and whatever else ran.
	MachineCPU float64 `json:"machine_cpu_seconds"`
	// PeakRSSKiB is the largest peak resident set of the tool's
	// processes (ru_maxrss); Processes how many it ran.
	PeakRSSKiB int64 `json:"peak_rss_kib"`
	Processes  int   `json:"processes"`
	// Differences counts corpus.Compare's lines over every copied
	// mailbox; Describe explains the first mailbox that differs.
	Differences int      `json:"differences"`
	Differing   int      `json:"mailboxes_differing"`
	Describe    []string `json:"describe,omitempty"`
	Notes       []string `json:"notes,omitempty"`
	Sample      []string `json:"sample,omitempty"`
	Stderr      string   `json:"stderr,omitempty"`
}

// fleetSummary is an entry's medians over the rounds.
type fleetSummary struct {
	entry
	Runs              []fleetRun `json:"runs"`
	Messages          int        `json:"messages"`
	MB                float64    `json:"mb"`
	WallSeconds       float64    `json:"wall_seconds"`
	MessagesPerSecond float64    `json:"messages_per_second"`
	MBPerSecond       float64    `json:"mb_per_second"`
	// CPU seconds per 1,000 messages: the tool's own; the tool's and both
	// Dovecots'; the machine's (busy time over the run).
	ToolCPUPer1k    float64 `json:"tool_cpu_seconds_per_1000_messages"`
	ServersCPUPer1k float64 `json:"tool_and_dovecot_cpu_seconds_per_1000_messages"`
	MachineCPUPer1k float64 `json:"machine_cpu_seconds_per_1000_messages"`
	// The Dovecots' part of ServersCPUPer1k.
	SourceCPUPer1k float64 `json:"source_dovecot_cpu_seconds_per_1000_messages"`
	TargetCPUPer1k float64 `json:"target_dovecot_cpu_seconds_per_1000_messages"`
	// OtherCPUPer1k is the machine's busy time beyond the tool's and the
	// Dovecots': other work on the machine (and the kernel's share not
	// charged to a process). Large values mean a noisy machine.
	OtherCPUPer1k float64 `json:"other_cpu_seconds_per_1000_messages"`
	PeakRSSMiB    float64 `json:"peak_rss_mib"`
	Exact         bool    `json:"exact"` // every run
	// Ratios of this entry's medians over a peer's in the same group:
	// "mbsync" and "doveadm backup" -> metric -> ratio.
	Ratios map[string]map[string]float64 `json:"ratios,omitempty"`
}

type realisticCorpus struct {
	Seed        uint64  `json:"seed"`
	Mailboxes   int     `json:"mailboxes"`
	Folders     int     `json:"folders_per_mailbox"`
	Messages    int     `json:"messages"`
	Bytes       int64   `json:"bytes"` // as the source serves them
	MB          float64 `json:"mb"`
	MedianBytes int64   `json:"median_message_bytes"`
	MeanBytes   float64 `json:"mean_message_bytes"`
	Attachments int     `json:"messages_of_100kb_or_more"`
	SeedSeconds float64 `json:"seed_seconds"`
	// The single group copies the first mailbox.
	SingleMessages int     `json:"single_mailbox_messages"`
	SingleMB       float64 `json:"single_mailbox_mb"`
}

type realisticResults struct {
	Machine machine         `json:"machine"`
	Corpus  realisticCorpus `json:"corpus"`
	Config  struct {
		Rounds      int      `json:"rounds"`
		Parallel    int      `json:"parallel"`
		Modes       []string `json:"modes"`
		Peers       []string `json:"peers"`
		Verify      string   `json:"mailferry_verify"`
		Connections string   `json:"mailferry_connections"`
		Doveadm     string   `json:"doveadm_command"`
		DoveadmConf string   `json:"doveadm_config"` // password masked
		RSS         string   `json:"peak_rss_measured_by"`
		Storage     string   `json:"target_storage"`
	} `json:"config"`
	Entries       []*fleetSummary `json:"entries"`
	SourceChanged []string        `json:"source_changed,omitempty"`
	TotalSeconds  float64         `json:"total_seconds"`
}

// fleet is the source side of a realistic bench: the mailboxes as seeded.
type fleet struct {
	names []string
	users map[string]string
	src   *dovecot.Server
	base  map[string]*corpus.Snapshot
	count map[string]int // messages per mailbox
	bytes map[string]int64
	// storage of the target Dovecots (options.storage).
	storage string
}

func (f *fleet) opts(name string) dovecot.Options {
	o := dovecot.Options{Name: name, Separator: "/", Users: f.users, MasterUser: "ferry", MasterPassword: "master-" + name}
	if f.storage == "mdbox" {
		o.Extra = []string{"mail_location = mdbox:~/mdbox"}
	}
	return o
}

func runRealistic(t *env, o options) *realisticResults {
	started := time.Now()
	res := &realisticResults{}
	tb := setupTools(t)
	res.Machine = tb.machine
	doveadmBin, err := exec.LookPath("doveadm")
	if slices.Contains(o.peers, peerDoveadm) && err != nil {
		t.Fatalf("doveadm is not installed (it comes with Dovecot): %v", err)
	}
	res.Config.Rounds, res.Config.Parallel, res.Config.Verify = o.rounds, o.parallel, o.verify
	res.Config.Modes, res.Config.Peers = o.modes, o.peers
	res.Config.Storage = o.storage
	res.Config.RSS = rssSource()
	res.Config.Connections = "tool defaults (migrate 4, apply 2)"
	if o.connections > 0 {
		res.Config.Connections = strconv.Itoa(o.connections)
	}

	// The source: every mailbox, seeded two at a time.
	f := &fleet{users: map[string]string{}, base: map[string]*corpus.Snapshot{}, count: map[string]int{}, bytes: map[string]int64{}, storage: o.storage}
	for i := range o.mailboxes {
		n := fmt.Sprintf("user%03d", i)
		f.users[n] = fmt.Sprintf("pw-%d-%d", i, o.seed)
		f.names = append(f.names, n)
	}
	f.src = dovecot.Start(t, dovecot.Options{Name: "src", Separator: ".", Users: f.users, MasterUser: "ferry", MasterPassword: "master-src"})
	c := &res.Corpus
	c.Seed, c.Mailboxes = o.seed, o.mailboxes
	t.Logf("realistic corpus: seeding %d mailboxes of %d messages", o.mailboxes, o.messages)
	seedStart := time.Now()
	var mu sync.Mutex
	forEach(2, f.names, func(i int, n string) {
		m := corpus.GenerateRealistic(corpus.RealisticOptions{Seed: o.seed*1_000_003 + uint64(i), Messages: o.messages})
		corpus.Seed(t, f.src.Addr, n, f.users[n], m)
		snap := corpus.TakeSnapshot(t, f.src.Addr, n, f.users[n])
		mu.Lock()
		defer mu.Unlock()
		f.base[n] = snap
		c.Folders = len(m.Folders)
	})
	c.SeedSeconds = time.Since(seedStart).Seconds()
	var sizes []int64
	for _, n := range f.names {
		for _, fs := range f.base[n].Folders {
			for _, m := range fs.Messages {
				sizes = append(sizes, m.Size)
				f.count[n]++
				f.bytes[n] += m.Size
				if m.Size >= 100_000 {
					c.Attachments++
				}
			}
		}
		c.Messages += f.count[n]
		c.Bytes += f.bytes[n]
	}
	slices.Sort(sizes)
	if len(sizes) > 0 {
		c.MedianBytes = sizes[len(sizes)/2]
		c.MeanBytes = float64(c.Bytes) / float64(len(sizes))
	}
	c.MB = float64(c.Bytes) / 1e6
	c.SingleMessages, c.SingleMB = f.count[f.names[0]], float64(f.bytes[f.names[0]])/1e6
	t.Logf("seeded in %.1fs: %d messages, %.1f MB as served (median %d bytes, mean %.0f, %d of 100 KB or more)",
		c.SeedSeconds, c.Messages, c.MB, c.MedianBytes, c.MeanBytes, c.Attachments)

	var entries []entry
	if slices.Contains(o.modes, modeSingle) {
		entries = append(entries, entry{groupSingle, "mailferry migrate"})
		for _, p := range o.peers {
			entries = append(entries, entry{groupSingle, peerTool(p)})
		}
	}
	fleetMode := false
	for _, m := range []string{modeMigrate, modeApply} {
		if slices.Contains(o.modes, m) {
			entries = append(entries, entry{groupFleet, "mailferry " + m})
			fleetMode = true
		}
	}
	if fleetMode {
		for _, p := range o.peers {
			entries = append(entries, entry{groupFleet, peerTool(p)})
		}
	}

	runs := map[entry][]fleetRun{}
	for round := 1; round <= o.rounds; round++ {
		// Rotate the order, so that no tool always runs first or last.
		order := slices.Clone(entries)
		if k := (round - 1) % len(order); k > 0 {
			order = append(order[k:], order[:k]...)
		}
		if round%2 == 0 {
			slices.Reverse(order)
		}
		for pos, e := range order {
			r := f.runEntry(t, o, tb, doveadmBin, e, round, res)
			r.Position = pos
			runs[e] = append(runs[e], r)
		}
		// The source must not change (no \Seen set, nothing removed).
		var changed []string
		forEach(2, f.names, func(_ int, n string) {
			now := corpus.TakeSnapshot(t, f.src.Addr, n, f.users[n])
			if d := corpus.CompareFlags(f.base[n], now); len(d) > 0 {
				mu.Lock()
				changed = append(changed, fmt.Sprintf("round %d: %s: %d changes, e.g. %s", round, n, len(d), d[0]))
				f.base[n] = now
				mu.Unlock()
			}
		})
		slices.Sort(changed)
		for _, l := range changed {
			t.Logf("SOURCE CHANGED: %s", l)
		}
		res.SourceChanged = append(res.SourceChanged, changed...)
	}

	for _, e := range entries {
		res.Entries = append(res.Entries, summarizeFleet(e, runs[e], res.Corpus))
	}
	for _, s := range res.Entries {
		if !s.mailferry() {
			continue
		}
		s.Ratios = map[string]map[string]float64{}
		for _, p := range res.Entries {
			if p.Group != s.Group || p.mailferry() {
				continue
			}
			s.Ratios[p.Tool] = map[string]float64{
				"messages_per_second":                            ratio(s.MessagesPerSecond, p.MessagesPerSecond),
				"tool_cpu_seconds_per_1000_messages":             ratio(s.ToolCPUPer1k, p.ToolCPUPer1k),
				"tool_and_dovecot_cpu_seconds_per_1000_messages": ratio(s.ServersCPUPer1k, p.ServersCPUPer1k),
				"machine_cpu_seconds_per_1000_messages":          ratio(s.MachineCPUPer1k, p.MachineCPUPer1k),
				"peak_rss":                                       ratio(s.PeakRSSMiB, p.PeakRSSMiB),
			}
		}
	}
	res.TotalSeconds = time.Since(started).Seconds()
	return res
}

func peerTool(p string) string {
	if p == peerDoveadm {
		return "doveadm backup"
	}
	return p
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// forEach calls f for every name, k at a time, and waits.
func forEach(k int, names []string, f func(i int, name string)) {
	var wg sync.WaitGroup
	jobs := make(chan int)
	for range max(k, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				f(i, names[i])
			}
		}()
	}
	for i := range names {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
}

// procs is what a group of tool processes cost together.
type procs struct {
	cpu      time.Duration // sum of user+sys
	maxRSS   int64         // largest ru_maxrss, KiB
	n        int
	failures []string
	stderr   []byte // of the first failure
}

func (p *procs) add(u string, m measurement, err error) {
	p.cpu += m.User + m.Sys
	p.maxRSS = max(p.maxRSS, m.MaxRSSKiB)
	p.n++
	if err == nil && m.ExitCode != 0 {
		err = fmt.Errorf("exit code %d", m.ExitCode)
	}
	if err != nil {
		p.failures = append(p.failures, fmt.Sprintf("%s: %v", u, err))
		if p.stderr == nil {
			p.stderr = m.Stderr
		}
	}
}

// runEntry copies e's mailboxes into a fresh target, measures the copy and
// checks the target against the source.
func (f *fleet) runEntry(t *env, o options, tb tools, doveadmBin string, e entry, round int, res *realisticResults) fleetRun {
	s := t.scope()
	defer s.close()
	names := f.names
	k := o.parallel
	if e.Group == groupSingle {
		names, k = f.names[:1], 1
	}
	dst := dovecot.Start(s, f.opts(fmt.Sprintf("dst-%d-%s", round, strings.ReplaceAll(e.Tool, " ", "-"))))
	dir := s.TempDir()
	t.Logf("round %d: %s: %s copying %d mailbox(es), %d at a time, into a fresh target", round, e.Group, e.Tool, len(names), k)

	// Per-run setup, outside the measured time.
	var doveadmConf string
	if e.Tool == "doveadm backup" {
		doveadmConf = f.writeDoveadmConfig(s, dst, dir)
		if res.Config.DoveadmConf == "" {
			data, _ := os.ReadFile(doveadmConf)
			res.Config.DoveadmConf = strings.ReplaceAll(string(data), f.src.MasterPassword, "********")
			res.Config.Doveadm = "doveadm -c DOVEADM.conf backup -R -u USER imapc:"
		}
	}
	var plan, inv string
	if e.Tool == "mailferry apply" {
		plan, inv = planDrain(s, o, tb.mailferry, f.src, dst, dir)
	}

	src0, err1 := serverCPU(f.src)
	dst0, err2 := serverCPU(dst)
	mach0, err3 := machineBusy()
	if err1 != nil || err2 != nil || err3 != nil {
		t.Fatalf("CPU time: %v %v %v", err1, err2, err3)
	}
	var p procs
	var mu sync.Mutex
	start := time.Now()
	switch e.Tool {
	case "mailferry apply":
		m, rep, err := runApply(tb.mailferry, o, plan, inv, dir)
		p.add("apply", m, err)
		if err == nil && m.ExitCode == 0 && (rep.Totals.Done != len(names) || o.verify != "none" && rep.Totals.Verified != rep.Totals.Messages) {
			p.failures = append(p.failures, fmt.Sprintf("apply: %d of %d moves done, %d of %d messages verified",
				rep.Totals.Done, len(names), rep.Totals.Verified, rep.Totals.Messages))
		}
	default:
		forEach(k, names, func(_ int, u string) {
			var m measurement
			var err error
			switch e.Tool {
			case "mailferry migrate":
				var rep *migrate.Report
				m, rep, err = runMailferryFor(tb.mailferry, u, f.src, dst, o.connections, o.verify,
					"sqlite:"+filepath.Join(dir, u+".db"))
				if err == nil && m.ExitCode == 0 && (rep.Failed > 0 || rep.Messages != f.count[u] ||
					o.verify != "none" && rep.Verified != rep.Messages) {
					err = fmt.Errorf("report: %d of %d messages, %d failed, %d verified", rep.Messages, f.count[u], rep.Failed, rep.Verified)
				}
			case peerMbsync:
				m, err = runMbsyncFor(dir, tb.mbsync, tb.major, tb.minor, f.src, dst, u)
			case "doveadm backup":
				m, err = runDoveadm(doveadmBin, doveadmConf, u)
			}
			mu.Lock()
			p.add(u, m, err)
			mu.Unlock()
		})
	}
	wall := time.Since(start)
	src1, err1 := serverCPU(f.src)
	dst1, err2 := serverCPU(dst)
	mach1, err3 := machineBusy()
	if err1 != nil || err2 != nil || err3 != nil {
		t.Fatalf("CPU time: %v %v %v", err1, err2, err3)
	}
	r := fleetRun{
		Round: round, WallSeconds: wall.Seconds(), ToolCPU: p.cpu.Seconds(),
		SourceCPU: (src1 - src0).Seconds(), TargetCPU: (dst1 - dst0).Seconds(), MachineCPU: (mach1 - mach0).Seconds(),
		PeakRSSKiB: p.maxRSS, Processes: p.n,
	}
	t.Logf("round %d: %s: %s took %.2fs, CPU %.2fs (tool) + %.2fs (Dovecots), machine %.2fs, peak RSS %.1f MiB",
		round, e.Group, e.Tool, r.WallSeconds, r.ToolCPU, r.SourceCPU+r.TargetCPU, r.MachineCPU, float64(r.PeakRSSKiB)/1024)
	if len(p.failures) > 0 {
		msg := fmt.Sprintf("round %d: %s: %s failed for %d mailbox(es): %s\nstderr:\n%s", round, e.Group, e.Tool,
			len(p.failures), strings.Join(p.failures[:min(len(p.failures), 5)], "; "), tail(p.stderr, 20))
		if e.mailferry() {
			t.Fatalf("%s", msg)
		}
		t.Logf("%s", msg)
		r.Stderr = tail(p.stderr, 20)
	}

	// The oracle: every copied mailbox on the target against the source.
	diffs := make([]*diffSummary, len(names))
	forEach(2, names, func(i int, u string) {
		got := corpus.TakeSnapshot(s, dst.Addr, u, dst.Users[u])
		diffs[i] = explain(f.base[u], got)
	})
	for _, d := range diffs {
		if d.Differences == 0 {
			continue
		}
		r.Differences += d.Differences
		r.Differing++
		if r.Describe == nil {
			r.Describe, r.Sample = d.describe(), d.Sample
			if e.Tool == peerMbsync {
				r.Notes = mbsyncNotes(d, p.stderr)
			}
		}
	}
	if r.Differences > 0 {
		t.Logf("round %d: %s: %s: %d of %d mailboxes differ from the source (%d differences), e.g.:\n  %s", round, e.Group, e.Tool,
			r.Differing, len(names), r.Differences, strings.Join(r.Describe, "\n  "))
		if e.mailferry() {
			t.Fatalf("round %d: %s's copy is not exact:\n  %s", round, e.Tool, strings.Join(r.Sample, "\n  "))
		}
	} else {
		t.Logf("round %d: %s: %s's copies are exact", round, e.Group, e.Tool)
	}
	return r
}

func summarizeFleet(e entry, runs []fleetRun, c realisticCorpus) *fleetSummary {
	s := &fleetSummary{entry: e, Runs: runs, Exact: true, Messages: c.Messages, MB: c.MB}
	if e.Group == groupSingle {
		s.Messages, s.MB = c.SingleMessages, c.SingleMB
	}
	var wall, tool, servers, mach, rss, src, dst, other []float64
	for _, r := range runs {
		wall = append(wall, r.WallSeconds)
		tool = append(tool, r.ToolCPU)
		servers = append(servers, r.ToolCPU+r.SourceCPU+r.TargetCPU)
		mach = append(mach, r.MachineCPU)
		src = append(src, r.SourceCPU)
		dst = append(dst, r.TargetCPU)
		other = append(other, max(r.MachineCPU-r.ToolCPU-r.SourceCPU-r.TargetCPU, 0))
		rss = append(rss, float64(r.PeakRSSKiB)/1024)
		s.Exact = s.Exact && r.Differences == 0 && r.Stderr == ""
	}
	s.WallSeconds = median(wall)
	if s.WallSeconds > 0 {
		s.MessagesPerSecond = float64(s.Messages) / s.WallSeconds
		s.MBPerSecond = s.MB / s.WallSeconds
	}
	per1k := func(v []float64) float64 {
		if s.Messages == 0 {
			return 0
		}
		return median(v) * 1000 / float64(s.Messages)
	}
	s.ToolCPUPer1k, s.ServersCPUPer1k, s.MachineCPUPer1k = per1k(tool), per1k(servers), per1k(mach)
	s.SourceCPUPer1k, s.TargetCPUPer1k, s.OtherCPUPer1k = per1k(src), per1k(dst), per1k(other)
	s.PeakRSSMiB = median(rss)
	return s
}

// machineBusy returns the machine's busy CPU time so far: every CPU's
// user, nice, system, irq, softirq and steal time from /proc/stat (guest
// time is part of user).
func machineBusy() (time.Duration, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system (idle iowait) irq softirq steal
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %q: %v", line, err)
		}
		ticks += v
	}
	const clockTicks = 100 // USER_HZ on Linux
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// runMailferryFor copies mailbox u from src to dst with `mailferry
// migrate`; passwords go through the environment only. connections 0
// leaves mailferry's default.
func runMailferryFor(bin, u string, src, dst *dovecot.Server, connections int, verify, state string) (measurement, *migrate.Report, error) {
	args := []string{"migrate", "--from-tls", "none", "--to-tls", "none", "--from", "imap://" + u + "@" + src.Addr, "--to", "imap://" + u + "@" + dst.Addr,
		"--json", "--verify", verify, "--state", state}
	if connections > 0 {
		args = append(args, "--connections", strconv.Itoa(connections))
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = childEnv("MAILFERRY_FROM_PASSWORD="+src.Users[u], "MAILFERRY_TO_PASSWORD="+dst.Users[u])
	m, err := runMeasured(cmd)
	if err != nil {
		return m, nil, fmt.Errorf("run mailferry: %w", err)
	}
	var rep migrate.Report
	if jerr := json.Unmarshal(m.Stdout, &rep); jerr != nil {
		return m, nil, fmt.Errorf("mailferry exited %d without a JSON report (%v)", m.ExitCode, jerr)
	}
	return m, &rep, nil
}

// runMbsyncFor copies mailbox u from src to dst with mbsync, its
// configuration (passwords inside, mode 0600) and state below dir/u.
func runMbsyncFor(dir, bin string, major, minor int, src, dst *dovecot.Server, u string) (measurement, error) {
	state := filepath.Join(dir, "mbsync-"+u)
	if err := os.MkdirAll(state, 0o700); err != nil {
		return measurement{}, err
	}
	conf := filepath.Join(state, "mbsyncrc")
	if err := os.WriteFile(conf, []byte(mbsyncConfigFor(major, minor, src, dst, state, u)), 0o600); err != nil {
		return measurement{}, err
	}
	cmd := exec.Command(bin, "-c", conf, "-a", "-q")
	cmd.Env, cmd.Dir = childEnv(), state
	m, err := runMeasured(cmd)
	if err != nil {
		return m, fmt.Errorf("run mbsync: %w", err)
	}
	return m, nil
}

// writeDoveadmConfig writes the configuration doveadm backup runs with: the
// target server's own dovecot.conf (doveadm writes the target's storage
// directly, as the target's mail user) plus an imapc source that logs in
// to the source server as its master user for each mailbox (%u). The
// master password is in this file only (mode 0600), never in argv.
func (f *fleet) writeDoveadmConfig(t *env, dst *dovecot.Server, dir string) string {
	host, port, _ := strings.Cut(f.src.Addr, ":")
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("# generated by mailferry/cmd/mailferry-bench: doveadm backup -R pulls from the source over IMAP (imapc)")
	p("!include %s", filepath.Join(dst.Dir, "dovecot.conf"))
	p("imapc_host = %s", host)
	p("imapc_port = %s", port)
	p("imapc_ssl = no")
	p("imapc_user = %%u")
	p("imapc_master_user = %s", f.src.MasterUser)
	p("imapc_password = %s", f.src.MasterPassword)
	// As Dovecot's migration guide suggests: sizes and headers from the
	// source instead of whole bodies where dsync only compares.
	p("imapc_features = rfc822.size fetch-headers")
	p("mail_prefetch_count = 20")
	conf := filepath.Join(dir, "doveadm.conf")
	if err := os.WriteFile(conf, []byte(b.String()), 0o600); err != nil {
		t.Fatalf("%v", err)
	}
	return conf
}

// runDoveadm makes mailbox u on the target a copy of the source:
// doveadm backup -R (the imapc side is the source) as the target's user.
func runDoveadm(bin, conf, u string) (measurement, error) {
	cmd := exec.Command(bin, "-c", conf, "backup", "-R", "-u", u, "imapc:")
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	m, err := runMeasured(cmd)
	if err != nil {
		return m, fmt.Errorf("run doveadm: %w", err)
	}
	return m, nil
}

// planDrain writes an inventory of src and dst (master logins, password
// files of mode 0600) and plans a drain of src; it returns the plan's and
// the inventory's paths.
func planDrain(t *env, o options, bin string, src, dst *dovecot.Server, dir string) (plan, inv string) {
	var b strings.Builder
	b.WriteString("clusters:\n")
	for _, c := range []struct {
		name string
		s    *dovecot.Server
	}{{"src", src}, {"dst", dst}} {
		pw := filepath.Join(dir, c.name+".pw")
		if err := os.WriteFile(pw, []byte(c.s.MasterPassword+"\n"), 0o600); err != nil {
			t.Fatalf("%v", err)
		}
		fmt.Fprintf(&b, "  - name: %s\n    url: imap://%s\n    tls: none\n    auth: {method: master, user: %s, password_file: %s}\n"+
			"    capacity: {bytes: 1TiB, load: 100000}\n    limits: {connections: %d}\n", c.name, c.s.Addr, c.s.MasterUser, pw, 4*o.parallel*max(o.connections, 4))
	}
	b.WriteString("mailboxes:\n")
	for _, u := range slices.Sorted(maps.Keys(src.Users)) {
		fmt.Fprintf(&b, "  - {name: %s, cluster: src, bytes: 1MiB, load: 1}\n", u)
	}
	inv = filepath.Join(dir, "inv.yaml")
	if err := os.WriteFile(inv, []byte(b.String()), 0o600); err != nil {
		t.Fatalf("%v", err)
	}
	plan = filepath.Join(dir, "plan.json")
	if out, err := exec.Command(bin, "plan", "-i", inv, "--drain", "src", "-o", plan).CombinedOutput(); err != nil {
		t.Fatalf("mailferry plan: %v\n%s", err, out)
	}
	return plan, inv
}

// runApply executes the plan with `mailferry apply --parallel K` (SQLite
// state, the default kind) and returns its measurement and final report.
func runApply(bin string, o options, plan, inv, dir string) (measurement, *migrate.ApplyReport, error) {
	args := []string{"apply", plan, "-i", inv, "--state", "sqlite:" + filepath.Join(dir, "state.db"),
		// --routed: the bench changes no routing, and the moves must end
		// done (without a hook they stay synced at ready).
		"--parallel", strconv.Itoa(o.parallel), "--verify", o.verify, "--json", "--routed"}
	if o.connections > 0 {
		args = append(args, "--connections", strconv.Itoa(o.connections))
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = childEnv()
	m, err := runMeasured(cmd)
	if err != nil {
		return m, nil, fmt.Errorf("run mailferry apply: %w", err)
	}
	var rep migrate.ApplyReport
	lines := strings.Split(strings.TrimSpace(string(m.Stdout)), "\n")
	if jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &rep); jerr != nil {
		return m, nil, fmt.Errorf("mailferry apply exited %d without a JSON report (%v)", m.ExitCode, jerr)
	}
	return m, &rep, nil
}

func printRealistic(w io.Writer, res *realisticResults) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	m, c := res.Machine, res.Corpus
	p("")
	vs := "mailferry"
	for _, peer := range res.Config.Peers {
		vs += " vs " + peerTool(peer)
	}
	p("realistic corpus: %s, same machine, same source, median of %d round(s); every copy into a fresh empty target", vs, res.Config.Rounds)
	p("")
	p("machine    %d CPUs (%s), %d MiB RAM, Linux %s, Go %s", m.CPUs, m.CPUModel, m.MemoryMiB, m.Kernel, m.GoVersion)
	target := "Maildir LAYOUT=fs (\"/\")"
	if res.Config.Storage == "mdbox" {
		target = "mdbox (\"/\")"
	}
	p("servers    Dovecot %s on loopback, plaintext; source Maildir++ (\".\"), targets %s", m.Dovecot, target)
	p("corpus     seed %d: %d mailboxes x %d folders, %d messages, %.1f MB (median %.1f KB, mean %.1f KB, %d of 100 KB+ = %.1f%%), seeded in %.0fs",
		c.Seed, c.Mailboxes, c.Folders, c.Messages, c.MB, float64(c.MedianBytes)/1000, c.MeanBytes/1000, c.Attachments,
		100*float64(c.Attachments)/float64(max(c.Messages, 1)), c.SeedSeconds)
	p("tools      mailferry %s --verify %s, SQLite state, connections: %s; %s (one channel per mailbox, Sync Pull); %s",
		m.Mailferry, res.Config.Verify, res.Config.Connections, m.Mbsync, res.Config.Doveadm)
	p("groups     single = mailbox user000 alone (%d messages, %.1f MB); fleet = all %d mailboxes, K = %d at a time",
		c.SingleMessages, c.SingleMB, c.Mailboxes, res.Config.Parallel)
	p("")
	p("%-7s %-22s %8s %7s %8s %9s %9s %9s %8s %6s", "group", "tool", "msg/s", "MB/s", "wall s",
		"tool", "+dovecot", "machine", "RSS MiB", "exact")
	p("%-7s %-22s %8s %7s %8s %29s", "", "", "", "", "", "CPU s per 1,000 messages")
	for _, s := range res.Entries {
		tool := s.Tool
		if s.Group == groupFleet && !strings.HasSuffix(tool, "apply") {
			tool += fmt.Sprintf(" x%d", res.Config.Parallel)
		}
		exact := "yes"
		if !s.Exact {
			n := 0
			for _, r := range s.Runs {
				n = max(n, r.Differences)
			}
			exact = fmt.Sprintf("no(%d)", n)
		}
		p("%-7s %-22s %8.1f %7.2f %8.2f %9.3f %9.3f %9.3f %8.1f %6s", s.Group, tool, s.MessagesPerSecond, s.MBPerSecond,
			s.WallSeconds, s.ToolCPUPer1k, s.ServersCPUPer1k, s.MachineCPUPer1k, s.PeakRSSMiB, exact)
	}
	p("")
	p("tool = the tool's processes (rusage, their children included); +dovecot = tool + source and target Dovecot;")
	p("machine = /proc/stat busy time of all CPUs over the run (includes anything else running).")
	p("RSS = the largest process's peak: the one apply process, or the largest per-mailbox process")
	p("(%s).", res.Config.RSS)
	p("")
	p("where the CPU goes, s per 1,000 messages (medians; the parts' medians need not add up to the total's):")
	p("%-7s %-22s %9s %9s %9s %9s %9s", "group", "tool", "tool", "source", "target", "total", "other")
	noisy := false
	for _, s := range res.Entries {
		p("%-7s %-22s %9.3f %9.3f %9.3f %9.3f %9.3f", s.Group, s.Tool, s.ToolCPUPer1k, s.SourceCPUPer1k, s.TargetCPUPer1k,
			s.ServersCPUPer1k, s.OtherCPUPer1k)
		noisy = noisy || s.OtherCPUPer1k > 0.25*s.MachineCPUPer1k
	}
	p("other = the machine's busy time beyond the tool's and the Dovecots' (other work on the machine).")
	if noisy {
		p("NOTE: other work used a large part of the machine during some runs: the machine column and the")
		p("wall-clock figures (msg/s, MB/s) are noisy; the tool and +dovecot CPU columns are much less affected.")
	}
	p("")
	p("ratios     mailferry / peer (msg/s above 1 favours mailferry; CPU and RSS below 1 favour mailferry)")
	p("%-7s %-22s %-15s %8s %9s %9s %9s %8s", "group", "mailferry", "vs", "msg/s", "tool CPU", "+dovecot", "machine", "RSS")
	for _, s := range res.Entries {
		if !s.mailferry() {
			continue
		}
		for _, peer := range slices.Sorted(maps.Keys(s.Ratios)) {
			r := s.Ratios[peer]
			p("%-7s %-22s %-15s %8.2f %9.2f %9.2f %9.2f %8.2f", s.Group, strings.TrimPrefix(s.Tool, "mailferry "), peer,
				r["messages_per_second"], r["tool_cpu_seconds_per_1000_messages"],
				r["tool_and_dovecot_cpu_seconds_per_1000_messages"], r["machine_cpu_seconds_per_1000_messages"], r["peak_rss"])
		}
	}
	p("")
	p("rounds (wall s; position in its round in brackets):")
	for _, s := range res.Entries {
		var parts []string
		for _, r := range s.Runs {
			parts = append(parts, fmt.Sprintf("%.2f [%d]", r.WallSeconds, r.Position))
		}
		p("  %-7s %-22s %s", s.Group, s.Tool, strings.Join(parts, "  "))
	}
	for _, s := range res.Entries {
		if s.Exact {
			continue
		}
		p("")
		p("%s (%s): copies differ from the source or the tool failed:", s.Tool, s.Group)
		seen := map[string]bool{}
		for _, r := range s.Runs {
			key := strings.Join(r.Describe, "\n") + r.Stderr
			if seen[key] {
				continue
			}
			seen[key] = true
			p("  round %d: %d of the mailboxes differ (%d differences by corpus.Compare); the first:", r.Round, r.Differing, r.Differences)
			for _, l := range r.Describe {
				p("    %s", l)
			}
			for _, l := range r.Notes {
				p("    why: %s", l)
			}
			for _, l := range r.Sample[:min(len(r.Sample), 3)] {
				p("    e.g. %s", l)
			}
			if r.Stderr != "" {
				p("    stderr: %s", strings.ReplaceAll(r.Stderr, "\n", "\n      "))
			}
		}
	}
	if len(res.SourceChanged) > 0 {
		p("")
		p("THE SOURCE CHANGED during the rounds:")
		for _, l := range res.SourceChanged {
			p("  %s", l)
		}
	}
	if res.Config.DoveadmConf != "" {
		p("")
		p("doveadm configuration (password masked):")
		for _, l := range strings.Split(strings.TrimRight(res.Config.DoveadmConf, "\n"), "\n") {
			p("  %s", l)
		}
	}
	p("")
	p("total bench time %.0fs", res.TotalSeconds)
}
