package main

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"mailferry/internal/testrig/corpus"
)

// diffSummary explains how a target differs from its source: the count of
// corpus.Compare's difference lines (the verdict), plus the differences
// sorted into kinds so that a reader sees why.
type diffSummary struct {
	// Differences is the number of lines corpus.Compare reported; 0 means
	// the copy is exact.
	Differences int      `json:"differences"`
	Sample      []string `json:"sample,omitempty"` // the first few of them

	MissingFolders []string `json:"missing_folders,omitempty"`
	ExtraFolders   []string `json:"extra_folders,omitempty"`
	Subscriptions  int      `json:"subscription_differences,omitempty"`
	SpecialUse     int      `json:"special_use_differences,omitempty"`

	// Messages present on both sides with other flags (same bytes).
	FlagsChanged int            `json:"flags_changed,omitempty"`
	FlagsLost    map[string]int `json:"flags_lost,omitempty"`   // flag -> messages that lost it
	FlagsGained  map[string]int `json:"flags_gained,omitempty"` // flag -> messages that gained it
	// Messages with the same bytes and another INTERNALDATE.
	DatesChanged int `json:"dates_changed,omitempty"`
	// Messages whose bytes changed (matched by INTERNALDATE).
	ContentChanged int   `json:"content_changed,omitempty"`
	SizeDeltaMin   int64 `json:"size_delta_min,omitempty"`
	SizeDeltaMax   int64 `json:"size_delta_max,omitempty"`
	// Messages only on one side.
	MissingMessages int      `json:"missing_messages,omitempty"`
	ExtraMessages   int      `json:"extra_messages,omitempty"`
	Missing         []string `json:"missing,omitempty"` // what the missing messages (in kept folders) are
}

const sampleLines = 8

// explain compares src and dst (folders matched by key: paths joined with
// "/", whatever the separators) and sorts the differences.
func explain(src, dst *corpus.Snapshot) *diffSummary {
	lines := corpus.Compare(src, dst, nil)
	d := &diffSummary{Differences: len(lines), FlagsLost: map[string]int{}, FlagsGained: map[string]int{}}
	d.Sample = lines[:min(len(lines), sampleLines)]
	for _, k := range slices.Sorted(maps.Keys(src.Folders)) {
		sf := src.Folders[k]
		df, ok := dst.Folders[k]
		if !ok {
			d.MissingFolders = append(d.MissingFolders, k)
			d.MissingMessages += len(sf.Messages)
			continue
		}
		if sf.Subscribed != df.Subscribed {
			d.Subscriptions++
		}
		if !slices.Equal(sf.SpecialUse, df.SpecialUse) {
			d.SpecialUse++
		}
		d.messages(sf.Messages, df.Messages)
	}
	for _, k := range slices.Sorted(maps.Keys(dst.Folders)) {
		if _, ok := src.Folders[k]; !ok {
			d.ExtraFolders = append(d.ExtraFolders, k)
			d.ExtraMessages += len(dst.Folders[k].Messages)
		}
	}
	return d
}

// messages sorts one folder's message differences: exact matches first,
// then same bytes (flags or date changed), then same date (bytes changed);
// what is left is missing or extra.
func (d *diffSummary) messages(src, dst []corpus.MessageSnap) {
	type content struct {
		sha  string
		size int64
	}
	exact := func(m corpus.MessageSnap) string {
		return fmt.Sprintf("%s/%d/%s/%d", m.SHA256, m.Size, strings.Join(m.Flags, " "), m.Date.Unix())
	}
	// pair removes from a and b every pair with equal keys (first come,
	// first paired), calling f on it, and returns what is left of each.
	pair := func(a, b []corpus.MessageSnap, key func(corpus.MessageSnap) any, f func(s, t corpus.MessageSnap)) ([]corpus.MessageSnap, []corpus.MessageSnap) {
		pool := map[any][]int{} // key -> indexes into b not yet paired
		for i, m := range b {
			pool[key(m)] = append(pool[key(m)], i)
		}
		used := make([]bool, len(b))
		var restA, restB []corpus.MessageSnap
		for _, m := range a {
			k := key(m)
			if is := pool[k]; len(is) > 0 {
				f(m, b[is[0]])
				used[is[0]] = true
				pool[k] = is[1:]
				continue
			}
			restA = append(restA, m)
		}
		for i, m := range b {
			if !used[i] {
				restB = append(restB, m)
			}
		}
		return restA, restB
	}
	a, b := pair(src, dst, func(m corpus.MessageSnap) any { return exact(m) }, func(_, _ corpus.MessageSnap) {})
	a, b = pair(a, b, func(m corpus.MessageSnap) any { return content{m.SHA256, m.Size} }, func(s, t corpus.MessageSnap) {
		d.flags(s, t)
		if !s.Date.Equal(t.Date) {
			d.DatesChanged++
		}
	})
	a, b = pair(a, b, func(m corpus.MessageSnap) any { return m.Date.Unix() }, func(s, t corpus.MessageSnap) {
		delta := t.Size - s.Size
		if d.ContentChanged == 0 {
			d.SizeDeltaMin, d.SizeDeltaMax = delta, delta
		}
		d.SizeDeltaMin, d.SizeDeltaMax = min(d.SizeDeltaMin, delta), max(d.SizeDeltaMax, delta)
		d.ContentChanged++
		d.flags(s, t)
	})
	d.MissingMessages += len(a)
	d.ExtraMessages += len(b)
	for _, m := range a {
		d.Missing = append(d.Missing, fmt.Sprintf("size %d flags [%s] date %s", m.Size, strings.Join(m.Flags, " "), m.Date.Format(time.RFC3339)))
	}
}

