package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/pipeline"
)

// /dev/null is a character device but no terminal: no progress line, no
// console format, no colours for it.
func TestIsTerminalIsNotFooledByDevNull(t *testing.T) {
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) {
		t.Error("isTerminal(/dev/null) = true")
	}
	if isTerminal(&bytes.Buffer{}) {
		t.Error("isTerminal(buffer) = true")
	}
}

// The progress line fits the terminal at every width (a line as wide as
// the terminal wraps, and every redraw then scrolls), shows the listing
// apart from the processing, and an ETA only once the total is known.
func TestProgressLineFitsTheWidth(t *testing.T) {
	listing := progress{elapsed: 10 * time.Second, listed: 1234567, done: 345678, rate: 34567.8, eta: -1,
		c: counts{Succeeded: 340000, Skipped: 5000, Failed: 678, Changed: 3}}
	withPlan := listing
	withPlan.total, withPlan.source, withPlan.eta = 5000000, "plan", 2*time.Minute+15*time.Second
	listed := listing
	listed.listingDone, listed.total, listed.source, listed.eta = true, 1234567, "listing", 25*time.Second
	for _, w := range []int{20, 40, 60, 80, 100, 120, 200} {
		for name, p := range map[string]progress{"listing": listing, "plan": withPlan, "listed": listed} {
			l := progressLine(p, w)
			if len(l) >= w {
				t.Errorf("%s at width %d: %d characters: %q", name, w, len(l), l)
			}
			if strings.ContainsAny(l, "\r\n") {
				t.Errorf("%s: a line break in %q", name, l)
			}
			if w >= 80 {
				if !strings.Contains(l, "done 345,678") {
					t.Errorf("%s at width %d: no count of objects done: %q", name, w, l)
				}
				if name == "listing" && (!strings.Contains(l, "listing: 1,234,567 found") || strings.Contains(l, "ETA")) {
					t.Errorf("while listing without a total at width %d, want the listing count and no ETA: %q", w, l)
				}
				if name == "plan" && (!strings.Contains(l, "ETA 2m15s") || !strings.Contains(l, "/5,000,000")) {
					t.Errorf("with the plan's total at width %d, want it and an ETA: %q", w, l)
				}
				if name == "listed" && (strings.Contains(l, "listing") || !strings.Contains(l, "ETA 25s") || !strings.Contains(l, "27%")) {
					t.Errorf("after the listing at width %d: %q", w, l)
				}
			}
		}
	}
	if l := progressLine(withPlan, 200); !strings.Contains(l, "[") || !strings.Contains(l, "fail") {
		t.Errorf("a wide line has a bar and the failures: %q", l)
	}
}

// The total comes from the listing once it is done, before that from a
// plan or an estimate; the rate counts this process's objects only.
func TestProgressTotals(t *testing.T) {
	s := &pipeline.Stats{}
	s.Done.Store(1000) // a resumed run
	u := newProgressUI(sessionOf(t.Context()), zerolog.Nop(), outputFlags{}, s)
	u.total = func() (int64, string, bool) { return 5000, "plan", true }
	u.began, u.doneAt0 = time.Now().Add(-10*time.Second), 1000
	s.Listed.Store(2000)
	s.Done.Store(2000)
	p := u.snapshot()
	if p.total != 5000 || p.source != "plan" || p.rate < 99 || p.rate > 101 || p.eta < 29*time.Second || p.eta > 31*time.Second {
		t.Errorf("with a plan: %+v", p)
	}
	s.ListingDone.Store(true)
	if p := u.snapshot(); p.total != 2000 || p.source != "listing" || p.eta != -1 {
		t.Errorf("after the listing: %+v", p)
	}
	u.total = nil
	s.ListingDone.Store(false)
	if p := u.snapshot(); p.total != 0 || p.eta != -1 {
		t.Errorf("no total known: %+v", p)
	}
	m := u.status()
	if m.Phase != "listing" || m.ObjectsTotal != 0 || m.ETASeconds != 0 || m.ObjectsDone != 2000 {
		t.Errorf("status while listing: %+v", m)
	}
}

// Log lines written while the progress line shows erase it first and draw
// it again after: the line stays last and is redrawn in place.
func TestSinkKeepsTheProgressLineLast(t *testing.T) {
	var buf bytes.Buffer
	s := &sink{w: &buf}
	s.draw("done 1")
	_, _ = s.Write([]byte("a log line\n"))
	s.draw("done 2")
	s.done()
	want := eraseLine + "done 1" + eraseLine + "a log line\n" + "done 1" + eraseLine + "done 2" + "\n"
	if buf.String() != want {
		t.Errorf("got %q\nwant %q", buf.String(), want)
	}
}

// A --list run estimates its total from the share of the list read; a
// plan file gives it outright; a bucket listing has none before its end.
func TestExpectedTotal(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	for i := range 400 {
		b.WriteString("bucket,key-" + strings.Repeat("x", i%7) + "\n")
	}
	list := dir + "/list.csv"
	if err := os.WriteFile(list, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	l := &inventory.CSVList{Path: list}
	stats := &pipeline.Stats{}
	total := expectedTotal(l, "", stats)
	if _, _, ok := total(); ok {
		t.Error("a total before the list is read")
	}
	if err := l.Stream(t.Context(), func(inventory.Item) error { stats.Listed.Add(1); return nil }); err != nil {
		t.Fatal(err)
	}
	if n, src, ok := total(); !ok || n != 400 || src != "list" {
		t.Errorf("after the list: %d %q %v, want 400 list", n, src, ok)
	}
	plan := dir + "/plan.json"
	if err := os.WriteFile(plan, []byte(`{"message_type":"plan","objects":1234}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if n, src, ok := expectedTotal(l, plan, stats)(); !ok || n != 1234 || src != "plan" {
		t.Errorf("from a plan: %d %q %v", n, src, ok)
	}
	if expectedTotal(&inventory.Listing{}, "", stats) != nil {
		t.Error("a bucket listing has an estimated total")
	}
	if _, err := readPlanTotal(list); err == nil || !strings.Contains(err.Error(), "rotator plan --json") {
		t.Errorf("a file that is no plan: %v", err)
	}
}
