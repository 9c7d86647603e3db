package pop3

import (
	"fmt"
	"net/url"
	"strconv"

	"mailferry/internal/imapconn"
	"mailferry/inventory"
)

// ForCluster is the POP3 login of one mailbox on cluster c: the server of
// its pop3 URL, TLS as that URL and the cluster's tls say, and the very
// login the IMAP side uses (login is the IMAP config discover.Config
// built for the mailbox): a master login "alice*admin" goes as USER/PASS,
// a SASL PLAIN admin as AUTH PLAIN acting for the mailbox, a per-mailbox
// login as USER/PASS. ok is false when the cluster has no pop3 URL.
func ForCluster(c *inventory.Cluster, login imapconn.Config) (cfg Config, ok bool, err error) {
	if c.POP3 == "" {
		return Config{}, false, nil
	}
	u, err := url.Parse(c.POP3)
	if err != nil {
		return Config{}, true, fmt.Errorf("cluster %s: pop3: not a URL", c.Name)
	}
	cfg = Config{
		Side: login.Side, Host: u.Hostname(),
		Mailbox: login.Endpoint.Mailbox, Password: login.Password,
		CAFile: c.CAFile, InsecureSkipVerify: c.InsecureSkipVerify,
		IOTimeout:    login.IdleTimeout,
		TrustAdvice:  fmt.Sprintf("cluster %s: trust its CA with ca_file in the inventory, or insecure_skip_verify: true", c.Name),
		NoSTLSAdvice: fmt.Sprintf("cluster %s: use pop3s:// as its pop3 URL, or say tls: none in the inventory to send passwords in clear text", c.Name),
	}
	if cfg.Side == "" {
		cfg.Side = "cluster " + c.Name
	}
	mode := c.POP3TLS
	if mode == "" { // an inventory not validated: read the URL as validation would
		switch {
		case u.Scheme == "pop3s":
			mode = inventory.TLSImplicit
		case c.TLS == inventory.TLSNone:
			mode = inventory.TLSNone
		default:
			mode = inventory.TLSStartTLS
		}
	}
	switch mode {
	case inventory.TLSImplicit:
		cfg.TLS, cfg.Port = TLSImplicit, 995
	case inventory.TLSNone:
		cfg.TLS, cfg.Port, cfg.AllowPlaintext = TLSNone, 110, true
	default:
		cfg.TLS, cfg.Port = TLSStartTLS, 110
	}
	if p := u.Port(); p != "" {
		if cfg.Port, err = strconv.Atoi(p); err != nil {
			return Config{}, true, fmt.Errorf("cluster %s: pop3: bad port", c.Name)
		}
	}
	if login.Endpoint.Admin != "" {
		cfg.Admin = login.Endpoint.Admin
	} else {
		cfg.Login = login.Endpoint.Login
	}
	return cfg, true, nil
}
