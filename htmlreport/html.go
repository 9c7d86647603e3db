package htmlreport

import (
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"sort"
	"strings"
	"time"

	"mailferry/inventory"
	"mailferry/migrate"
	"mailferry/planner"
)

// RunDocument is the apply report as `apply --report` writes it: the
// report itself (its fields at the top level, as before), the summary of
// the plan it ran and the run's timeline.
type RunDocument struct {
	*migrate.ApplyReport
	Plan     *PlanSummary `json:"plan,omitempty"`
	Timeline *Timeline    `json:"timeline,omitempty"`
}

// PlanSummary is what a run's page shows of its plan: the clusters before
// and after, the totals and the ETA.
type PlanSummary struct {
	Policy   planner.Policy              `json:"policy"`
	Clusters []planner.ClusterProjection `json:"clusters"`
	Totals   planner.Totals              `json:"totals"`
	Goal     planner.Goal                `json:"goal"`
	ETA      planner.ETA                 `json:"eta"`
}

// Summarize keeps the parts of p a run's page shows.
func Summarize(p *planner.Plan) *PlanSummary {
	if p == nil {
		return nil
	}
	return &PlanSummary{Policy: p.Policy, Clusters: p.Clusters, Totals: p.Totals, Goal: p.Goal, ETA: p.ETA}
}

// ReadRunDocument decodes what `apply --report` wrote.
func ReadRunDocument(r io.Reader) (*RunDocument, error) {
	var d RunDocument
	dec := json.NewDecoder(r)
	if err := dec.Decode(&d); err != nil {
		return nil, err
	}
	if d.ApplyReport == nil || d.Moves == nil {
		return nil, fmt.Errorf("not an apply report: no \"moves\"")
	}
	return &d, nil
}

//go:embed page.html.tmpl
var pageFS embed.FS

var page = template.Must(template.New("page.html.tmpl").Funcs(template.FuncMap{
	"bytes": inventory.FormatBytes,
	"pct":   func(f float64) string { return fmt.Sprintf("%.1f%%", f*100) },
	"dur":   func(s float64) string { return formatSeconds(s) },
	"num":   func(f float64) string { return fmt.Sprintf("%.1f", f) },
}).ParseFS(pageFS, "page.html.tmpl"))

// view is what the template draws.
type view struct {
	Title     string
	Generated string
	Kind      string // "plan" or "run"
	Summary   []fact
	Clusters  *clusterChart
	Timeline  *timelineChart
	Through   []throughputChart
	ETA       *etaChart
	Moves     []moveRow
	MovesMore int // rows left out of the table
	Warnings  []string
}

type fact struct{ Name, Value string }

// maxTableRows bounds the table of moves (and the timeline's rows): a plan
// of a million moves still makes a page a browser opens.
const maxTableRows = 2000

// WritePlan renders a plan: clusters before and after, totals, ETA, moves.
func WritePlan(w io.Writer, p *planner.Plan, now time.Time) error {
	v := view{Kind: "plan", Generated: now.UTC().Format(time.RFC3339)}
	v.Title = "mailferry plan: " + policyText(p.Policy)
	v.Summary = []fact{
		{"Policy", policyText(p.Policy)},
		{"Goal", goalText(p.Goal)},
		{"Moves", fmt.Sprint(p.Totals.Moves)},
		{"Bytes", inventory.FormatBytes(p.Totals.Bytes)},
		{"Messages", fmt.Sprint(p.Totals.Messages)},
		{"ETA", etaText(p.ETA)},
	}
	if len(p.Unplaceable) > 0 {
		v.Summary = append(v.Summary, fact{"Unplaceable", fmt.Sprint(len(p.Unplaceable))})
	}
	v.Clusters = newClusterChart(p.Clusters)
	for i, m := range p.Moves {
		if i == maxTableRows {
			v.MovesMore = len(p.Moves) - i
			break
		}
		v.Moves = append(v.Moves, moveRow{Mailbox: m.Mailbox, From: m.From, To: m.To, Bytes: inventory.FormatBytes(m.Bytes), Result: "planned"})
	}
	for _, u := range p.Unplaceable {
		v.Warnings = append(v.Warnings, fmt.Sprintf("%s on %s (%s) cannot be placed: %s", u.Mailbox, u.Cluster, inventory.FormatBytes(u.Bytes), u.Reason))
		if len(v.Warnings) == 50 {
			v.Warnings = append(v.Warnings, fmt.Sprintf("… and %d more unplaceable", len(p.Unplaceable)-50))
			break
		}
	}
	return page.Execute(w, v)
}

