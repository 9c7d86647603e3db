package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"mailferry/htmlreport"
	"mailferry/inventory"
	"mailferry/migrate"
	"mailferry/planner"
	"mailferry/throttle"
)

// The HTML pages (package htmlreport) and the run document behind them:
// `plan --html FILE`, `apply --report-html FILE` (also drain, rebalance,
// complete) and `report FILE.json --html OUT`.

const reportHTMLUsage = "also write the final report as a self-contained HTML page to `FILE` (per-cluster before/after, timeline, throughput with the throttle's limit, ETA against what happened)"

// newRunRecorder records the run's timeline when a report is wanted.
func newRunRecorder(a *applyFlags, moves []migrate.Move, inv *inventory.Inventory, limiters map[string]*throttle.Limiter) *htmlreport.Recorder {
	if a.report == "" && a.reportHTML == "" {
		return nil
	}
	names := make([]string, 0, len(inv.Clusters))
	for _, c := range inv.Clusters {
		names = append(names, c.Name)
	}
	return htmlreport.NewRecorder(moves, names, func(c string) *throttle.Limiter { return limiters[c] }, time.Second)
}

// writeRunReports writes --report (JSON) and --report-html. A failure to
// write is reported and does not change the run's exit code: the work is
// done and recorded in the state either way.
func writeRunReports(g *globalOptions, a *applyFlags, rep *migrate.ApplyReport, plan *planner.Plan, rec *htmlreport.Recorder) {
	if rec == nil {
		return
	}
	doc := &htmlreport.RunDocument{ApplyReport: rep, Plan: htmlreport.Summarize(plan), Timeline: rec.Stop()}
	if a.report != "" {
		data, err := json.MarshalIndent(doc, "", "  ")
		if err == nil {
			err = writeFileAtomic(a.report, append(data, '\n'))
		}
		if err != nil {
			g.log.Error(fmt.Sprintf("write report %s: %v", a.report, err))
		}
	}
	if a.reportHTML != "" {
		if err := writeRunHTML(a.reportHTML, doc); err != nil {
			g.log.Error(fmt.Sprintf("write HTML report %s: %v", a.reportHTML, err))
		}
	}
}

func writeRunHTML(path string, doc *htmlreport.RunDocument) error {
	var buf bytes.Buffer
	if err := htmlreport.WriteRun(&buf, doc, time.Now()); err != nil {
		return err
	}
	return writeFileAtomic(path, buf.Bytes())
}

func writePlanHTML(path string, plan *planner.Plan) error {
	var buf bytes.Buffer
	if err := htmlreport.WritePlan(&buf, plan, time.Now()); err != nil {
		return err
	}
	if err := writeFileAtomic(path, buf.Bytes()); err != nil {
		return fmt.Errorf("write HTML plan: %w", err)
	}
	return nil
}

func newReportCommand(g *globalOptions) *cobra.Command {
	var htmlOut string
	cmd := &cobra.Command{
		Use:   "report REPORT.json --html FILE",
		Short: "Draw a run's report (apply --report) as an HTML page",
		Long: `report reads the JSON report an apply, drain, rebalance or complete wrote
with --report and draws the same self-contained HTML page as --report-html:
per cluster load and storage before and after, a timeline of the moves,
throughput per cluster with the throttle's limit and pauses, the ETA against
what happened, and the table of moves with their reasons.

Exit codes: 0 written; 1 the report could not be read or the page written;
2 bad arguments.`,
		Example: `  mailferry apply drain.json -i inv.yaml --report run.json
  mailferry report run.json --html run.html`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if htmlOut == "" {
				return usageErrorf("report: say where the page goes: --html FILE")
			}
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			doc, err := htmlreport.ReadRunDocument(f)
			if err != nil {
				return fmt.Errorf("report %s: %w", args[0], err)
			}
			if err := writeRunHTML(htmlOut, doc); err != nil {
				return fmt.Errorf("write %s: %w", htmlOut, err)
			}
			fmt.Fprintf(g.stdout, "HTML report written to %s\n", htmlOut)
			return nil
		},
	}
	cmd.Flags().StringVar(&htmlOut, "html", "", "write the page to `FILE`")
	return cmd
}
