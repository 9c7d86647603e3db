package migrate_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"mailferry/internal/testrig/corpus"
	"mailferry/internal/testrig/dovecot"
	"mailferry/migrate"
	"mailferry/state"
)

// BenchmarkCopySmallMessages copies one mailbox of small messages (sizes
// log-uniform from 1 KiB to 64 KiB: median ~8 KiB, mean ~15 KiB, 20
// folders) between two Dovecots, into a fresh target account each time,
// with full verification and no state: the engine's own cost per message,
// for profiling (-cpuprofile) of the copy path. The bench
// (cmd/mailferry-bench) compares whole tools.
func BenchmarkCopySmallMessages(b *testing.B) {
	for _, mode := range []struct {
		name  string
		opts  migrate.Options
		state bool
	}{
		{"multiappend", migrate.Options{}, false},
		{"multiappend-sqlite", migrate.Options{}, true},
		{"single", migrate.Options{NoMultiAppend: true}, false},
	} {
		b.Run(mode.name, func(b *testing.B) {
			dovecot.Require(b)
			users := map[string]string{"alice": "alice-pw"}
			for i := 0; i < b.N+1; i++ {
				users[fmt.Sprintf("t%03d", i)] = "t-pw"
			}
			src := dovecot.Start(b, dovecot.Options{Name: "src"})
			dst := dovecot.Start(b, dovecot.Options{Name: "dst", Users: users})
			m := corpus.Generate(corpus.Options{Seed: 5, Folders: 20, MessagesPerFolder: 60, MaxSize: 64 << 10})
			corpus.Seed(b, src.Addr, "alice", src.Users["alice"], m)
			b.ResetTimer()
			msgs := 0
			for i := 0; i < b.N; i++ {
				opts := mode.opts
				if mode.state {
					st, err := state.Open(context.Background(), filepath.Join(b.TempDir(), "state.db"))
					if err != nil {
						b.Fatal(err)
					}
					b.Cleanup(func() { st.Close() })
					if opts.State, err = st.Acquire(context.Background(), state.Key{Source: "s", Target: fmt.Sprint(i)}, "bench", time.Hour); err != nil {
						b.Fatal(err)
					}
				}
				rep, err := migrate.Copy(context.Background(), userCfg(b, "source", src, "alice"),
					endpoint(b, "target", dst.Addr, fmt.Sprintf("t%03d", i), "t-pw"), opts)
				if err != nil || rep.Failed != 0 {
					b.Fatalf("copy: %v, %d failed", err, rep.Failed)
				}
				msgs += rep.Copied
			}
			b.ReportMetric(float64(msgs)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