// WriteRun renders a run: what happened to each move, when, how fast each
// cluster went under its throttle, and against the plan's ETA.
func WriteRun(w io.Writer, d *RunDocument, now time.Time) error {
	rep := d.ApplyReport
	v := view{Kind: "run", Generated: now.UTC().Format(time.RFC3339)}
	v.Title = "mailferry run"
	if d.Plan != nil {
		v.Title += ": " + policyText(d.Plan.Policy)
	}
	t := rep.Totals
	v.Summary = []fact{
		{"Moves", fmt.Sprint(t.Moves)},
		{"Done", fmt.Sprint(t.Done)},
		{"Failed", fmt.Sprint(t.Failed)},
		{"Held", fmt.Sprint(t.Held)},
		{"Interrupted", fmt.Sprint(t.Interrupted)},
		{"Synced (not final)", fmt.Sprint(t.Synced)},
		{"Skipped", fmt.Sprint(t.Skipped)},
		{"Copied", fmt.Sprintf("%d messages, %s", t.Copied, inventory.FormatBytes(t.Bytes))},
		{"Took", formatSeconds(rep.Seconds)},
	}
	if d.Plan != nil {
		v.Summary = append(v.Summary, fact{"Plan's ETA", etaText(d.Plan.ETA)})
		v.Clusters = newClusterChart(d.Plan.Clusters)
	}
	if d.Timeline != nil {
		v.Timeline = newTimelineChart(d.Timeline)
		for _, s := range d.Timeline.Clusters {
			if c := newThroughputChart(s, d.Timeline); c != nil {
				v.Through = append(v.Through, *c)
			}
		}
		if d.Plan != nil {
			v.ETA = newETAChart(d.Timeline, d.Plan)
		}
	}
	for i, m := range rep.Moves {
		if i == maxTableRows {
			v.MovesMore = len(rep.Moves) - i
			break
		}
		v.Moves = append(v.Moves, moveRow{
			Mailbox: m.Mailbox, From: m.From, To: m.To, Phase: m.Phase, Result: m.Result, Reason: m.Reason,
			Bytes: inventory.FormatBytes(m.Bytes), Messages: fmt.Sprint(m.Copied), Seconds: formatSeconds(m.Seconds),
			Bad: m.Result == migrate.ResultFailed || m.Result == migrate.ResultHeld || m.Result == migrate.ResultInterrupted,
		})
	}
	return page.Execute(w, v)
}

type moveRow struct {
	Mailbox, From, To, Phase, Result, Reason string
	Bytes, Messages, Seconds                 string
	Bad                                      bool
}

func policyText(p planner.Policy) string {
	s := string(p.Kind)
	if p.Cluster != "" {
		s += " " + p.Cluster
	}
	return s
}

func goalText(g planner.Goal) string {
	if g.Met {
		return "met: " + g.Detail
	}
	return "NOT met: " + g.Detail
}

func etaText(e planner.ETA) string {
	s := formatSeconds(e.Seconds)
	if e.Bottleneck != "" {
		s += " (bound by " + e.Bottleneck + ")"
	}
	return s
}

// formatSeconds is a duration for people: 42s, 3m05s, 2h07m.
func formatSeconds(s float64) string {
	if s < 0 || math.IsNaN(s) || math.IsInf(s, 0) {
		return "?"
	}
	d := time.Duration(s * float64(time.Second))
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}

// Charts. The SVG is computed here, in page coordinates, so the page needs
// no script; html/template escapes every name that reaches it.

const (
	chartW  = 900.0 // drawing width of every chart
	labelW  = 170.0 // left margin for names
	barH    = 14.0
	rowGap  = 6.0
	axisPad = 24.0
)

type rect struct {
	X, Y, W, H float64
	Class      string
	Title      string
}

type text struct {
	X, Y   float64
	Anchor string
	Class  string
	Text   string
}

type line struct {
	X1, Y1, X2, Y2 float64
	Class          string
}

type polyline struct {
	Points string
	Class  string
}

type svg struct {
	W, H      float64
	Rects     []rect
	Texts     []text
	Lines     []line
	Polylines []polyline
}

