package migrate

import (
	"context"
	"fmt"

	"mailferry/internal/pop3"
)

// When a move's POP3 check ran (POP3Check.Checked).
const (
	// POP3BeforeCutover: at ready, after the last delta pass and before
	// the cutover hook (or --routed): a mismatch found here can still
	// hold the move (--pop3-gate) while mail goes to the source.
	POP3BeforeCutover = "before-cutover"
	// POP3Final: after the final delta, with every message on the target.
	POP3Final = "final"
)

// POP3Check is what a POP3 client would see of a move: the source's
// UIDLs and message order over POP3 held against the target's. It is
// set in a MoveResult only for a move whose source cluster has a pop3 URL.
type POP3Check struct {
	Checked string `json:"checked"`
	// UIDLsMatch: every message on the target has the UIDL, at the same
	// position, that it has on the source (the target may lack the
	// source's newest messages at the check before the cutover:
	// POP3PendingMessages; the final delta copies them).
	UIDLsMatch bool `json:"uidls_match"`
	// OrderMatch: the messages both have come in the same order (their
	// POP3 sizes agree position by position).
	OrderMatch     bool `json:"order_match"`
	SourceMessages int  `json:"source_messages"`
	TargetMessages int  `json:"target_messages"`
	// RefetchMessages: target messages whose UIDL the source did not
	// show: a POP client that keeps its mail on the server downloads
	// them again after the cutover.
	RefetchMessages int `json:"refetch_messages"`
	PendingMessages int `json:"pending_messages,omitempty"`
	// FirstDifference names the first message whose UIDLs differ.
	FirstDifference string `json:"first_difference,omitempty"`
	// Error says why the check could not be made (then UIDLsMatch is
	// false: nothing says they match).
	Error string `json:"error,omitempty"`
}

// Summary is the check in one line, for the report's text and the gate's
// reason.
func (c *POP3Check) Summary() string {
	when := "before the cutover"
	if c.Checked == POP3Final {
		when = "after the final delta"
	}
	switch {
	case c.Error != "":
		return fmt.Sprintf("POP3 UIDLs not compared (%s): %s", when, c.Error)
	case c.UIDLsMatch:
		s := fmt.Sprintf("POP3 UIDLs match (%d messages, %s)", c.TargetMessages, when)
		if c.PendingMessages > 0 {
			s += fmt.Sprintf("; %d newer on the source, copied by the final delta", c.PendingMessages)
		}
		return s
	}
	order := ""
	if !c.OrderMatch {
		order = "; the message order differs too"
	}
	return fmt.Sprintf("POP3 UIDLs DIFFER (%s): a POP client would download %d of %d messages again (%s)%s",
		when, c.RefetchMessages, c.TargetMessages, c.FirstDifference, order)
}

// checkPOP3 reads the source's POP3 listing, then the target's, and
// compares them. It never changes either (no RETR, no DELE).
func (o *ApplyOptions) checkPOP3(ctx context.Context, m Move, when string) *POP3Check {
	c := &POP3Check{Checked: when}
	src, err := pop3.Read(ctx, *m.SrcPOP3)
	if err != nil {
		c.Error = "source: " + err.Error()
		return c
	}
	c.SourceMessages = len(src.Messages)
	if m.DstPOP3 == nil {
		c.Error = fmt.Sprintf("target cluster %s has no pop3 URL in the inventory: its UIDLs cannot be read", m.To)
		return c
	}
	dst, err := pop3.Read(ctx, *m.DstPOP3)
	if err != nil {
		c.Error = "target: " + err.Error()
		return c
	}
	cmp := pop3.Compare(src, dst)
	c.UIDLsMatch, c.OrderMatch = cmp.Match, cmp.OrderMatch
	c.TargetMessages, c.RefetchMessages, c.PendingMessages = cmp.TargetMessages, cmp.Refetch, cmp.Pending
	c.FirstDifference = cmp.FirstDifference
	return c
}
