// Package planner decides which mailboxes move where, and projects what the
// clusters look like afterwards and how long the moves take. It is pure: it
// reads an inventory and a policy and returns a plan, with no I/O and no
// network. The plan is a versioned JSON document (WritePlan, ReadPlan) that
// the executor consumes.
//
// Utilisation has two dimensions, load (load units over capacity) and storage
// (bytes over capacity); a cluster's utilisation is the larger of the two.
// A mailbox's relief per byte is its load divided by its size.
package planner

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Version is the plan document version this package writes and reads.
const Version = 1

// Kind names a planning policy.
type Kind string

// Policies.
const (
	// Drain moves every mailbox off one cluster, most relief per byte first.
	Drain Kind = "drain"
	// Relieve moves the fewest bytes that bring one cluster under its load
	// and storage targets.
	Relieve Kind = "relieve"
	// Rebalance brings every cluster into a band around the mean utilisation.
	Rebalance Kind = "rebalance"
)

// Defaults for the policy knobs; see DefaultPolicy.
const (
	DefaultReserve         = 0.10
	DefaultTargetLoad      = 0.70
	DefaultTargetStorage   = 0.80
	DefaultBand            = 0.05
	DefaultStreamBytes     = 20 << 20 // bytes/s one copy stream sustains
	DefaultMessageOverhead = 0.010    // seconds per message (FETCH, APPEND, verify round trips)
	DefaultAvgMessageBytes = 64 << 10 // used when a mailbox's message count is unknown
)

// Policy says what to plan. Fields that do not apply to Kind are ignored.
type Policy struct {
	Kind    Kind   `json:"kind"`
	Cluster string `json:"cluster,omitempty"` // drain, relieve
	// TargetLoad and TargetStorage are the utilisations Relieve brings its
	// cluster under (fractions of capacity).
	TargetLoad    float64 `json:"target_load,omitempty"`
	TargetStorage float64 `json:"target_storage,omitempty"`
	// Band is Rebalance's half-width around the mean utilisation.
	Band float64 `json:"band,omitempty"`
	// Reserve is the fraction of capacity every target keeps free, in both
	// load and storage.
	Reserve float64 `json:"reserve"`
	// MaxBytes and MaxMoves bound the plan; zero means no bound.
	MaxBytes int64 `json:"max_bytes,omitempty"`
	MaxMoves int   `json:"max_moves,omitempty"`
	// BestEffort: when Relieve cannot meet its targets, plan the moves that
	// get closest instead of none.
	BestEffort bool `json:"best_effort,omitempty"`
	// ExcludeTargets never receive.
	ExcludeTargets []string `json:"exclude_targets,omitempty"`
	// Pinned mailboxes never move (in addition to those pinned in the
	// inventory).
	Pinned []string `json:"pinned,omitempty"`
	// CooldownSeconds is how long after a move finished its mailbox is not
	// moved again; CoolingDown names the mailboxes it held when the plan
	// was made (see Cooling), which stay where they are like pinned ones.
	CooldownSeconds float64  `json:"cooldown_seconds,omitempty"`
	CoolingDown     []string `json:"cooling_down,omitempty"`
	// InFlight are moves earlier runs started and did not finish (in
	// sync at ready, held, failed, interrupted): when the policy moves
	// such a mailbox it goes on to the same target, if that still fits,
	// first in the plan (see Make).
	InFlight []InFlight `json:"in_flight,omitempty"`
	// SameTags are tag keys a mailbox's target must share with its source
	// (e.g. "region").
	SameTags []string `json:"same_tags,omitempty"`
	// Assume changes the inventory for this plan only:
	// "CLUSTER.FIELD=VALUE" with FIELD one of capacity.bytes, capacity.load,
	// limits.connections, limits.bytes_per_sec, limits.messages_per_sec,
	// health; VALUE absolute ("40TiB", "800", "degraded") or relative to the
	// inventory's value ("50%").
	Assume []string `json:"assume,omitempty"`
	// AddClusters adds empty healthy clusters for this plan only:
	// "NAME:BYTES:LOAD" with optional ":key=value,key=value" tags.
	AddClusters []string `json:"add_clusters,omitempty"`
	// Throughput is the model the ETA is computed from.
	Throughput Throughput `json:"throughput"`
}

