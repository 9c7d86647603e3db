package healthquery

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"mailferry/inventory"
	"mailferry/throttle"
)

// fakeAPI answers /api/v1/query as Prometheus would, with what the test
// sets: a vector of values, an empty vector, a server error, or no answer.
type fakeAPI struct {
	mu      sync.Mutex
	values  []string // sample values; empty: an empty vector
	status  int      // non-zero: answer with this error status
	hang    bool     // never answer (until the request ends)
	queries []string
}

func (f *fakeAPI) set(status int, hang bool, values ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status, f.hang, f.values = status, hang, values
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	f.mu.Lock()
	f.queries = append(f.queries, r.Form.Get("query"))
	status, hang, values := f.status, f.hang, f.values
	f.mu.Unlock()
	if r.URL.Path != "/api/v1/query" {
		http.NotFound(w, r)
		return
	}
	if hang {
		<-r.Context().Done()
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if status != 0 {
		w.WriteHeader(status)
		fmt.Fprint(w, `{"status":"error","errorType":"internal","error":"storage is sad"}`)
		return
	}
	var series []string
	for i, v := range values {
		series = append(series, fmt.Sprintf(`{"metric":{"device":"sd%c"},"value":[1700000000,%q]}`, 'a'+i, v))
	}
	fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[%s]}}`, strings.Join(series, ","))
}

func ptr(v float64) *float64 { return &v }

type rig struct {
	api     *fakeAPI
	lim     *throttle.Limiter
	p       *Poller
	mu      sync.Mutex
	changes []Change
}

func newRig(t *testing.T, onError inventory.HealthOnError, timeout time.Duration) *rig {
	t.Helper()
	r := &rig{api: &fakeAPI{}}
	srv := httptest.NewServer(r.api)
	t.Cleanup(srv.Close)
	var err error
	if r.lim, err = throttle.New("alpha", throttle.Config{MaxConnections: 8}); err != nil {
		t.Fatal(err)
	}
	q := inventory.HealthQuery{Prometheus: srv.URL, Query: "max(node_disk_await)", SlowAbove: ptr(3), PauseAbove: ptr(10),
		Every: time.Second, Timeout: timeout, OnError: onError}
	r.p, err = New("alpha", q, r.lim, func(c Change) {
		r.mu.Lock()
		r.changes = append(r.changes, c)
		r.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rig) lastChange(t *testing.T) Change {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.changes) == 0 {
		t.Fatal("no change reported")
	}
	return r.changes[len(r.changes)-1]
}

func (r *rig) nChanges() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.changes)
}

// Values map to levels by the thresholds ("above" is strictly above), the
// highest series counts, and each reading reaches the limiter.
func TestPollLevels(t *testing.T) {
	r := newRig(t, inventory.HealthErrorPause, 5*time.Second)
	ctx := context.Background()
	for _, tc := range []struct {
		values []string
		want   throttle.StorageLevel
		value  float64
	}{
		{[]string{"1"}, throttle.StorageOK, 1},
		{[]string{"3"}, throttle.StorageOK, 3},
		{[]string{"1", "4.5", "2"}, throttle.StorageSlow, 4.5},
		{[]string{"10"}, throttle.StorageSlow, 10},
		{[]string{"2", "10.5"}, throttle.StoragePause, 10.5},
		{[]string{"NaN", "0.5"}, throttle.StorageOK, 0.5},
	} {
		r.api.set(0, false, tc.values...)
		got := r.p.Poll(ctx)
		if got.Err != nil || got.Level != tc.want || got.Value != tc.value {
			t.Errorf("values %v: got level %v value %v err %v, want %v %v", tc.values, got.Level, got.Value, got.Err, tc.want, tc.value)
		}
		if paused := r.lim.StoragePaused(); paused != (tc.want == throttle.StoragePause) {
			t.Errorf("values %v: limiter paused %v", tc.values, paused)
		}
	}
	if q := r.api.queries[0]; q != "max(node_disk_await)" {
		t.Errorf("sent query %q", q)
	}
	if s := r.lim.Snapshot(); s.HealthReadings != 6 || s.HealthErrors != 0 || s.HealthPauses != 1 {
		t.Errorf("limiter stats %+v", s.StorageStats)
	}
}

// on_error: pause closes the gate on a failed query, an empty result or
// one without an answer in time, and says so in a warning that names the
// cluster and the query; a good reading opens it again.
func TestPollOnErrorPause(t *testing.T) {
	r := newRig(t, inventory.HealthErrorPause, 300*time.Millisecond)
	ctx := context.Background()
	r.api.set(0, false, "1")
	r.p.Poll(ctx)
	for _, tc := range []struct {
		name   string
		status int
		hang   bool
		want   string
	}{
		{"server error", 500, false, "server error: 500"},
		{"bad query", 400, false, "storage is sad"},
		{"empty result", 0, false, "returned no series"},
		{"no answer", 0, true, "no answer within 300ms"},
	} {
		r.api.set(tc.status, tc.hang)
		got := r.p.Poll(ctx)
		if got.Err == nil || !strings.Contains(got.Err.Error(), tc.want) || got.Level != throttle.StoragePause {
			t.Errorf("%s: got level %v err %v, want pause and %q", tc.name, got.Level, got.Err, tc.want)
		}
		if !r.lim.StoragePaused() {
			t.Errorf("%s: gate open", tc.name)
		}
		c := r.lastChange(t)
		if !c.Warning() || !strings.Contains(c.Text, "cluster alpha") || !strings.Contains(c.Text, `"max(node_disk_await)"`) || !strings.Contains(c.Text, tc.want) {
			t.Errorf("%s: change %q does not name the cluster, query and failure", tc.name, c.Text)
		}
		r.api.set(0, false, "1")
		if got := r.p.Poll(ctx); got.Level != throttle.StorageOK || r.lim.StoragePaused() {
			t.Errorf("%s: a good reading after the failure left level %v", tc.name, got.Level)
		}
		if c := r.lastChange(t); !c.Recovered || c.Warning() {
			t.Errorf("%s: recovery not reported: %+v", tc.name, c)
		}
	}
	if s := r.lim.Snapshot(); s.HealthErrors != 4 {
		t.Errorf("errors counted %d, want 4", s.HealthErrors)
	}
}

// on_error: ignore reports the failure but leaves the cluster running as
// without a signal, even when the last good reading had paused it.
func TestPollOnErrorIgnore(t *testing.T) {
	r := newRig(t, inventory.HealthErrorIgnore, time.Second)
	ctx := context.Background()
	r.api.set(0, false, "50")
	if got := r.p.Poll(ctx); got.Level != throttle.StoragePause {
		t.Fatalf("value 50: level %v", got.Level)
	}
	r.api.set(503, false)
	got := r.p.Poll(ctx)
	if got.Err == nil || got.Level != throttle.StorageOK || r.lim.StoragePaused() {
		t.Fatalf("failed query with on_error ignore: level %v err %v paused %v", got.Level, got.Err, r.lim.StoragePaused())
	}
	if c := r.lastChange(t); !c.Warning() || !strings.Contains(c.Text, "on_error ignore") {
		t.Fatalf("warning %q", c.Text)
	}
	// The same failure again is not reported again.
	n := r.nChanges()
	r.p.Poll(ctx)
	if r.nChanges() != n {
		t.Errorf("a repeated failure was reported again: %q", r.lastChange(t).Text)
	}
}

// Run polls until its context ends, every Every on its clock.
func TestRunStopsWithContext(t *testing.T) {
	r := newRig(t, inventory.HealthErrorPause, time.Second)
	r.api.set(0, false, "20")
	stop := r.p.Start(context.Background())
	if !r.lim.StoragePaused() {
		t.Fatal("Start did not read before returning")
	}
	deadline := time.Now().Add(20 * time.Second)
	for r.lim.Snapshot().HealthReadings < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no second reading within 20s with every 1s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	n := r.lim.Snapshot().HealthReadings
	time.Sleep(1500 * time.Millisecond)
	if m := r.lim.Snapshot().HealthReadings; m != n {
		t.Fatalf("readings went on after stop: %d -> %d", n, m)
	}
}
