// Package discover measures mailboxes over IMAP: it logs in to each mailbox
// of a cluster with the inventory's credentials and counts bytes and
// messages. It is apart from package inventory so that the planner, which
// reads inventories, never links an IMAP client.
package discover

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"sync"

	"github.com/emersion/go-imap/v2"

	"mailferry/internal/imapconn"
	"mailferry/inventory"
)

// Config builds the login for one mailbox on this cluster from the
// inventory's auth section, reading the secret it references (a password
// file, an environment variable, or the per-mailbox credentials file), and
// its TLS from the cluster's tls, ca_file and insecure_skip_verify
// (imap:// requires STARTTLS unless tls: none). The secret is returned
// inside the config only, never in an error.
func Config(c *inventory.Cluster, mailbox string) (imapconn.Config, error) {
	u, err := url.Parse(c.URL)
	if err != nil {
		return imapconn.Config{}, fmt.Errorf("cluster %s: url: %w", c.Name, err)
	}
	raw := u.Scheme + "://" + url.PathEscape(mailbox) + "@" + u.Host
	ep, err := imapconn.ParseEndpoint(raw)
	if err != nil {
		return imapconn.Config{}, fmt.Errorf("cluster %s: %w", c.Name, err)
	}
	cfg := imapconn.Config{Side: "cluster " + c.Name, IdleTimeout: c.Limits.IOTimeout,
		CAFile: c.CAFile, InsecureSkipVerify: c.InsecureSkipVerify,
		TrustAdvice:      fmt.Sprintf("cluster %s: trust its CA with ca_file in the inventory, or insecure_skip_verify: true", c.Name),
		NoStartTLSAdvice: fmt.Sprintf("cluster %s: use imaps://, or say tls: none in the inventory to send passwords in clear text", c.Name),
	}
	switch c.TLS {
	case inventory.TLSNone:
		ep.TLS, cfg.AllowPlaintext = imapconn.TLSNone, true
	case inventory.TLSImplicit:
		ep.TLS = imapconn.TLSImplicit
	case inventory.TLSStartTLS:
		ep.TLS = imapconn.TLSStartTLS
	}
	a := c.Auth
	switch a.Method {
	case inventory.AuthMaster:
		format := a.Format
		if format == "" {
			format = inventory.DefaultMasterFormat
		}
		ep.Login = strings.NewReplacer("{mailbox}", mailbox, "{admin}", a.User).Replace(format)
		cfg.Password, err = readSecret(c.Name, a.PasswordFile, a.PasswordEnv)
	case inventory.AuthSASLPlain:
		ep.Admin = a.User
		cfg.Password, err = readSecret(c.Name, a.PasswordFile, a.PasswordEnv)
	case inventory.AuthCredentialsFile:
		ep.Login, cfg.Password, err = readCredentials(c.Name, a.CredentialsFile, mailbox)
	default:
		err = fmt.Errorf("cluster %s: auth method %q", c.Name, a.Method)
	}
	if err != nil {
		return imapconn.Config{}, err
	}
	cfg.Endpoint = ep
	return cfg, nil
}

func readSecret(cluster, file, env string) (string, error) {
	s, err := imapconn.ReadSecret(file, env)
	if err != nil {
		return "", fmt.Errorf("cluster %s: %w", cluster, err)
	}
	return s, nil
}