// Throughput is the model behind the ETA: how `mailferry apply` runs the
// moves (see eta.go). Per-cluster budgets come from each cluster's limits;
// these say what the copier itself does. Zero fields take their defaults.
type Throughput struct {
	// Parallelism is how many mailboxes are moved at once (apply's
	// --parallel).
	Parallelism int `json:"parallelism"`
	// Connections is the most connection pairs one mailbox's copy uses
	// (apply's --connections).
	Connections int `json:"connections,omitempty"`
	// StreamBytesPerSec is what one connection pair sustains.
	StreamBytesPerSec int64 `json:"stream_bytes_per_sec"`
	// MessageOverhead is the fixed cost per message, in seconds, on top of
	// its bytes.
	MessageOverhead float64 `json:"message_overhead_seconds"`
	// MoveOverhead is the fixed cost per move, in seconds (logins,
	// listing, the passes after the first copy, the cutover); negative
	// means none.
	MoveOverhead float64 `json:"move_overhead_seconds,omitempty"`
	// AvgMessageBytes estimates message counts for mailboxes whose count is
	// unknown.
	AvgMessageBytes int64 `json:"avg_message_bytes"`
	// Verify is apply's --verify: full (every copy read back), size or
	// none.
	Verify string `json:"verify,omitempty"`
	// Windows are apply's --window: local hours in which work may start on
	// every cluster, besides each cluster's limits.windows.
	Windows []string `json:"windows,omitempty"`
	// Calibration stretches the work on clusters the state has measured
	// moves of (see Calibrate).
	Calibration []Calibration `json:"calibration,omitempty"`
}

// InFlight is a move an earlier run started: the mailbox is on From and
// was on its way to To.
type InFlight struct {
	Mailbox string `json:"mailbox"`
	From    string `json:"from"`
	To      string `json:"to"`
}

// Calibration is what moves the state measured say about a cluster: they
// took Factor times what the model gives them, on average.
type Calibration struct {
	Cluster string  `json:"cluster"`
	Moves   int     `json:"moves"`
	Factor  float64 `json:"factor"`
}

// DefaultPolicy returns a policy of the given kind with every knob at its
// default.
func DefaultPolicy(kind Kind, cluster string) Policy {
	return Policy{
		Kind:          kind,
		Cluster:       cluster,
		TargetLoad:    DefaultTargetLoad,
		TargetStorage: DefaultTargetStorage,
		Band:          DefaultBand,
		Reserve:       DefaultReserve,
		Throughput: Throughput{
			Parallelism:       DefaultParallelism,
			Connections:       DefaultConnections,
			StreamBytesPerSec: DefaultStreamBytes,
			MessageOverhead:   DefaultMessageOverhead,
			MoveOverhead:      DefaultMoveOverhead,
			AvgMessageBytes:   DefaultAvgMessageBytes,
			Verify:            DefaultVerify,
		},
	}
}

