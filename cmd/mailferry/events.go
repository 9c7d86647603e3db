package main

import (
	"time"

	"mailferry/migrate"
	"mailferry/planner"
	"mailferry/preflight"
)

// The lines of the NDJSON stream that apply, drain, complete, rebalance and
// demo print on stdout with --json: one JSON object per line, told apart by
// "event". schema/events.schema.json describes them (see schema_test.go).

// eventLine is one event of a move: a phase change, a folder, a warning,
// a finished move.
type eventLine struct {
	Event    string    `json:"event" jsonschema:"enum=planned,enum=folder_started,enum=folder_done,enum=message_copied,enum=warning,enum=move_phase,enum=move_done,enum=cluster_health"`
	Time     time.Time `json:"time"`
	Mailbox  string    `json:"mailbox,omitempty"`
	Cluster  string    `json:"cluster,omitempty"` // cluster_health: the cluster whose storage signal changed
	Folder   string    `json:"folder,omitempty"`
	Messages int       `json:"messages,omitempty"`
	Bytes    int64     `json:"bytes,omitempty"`
	Text     string    `json:"text,omitempty"`
	// Reason: move_done of a move that is not done, why (as in the report).
	Reason string `json:"reason,omitempty"`
}

// progressLine sums the messages copied so far, every few seconds.
type progressLine struct {
	Event    string    `json:"event" jsonschema:"enum=progress"`
	Time     time.Time `json:"time"`
	Messages int       `json:"messages"`
	Bytes    int64     `json:"bytes"`
	Finished int       `json:"moves_finished"`
	Moves    int       `json:"moves"`
}

// planLine is the plan a drain or the demo is about to apply (the plan
// document's fields, with "event").
type planLine struct {
	Event string `json:"event" jsonschema:"enum=plan"`
	*planner.Plan
}

// preflightLine is a failed preflight, the last line of a run it stopped.
type preflightLine struct {
	Event string `json:"event" jsonschema:"enum=preflight"`
	OK    bool   `json:"ok"`
	*preflight.Report
}

// reportLine is the final report, the last line of a run.
type reportLine struct {
	Event string `json:"event" jsonschema:"enum=report"`
	*migrate.ApplyReport
}

// eventLines are the types of the NDJSON stream, for its schema.
var eventLines = []any{eventLine{}, progressLine{}, planLine{}, preflightLine{}, reportLine{}}
