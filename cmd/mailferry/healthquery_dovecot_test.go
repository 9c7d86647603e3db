package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"mailferry/internal/testrig/dovecot"
	"mailferry/internal/testrig/faultproxy"
	promrig "mailferry/internal/testrig/promserver"
	"mailferry/migrate"
)

// The storage's own signal throttles a real copy: a real Prometheus
// scrapes a gauge the test sets, apply's poller reads it every second.
// The copy is pinned at its first body FETCH (held at a counting proxy in
// front of the source); the value rises above slow_above and the source's
// concurrency limit shrinks; above pause_above the gate closes, and once
// the held FETCH is let go no other body FETCH reaches the source while
// paused; the value falls, the copy resumes and the target equals the
// source exactly. The report and the metrics show the signal.
func TestApplyHealthQueryThrottlesOnPrometheus(t *testing.T) {
	dovecot.Require(t)
	promrig.Require(t)
	r := newApplyRigWith(t, 1, nil)
	exporter := promrig.StartExporter(t, "test_storage_await")
	prom := promrig.Start(t, time.Second, exporter.Addr)
	waitPromValue(t, prom.URL, "max(test_storage_await)", 0)

	proxy := faultproxy.StartCounter(t, r.clusters["alpha"].Addr, faultproxy.IsBodyFetch)
	inv := r.writeHealthInventory(proxy.Addr, prom.URL)
	plan := filepath.Join(r.dir, "plan.json")
	if code, _, stderr := runCLI(t, nil, "plan", "-i", inv, "--drain", "alpha", "-o", plan); code != exitOK {
		t.Fatalf("plan: exit %d\n%s", code, stderr)
	}
	metricsAddr := freeAddr(t)
	report := filepath.Join(r.dir, "report.json")
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	type result struct {
		code           int
		stdout, stderr string
	}
	done := make(chan result, 1)
	proxy.Hold() // the first body FETCH waits in the proxy
	go func() {
		var out, errb bytes.Buffer
		code := run(ctx, []string{"apply", plan, "-i", inv, "--state", filepath.Join(r.dir, "state.db"), "--report", report,
			"--routed", "--parallel", "1", "--connections", "1", "--metrics-addr", metricsAddr}, strings.NewReader(""), &out, &errb)
		done <- result{code, out.String(), errb.String()}
	}()
	failIfDone := func(what string) {
		t.Helper()
		select {
		case res := <-done:
			t.Fatalf("%s: apply ended with exit %d\nstderr:\n%s\nstdout:\n%s", what, res.code, res.stderr, res.stdout)
		default:
		}
	}
	metrics := "http://" + metricsAddr + "/metrics"
	healthWait(t, "the first body FETCH held at the proxy", func() bool { failIfDone("before the first FETCH"); return proxy.Held() == 1 })
	limit, ok := healthMetric(metrics, "mailferry_cluster_concurrency_limit", "alpha")
	if !ok || limit < 2 {
		t.Fatalf("limit of alpha before the signal rose: %v (found %v), want the cap (8) or near it", limit, ok)
	}

	exporter.Set(5) // above slow_above 3
	healthWait(t, "alpha's limit to shrink", func() bool {
		lim, ok1 := healthMetric(metrics, "mailferry_cluster_concurrency_limit", "alpha")
		val, ok2 := healthMetric(metrics, "mailferry_health_value", "alpha")
		return ok1 && ok2 && lim < limit && val == 5
	})
	if p, _ := healthMetric(metrics, "mailferry_health_paused", "alpha"); p != 0 {
		t.Fatalf("paused at value 5 (pause_above 10)")
	}

	exporter.Set(20) // above pause_above 10
	healthWait(t, "alpha to pause", func() bool {
		p, ok := healthMetric(metrics, "mailferry_health_paused", "alpha")
		return ok && p == 1
	})
	before := proxy.Matched()
	proxy.Release()
	// Every poll in this window reads 20: nothing may start a batch.
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		failIfDone("while paused")
		if n := proxy.Matched(); n != before {
			t.Fatalf("%d body FETCH commands reached the source while paused (%d before)", n-before, before)
		}
	}

	exporter.Set(1) // below both thresholds
	var res result
	select {
	case res = <-done:
	case <-ctx.Done():
		t.Fatal("apply did not finish within 3 minutes after the signal fell")
	}
	if res.code != exitOK {
		t.Fatalf("apply: exit %d\nstderr:\n%s\nstdout:\n%s", res.code, res.stderr, res.stdout)
	}
	if n := proxy.Matched(); n <= before {
		t.Fatalf("no body FETCH after the pause (%d in all): the copy did not resume", n)
	}
	for _, want := range []string{"storage health alpha: ok at the end"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, res.stdout)
		}
	}
	data, err := os.ReadFile(report)
	must(t, err)
	var rep migrate.ApplyReport
	must(t, json.Unmarshal(data, &rep))
	if rep.Totals.Done != 1 {
		t.Fatalf("report totals %+v", rep.Totals)
	}
	r.exact(&rep)
	// The report's throttle section of alpha, by its JSON names.
	var raw struct {
		Throttle []map[string]any `json:"throttle"`
	}
	must(t, json.Unmarshal(data, &raw))
	var alpha map[string]any
	for _, th := range raw.Throttle {
		if th["Name"] == "alpha" || th["name"] == "alpha" {
			alpha = th
		}
	}
	if alpha == nil {
		t.Fatalf("no throttle section for alpha in %s", data)
	}
	num := func(k string) float64 { f, _ := alpha[k].(float64); return f }
	if alpha["health_level"] != "ok" || num("health_value") != 1 || num("health_pauses") != 1 || num("health_paused_seconds") < 4 ||
		num("health_waits") < 1 || num("health_decreases") < 1 || num("health_errors") != 0 {
		t.Errorf("alpha's throttle section: %v", alpha)
	}
	for _, th := range raw.Throttle {
		if th["Name"] == "bravo" || th["name"] == "bravo" {
			if _, ok := th["health_level"]; ok {
				t.Errorf("bravo has no health_query but reports %v", th)
			}
		}
	}
}

