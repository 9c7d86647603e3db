// Package inventory describes the clusters mailferry works with and the
// mailboxes they hold: how to reach each cluster, what it can carry, and how
// many bytes, messages and load units each mailbox accounts for.
//
// An inventory is loaded from a YAML file (Load), with mailboxes inline or
// from a CSV file (ReadCSV, WriteCSV). Every configuration error names the
// file, the line and the field. Secrets are held by reference only
// (password_file, password_env); this package never reads them.
package inventory

import (
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"mailferry/internal/secret"
	"mailferry/throttle"
)

// Health is an operator's word for a cluster's state. Only healthy clusters
// receive mailboxes.
type Health string

// The health words an inventory may use.
const (
	Healthy  Health = "healthy"
	Degraded Health = "degraded"
	Draining Health = "draining"
	ReadOnly Health = "readonly"
)

// Valid reports whether h is one of the known health words.
func (h Health) Valid() bool {
	switch h {
	case Healthy, Degraded, Draining, ReadOnly:
		return true
	}
	return false
}

// CanReceive reports whether a cluster in this state may be a move target.
func (h Health) CanReceive() bool { return h == Healthy }

// TLSMode says how a connection to a cluster is secured.
type TLSMode string

// TLS modes: implicit TLS (imaps://), STARTTLS (imap://, the default for it)
// and plain text (imap:// with an explicit "tls: none").
const (
	TLSImplicit TLSMode = "tls"
	TLSStartTLS TLSMode = "starttls"
	TLSNone     TLSMode = "none"
)

// AuthMethod is how mailferry logs in to mailboxes on a cluster.
type AuthMethod string

// Auth methods.
const (
	// AuthMaster logs in as Format with {mailbox} and {admin} substituted,
	// e.g. Dovecot's "{mailbox}*{admin}", with the admin's password.
	AuthMaster AuthMethod = "master"
	// AuthSASLPlain uses AUTHENTICATE PLAIN with the admin as authcid and the
	// mailbox as authzid.
	AuthSASLPlain AuthMethod = "sasl-plain"
	// AuthCredentialsFile reads one login and password per mailbox from a file.
	AuthCredentialsFile AuthMethod = "credentials-file"
)

// DefaultMasterFormat is the master-user login format used when none is given.
const DefaultMasterFormat = "{mailbox}*{admin}"

// Auth says how to log in to a cluster's mailboxes. It holds references to
// secrets, never the secrets themselves.
type Auth struct {
	Method AuthMethod
	// User is the admin or master user (master, sasl-plain).
	User string
	// Format is the master-user login format (master only).
	Format string
	// PasswordFile and PasswordEnv name where the admin password is; exactly
	// one is set for master and sasl-plain.
	PasswordFile string
	PasswordEnv  string
	// CredentialsFile holds per-mailbox logins (credentials-file only).
	CredentialsFile string
}

// Capacity is what a cluster can carry.
type Capacity struct {
	Bytes int64
	Load  float64
}

// Limits bound the traffic mailferry may put on a cluster. Zero means no
// limit was configured.
type Limits struct {
	Connections    int
	BytesPerSec    int64
	MessagesPerSec float64
	// MaxLatency is the command latency above which mailferry backs off
	// this cluster whatever it learned as normal.
	MaxLatency time.Duration
	// IOTimeout is how long a connection to this cluster may make no
	// progress while mailferry waits for the server before it is closed
	// and the work retried; 0 means the default (imapconn's, 120s).
	IOTimeout time.Duration
	// Windows are the local hours ("01:00-06:00") in which new work may
	// start on this cluster; none means always.
	Windows throttle.Windows
}

