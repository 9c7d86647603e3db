// Package fakeclock is a manual clock for tests of time-dependent code
// (throttle's adaptive limit, backoff and windows): time moves only when the
// test advances it or when code sleeps on it, and sleeping returns at once.
package fakeclock

import (
	"context"
	"sync"
	"time"
)

// Clock satisfies throttle.Clock. It is safe for concurrent use.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	slept  time.Duration
	sleeps int
}

// New returns a clock that reads t until advanced.
func New(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's current time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Sleep advances the clock by d (when d > 0) and returns at once, or
// returns ctx's error without advancing if ctx has already ended.
func (c *Clock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if d > 0 {
		c.now = c.now.Add(d)
		c.slept += d
		c.sleeps++
	}
	return nil
}

// Advance moves the clock forward by d without counting it as sleep.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Set moves the clock to t (which may be earlier than now).
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// Slept returns the total time and the number of calls that Sleep advanced
// the clock.
func (c *Clock) Slept() (time.Duration, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.slept, c.sleeps
}
