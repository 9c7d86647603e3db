// Package failpoint lets crash tests kill the process at an exact point:
// with MAILFERRY_FAILPOINT=NAME:N in the environment, the N-th call of
// Hit(NAME) (1-based) sends SIGKILL to the process itself. Without the
// variable Hit costs one atomic load.
//
// The points: "state-commit" (inside a message-map transaction, after its
// writes, before COMMIT), "append-literal" (halfway through the literal
// of an APPEND larger than 1 MiB) and "append-answered" (when the target
// has answered an APPEND with its UID, before the copy is recorded).
package failpoint

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// Env is the environment variable read once, at the first Hit.
const Env = "MAILFERRY_FAILPOINT"

var (
	once  sync.Once
	name  string
	at    int64
	count atomic.Int64
)

func load() {
	spec, ok := os.LookupEnv(Env)
	if !ok {
		return
	}
	n, k, ok := strings.Cut(spec, ":")
	v, err := strconv.ParseInt(k, 10, 64)
	if !ok || err != nil || v < 1 {
		return
	}
	name, at = n, v
}

// Hit counts one pass through the point p and kills the process when it
// is the one asked for.
func Hit(p string) {
	once.Do(load)
	if at == 0 || p != name {
		return
	}
	if count.Add(1) == at {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}
