package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestUsageErrorsExit2: bad arguments, unknown flags and commands, format
// words given to -o, bad log flags: exit 2 on every command, nothing done.
func TestUsageErrorsExit2(t *testing.T) {
	exampleInventory, err := filepath.Abs(exampleInventory) // each case runs in a directory of its own
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string // in stderr
	}{
		{[]string{"apply"}, "accepts 1 arg(s)"},
		{[]string{"apply", "a.json", "b.json", "-i", "x.yaml"}, "accepts 1 arg(s)"},
		{[]string{"preflight"}, "accepts 1 arg(s)"},
		{[]string{"drain"}, "accepts 1 arg(s)"},
		{[]string{"complete"}, "requires at least 1 arg(s)"},
		{[]string{"plan", "extra"}, "unknown command"},
		{[]string{"status", "extra"}, "unknown command"},
		{[]string{"version", "extra"}, "unknown command"},
		{[]string{"migrate", "extra"}, "unknown command"},
		{[]string{"rebalance", "extra"}, "unknown command"},
		{[]string{"demo", "extra"}, "unknown command"},
		{[]string{"discover", "extra"}, "unknown command"},
		{[]string{"inventory", "chekc"}, `unknown command "chekc"`},
		{[]string{"inventory", "check", "extra"}, "unknown command"},
		{[]string{"bogus"}, `unknown command "bogus"`},
		{[]string{"plan", "--no-such-flag"}, "unknown flag"},
		{[]string{"apply", "p.json", "--no-such-flag"}, "unknown flag"},
		{[]string{"migrate", "--connections", "many"}, "invalid argument"},
		{[]string{"plan", "-i", exampleInventory, "--drain", "bravo", "-o", "json"}, "names the file to write"},
		{[]string{"discover", "-i", exampleInventory, "-o", "yaml"}, "names the file to write"},
		{[]string{"apply", "p.json", "-i", exampleInventory, "--report", "json"}, "names the file to write"},
		{[]string{"version", "--log-format", "xml"}, `--log-format "xml"`},
		{[]string{"version", "--log-level", "loud"}, `--log-level "loud"`},
		{[]string{"docs"}, "say --man DIR"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Chdir(t.TempDir())
			code, stdout, stderr := runCLI(t, nil, tc.args...)
			if code != exitUsage || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr, exitUsage, tc.want)
			}
			if stdout != "" {
				t.Errorf("a usage error printed on stdout: %q", stdout)
			}
			if entries, _ := os.ReadDir("."); len(entries) != 0 {
				t.Errorf("a usage error left %s in the working directory", entries[0].Name())
			}
		})
	}
	// The help of a group or the root alone is no error.
	for _, args := range [][]string{{}, {"inventory"}, {"--help"}, {"apply", "--help"}} {
		if code, stdout, _ := runCLI(t, nil, args...); code != exitOK || !strings.Contains(stdout, "Usage:") {
			t.Errorf("%v: exit %d, want 0 and the help", args, code)
		}
	}
}

// TestEveryMoveFailedOnConfigurationExits2: a run whose every move fails
// on its configuration (here: no cluster's secret resolves) exits 2, not
// 3: no rerun helps until the configuration changes.
func TestEveryMoveFailedOnConfigurationExits2(t *testing.T) {
	t.Setenv("MAILFERRY_BRAVO_PASSWORD", "")
	os.Unsetenv("MAILFERRY_BRAVO_PASSWORD")
	report := filepath.Join(t.TempDir(), "report.json")
	code, _, stderr := runCLI(t, nil, "rebalance", "-i", exampleInventory, "--skip-preflight", "--max-moves", "3", "--report", report)
	if code != exitUsage || !strings.Contains(stderr, "every move failed on its configuration") {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitUsage, stderr)
	}
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Totals struct {
			Moves               int `json:"moves"`
			Failed              int `json:"failed"`
			ConfigurationFailed int `json:"configuration_failed"`
		} `json:"totals"`
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Totals.Moves == 0 || rep.Totals.Failed != rep.Totals.Moves || rep.Totals.ConfigurationFailed != rep.Totals.Failed {
		t.Errorf("totals %+v: want every move failed on configuration", rep.Totals)
	}
}

