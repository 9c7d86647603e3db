// Command mailferry moves mailboxes between IMAP clusters: it plans which
// mailboxes to move, copies them with verification and resumable state, and
// reports what it did.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes, as documented in the README and DESIGN.md.
const (
	exitOK       = 0
	exitFailure  = 1
	exitUsage    = 2
	exitPartial  = 3
	exitCanceled = 130
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

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes the command tree and maps its error to an exit code. It is the
// only place that decides exit codes.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCommand(stdin, stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	return exitCode(ctx, err, stderr)
}

func exitCode(ctx context.Context, err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	var pe partialError
	if errors.As(err, &pe) {
		fmt.Fprintf(stderr, "mailferry: %s\n", pe.msg)
		return exitPartial
	}
	fmt.Fprintf(stderr, "mailferry: %s\n", err)
	var ue usageError
	switch {
	case errors.As(err, &ue):
		return exitUsage
	case ctx.Err() != nil:
		return exitCanceled
	default:
		return exitFailure
	}
}
