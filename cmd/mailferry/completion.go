package main

import (
	"os"
	"strings"

	"github.com/spf13/cobra"

	"mailferry/inventory"
	"mailferry/planner"
)

// Shell completion ("mailferry completion bash|zsh|fish|powershell"):
// cobra completes commands and flags; these complete their values: cluster
// and mailbox names from the inventory given by -i, the mailboxes of the
// plan given as the first argument, and each enumerated flag's values.

// flagValues are the fixed values of enumerated flags.
var flagValues = map[string][]string{
	"verify":     {"full\tsize and SHA-256", "size\tsize only", "none\ttrust the server"},
	"log-format": {"text", "json"},
	"log-level":  {"debug", "info", "warn", "error"},
	"from-tls":   {"none", "starttls", "tls"},
	"to-tls":     {"none", "starttls", "tls"},
}

// clusterFlags take a cluster name; mailboxFlags a mailbox name.
var (
	clusterFlags = []string{"drain", "relieve", "cluster", "exclude-target"}
	mailboxFlags = []string{"pin"}
)

// registerCompletions registers the value completions of c's own flags
// and, for the commands that take one, of its arguments.
func registerCompletions(c *cobra.Command) {
	// A flag's completion is registered once, on the command that
	// defines it (the root for the persistent ones).
	has := func(name string) bool {
		return c.LocalNonPersistentFlags().Lookup(name) != nil || c.PersistentFlags().Lookup(name) != nil
	}
	for name, values := range flagValues {
		if has(name) {
			_ = c.RegisterFlagCompletionFunc(name, cobra.FixedCompletions(values, cobra.ShellCompDirectiveNoFileComp))
		}
	}
	for _, name := range clusterFlags {
		if has(name) {
			_ = c.RegisterFlagCompletionFunc(name, completeClusters)
		}
	}
	for _, name := range mailboxFlags {
		if has(name) {
			_ = c.RegisterFlagCompletionFunc(name, completeMailboxes)
		}
	}
	if has("inventory") {
		_ = c.RegisterFlagCompletionFunc("inventory", cobra.FixedCompletions([]string{"yaml", "yml"}, cobra.ShellCompDirectiveFilterFileExt))
	}
	if has("debug-imap-dir") {
		_ = c.RegisterFlagCompletionFunc("debug-imap-dir", cobra.FixedCompletions(nil, cobra.ShellCompDirectiveFilterDirs))
	}
	if c.ValidArgsFunction != nil {
		return
	}
	switch c.Name() {
	case "drain":
		c.ValidArgsFunction = func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return completeClusters(cmd, args, toComplete)
		}
	case "apply", "preflight":
		c.ValidArgsFunction = func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return []string{"json"}, cobra.ShellCompDirectiveFilterFileExt
		}
	case "complete":
		c.ValidArgsFunction = func(_ *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			if len(args) == 0 {
				return []string{"json"}, cobra.ShellCompDirectiveFilterFileExt
			}
			return planMailboxes(args[0], args[1:], toComplete), cobra.ShellCompDirectiveNoFileComp
		}
	}
}

// completionInventory loads the inventory named by -i, or nil.
func completionInventory(cmd *cobra.Command) *inventory.Inventory {
	path, err := cmd.Flags().GetString("inventory")
	if err != nil || path == "" {
		return nil
	}
	inv, err := inventory.Load(path)
	if err != nil {
		return nil
	}
	return inv
}

func completeClusters(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	inv := completionInventory(cmd)
	if inv == nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, c := range inv.Clusters {
		if strings.HasPrefix(c.Name, toComplete) {
			out = append(out, c.Name+"\t"+string(c.Health))
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

func completeMailboxes(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	inv := completionInventory(cmd)
	if inv == nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, m := range inv.Mailboxes {
		if strings.HasPrefix(m.Name, toComplete) {
			out = append(out, m.Name+"\t"+m.Cluster)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// planMailboxes are the mailboxes moved by the plan in planPath that are
// not named yet.
func planMailboxes(planPath string, named []string, toComplete string) []string {
	f, err := os.Open(planPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	p, err := planner.ReadPlan(f)
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	for _, n := range named {
		seen[n] = true
	}
	var out []string
	for _, m := range p.Moves {
		if !seen[m.Mailbox] && strings.HasPrefix(m.Mailbox, toComplete) {
			out = append(out, m.Mailbox+"\t"+m.From+" -> "+m.To)
		}
	}
	return out
}
