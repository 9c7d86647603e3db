package planner

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"mailferry/inventory"
)

// assumable are the fields Policy.Assume may change.
var assumable = []string{
	"capacity.bytes", "capacity.load",
	"limits.connections", "limits.bytes_per_sec", "limits.messages_per_sec",
	"health",
}

// applyAssumption changes one cluster in cs (copies owned by the planner) as
// "CLUSTER.FIELD=VALUE" says.
func applyAssumption(cs []inventory.Cluster, s string) error {
	lhs, val, ok := strings.Cut(s, "=")
	lhs, val = strings.TrimSpace(lhs), strings.TrimSpace(val)
	if !ok || val == "" {
		return fmt.Errorf("assume %q: want CLUSTER.FIELD=VALUE, e.g. b.capacity.load=50%%", s)
	}
	var name, field string
	for _, f := range assumable {
		if strings.HasSuffix(lhs, "."+f) {
			name, field = strings.TrimSuffix(lhs, "."+f), f
			break
		}
	}
	if field == "" {
		return fmt.Errorf("assume %q: unknown field: say one of %s", s, strings.Join(assumable, ", "))
	}
	var c *inventory.Cluster
	for i := range cs {
		if cs[i].Name == name {
			c = &cs[i]
		}
	}
	if c == nil {
		return fmt.Errorf("assume %q: no cluster %q", s, name)
	}
	if field == "health" {
		h := inventory.Health(val)
		if !h.Valid() {
			return fmt.Errorf("assume %q: unknown health %q: say healthy, degraded, draining or readonly", s, val)
		}
		c.Health = h
		return nil
	}
	// scale returns the new value of a numeric field: a percentage of the
	// old one, or an absolute value parsed by abs.
	scale := func(old float64, abs func(string) (float64, error)) (float64, error) {
		if p, ok := strings.CutSuffix(val, "%"); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
			if err != nil || !(f >= 0) || math.IsInf(f, 0) {
				return 0, fmt.Errorf("assume %q: bad percentage %q", s, val)
			}
			return old * f / 100, nil
		}
		v, err := abs(val)
		if err != nil {
			return 0, fmt.Errorf("assume %q: %w", s, err)
		}
		return v, nil
	}
	num := func(v string) (float64, error) {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f >= 0) || math.IsInf(f, 0) {
			return 0, fmt.Errorf("want a non-negative number or a percentage, got %q", v)
		}
		return f, nil
	}
	size := func(v string) (float64, error) {
		n, err := inventory.ParseBytes(v)
		return float64(n), err
	}
	var err error
	var f float64
	switch field {
	case "capacity.bytes":
		if f, err = scale(float64(c.Capacity.Bytes), size); err == nil {
			c.Capacity.Bytes = int64(math.Round(f))
		}
	case "capacity.load":
		if f, err = scale(c.Capacity.Load, num); err == nil {
			c.Capacity.Load = f
		}
	case "limits.connections":
		if f, err = scale(float64(c.Limits.Connections), num); err == nil {
			c.Limits.Connections = int(math.Round(f))
		}
	case "limits.bytes_per_sec":
		if f, err = scale(float64(c.Limits.BytesPerSec), size); err == nil {
			c.Limits.BytesPerSec = int64(math.Round(f))
		}
	case "limits.messages_per_sec":
		if f, err = scale(c.Limits.MessagesPerSec, num); err == nil {
			c.Limits.MessagesPerSec = f
		}
	}
	if err != nil {
		return err
	}
	if strings.HasPrefix(field, "capacity.") && (c.Capacity.Bytes <= 0 || !(c.Capacity.Load > 0)) {
		return fmt.Errorf("assume %q: capacity must stay positive", s)
	}
	return nil
}

// parseNewCluster reads "NAME:BYTES:LOAD[:key=value,...]".
func parseNewCluster(s string) (inventory.Cluster, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 3 || len(parts) > 4 {
		return inventory.Cluster{}, fmt.Errorf("add cluster %q: want NAME:BYTES:LOAD[:key=value,...], e.g. e:40TiB:2000:region=eu", s)
	}
	name := strings.TrimSpace(parts[0])
	if name == "" {
		return inventory.Cluster{}, fmt.Errorf("add cluster %q: no name", s)
	}
	b, err := inventory.ParseBytes(parts[1])
	if err != nil || b <= 0 {
		return inventory.Cluster{}, fmt.Errorf("add cluster %q: capacity bytes must be a positive size such as 40TiB", s)
	}
	l, err := strconv.ParseFloat(strings.TrimSpace(parts[2]), 64)
	if err != nil || !(l > 0) || math.IsInf(l, 0) {
		return inventory.Cluster{}, fmt.Errorf("add cluster %q: capacity load must be a positive number", s)
	}
	c := inventory.Cluster{
		Name:     name,
		Health:   inventory.Healthy,
		Capacity: inventory.Capacity{Bytes: b, Load: l},
	}
	if len(parts) == 4 && parts[3] != "" {
		c.Tags = map[string]string{}
		for _, kv := range strings.Split(parts[3], ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || strings.TrimSpace(k) == "" {
				return inventory.Cluster{}, fmt.Errorf("add cluster %q: tag %q: want key=value", s, kv)
			}
			c.Tags[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return c, nil
}
