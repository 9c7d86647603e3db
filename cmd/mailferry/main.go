// Command mailferry moves mailboxes between IMAP clusters: it plans which
// mailboxes to move, copies them with verification and resumable state, and
// reports what it did.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"mailferry/migrate"
)

// Exit codes, as documented in the README and DESIGN.md.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
	exitPartial = 3
	// exitSynced: every move that is not done is in sync at ready, waiting
	// for the routing to change (no cutover hook ran): nothing failed,
	// nothing is final.
	exitSynced = 4
	// exitLocked: another mailferry run holds the run lock; nothing was
	// done.
	exitLocked   = 5
	exitCanceled = 130
	// exitLater: stopped outside the allowed time windows; run again later
	// (EX_TEMPFAIL).
	exitLater = 75
)

// usageError marks an error caused by bad flags or configuration (exit 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// partialError marks a run that finished but left some items failed (exit 3).
// Its message has already been rendered in the command's output.
type partialError struct{ msg string }

func (e partialError) Error() string { return e.msg }

// syncedError marks a run whose moves are in sync but not final (exit 4).
type syncedError struct{ msg string }

func (e syncedError) Error() string { return e.msg }

// lockedError marks a run refused because another holds the run lock (exit 5).
type lockedError struct{ err error }

func (e lockedError) Error() string { return e.err.Error() }
func (e lockedError) Unwrap() error { return e.err }

// The first SIGINT or SIGTERM asks the command to stop starting work and
// finish what is in flight; the second stops it at once.
func main() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := newLogOutput(os.Stderr, os.Args[1:])
	log := logs.logger()
	stop := make(chan struct{})
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		close(stop)
		log.Warn("interrupted: finishing messages in flight (interrupt again to stop at once)", "signal", sig.String())
		<-sigs
		cancel()
	}()
	stopProfile := cpuProfile(os.Getenv("MAILFERRY_CPUPROFILE"))
	code := runLogged(withStop(ctx, stop), os.Args[1:], os.Stdin, os.Stdout, logs)
	stopProfile()
	os.Exit(code)
}

// cpuProfile writes a CPU profile of the whole run to path (the
// MAILFERRY_CPUPROFILE variable, for `go tool pprof`); "" does nothing.
func cpuProfile(path string) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "mailferry: MAILFERRY_CPUPROFILE: %v\n", err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

type stopKey struct{}

// withStop carries the "stop starting work" channel to the commands.
func withStop(ctx context.Context, stop <-chan struct{}) context.Context {
	return context.WithValue(ctx, stopKey{}, stop)
}

// stopChan is the channel withStop stored, or nil (never closes).
func stopChan(ctx context.Context) <-chan struct{} {
	c, _ := ctx.Value(stopKey{}).(<-chan struct{})
	return c
}

// run executes the command tree and maps its error to an exit code. It is the
// only place that decides exit codes.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return runLogged(ctx, args, stdin, stdout, newLogOutput(stderr, args))
}

// runLogged is run with its stderr already wrapped (main's signal handler
// writes to the same output).
func runLogged(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer, logs *logOutput) int {
	defer logs.close()
	root := newRootCommand(stdin, stdout, logs)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	code := exitCode(ctx, err)
	if err != nil {
		msg := err.Error()
		var pe partialError
		var se syncedError
		var pf preflightError
		switch {
		case errors.As(err, &pe):
			msg = pe.msg
		case errors.As(err, &se):
			msg = se.msg
		case errors.As(err, &pf):
			msg = pf.msg
		}
		level := slog.LevelError
		if code == exitSynced {
			level = slog.LevelWarn // in sync, not final: no failure
		}
		var attrs []any
		if logs.format == "json" {
			attrs = append(attrs, "exit_code", code)
		}
		logs.logger().Log(context.Background(), level, msg, attrs...)
	}
	return code
}

// exitCode is the exit code of a command's error (see the README and
// exitCodesHelp).
func exitCode(ctx context.Context, err error) int {
	if err == nil {
		return exitOK
	}
	var pe partialError
	var se syncedError
	var pf preflightError
	var ue usageError
	var le lockedError
	switch {
	case errors.As(err, &pe):
		return exitPartial
	case errors.As(err, &se):
		return exitSynced
	case errors.As(err, &pf):
		return pf.code
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &le):
		return exitLocked
	case errors.Is(err, migrate.ErrOutsideWindow):
		return exitLater
	case ctx.Err() != nil, errors.Is(err, migrate.ErrInterrupted):
		return exitCanceled
	default:
		return exitFailure
	}
}
