package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"mailferry/internal/testrig/dovecot"
	"mailferry/migrate"
)

// user is the mailbox both tools copy; it exists on every server (the
// dovecot package's default users).
const user = "alice"

// measurement is what one child process cost.
type measurement struct {
	Wall      time.Duration
	MaxRSSKiB int64 // ru_maxrss: KiB on Linux
	User, Sys time.Duration
	ExitCode  int
	Stdout    []byte
	Stderr    []byte
}

// gnuTime is the path of GNU time when it is installed; the tools run
// under it, so that their peak RSS is their own. A child the bench starts
// itself reports at least the bench's own peak as its ru_maxrss: Go starts
// children with vfork (CLONE_VM), and when the child execs, Linux credits
// the high-water mark of the memory it leaves (the bench's) to the child.
// GNU time fork()s from a process of about 1 MiB and reports its child's
// ru_maxrss (%M).
var gnuTime = findGNUTime()

func findGNUTime() string {
	const p = "/usr/bin/time"
	out, err := exec.Command(p, "--version").CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("GNU")) {
		return ""
	}
	return p
}

// rssSource says how peak RSS is measured, for the output.
func rssSource() string {
	if gnuTime != "" {
		return "ru_maxrss of each tool process, via GNU time"
	}
	return "ru_maxrss; GNU time is not installed, so each value is at least the bench's own peak"
}

// runMeasured runs cmd to completion and measures its wall time, peak
// resident set and CPU time (its own and its children's). With GNU time
// installed, cmd runs under it (see gnuTime): its CPU time is still the
// rusage of the whole tree (GNU time's own is negligible), its peak RSS
// the tool's. If the bench dies, its child (GNU time) is killed; the tool
// under it then loses its servers, which die with the bench.
func runMeasured(cmd *exec.Cmd) (measurement, error) {
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// If the bench dies, its children go too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	rssFile := ""
	if gnuTime != "" && cmd.Err == nil {
		f, err := os.CreateTemp("", "mailferry-bench-rss-")
		if err != nil {
			return measurement{}, err
		}
		rssFile = f.Name()
		f.Close()
		defer os.Remove(rssFile)
		cmd.Args = append([]string{gnuTime, "-f", "%M", "-o", rssFile, cmd.Path}, cmd.Args[1:]...)
		cmd.Path = gnuTime
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return measurement{}, err
	}
	err := cmd.Wait()
	m := measurement{Wall: time.Since(start), Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		return m, err
	}
	st := cmd.ProcessState
	m.ExitCode = st.ExitCode()
	if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
		m.MaxRSSKiB = ru.Maxrss
	}
	if rssFile != "" {
		// "%M\n", after a line such as "Command exited with non-zero
		// status 3" when the tool failed.
		data, err := os.ReadFile(rssFile)
		lines := strings.Fields(string(data))
		if err != nil || len(lines) == 0 {
			return m, fmt.Errorf("GNU time wrote no peak RSS (%v): %q", err, data)
		}
		kib, err := strconv.ParseInt(lines[len(lines)-1], 10, 64)
		if err != nil {
			return m, fmt.Errorf("GNU time's peak RSS %q: %v", data, err)
		}
		m.MaxRSSKiB = kib
	}
	m.User, m.Sys = st.UserTime(), st.SystemTime()
	return m, nil
}

// childEnv returns the environment for a child process: ours without any
// MAILFERRY_* password variable, plus extra.
func childEnv(extra ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "MAILFERRY_") && strings.Contains(kv, "PASSWORD") {
			continue
		}
		out = append(out, kv)
	}
	return append(out, extra...)
}

// runMailferry copies user's mailbox from src to dst with the mailferry
// binary; passwords go through the environment only.
func runMailferry(bin string, src, dst *dovecot.Server, connections int, verify, state string) (measurement, *migrate.Report, error) {
	cmd := exec.Command(bin, "migrate", "--from-tls", "none", "--to-tls", "none",
		"--from", "imap://"+user+"@"+src.Addr,
		"--to", "imap://"+user+"@"+dst.Addr,
		"--json", "--connections", strconv.Itoa(connections), "--verify", verify, "--state", state)
	cmd.Env = childEnv("MAILFERRY_FROM_PASSWORD="+src.Users[user], "MAILFERRY_TO_PASSWORD="+dst.Users[user])
	m, err := runMeasured(cmd)
	if err != nil {
		return m, nil, fmt.Errorf("run mailferry: %w", err)
	}
	var rep migrate.Report
	if jerr := json.Unmarshal(m.Stdout, &rep); jerr != nil {
		return m, nil, fmt.Errorf("mailferry exited %d without a JSON report (%v)\nstderr:\n%s", m.ExitCode, jerr, tail(m.Stderr, 30))
	}
	return m, &rep, nil
}