// clusterChart: per cluster, load and storage before and after as bars
// against 100 % of capacity.
type clusterChart struct {
	SVG     svg
	Columns int
}

func newClusterChart(cs []planner.ClusterProjection) *clusterChart {
	if len(cs) == 0 {
		return nil
	}
	// Two groups side by side: load and storage; per cluster two bars.
	groupW := (chartW - labelW) / 2
	rowH := 2*barH + rowGap*2
	h := axisPad + float64(len(cs))*rowH + 10
	var s svg
	s.W, s.H = chartW, h
	scale := func(u float64) float64 { return math.Max(0, math.Min(u, 1.25)) / 1.25 * (groupW - 20) }
	for g, name := range []string{"load", "storage"} {
		x0 := labelW + float64(g)*groupW
		s.Texts = append(s.Texts, text{X: x0, Y: 14, Class: "axis", Text: name + " (share of capacity; line = 100%)"})
		full := x0 + scale(1)
		s.Lines = append(s.Lines, line{X1: full, Y1: axisPad - 4, X2: full, Y2: h - 6, Class: "full"})
	}
	for i, c := range cs {
		y := axisPad + float64(i)*rowH
		label := c.Name
		if c.Health != "" && c.Health != "healthy" {
			label += " (" + c.Health + ")"
		}
		s.Texts = append(s.Texts, text{X: labelW - 8, Y: y + barH + 4, Anchor: "end", Class: "name", Text: label})
		for g, pair := range [][2]float64{{c.Before.LoadUtil, c.After.LoadUtil}, {c.Before.StorageUtil, c.After.StorageUtil}} {
			x0 := labelW + float64(g)*groupW
			for k, u := range pair {
				cls, when := "before", "before"
				if k == 1 {
					cls, when = "after", "after"
				}
				if u > 1 {
					cls += " over"
				}
				yy := y + float64(k)*(barH+2)
				s.Rects = append(s.Rects, rect{X: x0, Y: yy, W: math.Max(scale(u), 1), H: barH, Class: "bar " + cls,
					Title: fmt.Sprintf("%s %s %s: %.1f%%", c.Name, []string{"load", "storage"}[g], when, u*100)})
				s.Texts = append(s.Texts, text{X: x0 + scale(u) + 4, Y: yy + barH - 3, Class: "val", Text: fmt.Sprintf("%.0f%%", u*100)})
			}
		}
	}
	return &clusterChart{SVG: s}
}

// timelineChart: one row per move, coloured by phase from mark to mark.
type timelineChart struct {
	SVG  svg
	Rows int
	More int
}

func phaseClass(p string) string {
	switch {
	case strings.HasPrefix(p, "end:"):
		return "end " + strings.TrimPrefix(p, "end:")
	case p == migrate.PhaseFinal:
		return "ph-final"
	case p == "":
		return "ph-new"
	}
	return "ph-" + p
}

func newTimelineChart(tl *Timeline) *timelineChart {
	total := tl.End.Sub(tl.Start).Seconds()
	if total <= 0 || len(tl.Moves) == 0 {
		return nil
	}
	moves := tl.Moves
	more := 0
	if len(moves) > maxTableRows {
		more = len(moves) - maxTableRows
		moves = moves[:maxTableRows]
	}
	x := func(at float64) float64 { return labelW + math.Max(0, math.Min(at/total, 1))*(chartW-labelW-10) }
	h := axisPad + float64(len(moves))*(barH+2) + 20
	s := svg{W: chartW, H: h}
	for _, tick := range ticks(total) {
		s.Lines = append(s.Lines, line{X1: x(tick), Y1: axisPad - 6, X2: x(tick), Y2: h - 14, Class: "grid"})
		s.Texts = append(s.Texts, text{X: x(tick), Y: 14, Anchor: "middle", Class: "axis", Text: formatSeconds(tick)})
	}
	for i, m := range moves {
		y := axisPad + float64(i)*(barH+2)
		s.Texts = append(s.Texts, text{X: labelW - 8, Y: y + barH - 3, Anchor: "end", Class: "name", Text: m.Mailbox})
		for k, ph := range m.Phases {
			if strings.HasPrefix(ph.Phase, "end:") {
				s.Rects = append(s.Rects, rect{X: x(ph.AtSeconds) - 2, Y: y, W: 4, H: barH, Class: phaseClass(ph.Phase),
					Title: fmt.Sprintf("%s: %s at %s", m.Mailbox, strings.TrimPrefix(ph.Phase, "end:"), formatSeconds(ph.AtSeconds))})
				continue
			}
			end := total
			if k+1 < len(m.Phases) {
				end = m.Phases[k+1].AtSeconds
			}
			s.Rects = append(s.Rects, rect{X: x(ph.AtSeconds), Y: y, W: math.Max(x(end)-x(ph.AtSeconds), 1), H: barH, Class: "seg " + phaseClass(ph.Phase),
				Title: fmt.Sprintf("%s %s→%s: %s from %s to %s", m.Mailbox, m.From, m.To, ph.Phase, formatSeconds(ph.AtSeconds), formatSeconds(end))})
		}
	}
	return &timelineChart{SVG: s, Rows: len(moves), More: more}
}

