package throttle

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"testing"
	"time"
)

// The buckets run on the injected clock (rate.Limiter.ReserveN with the
// clock's time, then Sleep on the clock), so the rate they hold is exact in
// fake time and the tests never sleep.

func TestWaitBytesHoldsRate(t *testing.T) {
	const rate = 1 << 20 // 1 MiB/s
	l, clock := newTest(t, Config{BytesPerSecond: rate})
	const total = 50 << 20
	for sent := 0; sent < total; sent += 32 << 10 {
		if err := l.WaitBytes(context.Background(), 32<<10); err != nil {
			t.Fatal(err)
		}
	}
	elapsed := clock.Now().Sub(epoch)
	got := total / elapsed.Seconds()
	// The bucket starts full with burstWindow's worth: that is all the
	// slack there is.
	if want := float64(rate); math.Abs(got-want)/want > 0.01 {
		t.Fatalf("50 MiB at 1 MiB/s took %v of clock time: %.0f B/s, want within 1%% of %v", elapsed, got, want)
	}
	s := l.Snapshot()
	if s.RateWaits == 0 || s.RateWaited < 49*time.Second {
		t.Fatalf("rate waits %d for %v; want the waits counted", s.RateWaits, s.RateWaited)
	}
}

func TestWaitLargerThanBurst(t *testing.T) {
	l, clock := newTest(t, Config{BytesPerSecond: 1000, MessagesPerSecond: 2.5})
	// 10 s worth in one call, 100 times the bucket.
	if err := l.WaitBytes(context.Background(), 10_000); err != nil {
		t.Fatal(err)
	}
	if el := clock.Now().Sub(epoch); el < 9*time.Second || el > 10*time.Second {
		t.Fatalf("10000 bytes at 1000 B/s: clock moved %v; want 9.9s", el)
	}
	start := clock.Now()
	for range 100 {
		if err := l.WaitMessages(context.Background(), 1); err != nil {
			t.Fatal(err)
		}
	}
	if el := clock.Now().Sub(start); el < 39*time.Second || el > 40*time.Second {
		t.Fatalf("100 messages at 2.5/s: clock moved %v; want about 40s", el)
	}
}

func TestUnlimitedDoesNotWait(t *testing.T) {
	l, clock := newTest(t, Config{})
	if err := l.WaitBytes(context.Background(), 1<<40); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitMessages(context.Background(), 1<<20); err != nil {
		t.Fatal(err)
	}
	if slept, _ := clock.Slept(); slept != 0 {
		t.Fatalf("unlimited waits slept %v", slept)
	}
}

func TestWaitBytesCanceled(t *testing.T) {
	l, _ := newTest(t, Config{BytesPerSecond: 10})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.WaitBytes(ctx, 100); !errors.Is(err, context.Canceled) {
		t.Fatalf("wait with a canceled context: %v", err)
	}
}

func TestReaderIsLimited(t *testing.T) {
	l, clock := newTest(t, Config{BytesPerSecond: 1 << 20})
	data := bytes.Repeat([]byte("0123456789abcdef"), 5<<16) // 5 MiB
	got, err := io.ReadAll(l.Reader(context.Background(), bytes.NewReader(data)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("limited reader changed the bytes")
	}
	if el := clock.Now().Sub(epoch); el < 4800*time.Millisecond || el > 5*time.Second {
		t.Fatalf("5 MiB through a 1 MiB/s reader: clock moved %v; want about 4.9s", el)
	}
}