// Cluster is one IMAP cluster.
type Cluster struct {
	Name string
	URL  string
	TLS  TLSMode
	// POP3 is the cluster's POP3 URL (pop3://host:110, STLS required
	// unless tls: none; pop3s://host:995), "" when it offers none or
	// mailferry should not look. Logins are the auth section's, as over
	// IMAP. POP3TLS is the mode it implies (set by validation).
	POP3    string
	POP3TLS TLSMode
	// CAFile is a PEM bundle of the CAs trusted for this cluster's
	// certificates (in a file, resolved against the inventory's directory);
	// "" means the system's roots.
	CAFile string
	// InsecureSkipVerify accepts any certificate (mailferry warns).
	InsecureSkipVerify bool
	Auth               Auth
	Capacity           Capacity
	Limits             Limits
	Health             Health
	// HealthQuery reads the cluster's storage health from Prometheus
	// (health_query); nil without one.
	HealthQuery *HealthQuery
	Tags        map[string]string

	// lines holds the line of each field ("auth.password_file") in the
	// file the cluster was loaded from, for later checks (CheckSecrets).
	lines map[string]int
}

// Mailbox is one mailbox and what it weighs. Messages is zero when unknown.
type Mailbox struct {
	Name     string
	Cluster  string
	Bytes    int64
	Load     float64
	Messages int64
	// Pinned mailboxes never move.
	Pinned bool
}

// Inventory is a set of clusters and the mailboxes on them.
type Inventory struct {
	// Path is the YAML file the inventory was loaded from, if any.
	Path string
	// MailboxesCSV is the resolved path of the mailbox CSV, if one was named.
	MailboxesCSV string
	Clusters     []Cluster
	Mailboxes    []Mailbox
}

// Cluster returns the cluster with the given name, or nil.
func (inv *Inventory) Cluster(name string) *Cluster {
	for i := range inv.Clusters {
		if inv.Clusters[i].Name == name {
			return &inv.Clusters[i]
		}
	}
	return nil
}

// Validate checks an inventory built in code with the same rules Load applies
// to files, except that errors carry no file or line.
func (inv *Inventory) Validate() error {
	var errs Errors
	names := make(map[string]bool, len(inv.Clusters))
	for i := range inv.Clusters {
		c := &inv.Clusters[i]
		field := fmt.Sprintf("clusters[%d]", i)
		if c.Name != "" {
			field = fmt.Sprintf("clusters[%s]", c.Name)
		}
		if names[c.Name] {
			errs.add(0, field+".name", fmt.Sprintf("duplicate cluster %q", c.Name))
		}
		names[c.Name] = true
		for _, e := range c.check() {
			errs.add(0, field+"."+e.field, e.msg)
		}
	}
	seen := make(map[string]bool, len(inv.Mailboxes))
	for i := range inv.Mailboxes {
		m := &inv.Mailboxes[i]
		field := fmt.Sprintf("mailboxes[%d]", i)
		if msg := checkMailbox(m); msg != "" {
			errs.add(0, field, msg)
			continue
		}
		if !names[m.Cluster] {
			errs.add(0, field+".cluster", fmt.Sprintf("mailbox %q is on unknown cluster %q", m.Name, m.Cluster))
		}
		if seen[m.Name] {
			errs.add(0, field+".name", fmt.Sprintf("duplicate mailbox %q", m.Name))
		}
		seen[m.Name] = true
		if len(errs) >= maxErrors {
			break
		}
	}
	for i := range inv.Clusters {
		if msg, bad := checkTotals(inv)[inv.Clusters[i].Name]; bad {
			errs.add(0, fmt.Sprintf("clusters[%s]", inv.Clusters[i].Name), msg)
		}
	}
	return errs.err()
}

type fieldProblem struct{ field, msg string }