var stampRe = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d) `)

// TestLogLines: off a terminal every stderr line starts with a timestamp;
// --log-format json makes every line a JSON record with time, level and
// msg (the final error too, with its exit code); --log-level warn drops
// the informational lines.
func TestLogLines(t *testing.T) {
	args := []string{"drain", "bravo", "-i", exampleInventory} // prints the plan on stderr, then refuses: no terminal to ask on
	code, _, stderr := runCLI(t, nil, args...)
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	if code != exitUsage || len(lines) < 5 {
		t.Fatalf("exit %d, %d lines; want %d and the plan:\n%s", code, len(lines), exitUsage, stderr)
	}
	for _, l := range lines {
		if !stampRe.MatchString(l) {
			t.Errorf("a line without a timestamp: %q", l)
		}
	}
	if last := lines[len(lines)-1]; !strings.Contains(last, "mailferry: error: ") || !strings.Contains(last, "say --yes") {
		t.Errorf("last line %q: want the error", last)
	}

	code, _, stderr = runCLI(t, nil, append(args, "--log-format", "json")...)
	lines = strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	var last map[string]any
	for _, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("--log-format json: not a JSON line: %q", l)
		}
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := rec[k]; !ok {
				t.Errorf("record %q lacks %q", l, k)
			}
		}
		last = rec
	}
	if code != exitUsage || last["level"] != "ERROR" || last["exit_code"] != float64(exitUsage) || !strings.Contains(last["msg"].(string), "say --yes") {
		t.Errorf("exit %d, last record %v: want the error at ERROR with exit_code 2", code, last)
	}

	code, _, stderr = runCLI(t, nil, append(args, "--log-level", "warn")...)
	lines = strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	if code != exitUsage || len(lines) != 1 || !strings.Contains(lines[0], "error: ") {
		t.Errorf("--log-level warn: exit %d, stderr %q; want only the error", code, stderr)
	}
}

// TestLineLevel: a line's level comes from its prefix.
func TestLineLevel(t *testing.T) {
	for line, want := range map[string]string{
		"mailferry: warning: x":             "WARN",
		"mailferry: preflight: warning: x":  "WARN",
		"mailferry: error: x":               "ERROR",
		"mailferry: user1: copying":         "INFO",
		"discover bravo [1/3] alice: 2 KiB": "INFO",
	} {
		if got := lineLevel(line).String(); got != want {
			t.Errorf("%q: level %s, want %s", line, got, want)
		}
	}
}

// TestDebugIMAP: --debug-imap traces both sides as debug lines on stderr,
// --debug-imap-dir into a 0600 file per mailbox; neither holds a password.
func TestDebugIMAP(t *testing.T) {
	env := map[string]string{"MAILFERRY_FROM_PASSWORD": "src-pw", "MAILFERRY_TO_PASSWORD": "dst-pw"}
	src, dst, _ := seededPair(t)
	base := []string{"migrate", "--from-tls", "none", "--to-tls", "none", "--json", "--state", "none", "--from", "imap://alice@" + src.Addr, "--to", "imap://alice@" + dst.Addr}
	code, _, stderr := runCLI(t, env, append(base, "--debug-imap", "--log-format", "json")...)
	if code != exitOK || !strings.Contains(stderr, `"level":"DEBUG"`) || !strings.Contains(stderr, "source: ") || !strings.Contains(stderr, "target: ") {
		t.Fatalf("--debug-imap: exit %d; want debug records of both sides:\n%.3000s", code, stderr)
	}
	if strings.Contains(stderr, "src-pw") || strings.Contains(stderr, "dst-pw") {
		t.Fatal("--debug-imap: a password in the trace")
	}

	src, dst, _ = seededPair(t)
	dir := filepath.Join(t.TempDir(), "traces")
	base = []string{"migrate", "--from-tls", "none", "--to-tls", "none", "--json", "--state", "none", "--from", "imap://alice@" + src.Addr, "--to", "imap://alice@" + dst.Addr}
	code, _, stderr = runCLI(t, env, append(base, "--debug-imap-dir", dir)...)
	if code != exitOK {
		t.Fatalf("--debug-imap-dir: exit %d: %s", code, stderr)
	}
	path := filepath.Join(dir, "alice.imap.log")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %v, want 0600", path, fi.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	if !bytes.Contains(data, []byte("source: ")) || !bytes.Contains(data, []byte("target: ")) || !stampRe.Match(data) {
		t.Errorf("%s: want timestamped lines of both sides:\n%.1000s", path, data)
	}
	if bytes.Contains(data, []byte("src-pw")) || bytes.Contains(data, []byte("dst-pw")) {
		t.Error("--debug-imap-dir: a password in the trace file")
	}
	if strings.Contains(stderr, "source: ") {
		t.Errorf("--debug-imap-dir also traced to stderr:\n%.1000s", stderr)
	}
}

// TestHelpOfEveryCommand: every command's help has examples and exit
// codes; no flag's usage makes pflag invent a placeholder for a flag that
// takes none (a backquoted word in a bool flag's usage) or repeat the
// placeholder in parentheses.
func TestHelpOfEveryCommand(t *testing.T) {
	root := newRootCommand(strings.NewReader(""), &bytes.Buffer{}, newLogOutput(&bytes.Buffer{}, nil))
	walkCommands(root, func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" || c.Name() == cobra.ShellCompRequestCmd || c.Name() == cobra.ShellCompNoDescRequestCmd {
			return
		}
		if c.Parent() != nil && c.Parent().Name() == "completion" {
			return // cobra's own, one per shell
		}
		if c.Example == "" {
			t.Errorf("%s: no examples", c.CommandPath())
		}
		if !strings.Contains(c.Long, "Exit codes") {
			t.Errorf("%s: no exit codes in its help", c.CommandPath())
		}
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			name, usage := pflag.UnquoteUsage(f)
			if f.Value.Type() == "bool" && strings.Contains(f.Usage, "`") {
				t.Errorf("%s --%s: a bool flag with a backquoted word, shown as --%s %s", c.CommandPath(), f.Name, f.Name, name)
			}
			if name != "" && strings.Contains(usage, "("+name+")") {
				t.Errorf("%s --%s: placeholder repeated: %q", c.CommandPath(), f.Name, usage)
			}
		})
	})
}

