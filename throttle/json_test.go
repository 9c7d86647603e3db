package throttle

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestStatsJSON: reports print a limiter's figures in snake_case with the
// unit in each name (durations in seconds), and read them back.
func TestStatsJSON(t *testing.T) {
	s := Stats{Name: "bravo", Limit: 3, Cap: 8, Latency: 208250171 * time.Nanosecond, Baseline: 50 * time.Millisecond,
		Commands: 10, Sent: 12, Decreases: 2, Increases: 1, RateWaits: 4, RateWaited: 1500 * time.Millisecond,
		Backoffs: 5, BackoffTime: 3 * time.Second, LastSignal: SignalUnavailable,
		ConnWaited: 2 * time.Second, SlotWaited: 250 * time.Millisecond, WindowWaited: time.Minute,
		StorageStats: StorageStats{HealthLevel: "paused", HealthPaused: true, HealthPausedSeconds: 4.5, HealthPauses: 1, HealthErrors: 2, HealthLastError: "empty result"}}
	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, want := range []string{`"name":"bravo"`, `"latency_p90_seconds":0.208250171`, `"latency_baseline_seconds":0.05`,
		`"limit_decreases":2`, `"rate_wait_seconds":1.5`, `"backoff_seconds":3`, `"last_signal":"unavailable"`, `"commands_sent":12`,
		`"connection_wait_seconds":2`, `"slot_wait_seconds":0.25`, `"window_wait_seconds":60`, `"health_paused":true`, `"health_paused_seconds":4.5`} {
		if !strings.Contains(text, want) {
			t.Errorf("%s lacks %s", text, want)
		}
	}
	if strings.ContainsAny(text[:2], "ABCDEFGHIJKLMNOPQRSTUVWXYZ") || strings.Contains(text, `"Latency"`) {
		t.Errorf("PascalCase in %s", text)
	}
	var back Stats
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if back != s {
		t.Errorf("round trip: %+v, want %+v", back, s)
	}
}
