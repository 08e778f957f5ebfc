package ledger

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// writeSchema1 writes an embedded ledger as rotator wrote it before
// compact records (schema 1: JSON records, the key index by wrap key):
// one object under keyA, one already rewrapped to keyB with its event,
// and a prepared event of an unfinished change.
func writeSchema1(t *testing.T, path string, obj, done Object, ev, prep Event) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	put := func(tx *bolt.Tx, bucket, k []byte, v any) {
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Bucket(bucket).Put(k, data); err != nil {
			t.Fatal(err)
		}
	}
	err = db.Update(func(tx *bolt.Tx) error {
		c := boltCodec{tx: tx} // keys of schema 1 and 2
		for _, name := range [][]byte{bucketObjects, bucketClaims, bucketEvents, bucketPrep, bucketByKey, bucketCounts, bucketRuns, bucketMeta, bucketUploads, bucketLeases} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		for _, o := range []Object{obj, done} {
			put(tx, bucketObjects, c.idKey(o.ID), toObjectRecord(o))
			if err := tx.Bucket(bucketByKey).Put(tupleKey(o.WrapKey, o.ID.Bucket, o.ID.Key, o.ID.VersionID), nil); err != nil {
				return err
			}
			if err := addCount(tx, o.WrapKey, 1); err != nil {
				return err
			}
		}
		put(tx, bucketEvents, c.eventKey(ev.ID, ev.RunID, ev.Op), toEventRecord(ev))
		put(tx, bucketPrep, c.prepKey(prep.ID, prep.RunID, prep.Op), toEventRecord(prep))
		put(tx, bucketClaims, c.idKey(prep.ID), boltClaim{Owner: ownr(prep.RunID), Run: prep.RunID, Expires: time.Now().Add(time.Hour).UnixMilli()})
		return tx.Bucket(bucketMeta).Put([]byte("schema"), []byte("1"))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestBoltReadsSchema1: a ledger file of schema 1 is read as it is (its
// records, index, counts, events and intents), is changed with compact
// records beside the old ones, and is marked schema 2 so that an older
// rotator refuses it; a file of an unknown schema is refused with a hint.
func TestBoltReadsSchema1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	obj := Object{ID: oid("old/a"), WrapKey: keyA, Format: "s3ec-v2", Placement: "metadata", CEKAlg: "AES/GCM/NoPadding",
		State: StateCurrent, ETag: `"e0"`, RunID: "inventory", UpdatedAt: at, WrappedKeySHA256: WrappedKeyFingerprint([]byte("a"))}
	doneObj, ev := change(oid("old/b"), "run1", keyA, keyB)
	doneObj.UpdatedAt, ev.At = at, at
	ev.VersionBefore = ev.ID.VersionID
	prep := Event{ID: oid("old/c"), RunID: "run1", Op: OpRewrap, Method: "kms-reencrypt", FromKey: keyA, ToKey: keyB,
		ETagBefore: `"e0"`, At: at, OldWrappedKeySHA256: WrappedKeyFingerprint([]byte("c")), NewWrappedKeySHA256: WrappedKeyFingerprint([]byte("c2"))}
	writeSchema1(t, path, obj, doneObj, ev, prep)

	l, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, l, obj.ID); got != obj {
		t.Fatalf("schema 1 record: %+v\nwant %+v", got, obj)
	}
	if evs := lineageOf(t, l, ev.ID); len(evs) != 1 || evs[0] != ev {
		t.Fatalf("schema 1 lineage: %+v\nwant %+v", evs, ev)
	}
	if p := listPrepared(t, l, "run1"); len(p) != 1 || p[0] != prep {
		t.Fatalf("schema 1 intent: %+v\nwant %+v", p, prep)
	}
	if got := byKey(t, l, keyA); len(got) != 1 || got[0] != obj.ID.Key+"@" {
		t.Fatalf("schema 1 index of key A: %v", got)
	}
	if c := counts(t, l); c[keyA] != 1 || c[keyB] != 1 {
		t.Fatalf("counts = %v", c)
	}
	// The old record is rewrapped with the lean calls: its index entry of
	// schema 1 goes, the compact one comes.
	o := newS3Object("old/a", false)
	o.etag = `"e0"`
	processLean(t, l, o, ownr("run2"), 1)
	if got := byKey(t, l, keyA); len(got) != 0 {
		t.Fatalf("key A still lists %v", got)
	}
	if got := byKey(t, l, keyB); len(got) != 2 {
		t.Fatalf("key B lists %v, want the two objects", got)
	}
	if c := counts(t, l); c[keyA] != 0 || c[keyB] != 2 {
		t.Fatalf("counts = %v", c)
	}
	// The intent of schema 1 is settled as any other.
	oc := newS3Object("old/c", false)
	if err := l.Abandon(ctx, ownr("run1"), prep.ID, "run1", OpRewrap); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx, oc.id(), ownr("run1")); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Marked schema 2 (and kept so: its keys stay those of schema 2): a
	// rotator that knows only 1 says so. And a schema this one does not
	// know is refused with a hint.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get([]byte("schema")); string(v) != "2" {
			t.Errorf("schema after open: %q, want 2", v)
		}
		return tx.Bucket(bucketMeta).Put([]byte("schema"), []byte("4"))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, path); err == nil || !strings.Contains(err.Error(), "schema version 4") || !strings.Contains(err.Error(), "hint") {
		t.Fatalf("open of schema 4: %v", err)
	}
}