// flags counts the flag differences of a source message s and its copy t.
func (d *diffSummary) flags(s, t corpus.MessageSnap) {
	if slices.Equal(s.Flags, t.Flags) {
		return
	}
	d.FlagsChanged++
	for _, f := range s.Flags {
		if !slices.Contains(t.Flags, f) {
			d.FlagsLost[f]++
		}
	}
	for _, f := range t.Flags {
		if !slices.Contains(s.Flags, f) {
			d.FlagsGained[f]++
		}
	}
}

// describe returns the summary as human-readable lines; none when exact.
func (d *diffSummary) describe() []string {
	var out []string
	if n := len(d.MissingFolders); n > 0 {
		out = append(out, fmt.Sprintf("%d folder(s) missing on target: %s", n, quoteList(d.MissingFolders)))
	}
	if n := len(d.ExtraFolders); n > 0 {
		out = append(out, fmt.Sprintf("%d extra folder(s) on target: %s", n, quoteList(d.ExtraFolders)))
	}
	if d.Subscriptions > 0 {
		out = append(out, fmt.Sprintf("%d folder(s) with another subscription state", d.Subscriptions))
	}
	if d.SpecialUse > 0 {
		out = append(out, fmt.Sprintf("%d folder(s) with other special-use attributes", d.SpecialUse))
	}
	if d.FlagsChanged > 0 {
		out = append(out, fmt.Sprintf("%d message(s) with other flags (lost: %s; gained: %s)",
			d.FlagsChanged, countList(d.FlagsLost), countList(d.FlagsGained)))
	}
	if d.DatesChanged > 0 {
		out = append(out, fmt.Sprintf("%d message(s) with another INTERNALDATE", d.DatesChanged))
	}
	if d.ContentChanged > 0 {
		out = append(out, fmt.Sprintf("%d message(s) with other bytes (size change %+d to %+d bytes)",
			d.ContentChanged, d.SizeDeltaMin, d.SizeDeltaMax))
	}
	if d.MissingMessages > 0 {
		what := ""
		if len(d.Missing) > 0 {
			what = ": " + strings.Join(d.Missing[:min(len(d.Missing), 5)], "; ")
		}
		out = append(out, fmt.Sprintf("%d message(s) missing on target%s", d.MissingMessages, what))
	}
	if d.ExtraMessages > 0 {
		out = append(out, fmt.Sprintf("%d extra message(s) on target", d.ExtraMessages))
	}
	return out
}

func quoteList(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = fmt.Sprintf("%q", v)
	}
	return strings.Join(q, ", ")
}

func countList(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// mbsyncNotes names the known mbsync (isync) behaviours that explain the
// differences d, from the differences themselves and mbsync's stderr.
func mbsyncNotes(d *diffSummary, stderr []byte) []string {
	var out []string
	if d.ContentChanged > 0 && d.SizeDeltaMin == 22 && d.SizeDeltaMax == 22 {
		out = append(out, "each copied message grew by 22 bytes: mbsync inserts its tracking header "+
			"\"X-TUID: <12 characters>\" (22 bytes with CRLF) into every message it copies, so no copy is byte-identical")
	} else if d.ContentChanged > 0 {
		out = append(out, "message bytes changed (mbsync inserts an X-TUID header into the messages it copies)")
	}
	if len(d.FlagsLost) > 0 {
		var kws []string
		for _, f := range slices.Sorted(maps.Keys(d.FlagsLost)) {
			if !strings.HasPrefix(f, `\`) {
				kws = append(kws, f)
			}
		}
		if len(kws) == len(d.FlagsLost) {
			out = append(out, "keywords dropped ("+strings.Join(kws, " ")+"): this mbsync propagates only the system flags "+
				"(and $Forwarded, as Maildir's Passed), not IMAP keywords")
		}
	}
	if d.Subscriptions > 0 {
		out = append(out, "mbsync does not copy subscriptions (the special-use folders are subscribed by the target Dovecot itself)")
	}
	if d.MissingMessages > 0 && bytes.Contains(stderr, []byte("incomplete header")) {
		out = append(out, "mbsync skipped a message whose header block is not followed by an empty line "+
			"(the corpus's headers-only message): \""+firstLine(stderr, "incomplete header")+"\"")
	}
	return out
}

// firstLine returns the first line of b containing sub.
func firstLine(b []byte, sub string) string {
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, sub) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}
