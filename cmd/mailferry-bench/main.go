// Command bench measures mailferry against other tools in one run, on one
// machine and one generated corpus, every copy into a fresh, empty target
// Dovecot, and reports medians of the rounds and ratios.
//
// -corpus realistic (the default): many mailboxes of mostly small messages
// (corpus.GenerateRealistic), copied one mailbox alone, one mailferry
// migrate per mailbox K at a time, and by mailferry apply --parallel K,
// against mbsync and doveadm backup over imapc in the same rounds; it
// reports messages/s, MB/s, CPU seconds per 1,000 messages (the tool's,
// with the Dovecots', and the machine's) and peak RSS (realistic.go).
//
// -corpus large: one mailbox of large messages, mailferry migrate against
// mbsync (-mode copy), or a drain by mailferry apply against mbsync per
// mailbox (-mode apply): messages/s, MB/s, wall time and peak RSS.
//
// Every copy is checked against the source with corpus.Compare. The bench
// fails (exit 1) when mailferry reports a failure or its copy is not
// exact; the peers' differences are reported and explained, not fatal.
//
// Run it with ./scripts/bench.sh (or make bench) from the module root.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"mailferry/internal/testrig/corpus"
	"mailferry/internal/testrig/dovecot"
	"mailferry/migrate"
)

const (
	toolMailferry = "mailferry"
	toolMbsync    = "mbsync"
	// Variants of mailferry with another state store, to measure the
	// state's cost against a copy without any (-state-cost).
	toolNoState  = "mailferry-nostate"
	toolPostgres = "mailferry-postgres"
)

type options struct {
	folders, messages int
	maxSize           sizeFlag
	rounds            int
	seed              uint64
	connections       int
	verify            string
	json              bool
	profile           string
	stateCost         bool
	postgres          string
	mode              string
	mailboxes         int
	parallel          int
	// The realistic corpus (-corpus realistic).
	corpus string
	// storage is the target Dovecots' mail storage: maildir or mdbox.
	storage string
	modes   []string
	peers   []string
}

