// Package preflight checks, before anything moves, that a plan's moves can
// run: every secret the clusters reference resolves, every mailbox logs in
// on both sides, each cluster's capabilities are recorded, and each mailbox
// fits its target (quota headroom, APPENDLIMIT). A problem a whole cluster
// shares (TLS trust, no STARTTLS, a refused admin login, an unreachable
// server) is reported once for the cluster, not once per mailbox, and each
// problem says what to fix.
//
// Logins run under each cluster's connection cap, every wait bounded by the
// cluster's io_timeout. Nothing is written anywhere; the only reads of mail
// metadata are GETQUOTAROOT on a target and, only where a target names an
// APPENDLIMIT below a mailbox's size, a SEARCH LARGER per folder of the
// source. The package never prints: it returns a Report.
package preflight

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"golang.org/x/sync/errgroup"

	"mailferry/internal/imapconn"
	"mailferry/inventory"
	"mailferry/inventory/discover"
)

// Move is one mailbox to check, from its source cluster to its target.
type Move struct {
	Mailbox  string
	From, To string // cluster names
	// Bytes is what is left to copy: the planned size, less what a
	// previous run already put on the target (that part already counts in
	// the target's quota usage).
	Bytes int64
	// Messages left to copy, 0 if unknown (then no MESSAGE quota check).
	Messages int64
}

// Options tune Run.
type Options struct {
	// IOTimeout, when set, replaces every cluster's limits.io_timeout: no
	// wait on a server lasts longer without progress, and connecting,
	// TLS and login together take at most this long (else 30s).
	IOTimeout time.Duration
	// Connections is a cluster's cap when its limits.connections is not
	// set; 0 means 4. A degraded cluster gets a quarter (at least 1).
	Connections int
	// POP3 also looks at the moves whose source has a pop3 URL: which
	// mailboxes' POP clients would download their mail again after the
	// cutover (Report.POP3). POP3Sample bounds the mailboxes per source
	// cluster whose UIDLs are read: 0 means DefaultPOP3Sample, below 0
	// every one.
	POP3       bool
	POP3Sample int
}

// Kind is a problem's class: what kind of thing must be fixed.
type Kind string

// The kinds of problems. Secret, TLS, Login and Config are configuration
// errors; Unreachable is a server that could not be reached (or timed
// out); Quota and TooBig are mailboxes that will not fit their target.
const (
	Secret      Kind = "secret"
	TLS         Kind = "tls"
	Login       Kind = "login"
	Config      Kind = "config"
	Unreachable Kind = "unreachable"
	Quota       Kind = "quota"
	TooBig      Kind = "too-big"
)

// Configuration reports whether a problem of this kind is a configuration
// error (fix the inventory, the secrets or the servers' accounts).
func (k Kind) Configuration() bool {
	return k == Secret || k == TLS || k == Login || k == Config
}

// Fit reports whether a problem of this kind is a mailbox that will not
// fit its target.
func (k Kind) Fit() bool { return k == Quota || k == TooBig }

// Problem is one thing that stops a move. A cluster's problem has no
// Mailbox and counts the mailboxes it stops.
type Problem struct {
	Kind    Kind   `json:"kind"`
	Cluster string `json:"cluster"`
	// Side is "source", "target", or "source and target" for a cluster
	// both sides of the plan use.
	Side      string `json:"side,omitempty"`
	Mailbox   string `json:"mailbox,omitempty"`
	Mailboxes int    `json:"mailboxes,omitempty"` // a cluster's problem: mailboxes it stops
	File      string `json:"file,omitempty"`      // secrets: where the reference is
	Line      int    `json:"line,omitempty"`
	Field     string `json:"field,omitempty"`
	Message   string `json:"message"`
	Fix       string `json:"fix"`
}

// ClusterReport is what preflight learned about one cluster of the plan.
type ClusterReport struct {
	Name string `json:"name"`
	// Role: "source", "target" or "source and target".
	Role      string `json:"role"`
	Mailboxes int    `json:"mailboxes"` // logins the plan needs on it
	LoggedIn  int    `json:"logged_in"`
	// Capabilities offered and missing among those mailferry acts on
	// (UIDPLUS, MULTIAPPEND, CONDSTORE, QRESYNC, LITERAL+, LITERAL-,
	// APPENDLIMIT=N, STATUS=SIZE, SPECIAL-USE, QUOTA), from its first login.
	Capabilities []string `json:"capabilities,omitempty"`
	Missing      []string `json:"missing,omitempty"`
	AppendLimit  int64    `json:"append_limit_bytes,omitempty"`
	// Problem is the cluster's shared problem, "" when none.
	Problem string `json:"problem,omitempty"`
}

