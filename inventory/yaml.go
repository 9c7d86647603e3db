package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"mailferry/throttle"
)

// FormatVersion is the inventory file format this package reads. A file may
// say "version: 1"; any other version is rejected.
const FormatVersion = 1

// Load reads an inventory YAML file and the mailbox CSV it names (a relative
// mailboxes_csv is resolved against the YAML file's directory), and validates
// both. On a validation problem it returns Errors, each naming the file, line
// and field. It reads no secrets: password_file and credentials_file are only
// recorded.
//
// Files are bounded: a YAML file larger than MaxYAMLSize, or a CSV with a
// line longer than MaxCSVLine or larger than MaxCSVSize, is an error that
// names the file (and the line), whatever the file is (even /dev/zero).
func Load(path string) (*Inventory, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read inventory: %w", err)
	}
	data, err := readLimited(path, f, MaxYAMLSize)
	f.Close()
	if err != nil {
		return nil, err
	}
	return load(path, data, func(name string) (io.ReadCloser, error) { return os.Open(name) })
}

// Parse reads an inventory from YAML held in memory. name is used in error
// messages. Inline mailboxes are validated; a mailboxes_csv file is not read
// (its resolved path is left in MailboxesCSV).
func Parse(name string, data []byte) (*Inventory, error) {
	return load(name, data, nil)
}

type mailboxLoc struct {
	csv  bool
	line int32
}

func load(name string, data []byte, open func(string) (io.ReadCloser, error)) (*Inventory, error) {
	data = bytes.TrimPrefix(data, utf8BOM)
	p := &parser{file: name, budget: 64*len(data) + 1024}
	inv, locs := p.document(data)
	if len(p.errs) > 0 {
		return nil, p.errs.inFile(name)
	}
	csvName := inv.MailboxesCSV
	if csvName != "" && open != nil {
		f, err := open(csvName)
		if err != nil {
			return nil, Errors{{File: name, Line: p.csvLine, Field: "mailboxes_csv", Msg: err.Error()}}
		}
		mbs, lines, err := readCSV(csvName, f, len(inv.Clusters))
		f.Close()
		if err != nil {
			return nil, err
		}
		for _, l := range lines {
			locs = append(locs, mailboxLoc{csv: true, line: l})
		}
		if len(inv.Mailboxes) == 0 {
			inv.Mailboxes = mbs
		} else {
			inv.Mailboxes = append(inv.Mailboxes, mbs...)
		}
	}
	if errs := crossCheck(inv, locs, name, csvName); len(errs) > 0 {
		return nil, errs
	}
	return inv, nil
}

// crossCheck rejects mailboxes on unknown clusters and duplicate mailboxes.
func crossCheck(inv *Inventory, locs []mailboxLoc, yamlName, csvName string) Errors {
	var errs Errors
	clusters := make(map[string]bool, len(inv.Clusters))
	for _, c := range inv.Clusters {
		clusters[c.Name] = true
	}
	where := func(l mailboxLoc) (string, int) {
		if l.csv {
			return csvName, int(l.line)
		}
		return yamlName, int(l.line)
	}
	if bad := checkTotals(inv); len(bad) > 0 {
		for _, c := range inv.Clusters {
			if msg, ok := bad[c.Name]; ok {
				errs = append(errs, &FieldError{File: yamlName, Line: c.lines["name"], Field: fmt.Sprintf("clusters[%s]", c.Name), Msg: msg})
			}
		}
	}
	seen := make(map[string]int32, len(inv.Mailboxes))
	for i := range inv.Mailboxes {
		m := &inv.Mailboxes[i]
		file, line := where(locs[i])
		if !clusters[m.Cluster] {
			errs = append(errs, &FieldError{File: file, Line: line, Field: "cluster",
				Msg: fmt.Sprintf("mailbox %q is on unknown cluster %q (known: %s)", m.Name, m.Cluster, clusterList(inv))})
		}
		if j, dup := seen[m.Name]; dup {
			f0, l0 := where(locs[j])
			errs = append(errs, &FieldError{File: file, Line: line, Field: "mailbox",
				Msg: fmt.Sprintf("duplicate mailbox %q, first listed at %s:%d", m.Name, f0, l0)})
		} else {
			seen[m.Name] = int32(i)
		}
		if len(errs) >= maxErrors {
			break
		}
	}
	return errs
}

