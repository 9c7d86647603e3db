package htmlreport

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"mailferry/migrate"
	"mailferry/planner"
	"mailferry/throttle"
)

// fakeNow is a settable clock for the recorder.
type fakeNow struct{ t time.Time }

func (f *fakeNow) now() time.Time      { return f.t }
func (f *fakeNow) add(d time.Duration) { f.t = f.t.Add(d) }
func newFake() *fakeNow                { return &fakeNow{t: time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)} }
func lims(m map[string]*throttle.Limiter) func(string) *throttle.Limiter {
	return func(c string) *throttle.Limiter { return m[c] }
}

func TestRecorderPhasesAndBytesPerCluster(t *testing.T) {
	clock := newFake()
	alpha, err := throttle.New("alpha", throttle.Config{MaxConnections: 6})
	if err != nil {
		t.Fatal(err)
	}
	moves := []migrate.Move{{Mailbox: "u1", From: "bravo", To: "alpha"}, {Mailbox: "u2", From: "bravo", To: "charlie"}}
	r := NewRecorder(moves, []string{"alpha", "bravo", "charlie"}, lims(map[string]*throttle.Limiter{"alpha": alpha}), time.Hour)
	r.now = clock.now
	r.Start(t.Context())
	defer r.Stop()

	r.Event(migrate.Event{Kind: migrate.EventMovePhase, Mailbox: "u1", Text: migrate.PhaseCopying})
	r.Event(migrate.Event{Kind: migrate.EventMovePhase, Mailbox: "u1", Text: migrate.PhaseCopying}) // repeated: one mark
	r.Event(migrate.Event{Kind: migrate.EventMessageCopied, Mailbox: "u1", Bytes: 1000})
	r.Event(migrate.Event{Kind: migrate.EventMessageCopied, Mailbox: "u2", Bytes: 500})
	r.Event(migrate.Event{Kind: migrate.EventMessageCopied, Mailbox: "nobody", Bytes: 7}) // not a move of this run
	clock.add(2 * time.Second)
	r.sample()
	r.Event(migrate.Event{Kind: migrate.EventMovePhase, Mailbox: "u1", Text: migrate.PhaseConverging})
	r.Event(migrate.Event{Kind: migrate.EventMessageCopied, Mailbox: "u1", Bytes: 30})
	clock.add(time.Second)
	r.Event(migrate.Event{Kind: migrate.EventMoveDone, Mailbox: "u1", Text: migrate.ResultDone})
	r.Event(migrate.Event{Kind: migrate.EventMoveDone, Mailbox: "u2", Text: migrate.ResultFailed})
	tl := r.Stop()

	wantPhases := []PhaseMark{{migrate.PhaseCopying, 0}, {migrate.PhaseConverging, 2}, {"end:done", 3}}
	if !reflect.DeepEqual(tl.Moves[0].Phases, wantPhases) || tl.Moves[0].Result != "done" {
		t.Errorf("u1 phases %+v result %q, want %+v done", tl.Moves[0].Phases, tl.Moves[0].Result, wantPhases)
	}
	if tl.Moves[1].Result != "failed" {
		t.Errorf("u2 result %q, want failed", tl.Moves[1].Result)
	}
	by := map[string]ClusterSeries{}
	for _, c := range tl.Clusters {
		by[c.Cluster] = c
	}
	// Two samples each: the one at 2 s and Stop's at 3 s.
	if got := by["bravo"].Samples; len(got) != 2 || got[0].BytesOut != 1500 || got[1].BytesOut != 30 || got[0].BytesIn != 0 {
		t.Errorf("bravo samples %+v, want 1500 then 30 bytes out", got)
	}
	if got := by["alpha"].Samples; got[0].BytesIn != 1000 || got[1].BytesIn != 30 || got[0].Limit == 0 || by["alpha"].Cap != 6 {
		t.Errorf("alpha %+v, want 1000 then 30 bytes in, its limit and cap 6", by["alpha"])
	}
	if got := by["charlie"].Samples; got[0].BytesIn != 500 || got[0].Limit != 0 {
		t.Errorf("charlie samples %+v, want 500 bytes in and no limiter", got)
	}
	if tl.End.Sub(tl.Start) != 3*time.Second {
		t.Errorf("timeline spans %v, want 3s", tl.End.Sub(tl.Start))
	}
}