// MailboxReport is one move's result.
type MailboxReport struct {
	Mailbox string `json:"mailbox"`
	From    string `json:"from"`
	To      string `json:"to"`
	Bytes   int64  `json:"bytes"`
	// Source and Target say how its logins went: "ok", "failed", or
	// "not checked" (its cluster's problem stopped it).
	Source string `json:"source"`
	Target string `json:"target"`
	// QuotaFree and QuotaLimit are the target's STORAGE headroom and
	// limit in bytes, when it offers QUOTA and sets one.
	QuotaFree  *int64 `json:"quota_free_bytes,omitempty"`
	QuotaLimit *int64 `json:"quota_limit_bytes,omitempty"`
	// TooBig counts its messages above the target's APPENDLIMIT, when
	// looked for.
	TooBig int `json:"messages_too_big,omitempty"`
}

// Report is the whole check.
type Report struct {
	Clusters  []ClusterReport `json:"clusters"`
	Mailboxes []MailboxReport `json:"mailboxes"`
	Problems  []Problem       `json:"problems,omitempty"`
	Warnings  []string        `json:"warnings,omitempty"`
	// POP3 lists, with Options.POP3, the mailboxes whose POP3 UIDLs were
	// looked at or that are at risk (see POP3Risk); being at risk stops
	// nothing.
	POP3 []POP3Risk `json:"pop3,omitempty"`
}

// OK reports whether nothing stops the moves.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Has reports whether some problem satisfies pred.
func (r *Report) Has(pred func(Kind) bool) bool {
	for _, p := range r.Problems {
		if pred(p.Kind) {
			return true
		}
	}
	return false
}

// unit is one login: a mailbox on one side.
type unit struct {
	move int // index into the moves
	side string
}

// clusterRun is the check of one cluster, its units run under its cap.
type clusterRun struct {
	c     *inventory.Cluster
	units []unit
	rep   *ClusterReport
	mu    sync.Mutex // guards feat
	feat  *imapconn.Features
	// results per unit: nil error is a login that worked
	errs []error
	done []bool
	// problem is the cluster's shared problem
	problem *Problem
}

// Run checks moves against the inventory. It returns when every check is
// done or ctx ends; each login is bounded (see Options.IOTimeout).
func Run(ctx context.Context, inv *inventory.Inventory, moves []Move, opts Options) *Report {
	rep := &Report{}
	runs := map[string]*clusterRun{}
	var order []string
	for i, m := range moves {
		rep.Mailboxes = append(rep.Mailboxes, MailboxReport{Mailbox: m.Mailbox, From: m.From, To: m.To, Bytes: m.Bytes,
			Source: "not checked", Target: "not checked"})
		for _, u := range []struct{ cluster, side string }{{m.From, "source"}, {m.To, "target"}} {
			cr := runs[u.cluster]
			if cr == nil {
				c := inv.Cluster(u.cluster)
				if c == nil {
					rep.Problems = append(rep.Problems, Problem{Kind: Config, Cluster: u.cluster, Side: u.side, Mailbox: m.Mailbox,
						Message: fmt.Sprintf("cluster %s is not in the inventory", u.cluster), Fix: "make a new plan from this inventory, or add the cluster"})
					continue
				}
				cr = &clusterRun{c: c, rep: &ClusterReport{Name: c.Name}}
				runs[u.cluster] = cr
				order = append(order, u.cluster)
			}
			cr.units = append(cr.units, unit{move: i, side: u.side})
		}
	}
	for _, name := range order {
		cr := runs[name]
		cr.errs = make([]error, len(cr.units))
		cr.done = make([]bool, len(cr.units))
		cr.rep.Mailboxes = len(cr.units)
		cr.rep.Role = roleOf(cr.units)
	}

	// Secrets first: a cluster whose password file is missing or
	// readable by others, or whose variable is not set, is not logged in to.
	for _, fe := range inv.CheckSecrets() {
		name, field := clusterOfField(fe.Field)
		cr := runs[name]
		if cr == nil {
			continue // not a cluster of this plan
		}
		kind := Secret
		fix := fmt.Sprintf("fix %s of cluster %s (%s line %d): the file must exist with mode 0600 or stricter, the variable must be set", field, name, fe.File, fe.Line)
		if field == "ca_file" {
			kind, fix = TLS, fmt.Sprintf("point ca_file of cluster %s (%s line %d) at a PEM file of the CA that signed its certificate", name, fe.File, fe.Line)
		}
		p := Problem{Kind: kind, Cluster: name, Side: cr.rep.Role, Mailboxes: len(cr.units),
			File: fe.File, Line: fe.Line, Field: fe.Field, Message: fe.Msg, Fix: fix}
		if cr.problem == nil {
			cr.problem = &p
		} else {
			rep.Problems = append(rep.Problems, p) // a second secret problem of the same cluster
		}
	}

	var wg sync.WaitGroup
	for _, name := range order {
		cr := runs[name]
		if cr.problem != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cr.check(ctx, moves, rep.Mailboxes, opts)
		}()
	}
	wg.Wait()

	// Messages above a target's APPENDLIMIT: looked for on the source
	// only where the mailbox is larger than the limit.
	tooBig(ctx, moves, runs, rep, opts)
	if opts.POP3 {
		pop3Check(ctx, inv, moves, runs, rep, opts)
	}

	for _, name := range order {
		cr := runs[name]
		cr.finish(moves, rep)
		rep.Clusters = append(rep.Clusters, *cr.rep)
	}
	sort.SliceStable(rep.Problems, func(i, j int) bool {
		a, b := rep.Problems[i], rep.Problems[j]
		if (a.Mailbox == "") != (b.Mailbox == "") {
			return a.Mailbox == ""
		}
		return false
	})
	return rep
}