func clusterList(inv *Inventory) string {
	names := make([]string, len(inv.Clusters))
	for i, c := range inv.Clusters {
		names[i] = c.Name
	}
	return strings.Join(names, ", ")
}

// parser walks a YAML node tree, so that every value keeps its line and
// every unknown or repeated key can be reported where it is.
type parser struct {
	file    string
	errs    Errors
	budget  int // nodes left to visit; bounds alias expansion
	csvLine int
}

func (p *parser) errorf(n *yaml.Node, field, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	p.errs.add(line, field, fmt.Sprintf(format, args...))
}

// resolve follows aliases and charges the visit against the budget.
func (p *parser) resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 16; i++ {
		n = n.Alias
	}
	p.budget--
	return n
}

func (p *parser) document(data []byte) (*Inventory, []mailboxLoc) {
	inv := &Inventory{Path: p.file}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.errs.add(0, "", "empty inventory: want clusters and mailboxes")
			return inv, nil
		}
		p.errs.add(yamlErrLine(err), "", "not valid YAML: "+strings.TrimPrefix(err.Error(), "yaml: "))
		return inv, nil
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	var locs []mailboxLoc
	var clustersNode *yaml.Node
	p.mapping(root, "", func(key string, k, v *yaml.Node) {
		switch key {
		case "version":
			if n, ok := p.int(v, "version"); ok && n != FormatVersion {
				p.errorf(v, "version", "inventory format version %d is not supported (this mailferry reads version %d)", n, FormatVersion)
			}
		case "clusters":
			clustersNode = v
			p.sequence(v, "clusters", func(i int, item *yaml.Node) {
				inv.Clusters = append(inv.Clusters, p.cluster(item, i))
			})
		case "mailboxes":
			p.sequence(v, "mailboxes", func(i int, item *yaml.Node) {
				if m, ok := p.mailbox(item, i); ok {
					inv.Mailboxes = append(inv.Mailboxes, m)
					locs = append(locs, mailboxLoc{line: int32(item.Line)})
				}
			})
		case "mailboxes_csv":
			if s, ok := p.str(v, "mailboxes_csv"); ok {
				if s == "" {
					p.errorf(v, "mailboxes_csv", "empty path")
				}
				p.csvLine = v.Line
				inv.MailboxesCSV = s
				if !filepath.IsAbs(s) {
					inv.MailboxesCSV = filepath.Join(filepath.Dir(p.file), s)
				}
			}
		default:
			p.unknown(k, "", key, "version", "clusters", "mailboxes", "mailboxes_csv")
		}
	})
	if len(inv.Clusters) == 0 && len(p.errs) == 0 {
		p.errorf(clustersNode, "clusters", "no clusters: an inventory names at least one cluster")
	}
	seen := map[string]bool{}
	for i, c := range inv.Clusters {
		if c.Name != "" && seen[c.Name] {
			p.errorf(clustersNode.Content[i], fmt.Sprintf("clusters[%d].name", i), "duplicate cluster %q", c.Name)
		}
		seen[c.Name] = true
	}
	return inv, locs
}

func yamlErrLine(err error) int {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return 0
	}
	s := err.Error()
	if i := strings.Index(s, "line "); i >= 0 {
		j := i + 5
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		if n, err := strconv.Atoi(s[i+5 : j]); err == nil {
			return n
		}
	}
	return 0
}

