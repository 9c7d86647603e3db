package main

import (
	"fmt"
	"log"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// env implements the TB interfaces of internal/testrig/dovecot and internal/testrig/corpus
// for a program: Fatalf logs, runs every cleanup and exits 1; Cleanup
// functions run in reverse order when the env is closed, on exit, on
// failure and on SIGINT/SIGTERM; TempDir makes a directory below one root.
//
// A scope (env.scope) is an env whose cleanups run early, when the scope is
// closed, e.g. to stop and remove a target server as soon as its run is
// measured; a scope not yet closed is closed with its parent.
type env struct {
	root *envRoot

	mu       sync.Mutex
	cleanups []func()
}

// envRoot is what every scope of one program shares.
type envRoot struct {
	top     *env
	tempDir string // every TempDir lives below it
	exiting sync.Once
}

// newEnv creates the top-level env with its temporary directory and
// installs the signal handler.
func newEnv() *env {
	dir, err := os.MkdirTemp("", "mailferry-bench-")
	if err != nil {
		log.Fatalf("bench: %v", err)
	}
	r := &envRoot{tempDir: dir}
	e := &env{root: r}
	r.top = e
	e.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			log.Printf("bench: remove %s: %v", dir, err)
		}
	})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sig
		r.exit(128+int(s.(syscall.Signal)), fmt.Sprintf("bench: %v: cleaning up", s))
	}()
	return e
}

// exit runs every cleanup of the program once and exits with code.
func (r *envRoot) exit(code int, msg string) {
	r.exiting.Do(func() {
		if msg != "" {
			log.Print(msg)
		}
		r.top.close()
		os.Exit(code)
	})
	// Another goroutine is already exiting: wait for it.
	select {}
}

func (e *env) Helper() {}

func (e *env) Cleanup(f func()) {
	e.mu.Lock()
	e.cleanups = append(e.cleanups, f)
	e.mu.Unlock()
}

func (e *env) Logf(format string, args ...any) {
	log.Printf("bench: "+format, args...)
}

func (e *env) Fatalf(format string, args ...any) {
	e.root.exit(1, "bench: FAILED: "+fmt.Sprintf(format, args...))
}

func (e *env) TempDir() string {
	dir, err := os.MkdirTemp(e.root.tempDir, "t")
	if err != nil {
		e.Fatalf("temp dir: %v", err)
	}
	return dir
}

// scope returns a child env whose cleanups run when it is closed, or with
// e's at the latest.
func (e *env) scope() *env {
	c := &env{root: e.root}
	e.Cleanup(c.close)
	return c
}

// close runs the cleanups registered so far, last first. It is idempotent:
// each cleanup runs once.
func (e *env) close() {
	for {
		e.mu.Lock()
		n := len(e.cleanups)
		if n == 0 {
			e.mu.Unlock()
			return
		}
		f := e.cleanups[n-1]
		e.cleanups = e.cleanups[:n-1]
		e.mu.Unlock()
		f()
	}
}