func roleOf(units []unit) string {
	var src, dst bool
	for _, u := range units {
		src = src || u.side == "source"
		dst = dst || u.side == "target"
	}
	switch {
	case src && dst:
		return "source and target"
	case src:
		return "source"
	}
	return "target"
}

// clusterOfField splits "clusters[bravo].auth.password_file".
func clusterOfField(f string) (cluster, field string) {
	rest, ok := strings.CutPrefix(f, "clusters[")
	if !ok {
		return "", f
	}
	name, field, _ := strings.Cut(rest, "].")
	return name, field
}

// capOf is how many logins run at once on c.
func capOf(c *inventory.Cluster, opts Options) int {
	n := c.Limits.Connections
	if n <= 0 {
		n = opts.Connections
	}
	if n <= 0 {
		n = 4
	}
	if c.Health == inventory.Degraded {
		n = max(1, n/4)
	}
	return n
}

// timeouts are the login's bounds on c.
func timeouts(c *inventory.Cluster, opts Options) (io, dial time.Duration) {
	io = c.Limits.IOTimeout
	if opts.IOTimeout > 0 {
		io = opts.IOTimeout
	}
	dial = 30 * time.Second
	if io > 0 && io < dial {
		dial = io
	}
	if io <= 0 {
		io = imapconn.DefaultIdleTimeout
	}
	return io, dial
}

// check logs in to every unit of the cluster. The first login is a probe:
// when it fails in a way the whole cluster shares (TLS, unreachable, the
// admin's login refused on a second mailbox too), the cluster's problem
// is recorded once and no other login is tried.
func (cr *clusterRun) check(ctx context.Context, moves []Move, mbs []MailboxReport, opts Options) {
	shared := cr.c.Auth.Method == inventory.AuthMaster || cr.c.Auth.Method == inventory.AuthSASLPlain
	rest := 0
	for rest < len(cr.units) {
		i := rest
		rest++
		err := cr.login(ctx, i, moves, mbs, opts)
		if loggedIn(err) {
			break
		}
		if k := classify(err); k == TLS || k == Unreachable {
			cr.problem = cr.clusterProblem(k, err)
			return
		}
		if classify(err) == Secret && shared {
			// The admin's password could not be read: every login needs it.
			cr.problem = cr.clusterProblem(Secret, err)
			return
		}
		if classify(err) == Login && shared && i > 0 {
			// The admin login refused for two mailboxes: its password
			// (or its right to log in for others), not the mailboxes.
			cr.problem = cr.clusterProblem(Login, err)
			return
		}
		if classify(err) != Login || !shared {
			break // a mailbox's own problem: check the others
		}
	}
	g := errgroup.Group{}
	g.SetLimit(capOf(cr.c, opts))
	for i := rest; i < len(cr.units); i++ {
		g.Go(func() error {
			_ = cr.login(ctx, i, moves, mbs, opts)
			return nil
		})
	}
	_ = g.Wait()
}

