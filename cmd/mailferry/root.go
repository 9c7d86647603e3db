package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"
)

// globalOptions are the flags every command shares.
type globalOptions struct {
	stdin  io.Reader
	stdout io.Writer
	// stderr is where commands write their lines for the operator: the
	// terminal itself, or, off a terminal or with --log-format json, a
	// writer that turns each line into a log record with its timestamp
	// (see logOutput).
	stderr io.Writer
	// log is the structured logger over the same output.
	log  *slog.Logger
	logs *logOutput
	json bool
}

func newRootCommand(stdin io.Reader, stdout io.Writer, logs *logOutput) *cobra.Command {
	g := &globalOptions{stdin: stdin, stdout: stdout, stderr: logs.writer(), log: logs.logger(), logs: logs}
	root := &cobra.Command{
		Use:   "mailferry",
		Short: "Move mailboxes between IMAP clusters, verified and resumable",
		Long: `mailferry moves mailboxes off an overloaded or failing IMAP cluster onto
clusters with room: it copies every message byte for byte, proves each copy by
SHA-256 on the target, and never touches the source's flags.

Every command takes --json (machine-readable output on stdout: one document,
or NDJSON events for apply, drain, complete, rebalance and demo; schemas in
schema/), --log-format text|json and --log-level for what goes to stderr.
Off a terminal every stderr line carries a timestamp.

` + exitCodesHelp,
		Example: `  mailferry plan -i inv.yaml --drain bravo -o drain.json
  mailferry apply drain.json -i inv.yaml --cutover-exec ./switch-routing.sh
  mailferry apply drain.json -i inv.yaml --json --log-format json 2>apply.log | jq .`,
		Version:       buildVersion(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(g.stderr)
	root.SetVersionTemplate("{{.Name}} " + versionText() + "\n")
	pf := root.PersistentFlags()
	pf.BoolVar(&g.json, "json", false, "print machine-readable JSON on stdout instead of text (NDJSON events for apply, drain, complete, rebalance, demo)")
	// The log flags show their defaults, but keep what newLogOutput read
	// from the arguments until cobra parses them (an error parsing an
	// earlier flag is then still reported in the asked format).
	format, level := logs.format, logs.levelName
	pf.StringVar(&logs.format, "log-format", "text", "stderr lines as `FORMAT`: text (timestamped off a terminal) or json (one JSON object a line)")
	pf.StringVar(&logs.levelName, "log-level", "info", "print stderr lines at `LEVEL` and above: debug, info, warn or error (--debug-imap alone means debug)")
	logs.format, logs.levelName = format, level
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if err := logs.configure(cmd); err != nil {
			return err
		}
		return checkOutputFlags(cmd)
	}
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
		newReportCommand(g),
		newDocsCommand(g),
		newSubmitCommand(g), newWorkerCommand(g), newWaitCommand(g), // fleet mode: fleet.go
	)
	finishCommandTree(root)
	return root
}

// exitCodesHelp is the exit-code table every command's help ends with
// (the README's, in short).
const exitCodesHelp = `Exit codes (every command; each command's help says which it uses):
  0    success
  1    could not run (a server or the state unreachable, an I/O error)
  2    usage or configuration error: a bad argument or flag, an inventory
       or plan problem, a refused login or TLS setup; also a run in which
       every move failed on its configuration
  3    finished, but some items failed, are held or were interrupted
  4    apply and friends: nothing failed, but some moves are only in sync,
       not final (no cutover hook ran, no --routed)
  5    another mailferry run holds the run lock; nothing was done
  6    preflight: some mailboxes will not fit their target
  75   stopped outside the allowed time windows; run again later
  130  interrupted (Ctrl-C, SIGTERM); run again to resume`

