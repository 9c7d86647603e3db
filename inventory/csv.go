package inventory

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// CSVHeader is the header line WriteCSV writes and ReadCSV accepts (a first
// record whose first field is "mailbox" is taken as a header).
var CSVHeader = []string{"mailbox", "cluster", "bytes", "load", "messages"}

// ReadCSV reads mailboxes from CSV records "mailbox,cluster,bytes,load" with
// an optional fifth "messages" column. A header line and lines starting with
// '#' are skipped, and so is a UTF-8 byte order mark. bytes accepts units
// ("2GiB") as well as plain integers. Errors name the file (name) and line.
// A line longer than MaxCSVLine or a file larger than MaxCSVSize is an
// error (at that line), and so is a value out of bounds (MaxMailboxBytes,
// MaxLoad, MaxMessages). It does not check that clusters
// exist or that mailboxes are unique: Load does, against the YAML file.
func ReadCSV(name string, r io.Reader) ([]Mailbox, error) {
	mbs, _, err := readCSV(name, r, 0)
	return mbs, err
}

func readCSV(name string, r io.Reader, clusterHint int) ([]Mailbox, []int32, error) {
	cr := csv.NewReader(newLimitedFile(name, r, MaxCSVLine, MaxCSVSize))
	cr.FieldsPerRecord = -1
	cr.Comment = '#'
	cr.ReuseRecord = true
	var (
		mbs   []Mailbox
		lines []int32
		errs  Errors
	)
	// Cluster names repeat on every line; keep one copy of each.
	interned := make(map[string]string, clusterHint)
	bad := func(line int, field, format string, args ...any) {
		errs = append(errs, &FieldError{File: name, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	first := true
	for len(errs) < maxErrors {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			if fe, ok := asFieldError(err); ok {
				return nil, nil, append(errs, fe...)
			}
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				bad(pe.Line, "", "%v", pe.Err)
				// A quoting error leaves the reader unsynchronised.
				if !errors.Is(pe.Err, csv.ErrFieldCount) {
					break
				}
				continue
			}
			return nil, nil, fmt.Errorf("read %s: %w", name, err)
		}
		line, _ := cr.FieldPos(0)
		if first {
			first = false
			if strings.EqualFold(strings.TrimSpace(rec[0]), "mailbox") {
				continue
			}
		}
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		if len(rec) != 4 && len(rec) != 5 {
			bad(line, "", "want 4 or 5 fields (mailbox,cluster,bytes,load[,messages]), got %d", len(rec))
			continue
		}
		m := Mailbox{Name: strings.TrimSpace(rec[0])}
		if msg := checkMailboxName(m.Name); msg != "" {
			bad(line, "mailbox", "%s", msg)
			continue
		}
		c := strings.TrimSpace(rec[1])
		if c == "" {
			bad(line, "cluster", "missing for mailbox %q", m.Name)
			continue
		}
		if s, ok := interned[c]; ok {
			m.Cluster = s
		} else {
			interned[c] = c
			m.Cluster = c
		}
		b, err := ParseBytes(rec[2])
		if err != nil {
			bad(line, "bytes", "mailbox %q: %v", m.Name, err)
			continue
		}
		m.Bytes = b
		l, err := strconv.ParseFloat(strings.TrimSpace(rec[3]), 64)
		if err != nil || math.IsNaN(l) || math.IsInf(l, 0) {
			bad(line, "load", "mailbox %q: want a number, got %q", m.Name, rec[3])
			continue
		}
		if l < 0 {
			bad(line, "load", "mailbox %q: must not be negative, got %v", m.Name, l)
			continue
		}
		m.Load = l
		if len(rec) == 5 && strings.TrimSpace(rec[4]) != "" {
			n, err := strconv.ParseInt(strings.TrimSpace(rec[4]), 10, 64)
			if err != nil {
				bad(line, "messages", "mailbox %q: want a whole number, got %q", m.Name, rec[4])
				continue
			}
			if n < 0 {
				bad(line, "messages", "mailbox %q: must not be negative, got %d", m.Name, n)
				continue
			}
			m.Messages = n
		}
		if msg := checkValue(&m); msg != "" {
			f, rest, _ := strings.Cut(msg, ": ")
			bad(line, f, "mailbox %q: %s", m.Name, rest)
			continue
		}
		mbs = append(mbs, m)
		lines = append(lines, int32(line))
	}
	if len(errs) > 0 {
		return nil, nil, errs
	}
	return mbs, lines, nil
}

// WriteCSV writes mailboxes as CSV with a header line, in the form ReadCSV
// reads: mailbox,cluster,bytes,load,messages. Load is written with the fewest
// digits that read back to the same value. It refuses a mailbox that ReadCSV
// would reject or read back differently.
func WriteCSV(w io.Writer, mbs []Mailbox) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	rec := make([]string, 5)
	for i := range mbs {
		m := &mbs[i]
		if msg := checkMailbox(m); msg != "" {
			return fmt.Errorf("write mailbox csv: %s", msg)
		}
		rec[0] = m.Name
		rec[1] = m.Cluster
		rec[2] = strconv.FormatInt(m.Bytes, 10)
		rec[3] = strconv.FormatFloat(m.Load, 'g', -1, 64)
		rec[4] = strconv.FormatInt(m.Messages, 10)
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}