// readCredentials finds a mailbox in a credentials file: CSV lines
// "mailbox,login,password" ('#' comments allowed).
func readCredentials(cluster, file, mailbox string) (login, password string, err error) {
	f, err := os.Open(file)
	if err != nil {
		return "", "", fmt.Errorf("cluster %s: credentials_file: %w", cluster, err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.Comment = '#'
	r.FieldsPerRecord = 3
	for {
		rec, err := r.Read()
		if err == io.EOF {
			return "", "", fmt.Errorf("cluster %s: credentials_file %s has no line for mailbox %q", cluster, file, mailbox)
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				// Never echo the record: it holds a password.
				return "", "", fmt.Errorf("cluster %s: credentials_file %s line %d: want mailbox,login,password", cluster, file, pe.Line)
			}
			return "", "", fmt.Errorf("cluster %s: credentials_file %s: %w", cluster, file, err)
		}
		if rec[0] == mailbox {
			return rec[1], rec[2], nil
		}
	}
}

// Measured is one mailbox's discovered size, or why it could not be
// measured.
type Measured struct {
	Mailbox inventory.Mailbox
	Err     error
}

// Options tune Run.
type Options struct {
	// Parallel bounds the mailboxes measured at once; 0 means the cluster's
	// connection limit, or 4 when it has none.
	Parallel int
	// Progress, when set, is called after each mailbox (from several
	// goroutines, one at a time).
	Progress func(done, total int, m Measured)
}

// Run logs in to each mailbox of the cluster and measures its bytes and
// message count: STATUS SIZE where the server offers it (one LIST-STATUS
// round trip when it can), else the sum of RFC822.SIZE. Load is kept as
// given. A mailbox that cannot be measured is returned with its error; the
// others go on. The result is in the order of mailboxes.
func Run(ctx context.Context, c *inventory.Cluster, mailboxes []inventory.Mailbox, opts Options) []Measured {
	n := opts.Parallel
	if n <= 0 {
		n = c.Limits.Connections
	}
	if n <= 0 {
		n = 4
	}
	out := make([]Measured, len(mailboxes))
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := 0
	for i, mb := range mailboxes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				out[i] = Measured{Mailbox: mb, Err: ctx.Err()}
				return
			}
			defer func() { <-sem }()
			bytes, msgs, err := measure(ctx, c, mb.Name)
			m := Measured{Mailbox: mb, Err: err}
			if err == nil {
				m.Mailbox.Bytes, m.Mailbox.Messages = bytes, msgs
			}
			out[i] = m
			if opts.Progress != nil {
				mu.Lock()
				done++
				opts.Progress(done, len(mailboxes), m)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out
}

func measure(ctx context.Context, c *inventory.Cluster, mailbox string) (int64, int64, error) {
	cfg, err := Config(c, mailbox)
	if err != nil {
		return 0, 0, err
	}
	c0, err := imapconn.Dial(ctx, cfg)
	if err != nil {
		return 0, 0, err
	}
	// Discovery's own concurrency bounds its load; no cluster limiter.
	conn := imapconn.NewSession(c0, imapconn.Source, nil)
	defer conn.Logout()
	f := conn.Features
	opts := &imap.ListOptions{}
	if f.ListStatus && f.StatusSize {
		opts.ReturnStatus = &imap.StatusOptions{NumMessages: true, Size: true}
	}
	list, err := conn.List(ctx, "", "*", opts)
	if err != nil {
		return 0, 0, fmt.Errorf("mailbox %q: list folders: %w", mailbox, err)
	}
	var bytes, msgs int64
	for _, l := range list {
		if hasAttr(l.Attrs, imap.MailboxAttrNoSelect) || hasAttr(l.Attrs, imap.MailboxAttrNonExistent) {
			continue
		}
		st := l.Status
		if st == nil && f.StatusSize {
			if st, err = conn.Status(ctx, l.Mailbox, &imap.StatusOptions{NumMessages: true, Size: true}); err != nil {
				return 0, 0, fmt.Errorf("mailbox %q: status %q: %w", mailbox, l.Mailbox, err)
			}
		}
		if st != nil && st.Size != nil && st.NumMessages != nil {
			bytes += *st.Size
			msgs += int64(*st.NumMessages)
			continue
		}
		b, n, err := sumSizes(ctx, conn, l.Mailbox)
		if err != nil {
			return 0, 0, fmt.Errorf("mailbox %q: sizes in %q: %w", mailbox, l.Mailbox, err)
		}
		bytes += b
		msgs += n
	}
	return bytes, msgs, nil
}

// sumSizes adds up RFC822.SIZE over a folder opened read-only.
func sumSizes(ctx context.Context, conn *imapconn.Session, folder string) (_, _ int64, err error) {
	sel, err := conn.Select(ctx, folder, &imap.SelectOptions{ReadOnly: true})
	if err != nil {
		return 0, 0, err
	}
	if sel.NumMessages == 0 {
		return 0, 0, nil
	}
	st, err := conn.Stream(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer func() { st.End(err) }()
	fetch := st.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{RFC822Size: true})
	defer fetch.Close()
	var bytes, n int64
	for {
		msg := fetch.Next()
		if msg == nil {
			break
		}
		buf, err := msg.Collect()
		if err != nil {
			return 0, 0, err
		}
		bytes += buf.RFC822Size
		n++
	}
	return bytes, n, fetch.Close()
}

func hasAttr(attrs []imap.MailboxAttr, a imap.MailboxAttr) bool {
	for _, x := range attrs {
		if strings.EqualFold(string(x), string(a)) {
			return true
		}
	}
	return false
}
