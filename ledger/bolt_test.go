package ledger

import (
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
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