// login logs unit i in, records the cluster's features from the first
// login that worked, and on a target asks for the quota.
func (cr *clusterRun) login(ctx context.Context, i int, moves []Move, mbs []MailboxReport, opts Options) error {
	u := cr.units[i]
	m := moves[u.move]
	cr.done[i] = true
	err := cr.session(ctx, m.Mailbox, opts, func(ctx context.Context, s *imapconn.Session) error {
		cr.setFeatures(s.Features)
		if u.side == "target" && s.Features.Quota {
			return cr.quota(ctx, s, m, &mbs[u.move])
		}
		return nil
	})
	cr.errs[i] = err
	if loggedIn(err) {
		setSide(&mbs[u.move], u.side, "ok")
	} else {
		setSide(&mbs[u.move], u.side, "failed")
	}
	return err
}

// loggedIn reports whether a login's result is a login that worked (its
// mailbox may still not fit, or its quota not be known).
func loggedIn(err error) bool {
	var qe *quotaError
	var w *warning
	return err == nil || errors.As(err, &qe) || errors.As(err, &w)
}

// session opens a bounded session to mailbox on the cluster and runs f.
func (cr *clusterRun) session(ctx context.Context, mailbox string, opts Options, f func(context.Context, *imapconn.Session) error) error {
	cfg, err := discover.Config(cr.c, mailbox)
	if err != nil {
		return &configError{err}
	}
	io, dial := timeouts(cr.c, opts)
	cfg.IdleTimeout, cfg.DialTimeout = io, dial
	ctx, cancel := context.WithTimeout(ctx, dial+4*io)
	defer cancel()
	conn, err := imapconn.Dial(ctx, cfg)
	if err != nil {
		return err
	}
	s := imapconn.NewSession(conn, imapconn.SideUnknown, nil)
	defer s.Logout()
	return f(ctx, s)
}

func setSide(m *MailboxReport, side, v string) {
	if side == "source" {
		m.Source = v
	} else {
		m.Target = v
	}
}

func (cr *clusterRun) setFeatures(f imapconn.Features) {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	if cr.feat == nil {
		cr.feat = &f
	}
}

// quotaError is a mailbox that does not fit its target's quota; the
// login itself worked.
type quotaError struct{ msg, fix string }

func (e *quotaError) Error() string { return e.msg }

// configError is a login that could not be built (a credentials file
// without the mailbox, a bad URL).
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