// TestCompletion: clusters and mailboxes complete from the inventory given
// by -i, enumerated flags from their values.
func TestCompletion(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"drain", "-i", exampleInventory, ""}, []string{"alpha", "bravo", "charlie", "delta"}},
		{[]string{"plan", "-i", exampleInventory, "--relieve", "ch"}, []string{"charlie"}},
		{[]string{"plan", "-i", exampleInventory, "--pin", "ben.00"}, []string{"ben.0001@example.com"}},
		{[]string{"apply", "p.json", "--verify", ""}, []string{"full", "size", "none"}},
		{[]string{"status", "--log-level", ""}, []string{"debug", "info", "warn", "error"}},
		{[]string{"migrate", "--from-tls", ""}, []string{"none", "starttls", "tls"}},
	}
	plan := filepath.Join(t.TempDir(), "plan.json")
	// Two moves do not drain bravo: the goal is not met (exit 3), the plan is written.
	if code, _, stderr := runCLI(t, nil, "plan", "-i", exampleInventory, "--drain", "bravo", "--max-moves", "2", "-o", plan); code != exitPartial {
		t.Fatalf("plan: exit %d: %s", code, stderr)
	}
	var p struct{ Moves []struct{ Mailbox string } }
	data, _ := os.ReadFile(plan)
	if err := json.Unmarshal(data, &p); err != nil || len(p.Moves) != 2 {
		t.Fatalf("plan %s: %v", data, err)
	}
	tests = append(tests, struct {
		args []string
		want []string
	}{[]string{"complete", plan, p.Moves[0].Mailbox, ""}, []string{p.Moves[1].Mailbox}})
	for _, tc := range tests {
		code, stdout, stderr := runCLI(t, nil, append([]string{cobra.ShellCompRequestCmd}, tc.args...)...)
		if code != exitOK {
			t.Errorf("%v: exit %d: %s", tc.args, code, stderr)
			continue
		}
		for _, w := range tc.want {
			if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(w) + `(\t|$)`).MatchString(stdout) {
				t.Errorf("completing %v: no %q in\n%s", tc.args, w, stdout)
			}
		}
	}
}

