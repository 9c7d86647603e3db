package state_test

import (
	"context"
	"testing"
	"time"

	"mailferry/state"
)

// InPhase lists the migrations in a phase, oldest change first, with their
// totals and times, and nothing else.
func TestInPhase(t *testing.T) {
	each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		clk := newClock()
		s := open(t, url, clk)
		start := clk.Now()
		finish := func(k state.Key, phase string, msgs, bytes int64) {
			l := acquire(t, s, k, "w")
			clk.Advance(time.Minute)
			if err := l.SetProgress(ctx, state.Progress{Phase: phase, MessagesTotal: msgs, BytesTotal: bytes}); err != nil {
				t.Fatal(err)
			}
			if err := l.Release(ctx); err != nil {
				t.Fatal(err)
			}
		}
		b := state.Key{Source: "cluster:a/bob", Target: "cluster:b/bob"}
		c := state.Key{Source: "cluster:a/carol", Target: "cluster:c/carol"}
		finish(b, "done", 10, 1000)
		finish(state.Key{Source: "cluster:a/dan", Target: "cluster:b/dan"}, "ready", 1, 1)
		finish(c, "done", 20, 2000)
		got, err := s.InPhase(ctx, "done")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0].Key != b || got[1].Key != c {
			t.Fatalf("InPhase(done) = %+v", got)
		}
		if g := got[1]; g.Messages != 20 || g.Bytes != 2000 || !g.Created.Equal(start.Add(2*time.Minute)) || !g.Updated.Equal(start.Add(3*time.Minute)) {
			t.Fatalf("carol %+v (start %v)", g, start)
		}
		if none, err := s.InPhase(ctx, "copying"); err != nil || len(none) != 0 {
			t.Fatalf("InPhase(copying) = %v, %v", none, err)
		}
		if rest, err := s.NotInPhase(ctx, "done"); err != nil || len(rest) != 1 || rest[0].Key.Source != "cluster:a/dan" {
			t.Fatalf("NotInPhase(done) = %v, %v", rest, err)
		}
	})
}
