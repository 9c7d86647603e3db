package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"mailferry/inventory"
)

func newInventoryCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "inventory",
		Short: "Work with inventory files (clusters and mailboxes)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newInventoryCheckCommand(g))
	return cmd
}

type inventoryCheckOptions struct {
	inventory   string
	skipSecrets bool
}

func newInventoryCheckCommand(g *globalOptions) *cobra.Command {
	o := &inventoryCheckOptions{}
	cmd := &cobra.Command{
		Use:   "check -i INVENTORY",
		Short: "Validate an inventory and its mailbox CSV, and summarise it",
		Long: `Check an inventory file and the mailbox CSV it names: every problem is
reported with its file, line and field (unknown fields, duplicate mailboxes,
mailboxes on unknown clusters, negative sizes, passwords written inline, bad
URLs). Secrets are only referenced (password_file, password_env), never
read; check makes sure they resolve: each password_file and credentials_file
exists with mode 0600 or stricter, each password_env variable is set, each
ca_file holds a PEM certificate (--skip-secrets leaves that out, e.g. on a
machine that is not the one that runs the moves). Relative paths in an
inventory are relative to the inventory file's directory.

Exit codes: 0 valid; 2 problems found (all listed).`,
		Example: `  # validate before planning
  mailferry inventory check -i testdata/inventory/example.yaml --skip-secrets

  # in CI, as JSON
  mailferry inventory check -i inv.yaml --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runInventoryCheck(g, o)
		},
	}
	cmd.Flags().StringVarP(&o.inventory, "inventory", "i", "", "inventory YAML `FILE`")
	cmd.Flags().BoolVar(&o.skipSecrets, "skip-secrets", false, "do not check that password files, password variables and CA files resolve")
	return cmd
}

type checkProblem struct {
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

type checkCluster struct {
	Name          string  `json:"name"`
	Health        string  `json:"health"`
	URL           string  `json:"url"`
	TLS           string  `json:"tls"`
	CAFile        string  `json:"ca_file,omitempty"`
	Insecure      bool    `json:"insecure_skip_verify,omitempty"`
	Mailboxes     int     `json:"mailboxes"`
	Bytes         int64   `json:"bytes"`
	Load          float64 `json:"load"`
	CapacityBytes int64   `json:"capacity_bytes"`
	CapacityLoad  float64 `json:"capacity_load"`
}

type checkReport struct {
	OK        bool           `json:"ok"`
	File      string         `json:"file"`
	Errors    []checkProblem `json:"errors,omitempty"`
	Warnings  []string       `json:"warnings,omitempty"`
	Clusters  []checkCluster `json:"clusters,omitempty"`
	Mailboxes int            `json:"mailboxes"`
}

func runInventoryCheck(g *globalOptions, o *inventoryCheckOptions) error {
	if o.inventory == "" {
		return usageErrorf("inventory check: which inventory? say -i FILE")
	}
	rep := checkReport{File: o.inventory}
	inv, err := inventory.Load(o.inventory)
	if err == nil && !o.skipSecrets {
		if errs := inv.CheckSecrets(); len(errs) > 0 {
			err = errs
		}
	}
	if err != nil {
		var errs inventory.Errors
		if !errors.As(err, &errs) {
			return usageError{err}
		}
		for _, e := range errs {
			rep.Errors = append(rep.Errors, checkProblem{File: e.File, Line: e.Line, Field: e.Field, Message: e.Msg})
		}
		if g.json {
			if err := writeJSON(g, rep); err != nil {
				return err
			}
		} else {
			fmt.Fprintln(g.stdout, err)
		}
		return usageErrorf("inventory check: %s: %d problem(s)", o.inventory, len(errs))
	}
	rep.OK = true
	rep.Mailboxes = len(inv.Mailboxes)
	idx := map[string]int{}
	for i, c := range inv.Clusters {
		idx[c.Name] = i
		rep.Clusters = append(rep.Clusters, checkCluster{
			Name: c.Name, Health: string(c.Health), URL: c.URL, TLS: string(c.TLS), CAFile: c.CAFile, Insecure: c.InsecureSkipVerify,
			CapacityBytes: c.Capacity.Bytes, CapacityLoad: c.Capacity.Load,
		})
	}
	var totalB int64
	var totalL float64
	for _, m := range inv.Mailboxes {
		c := &rep.Clusters[idx[m.Cluster]]
		c.Mailboxes++
		c.Bytes += m.Bytes
		c.Load += m.Load
		totalB += m.Bytes
		totalL += m.Load
	}
	for i := range rep.Clusters {
		c := &rep.Clusters[i]
		c.Load = float64(int64(c.Load*1e6+0.5)) / 1e6
		if lu := c.Load / c.CapacityLoad; lu > 1 {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("cluster %s carries %s of its load capacity", c.Name, pct0(lu)))
		}
		if su := float64(c.Bytes) / float64(c.CapacityBytes); su > 1 {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("cluster %s holds %s of its storage capacity", c.Name, pct0(su)))
		}
		if c.TLS == string(inventory.TLSNone) {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("cluster %s: tls: none sends passwords in clear text", c.Name))
		}
		if inv.Clusters[i].InsecureSkipVerify {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("cluster %s: insecure_skip_verify accepts any certificate: credentials can be intercepted", c.Name))
		}
	}
	if g.json {
		return writeJSON(g, rep)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: ok: %d clusters, %d mailboxes, %s, load %s\n\n", o.inventory, len(inv.Clusters), len(inv.Mailboxes),
		inventory.FormatBytes(totalB), trimFloat(float64(int64(totalL*1e3+0.5))/1e3))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tHEALTH\tURL\tMAILBOXES\tSTORAGE\tLOAD")
	for _, c := range rep.Clusters {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s of %s (%s)\t%s of %s (%s)\n", c.Name, c.Health, c.URL, c.Mailboxes,
			inventory.FormatBytes(c.Bytes), inventory.FormatBytes(c.CapacityBytes), pct0(float64(c.Bytes)/float64(c.CapacityBytes)),
			trimFloat(c.Load), trimFloat(c.CapacityLoad), pct0(c.Load/c.CapacityLoad))
	}
	tw.Flush()
	for _, w := range rep.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	_, err = fmt.Fprint(g.stdout, b.String())
	return err
}

func writeJSON(g *globalOptions, v any) error {
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