func sampleDoc() *RunDocument {
	high := 97.5
	start := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	rep := &migrate.ApplyReport{Seconds: 40, Moves: []migrate.MoveResult{
		{Mailbox: "u1", From: "bravo", To: "alpha", Phase: "done", Result: "done", Bytes: 4 << 20, Copied: 10, Seconds: 20},
		{Mailbox: `<script>alert(1)</script>`, From: "bravo", To: "charlie", Phase: "copying", Result: "failed", Reason: "target: [OVERQUOTA] Quota exceeded\nsecond line"},
	}}
	rep.Totals.Moves, rep.Totals.Done, rep.Totals.Failed = 2, 1, 1
	tl := &Timeline{Start: start, End: start.Add(40 * time.Second), IntervalSeconds: 1,
		Moves: []MoveTimeline{
			{Mailbox: "u1", From: "bravo", To: "alpha", Result: "done", Phases: []PhaseMark{{"copying", 0}, {"converging", 10}, {"ready", 15}, {"cutover", 16}, {"final-delta", 17}, {"done", 19}, {"end:done", 20}}},
			{Mailbox: `<script>alert(1)</script>`, From: "bravo", To: "charlie", Result: "failed", Phases: []PhaseMark{{"copying", 1}, {"end:failed", 5}}},
		},
		Clusters: []ClusterSeries{
			{Cluster: "alpha", Cap: 8, Samples: []ClusterSample{{AtSeconds: 10, BytesIn: 2 << 20, Limit: 8}, {AtSeconds: 20, BytesIn: 2 << 20, Limit: 8}}},
			{Cluster: "bravo", Cap: 4, Samples: []ClusterSample{{AtSeconds: 10, BytesOut: 2 << 20, Limit: 2}, {AtSeconds: 20, BytesOut: 2 << 20, Limit: 1, Paused: true}, {AtSeconds: 30, Limit: 1, Paused: true, HealthPaused: true, HealthValue: &high}, {AtSeconds: 40, Limit: 3}}},
			{Cluster: "idle", Cap: 4, Samples: []ClusterSample{{AtSeconds: 10, Limit: 4}}},
		}}
	plan := &PlanSummary{Policy: planner.Policy{Kind: "drain", Cluster: "bravo"},
		Totals: planner.Totals{Moves: 2, Bytes: 5 << 20},
		ETA:    planner.ETA{Seconds: 30, Bottleneck: "bravo"},
		Clusters: []planner.ClusterProjection{
			{Name: "alpha", Health: "healthy", Before: planner.Usage{LoadUtil: 0.4, StorageUtil: 0.3}, After: planner.Usage{LoadUtil: 0.6, StorageUtil: 0.5}},
			{Name: "bravo", Health: "degraded", Before: planner.Usage{LoadUtil: 1.1, StorageUtil: 0.9}, After: planner.Usage{}},
		}}
	return &RunDocument{ApplyReport: rep, Plan: plan, Timeline: tl}
}

func TestWriteRunDrawsEveryPart(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteRun(&buf, sampleDoc(), time.Now()); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	for _, want := range []string{`id="clusters"`, `id="timeline"`, `id="throughput"`, `id="eta"`, `id="moves"`,
		`data-cluster="alpha"`, `data-cluster="bravo"`, `class="paused"`, `class="seg ph-converging"`, `class="end failed"`,
		`class="limit"`, `class="planned"`, `class="actual"`, "Quota exceeded", "bravo (degraded)",
		"paused until 20.0s: outside its time windows", "paused until 30.0s: its storage health signal is above pause_above (97.5)"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	// A cluster that took no part gets no chart; names are escaped.
	if strings.Contains(page, `data-cluster="idle"`) {
		t.Error("the idle cluster got a throughput chart")
	}
	if strings.Contains(page, "<script>alert") {
		t.Error("a mailbox name reached the page unescaped")
	}
	if !strings.Contains(page, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Error("the hostile mailbox name is missing (escaped) from the page")
	}
	// No external assets.
	for _, ext := range []string{"http://", "https://", "src=", "<link"} {
		if strings.Contains(strings.ReplaceAll(page, `xmlns="http://www.w3.org/2000/svg"`, ""), ext) {
			t.Errorf("page refers to something outside itself (%s)", ext)
		}
	}
}

func TestRunDocumentRoundTrip(t *testing.T) {
	d := sampleDoc()
	data, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	// The report's own fields stay at the top level.
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"moves", "totals", "seconds", "plan", "timeline"} {
		if _, ok := top[k]; !ok {
			t.Errorf("report JSON lacks top-level %q", k)
		}
	}
	back, err := ReadRunDocument(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Timeline, d.Timeline) || !reflect.DeepEqual(back.Moves, d.Moves) || !reflect.DeepEqual(back.Plan.ETA, d.Plan.ETA) {
		t.Error("the run document did not survive JSON")
	}
	if _, err := ReadRunDocument(strings.NewReader(`{"version": 3, "moves_x": []}`)); err == nil {
		t.Error("a document without moves was read as a report")
	}
}

func TestWritePlanBoundsTheTable(t *testing.T) {
	p := &planner.Plan{Policy: planner.Policy{Kind: "drain", Cluster: "bravo"},
		Clusters: []planner.ClusterProjection{{Name: "alpha"}, {Name: "bravo"}}}
	for i := 0; i < maxTableRows+5; i++ {
		p.Moves = append(p.Moves, planner.Move{Mailbox: "u" + strings.Repeat("x", i%3), From: "bravo", To: "alpha", Bytes: 1})
	}
	var buf bytes.Buffer
	if err := WritePlan(&buf, p, time.Now()); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	if n := strings.Count(page, "<td>planned</td>"); n != maxTableRows {
		t.Errorf("%d rows in the table, want %d", n, maxTableRows)
	}
	if !strings.Contains(page, "5 more moves not listed") || !strings.Contains(page, `id="clusters"`) {
		t.Error("the plan page lacks the count of rows left out or the cluster chart")
	}
}