// TestDocsUpToDate: docs/ holds the Markdown reference generated from the
// command tree (-update, or go generate ./cmd/mailferry, rewrites it), and
// mailferry docs writes man pages.
func TestDocsUpToDate(t *testing.T) {
	const docsDir = "../../docs"
	tmp := t.TempDir()
	man := filepath.Join(tmp, "man")
	if code, _, stderr := runCLI(t, nil, "docs", "--markdown", tmp, "--man", man); code != exitOK {
		t.Fatalf("docs: exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(man, "mailferry-apply.1")); err != nil {
		t.Errorf("no man page of apply: %v", err)
	}
	got, _ := filepath.Glob(filepath.Join(tmp, "*.md"))
	if len(got) < 12 {
		t.Fatalf("%d Markdown pages", len(got))
	}
	for _, p := range got {
		want, _ := os.ReadFile(p)
		path := filepath.Join(docsDir, filepath.Base(p))
		if updateGolden() {
			if err := os.MkdirAll(docsDir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		have, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(have, want) {
			t.Errorf("%s is not what the commands say (run: go generate ./cmd/mailferry)", path)
		}
	}
}

// TestVersionFromBuildInfo: a binary built by go build in a git checkout
// says its revision, as --version and as version --json. The checkout is
// a clone of this one's HEAD (go build stamps no VCS information in a git
// worktree, whose .git is a file).
func TestVersionFromBuildInfo(t *testing.T) {
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Skip("no git: the revision cannot be compared")
	}
	top, err := exec.Command(gitBin, "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("not in a git checkout (%v): nothing to stamp", err)
	}
	head, err := exec.Command(gitBin, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	rev := strings.TrimSpace(string(head))
	dir := filepath.Join(t.TempDir(), "checkout")
	if out, err := exec.Command(gitBin, "clone", "-q", "--no-hardlinks", strings.TrimSpace(string(top)), dir).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	bin := filepath.Join(t.TempDir(), "mailferry")
	build := exec.Command("go", "build", "-buildvcs=true", "-o", bin, "./cmd/mailferry")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil || !strings.Contains(string(out), "revision "+rev) {
		t.Errorf("--version: %q (%v); want revision %s", out, err, rev)
	}
	out, err = exec.Command(bin, "version", "--json").Output()
	var v versionInfo
	if err != nil || json.Unmarshal(out, &v) != nil || v.Revision != rev || v.Version == "" || v.Version == "(devel)" || v.RevisionTime == "" {
		t.Errorf("version --json: %s (%v); want revision %s, its time and a version", out, err, rev)
	}
}

// TestApplyDebugIMAPDir: apply --debug-imap-dir writes each move's trace,
// both sides, into a 0600 file of its own, without the passwords.
func TestApplyDebugIMAPDir(t *testing.T) {
	src, dst, mbox := seededPair(t)
	dir := t.TempDir()
	var y strings.Builder
	y.WriteString("version: 1\nclusters:\n")
	for _, c := range []struct{ name, addr, pw string }{{"alpha", src.Addr, "src-pw"}, {"bravo", dst.Addr, "dst-pw"}} {
		creds := filepath.Join(dir, c.name+".csv")
		if err := os.WriteFile(creds, []byte("alice,alice,"+c.pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		y.WriteString("  - name: " + c.name + "\n    url: imap://" + c.addr + "\n    tls: none\n" +
			"    auth: {method: credentials-file, credentials_file: " + creds + "}\n    capacity: {bytes: 1GiB, load: 100}\n")
	}
	y.WriteString("mailboxes:\n  - {name: alice, cluster: alpha, bytes: 1000, load: 1}\n")
	inv := filepath.Join(dir, "inv.yaml")
	if err := os.WriteFile(inv, []byte(y.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	plan := filepath.Join(dir, "plan.json")
	if code, _, stderr := runCLI(t, nil, "plan", "-i", inv, "--drain", "alpha", "-o", plan); code != exitOK {
		t.Fatalf("plan: exit %d: %s", code, stderr)
	}
	traces := filepath.Join(dir, "traces")
	code, stdout, stderr := runCLI(t, nil, "apply", plan, "-i", inv, "--routed", "--debug-imap-dir", traces, "--json")
	if code != exitOK {
		t.Fatalf("apply: exit %d\n%s\n%s", code, stdout, stderr)
	}
	path := filepath.Join(traces, "alice.imap.log")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if fi.Mode().Perm() != 0o600 || !bytes.Contains(data, []byte("source: ")) || !bytes.Contains(data, []byte("target: ")) {
		t.Errorf("%s: mode %v, want 0600 and both sides:\n%.1000s", path, fi.Mode().Perm(), data)
	}
	if bytes.Contains(data, []byte("src-pw")) || bytes.Contains(data, []byte("dst-pw")) {
		t.Error("a password in the trace file")
	}
	if n := mbox.TotalMessages(); !bytes.Contains(data, []byte("APPEND")) || n == 0 {
		t.Errorf("the trace shows no APPEND of the %d messages", n)
	}
}
