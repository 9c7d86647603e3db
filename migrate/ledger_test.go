package migrate

import (
	"crypto/sha256"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// The ledger's decisions, table-tested without any server:
// go test ./migrate/ -run Fast

func digest(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// src is a source message with content body; status says whether it has
// a copy (appended/verified) or not (pending/unknown).
func src(uid imap.UID, body string, status msgStatus) *message {
	m := &message{uid: uid, size: int64(len(body)), status: status, suspect: true}
	if body != "" {
		m.sha, m.hashed = digest(body), true
	}
	if status == statusAppended || status == statusVerified {
		m.dstUID = 1000 + uid
	}
	return m
}

func dst(uid imap.UID, body string, size int64) targetMsg {
	t := targetMsg{uid: uid, size: size}
	if body != "" {
		t.sha, t.hashed = digest(body), true
	}
	return t
}

func dated(m *message, unix int64) *message { m.date = time.Unix(unix, 0); return m }

func dstDated(uid imap.UID, body string, unix int64) targetMsg {
	t := dst(uid, body, int64(len(body)))
	t.date = time.Unix(unix, 0)
	return t
}

func TestFastContentMatch(t *testing.T) {
	type item struct {
		name string
		ok   bool
	}
	d := func(i item) ([32]byte, bool) { return digest(i.name), i.ok }
	tests := []struct {
		name         string
		as, bs       []item
		pairs        [][2]int
		restA, restB []int
	}{
		{"empty", nil, nil, nil, nil, nil},
		{"one each", []item{{"x", true}}, []item{{"x", true}}, [][2]int{{0, 0}}, nil, nil},
		{"no match", []item{{"x", true}}, []item{{"y", true}}, nil, []int{0}, []int{0}},
		{"twins pair by multiplicity, in order",
			[]item{{"x", true}, {"x", true}, {"x", true}},
			[]item{{"x", true}, {"y", true}, {"x", true}},
			[][2]int{{0, 0}, {1, 2}}, []int{2}, []int{1}},
		{"an unknown digest never matches, on either side",
			[]item{{"x", false}, {"y", true}},
			[]item{{"x", true}, {"y", false}},
			nil, []int{0, 1}, []int{0, 1}},
		{"more b than a",
			[]item{{"x", true}},
			[]item{{"x", true}, {"x", true}},
			[][2]int{{0, 0}}, nil, []int{1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pairs, restA, restB := contentMatch(tc.as, d, tc.bs, d)
			if !reflect.DeepEqual(pairs, tc.pairs) || !reflect.DeepEqual(restA, tc.restA) || !reflect.DeepEqual(restB, tc.restB) {
				t.Errorf("got pairs %v rest %v %v; want %v %v %v", pairs, restA, restB, tc.pairs, tc.restA, tc.restB)
			}
		})
	}
}

func TestFastSettleStrangers(t *testing.T) {
	tests := []struct {
		name       string
		suspects   []*message
		strangers  []targetMsg
		adopt      [][2]int // (suspect index, stranger index)
		duplicates []imap.UID
		foreign    []imap.UID
	}{
		{
			name:      "no suspects: every stranger is the target's own",
			strangers: []targetMsg{dst(50, "a", 1), dst(51, "b", 1)},
			foreign:   []imap.UID{50, 51},
		},
		{
			name:      "the copy of a suspect without one is adopted",
			suspects:  []*message{src(1, "a", statusPending)},
			strangers: []targetMsg{dst(50, "a", 1)},
			adopt:     [][2]int{{0, 0}},
		},
		{
			name:      "an APPEND whose outcome is unknown counts as no copy",
			suspects:  []*message{src(1, "a", statusUnknown)},
			strangers: []targetMsg{dst(50, "a", 1)},
			adopt:     [][2]int{{0, 0}},
		},
		{
			name:       "a late copy of a message that has one is a duplicate",
			suspects:   []*message{src(1, "a", statusVerified)},
			strangers:  []targetMsg{dst(50, "a", 1)},
			duplicates: []imap.UID{50},
		},
		{
			name:       "a message sent three times may land three times: every late copy is a duplicate",
			suspects:   []*message{src(1, "a", statusVerified)},
			strangers:  []targetMsg{dst(50, "a", 1), dst(51, "a", 1)},
			duplicates: []imap.UID{50, 51},
		},
		{
			name: "twins keep their multiplicity: the one without a copy adopts first",
			suspects: []*message{
				src(1, "twin", statusVerified), src(2, "twin", statusPending), src(3, "other", statusPending),
			},
			strangers:  []targetMsg{dst(50, "twin", 4), dst(51, "twin", 4), dst(52, "twin", 4)},
			adopt:      [][2]int{{1, 0}},
			duplicates: []imap.UID{51, 52},
		},
		{
			name: "the same bytes filed twice with other dates: each copy goes to the message of its date",
			suspects: []*message{
				dated(src(1, "twin", statusVerified), 100), dated(src(2, "twin", statusPending), 200),
			},
			strangers:  []targetMsg{dstDated(50, "twin", 100), dstDated(51, "twin", 200)},
			adopt:      [][2]int{{1, 1}},
			duplicates: []imap.UID{50},
		},
		{
			name:      "two twins without copies adopt two strangers, lowest UID first",
			suspects:  []*message{src(2, "twin", statusPending), src(1, "twin", statusPending)},
			strangers: []targetMsg{dst(50, "twin", 4), dst(51, "twin", 4)},
			adopt:     [][2]int{{1, 0}, {0, 1}},
		},
		{
			name:      "a wrong size reported by the source never rules a match out",
			suspects:  []*message{{uid: 1, size: 999, sha: digest("a"), hashed: true, suspect: true}},
			strangers: []targetMsg{dst(50, "a", 1)},
			adopt:     [][2]int{{0, 0}},
		},
		{
			name:      "same size, other bytes: foreign",
			suspects:  []*message{src(1, "aaaa", statusPending)},
			strangers: []targetMsg{dst(50, "bbbb", 4)},
			foreign:   []imap.UID{50},
		},
		{
			name:      "a suspect that could not be read matches nothing",
			suspects:  []*message{src(1, "", statusPending)},
			strangers: []targetMsg{dst(50, "a", 1)},
			foreign:   []imap.UID{50},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := settleStrangers(tc.strangers, tc.suspects)
			if !reflect.DeepEqual(s.adopt, tc.adopt) || !reflect.DeepEqual(s.duplicates, tc.duplicates) || !reflect.DeepEqual(s.foreign, tc.foreign) {
				t.Errorf("got adopt %v duplicates %v foreign %v; want %v %v %v",
					s.adopt, s.duplicates, s.foreign, tc.adopt, tc.duplicates, tc.foreign)
			}
		})
	}
}

func TestFastNextMark(t *testing.T) {
	tests := []struct {
		mark, hi imap.UID
		listed   []imap.UID
		want     imap.UID
	}{
		{10, 0, nil, 10},                // nothing at or above the mark: it stays
		{10, 0, []imap.UID{7}, 10},      // "10:*" answered with the newest message, below the mark
		{10, 0, []imap.UID{10, 14}, 15}, // everything up to the newest was listed
		{10, 20, nil, 21},               // a bounded check covers its whole range
		{10, 20, []imap.UID{12}, 21},
		{10, 5, nil, 10}, // never lower
	}
	for _, tc := range tests {
		if got := nextMark(tc.mark, tc.hi, tc.listed); got != tc.want {
			t.Errorf("nextMark(%d, %d, %v) = %d, want %d", tc.mark, tc.hi, tc.listed, got, tc.want)
		}
	}
}

func TestFastSuspectSet(t *testing.T) {
	msgs := []*message{
		{uid: 1, suspect: true, lost: true},
		{uid: 2, suspect: true},             // answered: dropped
		{uid: 3, suspect: true, lost: true}, // lost: kept
		{uid: 4},
		{uid: 9, lost: true}, // not a suspect
	}
	next := []*message{{uid: 10}, {uid: 11}, {uid: 12}}
	if got := suspectSet(msgs, next, false); got != "1,3,10:12" {
		t.Errorf("suspectSet = %q, want 1,3,10:12", got)
	}
	if got := suspectSet(nil, nil, false); got != "" {
		t.Errorf("empty suspectSet = %q", got)
	}
	if got := suspectSet(msgs, next, true); got != "*" {
		t.Errorf("suspectSet(all) = %q", got)
	}
	for _, tc := range []struct {
		in   string
		all  bool
		has  []imap.UID
		hasn []imap.UID
	}{
		{"", false, nil, []imap.UID{1}},
		{"*", true, nil, nil},
		{"1,3,10:12", false, []imap.UID{1, 3, 10, 11, 12}, []imap.UID{2, 4, 9, 13}},
		{"12:10", false, []imap.UID{10, 11, 12}, []imap.UID{9, 13}},
		{"4294967295", false, []imap.UID{4294967295}, []imap.UID{1}},
		// Anything that does not parse is read as every message: the safe side.
		{"1,,2", true, nil, nil},
		{"0", true, nil, nil},
		{"x", true, nil, nil},
		{"1:4294967296", true, nil, nil},
	} {
		set, all := parseSuspects(tc.in)
		if all != tc.all {
			t.Errorf("parseSuspects(%q) all = %v, want %v", tc.in, all, tc.all)
		}
		for _, u := range tc.has {
			if !set.Contains(u) {
				t.Errorf("parseSuspects(%q) lacks %d", tc.in, u)
			}
		}
		for _, u := range tc.hasn {
			if set.Contains(u) {
				t.Errorf("parseSuspects(%q) has %d", tc.in, u)
			}
		}
	}
}

func FuzzParseSuspects(f *testing.F) {
	for _, s := range []string{"", "*", "1", "1:5,9", "x", "3:1,7"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		set, all := parseSuspects(s)
		if all || s == "" {
			return
		}
		// What parses writes back as an equal set.
		again, all2 := parseSuspects(set.String())
		if all2 || fmt.Sprint(again) != fmt.Sprint(set) {
			t.Fatalf("%q -> %v -> %v", s, set, again)
		}
	})
}

