package ledger

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// markSchema writes an empty bbolt file at path marked schema v, as an
// earlier rotator leaves a new file before its first write.
func markSchema(t testing.TB, path, v string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		return meta.Put([]byte("schema"), []byte(v))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// boltStoreSchema2 is boltStore on a file of schema 2: the whole contract
// on the keys of schema 2 (names in clear), as files an earlier rotator
// wrote are used.
func boltStoreSchema2(t testing.TB) func(opts ...Option) Ledger {
	path := filepath.Join(t.TempDir(), "ledger.db")
	markSchema(t, path, "2")
	return func(opts ...Option) Ledger {
		l, err := Open(ctx, path, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
}

func TestBoltSchema2(t *testing.T) {
	t.Parallel()
	testContract(t, boltStoreSchema2, true)
}

// rawKeys returns the keys of a bucket of the file at path, split.
func rawKeys(t *testing.T, path string, bucket []byte) [][]string {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var out [][]string
	err = db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, _ []byte) error {
			parts, err := splitTuple(k)
			out = append(out, parts)
			return err
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func schemaOf(t *testing.T, path string) string {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v string
	err = db.View(func(tx *bolt.Tx) error { v = string(tx.Bucket(bucketMeta).Get([]byte("schema"))); return nil })
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestBoltKeysBySchema: a new file is of schema 3, whose keys name the
// bucket, the run id and the operation by dictionary id; a file of schema
// 2 keeps its schema and its keys (names in clear) for every record
// written to it. Both read back the same after a reopen.
func TestBoltKeysBySchema(t *testing.T) {
	for _, tc := range []struct {
		schema string
		clear  bool // names in clear in the keys
	}{{"3", false}, {"2", true}} {
		t.Run("schema="+tc.schema, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ledger.db")
			if tc.schema == "2" {
				markSchema(t, path, "2")
			}
			l, err := Open(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			a := newS3Object("keys/a", false)
			mustObserve(t, l, observed(a.id(), keyA))
			processLean(t, l, a, ownr("run-1"), 1)
			b := newS3Object("keys/b", true)
			processLean(t, l, b, ownr("run-1"), 1)
			// An intent left open.
			c := newS3Object("keys/c", false)
			ev, _ := c.rewrapEvent("run-2", 1)
			if _, err := l.Begin(ctx, ownr("run-2"), time.Hour, ev); err != nil {
				t.Fatal(err)
			}
			check := func(l Ledger) {
				t.Helper()
				if evs := lineageOf(t, l, a.id()); len(evs) != 1 || evs[0].RunID != "run-1" || evs[0].ToKey != keyB {
					t.Fatalf("lineage of a: %+v", evs)
				}
				if got := byKey(t, l, keyB); len(got) != 2 {
					t.Fatalf("key B lists %v", got)
				}
				if p := listPrepared(t, l, "run-2"); len(p) != 1 || p[0].ID != c.id() || p[0].Op != OpRewrap {
					t.Fatalf("intents of run-2: %+v", p)
				}
				if got := mustGet(t, l, b.id()); got.WrapKey != keyB || got.ID != b.id() {
					t.Fatalf("record of b: %+v", got)
				}
				n := 0
				if err := l.Events(ctx, func(ev Event) error { n++; return nil }); err != nil || n != 2 {
					t.Fatalf("events: %d, %v", n, err)
				}
			}
			check(l)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if v := schemaOf(t, path); v != tc.schema {
				t.Fatalf("schema %q, want %q", v, tc.schema)
			}
			for _, bk := range []struct {
				name  []byte
				names []int // components that are names
			}{{bucketObjects, []int{0}}, {bucketEvents, []int{0, 3, 4}}, {bucketPrep, []int{0, 1, 4}}, {bucketByKey, []int{1}}} {
				keys := rawKeys(t, path, bk.name)
				if len(keys) == 0 {
					t.Fatalf("%s: no keys", bk.name)
				}
				for _, parts := range keys {
					for _, i := range bk.names {
						known := parts[i] == "data-bucket" || parts[i] == "run-1" || parts[i] == "run-2" || parts[i] == OpRewrap
						if known != tc.clear || len(parts[i]) > 2 && !tc.clear {
							t.Errorf("%s key %q: component %d in clear %v, want %v", bk.name, parts, i, known, tc.clear)
						}
					}
				}
			}
			l, err = Open(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			check(l)
		})
	}
}

// TestBoltReadOnlyUnknownNames: reads of names a file of schema 3 never
// stored find nothing (and add nothing to its dictionary).
func TestBoltReadOnlyUnknownNames(t *testing.T) {
	l := boltStore(t)().(*boltLedger)
	processLean(t, l, newS3Object("known", false), ownr("run-1"), 1)
	other := ObjectID{Bucket: "other-bucket", Key: "known"}
	if _, err := l.Get(ctx, other); err == nil {
		t.Fatal("get in an unknown bucket found a record")
	}
	if evs := lineageOf(t, l, other); len(evs) != 0 {
		t.Fatalf("lineage in an unknown bucket: %+v", evs)
	}
	if p := listPrepared(t, l, "run-unknown"); len(p) != 0 {
		t.Fatalf("intents of an unknown run: %+v", p)
	}
	if got := byKey(t, l, keyC); len(got) != 0 {
		t.Fatalf("unknown key lists %v", got)
	}
	err := l.db.View(func(tx *bolt.Tx) error {
		c := l.codec(tx)
		for _, s := range []string{"other-bucket", "run-unknown"} {
			if _, ok := c.lookup(s); ok {
				t.Errorf("%q added to the dictionary by a read", s)
			}
		}
		if !bytes.Equal(c.prepRunPrefix("run-unknown"), tupleKey("")) {
			t.Errorf("prefix of an unknown run: %q", c.prepRunPrefix("run-unknown"))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// BenchmarkCommitBoltSchema2 is BenchmarkCommitBolt on a file of schema
// 2, whose keys hold names instead of dictionary numbers.
func BenchmarkCommitBoltSchema2(b *testing.B) { benchCommit(b, boltStoreSchema2(b)) }
