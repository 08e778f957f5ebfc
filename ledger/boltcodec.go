package ledger

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The embedded store's compact records (schema 2). An object record, an
// event and a prepared event are stored as a version byte and their
// fields in binary, never the names of their fields nor what the key
// already holds (bucket, key, version id, run id, operation):
//
//   - strings that repeat over millions of records (wrap keys, formats,
//     placements, algorithms, states, methods, run ids) as a number from
//     the dictionary bucket "dict" ("s"+string -> id, "i"+id -> string;
//     ids from 1, 0 is the empty string, never reused);
//   - an ETag that is a quoted MD5 as its 16 bytes (an event's ETag after
//     as one byte when it is the ETag before), a SHA-256 fingerprint as
//     its 32 bytes, a time as Unix nanoseconds.
//
// Schema 1 stored the same records as JSON; a value starting with '{' is
// one, and is read as such (a file is never rewritten: its records turn
// compact as they are written again). The key index by_wrap_key of schema
// 2 names a wrap key by its dictionary id ("#" and the id in base 36); the
// entries of schema 1 (the wrap key itself) are read and removed too.

const recordV2 = 2

var bucketDict = []byte("dict")

// boltCodec encodes and decodes records and keys inside one transaction.
type boltCodec struct {
	tx *bolt.Tx
	// v3: the file is of schema 3, whose keys name buckets, run ids and
	// operations by their dictionary ids (see name).
	v3 bool
}

// name returns the key component of s, a bucket name, run id or
// operation: s itself in schema 2; in schema 3 its dictionary id as a
// uvarint, added to the dictionary in a writable transaction. In a
// read-only one a string the dictionary lacks is "", which no stored key
// holds (ids start at 1, and no name is empty): its keys find nothing.
//
// Adding to the dictionary fails only as any Put does in a live
// transaction (never in practice); name then panics, and safely makes
// the panic the error of the write.
func (c boltCodec) name(s string) string {
	if !c.v3 {
		return s
	}
	if !c.tx.Writable() {
		id, ok := c.lookup(s)
		if !ok {
			return ""
		}
		return string(binary.AppendUvarint(nil, id))
	}
	id, err := c.intern(s)
	if err != nil {
		panic(fmt.Errorf("ledger: dictionary: %w", err))
	}
	return string(binary.AppendUvarint(nil, id))
}

// unname returns the string of key component part, written by name.
func (c boltCodec) unname(part string) (string, error) {
	if !c.v3 {
		return part, nil
	}
	id, n := binary.Uvarint([]byte(part))
	if n != len(part) || id == 0 {
		return "", fmt.Errorf("ledger: corrupt key: bad dictionary id %q", part)
	}
	return c.word(id)
}

// idKey is the key of id's object record and claim: tuple(bucket, key,
// version id), the bucket by name.
func (c boltCodec) idKey(id ObjectID) []byte {
	return tupleKey(c.name(id.Bucket), id.Key, id.VersionID)
}

// lineagePrefix is the prefix of the events of every version of id's
// key.
func (c boltCodec) lineagePrefix(id ObjectID) []byte { return tupleKey(c.name(id.Bucket), id.Key) }

// eventKey is the key of an event: tuple(bucket, key, version id, run id,
// op).
func (c boltCodec) eventKey(id ObjectID, run, op string) []byte {
	return tupleKey(c.name(id.Bucket), id.Key, id.VersionID, c.name(run), c.name(op))
}

// prepKey is the key of a prepared event: tuple(run id, bucket, key,
// version id, op), by run first so that Prepared is a prefix scan.
func (c boltCodec) prepKey(id ObjectID, run, op string) []byte {
	return tupleKey(c.name(run), c.name(id.Bucket), id.Key, id.VersionID, c.name(op))
}

// prepRunPrefix is the prefix of a run's prepared events.
func (c boltCodec) prepRunPrefix(run string) []byte { return tupleKey(c.name(run)) }

// prepIDPrefix is the prefix of a run's prepared events on id.
func (c boltCodec) prepIDPrefix(run string, id ObjectID) []byte {
	return tupleKey(c.name(run), c.name(id.Bucket), id.Key, id.VersionID)
}

