package main

import (
	"math"
	"os/exec"
	"runtime"
	"sync"
	"testing"
)

func TestSummarizeFleet(t *testing.T) {
	c := realisticCorpus{Messages: 2000, MB: 34, SingleMessages: 100, SingleMB: 1.7}
	runs := []fleetRun{
		{WallSeconds: 4, ToolCPU: 3, SourceCPU: 1, TargetCPU: 2, MachineCPU: 9, PeakRSSKiB: 30 << 10},
		{WallSeconds: 2, ToolCPU: 1, SourceCPU: 1, TargetCPU: 1, MachineCPU: 5, PeakRSSKiB: 10 << 10},
		{WallSeconds: 3, ToolCPU: 2, SourceCPU: 1, TargetCPU: 1, MachineCPU: 7, PeakRSSKiB: 20 << 10},
	}
	near := func(name string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-9 {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	s := summarizeFleet(entry{groupFleet, peerMbsync}, runs, c)
	near("wall", s.WallSeconds, 3)
	near("messages/s", s.MessagesPerSecond, 2000.0/3)
	near("MB/s", s.MBPerSecond, 34.0/3)
	near("tool CPU per 1k", s.ToolCPUPer1k, 2*1000.0/2000)
	near("tool+dovecot CPU per 1k", s.ServersCPUPer1k, 4*1000.0/2000) // medians of 6, 3, 4
	near("machine CPU per 1k", s.MachineCPUPer1k, 7*1000.0/2000)
	near("target CPU per 1k", s.TargetCPUPer1k, 1*1000.0/2000)
	near("peak RSS", s.PeakRSSMiB, 20)
	if !s.Exact {
		t.Errorf("exact = false for runs without differences")
	}

	runs[1].Differences = 3
	s = summarizeFleet(entry{groupSingle, "doveadm backup"}, runs, c)
	if s.Exact {
		t.Errorf("exact = true with a run that differs")
	}
	near("single messages/s", s.MessagesPerSecond, 100.0/3)
	near("single tool CPU per 1k", s.ToolCPUPer1k, 2*1000.0/100)
}

func TestForEachVisitsEveryNameOnce(t *testing.T) {
	names := []string{"a", "b", "c", "d", "e"}
	var mu sync.Mutex
	seen := map[string]int{}
	forEach(2, names, func(i int, n string) {
		if names[i] != n {
			t.Errorf("index %d with name %q", i, n)
		}
		mu.Lock()
		seen[n]++
		mu.Unlock()
	})
	for _, n := range names {
		if seen[n] != 1 {
			t.Errorf("%q visited %d times", n, seen[n])
		}
	}
}

func TestMachineBusy(t *testing.T) {
	a, err := machineBusy()
	if err != nil {
		t.Fatal(err)
	}
	b, err := machineBusy()
	if err != nil {
		t.Fatal(err)
	}
	if a <= 0 || b < a {
		t.Errorf("busy time %v then %v: want positive and not decreasing", a, b)
	}
}

// TestPeakRSSIsTheTools checks that a tool's peak RSS is its own, not the
// bench's: a child started directly would report at least the parent's
// high-water mark (see gnuTime).
func TestPeakRSSIsTheTools(t *testing.T) {
	if gnuTime == "" {
		t.Skip("GNU time is not installed (/usr/bin/time)")
	}
	// The bench grows to 64 MiB, touched.
	ballast := make([]byte, 64<<20)
	for i := range ballast {
		ballast[i] = byte(i)
	}
	m, err := runMeasured(exec.Command("/bin/sh", "-c", "exit 3"))
	if err != nil {
		t.Fatal(err)
	}
	if m.ExitCode != 3 {
		t.Errorf("exit code %d, want 3 (through GNU time)", m.ExitCode)
	}
	if m.MaxRSSKiB <= 0 || m.MaxRSSKiB > 16<<10 {
		t.Errorf("peak RSS of sh %d KiB with a bench of 64 MiB: want the tool's own, a few MiB", m.MaxRSSKiB)
	}
	runtime.KeepAlive(ballast)
}
