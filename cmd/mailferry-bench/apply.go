package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"mailferry/internal/testrig/corpus"
	"mailferry/internal/testrig/dovecot"
)

// applyResults is what -mode apply measured: a drain of many mailboxes by
// `mailferry apply` against mbsync run once per mailbox, the same number
// at a time.
type applyResults struct {
	Machine   machine            `json:"machine"`
	Mailboxes int                `json:"mailboxes"`
	Messages  int                `json:"messages"`
	MB        float64            `json:"mb"`
	Parallel  int                `json:"parallel"`
	Rounds    int                `json:"rounds"`
	Wall      map[string]float64 `json:"median_wall_seconds"`
	CPU       map[string]float64 `json:"median_cpu_seconds"`
	// Ratio is mbsync's wall time over mailferry's: above 1, mailferry is faster.
	Ratio float64 `json:"speedup_mailferry_over_mbsync"`
	Exact bool    `json:"mailferry_exact"`
}

// runApplyBench drains -mailboxes mailboxes from one Dovecot to a fresh
// one per round, with `mailferry apply --parallel P` and with P mbsync
// processes at a time (one per mailbox), and compares wall times.
func runApplyBench(t *env, o options) *applyResults {
	tb := setupTools(t)
	bin, mbsyncBin, major, minor := tb.mailferry, tb.mbsync, tb.major, tb.minor
	res := &applyResults{Machine: tb.machine, Mailboxes: o.mailboxes, Parallel: o.parallel,
		Rounds: o.rounds, Wall: map[string]float64{}, CPU: map[string]float64{}, Exact: true}

	users := map[string]string{}
	var names []string
	for i := 0; i < o.mailboxes; i++ {
		n := fmt.Sprintf("user%03d", i)
		users[n] = fmt.Sprintf("pw-%d-%d", i, o.seed)
		names = append(names, n)
	}
	opts := func(name string) dovecot.Options {
		return dovecot.Options{Name: name, Separator: ".", Users: users, MasterUser: "ferry", MasterPassword: "master-" + name}
	}
	src := dovecot.Start(t, opts("src"))
	snaps := map[string]*corpus.Snapshot{}
	for i, n := range names {
		m := corpus.Generate(corpus.Options{Seed: o.seed + uint64(i), Folders: o.folders, MessagesPerFolder: o.messages,
			MaxSize: int64(o.maxSize), Odd: true})
		corpus.Seed(t, src.Addr, n, users[n], m)
		snaps[n] = corpus.TakeSnapshot(t, src.Addr, n, users[n])
		for _, f := range snaps[n].Folders {
			for _, msg := range f.Messages {
				res.Messages++
				res.MB += float64(msg.Size) / 1e6
			}
		}
	}
	t.Logf("seeded %d mailboxes: %d messages, %.1f MB", len(names), res.Messages, res.MB)

	walls := map[string][]float64{}
	cpus := map[string][]float64{}
	for round := 1; round <= o.rounds; round++ {
		order := []string{toolMailferry, toolMbsync}
		if round%2 == 0 {
			slices.Reverse(order)
		}
		for _, tool := range order {
			s := t.scope()
			dst := dovecot.Start(s, opts(fmt.Sprintf("dst-%s-%d", tool, round)))
			var wall, cpu time.Duration
			switch tool {
			case toolMailferry:
				wall, cpu = applyOnce(s, o, bin, src, dst)
				for _, n := range names {
					got := corpus.TakeSnapshot(s, dst.Addr, n, users[n])
					if diff := corpus.Compare(snaps[n], got, nil); len(diff) > 0 {
						res.Exact = false
						t.Logf("round %d: %s differs after apply:\n%s", round, n, strings.Join(diff[:min(len(diff), 5)], "\n"))
					}
				}
			case toolMbsync:
				wall, cpu = mbsyncEach(s, o, mbsyncBin, major, minor, src, dst, names)
			}
			t.Logf("round %d: %s took %.2fs wall, %.2fs CPU", round, tool, wall.Seconds(), cpu.Seconds())
			walls[tool] = append(walls[tool], wall.Seconds())
			cpus[tool] = append(cpus[tool], cpu.Seconds())
			s.close()
		}
	}
	for tool, v := range walls {
		res.Wall[tool] = median(v)
		res.CPU[tool] = median(cpus[tool])
	}
	if res.Wall[toolMailferry] > 0 {
		res.Ratio = res.Wall[toolMbsync] / res.Wall[toolMailferry]
	}
	return res
}

// applyOnce plans a drain of src onto dst and applies it.
func applyOnce(t *env, o options, bin string, src, dst *dovecot.Server) (time.Duration, time.Duration) {
	dir := t.TempDir()
	plan, inv := planDrain(t, o, bin, src, dst, dir)
	m, rep, err := runApply(bin, o, plan, inv, dir)
	if err != nil || m.ExitCode != 0 {
		t.Fatalf("mailferry apply: exit %d, %v\n%s", m.ExitCode, err, tail(m.Stderr, 20))
	}
	if rep.Totals.Done != len(src.Users) {
		t.Fatalf("mailferry apply: report %+v", rep.Totals)
	}
	return m.Wall, m.User + m.Sys
}

// mbsyncEach runs one mbsync per mailbox, o.parallel at a time.
func mbsyncEach(t *env, o options, bin string, major, minor int, src, dst *dovecot.Server, names []string) (time.Duration, time.Duration) {
	dir := t.TempDir()
	jobs := make(chan string)
	var mu sync.Mutex
	var cpu time.Duration
	var failed []string
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < o.parallel; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range jobs {
				m, err := runMbsyncFor(dir, bin, major, minor, src, dst, u)
				mu.Lock()
				cpu += m.User + m.Sys
				if err != nil {
					failed = append(failed, fmt.Sprintf("%s: %v", u, err))
				}
				mu.Unlock()
			}
		}()
	}
	for _, u := range names {
		jobs <- u
	}
	close(jobs)
	wg.Wait()
	wall := time.Since(start)
	if len(failed) > 0 {
		t.Fatalf("mbsync failed: %v", failed)
	}
	return wall, cpu
}

func printApply(w io.Writer, r *applyResults) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	m := r.Machine
	p("")
	p("mailferry apply vs mbsync per mailbox: %d mailboxes, %d messages, %.1f MB, %d at a time, median of %d round(s)",
		r.Mailboxes, r.Messages, r.MB, r.Parallel, r.Rounds)
	p("machine    %d CPUs (%s), Linux %s, Go %s; Dovecot %s; %s", m.CPUs, m.CPUModel, m.Kernel, m.GoVersion, m.Dovecot, m.Mbsync)
	p("")
	p("%-16s %12s %12s", "", "wall s", "CPU s")
	for _, tool := range []string{toolMailferry, toolMbsync} {
		p("%-16s %12.2f %12.2f", tool, r.Wall[tool], r.CPU[tool])
	}
	p("")
	p("mailferry apply (plan, copy, delta passes, final delta, verification) is %.2fx as fast as mbsync; exact: %v", r.Ratio, r.Exact)
}