// ticks are about six round instants across total seconds.
func ticks(total float64) []float64 {
	steps := []float64{1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 21600, 43200, 86400}
	step := steps[len(steps)-1]
	for _, s := range steps {
		if total/s <= 6 {
			step = s
			break
		}
	}
	var out []float64
	for t := 0.0; t <= total; t += step {
		out = append(out, t)
	}
	return out
}

// throughputChart: one cluster's bytes/s out and in over time, its
// throttle's limit (right axis, connections) and its paused intervals.
type throughputChart struct {
	Cluster string
	Peak    string
	SVG     svg
}

func newThroughputChart(c ClusterSeries, tl *Timeline) *throughputChart {
	total := tl.End.Sub(tl.Start).Seconds()
	if total <= 0 || len(c.Samples) == 0 {
		return nil
	}
	var peak float64
	var any bool
	maxLimit := c.Cap
	prev := 0.0
	rates := make([][2]float64, len(c.Samples))
	for i, s := range c.Samples {
		dt := s.AtSeconds - prev
		prev = s.AtSeconds
		if dt <= 0 {
			dt = tl.IntervalSeconds
		}
		rates[i] = [2]float64{float64(s.BytesOut) / dt, float64(s.BytesIn) / dt}
		peak = math.Max(peak, math.Max(rates[i][0], rates[i][1]))
		any = any || s.BytesOut > 0 || s.BytesIn > 0 || s.Paused
		maxLimit = max(maxLimit, s.Limit)
	}
	if !any {
		return nil // the cluster took no part in this run
	}
	const h, top, bottom = 180.0, 20.0, 24.0
	plotW := chartW - labelW - 40
	x := func(at float64) float64 { return labelW + math.Max(0, math.Min(at/total, 1))*plotW }
	yRate := func(r float64) float64 {
		if peak == 0 {
			return h - bottom
		}
		return h - bottom - r/peak*(h-top-bottom)
	}
	yLim := func(l int) float64 {
		if maxLimit == 0 {
			return h - bottom
		}
		return h - bottom - float64(l)/float64(maxLimit)*(h-top-bottom)
	}
	s := svg{W: chartW, H: h}
	prev = 0
	for _, smp := range c.Samples {
		if smp.Paused {
			why := "outside its time windows"
			if smp.HealthPaused {
				why = "its storage health signal is above pause_above"
				if smp.HealthValue != nil {
					why += fmt.Sprintf(" (%g)", *smp.HealthValue)
				}
			}
			s.Rects = append(s.Rects, rect{X: x(prev), Y: top, W: math.Max(x(smp.AtSeconds)-x(prev), 1), H: h - top - bottom, Class: "paused",
				Title: fmt.Sprintf("%s paused until %s: %s", c.Cluster, formatSeconds(smp.AtSeconds), why)})
		}
		prev = smp.AtSeconds
	}
	for _, tick := range ticks(total) {
		s.Lines = append(s.Lines, line{X1: x(tick), Y1: top, X2: x(tick), Y2: h - bottom, Class: "grid"})
		s.Texts = append(s.Texts, text{X: x(tick), Y: h - 8, Anchor: "middle", Class: "axis", Text: formatSeconds(tick)})
	}
	var out, in, lim strings.Builder
	prev = 0
	// Every figure is a step: a sample holds over the interval it closes.
	for i, smp := range c.Samples {
		fmt.Fprintf(&out, "%.1f,%.1f %.1f,%.1f ", x(prev), yRate(rates[i][0]), x(smp.AtSeconds), yRate(rates[i][0]))
		fmt.Fprintf(&in, "%.1f,%.1f %.1f,%.1f ", x(prev), yRate(rates[i][1]), x(smp.AtSeconds), yRate(rates[i][1]))
		fmt.Fprintf(&lim, "%.1f,%.1f %.1f,%.1f ", x(prev), yLim(smp.Limit), x(smp.AtSeconds), yLim(smp.Limit))
		prev = smp.AtSeconds
	}
	s.Polylines = append(s.Polylines,
		polyline{Points: strings.TrimSpace(out.String()), Class: "rate-out"},
		polyline{Points: strings.TrimSpace(in.String()), Class: "rate-in"},
		polyline{Points: strings.TrimSpace(lim.String()), Class: "limit"})
	s.Texts = append(s.Texts,
		text{X: labelW - 8, Y: top + 10, Anchor: "end", Class: "axis", Text: inventory.FormatBytes(int64(peak)) + "/s"},
		text{X: labelW - 8, Y: h - bottom, Anchor: "end", Class: "axis", Text: "0"},
		text{X: chartW - 4, Y: top + 10, Anchor: "end", Class: "axis limit-label", Text: fmt.Sprintf("limit %d", maxLimit)},
	)
	return &throughputChart{Cluster: c.Cluster, Peak: inventory.FormatBytes(int64(peak)) + "/s", SVG: s}
}

