package migrate_test

import (
	"context"
	"sync"
	"testing"

	"mailferry/internal/testrig/corpus"
	"mailferry/migrate"
)

// EventBytes reports every body byte sent to the target exactly once
// (what is left at the end of a batch included), so that a live view fed
// by them ends where the copied messages say.
func TestFastBytesEvents(t *testing.T) {
	r := newFastRig(t, corpus.Generate(corpus.Options{Seed: 7, Folders: 3, MessagesPerFolder: 10, MaxSize: 400 << 10}))
	var mu sync.Mutex
	var streamed, copied int64
	var reports int
	obs := migrate.ObserverFunc(func(e migrate.Event) {
		mu.Lock()
		defer mu.Unlock()
		switch e.Kind {
		case migrate.EventBytes:
			if e.Bytes <= 0 {
				t.Errorf("EventBytes with %d bytes", e.Bytes)
			}
			streamed += e.Bytes
			reports++
		case migrate.EventMessageCopied:
			copied += e.Bytes
		}
	})
	rep, err := migrate.Copy(context.Background(),
		endpoint(t, "source", r.src.Addr, "alice", "pw"),
		endpoint(t, "target", r.dst.Addr, "alice", "pw"),
		migrate.Options{State: r.lease, Connections: 2, Observer: obs})
	if err != nil || rep.Failed != 0 {
		t.Fatalf("copy: %v %v", err, failures(rep))
	}
	if streamed != copied || copied != r.m.TotalBytes() || reports == 0 {
		t.Errorf("EventBytes sum %d in %d reports, copied messages %d bytes, corpus %d bytes: want all equal",
			streamed, reports, copied, r.m.TotalBytes())
	}
	if reports > rep.Copied {
		t.Errorf("%d EventBytes reports for %d messages: want them rate-limited, not one per write", reports, rep.Copied)
	}
}
