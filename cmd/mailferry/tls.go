package main

import (
	"fmt"

	"mailferry/internal/imapconn"
	"mailferry/inventory"
)

// warnInsecure says, once per cluster, that its certificates are not
// checked (insecure_skip_verify in the inventory).
func warnInsecure(g *globalOptions, inv *inventory.Inventory) {
	for _, c := range inv.Clusters {
		if c.InsecureSkipVerify {
			fmt.Fprintf(g.stderr, "mailferry: warning: cluster %s: insecure_skip_verify: TLS certificates are not checked; credentials can be intercepted\n", c.Name)
		}
	}
}

// applyTLSFlag sets an endpoint's TLS from --from-tls/--to-tls: "" keeps
// what the URL says (imaps:// implicit TLS, imap:// STARTTLS, required);
// imap:// also takes starttls or none, imaps:// only tls.
func applyTLSFlag(ep *imapconn.Endpoint, flag, mode string) error {
	switch {
	case mode == "":
		return nil
	case ep.TLS == imapconn.TLSImplicit && mode != "tls":
		return usageErrorf("%s %s: imaps:// always uses TLS; use imap:// for starttls or none", flag, mode)
	case ep.TLS == imapconn.TLSImplicit:
		return nil
	}
	switch mode {
	case "starttls":
		ep.TLS = imapconn.TLSStartTLS
	case "none":
		ep.TLS = imapconn.TLSNone
	case "tls":
		return usageErrorf("%s tls: write the URL as imaps://USER@HOST[:PORT] for implicit TLS", flag)
	default:
		return usageErrorf("%s %q: want none, starttls or tls", flag, mode)
	}
	return nil
}
