package inventory

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// collect streams src and returns every item.
func collect(t testing.TB, src Source) []Item {
	t.Helper()
	var items []Item
	if err := src.Stream(context.Background(), func(it Item) error {
		items = append(items, it)
		return nil
	}); err != nil {
		t.Fatalf("stream: %v", err)
	}
	return items
}

// ids names items as key or key@version (delete markers with a trailing
// "!"), sorted.
func ids(items []Item) []string {
	out := make([]string, 0, len(items))
	for _, it := range items {
		out = append(out, itemID(it))
	}
	sort.Strings(out)
	return out
}

func itemID(it Item) string {
	s := it.Key
	if it.VersionID != "" {
		s += "@" + it.VersionID
	}
	if it.DeleteMarker {
		s += "!"
	}
	return s
}

// checkPartitionOrder checks that the items of each partition came in key
// order and that keys are not repeated across partitions (but versions
// of a key follow each other).
func checkPartitionOrder(t *testing.T, items []Item) {
	t.Helper()
	last := map[string]string{}
	owner := map[string]string{}
	for _, it := range items {
		p := partitionID(it.Position)
		if p == "" {
			t.Fatalf("%s has no position", it)
		}
		if prev, ok := last[p]; ok && it.Key < prev {
			t.Errorf("partition %s: %q after %q", p, it.Key, prev)
		}
		last[p] = it.Key
		if o, ok := owner[it.Key]; ok && o != p {
			t.Errorf("key %q in two partitions: %s and %s", it.Key, o, p)
		}
		owner[it.Key] = p
	}
}

func sameIDs(t *testing.T, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("got %d items, want %d\n got: %s\nwant: %s", len(got), len(want), short(got), short(want))
	}
}

func short(s []string) string {
	if len(s) > 40 {
		return strings.Join(s[:40], " ") + fmt.Sprintf(" ... (%d more)", len(s)-40)
	}
	return strings.Join(s, " ")
}

// interruptAndResume streams src until stop items were delivered (every
// one of them done, in a scrambled order), then resumes a second source,
// made by again from the positions, and returns the items of both runs.
func interruptAndResume(t *testing.T, first Source, stop int, again func(after []string) Source) (run1, run2 []Item) {
	t.Helper()
	errStop := errors.New("stop")
	p := NewProgress(nil)
	var tickets []*Ticket
	err := first.Stream(context.Background(), func(it Item) error {
		if len(run1) == stop {
			return errStop
		}
		run1 = append(run1, it)
		tickets = append(tickets, p.Begin(it))
		return nil
	})
	if !errors.Is(err, errStop) {
		t.Fatalf("first run: %v, want the stop error", err)
	}
	// Complete in an order other than delivery.
	for i := len(tickets) - 1; i >= 0; i -= 2 {
		p.Done(tickets[i])
	}
	for i := len(tickets) - 2; i >= 0; i -= 2 {
		p.Done(tickets[i])
	}
	run2 = collect(t, again(p.Positions()))
	return run1, run2
}

// noLeaks fails t when goroutines started during the test are still
// running shortly after it (the HTTP client's idle connections aside).
func noLeaks(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		var n int
		for range 100 {
			if n = runtime.NumGoroutine(); n <= before {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Errorf("%d goroutines before, %d after:\n%s", before, n, buf)
	})
}
