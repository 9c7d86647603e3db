package imapconn

import (
	"context"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"mailferry/throttle"
)

// Session is one side of a copy: it owns the connection, its cluster's
// limiter and its side, so that no command can skip the limiter or come
// back with an error that does not say where it failed. Every command
// takes a context (cancelling it closes the connection, which ends the
// command), runs under the limiter (a slot of its adaptive concurrency
// limit, its latency recorded, its outcome counted by Decide's verdict)
// and returns an *OpError naming side, operation and folder.
//
// Long commands (a FETCH of many messages, a batch of APPENDs) run inside
// a Stream, which holds the limiter's slot for its whole duration and
// records the wait for each response instead.
//
// Commands may be pipelined from several goroutines; a FETCH must be
// drained or closed before waiting on another command of the session.
type Session struct {
	c        *Conn
	side     Side
	lim      *throttle.Limiter // nil: unlimited
	Features Features
}

// NewSession makes c the side's session under lim (nil: no limit).
func NewSession(c *Conn, side Side, lim *throttle.Limiter) *Session {
	return &Session{c: c, side: side, lim: lim, Features: c.Features}
}

// Side is the session's side.
func (s *Session) Side() Side { return s.side }

// Limiter is the cluster's limiter the session runs under (nil: none).
func (s *Session) Limiter() *throttle.Limiter { return s.lim }

// Dead reports whether the connection is gone.
func (s *Session) Dead() bool { return s.c.Dead() }

// BadNames are the raw folder names the server listed that are not valid
// modified UTF-7 (left out of List's answer).
func (s *Session) BadNames() []string { return s.c.BadNames() }

// Close closes the connection at once; safe to call more than once.
func (s *Session) Close() { _ = s.c.Close() }

// Logout says goodbye politely (bounded) and closes.
func (s *Session) Logout() { s.c.Logout() }

// guard closes the connection if ctx ends while a command runs; the
// returned stop must be called when the command is over.
func (s *Session) guard(ctx context.Context) func() bool {
	return context.AfterFunc(ctx, func() { _ = s.c.Close() })
}

// do runs one short command under the limiter.
func (s *Session) do(ctx context.Context, op, folder string, f func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var o *throttle.Op
	if s.lim != nil {
		var err error
		if o, err = s.lim.Begin(ctx); err != nil {
			return err
		}
	}
	if s.lim != nil {
		s.lim.CountSent(1)
	}
	stop := s.guard(ctx)
	err := f()
	stop()
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		} else {
			err = &OpError{Side: s.side, Op: op, Folder: folder, Err: err}
		}
	}
	if o != nil {
		o.DoneAs(err, Decide(err).Verdict())
	}
	return err
}

// Select opens a folder (ReadOnly: EXAMINE).
func (s *Session) Select(ctx context.Context, name string, opts *imap.SelectOptions) (data *imap.SelectData, err error) {
	op := "select"
	if opts != nil && opts.ReadOnly {
		op = "examine"
	}
	err = s.do(ctx, op, name, func() (err error) {
		data, err = s.c.client.Select(name, opts).Wait()
		return err
	})
	return data, err
}

// Unselect closes the selected folder without expunging.
func (s *Session) Unselect(ctx context.Context) error {
	return s.do(ctx, "unselect", "", func() error { return s.c.client.Unselect().Wait() })
}

// List lists folders.
func (s *Session) List(ctx context.Context, ref, pattern string, opts *imap.ListOptions) (list []*imap.ListData, err error) {
	err = s.do(ctx, "list", pattern, func() (err error) {
		list, err = s.c.client.List(ref, pattern, opts).Collect()
		return err
	})
	return list, err
}

// Namespace asks for the server's namespaces.
func (s *Session) Namespace(ctx context.Context) (data *imap.NamespaceData, err error) {
	err = s.do(ctx, "namespace", "", func() (err error) {
		data, err = s.c.client.Namespace().Wait()
		return err
	})
	return data, err
}

// Status asks for a folder's status.
func (s *Session) Status(ctx context.Context, name string, opts *imap.StatusOptions) (data *imap.StatusData, err error) {
	err = s.do(ctx, "status", name, func() (err error) {
		data, err = s.c.client.Status(name, opts).Wait()
		return err
	})
	return data, err
}

// Create creates a folder.
func (s *Session) Create(ctx context.Context, name string) error {
	return s.do(ctx, "create", name, func() error { return s.c.client.Create(name, nil).Wait() })
}

// Delete deletes a folder.
func (s *Session) Delete(ctx context.Context, name string) error {
	return s.do(ctx, "delete", name, func() error { return s.c.client.Delete(name).Wait() })
}

// Rename renames a folder.
func (s *Session) Rename(ctx context.Context, from, to string) error {
	return s.do(ctx, "rename", from, func() error { return s.c.client.Rename(from, to, nil).Wait() })
}

// Subscribe subscribes a folder.
func (s *Session) Subscribe(ctx context.Context, name string) error {
	return s.do(ctx, "subscribe", name, func() error { return s.c.client.Subscribe(name).Wait() })
}

