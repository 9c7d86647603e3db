package migrate

import (
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
)

// This file holds the decisions of a folder pass as pure code over data:
// no I/O, table-tested in ledger_test.go. The engine (worker.go,
// resume.go) reads the servers, calls these, and carries out what they
// return.
//
// The rule they keep: the folder's mark (a target UID) only moves over
// target UIDs that are accounted for. Every UID below the mark is a
// recorded copy of ours, a copy of ours found by content (adopted, or
// removed when its source message already has one), or proven foreign
// (its bytes match no suspect: the target's own mail, left alone). A
// server may commit an APPEND whose client is gone at any later moment,
// but it gives the message a UID above every UID it has given before, so
// such a late copy always lands at or above the mark and the next check
// of [mark, ...) finds it, whenever it lands.

// contentMatch pairs a and b items with equal SHA-256 digests one to one,
// in the order given (so identical messages, twins, pair by multiplicity:
// the first a with the first b). Items whose digest is not known (ok
// false) never match. It is the one content matcher of the engine: for
// copies whose APPEND outcome is unknown, for copies of an earlier run,
// after a UIDVALIDITY change on either side.
func contentMatch[A, B any](as []A, digestA func(A) ([32]byte, bool), bs []B, digestB func(B) ([32]byte, bool)) (pairs [][2]int, restA, restB []int) {
	byDigest := map[[32]byte][]int{}
	for j, b := range bs {
		if d, ok := digestB(b); ok {
			byDigest[d] = append(byDigest[d], j)
		}
	}
	used := make([]bool, len(bs))
	for i, a := range as {
		d, ok := digestA(a)
		if !ok || len(byDigest[d]) == 0 {
			restA = append(restA, i)
			continue
		}
		j := byDigest[d][0]
		byDigest[d] = byDigest[d][1:]
		used[j] = true
		pairs = append(pairs, [2]int{i, j})
	}
	for j := range bs {
		if !used[j] {
			restB = append(restB, j)
		}
	}
	return pairs, restA, restB
}

// settlement says what becomes of the strangers of a check: target
// messages at or above the mark that no copy of this pass accounts for.
type settlement struct {
	adopt      [][2]int   // (suspect, stranger): the stranger is that message's copy
	duplicates []imap.UID // copies of suspects that already have one: to be removed
	foreign    []imap.UID // the target's own messages: left alone
}

// withDate is the key of bytes and an INTERNALDATE (to the second).
func withDate(sha [32]byte, date time.Time) [32]byte {
	var b [40]byte
	copy(b[:], sha[:])
	binary.BigEndian.PutUint64(b[32:], uint64(date.Unix()))
	return sha256.Sum256(b[:])
}

// needsCopy reports whether msg has no copy on the target yet.
func (msg *message) needsCopy() bool {
	return msg.status != statusAppended && msg.status != statusVerified
}

// settleStrangers decides the fate of each stranger. suspects are the
// source messages whose APPEND may have reached the target unanswered;
// every one must be hashed, and so must every stranger (the caller reads
// them when there is any suspect). A stranger whose bytes equal a
// suspect's is our copy: it is adopted by a suspect with those bytes that
// has no copy yet (one each, lowest UID first; twins by multiplicity),
// else it is a duplicate (a message sent more than once may land more
// than once). Strangers that match no suspect are foreign. Size is never
// used to rule a match out: a server may report a wrong RFC822.SIZE,
// never wrong bytes.
func settleStrangers(strangers []targetMsg, suspects []*message) settlement {
	var needy []int
	ours := map[[32]byte]bool{}
	for i, msg := range suspects {
		if !msg.hashed {
			continue
		}
		ours[msg.sha] = true
		if msg.needsCopy() {
			needy = append(needy, i)
		}
	}
	sort.SliceStable(needy, func(a, b int) bool { return suspects[needy[a]].uid < suspects[needy[b]].uid })
	// Identical bytes with other dates (a message filed twice) are told
	// apart by INTERNALDATE, which a copy of ours carries from its source
	// and which cannot be changed later: bytes and date first, then bytes
	// alone (a server that does not keep dates).
	pairs, restNeedy, restStr := contentMatch(needy,
		func(i int) ([32]byte, bool) { m := suspects[i]; return withDate(m.sha, m.date), !m.date.IsZero() },
		strangers,
		func(t targetMsg) ([32]byte, bool) { return withDate(t.sha, t.date), t.hashed && !t.date.IsZero() })
	var s settlement
	for _, p := range pairs {
		s.adopt = append(s.adopt, [2]int{needy[p[0]], p[1]})
	}
	still := make([]int, len(restNeedy))
	for k, i := range restNeedy {
		still[k] = needy[i]
	}
	left := make([]targetMsg, len(restStr))
	for k, j := range restStr {
		left[k] = strangers[j]
	}
	pairs, _, rest := contentMatch(still,
		func(i int) ([32]byte, bool) { return suspects[i].sha, true },
		left,
		func(t targetMsg) ([32]byte, bool) { return t.sha, t.hashed })
	for _, p := range pairs {
		s.adopt = append(s.adopt, [2]int{still[p[0]], restStr[p[1]]})
	}
	for k, j := range rest {
		rest[k] = restStr[j]
	}
	sort.Ints(rest)
	for _, j := range rest {
		if t := strangers[j]; t.hashed && ours[t.sha] {
			s.duplicates = append(s.duplicates, t.uid)
		} else {
			s.foreign = append(s.foreign, t.uid)
		}
	}
	return s
}

