package throttle

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Window is a daily span of local time in which new work may start, from
// Start up to (not including) End, both as offsets from midnight. A window
// whose End is not after its Start crosses midnight ("22:00-04:00").
type Window struct {
	Start, End time.Duration
}

// ParseWindow parses "HH:MM-HH:MM" (24-hour clock; "24:00" may end a
// window). Equal ends are an error: there is no empty window, and a whole
// day is "00:00-24:00".
func ParseWindow(s string) (Window, error) {
	from, to, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		return Window{}, fmt.Errorf("window %q: want HH:MM-HH:MM", s)
	}
	start, err := parseClock(from, false)
	if err != nil {
		return Window{}, fmt.Errorf("window %q: start: %w", s, err)
	}
	end, err := parseClock(to, true)
	if err != nil {
		return Window{}, fmt.Errorf("window %q: end: %w", s, err)
	}
	if start == end {
		return Window{}, fmt.Errorf("window %q: start equals end (a whole day is 00:00-24:00)", s)
	}
	if end == 24*time.Hour && start == 0 {
		return Window{Start: 0, End: 24 * time.Hour}, nil
	}
	return Window{Start: start, End: end % (24 * time.Hour)}, nil
}

func parseClock(s string, end bool) (time.Duration, error) {
	s = strings.TrimSpace(s)
	hh, mm, ok := strings.Cut(s, ":")
	if !ok || len(hh) < 1 || len(hh) > 2 || len(mm) != 2 {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	h, err1 := strconv.Atoi(hh)
	m, err2 := strconv.Atoi(mm)
	if err1 != nil || err2 != nil || h < 0 || m < 0 || hh[0] == '+' || mm[0] == '+' {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	if m > 59 || h > 24 || h == 24 && (m != 0 || !end) {
		return 0, fmt.Errorf("%q is not a time of day", s)
	}
	return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute, nil
}

// String formats w as ParseWindow reads it.
func (w Window) String() string {
	f := func(d time.Duration) string {
		return fmt.Sprintf("%02d:%02d", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	end := w.End
	if end == 0 {
		end = 24 * time.Hour
	}
	return f(w.Start) + "-" + f(end)
}

// open reports whether the time of day tod lies in w.
func (w Window) open(tod time.Duration) bool {
	if w.Start < w.End {
		return tod >= w.Start && tod < w.End
	}
	return tod >= w.Start || tod < w.End
}

// Windows is a set of windows; new work may start when any is open. The
// empty set is always open.
type Windows []Window

// ParseWindows parses each spec with ParseWindow; a spec may also hold
// several windows separated by commas ("01:00-06:00,22:00-23:30").
func ParseWindows(specs ...string) (Windows, error) {
	var ws Windows
	for _, spec := range specs {
		for part := range strings.SplitSeq(spec, ",") {
			w, err := ParseWindow(part)
			if err != nil {
				return nil, err
			}
			ws = append(ws, w)
		}
	}
	return ws, nil
}

// String formats ws as ParseWindows reads it.
func (ws Windows) String() string {
	parts := make([]string, len(ws))
	for i, w := range ws {
		parts[i] = w.String()
	}
	return strings.Join(parts, ",")
}

// timeOfDay is t's wall-clock offset from midnight in t's location.
func timeOfDay(t time.Time) time.Duration {
	h, m, s := t.Clock()
	return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute +
		time.Duration(s)*time.Second + time.Duration(t.Nanosecond())
}

// Open reports whether t (read in its own location: local time for
// time.Now) falls in one of the windows.
func (ws Windows) Open(t time.Time) bool {
	if len(ws) == 0 {
		return true
	}
	tod := timeOfDay(t)
	for _, w := range ws {
		if w.open(tod) {
			return true
		}
	}
	return false
}

// Next returns t when a window is open at t, and otherwise the earliest
// later time at which one opens (on a day when a window's start does not
// exist, as at a daylight-saving jump, the clock time it normalises to).
func (ws Windows) Next(t time.Time) time.Time {
	if ws.Open(t) {
		return t
	}
	var best time.Time
	y, mo, d := t.Date()
	for _, w := range ws {
		for day := 0; day <= 2; day++ {
			h, m := int(w.Start/time.Hour), int(w.Start%time.Hour/time.Minute)
			at := time.Date(y, mo, d+day, h, m, 0, 0, t.Location())
			if at.After(t) {
				if best.IsZero() || at.Before(best) {
					best = at
				}
				break
			}
		}
	}
	return best
}

// Wait returns nil once a window is open on clock, sleeping on it until
// then, or ctx's error if ctx ends first.
func (ws Windows) Wait(ctx context.Context, clock Clock) error {
	for {
		now := clock.Now()
		if ws.Open(now) {
			return nil
		}
		if err := clock.Sleep(ctx, ws.Next(now).Sub(now)); err != nil {
			return fmt.Errorf("wait for window %s: %w", ws, err)
		}
	}
}
