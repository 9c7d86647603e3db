package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"mailferry/internal/testrig/memserver"
	"mailferry/state/statetest"
)

// BenchmarkFleetCoordination measures what the fleet costs per move: many
// small moves (one message each) between two in-memory IMAP servers, run
// by 1, 4 and 16 worker processes of the real binary on one PostgreSQL
// state. It reports moves/s and PostgreSQL round trips per move, counted
// at a proxy in front of PostgreSQL that reads the wire protocol (every
// simple Query and every Sync of an extended query is one round trip):
// the whole cost, the move's own state writes included, of every client
// of the worker (state, River, connection places, heartbeat).
//
//	go test -run '^$' -bench BenchmarkFleetCoordination -benchtime 1x ./cmd/mailferry
//
// MAILFERRY_FLEET_BENCH_MOVES sets the number of moves (default 10000).
func BenchmarkFleetCoordination(b *testing.B) {
	moves := 10000
	if s := os.Getenv("MAILFERRY_FLEET_BENCH_MOVES"); s != "" {
		var err error
		if moves, err = strconv.Atoi(s); err != nil || moves < 1 {
			b.Fatalf("MAILFERRY_FLEET_BENCH_MOVES=%q: want a positive number", s)
		}
	}
	bin := buildBenchBinary(b)
	for _, workers := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			for range b.N {
				benchFleet(b, bin, workers, moves)
			}
		})
	}
}

func buildBenchBinary(b *testing.B) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "mailferry")
	if out, err := exec.Command("go", "build", "-o", path, "mailferry/cmd/mailferry").CombinedOutput(); err != nil {
		b.Fatalf("build mailferry: %v\n%s", err, out)
	}
	return path
}