// mapping calls fn for each key of a mapping node, rejecting repeated keys.
func (p *parser) mapping(n *yaml.Node, field string, fn func(key string, k, v *yaml.Node)) {
	n = p.resolve(n)
	if n == nil || p.budget < 0 {
		return
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, field, "want a mapping of keys to values, got %s", kindName(n))
		return
	}
	first := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := p.resolve(n.Content[i]), n.Content[i+1]
		if p.budget < 0 {
			p.errorf(n, field, "document too complex (aliases expand too far)")
			return
		}
		if k.Kind != yaml.ScalarNode {
			p.errorf(k, field, "keys must be plain words")
			continue
		}
		key := k.Value
		if key == "<<" {
			p.errorf(k, join(field, key), "merge keys (<<) are not supported: repeat the fields or use an alias for the whole value")
			continue
		}
		if l, dup := first[key]; dup {
			p.errorf(k, join(field, key), "repeated key (first at line %d)", l)
			continue
		}
		first[key] = k.Line
		fn(key, k, v)
	}
}

func (p *parser) isMapping(n *yaml.Node, field string) bool {
	if n == nil || n.Kind != yaml.MappingNode {
		p.errorf(n, field, "want a mapping of keys to values, got %s", kindName(n))
		return false
	}
	return true
}

func (p *parser) sequence(n *yaml.Node, field string, fn func(i int, item *yaml.Node)) {
	n = p.resolve(n)
	if n == nil || p.budget < 0 {
		return
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, field, "want a list, got %s", kindName(n))
		return
	}
	for i, item := range n.Content {
		if p.budget < 0 {
			p.errorf(n, field, "document too complex (aliases expand too far)")
			return
		}
		fn(i, p.resolve(item))
	}
}

func (p *parser) unknown(k *yaml.Node, field, key string, known ...string) {
	if key == "password" || key == "secret" || key == "pass" {
		p.errorf(k, join(field, key), "inline secrets are not allowed: put the password in a file and name it with password_file, or in an environment variable named by password_env")
		return
	}
	p.errorf(k, join(field, key), "unknown field (known: %s)", strings.Join(known, ", "))
}

func join(field, key string) string {
	if field == "" {
		return key
	}
	return field + "." + key
}