// quota holds m against the target's quota root of INBOX.
func (cr *clusterRun) quota(ctx context.Context, s *imapconn.Session, m Move, mb *MailboxReport) error {
	quotas, err := s.QuotaRoot(ctx, "INBOX")
	if err != nil {
		return &warning{fmt.Sprintf("cluster %s: mailbox %s: GETQUOTAROOT: %v (quota not checked)", cr.c.Name, m.Mailbox, err)}
	}
	var msgs []string
	for _, q := range quotas {
		if r, ok := q.Resources["STORAGE"]; ok && r.Limit > 0 {
			free, limit := max(0, (r.Limit-r.Usage)*1024), r.Limit*1024
			if mb.QuotaFree == nil || free < *mb.QuotaFree {
				mb.QuotaFree, mb.QuotaLimit = &free, &limit
			}
			if m.Bytes > free {
				msgs = append(msgs, fmt.Sprintf("needs %s, its quota %q on cluster %s has %s free of %s",
					inventory.FormatBytes(m.Bytes), q.Root, cr.c.Name, inventory.FormatBytes(free), inventory.FormatBytes(limit)))
			}
		}
		if r, ok := q.Resources["MESSAGE"]; ok && r.Limit > 0 && m.Messages > 0 && m.Messages > r.Limit-r.Usage {
			msgs = append(msgs, fmt.Sprintf("needs %d messages, its quota %q on cluster %s has room for %d of %d",
				m.Messages, q.Root, cr.c.Name, max(0, r.Limit-r.Usage), r.Limit))
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return &quotaError{msg: strings.Join(msgs, "; "),
		fix: fmt.Sprintf("raise the quota of %s on cluster %s, or plan it onto another cluster", m.Mailbox, cr.c.Name)}
}

// warning is a check that could not be made; it stops nothing.
type warning struct{ msg string }

func (e *warning) Error() string { return e.msg }

// classify says what kind of problem a login's error is.
func classify(err error) Kind {
	var se *imapconn.SetupError
	var ae *imapconn.AuthError
	var te *imapconn.TimeoutError
	var ce *configError
	var qe *quotaError
	msg := err.Error()
	switch {
	case errors.As(err, &qe):
		return Quota
	case errors.As(err, &ce):
		if strings.Contains(msg, "credentials_file") || strings.Contains(msg, "password") {
			return Secret
		}
		return Config
	case errors.As(err, &se):
		return TLS
	case errors.As(err, &ae):
		return Login
	case errors.As(err, &te), errors.Is(err, context.DeadlineExceeded):
		return Unreachable
	case strings.Contains(msg, "TLS with"), strings.Contains(msg, "offers no TLS"), strings.Contains(msg, "PREAUTH"):
		return TLS
	}
	return Unreachable
}

// clusterProblem is err as the problem of the whole cluster.
func (cr *clusterRun) clusterProblem(k Kind, err error) *Problem {
	name := cr.c.Name
	p := &Problem{Kind: k, Cluster: name, Side: cr.rep.Role, Mailboxes: len(cr.units), Message: err.Error()}
	switch k {
	case TLS:
		p.Fix = fmt.Sprintf("cluster %s: trust its CA with ca_file in the inventory (or insecure_skip_verify: true); "+
			"a server without STARTTLS needs imaps:// or tls: none", name)
	case Login:
		a := cr.c.Auth
		ref := "password_file " + a.PasswordFile
		if a.PasswordEnv != "" {
			ref = "$" + a.PasswordEnv
		}
		switch a.Method {
		case inventory.AuthCredentialsFile:
			p.Fix = fmt.Sprintf("cluster %s: check the logins in credentials_file %s", name, a.CredentialsFile)
		default:
			p.Fix = fmt.Sprintf("cluster %s: check the admin login (auth.user %q, its password in %s) and that the server lets it log in for other users",
				name, a.User, ref)
		}
		if a.Method != inventory.AuthCredentialsFile {
			p.Message = "the admin login does not work: " + p.Message
		}
	case Secret, Config:
		p.Fix = fmt.Sprintf("cluster %s: fix its auth section (or the file it names) in the inventory", name)
	default:
		p.Fix = fmt.Sprintf("cluster %s: check its url (%s) and that the server is up and reachable from here", name, cr.c.URL)
	}
	return p
}

// finish turns the cluster's results into its report and problems: its
// shared problem once, and the problems of single mailboxes. Failures a
// whole cluster shares that showed up only after the probe (the server went
// away) are also reported once.
func (cr *clusterRun) finish(moves []Move, rep *Report) {
	if cr.feat != nil {
		cr.rep.Capabilities, cr.rep.Missing = cr.feat.Names()
		cr.rep.AppendLimit = cr.feat.AppendLimit
	}
	var perMailbox []Problem
	byKind := map[Kind][]error{}
	for i, u := range cr.units {
		err := cr.errs[i]
		var w *warning
		var qe *quotaError
		switch {
		case !cr.done[i]:
			continue
		case err == nil:
			cr.rep.LoggedIn++
			continue
		case errors.As(err, &w):
			cr.rep.LoggedIn++
			rep.Warnings = append(rep.Warnings, w.msg)
			continue
		case errors.As(err, &qe):
			cr.rep.LoggedIn++
			perMailbox = append(perMailbox, Problem{Kind: Quota, Cluster: cr.c.Name, Side: u.side, Mailbox: moves[u.move].Mailbox, Message: qe.msg, Fix: qe.fix})
			continue
		}
		k := classify(err)
		byKind[k] = append(byKind[k], err)
		perMailbox = append(perMailbox, Problem{Kind: k, Cluster: cr.c.Name, Side: u.side, Mailbox: moves[u.move].Mailbox,
			Message: err.Error(), Fix: mailboxFix(cr.c, k, moves[u.move].Mailbox)})
	}
	if cr.problem == nil {
		// Shared after all: every login failed alike, or the cluster
		// could not be reached or trusted for some.
		for _, k := range []Kind{TLS, Unreachable, Login, Secret, Config} {
			errs := byKind[k]
			all := len(errs) >= 2 && len(errs) == len(cr.units)
			if len(errs) == 0 || (k != TLS && k != Unreachable && !all) {
				continue
			}
			cr.problem = cr.clusterProblem(k, errs[0])
			cr.problem.Mailboxes = len(errs)
			break
		}
	}
	if cr.problem != nil {
		// The probes that found the cluster's problem are not listed again.
		kept := perMailbox[:0]
		for _, p := range perMailbox {
			if p.Kind != cr.problem.Kind {
				kept = append(kept, p)
			}
		}
		perMailbox = kept
		rep.Problems = append(rep.Problems, *cr.problem)
		cr.rep.Problem = string(cr.problem.Kind) + ": " + cr.problem.Message
	}
	rep.Problems = append(rep.Problems, perMailbox...)
}

func mailboxFix(c *inventory.Cluster, k Kind, mailbox string) string {
	switch k {
	case Login:
		return fmt.Sprintf("check that mailbox %s exists on cluster %s and may be logged in to", mailbox, c.Name)
	case Secret:
		return fmt.Sprintf("add a line for %s to credentials_file %s (mailbox,login,password)", mailbox, c.Auth.CredentialsFile)
	case TLS:
		return fmt.Sprintf("cluster %s: trust its CA with ca_file in the inventory (or insecure_skip_verify: true)", c.Name)
	case Unreachable:
		return fmt.Sprintf("cluster %s: check that the server is up and reachable (url %s)", c.Name, c.URL)
	}
	return fmt.Sprintf("fix the inventory entry of cluster %s", c.Name)
}

// tooBig looks, on the source, for messages above the target's
// APPENDLIMIT, for each move whose size is above it (below, every message
// fits). It runs one SEARCH LARGER per folder, under the source's cap.
func tooBig(ctx context.Context, moves []Move, runs map[string]*clusterRun, rep *Report, opts Options) {
	type job struct {
		move  int
		limit int64
	}
	bySource := map[string][]job{}
	for i, m := range moves {
		src, dst := runs[m.From], runs[m.To]
		if src == nil || dst == nil || dst.feat == nil || dst.feat.AppendLimit <= 0 || m.Bytes <= dst.feat.AppendLimit {
			continue
		}
		if rep.Mailboxes[i].Source != "ok" || rep.Mailboxes[i].Target != "ok" {
			continue
		}
		bySource[m.From] = append(bySource[m.From], job{i, dst.feat.AppendLimit})
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, jobs := range bySource {
		cr := runs[name]
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := errgroup.Group{}
			g.SetLimit(capOf(cr.c, opts))
			for _, j := range jobs {
				g.Go(func() error {
					m := moves[j.move]
					n, err := largerThan(ctx, cr, m.Mailbox, j.limit, opts)
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err != nil:
						rep.Warnings = append(rep.Warnings, fmt.Sprintf("mailbox %s: looking for messages above the APPENDLIMIT of cluster %s on cluster %s: %v (not checked)", m.Mailbox, m.To, m.From, err))
					case n > 0:
						rep.Mailboxes[j.move].TooBig = n
						rep.Problems = append(rep.Problems, Problem{Kind: TooBig, Cluster: m.To, Side: "target", Mailbox: m.Mailbox,
							Message: fmt.Sprintf("%d messages larger than the APPENDLIMIT of cluster %s (%s): the target refuses them", n, m.To, inventory.FormatBytes(j.limit)),
							Fix:     fmt.Sprintf("raise the message size limit on cluster %s, or plan %s onto another cluster (the rest of the mailbox would be copied, these fail)", m.To, m.Mailbox)})
					}
					return nil
				})
			}
			_ = g.Wait()
		}()
	}
	wg.Wait()
}

// largerThan counts the messages of mailbox on the cluster larger than
// limit: a LIST, then per folder EXAMINE (read-only) and UID SEARCH LARGER.
func largerThan(ctx context.Context, cr *clusterRun, mailbox string, limit int64, opts Options) (int, error) {
	n := 0
	err := cr.session(ctx, mailbox, opts, func(ctx context.Context, s *imapconn.Session) error {
		list, err := s.List(ctx, "", "*", nil)
		if err != nil {
			return err
		}
		for _, l := range list {
			if hasAttr(l.Attrs, imap.MailboxAttrNoSelect) || hasAttr(l.Attrs, imap.MailboxAttrNonExistent) {
				continue
			}
			sel, err := s.Select(ctx, l.Mailbox, &imap.SelectOptions{ReadOnly: true})
			if err != nil {
				return err
			}
			if sel.NumMessages == 0 {
				continue
			}
			data, err := s.UIDSearch(ctx, l.Mailbox, &imap.SearchCriteria{Larger: limit}, nil)
			if err != nil {
				return err
			}
			n += len(data.AllUIDs())
		}
		return nil
	})
	return n, err
}

func hasAttr(attrs []imap.MailboxAttr, a imap.MailboxAttr) bool {
	for _, x := range attrs {
		if strings.EqualFold(string(x), string(a)) {
			return true
		}
	}
	return false
}
