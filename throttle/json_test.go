package throttle

import (
	"encoding/json"
	"reflect"
	"strconv"
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

// Every field of Stats survives the report's JSON: the test fills each
// one (by reflection, so a field added later is covered without touching
// the test) and reads it back. A field the hand-written mapping forgets
// comes back zero.
func TestStatsJSONCarriesEveryField(t *testing.T) {
	var s Stats
	fill(t, reflect.ValueOf(&s).Elem(), 1)
	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back Stats
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, s) {
		t.Errorf("round trip lost fields:\n got %+v\nwant %+v\njson %s", back, s, data)
	}
}

// fill gives every field of v a distinct non-zero value.
func fill(t *testing.T, v reflect.Value, n int) int {
	t.Helper()
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		n++
		switch {
		case f.Type() == reflect.TypeOf(time.Duration(0)):
			f.SetInt(int64(n) * int64(250*time.Millisecond)) // exact in float seconds
		case f.Type() == reflect.TypeOf(Signal(0)):
			f.SetInt(int64(SignalUnavailable))
		case f.Kind() == reflect.Struct:
			n = fill(t, f, n)
		case f.Kind() == reflect.Int, f.Kind() == reflect.Int64:
			f.SetInt(int64(n))
		case f.Kind() == reflect.Float64:
			f.SetFloat(float64(n) + 0.5)
		case f.Kind() == reflect.Bool:
			f.SetBool(true)
		case f.Kind() == reflect.String:
			f.SetString("s" + strconv.Itoa(n))
		case f.Kind() == reflect.Pointer && f.Type().Elem().Kind() == reflect.Float64:
			x := float64(n)
			f.Set(reflect.ValueOf(&x))
		default:
			t.Fatalf("fill: field %s of kind %s", v.Type().Field(i).Name, f.Kind())
		}
	}
	return n
}
