package ledger

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// FuzzCompactRecords decodes arbitrary bytes as a compact object record
// and event (never a panic), and round-trips records built from the
// fuzzer's strings.
func FuzzCompactRecords(f *testing.F) {
	f.Add([]byte{recordV2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}, "arn:aws:kms:us-east-1:111122223333:key/k", `"0123456789abcdef0123456789abcdef"`, "v1", int64(1764892800123456789))
	f.Add([]byte(`{"bucket":"b","object_key":"k","state":"current","updated_at":"2026-03-01T12:00:00.000000000Z"}`), "", "e", "", int64(0))
	f.Add([]byte{recordV2, 0xff, 0xff}, "k", `"E0"`, "", int64(-5))
	db := scratchBolt(f, bucketDict, bucketObjects)
	f.Fuzz(func(t *testing.T, raw []byte, word, etag, version string, nanos int64) {
		id := ObjectID{Bucket: "b", Key: "k", VersionID: version}
		err := db.Update(func(tx *bolt.Tx) error {
			c := boltCodec{tx: tx}
			_, _ = c.decodeObject(id, raw)
			_, _ = c.decodeEvent(id, "run", "op", raw)
			at := time.Unix(0, nanos).UTC()
			obj := Object{ID: id, WrapKey: word, Format: word, State: ObjectState(word), ETag: etag, RunID: word, UpdatedAt: at,
				WrappedKeySHA256: WrappedKeyFingerprint([]byte(word))}
			if err := c.putObjectRecord(c.idKey(id), obj); err != nil {
				return err
			}
			got, found, err := c.getObjectRecord(id)
			if err != nil || !found || got != obj {
				t.Fatalf("object round trip: %+v %v %v\nwant %+v", got, found, err, obj)
			}
			ev := Event{ID: id, RunID: "run", Op: "op", Method: word, FromKey: word, ToKey: etag, At: at, ETagBefore: etag,
				ETagAfter: word, VersionBefore: version, VersionAfter: etag, OldWrappedKeySHA256: word, NewWrappedKeySHA256: WrappedKeyFingerprint(raw)}
			v, err := c.encodeEvent(ev)
			if err != nil {
				return err
			}
			back, err := c.decodeEvent(id, "run", "op", v)
			if err != nil || back != ev {
				t.Fatalf("event round trip: %+v %v\nwant %+v", back, err, ev)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzBoltKeys decodes arbitrary bytes as event, prepared event and index
// keys of both schemas (never a panic), and round-trips the keys of
// schema 3 (names by dictionary id) built from the fuzzer's strings.
func FuzzBoltKeys(f *testing.F) {
	f.Add([]byte("\x01\x00\x01k\x00\x01\x00\x01\x02\x00\x01\x03\x00\x01"), "bucket", "a/b\x00c", "v1", "run-1", "rewrap")
	f.Add([]byte("b\x00\x01k\x00\x01v\x00\x01r\x00\x01op\x00\x01"), "b", "k", "", "r", "op")
	f.Add([]byte("\x80\x00\x01\x00\xff\x00\x01"), "\x00", "\xff", "\x00\x01", "r", "o")
	db := scratchBolt(f, bucketDict)
	f.Fuzz(func(t *testing.T, raw []byte, bucket, key, version, run, op string) {
		err := db.Update(func(tx *bolt.Tx) error {
			for _, c := range []boltCodec{{tx: tx}, {tx: tx, v3: true}} {
				_, _ = c.eventAt(raw, nil)
				_, _ = c.preparedAt(raw, nil)
				_, _ = c.indexedID(raw)
			}
			if bucket == "" || run == "" || op == "" {
				return nil // never stored: validID, validRunID and validOp refuse them
			}
			c := boltCodec{tx: tx, v3: true}
			id := ObjectID{Bucket: bucket, Key: key, VersionID: version}
			ev := Event{Method: "m", At: time.Unix(0, 1).UTC()}
			v, err := c.encodeEvent(ev)
			if err != nil {
				return err
			}
			got, err := c.eventAt(c.eventKey(id, run, op), v)
			if err != nil || got.ID != id || got.RunID != run || got.Op != op {
				t.Fatalf("event key round trip: %+v %v", got, err)
			}
			got, err = c.preparedAt(c.prepKey(id, run, op), v)
			if err != nil || got.ID != id || got.RunID != run || got.Op != op {
				t.Fatalf("prepared key round trip: %+v %v", got, err)
			}
			if k := c.prepKey(id, run, op); !bytes.HasPrefix(k, c.prepIDPrefix(run, id)) || !bytes.HasPrefix(k, c.prepRunPrefix(run)) {
				t.Fatalf("prepared key %q outside its prefixes", k)
			}
			if k := c.eventKey(id, run, op); !bytes.HasPrefix(k, c.lineagePrefix(id)) {
				t.Fatalf("event key %q outside its lineage prefix", k)
			}
			ref, err := c.intern(run)
			if err != nil {
				return err
			}
			back, err := c.indexedID(c.indexKey(ref, id)[len(c.indexPrefix(ref)):])
			if err != nil || back != id {
				t.Fatalf("index key round trip: %+v %v", back, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// scratchBolt opens a bbolt file of the fuzz target's own, unsynced (a
// scratch file), with the buckets given; closed when the target ends.
func scratchBolt(f *testing.F, buckets ...[]byte) *bolt.DB {
	f.Helper()
	db, err := bolt.Open(filepath.Join(f.TempDir(), "fuzz.db"), 0o600, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { db.Close() })
	db.NoSync = true
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range buckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		f.Fatal(err)
	}
	return db
}
