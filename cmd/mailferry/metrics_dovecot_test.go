package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mailferry/internal/testrig/dovecot"
)

// requirePromtool returns the path of promtool. Without it the test is
// skipped, saying why, unless MAILFERRY_REQUIRE_DOVECOT=1 (CI, whose
// scripts/install-deps.sh installs the prometheus package), which fails it.
func requirePromtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv(dovecot.RequireEnv) == "1" {
			t.Fatalf("promtool is not installed (Debian: the prometheus package, see scripts/install-deps.sh), and %s=1 requires it", dovecot.RequireEnv)
		}
		t.Skipf("skipping: promtool is not installed (Debian: the prometheus package; set %s=1 to fail instead)", dovecot.RequireEnv)
	}
	return path
}

// promtoolCheck runs `promtool check metrics` on an exposition: its lint
// (names, units, types, help) must find nothing.
func promtoolCheck(t *testing.T, promtool, what string, exposition []byte) {
	t.Helper()
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(exposition)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics on %s: %v\n%s", what, err, out)
	}
}

// parseExposition reads a Prometheus text exposition into series -> value.
func parseExposition(t *testing.T, body []byte) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("exposition line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// sumSeries adds up every series of the metric name, whatever its labels.
func sumSeries(series map[string]float64, name string) float64 {
	var sum float64
	for k, v := range series {
		if k == name || strings.HasPrefix(k, name+"{") {
			sum += v
		}
	}
	return sum
}

// A drain's /metrics, scraped while it runs (held in one mailbox's cutover
// hook), passes promtool's lint and has the build, the Go runtime and the
// process, the plan's totals, copies by route, IMAP latency histograms
// and wait times by cluster; at the end the textfile (written atomically,
// without the runtime's series) and the Pushgateway have the final values.
func TestMetricsE2EScrapeTextfilePush(t *testing.T) {
	promtool := requirePromtool(t)
	r := newApplyRig(t, 3)
	const slow = "user01"
	db := filepath.Join(r.dir, "state.db")
	textfile := filepath.Join(r.dir, "mailferry.prom")
	request := filepath.Join(r.dir, "scrape.request")
	hook := r.script("hook.sh", `[ "$MAILFERRY_MAILBOX" = `+slow+` ] || exit 0
touch `+request+`
i=0
while [ -e `+request+` ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
[ ! -e `+request+` ]
`)
	var pushMu sync.Mutex
	var pushed [][]byte
	var pushPaths []string
	gateway := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		pushMu.Lock()
		pushed = append(pushed, body)
		pushPaths = append(pushPaths, req.Method+" "+req.URL.Path)
		pushMu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	defer gateway.Close()
	addr := freeAddr(t)

	type result struct {
		code           int
		stdout, stderr string
	}
	done := make(chan result, 1)
	go func() {
		code, stdout, stderr := runCLI(t, nil, "drain", "alpha", "-i", r.inv, "--yes", "--state", db, "--cutover-exec", hook,
			"--metrics-addr", addr, "--metrics-textfile", textfile, "--metrics-push", gateway.URL, "--metrics-interval", "50ms")
		done <- result{code, stdout, stderr}
	}()
	deadline := time.After(60 * time.Second)
	for waiting := true; waiting; {
		select {
		case res := <-done:
			t.Fatalf("drain ended before the hook of %s ran: exit %d\nstderr:\n%s\nstdout:\n%s", slow, res.code, res.stderr, res.stdout)
		case <-deadline:
			t.Fatalf("the hook of %s did not run within 60 s", slow)
		case <-time.After(20 * time.Millisecond):
			_, err := os.Stat(request)
			waiting = err != nil
		}
	}

	resp, err := http.Get("http://" + addr + "/metrics")
	must(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	must(t, err)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s\n%s", resp.Status, body)
	}
	promtoolCheck(t, promtool, "a scrape of the running drain", body)
	live := parseExposition(t, body)

	var plannedBytes, plannedMessages float64
	for _, mb := range r.mailboxes {
		plannedBytes += float64(r.corpora[mb].TotalBytes())
		plannedMessages += float64(r.corpora[mb].TotalMessages())
	}
	var build string
	for k, v := range live {
		if strings.HasPrefix(k, "mailferry_build_info{") && v == 1 && strings.Contains(k, `version="`) && strings.Contains(k, `revision="`) {
			build = k
		}
	}
	if build == "" {
		t.Errorf("no mailferry_build_info with version and revision labels at 1")
	}
	for _, want := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_resident_memory_bytes", "process_cpu_seconds_total"} {
		if _, ok := live[want]; !ok {
			t.Errorf("the scrape lacks %s (Go and process collectors)", want)
		}
	}
	if v := live["mailferry_planned_moves"]; v != 3 {
		t.Errorf("mailferry_planned_moves = %v, want 3", v)
	}
	if v := live["mailferry_planned_bytes"]; v != plannedBytes {
		t.Errorf("mailferry_planned_bytes = %v, want %v (the plan's)", v, plannedBytes)
	}
	if v := sumSeries(live, "mailferry_messages_copied_total"); v < 1 {
		t.Errorf("mailferry_messages_copied_total sums to %v while the run is in its cutovers", v)
	}
	for k := range live {
		if strings.HasPrefix(k, "mailferry_bytes_copied_total{") && !strings.Contains(k, `from="alpha"`) {
			t.Errorf("copies of a drain of alpha labelled %s", k)
		}
	}
	for _, c := range rigClusters {
		for _, reason := range []string{"connection", "slot", "rate", "window"} {
			k := `mailferry_cluster_wait_seconds_total{cluster="` + c + `",reason="` + reason + `"}`
			if v, ok := live[k]; !ok || v < 0 {
				t.Errorf("%s = %v, %v; want a non-negative counter", k, v, ok)
			}
		}
	}
	if v := live[`mailferry_imap_latency_seconds_count{cluster="alpha",kind="command"}`]; v < 1 {
		t.Errorf("alpha's command latency histogram has %v samples, want the commands sent so far", v)
	}
	if live[`mailferry_imap_latency_seconds_bucket{cluster="alpha",kind="command",le="+Inf"}`] != live[`mailferry_imap_latency_seconds_count{cluster="alpha",kind="command"}`] {
		t.Errorf("alpha's latency histogram: the +Inf bucket is not the count")
	}
	if _, ok := live[`mailferry_cluster_latency_seconds{cluster="alpha"}`]; ok {
		t.Errorf("the p90 latency gauge is still there; the histogram replaces it")
	}

	must(t, os.Remove(request))
	var res result
	select {
	case res = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("drain did not end within 60 s of the scrape")
	}
	if res.code != exitOK {
		t.Fatalf("drain: exit %d\nstderr:\n%s\nstdout:\n%s", res.code, res.stderr, res.stdout)
	}

	data, err := os.ReadFile(textfile)
	must(t, err)
	promtoolCheck(t, promtool, "the textfile", data)
	final := parseExposition(t, data)
	if v := final[`mailferry_moves_finished_total{result="done"}`]; v != 3 {
		t.Errorf(`textfile: mailferry_moves_finished_total{result="done"} = %v, want 3`, v)
	}
	if v := final["mailferry_moves_finished_bytes"]; v != plannedBytes {
		t.Errorf("textfile: mailferry_moves_finished_bytes = %v, want every planned byte (%v)", v, plannedBytes)
	}
	if v := sumSeries(final, "mailferry_messages_copied_total"); v != plannedMessages {
		t.Errorf("textfile: messages copied sum to %v, want %v", v, plannedMessages)
	}
	if v := sumSeries(final, "mailferry_bytes_copied_total"); v != plannedBytes {
		t.Errorf("textfile: bytes copied sum to %v, want %v", v, plannedBytes)
	}
	if sumSeries(final, "go_goroutines") != 0 || bytes.Contains(data, []byte("process_cpu_seconds_total")) {
		t.Errorf("the textfile has the runtime's series (they clash with node_exporter's own)")
	}
	if matches, _ := filepath.Glob(filepath.Join(r.dir, ".mailferry.prom.*")); len(matches) > 0 {
		t.Errorf("temporary files of the textfile left behind: %v", matches)
	}
	if fi, err := os.Stat(textfile); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("textfile: %v, mode %v; want 0644 (node_exporter runs as another user)", err, fi.Mode().Perm())
	}

	pushMu.Lock()
	defer pushMu.Unlock()
	if len(pushed) < 2 {
		t.Fatalf("the Pushgateway got %d pushes, want one at the start and one at the end at least", len(pushed))
	}
	host, _ := os.Hostname()
	if want := "PUT /metrics/job/mailferry/instance/" + host; pushPaths[len(pushPaths)-1] != want {
		t.Errorf("last push %q, want %q", pushPaths[len(pushPaths)-1], want)
	}
	if !bytes.Contains(pushed[len(pushed)-1], []byte("mailferry_moves_finished_bytes")) {
		t.Errorf("the last push lacks the run's series")
	}
}
