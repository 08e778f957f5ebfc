package ledger

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// boltStore opens a fresh embedded ledger in t.TempDir(), alternating the
// two spellings of its location.
func boltStore(t testing.TB) func(opts ...Option) Ledger {
	path := filepath.Join(t.TempDir(), "ledger.db")
	var mu sync.Mutex
	n := 0
	return func(opts ...Option) Ledger {
		mu.Lock()
		loc := path
		if n%2 == 1 {
			loc = "bolt://" + path
		}
		n++
		mu.Unlock()
		l, err := Open(ctx, loc, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
}

func TestBolt(t *testing.T) {
	t.Parallel()
	testContract(t, boltStore, true)
}

func BenchmarkCommitBolt(b *testing.B) { benchCommit(b, boltStore(b)) }

func TestBoltSingleProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	l, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// The file lock: a second opener (here in the same process, as another
	// process would) is refused with a hint.
	_, err = Open(ctx, "bolt://"+path, withLockWait(50*time.Millisecond))
	if err == nil || !strings.Contains(err.Error(), "locked by another process") || !strings.Contains(err.Error(), "dynamodb://") {
		t.Fatalf("second open: got %v, want a lock error with a hint", err)
	}
}

func TestOpenLocations(t *testing.T) {
	for _, loc := range []string{"", "s3://bucket/ledger", "dynamodb://x", "dynamodb://", "dynamodb://table?create=yes", "dynamodb://table?region=eu-west-1", "bolt://"} {
		if l, err := Open(ctx, loc); err == nil {
			l.Close()
			t.Errorf("Open(%q) succeeded", loc)
		}
	}
}

// TestBoltGroupCommit: writes made at once share transactions; one whose
// function fails gets its error alone and leaves nothing, and every other
// write of its group is committed.
func TestBoltGroupCommit(t *testing.T) {
	l := boltStore(t)().(*boltLedger)
	bk := []byte("group-test")
	if err := l.db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket(bk); return err }); err != nil {
		t.Fatal(err)
	}
	const n = 300
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = l.write(func(tx *bolt.Tx) error {
				if err := tx.Bucket(bk).Put([]byte(fmt.Sprintf("k%03d", i)), []byte("v")); err != nil {
					return err
				}
				if i%7 == 0 {
					return fmt.Errorf("write %d fails", i)
				}
				return nil
			})
		}()
	}
	wg.Wait()
	// Fewer transactions than writes (each failure costs one more).
	if txs := l.txs.Load(); txs >= n {
		t.Errorf("%d writes in %d transactions: none shared", n, txs)
	} else {
		t.Logf("%d writes in %d transactions", n, txs)
	}
	err := l.db.View(func(tx *bolt.Tx) error {
		for i := range n {
			got := tx.Bucket(bk).Get([]byte(fmt.Sprintf("k%03d", i)))
			switch {
			case i%7 == 0 && (errs[i] == nil || got != nil):
				t.Errorf("write %d: error %v, value %q; want its error and nothing written", i, errs[i], got)
			case i%7 != 0 && (errs[i] != nil || got == nil):
				t.Errorf("write %d: error %v, value %q; want it committed", i, errs[i], got)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestBoltFileGrowth: the file stays within an eighth (or minGrow) and
// a page of the pages it holds as it grows (bbolt's default would keep it at its
// memory map's power of two, up to twice the data).
func TestBoltFileGrowth(t *testing.T) {
	l := boltStore(t)().(*boltLedger)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < 4000; i += 8 {
				obj, ev := flowObject("run-1", i)
				if _, err := l.Begin(ctx, ownr("run-1"), time.Hour, ev); err != nil {
					t.Error(err)
					return
				}
				ev.ETagAfter = ev.ETagBefore
				if err := l.Commit(ctx, ownr("run-1"), obj, ev); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	fi, err := os.Stat(l.db.Path())
	if err != nil {
		t.Fatal(err)
	}
	var data int64
	if err := l.db.View(func(tx *bolt.Tx) error { data = tx.Size(); return nil }); err != nil {
		t.Fatal(err)
	}
	// bbolt grows the file from one page past the high-water mark of the
	// write that needs the room, by the AllocSize growBy set from the
	// pages before that write.
	if limit := data + int64(l.db.Info().PageSize) + max(data/8, minGrow); fi.Size() > limit || fi.Size() < data {
		t.Fatalf("file of %d bytes for %d bytes of pages, want at most %d", fi.Size(), data, limit)
	}
	t.Logf("file %d bytes, pages %d (%.1f%% more)", fi.Size(), data, 100*float64(fi.Size()-data)/float64(data))

	// Closed, the file gives the room it did not fill back, and opens
	// again whole, for reads and for writes that grow it again.
	path := l.db.Path()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err = os.Stat(path); err != nil {
		t.Fatal(err)
	}
	if fi.Size() != data {
		t.Fatalf("closed: file of %d bytes for %d bytes of pages, want them equal", fi.Size(), data)
	}
	ll, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer ll.Close()
	l2 := ll.(*boltLedger)
	if err := l2.db.View(func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}); err != nil {
		t.Fatalf("reopened: %v", err)
	}
	for i := 4000; i < 4500; i++ {
		obj, ev := flowObject("run-2", i)
		if _, err := l2.Begin(ctx, ownr("run-2"), time.Hour, ev); err != nil {
			t.Fatal(err)
		}
		ev.ETagAfter = ev.ETagBefore
		if err := l2.Commit(ctx, ownr("run-2"), obj, ev); err != nil {
			t.Fatal(err)
		}
	}
	for _, i := range []int{0, 3999, 4499} {
		obj, _ := flowObject("run-x", i)
		if _, err := l2.Get(ctx, obj.ID); err != nil {
			t.Errorf("object %d after reopening: %v", i, err)
		}
	}
}