// commandHelp completes the help of commands whose constructors give no
// exit codes or no examples, so that every command's help has both (see
// TestHelpOfEveryCommand).
var commandHelp = map[string]struct{ exit, example string }{
	"mailferry": {},
	"mailferry version": {exit: "Exit codes: 0; 2 usage error.",
		example: "  mailferry version\n  mailferry --version\n  mailferry version --json"},
	"mailferry inventory": {exit: "Exit codes: 0; 2 usage error (an unknown subcommand).",
		example: "  mailferry inventory check -i inv.yaml"},
	"mailferry plan":     {exit: "Exit codes: 0 planned and the goal is met; 3 the goal is not met (the plan is\nstill printed and written; a relieve that cannot be met plans no moves\nunless --best-effort); 2 usage error or an inventory problem; 1 the plan file\ncould not be written."},
	"mailferry demo":     {exit: "Exit codes: 0 the demo ran; 1 it could not; 2 usage error; 3 some moves failed;\n130 interrupted."},
	"mailferry discover": {exit: "Exit codes: 0 every mailbox measured; 3 some could not be measured (listed;\nthey keep their old values); 2 usage error or an inventory problem; 1 could\nnot run; 130 interrupted."},
	"mailferry status":   {exit: "Exit codes: 0; 2 usage error (--state none, or no state there); 1 the state\ncould not be read."},
	"mailferry complete": {exit: "Exit codes: as apply: 0 every named move done and verified; 3 some failed or\nare held (a named move that is not ready is held); 2 usage or configuration\nerror (also when every move failed on its configuration); 5 another run\nholds the lock; 1 could not run; 6 the preflight found mailboxes that will\nnot fit; 75 outside the windows; 130 interrupted."},
	"mailferry drain":    {exit: "Exit codes: as apply (0, 1, 2, 3, 4, 5, 6, 75, 130); --dry-run: 0, or 2 for a\nusage or inventory problem; 2 also when there is no terminal to ask on and\nno --yes."},
	"mailferry rebalance": {exit: "Exit codes: as apply (0, 1, 2, 3, 4, 5, 6, 75, 130).",
		example: "  # nightly, from cron: at most 500 GiB a run, moves final through the hook\n  mailferry rebalance -i /etc/mailferry/inv.yaml --max-bytes 500GiB --cutover-exec /etc/mailferry/switch.sh \\\n    --log-format json --report /var/lib/mailferry/rebalance.json"},
	"mailferry submit": {exit: "Exit codes: 0 the plan's moves are queued (or were queued or done before);\n2 usage error, an inventory or plan problem, or a state that is not PostgreSQL;\n1 the state could not be reached."},
	"mailferry worker": {exit: "Exit codes: 0 stopped by SIGTERM/Ctrl-C after giving its moves back (or\nfinishing them); 2 usage or configuration error (not a PostgreSQL state, a bad\ninventory); 1 the state could not be reached; 130 stopped at once by a\nsecond signal."},
	"mailferry completion": {exit: "Exit codes: 0; 2 usage error.",
		example: "  source <(mailferry completion bash)\n  mailferry completion zsh > \"${fpath[1]}/_mailferry\"\n  mailferry completion fish > ~/.config/fish/completions/mailferry.fish"},
}

// finishCommandTree makes every command of the tree follow the same
// contract: argument errors are usage errors (exit 2, as unknown flags
// are), a command that only groups others refuses an unknown subcommand
// (exit 2) instead of printing its help, every help has exit codes and
// examples, and flags and arguments complete in the shell.
func finishCommandTree(root *cobra.Command) {
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	walkCommands(root, func(c *cobra.Command) {
		usageArgs(c)
		if h, ok := commandHelp[c.CommandPath()]; ok {
			if h.exit != "" && !strings.Contains(c.Long, "Exit codes") {
				if c.Long == "" {
					c.Long = c.Short + "."
				}
				c.Long = strings.TrimRight(c.Long, "\n") + "\n\n" + h.exit
			}
			if h.example != "" && c.Example == "" {
				c.Example = h.example
			}
		}
		registerCompletions(c)
	})
}

func walkCommands(c *cobra.Command, fn func(*cobra.Command)) {
	fn(c)
	for _, sub := range c.Commands() {
		walkCommands(sub, fn)
	}
}

// usageArgs wraps c's argument check so that its error is a usage error
// naming the command; a command that only groups subcommands gets one
// that refuses anything but a subcommand.
func usageArgs(c *cobra.Command) {
	if c.HasSubCommands() && !c.Runnable() {
		c.Args = cobra.ArbitraryArgs
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			hint := ""
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				hint = fmt.Sprintf(" (did you mean %q?)", s[0])
			}
			return usageErrorf("unknown command %q for %q%s: see %s --help", args[0], cmd.CommandPath(), hint, cmd.CommandPath())
		}
		return
	}
	check := c.Args
	if check == nil {
		return
	}
	c.Args = func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageErrorf("%s: %v (usage: %s; see %s --help)", cmd.CommandPath(), err, cmd.UseLine(), cmd.CommandPath())
		}
		return nil
	}
}

// formatWords are what kubectl-minded fingers type after -o. mailferry's
// -o/--output (and --report) names a file, always; a bare format word is
// refused rather than written as a file of that name.
var formatWords = map[string]bool{"json": true, "yaml": true, "yml": true, "wide": true, "text": true, "table": true, "csv": true, "ndjson": true, "name": true}

// checkOutputFlags refuses -o json and the like (see formatWords).
func checkOutputFlags(cmd *cobra.Command) error {
	for _, name := range []string{"output", "report"} {
		f := cmd.Flags().Lookup(name)
		if f == nil || !f.Changed {
			continue
		}
		if v := f.Value.String(); formatWords[strings.ToLower(v)] {
			flag := "--" + name
			if f.Shorthand != "" {
				flag = "-" + f.Shorthand + "/--" + name
			}
			return usageErrorf("%s %s: %s names the file to write, not a format: say --json for JSON on stdout, or %s ./%s for a file called %q",
				flag, v, flag, flag, v, v)
		}
	}
	return nil
}