// What a target held before the state knew it is a copy only with the
// same bytes and the same INTERNALDATE; twins pair by multiplicity.
func TestFastExistingCopies(t *testing.T) {
	msgs := []*message{
		dated(src(1, "a", statusPending), 100),
		dated(src(2, "a", statusPending), 100), // a's twin
		dated(src(3, "b", statusPending), 200),
		dated(src(4, "c", statusPending), 300),
	}
	for _, m := range msgs {
		m.hashed = true
	}
	targets := []targetMsg{
		dstDated(10, "a", 100),
		dstDated(11, "b", 999), // b's bytes, another date: the target's own
		dstDated(12, "c", 300),
		dstDated(13, "z", 100), // a's date, other bytes
	}
	got := existingCopies(msgs, targets)
	want := [][2]int{{0, 0}, {3, 2}}
	if !slices.Equal(flatten(got), flatten(want)) {
		t.Errorf("pairs %v, want %v", got, want)
	}
}

func flatten(p [][2]int) []int {
	var out []int
	for _, x := range p {
		out = append(out, x[0], x[1])
	}
	return out
}

func TestFastMergeFlags(t *testing.T) {
	for _, tc := range []struct {
		base, src, dst, want []string
	}{
		// Only the source changed: it decides.
		{[]string{`\Seen`}, []string{`\Flagged`, `\Seen`}, []string{`\Seen`}, []string{`\Flagged`, `\Seen`}},
		{[]string{`\Seen`}, nil, []string{`\Seen`}, nil},
		// The user flagged and labelled on the target; the source read it.
		{nil, []string{`\Seen`}, []string{"$UserLabel", `\Flagged`}, []string{"$UserLabel", `\Flagged`, `\Seen`}},
		// The user cleared \Answered on the target; the source keeps it.
		{[]string{`\Answered`}, []string{`\Answered`, `\Seen`}, nil, []string{`\Seen`}},
		// Both changed the same flag the same way.
		{nil, []string{`\Deleted`}, []string{`\Deleted`}, []string{`\Deleted`}},
		// The source cleared a flag the target did not touch: cleared.
		{[]string{`\Flagged`}, nil, []string{`\Flagged`}, nil},
		{[]string{`\Flagged`}, nil, []string{`\Flagged`, `\Seen`}, []string{`\Seen`}},
	} {
		if got := mergeFlags(tc.base, tc.src, tc.dst); !slices.Equal(got, tc.want) {
			t.Errorf("mergeFlags(base %v, src %v, dst %v) = %v, want %v", tc.base, tc.src, tc.dst, got, tc.want)
		}
	}
}
