package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"mailferry/internal/imapconn"
	"mailferry/inventory"
	"mailferry/migrate"
	"mailferry/state"
	"mailferry/throttle"
)

type migrateOptions struct {
	from, to                 string
	fromPassFile, toPassFile string
	fromAdmin, toAdmin       string
	fromTLS, toTLS           string
	verify                   string
	allowPlaintext           bool
	caFile                   string
	insecure                 bool
	exclude                  []string
	folderMap                []string
	connections              int
	debugIMAP                bool
	debugIMAPDir             string
	traces                   *traceFiles
	state                    string
	statePasswordFile        string
	keepDeleted              bool
	ioTimeout                time.Duration
	lateWindow               time.Duration
	noMulti                  bool
	allowMass                bool
	throttle                 throttleFlags
}

// lateCommitWindowUsage is the help of --late-commit-window (migrate,
// apply, drain, rebalance, complete).
const lateCommitWindowUsage = "a server may still store an APPEND for `D` after its connection dropped: look for such copies that long, and after a crash that long before a folder is done"

// debugIMAPUsage and debugIMAPDirUsage are the help of --debug-imap and
// --debug-imap-dir (migrate, apply, drain, rebalance, complete).
const (
	debugIMAPUsage    = "trace the IMAP protocol of both sides to stderr, as debug lines (credentials redacted; implies --log-level debug unless given)"
	debugIMAPDirUsage = "write each mailbox's IMAP trace (both sides, credentials redacted, mode 0600: it holds the mail) to `DIR`/MAILBOX.imap.log instead of stderr"
)

// allowMassUsage is the help of --allow-mass-expunge.
const allowMassUsage = "mirror deletions of more than 10% (and 5) of a folder's messages, or of a whole folder, on the source; without it such a folder stops and its copies stay"

// noMultiUsage is the help of --no-multiappend.
const noMultiUsage = "send one APPEND per message even to a target that offers MULTIAPPEND (which carries a batch in one command, stored all or nothing)"

// ioTimeoutUsage is the help of --io-timeout (migrate, apply, drain,
// rebalance, complete).
const ioTimeoutUsage = "close a connection whose server has kept mailferry waiting `D` with no byte moving (the work is retried on a new one); slow but moving transfers are never cut"

// throttleFlags limit the load a copy puts on the source cluster.
type throttleFlags struct {
	maxConnections    int
	maxBytesPerSecond string
	maxMessagesPerSec float64
	maxLatency        time.Duration
	windows           []string
	exitOutsideWindow bool
	degraded          bool
}

func (t *throttleFlags) register(f *pflag.FlagSet) {
	f.IntVar(&t.maxConnections, "max-connections", 0, "connections to each cluster at most (default: --connections)")
	f.StringVar(&t.maxBytesPerSecond, "max-bytes-per-second", "", "read at most `SIZE` per second from the source, e.g. 20MiB (default: unlimited)")
	f.Float64Var(&t.maxMessagesPerSec, "max-messages-per-second", 0, "copy at most `N` messages per second (default: unlimited)")
	f.DurationVar(&t.maxLatency, "max-latency", 0, "back off the source when its command latency exceeds `D`, e.g. 500ms (default: only relative to what it learned)")
	f.StringArrayVar(&t.windows, "window", nil, "start new work only within local `HH:MM-HH:MM` (repeatable; may cross midnight)")
	f.BoolVar(&t.exitOutsideWindow, "exit-outside-window", false, "outside the windows, finish in-flight work and exit 75 (resumable) instead of waiting")
	f.BoolVar(&t.degraded, "degraded", false, "the source is degraded: start with a quarter of the connections and grow only while it stays healthy")
}