// Plan is the planner's answer: the versioned document `mailferry plan -o`
// writes and `mailferry apply` executes.
type Plan struct {
	Version int `json:"version"`
	// Inventory is the inventory file the plan was made from, if any.
	Inventory string `json:"inventory,omitempty"`
	// RelocatedMailboxes is how many mailboxes the plan took to be where
	// moves the state records as done put them, not where the inventory
	// file has them (see Relocate).
	RelocatedMailboxes int `json:"relocated_mailboxes,omitempty"`
	// InventoryDigest is InventoryDigest of the inventory the plan was made
	// from (before what-ifs); apply compares it with the inventory it runs
	// with. Plans of older versions have none.
	InventoryDigest string `json:"inventory_digest,omitempty"`
	Policy          Policy `json:"policy"`
	// Moves in the order they should start: most relief first.
	Moves []Move `json:"moves"`
	// Clusters in inventory order, added clusters last.
	Clusters    []ClusterProjection `json:"clusters"`
	Unplaceable []Unplaceable       `json:"unplaceable"`
	// Deferred counts the moves the policy wants beyond this plan's, left
	// for a later run because of MaxBytes or MaxMoves.
	Deferred *Deferred `json:"deferred,omitempty"`
	Totals   Totals    `json:"totals"`
	Goal     Goal      `json:"goal"`
	ETA      ETA       `json:"eta"`
}

// Move is one mailbox to copy.
type Move struct {
	Mailbox  string  `json:"mailbox"`
	From     string  `json:"from"`
	To       string  `json:"to"`
	Bytes    int64   `json:"bytes"`
	Load     float64 `json:"load"`
	Messages int64   `json:"messages,omitempty"` // zero when unknown
}

// Usage is what a cluster holds at one point of the plan.
type Usage struct {
	Mailboxes   int     `json:"mailboxes"`
	Bytes       int64   `json:"bytes"`
	Load        float64 `json:"load"`
	LoadUtil    float64 `json:"load_util"`
	StorageUtil float64 `json:"storage_util"`
}

// ClusterProjection is one cluster before and after the plan.
type ClusterProjection struct {
	Name          string `json:"name"`
	Health        string `json:"health"`
	Added         bool   `json:"added,omitempty"` // from AddClusters
	Receives      bool   `json:"receives"`        // eligible as a target
	CapacityBytes int64  `json:"capacity_bytes"`
	// CapacityLoad is after assumptions are applied.
	CapacityLoad float64 `json:"capacity_load"`
	Before       Usage   `json:"before"`
	After        Usage   `json:"after"`
	MovesIn      int     `json:"moves_in"`
	MovesOut     int     `json:"moves_out"`
}

// Unplaceable is a mailbox the policy wanted to move but could not.
type Unplaceable struct {
	Mailbox string  `json:"mailbox"`
	Cluster string  `json:"cluster"`
	Bytes   int64   `json:"bytes"`
	Load    float64 `json:"load"`
	Reason  string  `json:"reason"`
}

// Deferred summarises what a bound left for a later run: the moves (and
// their bytes) the same policy plans without the bounds, beyond this plan's.
type Deferred struct {
	Mailboxes int    `json:"mailboxes"`
	Bytes     int64  `json:"bytes"`
	Reason    string `json:"reason"`
	// WantedMoves and WantedBytes are what the policy plans without the
	// bounds.
	WantedMoves int   `json:"wanted_moves,omitempty"`
	WantedBytes int64 `json:"wanted_bytes,omitempty"`
}

// Totals sums the moves.
type Totals struct {
	Moves    int     `json:"moves"`
	Bytes    int64   `json:"bytes"`
	Load     float64 `json:"load"`
	Messages int64   `json:"messages"`
	// MessagesEstimated is set when some moves' message counts were unknown
	// and estimated from their bytes for Messages and the ETA.
	MessagesEstimated bool `json:"messages_estimated,omitempty"`
}

// Goal says whether the policy achieved what it was asked.
type Goal struct {
	Met    bool   `json:"met"`
	Detail string `json:"detail"`
	// LowerBoundBytes is a lower bound on the bytes any plan that meets
	// the goal moves: for Relieve the fractional-knapsack minimum, for
	// Rebalance a sum of such over the clusters outside the band (zero
	// when the goal cannot be met).
	LowerBoundBytes int64 `json:"lower_bound_bytes,omitempty"`
	// Infeasible says the goal was known not to be reachable before any
	// move was chosen (Detail says why).
	Infeasible bool `json:"infeasible,omitempty"`
}