func main() {
	started := time.Now()
	log.SetFlags(0)
	o := options{maxSize: 8 << 20}
	flag.StringVar(&o.storage, "target-storage", "maildir", "realistic corpus: the target Dovecots' storage, maildir (a file per message) or mdbox (the issue's measurement)")
	flag.StringVar(&o.corpus, "corpus", "realistic", "realistic: many mailboxes of small messages, in -modes, against -peers; large: the large-message corpus (-folders, -max-size, -mode)")
	var modes, peers string
	flag.StringVar(&modes, "modes", "single,migrate,apply", "-corpus realistic: single (one mailbox alone), migrate (one mailferry migrate per mailbox, -parallel at a time), apply (mailferry apply --parallel over all mailboxes)")
	flag.StringVar(&peers, "peers", "mbsync,doveadm", "-corpus realistic: the tools mailferry is compared with in the same rounds (mbsync, doveadm: doveadm backup over imapc); empty for none")
	flag.IntVar(&o.folders, "folders", 20, "-corpus large: folders in the corpus")
	flag.IntVar(&o.messages, "messages", 0, "messages per mailbox (-corpus realistic, default 500), or average messages per folder (-corpus large, default 100)")
	flag.Var(&o.maxSize, "max-size", "-corpus large: largest message size (bytes, or with K/M/KiB/MiB suffix)")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds; each copies the corpus once with every tool, into fresh targets")
	flag.Uint64Var(&o.seed, "seed", 1, "corpus seed")
	flag.IntVar(&o.connections, "connections", 0, "mailferry --connections (default: -corpus large 4, -corpus realistic mailferry's own defaults)")
	flag.StringVar(&o.verify, "verify", "full", "mailferry --verify: full, size or none")
	flag.BoolVar(&o.stateCost, "state-cost", false, "-corpus large: also run mailferry with --state none (and with -postgres), to measure what the state costs")
	flag.StringVar(&o.postgres, "postgres", "", "with -state-cost: a PostgreSQL `URL` for the mailferry-postgres variant")
	flag.BoolVar(&o.json, "json", false, "print the results as one JSON object on stdout (progress stays on stderr)")
	flag.StringVar(&o.profile, "profile", "", "-corpus large: after the measured rounds, copy once more with each tool under system-wide perf record and write the profiles and reports into `DIR` (not counted)")
	flag.StringVar(&o.mode, "mode", "copy", "-corpus large: copy: one mailbox, mailferry migrate vs mbsync; apply: -mailboxes mailboxes drained by mailferry apply vs one mbsync per mailbox")
	flag.IntVar(&o.mailboxes, "mailboxes", 0, "mailboxes (-corpus realistic, default 20; -corpus large -mode apply, default 32)")
	flag.IntVar(&o.parallel, "parallel", 0, "mailboxes at a time: mailferry apply --parallel, concurrent migrate, mbsync and doveadm processes (default: -corpus realistic 4, -corpus large 8)")
	flag.Parse()
	if o.storage != "maildir" && o.storage != "mdbox" {
		log.Fatalf("bench: -target-storage %q: want maildir or mdbox", o.storage)
	}
	// Flags only the large corpus has select it, as before -corpus existed.
	explicit := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	if !explicit["corpus"] && (explicit["mode"] || explicit["folders"] || explicit["max-size"] || explicit["state-cost"] || explicit["profile"]) {
		o.corpus = "large"
	}
	split := func(s string) []string {
		var out []string
		for _, v := range strings.Split(s, ",") {
			if v = strings.TrimSpace(v); v != "" {
				out = append(out, v)
			}
		}
		return out
	}
	o.modes, o.peers = split(modes), split(peers)
	defaults := func(messages, mailboxes, parallel, connections int) {
		if o.messages == 0 {
			o.messages = messages
		}
		if o.mailboxes == 0 {
			o.mailboxes = mailboxes
		}
		if o.parallel == 0 {
			o.parallel = parallel
		}
		if o.connections == 0 {
			o.connections = connections
		}
	}
	switch o.corpus {
	case "realistic":
		defaults(500, 20, 4, 0)
		for _, m := range o.modes {
			if m != modeSingle && m != modeMigrate && m != modeApply {
				log.Printf("bench: -modes: %q: want single, migrate or apply", m)
				os.Exit(2)
			}
		}
		for _, p := range o.peers {
			if p != peerMbsync && p != peerDoveadm {
				log.Printf("bench: -peers: %q: want mbsync or doveadm", p)
				os.Exit(2)
			}
		}
		if len(o.modes) == 0 {
			log.Printf("bench: -modes: want at least one of single, migrate, apply")
			os.Exit(2)
		}
	case "large":
		defaults(100, 32, 8, 4)
	default:
		log.Printf("bench: -corpus %q: want realistic or large", o.corpus)
		os.Exit(2)
	}
	if flag.NArg() > 0 || o.folders < 1 || o.messages < 1 || o.rounds < 1 || o.connections < 0 || o.maxSize < 4096 ||
		o.mailboxes < 1 || o.parallel < 1 {
		flag.Usage()
		os.Exit(2)
	}
	switch o.verify {
	case "full", "size", "none":
	default:
		log.Printf("bench: -verify %q: want full, size or none", o.verify)
		os.Exit(2)
	}

	t := newEnv()
	if o.corpus == "realistic" {
		rr := runRealistic(t, o)
		if o.json {
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			if err := enc.Encode(rr); err != nil {
				t.Fatalf("write JSON: %v", err)
			}
		} else {
			printRealistic(os.Stdout, rr)
		}
		t.close()
		return
	}
	if o.mode == "apply" {
		ar := runApplyBench(t, o)
		if o.json {
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			_ = enc.Encode(ar)
		} else {
			printApply(os.Stdout, ar)
		}
		t.close()
		return
	}
	res := run(t, o)
	res.TotalSeconds = time.Since(started).Seconds()
	if o.json {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			t.Fatalf("write JSON: %v", err)
		}
	} else {
		printTable(os.Stdout, res)
	}
	t.close()
}

// results is everything the bench measured; with -json it is the output.
type results struct {
	Machine machine      `json:"machine"`
	Corpus  corpusInfo   `json:"corpus"`
	Config  configInfo   `json:"config"`
	Tools   []toolResult `json:"tools"` // mailferry, mbsync
	// Ratios are mailferry / mbsync of the medians.
	Ratios       map[string]float64 `json:"ratios_mailferry_over_mbsync"`
	Faster       bool               `json:"mailferry_faster"`
	TotalSeconds float64            `json:"total_seconds"`
}

type machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model"`
	MemoryMiB int64  `json:"memory_mib"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
	Dovecot   string `json:"dovecot_version"`
	Mbsync    string `json:"mbsync_version"`
	Mailferry string `json:"mailferry_commit"`
}

type corpusInfo struct {
	Seed      uint64  `json:"seed"`
	Folders   int     `json:"folders"`
	Messages  int     `json:"messages"`
	Bytes     int64   `json:"bytes"` // as the source serves them (RFC822.SIZE)
	MB        float64 `json:"mb"`    // Bytes / 1e6
	MaxSize   int64   `json:"max_size"`
	SeedSecs  float64 `json:"seed_seconds"`
	PerFolder int     `json:"messages_per_folder_option"`
}

type configInfo struct {
	Rounds      int    `json:"rounds"`
	Connections int    `json:"mailferry_connections"`
	Verify      string `json:"mailferry_verify"`
	MbsyncConf  string `json:"mbsync_config"` // with passwords masked
}

type toolResult struct {
	Tool string      `json:"tool"`
	Runs []runResult `json:"runs"`
	// Medians over the rounds.
	WallSeconds       float64 `json:"wall_seconds"`
	MessagesPerSecond float64 `json:"messages_per_second"`
	MBPerSecond       float64 `json:"mb_per_second"`
	PeakRSSMiB        float64 `json:"peak_rss_mib"`
	CPUSeconds        float64 `json:"cpu_seconds"`
	SourceServerCPU   float64 `json:"source_dovecot_cpu_seconds"`
	TargetServerCPU   float64 `json:"target_dovecot_cpu_seconds"`
	Exact             bool    `json:"exact"` // every run
}

type runResult struct {
	Round           int             `json:"round"`
	First           bool            `json:"first"` // ran first in its round
	WallSeconds     float64         `json:"wall_seconds"`
	PeakRSSKiB      int64           `json:"peak_rss_kib"`
	UserSeconds     float64         `json:"user_seconds"`
	SysSeconds      float64         `json:"sys_seconds"`
	SourceServerCPU float64         `json:"source_dovecot_cpu_seconds"`
	TargetServerCPU float64         `json:"target_dovecot_cpu_seconds"`
	ExitCode        int             `json:"exit_code"`
	Stderr          string          `json:"stderr,omitempty"`
	Diff            *diffSummary    `json:"diff"`
	SourceChanged   []string        `json:"source_changed,omitempty"`
	Notes           []string        `json:"notes,omitempty"` // likely causes of the differences
	Mailferry       *migrate.Report `json:"mailferry_report,omitempty"`
}

func run(t *env, o options) *results {
	res := &results{Config: configInfo{Rounds: o.rounds, Connections: o.connections, Verify: o.verify}}

	tb := setupTools(t)
	res.Machine = tb.machine
	bin, mbsyncBin, major, minor := tb.mailferry, tb.mbsync, tb.major, tb.minor

	mbox := corpus.Generate(corpus.Options{
		Seed: o.seed, Folders: o.folders, MessagesPerFolder: o.messages, MaxSize: int64(o.maxSize), Odd: true,
	})
	t.Logf("corpus: %d folders, %d messages, %.1f MB generated; seeding the source server",
		len(mbox.Folders), mbox.TotalMessages(), float64(mbox.TotalBytes())/1e6)
	src := dovecot.Start(t, dovecot.Options{Name: "src", Separator: "."})
	seedStart := time.Now()
	corpus.Seed(t, src.Addr, user, src.Users[user], mbox)
	seedSecs := time.Since(seedStart).Seconds()
	base := corpus.TakeSnapshot(t, src.Addr, user, src.Users[user])
	res.Corpus = corpusInfo{Seed: o.seed, Folders: len(base.Folders), MaxSize: int64(o.maxSize), SeedSecs: seedSecs, PerFolder: o.messages}
	for _, f := range base.Folders {
		res.Corpus.Messages += len(f.Messages)
		for _, m := range f.Messages {
			res.Corpus.Bytes += m.Size
		}
	}
	res.Corpus.MB = float64(res.Corpus.Bytes) / 1e6
	t.Logf("seeded in %.1fs: %d folders, %d messages, %.1f MB as served",
		seedSecs, res.Corpus.Folders, res.Corpus.Messages, res.Corpus.MB)

	runs := map[string][]runResult{}
	for round := 1; round <= o.rounds; round++ {
		order := o.tools()
		if round%2 == 0 {
			slices.Reverse(order)
		}
		for i, tool := range order {
			r := copyOnce(t, o, tool, round, bin, mbsyncBin, major, minor, src, base, res, "")
			r.First = i == 0
			runs[tool] = append(runs[tool], r)
		}
	}
	if o.profile != "" {
		if err := os.MkdirAll(o.profile, 0o755); err != nil {
			t.Fatalf("-profile: %v", err)
		}
		for _, tool := range []string{toolMailferry, toolMbsync} {
			copyOnce(t, o, tool, 0, bin, mbsyncBin, major, minor, src, base, res, filepath.Join(o.profile, tool))
		}
		t.Logf("profiles written to %s (see *-comm.txt and *-sym.txt)", o.profile)
	}

	for _, tool := range o.tools() {
		res.Tools = append(res.Tools, summarize(tool, runs[tool], res.Corpus))
	}
	mf, mb := res.Tools[0], res.Tools[1]
	res.Ratios = map[string]float64{
		"messages_per_second": ratio(mf.MessagesPerSecond, mb.MessagesPerSecond),
		"mb_per_second":       ratio(mf.MBPerSecond, mb.MBPerSecond),
		"wall_seconds":        ratio(mf.WallSeconds, mb.WallSeconds),
		"peak_rss":            ratio(mf.PeakRSSMiB, mb.PeakRSSMiB),
		"cpu_seconds":         ratio(mf.CPUSeconds, mb.CPUSeconds),
	}
	res.Faster = mf.WallSeconds < mb.WallSeconds
	// The state's cost: mailferry (SQLite state) and mailferry with
	// PostgreSQL state against the same copy without state.
	for _, t := range res.Tools[2:] {
		if t.Tool == toolNoState {
			res.Ratios["wall_seconds_sqlite_state_over_none"] = ratio(mf.WallSeconds, t.WallSeconds)
			for _, p := range res.Tools[2:] {
				if p.Tool == toolPostgres {
					res.Ratios["wall_seconds_postgres_state_over_none"] = ratio(p.WallSeconds, t.WallSeconds)
				}
			}
		}
	}
	return res
}

// tools are the tools each round runs: mailferry and mbsync first (the
// ratios compare them), then the state variants.
func (o options) tools() []string {
	out := []string{toolMailferry, toolMbsync}
	if o.stateCost {
		out = append(out, toolNoState)
		if o.postgres != "" {
			out = append(out, toolPostgres)
		}
	}
	return out
}

// copyOnce copies the source into a fresh target server with tool, then
// checks the target (and that the source did not change). With a profile
// prefix, the copy runs under system-wide perf record (round 0: not
// counted).
func copyOnce(t *env, o options, tool string, round int, bin, mbsyncBin string, major, minor int,
	src *dovecot.Server, base *corpus.Snapshot, res *results, profile string) runResult {
	s := t.scope()
	defer s.close()
	dst := dovecot.Start(s, dovecot.Options{Name: fmt.Sprintf("dst-%s-%d", tool, round), Separator: "/"})
	t.Logf("round %d: %s copying into a fresh target", round, tool)

	srcCPU0, err1 := serverCPU(src)
	dstCPU0, err2 := serverCPU(dst)
	if err1 != nil || err2 != nil {
		t.Fatalf("dovecot CPU time: %v %v", err1, err2)
	}
	var m measurement
	var rep *migrate.Report
	var err error
	stopPerf := func() {}
	if profile != "" {
		stopPerf = startPerf(s, profile)
	}
	switch tool {
	case toolMailferry:
		m, rep, err = runMailferry(bin, src, dst, o.connections, o.verify, "sqlite:"+filepath.Join(s.TempDir(), "state.db"))
	case toolNoState:
		m, rep, err = runMailferry(bin, src, dst, o.connections, o.verify, "none")
	case toolPostgres:
		m, rep, err = runMailferry(bin, src, dst, o.connections, o.verify, o.postgres)
	case toolMbsync:
		if res.Config.MbsyncConf == "" {
			conf := mbsyncConfig(major, minor, src, dst, "STATEDIR")
			for _, p := range []string{src.Users[user], dst.Users[user]} {
				conf = strings.ReplaceAll(conf, mbsyncQuote(p), `"********"`)
			}
			res.Config.MbsyncConf = conf
		}
		m, err = runMbsync(s, mbsyncBin, major, minor, src, dst)
	}
	stopPerf()
	if err != nil {
		t.Fatalf("round %d: %s: %v", round, tool, err)
	}
	srcCPU1, err1 := serverCPU(src)
	dstCPU1, err2 := serverCPU(dst)
	if err1 != nil || err2 != nil {
		t.Fatalf("dovecot CPU time: %v %v", err1, err2)
	}
	r := runResult{
		Round: round, WallSeconds: m.Wall.Seconds(), PeakRSSKiB: m.MaxRSSKiB,
		UserSeconds: m.User.Seconds(), SysSeconds: m.Sys.Seconds(),
		SourceServerCPU: (srcCPU1 - srcCPU0).Seconds(), TargetServerCPU: (dstCPU1 - dstCPU0).Seconds(),
		ExitCode: m.ExitCode, Stderr: tail(m.Stderr, 20), Mailferry: rep,
	}
	t.Logf("round %d: %s took %.1fs, peak RSS %.1f MiB, exit code %d", round, tool, r.WallSeconds, float64(r.PeakRSSKiB)/1024, r.ExitCode)
	if tool == toolMbsync && m.ExitCode != 0 {
		t.Logf("round %d: mbsync exited %d:\n%s", round, m.ExitCode, tail(m.Stderr, 20))
	}
	if rep != nil {
		if m.ExitCode != 0 || rep.Failed > 0 {
			var b strings.Builder
			for _, f := range rep.Failures {
				fmt.Fprintf(&b, "\n  %q uid %d: %s", f.Folder, f.UID, f.Reason)
			}
			t.Fatalf("round %d: mailferry exited %d, %d of %d messages failed:%s\nstderr:\n%s",
				round, m.ExitCode, rep.Failed, rep.Messages, b.String(), tail(m.Stderr, 20))
		}
		if rep.Messages != res.Corpus.Messages {
			t.Fatalf("round %d: mailferry reports %d messages, the source has %d", round, rep.Messages, res.Corpus.Messages)
		}
		if o.verify != "none" && rep.Verified != rep.Messages {
			t.Fatalf("round %d: mailferry verified %d of %d messages with --verify %s", round, rep.Verified, rep.Messages, o.verify)
		}
	}

	// The oracle: the source as it is now against the target.
	now := corpus.TakeSnapshot(s, src.Addr, user, src.Users[user])
	r.SourceChanged = corpus.CompareFlags(base, now)
	got := corpus.TakeSnapshot(s, dst.Addr, user, dst.Users[user])
	r.Diff = explain(now, got)
	if tool == toolMbsync {
		r.Notes = mbsyncNotes(r.Diff, m.Stderr)
	}
	if len(r.SourceChanged) > 0 {
		t.Logf("round %d: %s CHANGED THE SOURCE: %d differences, e.g. %s", round, tool, len(r.SourceChanged), r.SourceChanged[0])
	}
	if r.Diff.Differences > 0 {
		t.Logf("round %d: %s's copy differs from the source in %d points:\n  %s", round, tool, r.Diff.Differences,
			strings.Join(r.Diff.describe(), "\n  "))
	} else {
		t.Logf("round %d: %s's copy is exact", round, tool)
	}
	if rep != nil && (r.Diff.Differences > 0 || len(r.SourceChanged) > 0) {
		t.Fatalf("round %d: mailferry's copy is not exact (%d differences, %d source changes):\n  %s",
			round, r.Diff.Differences, len(r.SourceChanged), strings.Join(append(r.Diff.Sample, r.SourceChanged...), "\n  "))
	}
	return r
}

func summarize(tool string, runs []runResult, c corpusInfo) toolResult {
	tr := toolResult{Tool: tool, Runs: runs, Exact: true}
	var wall, rss, cpu, srcCPU, dstCPU []float64
	for _, r := range runs {
		wall = append(wall, r.WallSeconds)
		rss = append(rss, float64(r.PeakRSSKiB)/1024)
		cpu = append(cpu, r.UserSeconds+r.SysSeconds)
		srcCPU = append(srcCPU, r.SourceServerCPU)
		dstCPU = append(dstCPU, r.TargetServerCPU)
		tr.Exact = tr.Exact && r.Diff.Differences == 0 && len(r.SourceChanged) == 0
	}
	tr.WallSeconds = median(wall)
	tr.PeakRSSMiB = median(rss)
	tr.CPUSeconds = median(cpu)
	tr.SourceServerCPU = median(srcCPU)
	tr.TargetServerCPU = median(dstCPU)
	if tr.WallSeconds > 0 {
		tr.MessagesPerSecond = float64(c.Messages) / tr.WallSeconds
		tr.MBPerSecond = c.MB / tr.WallSeconds
	}
	return tr
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func printTable(w io.Writer, res *results) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	mf, mb := res.Tools[0], res.Tools[1]
	m := res.Machine
	p("")
	p("mailferry vs mbsync: same machine, same corpus, median of %d round(s); every copy into a fresh empty target", res.Config.Rounds)
	p("")
	p("machine    %d CPUs (%s), %d MiB RAM, Linux %s, Go %s", m.CPUs, m.CPUModel, m.MemoryMiB, m.Kernel, m.GoVersion)
	p("servers    Dovecot %s on loopback, plaintext; source separator \".\", target \"/\"", m.Dovecot)
	p("tools      mailferry %s --connections %d --verify %s; %s (one channel, Sync Pull)",
		m.Mailferry, res.Config.Connections, res.Config.Verify, m.Mbsync)
	c := res.Corpus
	p("corpus     seed %d: %d folders, %d messages, %.1f MB (%s largest), seeded in %.1fs",
		c.Seed, c.Folders, c.Messages, c.MB, sizeFlag(c.MaxSize), c.SeedSecs)
	p("")
	p("%-22s %12s %12s %12s", "", "mailferry", "mbsync", "mf/mbsync")
	row := func(name, format string, a, b float64) {
		r := "-"
		if b != 0 {
			r = fmt.Sprintf("%.2f", a/b)
		}
		p("%-22s %12s %12s %12s", name, fmt.Sprintf(format, a), fmt.Sprintf(format, b), r)
	}
	row("messages/s", "%.1f", mf.MessagesPerSecond, mb.MessagesPerSecond)
	row("MB/s", "%.1f", mf.MBPerSecond, mb.MBPerSecond)
	row("wall s", "%.2f", mf.WallSeconds, mb.WallSeconds)
	row("peak RSS MiB", "%.1f", mf.PeakRSSMiB, mb.PeakRSSMiB)
	row("CPU s (user+sys)", "%.2f", mf.CPUSeconds, mb.CPUSeconds)
	row("source Dovecot CPU s", "%.2f", mf.SourceServerCPU, mb.SourceServerCPU)
	row("target Dovecot CPU s", "%.2f", mf.TargetServerCPU, mb.TargetServerCPU)
	exact := func(tr toolResult) string {
		if tr.Exact {
			return "yes"
		}
		n := 0
		for _, r := range tr.Runs {
			n = max(n, r.Diff.Differences)
		}
		return fmt.Sprintf("no (%d)", n)
	}
	p("%-22s %12s %12s", "exact copy", exact(mf), exact(mb))
	for _, v := range res.Tools[2:] {
		p("%-22s %12s %12s %12s", "", "mailferry", v.Tool, "state/none")
		if v.Tool == toolNoState {
			row("wall s (SQLite state)", "%.2f", mf.WallSeconds, v.WallSeconds)
			row("CPU s (SQLite state)", "%.2f", mf.CPUSeconds, v.CPUSeconds)
		} else {
			row("wall s (PG vs SQLite)", "%.2f", mf.WallSeconds, v.WallSeconds)
		}
	}
	if r, ok := res.Ratios["wall_seconds_postgres_state_over_none"]; ok {
		p("%-22s %38.2f", "wall PG state / none", r)
	}
	p("")
	p("MB = 10^6 bytes as the source serves them; ratios above 1 favour mailferry for messages/s and MB/s, below 1 for the rest.")
	if res.Faster {
		p("verdict: mailferry is faster than mbsync (%.2fx the messages/s).", res.Ratios["messages_per_second"])
	} else {
		p("verdict: mailferry is NOT faster than mbsync (%.2fx the messages/s).", res.Ratios["messages_per_second"])
	}
	p("")
	p("rounds (wall s, peak RSS MiB, CPU s; * = ran first in its round):")
	for i := range mf.Runs {
		var parts []string
		for _, tr := range res.Tools {
			if i >= len(tr.Runs) {
				continue
			}
			r := tr.Runs[i]
			star := " "
			if r.First {
				star = "*"
			}
			parts = append(parts, fmt.Sprintf("%-9s%s %7.2f s %7.1f MiB %6.2f s", tr.Tool, star, r.WallSeconds,
				float64(r.PeakRSSKiB)/1024, r.UserSeconds+r.SysSeconds))
		}
		p("  %d: %s", mf.Runs[i].Round, strings.Join(parts, "   "))
	}
	for _, tr := range res.Tools {
		if tr.Exact {
			continue
		}
		p("")
		p("%s's copies differ from the source:", tr.Tool)
		seen := map[string]bool{}
		for _, r := range tr.Runs {
			lines := r.Diff.describe()
			lines = append(lines, r.SourceChanged...)
			key := strings.Join(lines, "\n")
			if seen[key] {
				continue
			}
			seen[key] = true
			p("  round %d (%d differences by corpus.Compare):", r.Round, r.Diff.Differences)
			for _, l := range lines {
				p("    %s", l)
			}
			if len(r.Notes) > 0 {
				p("    why:")
				for _, l := range r.Notes {
					p("      - %s", l)
				}
			}
			p("    e.g.:")
			for _, l := range r.Diff.Sample {
				p("      %s", l)
			}
		}
		for _, r := range tr.Runs {
			if r.ExitCode != 0 {
				p("  round %d: %s exited %d: %s", r.Round, tr.Tool, r.ExitCode, strings.ReplaceAll(r.Stderr, "\n", "\n    "))
			}
		}
	}
	p("")
	p("mbsync configuration (passwords masked):")
	for _, l := range strings.Split(strings.TrimRight(res.Config.MbsyncConf, "\n"), "\n") {
		p("  %s", l)
	}
	p("")
	p("total bench time %.0fs", res.TotalSeconds)
}

// moduleRoot returns the directory holding mailferry's go.mod.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the mailferry module: run from its root")
	}
	return filepath.Dir(gomod), nil
}

func machineInfo(root, dovecotBin, mbsyncLine string) machine {
	m := machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), Mbsync: mbsyncLine}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				kib, _ := strconv.ParseInt(f[1], 10, 64)
				m.MemoryMiB = kib / 1024
			}
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	if out, err := exec.Command(dovecotBin, "--version").Output(); err == nil {
		m.Dovecot = strings.TrimSpace(string(out))
	}
	git := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(out))
	}
	m.Mailferry = git("rev-parse", "--short", "HEAD")
	if m.Mailferry == "" {
		m.Mailferry = "(unknown commit)"
	} else if git("status", "--porcelain", "--untracked-files=no") != "" {
		m.Mailferry += "+changes"
	}
	return m
}

// sizeFlag is a byte count that accepts K, M, G, KiB, MiB, GiB suffixes
// (all powers of 1024).
type sizeFlag int64

func (s sizeFlag) String() string {
	switch {
	case s >= 1<<20 && s%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", s>>20)
	case s >= 1<<10 && s%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", s>>10)
	}
	return strconv.FormatInt(int64(s), 10)
}

func (s *sizeFlag) Set(v string) error {
	v = strings.TrimSpace(v)
	mult := int64(1)
	upper := strings.ToUpper(v)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(upper, u.suffix) {
			mult = u.mult
			v = strings.TrimSpace(v[:len(v)-len(u.suffix)])
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("want a size such as 8MiB, got %q", v)
	}
	*s = sizeFlag(n * mult)
	return nil
}

// tools are the binaries a bench runs, found or built once.
type tools struct {
	machine      machine
	mailferry    string // built from this checkout
	mbsync       string
	major, minor int // mbsync's version
}

func setupTools(t *env) tools {
	root, err := moduleRoot()
	if err != nil {
		t.Fatalf("%v", err)
	}
	dovecotBin, err := dovecot.Binary()
	if err != nil {
		t.Fatalf("%v", err)
	}
	mbsyncBin, err := exec.LookPath("mbsync")
	if err != nil {
		t.Fatalf("mbsync (isync) is not installed: run ./scripts/install-deps.sh --bench")
	}
	mbsyncLine, major, minor, err := mbsyncVersion(mbsyncBin)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Logf("building mailferry")
	bin := filepath.Join(root, "tmp", "mailferry")
	build := exec.Command("go", "build", "-o", bin, "./cmd/mailferry")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/mailferry: %v\n%s", err, out)
	}
	return tools{machine: machineInfo(root, dovecotBin, mbsyncLine), mailferry: bin, mbsync: mbsyncBin, major: major, minor: minor}
}
