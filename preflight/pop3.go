package preflight

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/emersion/go-imap/v2"
	"golang.org/x/sync/errgroup"

	"mailferry/internal/imapconn"
	"mailferry/internal/pop3"
	"mailferry/inventory"
	"mailferry/inventory/discover"
)

// DefaultPOP3Sample is how many mailboxes per source cluster the POP3
// check reads when Options.POP3Sample is 0.
const DefaultPOP3Sample = 10

// How a POP3Risk was found (POP3Risk.Checked).
const (
	POP3Config   = "config"   // from the inventory alone
	POP3Sampled  = "sampled"  // its UIDLs were read
	POP3Inferred = "inferred" // not read: its source's sample says so
)

// UIDL formats the POP3 check recognises: Dovecot's pop3_uidl_format
// values derived from the IMAP UID (and UIDVALIDITY).
const (
	FormatUID            = "%08Xu"
	FormatUIDUIDValidity = "%08Xu%08Xv"
	FormatUnknown        = "unknown"
)

// POP3Risk is one mailbox's outlook for its POP3 clients: whether, once
// the move is cut over, they would see new UIDLs and download their mail
// again.
type POP3Risk struct {
	Mailbox string `json:"mailbox"`
	From    string `json:"from"`
	To      string `json:"to"`
	AtRisk  bool   `json:"at_risk"`
	Checked string `json:"checked"`
	// UIDLFormat is what the source's UIDLs are made of, when read.
	UIDLFormat string `json:"uidl_format,omitempty"`
	// SourceMessages is the source's INBOX as POP3 lists it.
	SourceMessages int `json:"source_messages,omitempty"`
	// RefetchMessages is how many messages a POP client would download
	// again, as far as the check can tell.
	RefetchMessages int    `json:"refetch_messages,omitempty"`
	Reason          string `json:"reason"`
}