// limiters builds the source and target limiters from the flags.
func (t *throttleFlags) limiters(connections int) (src, dst *throttle.Limiter, err error) {
	cfg := throttle.Config{MaxConnections: connections, MessagesPerSecond: t.maxMessagesPerSec, MaxLatency: t.maxLatency, Degraded: t.degraded}
	if t.maxConnections > 0 {
		cfg.MaxConnections = t.maxConnections
	}
	if t.maxBytesPerSecond != "" {
		n, err := inventory.ParseBytes(t.maxBytesPerSecond)
		if err != nil {
			return nil, nil, usageErrorf("--max-bytes-per-second %q: %v", t.maxBytesPerSecond, err)
		}
		cfg.BytesPerSecond = float64(n)
	}
	if cfg.Windows, err = throttle.ParseWindows(t.windows...); err != nil {
		return nil, nil, usageErrorf("--window: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, nil, usageErrorf("%v", err)
	}
	if src, err = throttle.New("source", cfg); err != nil {
		return nil, nil, usageErrorf("%v", err)
	}
	dst, err = throttle.New("target", throttle.Config{MaxConnections: cfg.MaxConnections})
	return src, dst, err
}

func newMigrateCommand(g *globalOptions) *cobra.Command {
	o := &migrateOptions{}
	cmd := &cobra.Command{
		Use:   "migrate --from URL --to URL",
		Short: "Copy one mailbox from a source IMAP server to a target, verified",
		Long: `Copy one mailbox: every folder (hierarchy, special-use folders, subscriptions),
every message byte for byte with its flags and internal date. Each appended
message is read back from the target and compared by size and SHA-256.
The source is never changed: folders are opened read-only and bodies are
read with BODY.PEEK, so \Seen never moves.

The URL's user is the mailbox. imaps:// is implicit TLS; imap:// requires
STARTTLS (a server that does not offer it is an error) unless --from-tls or
--to-tls says none. Passwords come from a file or the
environment, never from the command line:
  --from-password-file F  or  MAILFERRY_FROM_PASSWORD
  --to-password-file F    or  MAILFERRY_TO_PASSWORD
With --from-admin/--to-admin the password is the admin's, and mailferry logs
in with SASL PLAIN as the admin acting for the mailbox (Dovecot master users,
Cyrus admins). A Dovecot master login "alice*admin" in the URL works too.

Every wait on a server is bounded by --io-timeout without progress: a server
that goes silent while mailferry waits for it is disconnected with an error
naming the side, and the work is retried; a throttled transfer that keeps
moving is never cut, however long it takes.

Exit codes: 0 everything copied and verified; 3 some messages failed (listed);
1 the mailbox could not be migrated; 2 usage error.`,
		Example: `  # copy alice from the old server to the new one, passwords from files
  mailferry migrate --from imap://alice@old.example.net --to imaps://alice@new.example.net \
    --from-password-file /etc/mailferry/old.pw --to-password-file /etc/mailferry/new.pw

  # as an admin on both sides, skip Trash, rename a folder, JSON for scripts
  MAILFERRY_FROM_PASSWORD=... MAILFERRY_TO_PASSWORD=... mailferry migrate \
    --from imaps://alice@old:993 --from-admin admin --to imaps://alice@new:993 --to-admin admin \
    --exclude '^Trash(/|$)' --folder-map 'Old Sent=Sent' --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runMigrate(cmd, g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.from, "from", "", "source `URL`: imap://USER@HOST[:PORT] (STARTTLS, required unless --from-tls none) or imaps://USER@HOST[:PORT]")
	f.StringVar(&o.to, "to", "", "target `URL`, like --from")
	f.StringVar(&o.fromPassFile, "from-password-file", "", "read the source password from `FILE` (else $MAILFERRY_FROM_PASSWORD)")
	f.StringVar(&o.toPassFile, "to-password-file", "", "read the target password from `FILE` (else $MAILFERRY_TO_PASSWORD)")
	f.StringVar(&o.fromAdmin, "from-admin", "", "log in to the source as admin `NAME` acting for the mailbox (SASL PLAIN authzid)")
	f.StringVar(&o.toAdmin, "to-admin", "", "log in to the target as admin `NAME` acting for the mailbox")
	f.StringVar(&o.verify, "verify", "full", "check each copy on the target: full (size and SHA-256), size, or none")
	f.StringVar(&o.fromTLS, "from-tls", "", "source TLS `MODE`: none, starttls (for imap://, required; the default) or tls (imaps://)")
	f.StringVar(&o.toTLS, "to-tls", "", "target TLS `MODE`, like --from-tls")
	f.BoolVar(&o.allowPlaintext, "allow-plaintext", false, "with --from-tls/--to-tls none, allow sending credentials in clear text to a non-loopback server")
	f.StringVar(&o.caFile, "ca-file", "", "trust the CA certificates in PEM `FILE` (both sides)")
	f.BoolVar(&o.insecure, "insecure-skip-verify", false, "accept any TLS certificate (dangerous)")
	f.StringArrayVar(&o.exclude, "exclude", nil, "skip folders whose path (segments joined by /) matches `REGEX` (repeatable)")
	f.StringArrayVar(&o.folderMap, "folder-map", nil, "copy source folder SRC to target folder DST, paths joined by / (`SRC=DST`, repeatable)")
	f.IntVar(&o.connections, "connections", 4, "folders copied at once (one connection per side each)")
	f.BoolVar(&o.debugIMAP, "debug-imap", false, debugIMAPUsage)
	f.StringVar(&o.debugIMAPDir, "debug-imap-dir", "", debugIMAPDirUsage)
	f.StringVar(&o.state, "state", defaultState(), stateUsage+"; none for no state")
	f.StringVar(&o.statePasswordFile, "state-password-file", "", statePasswordUsage)
	f.BoolVar(&o.keepDeleted, "keep-deleted", false, "keep target copies of messages and folders deleted on the source since the last run")
	f.DurationVar(&o.ioTimeout, "io-timeout", imapconn.DefaultIdleTimeout, ioTimeoutUsage)
	f.DurationVar(&o.lateWindow, "late-commit-window", migrate.DefaultLateCommitWindow, lateCommitWindowUsage)
	f.BoolVar(&o.noMulti, "no-multiappend", false, noMultiUsage)
	f.BoolVar(&o.allowMass, "allow-mass-expunge", false, allowMassUsage)
	o.throttle.register(f)
	return cmd
}

func runMigrate(cmd *cobra.Command, g *globalOptions, o *migrateOptions) error {
	if o.from == "" || o.to == "" {
		return usageErrorf("migrate needs --from and --to")
	}
	mode, err := migrate.ParseVerifyMode(o.verify)
	if err != nil {
		return usageErrorf("--verify: %v", err)
	}
	if o.connections < 1 || o.connections > 64 {
		return usageErrorf("--connections %d: want 1 to 64", o.connections)
	}
	if o.ioTimeout <= 0 {
		return usageErrorf("--io-timeout %s: want a positive duration such as 30s", o.ioTimeout)
	}
	if o.lateWindow <= 0 {
		return usageErrorf("--late-commit-window %s: want a positive duration such as 10s", o.lateWindow)
	}
	if o.debugIMAPDir != "" {
		if o.traces, err = newTraceFiles(o.debugIMAPDir); err != nil {
			return err
		}
		defer func() {
			if terr := o.traces.close(); terr != nil {
				g.log.Warn(terr.Error())
			}
		}()
	}
	src, err := o.side("source", "--from", o.from, o.fromTLS, o.fromAdmin, o.fromPassFile, "MAILFERRY_FROM_PASSWORD", g)
	if err != nil {
		return err
	}
	dst, err := o.side("target", "--to", o.to, o.toTLS, o.toAdmin, o.toPassFile, "MAILFERRY_TO_PASSWORD", g)
	if err != nil {
		return err
	}
	opts := migrate.Options{Verify: mode, Connections: o.connections, Alone: true, KeepDeleted: o.keepDeleted, Stop: stopChan(cmd.Context()),
		ExitOutsideWindow: o.throttle.exitOutsideWindow, LateCommitWindow: o.lateWindow, NoMultiAppend: o.noMulti, AllowMassExpunge: o.allowMass}
	if opts.Source, opts.Target, err = o.throttle.limiters(o.connections); err != nil {
		return err
	}
	for _, e := range o.exclude {
		re, err := regexp.Compile(e)
		if err != nil {
			return usageErrorf("--exclude %q: %v", e, err)
		}
		opts.Exclude = append(opts.Exclude, re)
	}
	if len(o.folderMap) > 0 {
		opts.FolderMap = map[string]string{}
		for _, m := range o.folderMap {
			s, d, ok := strings.Cut(m, "=")
			if !ok || s == "" || d == "" {
				return usageErrorf("--folder-map %q: want SRC=DST", m)
			}
			opts.FolderMap[strings.Trim(s, "/")] = strings.Trim(d, "/")
		}
	}
	if o.insecure {
		g.log.Warn("--insecure-skip-verify: TLS certificates are not checked; credentials can be intercepted")
	}
	ctx := cmd.Context()
	st, err := openState(ctx, o.state, o.statePasswordFile)
	if err != nil {
		return err
	}
	if st != nil {
		defer st.Close()
		// The mailboxes, not the logins, name the migration; a state
		// written under the URLs with logins is carried over.
		key := state.Key{Source: src.Endpoint.Key(), Target: dst.Endpoint.Key()}
		if _, err := st.Rekey(ctx, state.Key{Source: src.Endpoint.String(), Target: dst.Endpoint.String()}, key); err != nil {
			return err
		}
		lease, err := acquire(ctx, st, key)
		if err != nil {
			return err
		}
		defer lease.Release(context.WithoutCancel(ctx))
		held, release := migrate.Hold(ctx, lease)
		defer release()
		cmd.SetContext(held)
		opts.State = lease
	}
	return copyAndReport(cmd, g, src, dst, opts)
}

// copyAndReport runs one mailbox copy with progress on stderr, prints the
// report, and turns the outcome into the command's error (exit 3 when some
// messages failed).
func copyAndReport(cmd *cobra.Command, g *globalOptions, src, dst imapconn.Config, opts migrate.Options) error {
	progress := newProgress(g.stderr, g.json)
	for _, l := range []*throttle.Limiter{opts.Source, opts.Target} {
		if l != nil {
			progress.limiters = append(progress.limiters, l)
		}
	}
	opts.Observer = progress
	rep, err := migrate.Copy(cmd.Context(), src, dst, opts)
	progress.done()
	if rep == nil {
		return err
	}
	if werr := renderReport(g.stdout, rep, g.json); werr != nil {
		return werr
	}
	if errors.Is(err, migrate.ErrOutsideWindow) {
		return fmt.Errorf("%w: work in flight was finished and recorded; run the same command again inside a window", err)
	}
	if errors.Is(err, migrate.ErrInterrupted) {
		return fmt.Errorf("%w: messages in flight were finished and recorded; run the same command again to resume", err)
	}
	if err != nil {
		return err
	}
	if !rep.OK() {
		return partialError{fmt.Sprintf("%d of %d messages failed", rep.Failed, rep.Messages)}
	}
	return nil
}

// side builds one connection config from flags; the password comes from a
// file or an environment variable, never from the command line.
func (o *migrateOptions) side(side, flag, rawURL, tlsMode, admin, passFile, passEnv string, g *globalOptions) (imapconn.Config, error) {
	ep, err := imapconn.ParseEndpoint(rawURL)
	if err != nil {
		return imapconn.Config{}, usageErrorf("%s: %v", flag, err)
	}
	if err := applyTLSFlag(&ep, flag+"-tls", tlsMode); err != nil {
		return imapconn.Config{}, err
	}
	ep.Admin = admin
	pass, err := imapconn.ReadSecret(passFile, passEnv)
	if err != nil {
		return imapconn.Config{}, usageErrorf("%s password: %v", side, err)
	}
	cfg := imapconn.Config{
		Side: side, Endpoint: ep, Password: pass,
		AllowPlaintext: o.allowPlaintext, CAFile: o.caFile, InsecureSkipVerify: o.insecure,
		IdleTimeout:      o.ioTimeout,
		NoStartTLSAdvice: fmt.Sprintf("use imaps://, or %s-tls none to send the password in clear text", flag),
	}
	switch {
	case o.traces != nil:
		cfg.Debug = o.traces.writer(ep.Mailbox, side)
	case o.debugIMAP:
		cfg.Debug = prefixWriter{w: g.logs.tracer(), prefix: side + ": "}
	}
	return cfg, nil
}

// prefixWriter writes the protocol trace of one side. Every connection of
// both sides writes to the same stream from its own goroutines, so writes
// are serialised (the writer, a test's buffer, need not be safe).
type prefixWriter struct {
	w      io.Writer
	prefix string
}

var traceMu sync.Mutex

func (p prefixWriter) Write(b []byte) (int, error) {
	traceMu.Lock()
	defer traceMu.Unlock()
	_, err := fmt.Fprintf(p.w, "%s%s", p.prefix, b)
	return len(b), err
}

// renderReport prints the summary: one JSON object with --json, else a
// human table.
func renderReport(w io.Writer, rep *migrate.Report, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "mailbox    %s\n", rep.Mailbox)
	fmt.Fprintf(&b, "from       %s\nto         %s\n", rep.Source, rep.Target)
	fmt.Fprintf(&b, "folders    %d\n", rep.Folders)
	fmt.Fprintf(&b, "messages   %d (%s)\n", rep.Messages, humanBytes(rep.Bytes))
	fmt.Fprintf(&b, "copied     %d\n", rep.Copied)
	if rep.Done > 0 || rep.Adopted > 0 || rep.FlagsUpdated > 0 || rep.Expunged > 0 {
		fmt.Fprintf(&b, "earlier    %d (copied by earlier runs)\n", rep.Done)
		fmt.Fprintf(&b, "adopted    %d (appended before a crash, found on the target)\n", rep.Adopted)
		fmt.Fprintf(&b, "flags      %d updated\n", rep.FlagsUpdated)
		fmt.Fprintf(&b, "expunged   %d (deleted on the source)\n", rep.Expunged)
	}
	fmt.Fprintf(&b, "verified   %d (%s)\n", rep.Verified, rep.Verify)
	fmt.Fprintf(&b, "failed     %d\n", rep.Failed)
	if rep.Remaining > 0 {
		fmt.Fprintf(&b, "remaining  %d (interrupted: run the same command again)\n", rep.Remaining)
	}
	fmt.Fprintf(&b, "time       %s, %s\n", seconds(rep.Seconds).Round(time.Millisecond), humanRate(rep.BytesPerSec))
	for _, st := range rep.Throttle {
		if st.Decreases == 0 && st.Backoffs == 0 && st.RateWaits == 0 && st.WindowWaits == 0 {
			continue
		}
		fmt.Fprintf(&b, "throttle   %s: limit %d/%d at the end (%d decreases, %d increases), p90 latency %s, %d backoffs, %d rate waits\n",
			st.Name, st.Limit, st.Cap, st.Decreases, st.Increases, st.Latency.Round(time.Millisecond), st.Backoffs, st.RateWaits)
	}
	for _, m := range rep.Mapping {
		switch {
		case m.Excluded:
			fmt.Fprintf(&b, "excluded   %q\n", m.Source)
		case m.Reason != "" || m.Source != m.Target:
			reason := ""
			if m.Reason != "" {
				reason = " (" + m.Reason + ")"
			}
			fmt.Fprintf(&b, "mapped     %q -> %q%s\n", m.Source, m.Target, reason)
		}
	}
	if len(rep.Failures) > 0 {
		fmt.Fprintf(&b, "\nfailures:\n")
		for _, f := range rep.Failures {
			if f.UID != 0 {
				fmt.Fprintf(&b, "  %q uid %d: %s\n", f.Folder, f.UID, f.Reason)
			} else {
				fmt.Fprintf(&b, "  %q: %s\n", f.Folder, f.Reason)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// humanBytes and humanRate are how text shows a byte count and a rate:
// inventory.FormatBytes and inventory.FormatRate (IEC units), the one
// formatter of the whole program.
func humanBytes(n int64) string { return inventory.FormatBytes(n) }

func humanRate(bytesPerSecond float64) string { return inventory.FormatRate(bytesPerSecond) }

// seconds is a report's float seconds as a duration.
func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