// mbsyncVersion returns mbsync's version line ("isync 1.4.4") and its
// major and minor numbers.
func mbsyncVersion(bin string) (string, int, int, error) {
	out, err := exec.Command(bin, "--version").CombinedOutput()
	line := strings.TrimSpace(string(out))
	if err != nil {
		return line, 0, 0, fmt.Errorf("%s --version: %v: %s", bin, err, line)
	}
	m := regexp.MustCompile(`(\d+)\.(\d+)`).FindStringSubmatch(line)
	if m == nil {
		return line, 0, 0, fmt.Errorf("%s --version: no version number in %q", bin, line)
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	return line, major, minor, nil
}

// mbsyncConfig renders an mbsync configuration that copies every folder of
// user's mailbox on src into dst, with flags and internal dates, in one
// channel. Version-dependent keywords: isync 1.5 renamed SSLType to
// TLSType; 1.4 renamed Master/Slave to Far/Near.
func mbsyncConfig(major, minor int, src, dst *dovecot.Server, stateDir string) string {
	return mbsyncConfigFor(major, minor, src, dst, stateDir, user)
}

// mbsyncConfigFor is the configuration copying mailbox u.
func mbsyncConfigFor(major, minor int, src, dst *dovecot.Server, stateDir, u string) string {
	atLeast := func(ma, mi int) bool { return major > ma || major == ma && minor >= mi }
	tlsKey := "SSLType"
	if atLeast(1, 5) {
		tlsKey = "TLSType"
	}
	far, near := "Far", "Near"
	if !atLeast(1, 4) {
		far, near = "Master", "Slave"
	}
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("# generated by mailferry/cmd/mailferry-bench")
	// mbsync's only local writes are its sync state; not flushing them is
	// the fast choice, and mailferry keeps no local state at all.
	p("FSync no")
	for _, side := range []struct {
		name string
		s    *dovecot.Server
	}{{"src", src}, {"dst", dst}} {
		host, port, _ := strings.Cut(side.s.Addr, ":")
		p("")
		p("IMAPAccount %s", side.name)
		p("Host %s", host)
		p("Port %s", port)
		p("User %s", u)
		p("Pass %s", mbsyncQuote(side.s.Users[u]))
		p("%s None", tlsKey)
		p("AuthMechs LOGIN")
		p("")
		p("IMAPStore %s", side.name)
		p("Account %s", side.name)
	}
	p("")
	p("Channel copy")
	p("%s :src:", far)
	p("%s :dst:", near)
	p("Patterns *")
	p("Create %s", near)
	p("Sync Pull")
	p("CopyArrivalDate yes")
	p("SyncState %s", mbsyncQuote(stateDir+"/"))
	return b.String()
}

func mbsyncQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// runMbsync copies user's mailbox from src to dst with mbsync. The
// passwords are only in the configuration file (mode 0600).
func runMbsync(t *env, bin string, major, minor int, src, dst *dovecot.Server) (measurement, error) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		return measurement{}, err
	}
	conf := filepath.Join(dir, "mbsyncrc")
	if err := os.WriteFile(conf, []byte(mbsyncConfig(major, minor, src, dst, state)), 0o600); err != nil {
		return measurement{}, err
	}
	cmd := exec.Command(bin, "-c", conf, "-a", "-q")
	cmd.Env = childEnv()
	cmd.Dir = dir
	m, err := runMeasured(cmd)
	if err != nil {
		return m, fmt.Errorf("run mbsync: %w", err)
	}
	return m, nil
}

// serverCPU returns the CPU time (user+system) the Dovecot server's
// processes have used so far: the live processes of its process group
// (the master starts it in its own) plus the children the master has
// reaped. Processes that exit carry their time into the master's
// cutime/cstime.
func serverCPU(s *dovecot.Server) (time.Duration, error) {
	data, err := os.ReadFile(filepath.Join(s.Dir, "run", "master.pid"))
	if err != nil {
		return 0, err
	}
	master, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, fmt.Errorf("master.pid: %w", err)
	}
	procs, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return 0, err
	}
	var ticks int64
	found := false
	for _, f := range procs {
		st, err := os.ReadFile(f)
		if err != nil {
			continue // gone
		}
		// pid (comm) state ppid pgrp ... ; comm may contain spaces.
		i := bytes.LastIndexByte(st, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(st[i+1:]))
		// fields[0] is state (field 3); field n is fields[n-3].
		if len(fields) < 15 {
			continue
		}
		pgrp, _ := strconv.Atoi(fields[5-3])
		if pgrp != master {
			continue
		}
		pid, _ := strconv.Atoi(strings.Fields(string(st[:i]))[0])
		for _, n := range []int{14, 15} { // utime, stime
			v, _ := strconv.ParseInt(fields[n-3], 10, 64)
			ticks += v
		}
		if pid == master {
			found = true
			for _, n := range []int{16, 17} { // cutime, cstime
				v, _ := strconv.ParseInt(fields[n-3], 10, 64)
				ticks += v
			}
		}
	}
	if !found {
		return 0, fmt.Errorf("dovecot master %d not found", master)
	}
	const clockTicks = 100 // USER_HZ on Linux
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// tail returns the last n lines of b.
func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// startPerf starts a system-wide CPU profile (perf record -a -g) written to
// prefix.perf.data; the returned function stops it and writes
// prefix-comm.txt (CPU by process name) and prefix-sym.txt (by process,
// library and function).
func startPerf(t *env, prefix string) func() {
	data := prefix + ".perf.data"
	cmd := exec.Command("perf", "record", "-e", "cpu-clock", "-a", "-g", "-F", "499", "-o", data)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("-profile needs perf: %v", err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGINT)
		// Errors are logged, not fatal: the profile is an extra, and stop
		// may run as a cleanup while the bench is already failing.
		// perf writes its data and then dies of the SIGINT it caught.
		if err := cmd.Wait(); err != nil && !interrupted(cmd.ProcessState) {
			t.Logf("perf record: %v\n%s", err, stderr.Bytes())
			return
		}
		for _, r := range []struct{ suffix, sort string }{{"-comm.txt", "comm"}, {"-sym.txt", "comm,dso,sym"}} {
			out, err := exec.Command("perf", "report", "-i", data, "--stdio", "--no-children", "-g", "none",
				"--percent-limit", "0.3", "--sort", r.sort).Output()
			if err == nil {
				err = os.WriteFile(prefix+r.suffix, out, 0o644)
			}
			if err != nil {
				t.Logf("perf report: %v", err)
			}
		}
	}
	t.Cleanup(stop)
	time.Sleep(time.Second) // let perf set up before the measured work starts
	return stop
}

func interrupted(st *os.ProcessState) bool {
	ws, ok := st.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGINT
}