// indexPrefix is the prefix of the by_wrap_key entries of the wrap key
// of dictionary id ref: "#" and ref in base 36 in schema 2, ref as a
// uvarint in schema 3.
func (c boltCodec) indexPrefix(ref uint64) []byte { return tupleKey(c.indexRef(ref)) }

func (c boltCodec) indexRef(ref uint64) string {
	if c.v3 {
		return string(binary.AppendUvarint(nil, ref))
	}
	return wrapKeyRef(ref)
}

// indexKey is id's by_wrap_key entry under the wrap key of dictionary id
// ref.
func (c boltCodec) indexKey(ref uint64, id ObjectID) []byte {
	return tupleKey(c.indexRef(ref), c.name(id.Bucket), id.Key, id.VersionID)
}

// indexedID reads the object version of a by_wrap_key entry from the
// rest of its key after its wrap key's component.
func (c boltCodec) indexedID(rest []byte) (ObjectID, error) {
	parts, err := splitTuple(rest)
	if err != nil || len(parts) != 3 {
		return ObjectID{}, fmt.Errorf("ledger: corrupt index entry %q", rest)
	}
	b, err := c.unname(parts[0])
	return ObjectID{Bucket: b, Key: parts[1], VersionID: parts[2]}, err
}

// intern returns the dictionary id of s, adding it if it is new (in a
// writable transaction).
func (c boltCodec) intern(s string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	d := c.tx.Bucket(bucketDict)
	if v := d.Get([]byte("s" + s)); v != nil {
		id, n := binary.Uvarint(v)
		if n <= 0 {
			return 0, fmt.Errorf("ledger: corrupt dictionary entry %q", s)
		}
		return id, nil
	}
	id, err := d.NextSequence()
	if err != nil {
		return 0, err
	}
	v := binary.AppendUvarint(nil, id)
	if err := d.Put([]byte("s"+s), v); err != nil {
		return 0, err
	}
	return id, d.Put(append([]byte("i"), v...), []byte(s))
}

// lookup returns the id of s in the dictionary; false when s is not in it.
func (c boltCodec) lookup(s string) (uint64, bool) {
	v := c.tx.Bucket(bucketDict).Get([]byte("s" + s))
	if v == nil {
		return 0, false
	}
	id, n := binary.Uvarint(v)
	return id, n > 0
}

// word returns the string of dictionary id id.
func (c boltCodec) word(id uint64) (string, error) {
	if id == 0 {
		return "", nil
	}
	v := c.tx.Bucket(bucketDict).Get(append([]byte("i"), binary.AppendUvarint(nil, id)...))
	if v == nil {
		return "", fmt.Errorf("ledger: corrupt record: dictionary id %d unknown", id)
	}
	return string(v), nil
}

// wrapKeyRef is the by_wrap_key component naming wrap key id.
func wrapKeyRef(id uint64) string { return "#" + strconv.FormatUint(id, 36) }

// encoder appends fields to a record.
type encoder struct {
	c   boltCodec
	b   []byte
	err error
}

func (e *encoder) word(s string) {
	if e.err != nil {
		return
	}
	id, err := e.c.intern(s)
	e.err = err
	e.b = binary.AppendUvarint(e.b, id)
}

func (e *encoder) str(s string) {
	e.b = binary.AppendUvarint(e.b, uint64(len(s)))
	e.b = append(e.b, s...)
}

func (e *encoder) time(t time.Time) { e.b = binary.AppendVarint(e.b, t.UnixNano()) }

// etag writes a quoted MD5 as 1 and its 16 bytes, anything else as 0 and
// the string.
func (e *encoder) etag(s string) {
	if len(s) == 34 && s[0] == '"' && s[33] == '"' && isLowerHex(s[1:33]) {
		raw, _ := hex.DecodeString(s[1:33])
		e.b = append(append(e.b, 1), raw...)
		return
	}
	e.b = append(e.b, 0)
	e.str(s)
}

// sum writes a fingerprint (64 lowercase hex digits) as 1 and its 32
// bytes, "" as 0, anything else as 2 and the string.
func (e *encoder) sum(s string) {
	switch {
	case s == "":
		e.b = append(e.b, 0)
	case len(s) == 64 && isLowerHex(s):
		raw, _ := hex.DecodeString(s)
		e.b = append(append(e.b, 1), raw...)
	default:
		e.b = append(e.b, 2)
		e.str(s)
	}
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !(s[i] >= '0' && s[i] <= '9' || s[i] >= 'a' && s[i] <= 'f') {
			return false
		}
	}
	return true
}

