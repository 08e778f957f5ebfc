package inventory

import (
	"slices"
	"strings"
	"time"
)

// markNoInstructionFile sets Item.NoInstructionFile (and ListedAt) on the
// items of one page of a listing whose KEY+suffix the page shows missing:
// the page is in key order, so KEY+suffix, if it existed, would be listed
// in the page after KEY and before the first key above it. An item whose
// KEY+suffix would come after the page's last key is not marked, unless
// the page is the partition's last (last). A key whose KEY+suffix is
// listed is not marked either, even when that is a delete marker: the
// reader then looks. A page out of order (a server that does not sort)
// marks nothing. Delete markers and keys that end with the suffix are
// never marked.
func markNoInstructionFile(items []Item, suffix string, last bool, at time.Time) {
	if suffix == "" || len(items) == 0 {
		return
	}
	if !slices.IsSortedFunc(items, func(a, b Item) int { return strings.Compare(a.Key, b.Key) }) {
		return
	}
	for i := range items {
		it := &items[i]
		it.ListedAt = at
		if it.DeleteMarker || strings.HasSuffix(it.Key, suffix) {
			continue
		}
		// The first key at or above KEY+suffix, from this item on.
		j := i + 1 + sortSearchJoined(items[i+1:], it.Key, suffix)
		switch {
		case j < len(items) && items[j].Key == it.Key+suffix:
			// listed: the reader reads it
		case j < len(items) || last:
			it.NoInstructionFile = suffix
		}
	}
}

// sortSearchJoined returns the index of the first item whose key is at or
// above a+b (items in key order), without building a+b.
func sortSearchJoined(items []Item, a, b string) int {
	lo, hi := 0, len(items)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if compareJoined(items[m].Key, a, b) < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// compareJoined compares s with a+b as strings.Compare does.
func compareJoined(s, a, b string) int {
	n := min(len(s), len(a))
	if c := strings.Compare(s[:n], a[:n]); c != 0 || n < len(a) {
		if c != 0 {
			return c
		}
		return -1 // s is a proper prefix of a
	}
	return strings.Compare(s[n:], b)
}
