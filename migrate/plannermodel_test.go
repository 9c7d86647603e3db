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

// A copy alone in its process (migrate) opens a pair per quarter of that
// work: a 500-message mailbox gets three pairs alone and one in apply.
func TestPairsAlone(t *testing.T) {
	alone, shared := &run{opts: Options{Alone: true}}, &run{}
	for _, tc := range []struct {
		msgs          int
		bytes         int64
		alone, shared int
	}{{0, 0, 1, 1}, {249, 1 << 20, 1, 1}, {250, 0, 2, 1}, {500, 8 << 20, 3, 1}, {999, 0, 4, 1}, {10, 16 << 20, 3, 1}} {
		if got := alone.pairsFor(tc.msgs, tc.bytes); got != tc.alone {
			t.Errorf("alone: pairsFor(%d, %d) = %d, want %d", tc.msgs, tc.bytes, got, tc.alone)
		}
		if got := shared.pairsFor(tc.msgs, tc.bytes); got != tc.shared {
			t.Errorf("shared: pairsFor(%d, %d) = %d, want %d", tc.msgs, tc.bytes, got, tc.shared)
		}
	}
}
