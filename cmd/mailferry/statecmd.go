package main

import (
	"context"
	"errors"
	"fmt"
	neturl "net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"mailferry/internal/imapconn"
	"mailferry/internal/secret"
	"mailferry/inventory"
	"mailferry/state"
)

// leaseTTL is how long a crashed mailferry on another host blocks a
// migration; one on this host is recognised as dead at once.
const leaseTTL = 30 * time.Second

// statePasswordEnv holds a PostgreSQL state's password when no
// --state-password-file is given.
const statePasswordEnv = "MAILFERRY_STATE_PASSWORD"

// statePasswordUsage is the help of --state-password-file.
const statePasswordUsage = "read the password of a postgres:// --state from `FILE` (mode 0600; else $" + statePasswordEnv + ", else PGPASSWORD, PGPASSFILE or ~/.pgpass)"

// openState opens the state named by --state ("none" = no state). A
// PostgreSQL password is taken by reference only: from passwordFile, else
// $MAILFERRY_STATE_PASSWORD, else wherever pgx looks (PGPASSWORD,
// PGPASSFILE or ~/.pgpass, PGSERVICE and its service file). A password
// written in the URL is refused: argv is readable by every process on the
// host (ps, the cutover hook's /proc/PPID/cmdline).
func openState(ctx context.Context, url, passwordFile string, extra ...state.Option) (*state.Store, error) {
	if url == "none" {
		return nil, nil
	}
	if url == "" {
		return nil, usageErrorf("--state is empty and there is no home directory for the default (give a file, sqlite:PATH, postgres://..., or none, or set $%s)", stateEnv)
	}
	if err := makeStateDir(url); err != nil {
		return nil, err
	}
	postgres := strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://")
	if postgres && urlHasPassword(url) {
		return nil, usageErrorf("--state %q: a password in the URL is refused (every process on this host can read argv): "+
			"use --state-password-file FILE, $%s, or PGPASSFILE (~/.pgpass)", secret.RedactURL(url), statePasswordEnv)
	}
	opts := extra
	switch {
	case passwordFile != "":
		if !postgres {
			return nil, usageErrorf("--state-password-file is for a postgres:// --state")
		}
		if err := inventory.CheckSecretFile(passwordFile); err != nil {
			return nil, usageErrorf("--state-password-file: %v", err)
		}
		pw, err := imapconn.ReadSecret(passwordFile, "")
		if err != nil {
			return nil, usageErrorf("--state-password-file: %v", err)
		}
		opts = append(opts, state.WithPassword(pw))
	case postgres && os.Getenv(statePasswordEnv) != "":
		opts = append(opts, state.WithPassword(os.Getenv(statePasswordEnv)))
	}
	st, err := state.Open(ctx, url, opts...)
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	return st, nil
}

// urlHasPassword reports whether a URL carries a password, in its user
// information or as a password= parameter. An unparsable URL is judged by
// whether masking its password changes it.
func urlHasPassword(raw string) bool {
	u, err := neturl.Parse(raw)
	if err != nil {
		return secret.RedactURL(raw) != raw
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			return true
		}
	}
	return u.Query().Has("password")
}

// holderName names this process in leases: host and pid, so an operator
// can find it and a later run on the same host can tell it has died.
func holderName() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s pid %d", host, os.Getpid())
}

// deadLocalHolder reports whether holder is a mailferry of this host whose
// process no longer runs.
func deadLocalHolder(holder string) bool {
	host, pidText, ok := strings.Cut(holder, " pid ")
	me, _ := os.Hostname()
	if !ok || host != me {
		return false
	}
	pid, err := strconv.Atoi(pidText)
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return false
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// acquire takes the migration's lease, taking it over at once from a
// holder on this host that died (SIGKILL, reboot) instead of waiting for
// its lease to expire.
func acquire(ctx context.Context, st *state.Store, key state.Key) (*state.Lease, error) {
	return acquireFor(ctx, st, key, "refusing to run a second copy of the same mailbox")
}

// acquireFor is acquire with the refusal's explanation.
func acquireFor(ctx context.Context, st *state.Store, key state.Key, refusal string) (*state.Lease, error) {
	l, err := takeLease(ctx, st, key)
	var held *state.HeldError
	if errors.As(err, &held) {
		return nil, fmt.Errorf("%w; %s", err, refusal)
	}
	return l, err
}

// takeLease acquires key's lease, at once from a dead holder on this host.
func takeLease(ctx context.Context, st *state.Store, key state.Key) (*state.Lease, error) {
	l, err := st.Acquire(ctx, key, holderName(), leaseTTL)
	var held *state.HeldError
	if errors.As(err, &held) && held.Holder != "" && deadLocalHolder(held.Holder) {
		l, err = st.AcquireFrom(ctx, key, holderName(), leaseTTL, held.Holder)
	}
	return l, err
}

// runLockSource is the Key.Source of run locks (status shows them as such).
const runLockSource = "run"

// runLockKey is the lock that apply, drain, complete and rebalance of one
// inventory file share: one run at a time moves its mailboxes.
func runLockKey(inventoryPath string) state.Key {
	target := "(inventory without a file)"
	if inventoryPath != "" {
		target = inventoryPath
		if abs, err := filepath.Abs(inventoryPath); err == nil {
			target = abs
		}
	}
	return state.Key{Source: runLockSource, Target: target}
}

// acquireRunLock takes the run lock of the inventory, at once from a dead
// holder on this host. While another run holds it, it refuses with a
// lockedError naming the holder (host and pid); the caller has done nothing
// yet. The lock must be held (migrate.Hold) and released by the caller.
func acquireRunLock(ctx context.Context, st *state.Store, inventoryPath string) (*state.Lease, error) {
	key := runLockKey(inventoryPath)
	l, err := takeLease(ctx, st, key)
	var held *state.HeldError
	switch {
	case errors.As(err, &held):
		return nil, lockedError{fmt.Errorf("another mailferry run is moving the mailboxes of %s: its run lock is held by %q "+
			"(until %s, renewed while it runs; it expires %v after that process dies, at once if it died on this host); "+
			"nothing was done: run again once it has finished",
			key.Target, held.Holder, held.Expires.UTC().Format("15:04:05 UTC"), leaseTTL)}
	case err != nil:
		return nil, fmt.Errorf("run lock: %w", err)
	}
	return l, nil
}
