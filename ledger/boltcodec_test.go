package ledger

import (
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
	db, err := bolt.Open(filepath.Join(f.TempDir(), "fuzz.db"), 0o600, nil)
	if err != nil {
		f.Fatal(err)
	}
	defer db.Close()
	db.NoSync = true // a scratch file
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketDict)
		if err == nil {
			_, err = tx.CreateBucketIfNotExists(bucketObjects)
		}
		return err
	}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte, word, etag, version string, nanos int64) {
		id := ObjectID{Bucket: "b", Key: "k", VersionID: version}
		err := db.Update(func(tx *bolt.Tx) error {
			c := boltCodec{tx}
			_, _ = c.decodeObject(id, raw)
			_, _ = c.decodeEvent(id, "run", "op", raw)
			at := time.Unix(0, nanos).UTC()
			obj := Object{ID: id, WrapKey: word, Format: word, State: ObjectState(word), ETag: etag, RunID: word, UpdatedAt: at,
				WrappedKeySHA256: WrappedKeyFingerprint([]byte(word))}
			if err := c.putObjectRecord(idKey(id), obj); err != nil {
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
