package pop3

import (
	"context"
	"fmt"
)

// MaxMessages bounds the maildrop Read takes in: a server announcing more
// (or a broken one) is refused rather than allowed to exhaust memory.
const MaxMessages = 5_000_000

// Message is one message as a POP3 client sees it.
type Message struct {
	Num  int    `json:"num"`
	UIDL string `json:"uidl"`
	Size int64  `json:"size"`
}

// Listing is a maildrop as a POP3 client sees it: its messages in
// message order (POP3 shows the INBOX only).
type Listing struct {
	Messages []Message
	Octets   int64 // as STAT counts them
}

// UIDLs returns the listing's UIDLs in message order.
func (l *Listing) UIDLs() []string {
	out := make([]string, len(l.Messages))
	for i, m := range l.Messages {
		out[i] = m.UIDL
	}
	return out
}

// Read logs in, reads STAT, UIDL and LIST, and quits: the mailbox's
// message order, UIDLs and sizes, and nothing changed on the server. A
// server without UIDL (an -ERR) is an error: without it every POP client
// downloads by message number alone.
func Read(ctx context.Context, cfg Config) (*Listing, error) {
	c, err := Dial(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	l, err := c.read()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	_ = c.Quit()
	return l, nil
}

func (c *Client) read() (*Listing, error) {
	n, octets, err := c.Stat()
	if err != nil {
		return nil, err
	}
	if n > MaxMessages {
		return nil, c.protocolf("STAT", "count %d (more than %d messages are not read)", n, MaxMessages)
	}
	l := &Listing{Octets: octets, Messages: make([]Message, n)}
	for i := range l.Messages {
		l.Messages[i].Num = i + 1
	}
	if n == 0 {
		return l, nil
	}
	uidls, err := c.UIDL(n)
	if err != nil {
		return nil, err
	}
	sizes, err := c.List(n)
	if err != nil {
		return nil, err
	}
	seen := make([]bool, n)
	for _, e := range uidls {
		if e.Num > n || seen[e.Num-1] {
			return nil, c.protocolf("UIDL", "message number %d (STAT said %d messages)", e.Num, n)
		}
		seen[e.Num-1] = true
		l.Messages[e.Num-1].UIDL = e.UIDL
	}
	for _, e := range sizes {
		if e.Num > n {
			return nil, c.protocolf("LIST", "message number %d (STAT said %d messages)", e.Num, n)
		}
		l.Messages[e.Num-1].Size = e.Size
	}
	for i, ok := range seen {
		if !ok {
			return nil, fmt.Errorf("%s: POP3 UIDL on %s: no UIDL for message %d", c.cfg.Side, c.cfg.Addr(), i+1)
		}
	}
	return l, nil
}

// Comparison is a source's POP3 view held against a target's: what a POP
// client that knew the source finds on the target.
type Comparison struct {
	SourceMessages int
	TargetMessages int
	// Match: every message of the target has, at its position, the UIDL
	// its source message has (the target may lack messages at the end:
	// mail that reached the source since the last pass, Pending).
	Match bool
	// OrderMatch: at every position both have, the sizes agree: the
	// target shows the messages in the source's order (sizes are what
	// POP3 tells without downloading a message).
	OrderMatch bool
	// Refetch counts the target's messages whose UIDL the source does not
	// have: a POP client that kept its mail on the server downloads them
	// again.
	Refetch int
	// Pending counts the source's messages past the target's last one.
	Pending int
	// FirstDifference describes the first position whose UIDLs differ,
	// "" when none.
	FirstDifference string
}

// Compare holds the target's listing against the source's.
func Compare(src, dst *Listing) Comparison {
	c := Comparison{SourceMessages: len(src.Messages), TargetMessages: len(dst.Messages), Match: true, OrderMatch: true}
	have := make(map[string]bool, len(src.Messages))
	for _, m := range src.Messages {
		have[m.UIDL] = true
	}
	for i, m := range dst.Messages {
		if !have[m.UIDL] {
			c.Refetch++
		}
		if i >= len(src.Messages) {
			c.Match = false
			if c.FirstDifference == "" {
				c.FirstDifference = fmt.Sprintf("message %d: the target has it (UIDL %q), the source does not", m.Num, m.UIDL)
			}
			continue
		}
		s := src.Messages[i]
		if s.Size != m.Size {
			c.OrderMatch = false
		}
		if s.UIDL != m.UIDL {
			c.Match = false
			if c.FirstDifference == "" {
				c.FirstDifference = fmt.Sprintf("message %d: source UIDL %q, target %q", m.Num, s.UIDL, m.UIDL)
			}
		}
	}
	if len(src.Messages) > len(dst.Messages) {
		c.Pending = len(src.Messages) - len(dst.Messages)
	}
	return c
}
