package main

import (
	"fmt"
	"io"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

// globalOptions are the flags every command shares.
type globalOptions struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	json   bool
}

func newRootCommand(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	g := &globalOptions{stdin: stdin, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "mailferry",
		Short: "Move mailboxes between IMAP clusters, verified and resumable",
		Long: `mailferry moves mailboxes off an overloaded or failing IMAP cluster onto
clusters with room: it copies every message byte for byte, proves each copy by
SHA-256 on the target, and never touches the source's flags.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().BoolVar(&g.json, "json", false, "print machine-readable JSON instead of text")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(
		newVersionCommand(g),
		newMigrateCommand(g),
		newInventoryCommand(g),
		newPlanCommand(g),
		newDemoCommand(g),
		newDiscoverCommand(g),
		newStatusCommand(g),
		newPreflightCommand(g),
		newApplyCommand(g),
		newCompleteCommand(g),
		newDrainCommand(g),
		newRebalanceCommand(g),
		newSubmitCommand(g), newWorkerCommand(g), newWaitCommand(g), // fleet mode: fleet.go
	)
	return root
}

func newVersionCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the mailferry version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := buildVersion()
			if g.json {
				_, err := fmt.Fprintf(g.stdout, "{\"version\":%q}\n", v)
				return err
			}
			_, err := fmt.Fprintf(g.stdout, "mailferry %s\n", v)
			return err
		},
	}
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" {
		return info.Main.Version
	}
	return "(devel)"
}
