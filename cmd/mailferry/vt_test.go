package main

import (
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// vtScreen is a small terminal emulator for the live-view tests: what a
// terminal of its size would show after the bytes written to it, and the
// lines that scrolled off its top. It knows what a progress display
// sends (printable text, CR, LF, backspace, tab, and the CSI sequences
// for cursor moves and erasing); other sequences are swallowed. Written
// by hand: a screen capture needs an emulator, and the Go ones on offer
// are whole terminal widgets.
type vtScreen struct {
	mu          sync.Mutex
	cols, rows  int
	cells       [][]rune
	history     []string // lines scrolled off the top, oldest first
	x, y        int
	pendingWrap bool // the last column was written: the next character wraps
	esc         []byte
	partial     []byte // an incomplete UTF-8 sequence
}

func newVTScreen(cols, rows int) *vtScreen {
	s := &vtScreen{cols: cols, rows: rows}
	for range rows {
		s.cells = append(s.cells, s.blank())
	}
	return s
}

func (s *vtScreen) blank() []rune {
	return []rune(strings.Repeat(" ", s.cols))
}

// Write feeds the terminal.
func (s *vtScreen) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	data := append(s.partial, p...)
	s.partial = nil
	for len(data) > 0 {
		if s.esc != nil {
			s.escape(data[0])
			data = data[1:]
			continue
		}
		r, n := utf8.DecodeRune(data)
		if r == utf8.RuneError && n == 1 && !utf8.FullRune(data) {
			s.partial = append([]byte(nil), data...)
			break
		}
		data = data[n:]
		s.put(r)
	}
	return len(p), nil
}

func (s *vtScreen) put(r rune) {
	switch r {
	case 0x1b:
		s.esc = []byte{}
	case '\r':
		s.x, s.pendingWrap = 0, false
	case '\n':
		s.lineFeed()
	case '\b':
		if s.x > 0 {
			s.x--
		}
		s.pendingWrap = false
	case '\t':
		s.x = min(s.cols-1, (s.x/8+1)*8)
	default:
		if r < 0x20 {
			return
		}
		if s.pendingWrap {
			s.x, s.pendingWrap = 0, false
			s.lineFeed()
		}
		s.cells[s.y][s.x] = r
		if s.x == s.cols-1 {
			s.pendingWrap = true
		} else {
			s.x++
		}
	}
}

func (s *vtScreen) lineFeed() {
	s.pendingWrap = false
	if s.y < s.rows-1 {
		s.y++
		return
	}
	s.history = append(s.history, strings.TrimRight(string(s.cells[0]), " "))
	copy(s.cells, s.cells[1:])
	s.cells[s.rows-1] = s.blank()
}

// escape takes one byte of an escape sequence.
func (s *vtScreen) escape(b byte) {
	if len(s.esc) == 0 && b != '[' {
		s.esc = nil // a two-byte sequence: ignored
		return
	}
	s.esc = append(s.esc, b)
	if len(s.esc) == 1 || b < 0x40 || b > 0x7e {
		return // "[", then parameters until the final byte
	}
	params := string(s.esc[1 : len(s.esc)-1])
	s.esc = nil
	if strings.HasPrefix(params, "?") {
		return // modes (cursor visibility...)
	}
	n := 1
	if v, err := strconv.Atoi(strings.Split(params, ";")[0]); err == nil {
		n = v
	}
	s.pendingWrap = false
	switch b {
	case 'A':
		s.y = max(0, s.y-max(n, 1))
	case 'B':
		s.y = min(s.rows-1, s.y+max(n, 1))
	case 'C':
		s.x = min(s.cols-1, s.x+max(n, 1))
	case 'D':
		s.x = max(0, s.x-max(n, 1))
	case 'G':
		s.x = min(s.cols-1, max(n, 1)-1)
	case 'H', 'f':
		parts := strings.Split(params, ";")
		row, col := 1, 1
		if v, err := strconv.Atoi(parts[0]); err == nil {
			row = v
		}
		if len(parts) > 1 {
			if v, err := strconv.Atoi(parts[1]); err == nil {
				col = v
			}
		}
		s.y, s.x = min(s.rows-1, max(row, 1)-1), min(s.cols-1, max(col, 1)-1)
	case 'J':
		mode := 0
		if params != "" {
			mode = n
		}
		switch mode {
		case 0:
			s.eraseLine(s.y, s.x, s.cols)
			for y := s.y + 1; y < s.rows; y++ {
				s.cells[y] = s.blank()
			}
		case 2, 3:
			for y := range s.rows {
				s.cells[y] = s.blank()
			}
		}
	case 'K':
		mode := 0
		if params != "" {
			mode = n
		}
		switch mode {
		case 0:
			s.eraseLine(s.y, s.x, s.cols)
		case 1:
			s.eraseLine(s.y, 0, s.x+1)
		case 2:
			s.eraseLine(s.y, 0, s.cols)
		}
	}
}

func (s *vtScreen) eraseLine(y, from, to int) {
	for x := from; x < to && x < s.cols; x++ {
		s.cells[y][x] = ' '
	}
}

// capture is the screen's lines now, trailing blanks trimmed.
func (s *vtScreen) capture() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, s.rows)
	for y, row := range s.cells {
		out[y] = strings.TrimRight(string(row), " ")
	}
	return out
}

// transcript is every line the terminal showed that is still to be seen:
// the scrolled-off lines and the screen, trailing blank lines dropped.
func (s *vtScreen) transcript() []string {
	screen := s.capture()
	s.mu.Lock()
	lines := append(append([]string(nil), s.history...), screen...)
	s.mu.Unlock()
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}
