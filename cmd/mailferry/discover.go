package main

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"mailferry/inventory"
	"mailferry/inventory/discover"
)

type discoverOptions struct {
	inventory string
	cluster   string
	output    string
	parallel  int
}

func newDiscoverCommand(g *globalOptions) *cobra.Command {
	o := &discoverOptions{}
	cmd := &cobra.Command{
		Use:   "discover -i INVENTORY [--cluster NAME] [-o mailboxes.csv]",
		Short: "Measure mailbox sizes and message counts over IMAP",
		Long: `Log in to every mailbox of a cluster (or of all clusters) with the
inventory's admin credentials and measure its bytes and message count:
STATUS SIZE where the server offers it, else the sum of RFC822.SIZE. Folders
are only listed and examined, never changed. The load column is kept from the
inventory. The result is the inventory's mailbox CSV
(mailbox,cluster,bytes,load,messages) with the measured rows updated.

Mailboxes are measured in parallel within the cluster's connection limit
(limits.connections, else 4; --parallel overrides). A mailbox that cannot be
measured keeps its old values and is listed; exit code 3 then.`,
		Example: `  # measure cluster bravo and write the CSV the inventory reads
  mailferry discover -i inventory.yaml --cluster bravo -o mailboxes.csv`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDiscover(cmd, g, o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.inventory, "inventory", "i", "", "inventory YAML `FILE`")
	f.StringVar(&o.cluster, "cluster", "", "measure only the mailboxes of `CLUSTER`")
	f.StringVarP(&o.output, "output", "o", "", "write the CSV to `FILE` (default: stdout; a file name, never a format: --json prints a summary)")
	f.IntVar(&o.parallel, "parallel", 0, "`N` mailboxes measured at once per cluster (default: its connection limit)")
	return cmd
}

func runDiscover(cmd *cobra.Command, g *globalOptions, o *discoverOptions) error {
	if o.inventory == "" {
		return usageErrorf("discover: which inventory? say -i FILE")
	}
	inv, err := inventory.Load(o.inventory)
	if err != nil {
		return usageError{err}
	}
	warnInsecure(g, inv)
	if o.cluster != "" && inv.Cluster(o.cluster) == nil {
		return usageErrorf("discover: cluster %q is not in %s", o.cluster, o.inventory)
	}
	var failed []discover.Measured
	measured := 0
	for ci := range inv.Clusters {
		c := &inv.Clusters[ci]
		if o.cluster != "" && c.Name != o.cluster {
			continue
		}
		var idx []int
		var mbs []inventory.Mailbox
		for i, m := range inv.Mailboxes {
			if m.Cluster == c.Name {
				idx = append(idx, i)
				mbs = append(mbs, m)
			}
		}
		res := discover.Run(cmd.Context(), c, mbs, discover.Options{Parallel: o.parallel,
			Progress: func(done, total int, m discover.Measured) {
				if g.json {
					return
				}
				status := fmt.Sprintf("%s, %d messages", inventory.FormatBytes(m.Mailbox.Bytes), m.Mailbox.Messages)
				if m.Err != nil {
					status = "failed: " + m.Err.Error()
				}
				fmt.Fprintf(g.stderr, "discover %s [%d/%d] %s: %s\n", c.Name, done, total, m.Mailbox.Name, status)
			}})
		for k, r := range res {
			if r.Err != nil {
				failed = append(failed, r)
				continue
			}
			inv.Mailboxes[idx[k]] = r.Mailbox
			measured++
		}
	}
	var buf bytes.Buffer
	if err := inventory.WriteCSV(&buf, inv.Mailboxes); err != nil {
		return err
	}
	if o.output != "" {
		if err := writeFileAtomic(o.output, buf.Bytes()); err != nil {
			return fmt.Errorf("discover: write %s: %w", o.output, err)
		}
	} else if !g.json {
		if _, err := g.stdout.Write(buf.Bytes()); err != nil {
			return err
		}
	}
	if g.json {
		out := discoverReport{Measured: measured, Failed: []discoverFailure{}, Output: o.output}
		for _, f := range failed {
			out.Failed = append(out.Failed, discoverFailure{f.Mailbox.Name, f.Mailbox.Cluster, f.Err.Error()})
		}
		if err := writeJSON(g, out); err != nil {
			return err
		}
	}
	if len(failed) > 0 {
		if ctxErr := cmd.Context().Err(); ctxErr != nil && errors.Is(failed[0].Err, ctxErr) {
			return ctxErr
		}
		return partialError{fmt.Sprintf("discover: %d of %d mailboxes could not be measured (they keep their old values)", len(failed), len(failed)+measured)}
	}
	return nil
}

// discoverReport is what discover --json prints.
type discoverReport struct {
	Measured int               `json:"measured"`
	Failed   []discoverFailure `json:"failed"`
	Output   string            `json:"output,omitempty"`
}

// discoverFailure is a mailbox that could not be measured.
type discoverFailure struct {
	Mailbox string `json:"mailbox"`
	Cluster string `json:"cluster"`
	Error   string `json:"error"`
}
