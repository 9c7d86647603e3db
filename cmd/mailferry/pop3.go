package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"mailferry/internal/imapconn"
	"mailferry/internal/pop3"
	"mailferry/inventory"
	"mailferry/migrate"
	"mailferry/preflight"
)

// pop3Logins are a move's POP3 logins, from its clusters' pop3 URLs and
// the IMAP logins already built (the same user, password and TLS trust):
// nil for a cluster without one.
func pop3Logins(from, to *inventory.Cluster, src, dst imapconn.Config) (s, d *pop3.Config, err error) {
	for _, side := range []struct {
		c     *inventory.Cluster
		login imapconn.Config
		out   **pop3.Config
	}{{from, src, &s}, {to, dst, &d}} {
		cfg, ok, err := pop3.ForCluster(side.c, side.login)
		if err != nil {
			return nil, nil, err
		}
		if ok {
			*side.out = &cfg
		}
	}
	return s, d, nil
}

// renderPOP3 prints, after the moves' table, one line per move whose
// POP3 UIDLs were compared.
func renderPOP3(w io.Writer, rep *migrate.ApplyReport) {
	for _, m := range rep.Moves {
		if m.POP3 != nil {
			fmt.Fprintf(w, "pop3 %s: %s\n", m.Mailbox, m.POP3.Summary())
		}
	}
}

// renderPOP3Risks prints the preflight's mailboxes at risk of their POP
// clients downloading everything again, and how many were looked at.
func renderPOP3Risks(w io.Writer, rep *preflight.Report) error {
	if len(rep.POP3) == 0 {
		return nil
	}
	var risky []preflight.POP3Risk
	for _, r := range rep.POP3 {
		if r.AtRisk {
			risky = append(risky, r)
		}
	}
	fmt.Fprintln(w)
	if len(risky) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "POP3 AT RISK\tFROM\tTO\tMESSAGES\tREFETCH\tCHECKED\tWHY")
		for _, r := range risky {
			msgs, refetch := "-", "-"
			if r.Checked == preflight.POP3Sampled {
				msgs, refetch = fmt.Sprint(r.SourceMessages), fmt.Sprint(r.RefetchMessages)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Mailbox, r.From, r.To, msgs, refetch, r.Checked, r.Reason)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "pop3: %d of %d mailboxes looked at are at risk of their POP clients downloading their mail again\n", len(risky), len(rep.POP3))
	return err
}
