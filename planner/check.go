package planner

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"

	"mailferry/inventory"
)

// InventoryDigest is a digest of what a plan is made from: every cluster's
// name, health, capacity and tags, and every mailbox's name, cluster, size,
// load, message count and pin, in an order-free canonical form. Logins,
// URLs and limits are left out: they change how moves run, not which moves
// make sense. Make records it in Plan.InventoryDigest.
func InventoryDigest(inv *inventory.Inventory) string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	clusters := make([]string, 0, len(inv.Clusters))
	for _, c := range inv.Clusters {
		tags := make([]string, 0, len(c.Tags))
		for k, v := range c.Tags {
			tags = append(tags, strconv.Quote(k)+"="+strconv.Quote(v))
		}
		slices.Sort(tags)
		clusters = append(clusters, fmt.Sprintf("cluster %q health %q bytes %d load %s tags %s\n",
			c.Name, c.Health, c.Capacity.Bytes, f(c.Capacity.Load), strings.Join(tags, ",")))
	}
	slices.Sort(clusters)
	h := sha256.New()
	io.WriteString(h, "mailferry inventory digest 1\n")
	for _, s := range clusters {
		io.WriteString(h, s)
	}
	ms := inv.Mailboxes
	if plainNames(ms) {
		// The lines sort as the names do (see plainNames): sort indices by
		// name, unless the mailboxes already are, and write each line as
		// it comes, without holding them all.
		idx := make([]int32, len(ms))
		for i := range idx {
			idx[i] = int32(i)
		}
		sorted := true
		for i := 1; i < len(ms); i++ {
			if ms[i-1].Name > ms[i].Name {
				sorted = false
				break
			}
		}
		if !sorted {
			slices.SortFunc(idx, func(a, b int32) int { return strings.Compare(ms[a].Name, ms[b].Name) })
		}
		buf := make([]byte, 0, 64<<10)
		for _, i := range idx {
			buf = appendMailboxLine(buf, &ms[i])
			if len(buf) > 60<<10 {
				h.Write(buf)
				buf = buf[:0]
			}
		}
		h.Write(buf)
	} else {
		lines := make([]string, 0, len(ms))
		var line []byte
		for i := range ms {
			line = appendMailboxLine(line[:0], &ms[i])
			lines = append(lines, string(line))
		}
		slices.Sort(lines)
		for _, s := range lines {
			io.WriteString(h, s)
		}
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// appendMailboxLine is a mailbox's line of the digest:
// mailbox %q cluster %q bytes %d load %s messages %d pinned %t.
func appendMailboxLine(b []byte, m *inventory.Mailbox) []byte {
	b = append(b, "mailbox "...)
	b = strconv.AppendQuote(b, m.Name)
	b = append(b, " cluster "...)
	b = strconv.AppendQuote(b, m.Cluster)
	b = append(b, " bytes "...)
	b = strconv.AppendInt(b, m.Bytes, 10)
	b = append(b, " load "...)
	b = strconv.AppendFloat(b, m.Load, 'g', -1, 64)
	b = append(b, " messages "...)
	b = strconv.AppendInt(b, m.Messages, 10)
	b = append(b, " pinned "...)
	b = strconv.AppendBool(b, m.Pinned)
	return append(b, '\n')
}

// plainNames reports whether every mailbox name is printable ASCII above
// '"' other than '\\': %q leaves such a name as it is, so the digest's lines
// (which start with the quoted name, closed by '"') sort as the names do.
func plainNames(ms []inventory.Mailbox) bool {
	for i := range ms {
		for _, c := range []byte(ms[i].Name) {
			if c <= '"' || c == '\\' || c > '~' {
				return false
			}
		}
	}
	return true
}

// SameMoves reports whether planning again from inv with p's policy gives
// p's moves (mailbox, source and target, in order): false for a plan edited
// by hand, or made from another inventory or by another planner version.
func SameMoves(p *Plan, inv *inventory.Inventory) bool {
	q, err := Make(inv, p.Policy)
	if err != nil || len(q.Moves) != len(p.Moves) {
		return false
	}
	for i, m := range q.Moves {
		if o := p.Moves[i]; o.Mailbox != m.Mailbox || o.From != m.From || o.To != m.To {
			return false
		}
	}
	return true
}

// Problem is a move of a plan that the inventory says must not run.
type Problem struct {
	Mailbox string `json:"mailbox"`
	From    string `json:"from"`
	To      string `json:"to"`
	Reason  string `json:"reason"`
}

func (p Problem) String() string {
	return fmt.Sprintf("%s (%s -> %s): %s", p.Mailbox, p.From, p.To, p.Reason)
}

// Check holds a plan's moves against an inventory (the one it is about to
// run with, which may not be the one it was made from, and the plan may
// have been edited by hand). It returns one problem per move that must not
// run, in plan order:
//   - its source or target cluster is not in the inventory;
//   - its target may not receive: not healthy (degraded, draining,
//     readonly), the cluster the plan's policy drains or relieves, or one
//     the policy excludes;
//   - its target would be full: the bytes or load the inventory has on it
//     plus what the plan's moves bring exceed its capacity;
//   - its mailbox is not in the inventory, or the inventory has it on
//     another cluster than the move's source, or pins it.
//
// Check is pure; it never looks at mail.
func Check(p *Plan, inv *inventory.Inventory) []Problem {
	where := make(map[string]*inventory.Mailbox, len(inv.Mailboxes))
	for i := range inv.Mailboxes {
		where[inv.Mailboxes[i].Name] = &inv.Mailboxes[i]
	}
	type use struct {
		bytes int64
		load  float64
	}
	have := map[string]use{}
	for _, m := range inv.Mailboxes {
		u := have[m.Cluster]
		u.bytes, u.load = u.bytes+m.Bytes, u.load+m.Load
		have[m.Cluster] = u
	}
	// What each cluster holds once the plan ran: the moves bring their
	// sizes as planned and take away what the inventory says they weigh.
	after := maps.Clone(have)
	for _, m := range p.Moves {
		u := after[m.To]
		u.bytes, u.load = u.bytes+m.Bytes, u.load+m.Load
		after[m.To] = u
		if mb := where[m.Mailbox]; mb != nil && mb.Cluster == m.From {
			u := after[m.From]
			u.bytes, u.load = u.bytes-mb.Bytes, u.load-mb.Load
			after[m.From] = u
		}
	}
	excluded := map[string]bool{}
	for _, c := range p.Policy.ExcludeTargets {
		excluded[c] = true
	}
	var out []Problem
	for _, m := range p.Moves {
		var why []string
		from, to := inv.Cluster(m.From), inv.Cluster(m.To)
		if from == nil {
			why = append(why, fmt.Sprintf("source cluster %q is not in the inventory", m.From))
		}
		switch {
		case to == nil:
			why = append(why, fmt.Sprintf("target cluster %q is not in the inventory", m.To))
		case !to.Health.CanReceive():
			why = append(why, fmt.Sprintf("target %s is %s: it may not receive", to.Name, to.Health))
		case to.Name == p.Policy.Cluster && (p.Policy.Kind == Drain || p.Policy.Kind == Relieve):
			why = append(why, fmt.Sprintf("target %s is the cluster this plan %ss", to.Name, p.Policy.Kind))
		case excluded[to.Name]:
			why = append(why, fmt.Sprintf("target %s is excluded by the plan's policy", to.Name))
		default:
			h, a := have[to.Name], after[to.Name]
			if to.Capacity.Bytes > 0 && a.bytes > to.Capacity.Bytes {
				why = append(why, fmt.Sprintf("target %s would be full: it holds %s, %s after this plan, over its capacity of %s",
					to.Name, inventory.FormatBytes(h.bytes), inventory.FormatBytes(a.bytes), inventory.FormatBytes(to.Capacity.Bytes)))
			} else if to.Capacity.Load > 0 && a.load > to.Capacity.Load+1e-9 {
				why = append(why, fmt.Sprintf("target %s would be full: it carries load %s, %s after this plan, over its capacity of %s",
					to.Name, trim(h.load), trim(round(a.load)), trim(to.Capacity.Load)))
			}
		}
		switch mb := where[m.Mailbox]; {
		case mb == nil:
			why = append(why, "the mailbox is not in the inventory")
		case mb.Cluster != m.From:
			why = append(why, fmt.Sprintf("the inventory has the mailbox on %s, not on %s", mb.Cluster, m.From))
		case mb.Pinned:
			why = append(why, "the inventory pins the mailbox (it never moves)")
		}
		if len(why) > 0 {
			out = append(out, Problem{Mailbox: m.Mailbox, From: m.From, To: m.To, Reason: strings.Join(why, "; ")})
		}
	}
	return out
}

func trim(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
