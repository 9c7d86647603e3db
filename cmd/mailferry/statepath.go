package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// stateEnv names the variable that sets the default state.
const stateEnv = "MAILFERRY_STATE"

// defaultState is the --state default: $MAILFERRY_STATE, else state.db in
// the user's XDG state directory ($XDG_STATE_HOME/mailferry, or
// ~/.local/state/mailferry). It never depends on the working directory,
// so that a cron job started elsewhere finds the state an operator's run
// wrote (a state left behind in a working directory started every
// migration over). Without a home directory it is "" and --state must be
// given.
func defaultState() string {
	if s := os.Getenv(stateEnv); s != "" {
		return s
	}
	dir := os.Getenv("XDG_STATE_HOME")
	if dir == "" || !filepath.IsAbs(dir) {
		home, err := os.UserHomeDir()
		if err != nil || home == "" {
			return ""
		}
		dir = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(dir, "mailferry", "state.db")
}

// stateUsage is the help of --state.
const stateUsage = "durable state: a SQLite `FILE` (or sqlite:PATH) or a postgres:// URL (default: $MAILFERRY_STATE, else $XDG_STATE_HOME/mailferry/state.db, else ~/.local/state/mailferry/state.db)"

// makeStateDir creates the directory of the default state file (mode
// 0700: the state names every mailbox) when it is missing. Other paths
// are the operator's to create.
func makeStateDir(url string) error {
	if url != defaultState() || os.Getenv(stateEnv) != "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(url), 0o700); err != nil {
		return fmt.Errorf("state: create the default state's directory: %w", err)
	}
	return nil
}