// etaChart: bytes copied so far against the plan's straight line from 0
// to all its bytes at its ETA.
type etaChart struct {
	SVG     svg
	Planned string
	Actual  string
}

func newETAChart(tl *Timeline, p *PlanSummary) *etaChart {
	total := tl.End.Sub(tl.Start).Seconds()
	if total <= 0 || p.Totals.Bytes <= 0 {
		return nil
	}
	span := math.Max(total, p.ETA.Seconds)
	const h, top, bottom = 200.0, 20.0, 24.0
	plotW := chartW - labelW - 40
	x := func(at float64) float64 { return labelW + math.Max(0, math.Min(at/span, 1))*plotW }
	// Sum the clusters' bytes in per sample instant.
	byAt := map[float64]int64{}
	for _, c := range tl.Clusters {
		for _, s := range c.Samples {
			byAt[s.AtSeconds] += s.BytesIn
		}
	}
	ats := make([]float64, 0, len(byAt))
	for at := range byAt {
		ats = append(ats, at)
	}
	sort.Float64s(ats)
	var cum int64
	maxBytes := float64(p.Totals.Bytes)
	for _, at := range ats {
		cum += byAt[at]
	}
	maxBytes = math.Max(maxBytes, float64(cum))
	y := func(b float64) float64 { return h - bottom - b/maxBytes*(h-top-bottom) }
	s := svg{W: chartW, H: h}
	for _, tick := range ticks(span) {
		s.Lines = append(s.Lines, line{X1: x(tick), Y1: top, X2: x(tick), Y2: h - bottom, Class: "grid"})
		s.Texts = append(s.Texts, text{X: x(tick), Y: h - 8, Anchor: "middle", Class: "axis", Text: formatSeconds(tick)})
	}
	s.Lines = append(s.Lines, line{X1: x(0), Y1: y(0), X2: x(p.ETA.Seconds), Y2: y(float64(p.Totals.Bytes)), Class: "planned"})
	var pts strings.Builder
	fmt.Fprintf(&pts, "%.1f,%.1f ", x(0), y(0))
	cum = 0
	for _, at := range ats {
		cum += byAt[at]
		fmt.Fprintf(&pts, "%.1f,%.1f ", x(at), y(float64(cum)))
	}
	s.Polylines = append(s.Polylines, polyline{Points: strings.TrimSpace(pts.String()), Class: "actual"})
	s.Texts = append(s.Texts,
		text{X: labelW - 8, Y: top + 10, Anchor: "end", Class: "axis", Text: inventory.FormatBytes(int64(maxBytes))},
		text{X: labelW - 8, Y: h - bottom, Anchor: "end", Class: "axis", Text: "0"})
	return &etaChart{SVG: s, Planned: formatSeconds(p.ETA.Seconds) + " for " + inventory.FormatBytes(p.Totals.Bytes),
		Actual: formatSeconds(total) + " for " + inventory.FormatBytes(cum)}
}