// existingCopies pairs source messages with target messages that were
// there before this state knew the folder (a lost state, another
// migration key, a mailbox moved back to a cluster that kept its old
// copy): a target message is a copy of a source message when its bytes and
// its INTERNALDATE (to the second, which mailferry's copies carry from the
// source) are the same. Twins pair by multiplicity, in the order given.
// Only hashed messages take part.
func existingCopies(msgs []*message, targets []targetMsg) [][2]int {
	pairs, _, _ := contentMatch(msgs,
		func(m *message) ([32]byte, bool) { return withDate(m.sha, m.date), m.hashed && !m.date.IsZero() },
		targets,
		func(t targetMsg) ([32]byte, bool) { return withDate(t.sha, t.date), t.hashed && !t.date.IsZero() })
	return pairs
}

// mergeFlags is a three-way merge of a message's flags (each sorted, as
// normFlags gives them): base is the source's flags when they were last
// carried to the target copy, src the source's flags now, dst the target
// copy's now. A flag where the target differs from base is the target's
// (the user changed it there, or the target cannot keep it) and stays as
// it is; any other follows the source. The result is sorted.
func mergeFlags(base, src, dst []string) []string {
	in := func(s []string, f string) bool { _, ok := slices.BinarySearch(s, f); return ok }
	var out []string
	seen := map[string]bool{}
	for _, set := range [][]string{base, src, dst} {
		for _, f := range set {
			if seen[f] {
				continue
			}
			seen[f] = true
			b, s, d := in(base, f), in(src, f), in(dst, f)
			keep := d
			if d == b { // the target did not change it: the source decides
				keep = s
			}
			if keep {
				out = append(out, f)
			}
		}
	}
	sort.Strings(out)
	return out
}

// nextMark is the mark after a check that listed every target message
// in [mark, hi] (hi 0: up to the newest one, whose UIDs are listed): one
// above the highest UID checked, never lower than before.
func nextMark(mark, hi imap.UID, listed []imap.UID) imap.UID {
	top := mark
	if hi != 0 {
		top = max(top, hi+1)
	}
	for _, uid := range listed {
		if uid >= mark {
			top = max(top, uid+1)
		}
	}
	return top
}

// suspectSet is the folder's suspects to record: messages an APPEND of
// which may still land unanswered (lost), and next, the batch about to be
// sent. all stands for every source message ("*").
func suspectSet(msgs []*message, next []*message, all bool) string {
	if all {
		return "*"
	}
	var set imap.UIDSet
	for _, msg := range msgs {
		if msg.suspect && msg.lost {
			set.AddNum(msg.uid)
		}
	}
	for _, msg := range next {
		set.AddNum(msg.uid)
	}
	if len(set) == 0 {
		return ""
	}
	return set.String()
}

// parseSuspects reads a recorded suspect set; a set that does not parse
// counts as every message (the safe reading).
func parseSuspects(s string) (set imap.UIDSet, all bool) {
	switch s {
	case "":
		return nil, false
	case "*":
		return nil, true
	}
	// go-imap (v2.0.0-beta.8) exports no set parser; the format is the
	// one UIDSet.String writes: "a:b,c".
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, ":")
		a, err := strconv.ParseUint(lo, 10, 32)
		if err != nil || a == 0 {
			return nil, true
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 32); err != nil || b == 0 {
				return nil, true
			}
		}
		set.AddRange(imap.UID(min(a, b)), imap.UID(max(a, b)))
	}
	return set, false
}
