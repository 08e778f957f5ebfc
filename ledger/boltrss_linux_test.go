package ledger

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// rssFileKiB reads the process's resident file-backed memory.
func rssFileKiB(t *testing.T) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "RssFile:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

// The embedded ledger's file, read through its map, leaves the process's
// resident set when trimmed, and reads the same afterwards.
func TestBoltTrimDropsMappedPages(t *testing.T) {
	l, err := openBolt(filepath.Join(t.TempDir(), "l.db"), options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.trim.Stop() // trimmed by hand below
	ctx := context.Background()
	const n = 20000
	pad := strings.Repeat("x", 1000)
	for i := 0; i < n; i += 500 {
		err := l.db.Update(func(tx *bolt.Tx) error {
			for j := i; j < i+500; j++ {
				if err := tx.Bucket(bucketRuns).Put(fmt.Appendf(nil, "r%06d", j), []byte(pad)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	readAll := func() {
		t.Helper()
		err := l.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketRuns).Cursor()
			got := 0
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if bytes.HasPrefix(k, []byte("r")) {
					if string(v) != pad {
						return fmt.Errorf("%s: read back %d bytes that differ", k, len(v))
					}
					got++
				}
			}
			if got != n {
				return fmt.Errorf("read %d records back, want %d", got, n)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	readAll()
	before := rssFileKiB(t)
	trimMapped(l.db)
	after := rssFileKiB(t)
	// 20,000 records of 1,000 bytes: some 20 MiB of pages were mapped.
	if drop := before - after; drop < 15<<10 {
		t.Errorf("trimming dropped %d KiB of mapped pages (RssFile %d -> %d KiB), want at least 15 MiB", drop, before, after)
	}
	readAll()
	if _, err := l.GetRun(ctx, "none"); err == nil {
		t.Error("a missing run was found")
	}
}

// The trimmer of an open ledger runs and stops with it.
func TestBoltTrimmerStops(t *testing.T) {
	l, err := openBolt(filepath.Join(t.TempDir(), "l.db"), options{})
	if err != nil {
		t.Fatal(err)
	}
	tr := startRSSTrimmer(l.db, time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	tr.Stop()
	tr.Stop() // twice is fine
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}