// pop3Check looks at the moves whose source has a pop3 URL: from the
// inventory, a target without one; for a sample per source cluster, the
// source's UIDLs over POP3 and its INBOX UIDs and UIDVALIDITY over IMAP
// (read-only), held against what the target would give them: the target's
// own UIDLs when it already holds messages, else a fresh INBOX's (UIDs
// from 1 in the source's order, a new UIDVALIDITY), in the source's
// format. The rest of a cluster's moves are marked at risk when every
// sampled mailbox with mail was.
func pop3Check(ctx context.Context, inv *inventory.Inventory, moves []Move, runs map[string]*clusterRun, rep *Report, opts Options) {
	sample := opts.POP3Sample
	if sample == 0 {
		sample = DefaultPOP3Sample
	}
	type job struct {
		move int
		risk *POP3Risk
	}
	bySource := map[string][]job{}
	var order []string
	risks := make([]*POP3Risk, len(moves))
	for i, m := range moves {
		src, dst := inv.Cluster(m.From), inv.Cluster(m.To)
		if src == nil || dst == nil || src.POP3 == "" {
			continue
		}
		r := &POP3Risk{Mailbox: m.Mailbox, From: m.From, To: m.To, Checked: POP3Config}
		risks[i] = r
		if dst.POP3 == "" {
			r.AtRisk = true
			r.Reason = fmt.Sprintf("target cluster %s has no pop3 URL: its UIDLs cannot be compared before the cutover, and --pop3-gate holds the move", m.To)
		}
		if _, seen := bySource[m.From]; !seen {
			order = append(order, m.From)
		}
		if sample < 0 || len(bySource[m.From]) < sample {
			bySource[m.From] = append(bySource[m.From], job{i, r})
		} else {
			bySource[m.From] = append(bySource[m.From], job{-1 - i, r}) // not sampled
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, name := range order {
		jobs := bySource[name]
		cr := runs[name]
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := errgroup.Group{}
			g.SetLimit(capOf(cr.c, opts))
			for _, j := range jobs {
				if j.move < 0 || cr == nil || cr.problem != nil || rep.Mailboxes[j.move].Source != "ok" {
					continue // not sampled, or its source login already failed
				}
				g.Go(func() error {
					m := moves[j.move]
					err := sampleOne(ctx, inv, cr, m, j.risk, opts)
					if err != nil {
						mu.Lock()
						rep.Warnings = append(rep.Warnings, fmt.Sprintf("mailbox %s: POP3 check: %v", m.Mailbox, err))
						mu.Unlock()
						j.risk.AtRisk = true
						j.risk.Reason = joinReason(j.risk.Reason, "could not be checked: "+err.Error())
					}
					return nil
				})
			}
			_ = g.Wait()
			// The sample speaks for the rest: a source whose every sampled
			// mailbox with mail was at risk by its format puts the others
			// at risk too.
			var sampled, risky int
			format := ""
			for _, j := range jobs {
				if j.move >= 0 && j.risk.Checked == POP3Sampled && j.risk.SourceMessages > 0 {
					sampled++
					if j.risk.AtRisk && j.risk.UIDLFormat != FormatUID {
						risky++
						format = j.risk.UIDLFormat
					}
				}
			}
			for _, j := range jobs {
				if j.move >= 0 || sampled == 0 || risky < sampled {
					continue
				}
				j.risk.AtRisk, j.risk.Checked, j.risk.UIDLFormat = true, POP3Inferred, format
				j.risk.Reason = joinReason(j.risk.Reason, fmt.Sprintf("not read; every sampled mailbox of cluster %s with mail was at risk (UIDLs %s)", name, format))
			}
		}()
	}
	wg.Wait()
	for _, r := range risks {
		if r != nil && (r.AtRisk || r.Checked != POP3Config) {
			rep.POP3 = append(rep.POP3, *r)
		}
	}
}

func joinReason(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// sampleOne reads one mailbox's UIDLs and INBOX and fills its risk.
func sampleOne(ctx context.Context, inv *inventory.Inventory, cr *clusterRun, m Move, r *POP3Risk, opts Options) error {
	src, dst := cr.c, inv.Cluster(m.To)
	srcList, err := readPOP3(ctx, src, m.Mailbox, "source", opts)
	if err != nil {
		return err
	}
	r.Checked, r.SourceMessages = POP3Sampled, len(srcList.Messages)
	if len(srcList.Messages) == 0 {
		if !r.AtRisk {
			r.Reason = "INBOX empty over POP3: its POP clients keep no mail on the server"
		}
		return nil
	}
	var uids []imap.UID
	var validity uint32
	err = cr.session(ctx, m.Mailbox, opts, func(ctx context.Context, s *imapconn.Session) error {
		sel, err := s.Select(ctx, "INBOX", &imap.SelectOptions{ReadOnly: true})
		if err != nil {
			return err
		}
		validity = sel.UIDValidity
		data, err := s.UIDSearch(ctx, "INBOX", &imap.SearchCriteria{}, nil)
		if err != nil {
			return err
		}
		uids = data.AllUIDs()
		slices.Sort(uids)
		return nil
	})
	if err != nil {
		return fmt.Errorf("read the source's INBOX over IMAP: %w", err)
	}
	r.UIDLFormat = uidlFormat(srcList, uids, validity)

	// What the target would show: its own UIDLs if it has mail already.
	if dst != nil && dst.POP3 != "" {
		dstList, err := readPOP3(ctx, dst, m.Mailbox, "target", opts)
		if err != nil {
			return err
		}
		if len(dstList.Messages) > 0 {
			c := pop3.Compare(srcList, dstList)
			r.RefetchMessages = c.Refetch
			if !c.Match {
				r.AtRisk = true
				r.Reason = joinReason(r.Reason, fmt.Sprintf("the target already holds %d messages and their UIDLs differ: %s", c.TargetMessages, c.FirstDifference))
			} else if !r.AtRisk {
				r.Reason = fmt.Sprintf("the %d messages already on the target have the source's UIDLs", c.TargetMessages)
			}
			return nil
		}
	}
	// Else a fresh INBOX: UIDs 1, 2, ... in the source's order, a new
	// UIDVALIDITY, and (assumed) the source's format.
	switch r.UIDLFormat {
	case FormatUID:
		for i, u := range uids {
			if uint32(u) != uint32(i+1) {
				r.RefetchMessages++
			}
		}
		if r.RefetchMessages > 0 {
			r.AtRisk = true
			r.Reason = joinReason(r.Reason, fmt.Sprintf("UIDLs are the IMAP UID (%s) and the source's INBOX has expunge gaps: a fresh target numbers from 1, so %d of %d would change", FormatUID, r.RefetchMessages, len(uids)))
		} else if !r.AtRisk {
			r.Reason = fmt.Sprintf("UIDLs are the IMAP UID (%s) without gaps: a target with the same pop3_uidl_format gives the same UIDLs", FormatUID)
		}
	case FormatUIDUIDValidity:
		r.AtRisk, r.RefetchMessages = true, len(uids)
		r.Reason = joinReason(r.Reason, fmt.Sprintf("UIDLs carry the UIDVALIDITY (%s), which a new INBOX on the target does not share: every message would change (set pop3_uidl_format = %s on both sides, or see the README's POP3 section)", FormatUIDUIDValidity, FormatUID))
	default:
		r.AtRisk, r.RefetchMessages = true, len(srcList.Messages)
		r.Reason = joinReason(r.Reason, "UIDLs are not derived from the IMAP UID (another server's scheme, X-UIDL headers, hashes): the target gives its own unless it keeps them (see the README's POP3 section)")
	}
	return nil
}

// uidlFormat tells which Dovecot format the source's UIDLs follow.
func uidlFormat(l *pop3.Listing, uids []imap.UID, validity uint32) string {
	if len(uids) != len(l.Messages) {
		return FormatUnknown // the INBOX changed between the reads, or POP3 hides some
	}
	uid, both := true, true
	for i, m := range l.Messages {
		u := strings.ToUpper(m.UIDL)
		uid = uid && u == fmt.Sprintf("%08X", uint32(uids[i]))
		both = both && u == fmt.Sprintf("%08X%08X", uint32(uids[i]), validity)
	}
	switch {
	case uid:
		return FormatUID
	case both:
		return FormatUIDUIDValidity
	}
	return FormatUnknown
}

// readPOP3 reads a mailbox's POP3 listing on cluster c, bounded like the
// IMAP logins.
func readPOP3(ctx context.Context, c *inventory.Cluster, mailbox, side string, opts Options) (*pop3.Listing, error) {
	login, err := discover.Config(c, mailbox)
	if err != nil {
		return nil, err
	}
	login.Side = fmt.Sprintf("%s cluster %s", side, c.Name)
	cfg, _, err := pop3.ForCluster(c, login)
	if err != nil {
		return nil, err
	}
	io, dial := timeouts(c, opts)
	cfg.IOTimeout, cfg.DialTimeout = io, dial
	ctx, cancel := context.WithTimeout(ctx, dial+4*io)
	defer cancel()
	return pop3.Read(ctx, cfg)
}
