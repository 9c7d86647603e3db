package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
)

// Limits on what an inventory may hold, so that a wrong file (a binary, a
// device such as /dev/zero, a CSV with its columns swapped) fails fast with
// its file and line instead of eating memory or overflowing sums. They are
// variables so that tests can lower them.
var (
	// MaxCSVLine is the longest line a mailbox CSV may have, in bytes.
	MaxCSVLine = 64 << 10
	// MaxCSVSize is the largest mailbox CSV, in bytes (about 30 million
	// mailboxes).
	MaxCSVSize int64 = 2 << 30
	// MaxYAMLSize is the largest inventory YAML file, in bytes (long
	// lists of mailboxes belong in mailboxes_csv).
	MaxYAMLSize int64 = 64 << 20
)

// Bounds of single values; sums over a cluster are checked too (see
// checkTotals).
const (
	// MaxMailboxBytes is the largest mailbox size: 1 PiB.
	MaxMailboxBytes int64 = 1 << 50
	// MaxLoad bounds a mailbox's load and a cluster's load capacity.
	MaxLoad = 1e15
	// MaxMessages bounds a mailbox's message count.
	MaxMessages int64 = 1e12
)

// utf8BOM is stripped from the start of inventory files: editors on some
// systems write it, and it belongs to no field.
var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// limitedFile reads a file, failing with a *FieldError (file and line)
// once a line grows past maxLine or the file past maxSize. It also drops a
// UTF-8 byte order mark at its start.
type limitedFile struct {
	r       io.Reader
	name    string
	maxLine int
	maxSize int64
	size    int64
	line    int // 1-based line being read
	cur     int // bytes of that line read so far
	start   bool
	err     error
}

func newLimitedFile(name string, r io.Reader, maxLine int, maxSize int64) *limitedFile {
	return &limitedFile{r: r, name: name, maxLine: maxLine, maxSize: maxSize, line: 1, start: true}
}

func (f *limitedFile) Read(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	n, err := f.r.Read(p)
	if f.start && n > 0 {
		// The BOM may arrive split across reads only for absurdly small
		// reads; bufio (which encoding/csv uses) reads at least 4 KiB.
		f.start = false
		if bytes.HasPrefix(p[:n], utf8BOM) {
			copy(p, p[len(utf8BOM):n])
			n -= len(utf8BOM)
		}
	}
	for k, b := range p[:n] {
		f.size++
		if b == '\n' {
			f.line++
			f.cur = 0
			continue
		}
		f.cur++
		switch {
		case b == 0:
			f.err = &FieldError{File: f.name, Line: f.line, Msg: "a NUL byte: binary data, not a mailbox CSV"}
		case f.maxLine > 0 && f.cur > f.maxLine:
			f.err = &FieldError{File: f.name, Line: f.line,
				Msg: fmt.Sprintf("line longer than %s: not a mailbox CSV (mailbox,cluster,bytes,load[,messages] per line)", FormatBytes(int64(f.maxLine)))}
		case f.maxSize > 0 && f.size > f.maxSize:
			f.err = &FieldError{File: f.name, Line: f.line,
				Msg: fmt.Sprintf("file larger than %s, the most a mailbox CSV may hold", FormatBytes(f.maxSize))}
		default:
			continue
		}
		return k, f.err
	}
	return n, err
}

// readLimited reads all of r, at most max bytes, for a YAML file named
// name; it stops at the first NUL byte (binary data is no inventory).
func readLimited(name string, r io.Reader, max int64) ([]byte, error) {
	var data []byte
	buf := make([]byte, 32<<10)
	line := 1
	for {
		n, err := r.Read(buf)
		if k := bytes.IndexByte(buf[:n], 0); k >= 0 {
			line += bytes.Count(data, []byte{'\n'}) + bytes.Count(buf[:k], []byte{'\n'})
			return nil, Errors{{File: name, Line: line, Msg: "a NUL byte: binary data, not an inventory YAML"}}
		}
		data = append(data, buf[:n]...)
		if int64(len(data)) > max {
			return nil, Errors{{File: name, Msg: fmt.Sprintf("file larger than %s, the most an inventory YAML may hold (list many mailboxes in mailboxes_csv)", FormatBytes(max))}}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read inventory: %w", err)
		}
	}
	return bytes.TrimPrefix(data, utf8BOM), nil
}

// asFieldError returns err as Errors when it is a *FieldError.
func asFieldError(err error) (Errors, bool) {
	var fe *FieldError
	if errors.As(err, &fe) {
		return Errors{fe}, true
	}
	return nil, false
}

// checkValue applies the bounds of single values to a mailbox; "" if
// within them.
func checkValue(m *Mailbox) string {
	switch {
	case m.Bytes > MaxMailboxBytes:
		return fmt.Sprintf("bytes: %s is more than a mailbox holds (at most %s): are the columns in order (mailbox,cluster,bytes,load,messages)?",
			FormatBytes(m.Bytes), FormatBytes(MaxMailboxBytes))
	case m.Load > MaxLoad:
		return fmt.Sprintf("load: %g is too large (at most %g)", m.Load, MaxLoad)
	case m.Messages > MaxMessages:
		return fmt.Sprintf("messages: %d is too many (at most %d)", m.Messages, MaxMessages)
	}
	return ""
}

// checkTotals rejects clusters whose mailboxes add up to more bytes than
// an int64 holds or to a load that is not a finite number; it returns the
// problems by cluster name.
func checkTotals(inv *Inventory) map[string]string {
	type total struct {
		b    int64
		l    float64
		over bool
	}
	t := make(map[string]*total, len(inv.Clusters))
	for i := range inv.Mailboxes {
		m := &inv.Mailboxes[i]
		c := t[m.Cluster]
		if c == nil {
			c = &total{}
			t[m.Cluster] = c
		}
		if m.Bytes > math.MaxInt64-c.b {
			c.over = true
		} else {
			c.b += m.Bytes
		}
		c.l += m.Load
	}
	var out map[string]string
	for name, c := range t {
		var msg string
		switch {
		case c.over:
			msg = "its mailboxes add up to more than 8 EiB"
		case math.IsInf(c.l, 0) || math.IsNaN(c.l) || c.l > MaxLoad*1e3:
			msg = "its mailboxes' loads add up to more than a load can be"
		default:
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[name] = msg
	}
	return out
}
