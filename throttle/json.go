package throttle

import (
	"encoding/json"
	"time"
)

// StatsJSON is Stats as reports print it: snake_case names that carry
// their unit, durations in seconds, the last signal by name.
type StatsJSON struct {
	Name              string  `json:"name"`
	Limit             int     `json:"limit"`
	Cap               int     `json:"cap"`
	InFlight          int     `json:"in_flight"`
	Connections       int     `json:"connections"`
	LatencyP90Seconds float64 `json:"latency_p90_seconds"`
	BaselineSeconds   float64 `json:"latency_baseline_seconds"`
	Commands          int64   `json:"commands"`
	CommandsSent      int64   `json:"commands_sent"`
	Errors            int64   `json:"errors"`
	OverloadErrors    int64   `json:"overload_errors"`
	LimitDecreases    int64   `json:"limit_decreases"`
	LimitIncreases    int64   `json:"limit_increases"`
	ConnectionWaits   int64   `json:"connection_waits"`
	ConnectionWaitSec float64 `json:"connection_wait_seconds"`
	SlotWaits         int64   `json:"slot_waits"`
	SlotWaitSeconds   float64 `json:"slot_wait_seconds"`
	RateWaits         int64   `json:"rate_waits"`
	RateWaitSeconds   float64 `json:"rate_wait_seconds"`
	WindowWaits       int64   `json:"window_waits"`
	WindowWaitSeconds float64 `json:"window_wait_seconds"`
	Backoffs          int64   `json:"backoffs"`
	BackoffSeconds    float64 `json:"backoff_seconds"`
	LastSignal        string  `json:"last_signal,omitempty"`
	// StorageStats are the health_query figures (already named with
	// their units); omitted without a health_query.
	StorageStats
}

// JSON is s as StatsJSON.
func (s Stats) JSON() StatsJSON {
	j := StatsJSON{
		Name: s.Name, Limit: s.Limit, Cap: s.Cap, InFlight: s.InFlight, Connections: s.Conns,
		LatencyP90Seconds: s.Latency.Seconds(), BaselineSeconds: s.Baseline.Seconds(),
		Commands: s.Commands, CommandsSent: s.Sent, Errors: s.Errors, OverloadErrors: s.Distress,
		LimitDecreases: s.Decreases, LimitIncreases: s.Increases,
		ConnectionWaits: s.ConnWaits, ConnectionWaitSec: s.ConnWaited.Seconds(), SlotWaits: s.SlotWaits, SlotWaitSeconds: s.SlotWaited.Seconds(),
		RateWaits: s.RateWaits, RateWaitSeconds: s.RateWaited.Seconds(),
		WindowWaits: s.WindowWaits, WindowWaitSeconds: s.WindowWaited.Seconds(), Backoffs: s.Backoffs, BackoffSeconds: s.BackoffTime.Seconds(),
		StorageStats: s.StorageStats,
	}
	if s.LastSignal != SignalNone {
		j.LastSignal = s.LastSignal.String()
	}
	return j
}

// MarshalJSON writes s as StatsJSON.
func (s Stats) MarshalJSON() ([]byte, error) { return json.Marshal(s.JSON()) }

// UnmarshalJSON reads what MarshalJSON wrote.
func (s *Stats) UnmarshalJSON(data []byte) error {
	var j StatsJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	sec := func(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }
	*s = Stats{
		Name: j.Name, Limit: j.Limit, Cap: j.Cap, InFlight: j.InFlight, Conns: j.Connections,
		Latency: sec(j.LatencyP90Seconds), Baseline: sec(j.BaselineSeconds),
		Commands: j.Commands, Sent: j.CommandsSent, Errors: j.Errors, Distress: j.OverloadErrors,
		Decreases: j.LimitDecreases, Increases: j.LimitIncreases,
		ConnWaits: j.ConnectionWaits, ConnWaited: sec(j.ConnectionWaitSec), SlotWaits: j.SlotWaits, SlotWaited: sec(j.SlotWaitSeconds),
		RateWaits: j.RateWaits, RateWaited: sec(j.RateWaitSeconds),
		WindowWaits: j.WindowWaits, WindowWaited: sec(j.WindowWaitSeconds), Backoffs: j.Backoffs, BackoffTime: sec(j.BackoffSeconds),
		StorageStats: j.StorageStats,
	}
	for i, name := range signalNames {
		if name == j.LastSignal {
			s.LastSignal = Signal(i)
		}
	}
	return nil
}

// JSONSchemaAlias tells a JSON Schema generator (invopop/jsonschema) that
// Stats is written as StatsJSON.
func (Stats) JSONSchemaAlias() any { return StatsJSON{} }
