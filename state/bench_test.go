package state_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"mailferry/state"
	"mailferry/state/statetest"
)

func benchMessages(first, n int) []state.Message {
	msgs := make([]state.Message, n)
	for i := range msgs {
		uid := uint32(first + i)
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uid)
		msgs[i] = state.Message{SrcUID: uid, DstUID: uid, Size: 40_000 + int64(i), SHA256: sha256.Sum256(b[:]),
			Verified: true, Flags: []string{"$Forwarded", `\Seen`}}
	}
	return msgs
}

// BenchmarkPutMessages measures the state cost of one committed batch of
// 256 new records (one transaction, with the mark), per message.
func BenchmarkPutMessages(b *testing.B) {
	statetest.EachDriver(b, func(b *testing.B, url string) {
		ctx := context.Background()
		s := open(b, url, newClock())
		l := acquire(b, s, key, "bench")
		f, err := l.Folder(ctx, "INBOX")
		if err != nil {
			b.Fatal(err)
		}
		const batch = 256
		next := 1
		b.ResetTimer()
		for b.Loop() {
			msgs := benchMessages(next, batch)
			next += batch
			if err := l.PutMessages(ctx, f.ID, msgs, uint32(next)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/msg")
	})
}

// BenchmarkMessages measures loading a folder map of 100k records.
func BenchmarkMessages(b *testing.B) {
	statetest.EachDriver(b, func(b *testing.B, url string) {
		ctx := context.Background()
		s := open(b, url, newClock())
		l := acquire(b, s, key, "bench")
		f, err := l.Folder(ctx, "INBOX")
		if err != nil {
			b.Fatal(err)
		}
		const n, batch = 100_000, 5000
		for i := 1; i <= n; i += batch {
			if err := l.PutMessages(ctx, f.ID, benchMessages(i, batch), 0); err != nil {
				b.Fatal(err)
			}
		}
		for b.Loop() {
			msgs, err := l.Messages(ctx, f.ID)
			if err != nil || len(msgs) != n {
				b.Fatalf("Messages: %d, %v", len(msgs), err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/msg")
	})
}