// check applies the per-cluster rules; fields are relative to the cluster.
func (c *Cluster) check() []fieldProblem {
	var ps []fieldProblem
	add := func(f, m string) { ps = append(ps, fieldProblem{f, m}) }
	if msg := checkName(c.Name); msg != "" {
		add("name", msg)
	}
	explicitTLS := c.TLS
	if c.URL == "" {
		add("url", "missing: say imaps://host:993 or imap://host:143")
	} else if mode, err := parseURL(c.URL, c.TLS); err != nil {
		add("url", err.Error())
	} else {
		c.TLS = mode
		if mode == TLSNone && c.CAFile != "" {
			add("ca_file", "not used with tls: none (no certificate is checked)")
		}
		if mode == TLSNone && c.InsecureSkipVerify {
			add("insecure_skip_verify", "not used with tls: none (no certificate is checked)")
		}
	}
	if c.POP3 != "" {
		if mode, err := parsePOP3URL(c.POP3, explicitTLS); err != nil {
			add("pop3", err.Error())
		} else {
			c.POP3TLS = mode
		}
	}
	ps = append(ps, c.Auth.check()...)
	if c.Capacity.Bytes <= 0 {
		add("capacity.bytes", fmt.Sprintf("must be positive, got %d", c.Capacity.Bytes))
	}
	if !(c.Capacity.Load > 0) || math.IsInf(c.Capacity.Load, 0) {
		add("capacity.load", fmt.Sprintf("must be a positive number, got %v", c.Capacity.Load))
	} else if c.Capacity.Load > MaxLoad {
		add("capacity.load", fmt.Sprintf("%g is too large (at most %g)", c.Capacity.Load, MaxLoad))
	}
	if c.Limits.Connections < 0 {
		add("limits.connections", "must not be negative")
	}
	if c.Limits.BytesPerSec < 0 {
		add("limits.bytes_per_sec", "must not be negative")
	}
	if !(c.Limits.MessagesPerSec >= 0) || math.IsInf(c.Limits.MessagesPerSec, 0) {
		add("limits.messages_per_sec", "must be a non-negative number")
	}
	if c.Limits.MaxLatency < 0 {
		add("limits.max_latency", "must not be negative")
	}
	if c.Limits.IOTimeout < 0 {
		add("limits.io_timeout", "must not be negative")
	}
	if c.Health == "" {
		c.Health = Healthy
	}
	if !c.Health.Valid() {
		add("health", fmt.Sprintf("unknown health %q: say healthy, degraded, draining or readonly", c.Health))
	}
	if c.HealthQuery != nil {
		ps = append(ps, c.HealthQuery.check()...)
	}
	return ps
}

func (a *Auth) check() []fieldProblem {
	var ps []fieldProblem
	add := func(f, m string) { ps = append(ps, fieldProblem{"auth." + f, m}) }
	secret := func() {
		switch {
		case a.PasswordFile == "" && a.PasswordEnv == "":
			add("password_file", "missing: set password_file or password_env")
		case a.PasswordFile != "" && a.PasswordEnv != "":
			add("password_env", "set password_file or password_env, not both")
		}
	}
	switch a.Method {
	case AuthMaster:
		if a.User == "" {
			add("user", "missing: name the master (admin) user")
		}
		if a.Format == "" {
			a.Format = DefaultMasterFormat
		}
		if !strings.Contains(a.Format, "{mailbox}") {
			add("login_format", fmt.Sprintf("%q has no {mailbox} placeholder", a.Format))
		}
		secret()
	case AuthSASLPlain:
		if a.User == "" {
			add("user", "missing: name the admin user (the SASL authcid)")
		}
		if a.Format != "" {
			add("login_format", "only used with method master")
		}
		secret()
	case AuthCredentialsFile:
		if a.CredentialsFile == "" {
			add("credentials_file", "missing: name the per-mailbox credentials file")
		}
		if a.PasswordFile != "" || a.PasswordEnv != "" {
			add("password_file", "not used with method credentials-file: passwords come from the credentials file")
		}
	case "":
		add("method", "missing: say master, sasl-plain or credentials-file")
	default:
		add("method", fmt.Sprintf("unknown method %q: say master, sasl-plain or credentials-file", a.Method))
	}
	return ps
}

