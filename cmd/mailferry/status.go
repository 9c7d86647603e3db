package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"mailferry/state"
)

// statusEntry is one migration as `status --json` prints it.
type statusEntry struct {
	Source        string `json:"source"`
	Target        string `json:"target"`
	Phase         string `json:"phase"`
	MessagesDone  int64  `json:"messages_done"`
	MessagesTotal int64  `json:"messages_total"`
	BytesDone     int64  `json:"bytes_done"`
	BytesTotal    int64  `json:"bytes_total"`
	Verified      int64  `json:"verified"`
	Failed        int64  `json:"failed"`
	// BytesPerSecond is the average rate from creation to last activity.
	BytesPerSecond float64    `json:"bytes_per_second"`
	LastError      string     `json:"last_error,omitempty"`
	LastActivity   time.Time  `json:"last_activity"`
	Created        time.Time  `json:"created"`
	Holder         string     `json:"holder,omitempty"`
	LeaseExpires   *time.Time `json:"lease_expires,omitempty"`
}

func newStatusCommand(g *globalOptions) *cobra.Command {
	var stateURL, statePasswordFile string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "List the migrations in the state: phase, progress, last error, last activity",
		Long: `List every migration recorded in the state: its phase (copying, done, failed,
interrupted), messages and bytes done of the total, verified and failed
counts, the last error, the last activity, and the process working on it now.`,
		Example: `  mailferry status
  mailferry status --state postgres://mailferry@db/mailferry --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if stateURL == "none" {
				return usageErrorf("--state none has nothing to show")
			}
			st, err := openState(cmd.Context(), stateURL, statePasswordFile, state.Existing())
			if err != nil {
				return err
			}
			defer st.Close()
			list, err := st.List(cmd.Context())
			if err != nil {
				return err
			}
			out := make([]statusEntry, 0, len(list))
			for _, s := range list {
				e := statusEntry{
					Source: s.Key.Source, Target: s.Key.Target, Phase: s.Phase,
					MessagesDone: s.MessagesDone, MessagesTotal: s.MessagesTotal, BytesDone: s.BytesDone, BytesTotal: s.BytesTotal,
					Verified: s.Verified, Failed: s.Failed, LastError: s.LastError, LastActivity: s.Updated, Created: s.Created,
					Holder: s.Holder,
				}
				switch {
				case s.Key.Source == runLockSource, s.Key.Source == "rebalance": // "rebalance": the lock of older versions
					e.Phase = "run lock" // not a mailbox: the lock runs of one inventory share
				case e.Phase == "":
					e.Phase = "new"
				}
				if secs := s.Updated.Sub(s.Created).Seconds(); secs > 0 {
					e.BytesPerSecond = float64(s.BytesDone) / secs
				}
				if s.Holder != "" {
					exp := s.LeaseExpires
					e.LeaseExpires = &exp
				}
				out = append(out, e)
			}
			if g.json {
				return writeJSON(g, out)
			}
			if err := renderStatus(g, out); err != nil {
				return err
			}
			return renderFleetWorkers(cmd.Context(), g, stateURL, statePasswordFile) // fleet mode: fleet.go
		},
	}
	cmd.Flags().StringVar(&stateURL, "state", defaultState(), stateUsage)
	cmd.Flags().StringVar(&statePasswordFile, "state-password-file", "", statePasswordUsage)
	return cmd
}

func renderStatus(g *globalOptions, list []statusEntry) error {
	if len(list) == 0 {
		_, err := fmt.Fprintln(g.stdout, "no migrations recorded")
		return err
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MAILBOX\tPHASE\tMESSAGES\tBYTES\tRATE\tVERIFIED\tFAILED\tLAST ACTIVITY\tNOTE")
	for _, e := range list {
		note := e.LastError
		if e.Holder != "" {
			note = "running: " + e.Holder
		}
		fmt.Fprintf(tw, "%s -> %s\t%s\t%d/%d\t%s/%s\t%s/s\t%d\t%d\t%s\t%s\n",
			e.Source, e.Target, e.Phase, e.MessagesDone, e.MessagesTotal, humanBytes(e.BytesDone), humanBytes(e.BytesTotal),
			humanBytes(int64(e.BytesPerSecond)), e.Verified, e.Failed, e.LastActivity.Local().Format("2006-01-02 15:04:05"), note)
	}
	return tw.Flush()
}
