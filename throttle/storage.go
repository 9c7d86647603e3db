package throttle

import (
	"context"
	"fmt"
	"math"
	"time"
)

// StorageLevel is what a cluster's storage signal (an inventory's
// health_query, read by a poller outside this package) says about new
// work on the cluster.
type StorageLevel int

const (
	// StorageOK: no signal, or the signal is below its thresholds (or
	// failed and is ignored): the limiter behaves as without one.
	StorageOK StorageLevel = iota
	// StorageSlow: the adaptive limit shrinks as on distress (at most once
	// per evaluation interval) and does not grow back.
	StorageSlow
	// StoragePause: as StorageSlow, and the pause gate is closed: no new
	// batch starts on the cluster (WaitStorage) until the level falls.
	StoragePause
)

// String is the level's word in reports: ok, slow or paused.
func (s StorageLevel) String() string {
	switch s {
	case StorageSlow:
		return "slow"
	case StoragePause:
		return "paused"
	}
	return "ok"
}

// StorageReading is one reading of a cluster's storage signal and the
// level the poller decided from it.
type StorageReading struct {
	Level StorageLevel
	// Value is the signal's value; it is meaningless when Err is set.
	Value float64
	// Err is why the query failed or returned nothing; Level is then what
	// the poller's on_error said.
	Err error
}

// StorageStats is the storage signal's part of Stats. It is zero for a
// cluster without a signal. The JSON names are those of the apply
// report's throttle section.
type StorageStats struct {
	// HealthLevel is the level of the latest reading: ok, slow or paused;
	// "" before the first.
	HealthLevel string `json:"health_level,omitempty"`
	// HealthValue is the latest value read successfully; nil before one.
	HealthValue *float64 `json:"health_value,omitempty"`
	// HealthPaused: the pause gate is closed now.
	HealthPaused bool `json:"health_paused,omitempty"`
	// HealthPausedSeconds is how long the gate was closed in all.
	HealthPausedSeconds float64 `json:"health_paused_seconds,omitempty"`
	// HealthPauses counts the times the gate closed.
	HealthPauses int64 `json:"health_pauses,omitempty"`
	// HealthWaits counts the batches and passes that waited at the gate.
	HealthWaits int64 `json:"health_waits,omitempty"`
	// HealthDecreases counts the shrinks of the limit the signal caused.
	HealthDecreases int64 `json:"health_decreases,omitempty"`
	// HealthReadings counts readings, HealthErrors the failed ones among
	// them; HealthLastError is the latest failure's text.
	HealthReadings  int64  `json:"health_readings,omitempty"`
	HealthErrors    int64  `json:"health_errors,omitempty"`
	HealthLastError string `json:"health_last_error,omitempty"`
}

// storage is the Limiter's storage-signal state, guarded by Limiter.mu.
type storage struct {
	level      StorageLevel
	read       bool // a reading arrived
	value      float64
	valid      bool          // value holds a successful reading
	open       chan struct{} // nil while the gate is open; closed when it opens
	closedAt   time.Time     // when the gate closed (while closed)
	pausedFor  time.Duration // closed time of the gate's past pauses
	lastShrink time.Time     // the signal's latest shrink of the limit
	st         StorageStats
}

// SetStorage applies one reading of the cluster's storage signal: the
// pause gate closes on StoragePause and opens on anything else; on
// StorageSlow and StoragePause the adaptive limit shrinks as on distress,
// at most once per evaluation interval, and it does not grow while the
// level stays there.
func (l *Limiter) SetStorage(r StorageReading) {
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	s := &l.storage
	s.read = true
	s.level = r.Level
	s.st.HealthReadings++
	if r.Err != nil {
		s.st.HealthErrors++
		s.st.HealthLastError = r.Err.Error()
	} else if !math.IsNaN(r.Value) && !math.IsInf(r.Value, 0) {
		s.value, s.valid = r.Value, true
	}
	if r.Level >= StorageSlow && (s.lastShrink.IsZero() || now.Sub(s.lastShrink) >= evalInterval) {
		s.lastShrink = now
		if l.adapt.limit > 1 {
			l.adapt.limit = max(1, int(math.Floor(float64(l.adapt.limit)*decreaseFactor)))
			l.st.Decreases++
			s.st.HealthDecreases++
		}
	}
	switch {
	case r.Level == StoragePause && s.open == nil:
		s.open = make(chan struct{})
		s.closedAt = now
		s.st.HealthPauses++
	case r.Level != StoragePause && s.open != nil:
		close(s.open)
		s.open = nil
		s.pausedFor += now.Sub(s.closedAt)
	}
}

// storageHolds reports whether the storage signal forbids the adaptive
// limit to grow. l.mu must be held.
func (l *Limiter) storageHolds() bool { return l.storage.level >= StorageSlow }

// StoragePaused reports whether the pause gate is closed.
func (l *Limiter) StoragePaused() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.storage.open != nil
}

// WaitStorage returns at once while the pause gate is open and otherwise
// waits until it opens or ctx ends (with ctx's cause). Callers wait here
// before each new batch and each new pass on the cluster.
func (l *Limiter) WaitStorage(ctx context.Context) error {
	l.mu.Lock()
	ch := l.storage.open
	if ch != nil {
		l.storage.st.HealthWaits++
	}
	l.mu.Unlock()
	if ch == nil {
		return ctx.Err()
	}
	select {
	case <-ch:
		return ctx.Err()
	case <-ctx.Done():
		return fmt.Errorf("wait for cluster %q's storage signal to fall: %w", l.name, context.Cause(ctx))
	}
}

// storageStats is the storage part of a Snapshot. l.mu must be held.
func (l *Limiter) storageStats(now time.Time) StorageStats {
	s := &l.storage
	st := s.st
	if !s.read {
		return st
	}
	st.HealthLevel = s.level.String()
	if s.valid {
		v := s.value
		st.HealthValue = &v
	}
	paused := s.pausedFor
	if s.open != nil {
		st.HealthPaused = true
		paused += now.Sub(s.closedAt)
	}
	st.HealthPausedSeconds = paused.Seconds()
	return st
}
