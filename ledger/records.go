package ledger

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Stored forms of the records. Both backends use the same attribute names
// (bbolt as JSON, DynamoDB as item attributes); SCHEMA.md lists them. Empty
// strings are left out.

type objectRecord struct {
	Bucket           string `json:"bucket" dynamodbav:"bucket"`
	Key              string `json:"object_key" dynamodbav:"object_key"`
	VersionID        string `json:"version_id,omitempty" dynamodbav:"version_id,omitempty"`
	WrapKey          string `json:"wrap_key,omitempty" dynamodbav:"wrap_key,omitempty"`
	Format           string `json:"format,omitempty" dynamodbav:"format,omitempty"`
	Placement        string `json:"placement,omitempty" dynamodbav:"placement,omitempty"`
	CEKAlg           string `json:"cek_alg,omitempty" dynamodbav:"cek_alg,omitempty"`
	State            string `json:"state" dynamodbav:"state"`
	ETag             string `json:"etag,omitempty" dynamodbav:"etag,omitempty"`
	RunID            string `json:"run_id,omitempty" dynamodbav:"run_id,omitempty"`
	UpdatedAt        string `json:"updated_at" dynamodbav:"updated_at"`
	WrappedKeySHA256 string `json:"wrapped_key_sha256,omitempty" dynamodbav:"wrapped_key_sha256,omitempty"`
}

// keepsKey reports whether an observation rec that does not know the wrap
// key keeps the key of the record old it replaces (see Ledger.Observe):
// not when the object was changed by someone else or deleted.
func keepsKey(rec, old objectRecord) bool {
	return rec.WrapKey == "" && old.WrapKey != "" &&
		rec.State != string(StateChanged) && rec.State != string(StateDeleted) &&
		(rec.WrappedKeySHA256 == "" || rec.WrappedKeySHA256 == old.WrappedKeySHA256)
}

// objectAttrs are the attributes of an object record, in a fixed order.
var objectAttrs = []string{"bucket", "object_key", "version_id", "wrap_key", "format", "placement", "cek_alg", "state", "etag", "run_id", "updated_at", "wrapped_key_sha256"}

func toObjectRecord(o Object) objectRecord {
	return objectRecord{
		Bucket: o.ID.Bucket, Key: o.ID.Key, VersionID: o.ID.VersionID,
		WrapKey: o.WrapKey, Format: o.Format, Placement: o.Placement, CEKAlg: o.CEKAlg,
		State: string(o.State), ETag: o.ETag, RunID: o.RunID, UpdatedAt: formatTime(o.UpdatedAt),
		WrappedKeySHA256: o.WrappedKeySHA256,
	}
}

func (r objectRecord) object() (Object, error) {
	t, err := parseTime(r.UpdatedAt)
	if err != nil {
		return Object{}, fmt.Errorf("ledger: object record s3://%s/%s: updated_at: %w", r.Bucket, r.Key, err)
	}
	return Object{
		ID:      ObjectID{Bucket: r.Bucket, Key: r.Key, VersionID: r.VersionID},
		WrapKey: r.WrapKey, Format: r.Format, Placement: r.Placement, CEKAlg: r.CEKAlg,
		State: ObjectState(r.State), ETag: r.ETag, RunID: r.RunID, UpdatedAt: t,
		WrappedKeySHA256: r.WrappedKeySHA256,
	}, nil
}

