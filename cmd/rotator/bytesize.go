package main

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// byteSize is a flag for a number of bytes: a plain number (16777216) or a
// number with a unit (16MiB, 5GB, 1.5GiB, 512k). Units: B; KiB, MiB, GiB,
// TiB (powers of 1024) and their one-letter forms K, M, G, T; KB, MB, GB,
// TB (powers of 1000). Case does not matter; a space before the unit is
// allowed.
type byteSize struct{ p *int64 }

func (b byteSize) String() string {
	if b.p == nil || *b.p == 0 {
		return ""
	}
	return sizeString(*b.p)
}

func (b byteSize) Set(s string) error {
	n, err := parseByteSize(s)
	if err != nil {
		return err
	}
	*b.p = n
	return nil
}

var byteUnits = map[string]float64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
}

var errByteSize = errors.New("want a number of bytes such as 16777216, 16MiB, 5GB or 1.5GiB")

// parseByteSize reads a byte size (see byteSize).
func parseByteSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return !(r >= '0' && r <= '9' || r == '.' || r == '_') })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	}
	mult, ok := byteUnits[unit]
	if !ok || num == "" {
		return 0, fmt.Errorf("%q: %w", s, errByteSize)
	}
	if n, err := strconv.ParseInt(strings.ReplaceAll(num, "_", ""), 10, 64); err == nil && mult == 1 {
		return n, nil
	}
	f, err := strconv.ParseFloat(strings.ReplaceAll(num, "_", ""), 64)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", s, errByteSize)
	}
	v := math.Round(f * mult)
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("%q: too large", s)
	}
	if f != 0 && v == 0 || v != f*mult && mult == 1 {
		return 0, fmt.Errorf("%q: not a whole number of bytes", s)
	}
	return int64(v), nil
}

// sizeString is n in the largest binary unit that shows it exactly
// (16MiB, 1536KiB), or in bytes.
func sizeString(n int64) string {
	for _, u := range []struct {
		name string
		mult int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10)
}
