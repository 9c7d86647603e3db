package fleet

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Gates hands out a fleet's connection places: cluster c has
// ceil(share × cap) places (share: see Worker), each a session-level
// PostgreSQL advisory lock (hashtext(schema and cluster), slot), held on
// one dedicated connection of this worker. A place is held while the lock
// is: when the worker dies, or only its connection does, PostgreSQL frees
// its places at once, without any expiry to wait for.
//
// Advisory locks are re-entrant within a session, so Gates keeps the slots
// it holds itself and only tries the others. Waiting for a free place is
// polled (jittered, every PollInterval): PostgreSQL has no wait-for-any-of
// on advisory locks.
type Gates struct {
	f      *Fleet
	poll   time.Duration
	worker string

	mu     sync.Mutex // serializes the connection and guards the maps
	conn   *pgx.Conn
	held   map[string]map[int32]bool // cluster -> slots held
	places map[string]int            // cluster -> places now (cap × share)
}

// ReleaseGrace is how long after its connection closed a place is given
// back.
const ReleaseGrace = 50 * time.Millisecond

// PollInterval is how often a worker waiting for a connection place asks
// again.
const PollInterval = 100 * time.Millisecond

// NewGates returns worker's gates; the dedicated connection opens on
// first use, named "mailferry places WORKER" in pg_stat_activity (its
// places are the advisory locks pg_locks shows for that backend).
func (f *Fleet) NewGates(worker string) *Gates {
	return &Gates{f: f, poll: PollInterval, worker: worker, held: map[string]map[int32]bool{}, places: map[string]int{}}
}

// SetPlaces sets how many places cluster has fleet-wide (at least 1).
// Places above it that are held now stay held until released.
func (g *Gates) SetPlaces(cluster string, n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.places[cluster] = max(1, n)
}

// Gate is the throttle.ConnGate of one cluster.
func (g *Gates) Gate(cluster string, places int) *Gate {
	g.SetPlaces(cluster, places)
	return &Gate{g: g, cluster: cluster}
}

// Close gives every place back (closing the connection frees the locks).
func (g *Gates) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conn != nil {
		g.conn.Close(context.Background())
		g.conn = nil
	}
	g.held = map[string]map[int32]bool{}
}

// Held is how many places this worker holds on cluster.
func (g *Gates) Held(cluster string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.held[cluster])
}

// Gate is one cluster's fleet-wide connection budget (a throttle.ConnGate).
type Gate struct {
	g       *Gates
	cluster string
}

// Acquire waits for a free place of the cluster, polling, until ctx ends.
func (gt *Gate) Acquire(ctx context.Context) (func(), error) {
	for {
		slot, ok, err := gt.g.try(ctx, gt.cluster)
		if err != nil {
			return nil, err
		}
		if ok {
			var once sync.Once
			return func() {
				// A moment after the connection closed: a server (or a
				// proxy) counts a connection until it has read its end.
				once.Do(func() { time.AfterFunc(ReleaseGrace, func() { gt.g.release(gt.cluster, slot) }) })
			}, nil
		}
		d := gt.g.poll/2 + rand.N(gt.g.poll)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(d):
		}
	}
}

func (g *Gates) connLocked(ctx context.Context) (*pgx.Conn, error) {
	if g.conn != nil && !g.conn.IsClosed() {
		return g.conn, nil
	}
	// A new session holds nothing: whatever the old one held is free.
	g.held = map[string]map[int32]bool{}
	cfg := g.f.cfg.ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = "mailferry places " + g.worker
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("fleet: connect for connection places: %w", err)
	}
	g.conn = c
	return c, nil
}

// lockKey names cluster's places in the schema (fleets in different
// schemas of one database do not share places).
func (g *Gates) lockKey(cluster string) string {
	return "mailferry conn " + g.f.schema + " " + cluster
}

// try takes one free place of cluster in one round trip: the first slot
// below the cluster's places that this worker does not hold and whose lock
// is free.
func (g *Gates) try(ctx context.Context, cluster string) (int32, bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	conn, err := g.connLocked(ctx)
	if err != nil {
		return 0, false, err
	}
	n := g.places[cluster]
	mine := make([]int32, 0, len(g.held[cluster]))
	for s := range g.held[cluster] {
		mine = append(mine, s)
	}
	if len(mine) >= n {
		return 0, false, nil
	}
	var slot int32
	err = conn.QueryRow(ctx, `SELECT s FROM generate_series(0, $2::int - 1) AS s
WHERE NOT (s = ANY($3::int[])) AND pg_try_advisory_lock(hashtext($1), s) LIMIT 1`, g.lockKey(cluster), n, mine).Scan(&slot)
	switch {
	case err == pgx.ErrNoRows:
		return 0, false, nil
	case err != nil:
		if ctx.Err() == nil {
			conn.Close(context.Background()) // the session's state is unknown: start over
			g.conn = nil
		}
		return 0, false, fmt.Errorf("fleet: take a connection place on cluster %q: %w", cluster, err)
	}
	if g.held[cluster] == nil {
		g.held[cluster] = map[int32]bool{}
	}
	g.held[cluster][slot] = true
	return slot, true, nil
}

// release gives a place back. If the unlock fails the connection is
// closed, which frees every lock it held.
func (g *Gates) release(cluster string, slot int32) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.held[cluster][slot] {
		return // the session that held it is gone, and the lock with it
	}
	delete(g.held[cluster], slot)
	if g.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := g.conn.Exec(ctx, `SELECT pg_advisory_unlock(hashtext($1), $2::int)`, g.lockKey(cluster), slot); err != nil {
		g.conn.Close(context.Background())
		g.conn = nil
		g.held = map[string]map[int32]bool{}
	}
}

// placesFor is a cluster's places at share of cap.
func placesFor(capacity int, share float64) int {
	return max(1, int(math.Ceil(float64(capacity)*share-1e-9)))
}