type eventRecord struct {
	Bucket              string `json:"bucket" dynamodbav:"bucket"`
	Key                 string `json:"object_key" dynamodbav:"object_key"`
	VersionID           string `json:"version_id,omitempty" dynamodbav:"version_id,omitempty"`
	RunID               string `json:"run_id" dynamodbav:"run_id"`
	Op                  string `json:"op" dynamodbav:"op"`
	Method              string `json:"method,omitempty" dynamodbav:"method,omitempty"`
	FromKey             string `json:"from_key,omitempty" dynamodbav:"from_key,omitempty"`
	ToKey               string `json:"to_key,omitempty" dynamodbav:"to_key,omitempty"`
	At                  string `json:"at" dynamodbav:"at"`
	ETagBefore          string `json:"etag_before,omitempty" dynamodbav:"etag_before,omitempty"`
	ETagAfter           string `json:"etag_after,omitempty" dynamodbav:"etag_after,omitempty"`
	VersionBefore       string `json:"version_before,omitempty" dynamodbav:"version_before,omitempty"`
	VersionAfter        string `json:"version_after,omitempty" dynamodbav:"version_after,omitempty"`
	OldWrappedKeySHA256 string `json:"old_wrapped_key_sha256,omitempty" dynamodbav:"old_wrapped_key_sha256,omitempty"`
	NewWrappedKeySHA256 string `json:"new_wrapped_key_sha256,omitempty" dynamodbav:"new_wrapped_key_sha256,omitempty"`
}

func toEventRecord(e Event) eventRecord {
	return eventRecord{
		Bucket: e.ID.Bucket, Key: e.ID.Key, VersionID: e.ID.VersionID,
		RunID: e.RunID, Op: e.Op, Method: e.Method, FromKey: e.FromKey, ToKey: e.ToKey,
		At: formatTime(e.At), ETagBefore: e.ETagBefore, ETagAfter: e.ETagAfter,
		VersionBefore: e.VersionBefore, VersionAfter: e.VersionAfter,
		OldWrappedKeySHA256: e.OldWrappedKeySHA256, NewWrappedKeySHA256: e.NewWrappedKeySHA256,
	}
}

func (r eventRecord) event() (Event, error) {
	t, err := parseTime(r.At)
	if err != nil {
		return Event{}, fmt.Errorf("ledger: event on s3://%s/%s: at: %w", r.Bucket, r.Key, err)
	}
	return Event{
		ID:    ObjectID{Bucket: r.Bucket, Key: r.Key, VersionID: r.VersionID},
		RunID: r.RunID, Op: r.Op, Method: r.Method, FromKey: r.FromKey, ToKey: r.ToKey,
		At: t, ETagBefore: r.ETagBefore, ETagAfter: r.ETagAfter,
		VersionBefore: r.VersionBefore, VersionAfter: r.VersionAfter,
		OldWrappedKeySHA256: r.OldWrappedKeySHA256, NewWrappedKeySHA256: r.NewWrappedKeySHA256,
	}, nil
}

type runRecord struct {
	ID         string           `json:"run_id" dynamodbav:"run_id"`
	Config     string           `json:"config,omitempty" dynamodbav:"config,omitempty"`
	State      string           `json:"state,omitempty" dynamodbav:"state,omitempty"`
	Counts     map[string]int64 `json:"counts,omitempty" dynamodbav:"counts,omitempty"`
	Checkpoint []byte           `json:"checkpoint,omitempty" dynamodbav:"checkpoint,omitempty"`
	Revision   int64            `json:"revision" dynamodbav:"revision"`
	CreatedAt  string           `json:"created_at" dynamodbav:"created_at"`
	UpdatedAt  string           `json:"updated_at" dynamodbav:"updated_at"`
}

func toRunRecord(r Run) runRecord {
	return runRecord{
		ID: r.ID, Config: string(r.Config), State: string(r.State), Counts: r.Counts,
		Checkpoint: r.Checkpoint, Revision: r.Revision,
		CreatedAt: formatTime(r.CreatedAt), UpdatedAt: formatTime(r.UpdatedAt),
	}
}

func (rr runRecord) run() (Run, error) {
	r := Run{ID: rr.ID, State: RunState(rr.State), Counts: rr.Counts, Checkpoint: rr.Checkpoint, Revision: rr.Revision}
	if rr.Config != "" {
		r.Config = json.RawMessage(rr.Config)
	}
	var err1, err2 error
	r.CreatedAt, err1 = parseTime(rr.CreatedAt)
	r.UpdatedAt, err2 = parseTime(rr.UpdatedAt)
	if err1 != nil || err2 != nil {
		return Run{}, fmt.Errorf("ledger: run %s: bad timestamp", rr.ID)
	}
	return r, nil
}