// parseURL checks an IMAP URL and returns the TLS mode it implies together
// with the explicit tls setting ("" when unset).
func parseURL(rawURL string, tls TLSMode) (TLSMode, error) {
	u, err := parseServerURL(rawURL, "credentials belong in auth")
	if err != nil {
		return "", err
	}
	switch u.Scheme {
	case "imaps":
		if tls != "" && tls != TLSImplicit {
			return "", fmt.Errorf("imaps:// always uses TLS; drop tls: %s or use imap://", tls)
		}
		return TLSImplicit, nil
	case "imap":
		switch tls {
		case "", TLSStartTLS:
			return TLSStartTLS, nil
		case TLSNone:
			return TLSNone, nil
		default:
			return "", fmt.Errorf("imap:// takes tls: starttls (the default) or tls: none, not %q", tls)
		}
	default:
		return "", fmt.Errorf("scheme %q: say imaps://host:993 or imap://host:143", u.Scheme)
	}
}

// parseServerURL parses a server's URL (IMAP or POP3) and checks what both
// kinds share: a host, a valid port, no user information (whereLogins says
// where logins belong instead), no path, query or fragment. Messages quote
// the URL with any password masked.
func parseServerURL(rawURL, whereLogins string) (*url.URL, error) {
	raw := secret.RedactURL(rawURL)
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("not a URL: %q", raw)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%q carries user information: %s, passwords in password_file or password_env", raw, whereLogins)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("%q has no host", raw)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n <= 0 || n > 65535 {
			return nil, fmt.Errorf("%q has a bad port", raw)
		}
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%q: want only scheme, host and port", raw)
	}
	return u, nil
}

// parsePOP3URL checks a POP3 URL and returns the TLS mode it implies:
// pop3s:// implicit TLS, pop3:// STLS (required) unless the cluster says
// tls: none, as for its IMAP URL.
func parsePOP3URL(rawURL string, tls TLSMode) (TLSMode, error) {
	u, err := parseServerURL(rawURL, "POP3 logins are the cluster's auth")
	if err != nil {
		return "", err
	}
	switch u.Scheme {
	case "pop3s":
		if tls == TLSNone {
			return "", fmt.Errorf("pop3s:// always uses TLS, but the cluster says tls: none: use pop3:// or drop tls: none")
		}
		return TLSImplicit, nil
	case "pop3":
		if tls == TLSNone {
			return TLSNone, nil
		}
		return TLSStartTLS, nil
	default:
		return "", fmt.Errorf("scheme %q: say pop3s://host:995 or pop3://host:110", u.Scheme)
	}
}

func checkName(s string) string {
	if s == "" {
		return "missing"
	}
	if strings.TrimSpace(s) != s {
		return fmt.Sprintf("%q has leading or trailing spaces", s)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Sprintf("%q contains a control character", s)
		}
	}
	return ""
}

// checkMailboxName is checkName plus: no leading '#', which a CSV file would
// read as a comment.
func checkMailboxName(s string) string {
	if strings.HasPrefix(s, "#") {
		return fmt.Sprintf("%q starts with '#'", s)
	}
	return checkName(s)
}

// checkMailbox applies the rules that need no other mailbox or cluster.
func checkMailbox(m *Mailbox) string {
	if msg := checkMailboxName(m.Name); msg != "" {
		return "name: " + msg
	}
	if m.Cluster == "" {
		return fmt.Sprintf("mailbox %q: cluster: missing", m.Name)
	}
	if m.Bytes < 0 {
		return fmt.Sprintf("mailbox %q: bytes: must not be negative, got %d", m.Name, m.Bytes)
	}
	if !(m.Load >= 0) || math.IsInf(m.Load, 0) {
		return fmt.Sprintf("mailbox %q: load: must be a non-negative number, got %v", m.Name, m.Load)
	}
	if m.Messages < 0 {
		return fmt.Sprintf("mailbox %q: messages: must not be negative, got %d", m.Name, m.Messages)
	}
	if msg := checkValue(m); msg != "" {
		return fmt.Sprintf("mailbox %q: %s", m.Name, msg)
	}
	return ""
}
