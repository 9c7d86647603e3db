package faultproxy

import (
	"bytes"
	"strconv"
)

// event is what scanner.advance stopped at.
type event int

const (
	evNone     event = iota // the data ran out inside a line or literal
	evBoundary              // a line ended that completes a command or response
	evLiteral               // a line ended with a literal announcement ({n}, {n+}, ~{n})
)

// maxKeep bounds how much of a line the scanner keeps for inspection; a
// longer line keeps only its tail (enough to spot a literal) and is marked
// truncated.
const maxKeep = 64 << 10

// scanner follows one direction of an IMAP stream and knows where its
// lines and literals are: a line that ends in {n} (or {n+}) is followed by n
// raw bytes and then more of the same command or response. Only plaintext
// IMAP makes sense to it.
type scanner struct {
	literal   int64  // raw bytes still to come
	mid       bool   // inside a command or response (past its start)
	line      []byte // the current (or just ended) segment
	truncated bool   // line lost its start to maxKeep
	ended     bool   // line holds a finished segment; the next byte starts anew
}

// atStart reports whether the next byte begins a new command or response.
func (s *scanner) atStart() bool { return !s.mid && s.literal == 0 }

// reset forgets the current command: used when a client's command was
// answered by the proxy before the client sent its literal.
func (s *scanner) reset() { *s = scanner{line: s.line[:0]} }

func (s *scanner) keep(b []byte) {
	if s.ended {
		s.line, s.truncated, s.ended = s.line[:0], false, false
	}
	s.line = append(s.line, b...)
	if len(s.line) > maxKeep {
		s.line = append(s.line[:0], s.line[len(s.line)-64:]...)
		s.truncated = true
	}
}

// advance consumes data up to and including the next line end, or all of
// it, and says which it was. After evBoundary or evLiteral, s.line holds the
// segment that ended (literal bytes are never kept).
func (s *scanner) advance(data []byte) (int, event) {
	i := 0
	for i < len(data) {
		if s.literal > 0 {
			k := min(int64(len(data)-i), s.literal)
			i += int(k)
			s.literal -= k
			continue
		}
		s.mid = true
		j := bytes.IndexByte(data[i:], '\n')
		if j < 0 {
			s.keep(data[i:])
			return len(data), evNone
		}
		s.keep(data[i : i+j+1])
		i += j + 1
		s.ended = true
		if n, ok := literalAt(s.line); ok {
			s.literal = n
			return i, evLiteral
		}
		s.mid = false
		return i, evBoundary
	}
	return i, evNone
}

// literalAt reports the size of the literal a line announces at its end.
func literalAt(line []byte) (int64, bool) {
	line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
	if !bytes.HasSuffix(line, []byte("}")) {
		return 0, false
	}
	open := bytes.LastIndexByte(line, '{')
	if open < 0 {
		return 0, false
	}
	digits := line[open+1 : len(line)-1]
	digits = bytes.TrimSuffix(digits, []byte("+"))
	if len(digits) == 0 || len(digits) > 18 {
		return 0, false
	}
	n, err := strconv.ParseInt(string(digits), 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// synchronizing reports whether the literal a line announces makes the
// client wait for a continuation ("{n}", as opposed to LITERAL+ "{n+}").
func synchronizing(line []byte) bool {
	line = bytes.TrimRight(line, "\r\n")
	return !bytes.HasSuffix(line, []byte("+}"))
}