// decoder reads fields of a record.
type decoder struct {
	c   boltCodec
	b   []byte
	err error
}

var errShort = errors.New("ledger: corrupt record: too short")

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.b) {
		d.err = errShort
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte1() byte {
	v := d.take(1)
	if v == nil {
		return 0
	}
	return v[0]
}

func (d *decoder) word() string {
	id := d.uvarint()
	if d.err != nil {
		return ""
	}
	s, err := d.c.word(id)
	d.err = err
	return s
}

func (d *decoder) str() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.err = errShort
		return ""
	}
	return string(d.take(int(n)))
}

func (d *decoder) time() time.Time {
	if d.err != nil {
		return time.Time{}
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errShort
		return time.Time{}
	}
	d.b = d.b[n:]
	return time.Unix(0, v).UTC()
}

func (d *decoder) etag() string {
	switch d.byte1() {
	case 0:
		return d.str()
	case 1:
		return `"` + hex.EncodeToString(d.take(16)) + `"`
	}
	if d.err == nil {
		d.err = errors.New("ledger: corrupt record: bad ETag")
	}
	return ""
}

func (d *decoder) sum() string {
	switch d.byte1() {
	case 0:
		return ""
	case 1:
		return hex.EncodeToString(d.take(32))
	case 2:
		return d.str()
	}
	if d.err == nil {
		d.err = errors.New("ledger: corrupt record: bad fingerprint")
	}
	return ""
}

// putObjectRecord stores obj at key k of the objects bucket.
func (c boltCodec) putObjectRecord(k []byte, obj Object) error {
	e := encoder{c: c, b: make([]byte, 0, 96)}
	e.b = append(e.b, recordV2)
	e.word(obj.WrapKey)
	e.word(obj.Format)
	e.word(obj.Placement)
	e.word(obj.CEKAlg)
	e.word(string(obj.State))
	e.word(obj.RunID)
	e.etag(obj.ETag)
	e.time(obj.UpdatedAt)
	e.sum(obj.WrappedKeySHA256)
	if e.err != nil {
		return e.err
	}
	return c.tx.Bucket(bucketObjects).Put(k, e.b)
}

// getObjectRecord reads the object record of id; false when there is none.
func (c boltCodec) getObjectRecord(id ObjectID) (Object, bool, error) {
	v := c.tx.Bucket(bucketObjects).Get(c.idKey(id))
	if v == nil {
		return Object{}, false, nil
	}
	obj, err := c.decodeObject(id, v)
	return obj, err == nil, err
}

func (c boltCodec) decodeObject(id ObjectID, v []byte) (Object, error) {
	if len(v) > 0 && v[0] == '{' {
		var rec objectRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			return Object{}, fmt.Errorf("ledger: corrupt record of %s: %w", id, err)
		}
		return rec.object()
	}
	if len(v) == 0 || v[0] != recordV2 {
		return Object{}, fmt.Errorf("ledger: record of %s: unknown encoding (hint: written by a newer rotator?)", id)
	}
	d := decoder{c: c, b: v[1:]}
	obj := Object{ID: id}
	obj.WrapKey = d.word()
	obj.Format = d.word()
	obj.Placement = d.word()
	obj.CEKAlg = d.word()
	obj.State = ObjectState(d.word())
	obj.RunID = d.word()
	obj.ETag = d.etag()
	obj.UpdatedAt = d.time()
	obj.WrappedKeySHA256 = d.sum()
	if d.err != nil {
		return Object{}, fmt.Errorf("ledger: record of %s: %w", id, d.err)
	}
	return obj, nil
}

// encodeEvent returns the stored form of ev (an event or a prepared one).
func (c boltCodec) encodeEvent(ev Event) ([]byte, error) {
	e := encoder{c: c, b: make([]byte, 0, 128)}
	e.b = append(e.b, recordV2)
	e.word(ev.Method)
	e.word(ev.FromKey)
	e.word(ev.ToKey)
	e.eventTail(ev)
	return e.b, e.err
}