func sortEvents(evs []Event) {
	sort.SliceStable(evs, func(i, j int) bool {
		a, b := evs[i], evs[j]
		if !a.At.Equal(b.At) {
			return a.At.Before(b.At)
		}
		if a.RunID != b.RunID {
			return a.RunID < b.RunID
		}
		return a.Op < b.Op
	})
}

// DynamoDB key encoding (see SCHEMA.md).
//
// The partition key of an S3 object is a hash of its bucket and key, so that
// any bytes are safe and every key has the same length; the attributes keep
// the names in clear. Sort keys hold version ids escaped so that '#' only
// ever separates fields.

// objectPK returns "obj#" and the first 16 bytes, in hex, of the SHA-256 of
// len(bucket) ":" bucket len(key) ":" key (lengths in decimal bytes).
func objectPK(bucket, key string) string {
	h := sha256.New()
	h.Write([]byte(strconv.Itoa(len(bucket)) + ":" + bucket + strconv.Itoa(len(key)) + ":" + key))
	return "obj#" + hex.EncodeToString(h.Sum(nil)[:16])
}

var escaper = strings.NewReplacer("%", "%25", "#", "%23")

// escape makes s free of '#' (and keeps the mapping reversible by escaping
// '%' too).
func escape(s string) string { return escaper.Replace(s) }

func versionSK(v string) string { return "ver#" + escape(v) }

// eventSK is unique per event identity: run ids and ops hold no '#'.
func eventSK(v, run, op string) string { return "evt#" + escape(v) + "#" + run + "#" + op }

// A prepared event lives in a partition of its run, so that Prepared is a
// query: "run#" <run id> "#" <shard>, the shard being the first hex digit
// of the object's hash, which spreads a run over 16 partitions (a fast run
// writes two items per object there). The sort key holds the rest of the
// identity.

// preparedPK returns the partition of run's prepared events on the object
// whose partition key is objPK.
func preparedPK(run, objPK string) string {
	return preparedShard(run, objPK[len("obj#"):len("obj#")+1])
}

func preparedShard(run, shard string) string { return "run#" + run + "#" + shard }

// bbolt key encoding: each component's bytes with 0x00 written as 0x00 0xff,
// then 0x00 0x01. Components never run into each other, a tuple's encoding
// is a prefix of the encodings of its extensions, and byte order of
// encodings is the order of the tuples.

func tupleKey(parts ...string) []byte {
	n := 0
	for _, p := range parts {
		n += len(p) + 2
	}
	b := make([]byte, 0, n)
	for _, p := range parts {
		for i := 0; i < len(p); i++ {
			if p[i] == 0 {
				b = append(b, 0, 0xff)
			} else {
				b = append(b, p[i])
			}
		}
		b = append(b, 0, 1)
	}
	return b
}

// splitTuple decodes a tupleKey.
func splitTuple(b []byte) ([]string, error) {
	var parts []string
	var cur []byte
	for i := 0; i < len(b); i++ {
		if b[i] != 0 {
			cur = append(cur, b[i])
			continue
		}
		if i+1 >= len(b) {
			return nil, fmt.Errorf("ledger: bad tuple key %q", b)
		}
		i++
		switch b[i] {
		case 0xff:
			cur = append(cur, 0)
		case 1:
			parts = append(parts, string(cur))
			cur = cur[:0:0]
		default:
			return nil, fmt.Errorf("ledger: bad tuple key %q", b)
		}
	}
	if len(cur) > 0 {
		return nil, fmt.Errorf("ledger: bad tuple key %q", b)
	}
	return parts, nil
}
