package migrate

import (
	"testing"

	"mailferry/planner"
)

// The planner's ETA models how many connection pairs a copy opens
// (pairsFor): its constants must be these.
func TestPlannerPairsModel(t *testing.T) {
	if messagesPerPair != planner.PairMessages || bytesPerPair != planner.PairBytes {
		t.Fatalf("pairsFor: %d messages, %d bytes per pair; the planner assumes %d, %d",
			messagesPerPair, bytesPerPair, planner.PairMessages, planner.PairBytes)
	}
	r := &run{}
	for _, tc := range []struct {
		msgs  int
		bytes int64
	}{{0, 0}, {999, 1 << 20}, {1000, 0}, {5000, 1 << 30}, {10, 100 << 20}} {
		want := int(1 + max(int64(tc.msgs)/planner.PairMessages, tc.bytes/planner.PairBytes))
		if got := r.pairsFor(tc.msgs, tc.bytes); got != want {
			t.Errorf("pairsFor(%d, %d) = %d, the planner's model %d", tc.msgs, tc.bytes, got, want)
		}
	}
}
