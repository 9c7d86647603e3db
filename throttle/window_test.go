package throttle

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // America/New_York for the daylight-saving case

	"mailferry/internal/testrig/fakeclock"
)

func TestParseWindow(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Window
	}{
		{"01:00-06:00", Window{time.Hour, 6 * time.Hour}},
		{"22:30-04:15", Window{22*time.Hour + 30*time.Minute, 4*time.Hour + 15*time.Minute}},
		{" 9:05 - 17:00 ", Window{9*time.Hour + 5*time.Minute, 17 * time.Hour}},
		{"22:00-24:00", Window{22 * time.Hour, 0}},
		{"00:00-24:00", Window{0, 24 * time.Hour}},
	} {
		got, err := ParseWindow(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseWindow(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "01:00", "1-6", "25:00-06:00", "01:60-02:00", "24:00-06:00", "24:01-01:00", "01:00-01:00", "a:00-b:00", "+1:00-02:00", "01:00-06:00-07:00", "01:00-6"} {
		_, err := ParseWindow(bad)
		if err == nil {
			t.Errorf("ParseWindow(%q) accepted", bad)
			continue
		}
		if !strings.Contains(err.Error(), `"`+bad+`"`) {
			t.Errorf("ParseWindow(%q): error %q does not name the value", bad, err)
		}
	}
	ws, err := ParseWindows("01:00-06:00,22:00-23:30", "12:00-13:00")
	if err != nil || len(ws) != 3 || ws.String() != "01:00-06:00,22:00-23:30,12:00-13:00" {
		t.Fatalf("ParseWindows: %v, %v", ws, err)
	}
	if _, err := ParseWindows("01:00-06:00,nope"); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("ParseWindows with a bad part: %v", err)
	}
}

func at(loc *time.Location, day, hour, min int) time.Time {
	return time.Date(2025, 3, day, hour, min, 0, 0, loc)
}

func TestWindowsOpenAndNext(t *testing.T) {
	loc := time.FixedZone("CET", 3600)
	ws, err := ParseWindows("23:00-02:00", "12:00-12:30")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		t    time.Time
		open bool
		next time.Time
	}{
		{at(loc, 5, 23, 0), true, at(loc, 5, 23, 0)},
		{at(loc, 6, 0, 30), true, at(loc, 6, 0, 30)},
		{at(loc, 6, 1, 59), true, at(loc, 6, 1, 59)},
		{at(loc, 6, 2, 0), false, at(loc, 6, 12, 0)},
		{at(loc, 6, 12, 29), true, at(loc, 6, 12, 29)},
		{at(loc, 6, 12, 30), false, at(loc, 6, 23, 0)},
		{at(loc, 6, 22, 59), false, at(loc, 6, 23, 0)},
	} {
		if got := ws.Open(tc.t); got != tc.open {
			t.Errorf("Open(%v) = %v; want %v", tc.t, got, tc.open)
		}
		if got := ws.Next(tc.t); !got.Equal(tc.next) {
			t.Errorf("Next(%v) = %v; want %v", tc.t, got, tc.next)
		}
	}
	// Read in the time's own location: 22:30 UTC is 23:30 CET.
	if !ws.Open(time.Date(2025, 3, 5, 22, 30, 0, 0, time.UTC).In(loc)) {
		t.Error("22:30 UTC read in CET should be open")
	}
	var always Windows
	if !always.Open(at(loc, 1, 3, 0)) || !always.Next(at(loc, 1, 3, 0)).Equal(at(loc, 1, 3, 0)) {
		t.Error("no windows must mean always open")
	}
}

func TestWindowsWait(t *testing.T) {
	loc := time.FixedZone("CET", 3600)
	ws, _ := ParseWindows("01:00-06:00")
	clock := fakeclock.New(at(loc, 6, 7, 15))
	if err := ws.Wait(context.Background(), clock); err != nil {
		t.Fatal(err)
	}
	if got := clock.Now(); !got.Equal(at(loc, 7, 1, 0)) {
		t.Fatalf("waited until %v; want the next day 01:00", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	clock.Set(at(loc, 7, 7, 0))
	if err := ws.Wait(ctx, clock); !errors.Is(err, context.Canceled) {
		t.Fatalf("wait outside the window with a canceled context: %v", err)
	}

	l, err := New("src", Config{Windows: ws}, WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.WaitWindow(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := l.Snapshot(); s.WindowWaits != 1 || !clock.Now().Equal(at(loc, 8, 1, 0)) {
		t.Fatalf("WaitWindow: %d waits, clock %v", s.WindowWaits, clock.Now())
	}
}

func TestWindowsAcrossDaylightSaving(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	// 2025-03-09 02:00 does not exist in New York (clocks jump to 03:00).
	ws, _ := ParseWindows("02:30-02:45")
	clock := fakeclock.New(time.Date(2025, 3, 8, 12, 0, 0, 0, ny))
	var days []int
	for range 3 {
		if err := ws.Wait(context.Background(), clock); err != nil {
			t.Fatal(err)
		}
		now := clock.Now()
		if !ws.Open(now) || now.Hour() != 2 || now.Minute() != 30 {
			t.Fatalf("Wait returned at %v; want 02:30", now)
		}
		days = append(days, now.Day())
		clock.Advance(time.Hour)
	}
	// The 9th has no 02:30: the window does not open that day.
	if days[0] != 10 || days[1] != 11 || days[2] != 12 {
		t.Fatalf("opened on days %v; want 10, 11, 12", days)
	}
}

func FuzzParseWindow(f *testing.F) {
	for _, s := range []string{"01:00-06:00", "22:00-24:00", "00:00-24:00", "9:5-1:00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		w, err := ParseWindow(s)
		if err != nil {
			return
		}
		again, err := ParseWindow(w.String())
		if err != nil || again != w {
			t.Fatalf("ParseWindow(%q) = %v; reparsed %q as %v, %v", s, w, w.String(), again, err)
		}
	})
}