// Unsubscribe unsubscribes a folder.
func (s *Session) Unsubscribe(ctx context.Context, name string) error {
	return s.do(ctx, "unsubscribe", name, func() error { return s.c.client.Unsubscribe(name).Wait() })
}

// Store changes flags of messages of the selected folder (folder names it
// in errors).
func (s *Session) Store(ctx context.Context, folder string, uids imap.UIDSet, flags *imap.StoreFlags) error {
	return s.do(ctx, "store flags", folder, func() error { return s.c.client.Store(uids, flags, nil).Close() })
}

// UIDExpunge expunges exactly these UIDs (UIDPLUS).
func (s *Session) UIDExpunge(ctx context.Context, folder string, uids imap.UIDSet) error {
	return s.do(ctx, "expunge", folder, func() error { return s.c.client.UIDExpunge(uids).Close() })
}

// UIDSearch searches the selected folder.
func (s *Session) UIDSearch(ctx context.Context, folder string, criteria *imap.SearchCriteria, opts *imap.SearchOptions) (data *imap.SearchData, err error) {
	err = s.do(ctx, "search", folder, func() (err error) {
		data, err = s.c.client.UIDSearch(criteria, opts).Wait()
		return err
	})
	return data, err
}

// Stream is one long command, or a batch of them, on a session: it holds a
// slot of the limiter's adaptive concurrency limit until End, and its
// latency is the wait for each response (Asked, then Answered), not its
// whole duration. Its commands end when ctx ends (the connection closes).
type Stream struct {
	s    *Session
	op   *throttle.Op
	t0   time.Time
	stop func() bool
}

// Stream begins a stream under the limiter.
func (s *Session) Stream(ctx context.Context) (*Stream, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	st := &Stream{s: s}
	if s.lim != nil {
		var err error
		if st.op, err = s.lim.Begin(ctx); err != nil {
			return nil, err
		}
	}
	st.stop = s.guard(ctx)
	return st, nil
}

// Asked marks the moment a response is asked for; Answered records the
// wait since then.
func (st *Stream) Asked() { st.t0 = time.Now() }

// Answered records the wait since Asked (a FETCH response).
func (st *Stream) Answered() {
	if st.s.lim != nil {
		st.s.lim.Observe(time.Since(st.t0))
	}
}

// answeredAppend records the wait since Asked for an APPEND's answer,
// bytes having been sent (see throttle.Limiter.ObserveAppend).
func (st *Stream) answeredAppend(bytes int64) {
	if st.s.lim != nil {
		st.s.lim.ObserveAppend(time.Since(st.t0), bytes)
	}
}

// End gives the slot back, counting err (of this side; pass nil for an
// error of the other side) by its verdict.
func (st *Stream) End(err error) {
	st.stop()
	if st.op != nil {
		st.op.DoneUntimedAs(err, Decide(err).Verdict())
	}
}

// Fetch starts a FETCH in the selected folder. The caller drains or
// closes it (CloseFetch).
func (st *Stream) Fetch(set imap.NumSet, opts *imap.FetchOptions) *imapclient.FetchCommand {
	st.sent()
	return st.s.c.client.Fetch(set, opts)
}

func (st *Stream) sent() {
	if st.s.lim != nil {
		st.s.lim.CountSent(1)
	}
}

// Append starts an APPEND whose literal the caller writes.
func (st *Stream) Append(folder string, size int64, opts *imap.AppendOptions) *imapclient.AppendCommand {
	st.sent()
	return st.s.c.client.Append(folder, size, opts)
}

// Err wraps err as an error of this stream's side.
func (st *Stream) Err(op, folder string, uid imap.UID, err error) error {
	if err == nil {
		return nil
	}
	return &OpError{Side: st.s.side, Op: op, Folder: folder, UID: uid, Err: err}
}

// Quota is one quota root's resources, as GETQUOTAROOT reports them.
type Quota struct {
	Root string
	// Resources maps a resource name ("STORAGE", in units of 1024
	// octets; "MESSAGE", in messages) to its usage and limit.
	Resources map[string]QuotaResource
}

// QuotaResource is the usage and the limit of one quota resource.
type QuotaResource struct{ Usage, Limit int64 }

// QuotaRoot asks for the quota roots of folder and their resources
// (GETQUOTAROOT; the server must offer QUOTA).
func (s *Session) QuotaRoot(ctx context.Context, folder string) (quotas []Quota, err error) {
	err = s.do(ctx, "getquotaroot", folder, func() error {
		data, err := s.c.client.GetQuotaRoot(folder).Wait()
		for _, d := range data {
			q := Quota{Root: d.Root, Resources: map[string]QuotaResource{}}
			for name, r := range d.Resources {
				q.Resources[strings.ToUpper(string(name))] = QuotaResource{Usage: r.Usage, Limit: r.Limit}
			}
			quotas = append(quotas, q)
		}
		return err
	})
	return quotas, err
}