// ETA is the projected duration of the moves: a schedule of them as apply
// runs them (see eta.go).
type ETA struct {
	Seconds float64 `json:"seconds"`
	// Bottleneck names what bound the schedule longest: a cluster name, or
	// "parallelism", or a mailbox (the last to end, when the last moves
	// ran with nothing left to start), or "time windows".
	Bottleneck     string       `json:"bottleneck,omitempty"`
	BottleneckKind string       `json:"bottleneck_kind,omitempty"` // cluster, parallelism, mailbox, windows
	Detail         string       `json:"detail,omitempty"`
	Clusters       []ClusterETA `json:"clusters,omitempty"`
	// Limits are what bound the moves, and for how long (the running
	// moves' shares of each stretch of the schedule), longest first.
	Limits []ETALimit `json:"limits,omitempty"`
	// StartsAt is the time of day the schedule starts from when there are
	// time windows: when the first opens (HH:MM, local).
	StartsAt string `json:"starts_at,omitempty"`
}

// ETALimit is one limit and how long it bound the moves.
type ETALimit struct {
	Limit   string  `json:"limit"`
	Kind    string  `json:"kind"`
	Seconds float64 `json:"seconds"`
}

// ClusterETA is one cluster's share of the work: what it reads and writes,
// the most connection pairs it held at once (Streams), and how long it was
// busy (Seconds) at what mean rate.
type ClusterETA struct {
	Cluster     string  `json:"cluster"`
	ReadBytes   int64   `json:"read_bytes"`
	WriteBytes  int64   `json:"write_bytes"`
	Messages    int64   `json:"messages"`
	Streams     int     `json:"streams"`
	BytesPerSec float64 `json:"bytes_per_sec"`
	Seconds     float64 `json:"seconds"`
}

// WritePlan writes p as indented JSON.
func WritePlan(w io.Writer, p *Plan) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(p)
}

// ReadPlan decodes a plan document. It rejects a document of another version
// (saying which versions it reads), unknown fields, trailing data and moves
// that cannot be executed (empty names, a move onto its own cluster, negative
// sizes, a mailbox moved twice).
func ReadPlan(r io.Reader) (*Plan, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read plan: %w", err)
	}
	var probe struct {
		Version *int `json:"version"`
	}
	if err := json.NewDecoder(bytes.NewReader(data)).Decode(&probe); err != nil {
		return nil, fmt.Errorf("read plan: not a plan document: %w", err)
	}
	if probe.Version == nil {
		return nil, errors.New("read plan: no version field: not a mailferry plan")
	}
	if *probe.Version != Version {
		return nil, fmt.Errorf("read plan: plan version %d is not supported: this mailferry reads version %d", *probe.Version, Version)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var p Plan
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("read plan: %w", err)
	}
	if dec.More() {
		return nil, errors.New("read plan: trailing data after the plan document")
	}
	seen := make(map[string]bool, len(p.Moves))
	for i, m := range p.Moves {
		switch {
		case m.Mailbox == "":
			return nil, fmt.Errorf("read plan: moves[%d]: no mailbox", i)
		case m.From == "" || m.To == "":
			return nil, fmt.Errorf("read plan: moves[%d] (%q): from and to are required", i, m.Mailbox)
		case m.From == m.To:
			return nil, fmt.Errorf("read plan: moves[%d] (%q): from and to are both %q", i, m.Mailbox, m.From)
		case m.Bytes < 0 || m.Messages < 0 || !(m.Load >= 0):
			return nil, fmt.Errorf("read plan: moves[%d] (%q): negative size", i, m.Mailbox)
		case seen[m.Mailbox]:
			return nil, fmt.Errorf("read plan: moves[%d]: mailbox %q is moved twice", i, m.Mailbox)
		}
		seen[m.Mailbox] = true
	}
	return &p, nil
}