// A health query that returns nothing is reported as a warning naming
// the cluster and the query, and with on_error: ignore the copy runs as
// without one and completes exactly; the report counts the failures.
func TestApplyHealthQueryEmptyIgnored(t *testing.T) {
	dovecot.Require(t)
	r := newApplyRigWith(t, 1, nil)
	empty := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"status":"success","data":{"resultType":"vector","result":[]}}`)
	}))
	t.Cleanup(empty.Close)
	inv := r.writeHealthInventory(r.clusters["alpha"].Addr, empty.URL)
	data, err := os.ReadFile(inv)
	must(t, err)
	must(t, os.WriteFile(inv, bytes.Replace(data, []byte("on_error: pause"), []byte("on_error: ignore"), 1), 0o600))
	report := filepath.Join(r.dir, "report.json")
	code, stdout, stderr := runCLI(t, nil, "drain", "alpha", "-i", inv, "--yes", "--routed", "--state", filepath.Join(r.dir, "state.db"), "--report", report)
	if code != exitOK {
		t.Fatalf("drain: exit %d\nstderr:\n%s\nstdout:\n%s", code, stderr, stdout)
	}
	if want := `warning: cluster alpha: health query "max(test_storage_await)" on ` + empty.URL + ` failed: returned no series; on_error ignore`; !strings.Contains(stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr)
	}
	if n := strings.Count(stderr, "returned no series"); n != 1 {
		t.Errorf("the same failure was reported %d times:\n%s", n, stderr)
	}
	raw, err := os.ReadFile(report)
	must(t, err)
	var rep migrate.ApplyReport
	must(t, json.Unmarshal(raw, &rep))
	r.exact(&rep)
	for _, th := range rep.Throttle {
		if th.Name == "alpha" && (th.HealthErrors < 1 || th.HealthErrors != th.HealthReadings || th.HealthLevel != "ok" || th.HealthPauses != 0 || th.HealthValue != nil) {
			t.Errorf("alpha's throttle: %+v", th.StorageStats)
		}
	}
}

// writeHealthInventory writes an inventory of alpha (reached through
// srcAddr, with a health_query on prom) and bravo, with the rig's
// mailboxes on alpha.
func (r *applyRig) writeHealthInventory(srcAddr, prom string) string {
	r.t.Helper()
	var y strings.Builder
	y.WriteString("clusters:\n")
	for _, c := range []string{"alpha", "bravo"} {
		s := r.clusters[c]
		addr := s.Addr
		if c == "alpha" {
			addr = srcAddr
		}
		fmt.Fprintf(&y, "  - name: %s\n    url: imap://%s\n    tls: none\n    auth: {method: master, user: %s, password_file: %s}\n"+
			"    capacity: {bytes: 10GiB, load: 100}\n    limits: {connections: 8}\n", c, addr, s.MasterUser, filepath.Join(r.dir, c+".pw"))
		if c == "alpha" {
			fmt.Fprintf(&y, "    health_query:\n      prometheus: %s\n      query: max(test_storage_await)\n"+
				"      slow_above: 3\n      pause_above: 10\n      every: 1s\n      on_error: pause\n", prom)
		}
	}
	y.WriteString("mailboxes:\n")
	for _, mb := range r.mailboxes {
		fmt.Fprintf(&y, "  - {name: %s, cluster: alpha, bytes: %d, load: 1}\n", mb, r.corpora[mb].TotalBytes())
	}
	path := filepath.Join(r.dir, "health.yaml")
	must(r.t, os.WriteFile(path, []byte(y.String()), 0o600))
	return path
}

// waitPromValue waits until Prometheus answers query with want.
func waitPromValue(t *testing.T, base, query string, want float64) {
	t.Helper()
	c, err := api.NewClient(api.Config{Address: base})
	must(t, err)
	papi := v1.NewAPI(c)
	healthWait(t, fmt.Sprintf("prometheus to answer %s = %v", query, want), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		v, _, _, err := papi.Query(ctx, query, time.Now())
		vec, ok := v.(model.Vector)
		return err == nil && ok && len(vec) == 1 && float64(vec[0].Value) == want
	})
}

// healthWait polls cond every 50ms for at most 60s.
func healthWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 60s waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// healthMetric reads one cluster's series of a metric from a /metrics page.
func healthMetric(url, name, cluster string) (float64, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	prefix := fmt.Sprintf("%s{cluster=%q} ", name, cluster)
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			v, err := strconv.ParseFloat(rest, 64)
			return v, err == nil
		}
	}
	return 0, false
}
