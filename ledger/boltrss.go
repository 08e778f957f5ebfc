package ledger

import (
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The embedded ledger reads its file through a shared read-only memory map
// (bbolt). Every page a transaction touches stays mapped into the process,
// and the kernel counts it in the process's resident set (RssFile): without
// care, rotator's peak RSS grows with the size of the ledger file, that is
// with the number of objects a run records, although none of that memory
// is the process's own (it is the kernel's page cache, clean and
// reclaimable). A trimmer drops those pages from the process's map now and
// then (madvise MADV_DONTNEED, Linux): the file's pages stay in the page
// cache, and the next read of one maps it again, so peak RSS stays flat
// however many objects a run records.
//
// It is safe with transactions running: the map is read-only and shared, so
// a dropped page is read again from the page cache, which always holds what
// bbolt wrote (bbolt writes with pwrite, never through the map). It runs
// inside a read transaction, which holds bbolt's map lock: the map cannot
// move (a file that grows is mapped anew) while it is trimmed.

// rssTrimInterval is how often the trimmer runs.
const rssTrimInterval = time.Second

type rssTrimmer struct {
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// startRSSTrimmer trims db's map every interval until stop is called. Where
// the platform offers no way to (dropMapped reports false), it does
// nothing.
func startRSSTrimmer(db *bolt.DB, interval time.Duration) *rssTrimmer {
	t := &rssTrimmer{stop: make(chan struct{}), done: make(chan struct{})}
	if !canDropMapped {
		close(t.done)
		return t
	}
	go func() {
		defer close(t.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-t.stop:
				return
			case <-tick.C:
				trimMapped(db)
			}
		}
	}()
	return t
}

// trimMapped drops db's mapped pages from the process's resident set.
// Errors are ignored: a failed trim only leaves memory resident.
func trimMapped(db *bolt.DB) {
	_ = db.View(func(tx *bolt.Tx) error {
		info := db.Info()
		if size := tx.Size(); size > 0 {
			dropMapped(info.Data, uintptr(size))
		}
		return nil
	})
}

// Stop ends the trimmer and waits for it.
func (t *rssTrimmer) Stop() {
	if t == nil {
		return
	}
	t.once.Do(func() { close(t.stop) })
	<-t.done
}
