package planner

import (
	"math"
	"slices"
	"time"

	"mailferry/inventory"
)

// Plans start from where mailboxes are now. The inventory says where they
// were when it was written; the state says which moves have finished
// since. Relocate puts each such mailbox on its move's target, Cooling
// names those moved too recently to move again, and Calibrate turns how
// long the finished moves took into the ETA's calibration.

// DefaultCooldown is how long after a move finished its mailbox is not
// moved again (its old copy may still be on the source, and users notice
// a mailbox that moves every night).
const DefaultCooldown = 7 * 24 * time.Hour

// DoneMove is a move the state records as done: the mailbox went from one
// cluster to another; its size when it was copied; when the move started
// and when it finished.
type DoneMove struct {
	Mailbox  string
	From, To string
	Bytes    int64
	Messages int64
	Started  time.Time
	Done     time.Time
}

// Relocate returns a copy of inv with every mailbox that done moves took
// off its cluster on the move's target (inv itself is not changed). Moves
// are taken oldest first, so a mailbox moved twice ends where the last move
// took it; a move whose source is not where the mailbox is by then (the
// inventory was written after it), or whose mailbox or target the inventory
// does not have, changes nothing. It returns how many mailboxes it put
// elsewhere than inv has them.
func Relocate(inv *inventory.Inventory, done []DoneMove) (*inventory.Inventory, int) {
	if len(done) == 0 {
		return inv, 0
	}
	clusters := make(map[string]bool, len(inv.Clusters))
	for _, c := range inv.Clusters {
		clusters[c.Name] = true
	}
	at := make(map[string]int, len(done))
	for _, d := range done {
		at[d.Mailbox] = -1
	}
	for i := range inv.Mailboxes {
		if _, ok := at[inv.Mailboxes[i].Name]; ok {
			at[inv.Mailboxes[i].Name] = i
		}
	}
	where := make(map[string]string, len(done))
	for _, d := range byDone(done) {
		i, ok := at[d.Mailbox]
		if !ok || i < 0 || !clusters[d.To] {
			continue
		}
		cur, moved := where[d.Mailbox]
		if !moved {
			cur = inv.Mailboxes[i].Cluster
		}
		if cur == d.From {
			where[d.Mailbox] = d.To
		}
	}
	out := *inv
	out.Mailboxes = nil
	n := 0
	for name, c := range where {
		if i := at[name]; inv.Mailboxes[i].Cluster != c {
			if out.Mailboxes == nil {
				out.Mailboxes = slices.Clone(inv.Mailboxes)
			}
			out.Mailboxes[i].Cluster = c
			n++
		}
	}
	if out.Mailboxes == nil {
		return inv, 0
	}
	return &out, n
}

// Cooling names the mailboxes of inv (placed as Relocate places them) that
// a done move took to where they are less than cooldown before now, sorted:
// Policy.CoolingDown.
func Cooling(inv *inventory.Inventory, done []DoneMove, now time.Time, cooldown time.Duration) []string {
	if cooldown <= 0 || len(done) == 0 {
		return nil
	}
	on := make(map[string]string, len(done))
	for _, d := range done {
		on[d.Mailbox] = ""
	}
	for _, m := range inv.Mailboxes {
		if _, ok := on[m.Name]; ok {
			on[m.Name] = m.Cluster
		}
	}
	var out []string
	for _, d := range byDone(done) {
		if c := on[d.Mailbox]; c != "" && c == d.To && now.Sub(d.Done) < cooldown {
			out = append(out, d.Mailbox)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func byDone(done []DoneMove) []DoneMove {
	s := slices.Clone(done)
	slices.SortStableFunc(s, func(a, b DoneMove) int { return a.Done.Compare(b.Done) })
	return s
}

// MinCalibrationMoves is how many measured moves a cluster needs before
// they calibrate its ETA.
const MinCalibrationMoves = 3

// Calibrate compares how long done moves took with what the model t gives
// each alone (its per-move overhead plus its copy over the pairs it may
// use) and returns, for every cluster of inv with at least
// MinCalibrationMoves measured moves on it (as source or target), the
// ratio of the sums: the factor its moves' work is stretched by. Moves
// that took more than a hundred times the model (resumed much later) or
// less than a hundredth are left out.
func Calibrate(t Throughput, inv *inventory.Inventory, done []DoneMove) []Calibration {
	t = t.withDefaults()
	type sum struct {
		n             int
		took, modeled float64
	}
	sums := map[string]*sum{}
	verify := 1.0
	if t.Verify == "full" {
		verify = 2
	}
	for _, d := range done {
		took := d.Done.Sub(d.Started).Seconds()
		if took <= 0 || d.Bytes < 0 || d.Messages < 0 {
			continue
		}
		msgs := d.Messages
		if msgs == 0 && d.Bytes > 0 {
			msgs = (d.Bytes + t.AvgMessageBytes - 1) / t.AvgMessageBytes
		}
		pairs := min(t.Connections, int(1+max(msgs/PairMessages, d.Bytes/PairBytes)))
		model := t.MoveOverhead + (float64(d.Bytes)*verify/float64(t.StreamBytesPerSec)+float64(msgs)*t.MessageOverhead)/float64(pairs)
		if model <= 0 || took > 100*model || took < model/100 {
			continue
		}
		for _, c := range [2]string{d.From, d.To} {
			s := sums[c]
			if s == nil {
				s = &sum{}
				sums[c] = s
			}
			s.n++
			s.took += took
			s.modeled += model
		}
	}
	var out []Calibration
	for _, c := range inv.Clusters {
		if s := sums[c.Name]; s != nil && s.n >= MinCalibrationMoves {
			out = append(out, Calibration{Cluster: c.Name, Moves: s.n, Factor: math.Round(s.took/s.modeled*1000) / 1000})
		}
	}
	return out
}