// eventTail writes the fields every stored event ends with, in both
// backends: time at, ETags before and after, version after, fingerprints.
func (e *encoder) eventTail(ev Event) {
	e.time(ev.At)
	e.etag(ev.ETagBefore)
	if ev.ETagAfter != "" && ev.ETagAfter == ev.ETagBefore {
		e.b = append(e.b, 2) // a metadata-only self-copy keeps the ETag
	} else {
		e.etag(ev.ETagAfter)
	}
	// VersionBefore is the event's version (prepEvent checks it).
	e.str(ev.VersionAfter)
	e.sum(ev.OldWrappedKeySHA256)
	e.sum(ev.NewWrappedKeySHA256)
}

// eventTail reads what encoder.eventTail wrote into ev.
func (d *decoder) eventTail(ev *Event) {
	ev.At = d.time()
	ev.ETagBefore = d.etag()
	if len(d.b) > 0 && d.b[0] == 2 {
		d.b = d.b[1:]
		ev.ETagAfter = ev.ETagBefore
	} else {
		ev.ETagAfter = d.etag()
	}
	ev.VersionAfter = d.str()
	ev.OldWrappedKeySHA256 = d.sum()
	ev.NewWrappedKeySHA256 = d.sum()
}

// decodeEvent reads an event stored for the identity (id, run, op).
func (c boltCodec) decodeEvent(id ObjectID, run, op string, v []byte) (Event, error) {
	if len(v) > 0 && v[0] == '{' {
		var rec eventRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			return Event{}, fmt.Errorf("ledger: corrupt event on %s: %w", id, err)
		}
		return rec.event()
	}
	if len(v) == 0 || v[0] != recordV2 {
		return Event{}, fmt.Errorf("ledger: event on %s: unknown encoding (hint: written by a newer rotator?)", id)
	}
	d := decoder{c: c, b: v[1:]}
	ev := Event{ID: id, RunID: run, Op: op, VersionBefore: id.VersionID}
	ev.Method = d.word()
	ev.FromKey = d.word()
	ev.ToKey = d.word()
	d.eventTail(&ev)
	if d.err != nil {
		return Event{}, fmt.Errorf("ledger: event on %s: %w", id, d.err)
	}
	return ev, nil
}

// eventAt decodes the event stored under key k of the events bucket.
func (c boltCodec) eventAt(k, v []byte) (Event, error) {
	parts, err := c.names(k, 0, 3, 4)
	if err != nil {
		return Event{}, fmt.Errorf("ledger: corrupt event key %q: %w", k, err)
	}
	return c.decodeEvent(ObjectID{Bucket: parts[0], Key: parts[1], VersionID: parts[2]}, parts[3], parts[4], v)
}

// preparedAt decodes the prepared event stored under key k of the
// prepared bucket.
func (c boltCodec) preparedAt(k, v []byte) (Event, error) {
	parts, err := c.names(k, 0, 1, 4)
	if err != nil {
		return Event{}, fmt.Errorf("ledger: corrupt prepared event key %q: %w", k, err)
	}
	return c.decodeEvent(ObjectID{Bucket: parts[1], Key: parts[2], VersionID: parts[3]}, parts[0], parts[4], v)
}

// names splits an event's key k (five components) and reads the
// components at named, written by name.
func (c boltCodec) names(k []byte, named ...int) ([]string, error) {
	parts, err := splitTuple(k)
	if err != nil {
		return nil, err
	}
	if len(parts) != 5 {
		return nil, fmt.Errorf("%d components, want 5", len(parts))
	}
	for _, i := range named {
		if parts[i], err = c.unname(parts[i]); err != nil {
			return nil, err
		}
	}
	return parts, nil
}

// putStoredEvent stores ev in bucket (events or prepared) at key k.
func (c boltCodec) putStoredEvent(bucket, k []byte, ev Event) error {
	v, err := c.encodeEvent(ev)
	if err != nil {
		return err
	}
	return c.tx.Bucket(bucket).Put(k, v)
}

// validWrapKey refuses wrap keys the index could mistake for a
// dictionary reference.
func validWrapKey(k string) error {
	if strings.HasPrefix(k, "#") {
		return fmt.Errorf("%w: wrap key %q: a canonical key id never starts with '#'", ErrInvalid, k)
	}
	return nil
}
