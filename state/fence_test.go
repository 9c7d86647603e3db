package state_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"mailferry/state"
	"mailferry/state/statetest"
)

// CheckHeld refuses once the lease's expiry passed unrenewed, by the
// store's clock (a process frozen past its lease), and Superseded says
// whether another holder took the migration since.
func TestCheckHeldAndSuperseded(t *testing.T) {
	statetest.EachDriver(t, func(t *testing.T, url string) {
		var mu sync.Mutex
		now := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
		ctx := context.Background()
		st, err := state.Open(ctx, url, state.WithClock(clock))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		key := state.Key{Source: "cluster:a/u", Target: "cluster:b/u"}
		l, err := st.Acquire(ctx, key, "frozen", 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.CheckHeld(); err != nil {
			t.Fatalf("fresh lease: %v", err)
		}
		advance(11 * time.Second) // frozen past the lease
		if err := l.CheckHeld(); !errors.Is(err, state.ErrLeaseExpired) || !errors.Is(err, state.ErrLeaseLost) {
			t.Fatalf("expired lease: %v, want ErrLeaseExpired (an ErrLeaseLost)", err)
		}
		if sup, err := l.Superseded(ctx); err != nil || sup {
			t.Fatalf("expired but not taken: superseded %v, %v", sup, err)
		}
		if _, err := st.Acquire(ctx, key, "other", 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if sup, err := l.Superseded(ctx); err != nil || !sup {
			t.Fatalf("taken over: superseded %v, %v; want true", sup, err)
		}
	})
}