func benchFleet(b *testing.B, bin string, workers, moves int) {
	b.StopTimer()
	dir := b.TempDir()
	src, err := memserver.Start()
	mustB(b, err)
	defer src.Close()
	dst, err := memserver.Start()
	mustB(b, err)
	defer dst.Close()
	var creds, mbs strings.Builder
	creds.WriteString("# mailbox,login,password\n")
	for i := range moves {
		name := fmt.Sprintf("u%05d", i)
		u := src.AddUser(name, "pw")
		dst.AddUser(name, "pw")
		msg := fmt.Sprintf("From: a@example.com\r\nTo: %s@example.com\r\nSubject: bench %d\r\n\r\nhello %d\r\n", name, i, i)
		_, err := u.Append("INBOX", bytesLiteral(msg), &imap.AppendOptions{Time: time.Unix(1700000000, 0)})
		mustB(b, err)
		fmt.Fprintf(&creds, "%s,%s,pw\n", name, name)
		fmt.Fprintf(&mbs, "  - {name: %s, cluster: alpha, bytes: %d, messages: 1, load: 1}\n", name, len(msg))
	}
	credFile := filepath.Join(dir, "creds.csv")
	mustB(b, os.WriteFile(credFile, []byte(creds.String()), 0o600))
	var inv strings.Builder
	inv.WriteString("clusters:\n")
	for name, s := range map[string]*memserver.Server{"alpha": src, "bravo": dst} {
		fmt.Fprintf(&inv, "  - name: %s\n    url: imap://%s\n    tls: none\n    auth: {method: credentials-file, credentials_file: %q}\n"+
			"    capacity: {bytes: 1TiB, load: 1000000}\n    health: healthy\n    limits: {connections: 64}\n", name, s.Addr, credFile)
	}
	inv.WriteString("mailboxes:\n" + mbs.String())
	invFile := filepath.Join(dir, "inv.yaml")
	mustB(b, os.WriteFile(invFile, []byte(inv.String()), 0o600))
	planFile := filepath.Join(dir, "plan.json")
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"plan", "-i", invFile, "--drain", "alpha", "-o", planFile}, strings.NewReader(""), &out, &errb); code != exitOK {
		b.Fatalf("plan: exit %d\n%s", code, errb.String())
	}

	pg := statetest.Postgres(b)
	db := statetest.RawDB(b, pg)
	counter := startPGCounter(b, pg)
	if code := run(context.Background(), []string{"submit", planFile, "-i", invFile, "--state", counter.url}, strings.NewReader(""), &out, &errb); code != exitOK {
		b.Fatalf("submit: exit %d\n%s", code, errb.String())
	}
	submitTrips := counter.trips.Load()
	counter.kinds()

	b.StartTimer()
	start := time.Now()
	var procs []*exec.Cmd
	var logs []*bytes.Buffer
	// 16 workers of --parallel 2 would hold about 110 PostgreSQL
	// connections (state pool, River's pool of 3, the places connection):
	// more than a default max_connections of 100. 16 run --parallel 1.
	parallel := "2"
	if workers >= 16 {
		parallel = "1"
	}
	for i := range workers {
		var lb bytes.Buffer
		c := exec.Command(bin, "worker", "-i", invFile, "--state", counter.url, "--name", fmt.Sprintf("bench%d", i),
			"--parallel", parallel, "--connections", "1", "--routed", "--skip-preflight")
		c.Env = crashEnviron()
		c.Stderr = &lb
		mustB(b, c.Start())
		procs = append(procs, c)
		logs = append(logs, &lb)
	}
	defer func() {
		for _, c := range procs {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}()
	deadline := time.Now().Add(30 * time.Minute)
	for {
		var done int
		mustB(b, db.QueryRow(`SELECT count(*) FROM river_job WHERE state = 'completed'`).Scan(&done))
		if done == moves {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d moves done after 30 minutes\n%s", done, moves, crashTail(logs[0].String(), 2000))
		}
		time.Sleep(100 * time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	workTrips := counter.trips.Load() - submitTrips
	for _, c := range procs {
		_ = c.Process.Signal(syscall.SIGTERM)
	}
	for _, c := range procs {
		_ = c.Wait()
	}
	procs = nil
	var failed int
	mustB(b, db.QueryRow(`SELECT count(*) FROM mailferry_migration WHERE phase <> 'done' AND source LIKE 'cluster:%'`).Scan(&failed))
	if failed != 0 {
		b.Fatalf("%d moves not done in the state", failed)
	}
	for kind, n := range counter.kinds() {
		b.Logf("  %-42s %8.2f round trips per move", kind, float64(n)/float64(moves))
	}
	b.ReportMetric(float64(moves)/elapsed.Seconds(), "moves/s")
	b.ReportMetric(float64(workTrips)/float64(moves), "pg-roundtrips/move")
	b.ReportMetric(float64(submitTrips)/float64(moves), "pg-roundtrips/submitted")
	b.ReportMetric(float64(counter.maxConns.Load()), "pg-conns-peak")
	b.Logf("%d workers: %d moves in %v (%.0f moves/s), %d round trips (%.1f per move), submit %d round trips, %d PostgreSQL connections at peak",
		workers, moves, elapsed.Round(time.Millisecond), float64(moves)/elapsed.Seconds(), workTrips, float64(workTrips)/float64(moves), submitTrips, counter.maxConns.Load())
}

func bytesLiteral(s string) imap.LiteralReader {
	return &literal{Reader: strings.NewReader(s), n: int64(len(s))}
}

type literal struct {
	*strings.Reader
	n int64
}

func (l *literal) Size() int64 { return l.n }

// pgCounter is a TCP proxy in front of PostgreSQL that counts round trips:
// the client's Query ('Q') and Sync ('S') messages of the frontend
// protocol (v3). No library counts these across processes and clients
// (pg_stat_statements needs a preloaded library and a restart): the proxy
// reads only the message framing, nothing else.
type pgCounter struct {
	url      string
	trips    atomic.Int64
	conns    atomic.Int64
	maxConns atomic.Int64
	mu       sync.Mutex
	byKind   map[string]int64
}

func startPGCounter(b *testing.B, pgURL string) *pgCounter {
	b.Helper()
	u, err := url.Parse(pgURL)
	mustB(b, err)
	upstream := u.Host
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	mustB(b, err)
	b.Cleanup(func() { ln.Close() })
	u.Host = ln.Addr().String()
	c := &pgCounter{url: u.String()}
	go func() {
		for {
			cl, err := ln.Accept()
			if err != nil {
				return
			}
			go c.serve(cl, upstream)
		}
	}()
	return c
}

func (c *pgCounter) serve(cl net.Conn, upstream string) {
	defer cl.Close()
	up, err := net.Dial("tcp", upstream)
	if err != nil {
		return
	}
	defer up.Close()
	n := c.conns.Add(1)
	defer c.conns.Add(-1)
	for {
		m := c.maxConns.Load()
		if n <= m || c.maxConns.CompareAndSwap(m, n) {
			break
		}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(cl, up)
		cl.Close()
	}()
	c.count(io.TeeReader(cl, up))
	up.Close()
	wg.Wait()
}

// count reads the frontend stream: the startup message (length first, no
// type byte), then typed messages. Each round trip is charged to the
// statement it ran: a simple Query's text, or the text the last Bind's
// statement was Parsed with (pgx prepares a statement once per
// connection and binds it by name after).
func (c *pgCounter) count(r io.Reader) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:4]); err != nil {
		return
	}
	if _, err := io.CopyN(io.Discard, r, int64(binary.BigEndian.Uint32(hdr[:4]))-4); err != nil {
		return
	}
	stmts := map[string]string{} // prepared statement name -> text
	var last string              // the statement of the last Parse or Bind
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		body := make([]byte, int(binary.BigEndian.Uint32(hdr[1:]))-4)
		if _, err := io.ReadFull(r, body); err != nil {
			return
		}
		switch hdr[0] {
		case 'P': // Parse: name, text, ...
			name, rest, _ := bytes.Cut(body, []byte{0})
			text, _, _ := bytes.Cut(rest, []byte{0})
			stmts[string(name)] = string(text)
			last = string(text)
		case 'B': // Bind: portal, statement, ...
			_, rest, _ := bytes.Cut(body, []byte{0})
			name, _, _ := bytes.Cut(rest, []byte{0})
			last = stmts[string(name)]
		case 'Q':
			text, _, _ := bytes.Cut(body, []byte{0})
			c.charge(string(text))
		case 'S':
			c.charge(last)
		}
	}
}

// charge counts one round trip of a statement, by what it works on.
func (c *pgCounter) charge(text string) {
	c.trips.Add(1)
	kind := "state (the move's own records)"
	switch {
	case strings.Contains(text, "advisory"):
		kind = "connection places (advisory locks)"
	case strings.Contains(text, "mailferry_fleet"):
		kind = "registry and shares (heartbeat)"
	case strings.Contains(text, "river_") || strings.Contains(text, "pg_notify") || strings.Contains(text, "LISTEN"):
		kind = "River (claim, complete, leader, notify)"
	case strings.HasPrefix(strings.TrimSpace(text), "begin") || strings.HasPrefix(strings.TrimSpace(text), "commit") ||
		strings.HasPrefix(strings.TrimSpace(text), "rollback"), text == "":
		kind = "transaction control"
	}
	c.mu.Lock()
	if c.byKind == nil {
		c.byKind = map[string]int64{}
	}
	c.byKind[kind]++
	c.mu.Unlock()
}

// kinds returns the round trips by kind and resets them.
func (c *pgCounter) kinds() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := c.byKind
	c.byKind = nil
	return k
}

func mustB(b testing.TB, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}
