package inventory

import (
	"strings"
	"testing"
	"time"
)

// A health_query is read with its defaults filled in.
func TestHealthQueryParsed(t *testing.T) {
	y := "clusters:" + goodCluster + `    health_query:
      prometheus: http://prometheus.example:9090/prom
      query: max(rate(node_disk_io_time_seconds_total{instance="nfs1"}[1m]))
      slow_above: 0.6
      pause_above: 0.9
`
	inv, err := Parse("inv.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	q := inv.Clusters[0].HealthQuery
	if q == nil || q.Prometheus != "http://prometheus.example:9090/prom" || !strings.HasPrefix(q.Query, "max(rate(") ||
		*q.SlowAbove != 0.6 || *q.PauseAbove != 0.9 || q.Every != DefaultHealthEvery || q.Timeout != MaxHealthTimeout || q.OnError != HealthErrorPause {
		t.Fatalf("parsed %+v", q)
	}
	if inv.Clusters[0].Health != Healthy {
		t.Fatalf("health_query changed the cluster's health word: %q", inv.Clusters[0].Health)
	}

	y = "clusters:" + goodCluster + "    health_query: {prometheus: https://p:9090, query: up, pause_above: 0, every: 2s, on_error: ignore}\n"
	if inv, err = Parse("inv.yaml", []byte(y)); err != nil {
		t.Fatal(err)
	}
	if q := inv.Clusters[0].HealthQuery; q.SlowAbove != nil || *q.PauseAbove != 0 || q.Every != 2*time.Second || q.Timeout != 2*time.Second || q.OnError != HealthErrorIgnore {
		t.Fatalf("parsed %+v", q)
	}
}

// Every bad health_query is rejected naming the file, the line and the
// field.
func TestHealthQueryRejects(t *testing.T) {
	hq := func(body string) string { return "clusters:" + goodCluster + "    health_query:\n" + body }
	const ok = "      prometheus: http://p:9090\n      query: up\n"
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"no prometheus", hq("      query: up\n      slow_above: 1\n"), []string{"inv.yaml:6: clusters[a].health_query.prometheus: missing"}},
		{"credentials in url", hq("      prometheus: http://admin:hunter2@p:9090\n      query: up\n      slow_above: 1\n"),
			[]string{"inv.yaml:7: clusters[a].health_query.prometheus:", "user information"}},
		{"not http", hq("      prometheus: imap://p:9090\n      query: up\n      slow_above: 1\n"),
			[]string{"inv.yaml:7: clusters[a].health_query.prometheus:", "want http:// or https://"}},
		{"no query", hq("      prometheus: http://p:9090\n      slow_above: 1\n"), []string{"inv.yaml:6: clusters[a].health_query.query: missing"}},
		{"no threshold", hq(ok), []string{"inv.yaml:6: clusters[a].health_query.slow_above: missing: set slow_above, pause_above or both"}},
		{"thresholds reversed", hq(ok + "      slow_above: 9\n      pause_above: 3\n"),
			[]string{"inv.yaml:9: clusters[a].health_query.slow_above: 9 must be below pause_above (3)"}},
		{"threshold not a number", hq(ok + "      slow_above: high\n"), []string{"inv.yaml:9: clusters[0].health_query.slow_above: want a number, got \"high\""}},
		{"bad every", hq(ok + "      slow_above: 1\n      every: often\n"), []string{"inv.yaml:10: clusters[0].health_query.every: want a duration such as 15s"}},
		{"every too short", hq(ok + "      slow_above: 1\n      every: 100ms\n"), []string{"inv.yaml:10: clusters[a].health_query.every: 100ms is too often"}},
		{"timeout over every", hq(ok + "      slow_above: 1\n      every: 2s\n      timeout: 5s\n"),
			[]string{"inv.yaml:11: clusters[a].health_query.timeout: 5s is longer than every (2s)"}},
		{"bad on_error", hq(ok + "      slow_above: 1\n      on_error: panic\n"), []string{"inv.yaml:10: clusters[a].health_query.on_error: unknown \"panic\": say pause or ignore"}},
		{"unknown field", hq(ok + "      slow_above: 1\n      pause_when: 3\n"),
			[]string{"inv.yaml:10: clusters[0].health_query.pause_when: unknown field (known: prometheus, query, slow_above, pause_above, every, timeout, on_error)"}},
		{"not a mapping", "clusters:" + goodCluster + "    health_query: up\n", []string{"inv.yaml:6: clusters[0].health_query: want a mapping"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("inv.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			msg, rest := err.Error(), err.Error()
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("error %q does not contain %q", msg, w)
				}
				rest = rest[i+len(w):]
			}
			if strings.Contains(msg, "hunter2") {
				t.Fatalf("error shows the password: %q", msg)
			}
		})
	}
}

// Validate applies the same rules to an inventory built in code.
func TestHealthQueryValidate(t *testing.T) {
	inv, err := Parse("inv.yaml", []byte("clusters:"+goodCluster))
	if err != nil {
		t.Fatal(err)
	}
	inv.Clusters[0].HealthQuery = &HealthQuery{Prometheus: "http://p:9090", Query: "up"}
	if err := inv.Validate(); err == nil || !strings.Contains(err.Error(), "clusters[a].health_query.slow_above: missing") {
		t.Fatalf("Validate: %v", err)
	}
}
