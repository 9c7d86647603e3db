package inventory

import (
	"fmt"
	"net/url"
	"time"

	"go.yaml.in/yaml/v3"

	"mailferry/internal/secret"
)

// HealthQuery reads a cluster's storage health from Prometheus (an
// inventory's health_query): the storage degrades (NFS await, IO
// utilisation) before IMAP latency shows it. Above SlowAbove the
// cluster's concurrency limit shrinks; above PauseAbove no new batch
// starts on it until the value falls. It is not the operator's Health
// word of the cluster.
type HealthQuery struct {
	// Prometheus is the base URL of the Prometheus HTTP API
	// ("http://prometheus:9090", a path prefix allowed).
	Prometheus string
	// Query is a PromQL instant query; of the series it returns, the
	// highest value counts.
	Query string
	// SlowAbove and PauseAbove are the thresholds; nil means not set (at
	// least one is).
	SlowAbove, PauseAbove *float64
	// Every is how often the query runs; Timeout bounds each run.
	Every, Timeout time.Duration
	// OnError says what a failing or empty query means.
	OnError HealthOnError
}

// HealthOnError is what a failing or empty health query means for the
// cluster.
type HealthOnError string

// The on_error words.
const (
	// HealthErrorPause: no new batch starts on the cluster until a query
	// succeeds below pause_above (the default: the storage's state is
	// unknown).
	HealthErrorPause HealthOnError = "pause"
	// HealthErrorIgnore: the copy runs as without a health query until a
	// query succeeds.
	HealthErrorIgnore HealthOnError = "ignore"
)

// Defaults and bounds of a health query.
const (
	DefaultHealthEvery   = 15 * time.Second
	MinHealthEvery       = time.Second
	MaxHealthTimeout     = 10 * time.Second
	DefaultHealthOnError = HealthErrorPause
)

// healthQueryFields are the keys of a health_query mapping.
var healthQueryFields = []string{"prometheus", "query", "slow_above", "pause_above", "every", "timeout", "on_error"}

// healthQuery reads a cluster's health_query mapping; field is its path
// ("clusters[0].health_query"), at records a key's line for the cluster's
// later checks and track marks keys whose parse failed.
func (p *parser) healthQuery(n *yaml.Node, field string, at func(string, *yaml.Node), track func(string, func())) *HealthQuery {
	q := &HealthQuery{}
	p.mapping(n, field, func(key string, k, v *yaml.Node) {
		rel := "health_query." + key
		at(rel, v)
		track(rel, func() {
			f := join(field, key)
			switch key {
			case "prometheus":
				q.Prometheus, _ = p.str(v, f)
			case "query":
				q.Query, _ = p.str(v, f)
			case "slow_above":
				if x, ok := p.float(v, f); ok {
					q.SlowAbove = &x
				}
			case "pause_above":
				if x, ok := p.float(v, f); ok {
					q.PauseAbove = &x
				}
			case "every":
				q.Every = p.duration(v, f, "15s or 1m")
			case "timeout":
				q.Timeout = p.duration(v, f, "5s")
			case "on_error":
				s, _ := p.str(v, f)
				q.OnError = HealthOnError(s)
			default:
				p.unknown(k, field, key, healthQueryFields...)
			}
		})
	})
	return q
}

// duration reads a Go duration; an empty value is 0.
func (p *parser) duration(n *yaml.Node, field, example string) time.Duration {
	s, ok := p.str(n, field)
	if !ok || s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		p.errorf(n, field, "want a duration such as %s, got %q", example, s)
	}
	return d
}

// check applies the health query's rules and fills in its defaults;
// fields are relative to the cluster.
func (q *HealthQuery) check() []fieldProblem {
	var ps []fieldProblem
	add := func(f, m string) { ps = append(ps, fieldProblem{"health_query." + f, m}) }
	if q.Prometheus == "" {
		add("prometheus", "missing: the base URL of the Prometheus server, such as http://prometheus:9090")
	} else if err := checkPrometheusURL(q.Prometheus); err != nil {
		add("prometheus", err.Error())
	}
	if q.Query == "" {
		add("query", "missing: a PromQL query whose value says how loaded the storage is")
	}
	switch {
	case q.SlowAbove == nil && q.PauseAbove == nil:
		add("slow_above", "missing: set slow_above, pause_above or both")
	case q.SlowAbove != nil && q.PauseAbove != nil && *q.SlowAbove >= *q.PauseAbove:
		add("slow_above", fmt.Sprintf("%v must be below pause_above (%v)", *q.SlowAbove, *q.PauseAbove))
	}
	switch {
	case q.Every == 0:
		q.Every = DefaultHealthEvery
	case q.Every < MinHealthEvery:
		add("every", fmt.Sprintf("%v is too often: at least %v", q.Every, MinHealthEvery))
	}
	switch {
	case q.Timeout == 0:
		q.Timeout = min(q.Every, MaxHealthTimeout)
	case q.Timeout < 0:
		add("timeout", "must be positive")
	case q.Timeout > q.Every:
		add("timeout", fmt.Sprintf("%v is longer than every (%v): a query would still run when the next is due", q.Timeout, q.Every))
	}
	switch q.OnError {
	case "":
		q.OnError = DefaultHealthOnError
	case HealthErrorPause, HealthErrorIgnore:
	default:
		add("on_error", fmt.Sprintf("unknown %q: say pause or ignore", q.OnError))
	}
	return ps
}

// checkPrometheusURL accepts an http(s) URL with a host and no
// credentials (a password in a URL would end up in logs and reports).
func checkPrometheusURL(raw string) error {
	shown := secret.RedactURL(raw)
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return fmt.Errorf("not a URL: %q", shown)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q: want http:// or https://", shown)
	case u.User != nil:
		return fmt.Errorf("%q carries user information: mailferry does not send credentials to Prometheus; put an authenticating proxy on loopback", shown)
	case u.Hostname() == "":
		return fmt.Errorf("%q has no host", shown)
	case u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("%q: want only scheme, host, port and path", shown)
	}
	return nil
}
