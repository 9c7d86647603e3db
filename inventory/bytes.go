package inventory

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

var byteUnits = map[string]float64{
	"":    1,
	"b":   1,
	"k":   1e3,
	"kb":  1e3,
	"m":   1e6,
	"mb":  1e6,
	"g":   1e9,
	"gb":  1e9,
	"t":   1e12,
	"tb":  1e12,
	"p":   1e15,
	"pb":  1e15,
	"kib": 1 << 10,
	"mib": 1 << 20,
	"gib": 1 << 30,
	"tib": 1 << 40,
	"pib": 1 << 50,
}

// ParseBytes parses a byte size: a plain integer ("1048576") or a number with
// a decimal ("2TB", "1.5GB") or binary ("500GiB") unit, case-insensitive, with
// optional space before the unit. Negative sizes are rejected, and so are
// fractions of a byte ("1.5", "2.5B").
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if n, err := strconv.ParseInt(t, 10, 64); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("size %q is negative", s)
		}
		return n, nil
	}
	i := strings.IndexFunc(t, func(r rune) bool {
		return !(r >= '0' && r <= '9' || r == '.' || r == '-' || r == '+')
	})
	if i < 0 {
		i = len(t)
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	mult, ok := byteUnits[unit]
	if !ok {
		return 0, fmt.Errorf("size %q: unknown unit %q (say B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)", s, t[i:])
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(f) {
		return 0, fmt.Errorf("size %q is not a number with an optional unit such as 500GiB", s)
	}
	if f < 0 {
		return 0, fmt.Errorf("size %q is negative", s)
	}
	if mult == 1 && f != math.Trunc(f) {
		// A plain "1.5" is no byte count (often a load in the wrong
		// column); a fraction needs a unit that makes it whole.
		return 0, fmt.Errorf("size %q: a number of bytes is whole; with a fraction say a unit (1.5GB, 1.5GiB)", s)
	}
	v := math.Round(f * mult)
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return int64(v), nil
}

// FormatBytes renders n with a binary unit and three significant digits,
// e.g. "512 B", "1.50 GiB", "12.3 TiB".
func FormatBytes(n int64) string {
	if n < 0 {
		return "-" + FormatBytes(-n)
	}
	if n < 1024 {
		return strconv.FormatInt(n, 10) + " B"
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	f := float64(n) / 1024
	u := 0
	for f >= 1023.95 && u < len(units)-1 {
		f /= 1024
		u++
	}
	switch {
	case f >= 99.95:
		return fmt.Sprintf("%.0f %s", f, units[u])
	case f >= 9.995:
		return fmt.Sprintf("%.1f %s", f, units[u])
	default:
		return fmt.Sprintf("%.2f %s", f, units[u])
	}
}

// FormatRate renders a rate in bytes per second as FormatBytes does, with
// "/s": "975 KiB/s", "1.30 MiB/s". mailferry shows every byte count and
// rate in text through FormatBytes and FormatRate, so one unit system
// (IEC) is on screen.
func FormatRate(bytesPerSecond float64) string {
	if bytesPerSecond != bytesPerSecond || bytesPerSecond < 0 { // NaN (no time yet), negative
		bytesPerSecond = 0
	}
	return FormatBytes(int64(bytesPerSecond+0.5)) + "/s"
}
