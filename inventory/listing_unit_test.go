package inventory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

// fakeTree is a bucket with keys at several levels: directly under the
// root, one and two levels down, keys that sort around the delimiter.
func fakeTree() (*fakeS3, []string) {
	f := &fakeS3{}
	var keys []string
	add := func(k string) {
		f.put(k, false)
		keys = append(keys, k)
	}
	for _, k := range []string{"0", "a", "a.txt", "a0", "b", "z-last"} {
		add(k)
	}
	for p := range 5 {
		for i := range 7 {
			add(fmt.Sprintf("p%d/k%02d", p, i))
			add(fmt.Sprintf("p%d/s%d/k%02d", p, i%3, i))
		}
	}
	add("p0/deep/er/still/k")
	add("q/")   // a key equal to a prefix
	add("q//x") // an empty level
	slices.Sort(keys)
	return f, keys
}

func TestFakeListingFanOut(t *testing.T) {
	f, keys := fakeTree()
	for _, depth := range []int{0, 1, 2, 3, 5} {
		for _, maxKeys := range []int32{0, 1, 3} {
			t.Run(fmt.Sprintf("depth=%d/maxkeys=%d", depth, maxKeys), func(t *testing.T) {
				noLeaks(t)
				l := &Listing{Client: f, Bucket: "b", Depth: depth, MaxKeys: maxKeys, Options: Options{Workers: 3}}
				items := collect(t, l)
				sameIDs(t, ids(items), keys)
				checkPartitionOrder(t, items)
				if depth == 0 && !slices.IsSortedFunc(items, func(a, b Item) int { return cmpString(a.Key, b.Key) }) {
					t.Error("a listing without fan-out is not in key order")
				}
				for _, it := range items {
					if it.Bucket != "b" || !it.IsLatest || it.VersionID != "" || it.ETag != `"e"` {
						t.Fatalf("item %+v", it)
					}
				}
			})
		}
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestFakeListingPrefixAndExclude(t *testing.T) {
	f, _ := fakeTree()
	f.put("p1/k00.instruction", false)
	f.put("p1/s0/k00.instruction", false)
	l := &Listing{Client: f, Bucket: "b", Prefix: "p1/", Depth: 1, MaxKeys: 2, Options: Options{ExcludeSuffix: ".instruction"}}
	items := collect(t, l)
	if len(items) != 14 {
		t.Errorf("got %d items under p1/, want 14: %v", len(items), ids(items))
	}
	if l.Excluded() != 2 {
		t.Errorf("excluded %d, want 2", l.Excluded())
	}
}

// versionTree adds overwritten keys, deleted keys and keys deleted and
// written again.
func versionTree() (*fakeS3, []string) {
	f, _ := fakeTree()
	f.put("p2/k01", false)
	f.put("p2/k01", false)
	f.put("p3/k02", true)
	f.put("a", true)
	f.put("a", false)
	f.put("p4/s1/k01", true)
	var want []string
	for _, e := range f.entries {
		want = append(want, itemID(Item{Key: e.key, VersionID: e.version, DeleteMarker: e.dm}))
	}
	slices.Sort(want)
	return f, want
}

func TestFakeListingVersions(t *testing.T) {
	f, want := versionTree()
	for _, depth := range []int{0, 1, 2} {
		for _, maxKeys := range []int32{0, 1, 2} {
			t.Run(fmt.Sprintf("depth=%d/maxkeys=%d", depth, maxKeys), func(t *testing.T) {
				l := &Listing{Client: f, Bucket: "b", AllVersions: true, Depth: depth, MaxKeys: maxKeys}
				items := collect(t, l)
				sameIDs(t, ids(items), want)
				checkPartitionOrder(t, items)
				latest := map[string]int{}
				for _, it := range items {
					if it.IsLatest {
						latest[it.Key]++
					}
				}
				for k, n := range latest {
					if n != 1 {
						t.Errorf("%s has %d latest versions", k, n)
					}
				}
			})
		}
	}
}

func TestMergeVersions(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	v := func(k, id string, latest bool, s int) Item {
		return Item{Key: k, VersionID: id, IsLatest: latest, LastModified: t0.Add(time.Duration(s) * time.Second)}
	}
	dm := func(k, id string, latest bool, s int) Item {
		it := v(k, id, latest, s)
		it.DeleteMarker = true
		return it
	}
	got := mergeVersions(
		[]Item{v("a", "a3", true, 3), v("a", "a1", false, 1), v("b", "b2", false, 2), v("c", "c1", true, 1)},
		[]Item{dm("a", "a2", false, 2), dm("b", "b3", true, 2), dm("bb", "bb1", true, 1)})
	var order []string
	for _, it := range got {
		order = append(order, it.VersionID)
	}
	want := []string{"a3", "a2", "a1", "b3", "b2", "bb1", "c1"}
	if !slices.Equal(order, want) {
		t.Errorf("merged %v, want %v", order, want)
	}
}

func TestFakeListingResume(t *testing.T) {
	for _, versions := range []bool{false, true} {
		for _, depth := range []int{0, 1, 2} {
			for _, stop := range []int{1, 17, 60} {
				t.Run(fmt.Sprintf("versions=%v/depth=%d/stop=%d", versions, depth, stop), func(t *testing.T) {
					f, want := versionTree()
					if !versions {
						_, want = fakeTree()
						want = slices.DeleteFunc(want, func(k string) bool { return k == "p3/k02" || k == "p4/s1/k01" })
					}
					mk := func(after []string) Source {
						return &Listing{Client: f, Bucket: "b", AllVersions: versions, Depth: depth, MaxKeys: 4,
							Options: Options{Workers: 2, After: after}}
					}
					run1, run2 := interruptAndResume(t, mk(nil), stop, mk)
					all := append(ids(run1), ids(run2)...)
					slices.Sort(all)
					all = slices.Compact(all)
					sameIDs(t, all, want)
					// Everything delivered was done: nothing comes twice but
					// delete markers.
					seen := map[string]bool{}
					for _, it := range run1 {
						seen[itemID(it)] = true
					}
					for _, it := range run2 {
						if seen[itemID(it)] && !it.DeleteMarker {
							t.Errorf("%s delivered again", itemID(it))
						}
					}
				})
			}
		}
	}
}

func TestFakeListingResumeRejectsOtherPositions(t *testing.T) {
	f, _ := fakeTree()
	var pos string
	errStop := errors.New("stop")
	_ = (&Listing{Client: f, Bucket: "b", Depth: 1}).Stream(context.Background(), func(it Item) error {
		pos = it.Position
		return errStop
	})
	for name, l := range map[string]*Listing{
		"depth":    {Client: f, Bucket: "b", Depth: 2},
		"versions": {Client: f, Bucket: "b", Depth: 1, AllVersions: true},
		"bucket":   {Client: f, Bucket: "c", Depth: 1},
		"prefix":   {Client: f, Bucket: "b", Prefix: "p", Depth: 1},
	} {
		l.After = []string{pos}
		err := l.Stream(context.Background(), func(Item) error { return nil })
		if !errors.Is(err, ErrPosition) {
			t.Errorf("%s: %v, want ErrPosition", name, err)
		}
	}
	l := &Listing{Client: f, Bucket: "b", Options: Options{After: []string{"garbage"}}}
	if err := l.Stream(context.Background(), func(Item) error { return nil }); !errors.Is(err, ErrPosition) {
		t.Errorf("garbage position: %v", err)
	}
	l = &Listing{Client: f, Bucket: "b", Options: Options{After: []string{"1 c x#1 0"}}}
	if err := l.Stream(context.Background(), func(Item) error { return nil }); !errors.Is(err, ErrPosition) {
		t.Errorf("a list's position: %v", err)
	}
}

func TestProgress(t *testing.T) {
	pos := func(part string, n int) Item { return Item{Position: fmt.Sprintf("%s#%d", part, n)} }
	p := NewProgress([]string{"old#9"})
	a1, a2, a3 := p.Begin(pos("a", 1)), p.Begin(pos("a", 2)), p.Begin(pos("a", 3))
	b1 := p.Begin(pos("b", 1))
	none := p.Begin(Item{})
	p.Done(none)
	if got := p.Positions(); !slices.Equal(got, []string{"old#9"}) {
		t.Errorf("nothing done: %v", got)
	}
	p.Done(a2)
	p.Done(b1)
	if got := p.Positions(); !slices.Equal(got, []string{"b#1", "old#9"}) {
		t.Errorf("a2 and b1 done: %v", got)
	}
	p.Done(a1)
	p.Done(a1)
	if got := p.Positions(); !slices.Equal(got, []string{"a#2", "b#1", "old#9"}) {
		t.Errorf("a1 done: %v", got)
	}
	p.Done(a3)
	if got := p.Positions(); !slices.Equal(got, []string{"a#3", "b#1", "old#9"}) {
		t.Errorf("all done: %v", got)
	}
}

// TestProgressFolds: what DoneThen folds is exactly what the positions
// account for, whatever order items are done in.
func TestProgressFolds(t *testing.T) {
	pos := func(n int) Item { return Item{Position: fmt.Sprintf("a#%d", n)} }
	p := NewProgress(nil)
	var ts []*Ticket
	for i := range 5 {
		ts = append(ts, p.Begin(pos(i)))
	}
	var folded []int
	done := func(i int) { p.DoneThen(ts[i], func() { folded = append(folded, i) }) }
	snap := func() (out []string, n int) {
		p.Snapshot(func(ps []string) { out, n = ps, len(folded) })
		return
	}
	done(3)
	done(1)
	if ps, n := snap(); len(ps) != 0 || n != 0 {
		t.Fatalf("items behind the first still in flight: positions %v, %d folded", ps, n)
	}
	done(0)
	if ps, n := snap(); !slices.Equal(ps, []string{"a#1"}) || n != 2 || !slices.Equal(folded, []int{0, 1}) {
		t.Fatalf("0 and 1 done: positions %v, folded %v", ps, folded)
	}
	done(0) // again: no second fold
	done(2)
	done(4)
	if ps, n := snap(); !slices.Equal(ps, []string{"a#4"}) || n != 5 || !slices.Equal(folded, []int{0, 1, 2, 3, 4}) {
		t.Fatalf("all done: positions %v, folded %v", ps, folded)
	}
	calls := 0
	p.DoneThen(p.Begin(Item{}), func() { calls++ })
	if calls != 1 {
		t.Fatalf("an item without a position folds at once: %d calls", calls)
	}
}

func TestFakeListingCancel(t *testing.T) {
	for _, depth := range []int{0, 1, 2} {
		t.Run(fmt.Sprintf("depth=%d", depth), func(t *testing.T) {
			noLeaks(t)
			f, _ := fakeTree()
			// After a few requests every request hangs until cancelled.
			f.hook = func(ctx context.Context) error {
				if f.requests.Load() > 5 {
					<-ctx.Done()
				}
				return nil
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			l := &Listing{Client: f, Bucket: "b", Depth: depth, MaxKeys: 2, Options: Options{Workers: 4}}
			go func() { done <- l.Stream(ctx, func(Item) error { return nil }) }()
			time.Sleep(20 * time.Millisecond)
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("stream: %v, want context.Canceled", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("stream did not stop after cancel")
			}
		})
	}
}

func TestFakeListingConsumerStops(t *testing.T) {
	noLeaks(t)
	f, _ := fakeTree()
	errStop := errors.New("consumer stops")
	n := 0
	l := &Listing{Client: f, Bucket: "b", Depth: 2, MaxKeys: 1, Options: Options{Workers: 4}}
	err := l.Stream(context.Background(), func(Item) error {
		n++
		if n == 10 {
			return errStop
		}
		return nil
	})
	if err != errStop {
		t.Errorf("stream: %v, want the consumer's error as is", err)
	}
	// Send: the consumer side of a pipeline stops reading.
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan Item)
	done := make(chan error, 1)
	go func() { done <- Send(ctx, l, ch) }()
	<-ch
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("send: %v, want context.Canceled", err)
	}
	if _, open := <-ch; open {
		t.Error("send did not close its channel")
	}
}

func TestFakeListingErrors(t *testing.T) {
	f, _ := fakeTree()
	boom := errors.New("boom")
	f.hook = func(context.Context) error {
		if f.requests.Load() == 3 {
			return boom
		}
		return nil
	}
	l := &Listing{Client: f, Bucket: "b", Prefix: "p", Depth: 1, MaxKeys: 2}
	err := l.Stream(context.Background(), func(Item) error { return nil })
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, boom) || e.Bucket != "b" || e.Op != "list" {
		t.Fatalf("stream: %#v", err)
	}
	for _, l := range []*Listing{{Bucket: "b"}, {Client: f, Bucket: ""}, {Client: f, Bucket: "b", Depth: -1},
		{Client: f, Bucket: "b", Options: Options{Shard: Shard{Index: 2, Count: 2}}}} {
		if err := l.Stream(context.Background(), func(Item) error { return nil }); err == nil {
			t.Errorf("%+v: no error", l)
		}
	}
}