func kindName(n *yaml.Node) string {
	if n == nil {
		return "nothing"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

func (p *parser) scalar(n *yaml.Node, field string) (*yaml.Node, bool) {
	n = p.resolve(n)
	if n == nil {
		return nil, false
	}
	if n.Kind != yaml.ScalarNode {
		p.errorf(n, field, "want a single value, got %s", kindName(n))
		return nil, false
	}
	return n, true
}

func (p *parser) str(n *yaml.Node, field string) (string, bool) {
	s, ok := p.scalar(n, field)
	if !ok {
		return "", false
	}
	if s.Tag == "!!null" {
		return "", true
	}
	return s.Value, true
}

func (p *parser) int(n *yaml.Node, field string) (int64, bool) {
	s, ok := p.scalar(n, field)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(s.Value, 10, 64)
	if err != nil {
		p.errorf(s, field, "want a whole number, got %q", s.Value)
		return 0, false
	}
	if v < 0 {
		p.errorf(s, field, "must not be negative, got %d", v)
		return 0, false
	}
	return v, true
}

func (p *parser) float(n *yaml.Node, field string) (float64, bool) {
	s, ok := p.scalar(n, field)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseFloat(s.Value, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		p.errorf(s, field, "want a number, got %q", s.Value)
		return 0, false
	}
	if v < 0 {
		p.errorf(s, field, "must not be negative, got %v", v)
		return 0, false
	}
	return v, true
}

func (p *parser) bytes(n *yaml.Node, field string) (int64, bool) {
	s, ok := p.scalar(n, field)
	if !ok {
		return 0, false
	}
	v, err := ParseBytes(s.Value)
	if err != nil {
		p.errorf(s, field, "%v", err)
		return 0, false
	}
	return v, true
}

// path reads a file name; a relative one is resolved against the
// inventory file's directory, so that the inventory means the same files
// whatever the working directory (a cron job's is not the operator's).
func (p *parser) path(n *yaml.Node, field string) string {
	s, ok := p.str(n, field)
	if !ok || s == "" {
		return s
	}
	if !filepath.IsAbs(s) {
		s = filepath.Join(filepath.Dir(p.file), s)
	}
	return s
}

func (p *parser) bool(n *yaml.Node, field string) (bool, bool) {
	s, ok := p.scalar(n, field)
	if !ok {
		return false, false
	}
	switch s.Value {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	p.errorf(s, field, "want true or false, got %q", s.Value)
	return false, false
}

func (p *parser) cluster(n *yaml.Node, i int) Cluster {
	var c Cluster
	field := fmt.Sprintf("clusters[%d]", i)
	if !p.isMapping(n, field) {
		return c
	}
	lines := map[string]int{}
	at := func(f string, v *yaml.Node) { lines[f] = p.resolve(v).Line }
	// bad holds fields already reported, so check does not report them again.
	bad := map[string]bool{}
	track := func(f string, parse func()) {
		n := len(p.errs)
		parse()
		if len(p.errs) > n {
			bad[f] = true
		}
	}
	var tls string
	p.mapping(n, field, func(key string, k, v *yaml.Node) {
		f := join(field, key)
		switch key {
		case "name":
			track(key, func() { c.Name, _ = p.str(v, f) })
		case "url":
			track(key, func() { c.URL, _ = p.str(v, f) })
		case "pop3":
			track(key, func() {
				c.POP3, _ = p.str(v, f)
				if c.POP3 == "" {
					p.errorf(v, f, "empty: say pop3://host:110 or pop3s://host:995, or leave pop3 out")
				}
			})
		case "tls":
			tls, _ = p.str(v, f)
		case "ca_file":
			track(key, func() { c.CAFile = p.path(v, f) })
		case "insecure_skip_verify":
			track(key, func() { c.InsecureSkipVerify, _ = p.bool(v, f) })
		case "health":
			track(key, func() {
				h, _ := p.str(v, f)
				c.Health = Health(h)
			})
		case "auth":
			p.mapping(v, f, func(key string, k, v *yaml.Node) {
				track("auth."+key, func() {
					ff := join(f, key)
					at("auth."+key, v)
					if key == "password" {
						bad["auth.password_file"] = true
					}
					switch key {
					case "method":
						m, _ := p.str(v, ff)
						c.Auth.Method = AuthMethod(m)
					case "user":
						c.Auth.User, _ = p.str(v, ff)
					case "login_format":
						c.Auth.Format, _ = p.str(v, ff)
					case "password_file":
						c.Auth.PasswordFile = p.path(v, ff)
					case "password_env":
						c.Auth.PasswordEnv, _ = p.str(v, ff)
					case "credentials_file":
						c.Auth.CredentialsFile = p.path(v, ff)
					default:
						p.unknown(k, f, key, "method", "user", "login_format", "password_file", "password_env", "credentials_file")
					}
				})
			})
			at("auth", v)
		case "capacity":
			p.mapping(v, f, func(key string, k, v *yaml.Node) {
				track("capacity."+key, func() {
					ff := join(f, key)
					at("capacity."+key, v)
					switch key {
					case "bytes":
						c.Capacity.Bytes, _ = p.bytes(v, ff)
					case "load":
						c.Capacity.Load, _ = p.float(v, ff)
					default:
						p.unknown(k, f, key, "bytes", "load")
					}
				})
			})
			at("capacity", v)
		case "limits":
			p.mapping(v, f, func(key string, k, v *yaml.Node) {
				ff := join(f, key)
				switch key {
				case "connections":
					n, _ := p.int(v, ff)
					c.Limits.Connections = int(min(n, math.MaxInt32))
				case "bytes_per_sec":
					c.Limits.BytesPerSec, _ = p.bytes(v, ff)
				case "messages_per_sec":
					c.Limits.MessagesPerSec, _ = p.float(v, ff)
				case "max_latency":
					if s, ok := p.str(v, ff); ok && s != "" {
						d, err := time.ParseDuration(s)
						if err != nil {
							p.errorf(v, ff, "want a duration such as 500ms or 2s, got %q", s)
						}
						c.Limits.MaxLatency = d
					}
				case "io_timeout":
					if s, ok := p.str(v, ff); ok && s != "" {
						d, err := time.ParseDuration(s)
						if err != nil {
							p.errorf(v, ff, "want a duration such as 30s or 2m, got %q", s)
						}
						c.Limits.IOTimeout = d
					}
				case "windows":
					p.sequence(v, ff, func(i int, item *yaml.Node) {
						if s, ok := p.str(item, fmt.Sprintf("%s[%d]", ff, i)); ok {
							w, err := throttle.ParseWindow(s)
							if err != nil {
								p.errorf(item, fmt.Sprintf("%s[%d]", ff, i), "%v", err)
								return
							}
							c.Limits.Windows = append(c.Limits.Windows, w)
						}
					})
				default:
					p.unknown(k, f, key, "connections", "bytes_per_sec", "messages_per_sec", "max_latency", "io_timeout", "windows")
				}
			})
		case "health_query":
			c.HealthQuery = p.healthQuery(v, f, at, track)
			lines[key] = k.Line // a missing field is reported at the key
		case "tags":
			c.Tags = map[string]string{}
			p.mapping(v, f, func(key string, k, v *yaml.Node) {
				c.Tags[key], _ = p.str(v, join(f, key))
			})
		default:
			p.unknown(k, field, key, "name", "url", "pop3", "tls", "ca_file", "insecure_skip_verify", "auth", "capacity", "limits", "health", "health_query", "tags")
			return
		}
		if _, ok := lines[key]; !ok {
			at(key, v)
		}
	})
	if len(p.errs) > 0 && p.budget < 0 {
		return c
	}
	c.TLS = TLSMode(tls)
	c.lines = lines
	if c.Name != "" {
		field = fmt.Sprintf("clusters[%s]", c.Name)
	}
	probs := slices.DeleteFunc(c.check(), func(pr fieldProblem) bool { return bad[pr.field] })
	sort.SliceStable(probs, func(a, b int) bool { return lineOf(lines, probs[a].field, n) < lineOf(lines, probs[b].field, n) })
	for _, pr := range probs {
		p.errs.add(lineOf(lines, pr.field, n), join(field, pr.field), pr.msg)
	}
	return c
}

// lineOf finds the line of a field, or of its closest enclosing field, or of
// the cluster itself.
func lineOf(lines map[string]int, field string, n *yaml.Node) int {
	for f := field; f != ""; {
		if l, ok := lines[f]; ok {
			return l
		}
		i := strings.LastIndexByte(f, '.')
		if i < 0 {
			break
		}
		f = f[:i]
	}
	return n.Line
}

func (p *parser) mailbox(n *yaml.Node, i int) (Mailbox, bool) {
	var m Mailbox
	field := fmt.Sprintf("mailboxes[%d]", i)
	if !p.isMapping(n, field) {
		return m, false
	}
	ok := true
	p.mapping(n, field, func(key string, k, v *yaml.Node) {
		f := join(field, key)
		var good bool
		switch key {
		case "name":
			m.Name, good = p.str(v, f)
		case "cluster":
			m.Cluster, good = p.str(v, f)
		case "bytes":
			m.Bytes, good = p.bytes(v, f)
		case "load":
			m.Load, good = p.float(v, f)
		case "messages":
			m.Messages, good = p.int(v, f)
		case "pinned":
			m.Pinned, good = p.bool(v, f)
		default:
			p.unknown(k, field, key, "name", "cluster", "bytes", "load", "messages", "pinned")
		}
		ok = ok && good
	})
	if !ok {
		return m, false
	}
	if msg := checkMailbox(&m); msg != "" {
		p.errorf(n, field, "%s", msg)
		return m, false
	}
	return m, true
}
