package faultproxy

import (
	"fmt"
	"testing"
)

type step struct {
	end int // offset just after the event
	ev  event
}

// events feeds data to a fresh scanner in pieces of at most size bytes and
// returns the line-end events with their offsets.
func events(data []byte, size int) []step {
	var s scanner
	var out []step
	off := 0
	for off < len(data) {
		piece := data[off:min(len(data), off+size)]
		for len(piece) > 0 {
			n, ev := s.advance(piece)
			piece = piece[n:]
			off += n
			if ev != evNone {
				out = append(out, step{off, ev})
			}
		}
	}
	return out
}

func TestScanner(t *testing.T) {
	// Segments of the stream and the event that ends each.
	segs := []struct {
		text string
		ev   event
	}{
		{"* OK ready\r\n", evBoundary},
		{"* 1 FETCH (BODY[] {12}\r\n", evLiteral},
		{"A1 OK {3}\r\n FLAGS (\\Seen))\r\n", evBoundary}, // 12 literal bytes, then the line's rest
		{"a2 APPEND INBOX ~{4+}\r\n", evLiteral},
		{"\r\n\r\n\r\n", evBoundary},
		{"+ go\r\n", evBoundary},
		{"* 2 EXISTS\n", evBoundary},
		{"* SEARCH {99999999999999999999}\r\n", evBoundary}, // an absurd literal size is a plain line
	}
	var stream []byte
	var want []step
	for _, sg := range segs {
		stream = append(stream, sg.text...)
		want = append(want, step{len(stream), sg.ev})
	}
	for size := 1; size <= len(stream); size++ {
		if got := events(stream, size); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("pieces of %d: events %v; want %v", size, got, want)
		}
	}
}

func TestLiteralAt(t *testing.T) {
	for _, tc := range []struct {
		line string
		n    int64
		ok   bool
		sync bool
	}{
		{"a APPEND INBOX {310}\r\n", 310, true, true},
		{"a APPEND INBOX {310+}\r\n", 310, true, false},
		{"a APPEND INBOX ~{0}\n", 0, true, true},
		{"a LOGIN {x}\r\n", 0, false, true},
		{"a LOGIN {}\r\n", 0, false, true},
		{"a LOGIN {-1}\r\n", 0, false, true},
		{"a NOOP\r\n", 0, false, true},
		{"}\r\n", 0, false, true},
	} {
		n, ok := literalAt([]byte(tc.line))
		if n != tc.n || ok != tc.ok || ok && synchronizing([]byte(tc.line)) != tc.sync {
			t.Errorf("literalAt(%q) = %d, %v", tc.line, n, ok)
		}
	}
}

func FuzzScanner(f *testing.F) {
	f.Add([]byte("* 1 FETCH (BODY[] {5}\r\nab\r\nc)\r\na OK\r\n"), uint8(3))
	f.Add([]byte("a APPEND x {2+}\r\n{3}\r\n\r\n"), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, size uint8) {
		whole := events(data, len(data)+1)
		split := events(data, int(size)+1)
		if fmt.Sprint(whole) != fmt.Sprint(split) {
			t.Fatalf("events depend on how the stream is split: %v vs %v", whole, split)
		}
		for _, e := range whole {
			if e.end <= 0 || e.end > len(data) || data[e.end-1] != '\n' {
				t.Fatalf("event at %d does not follow a line end", e.end)
			}
		}
	})
}
