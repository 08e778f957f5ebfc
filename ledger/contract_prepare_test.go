package ledger

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sync/errgroup"
)

// The contract of prepared events (Prepare, Commit, Abandon, Prepared), part
// of testContract. The tests drive a stand-in for S3 through the steps the
// pipeline takes, and resume crashed runs with the algorithm the package
// documentation gives (resume below).

// s3Object stands in for an S3 object: its current version and the wrapped
// data key its envelope holds. Not safe for concurrent use.
type s3Object struct {
	bucket, key string
	versioned   bool
	version     string // current version id, "" when unversioned
	wrapped     string // the wrapped data key's bytes
	wrapKey     string
	etag        string
	writes      int
}

func newS3Object(key string, versioned bool) *s3Object {
	o := &s3Object{bucket: "data-bucket", key: key, versioned: versioned, wrapped: "wrapped " + key, wrapKey: keyA, etag: `"e0"`}
	if versioned {
		o.version = "v0"
	}
	return o
}

func (o *s3Object) id() ObjectID { return ObjectID{Bucket: o.bucket, Key: o.key, VersionID: o.version} }

func (o *s3Object) fingerprint() string { return WrappedKeyFingerprint([]byte(o.wrapped)) }

// rewrapEvent returns the event run prepares before rewrapping o onto keyB,
// and the new wrapped key. Every attempt gets another one, as from KMS.
func (o *s3Object) rewrapEvent(run string, attempt int) (Event, string) {
	nw := fmt.Sprintf("wrapped %s under %s, attempt %d", o.key, keyB, attempt)
	return Event{
		ID: o.id(), RunID: run, Op: OpRewrap, Method: "kms-reencrypt", FromKey: o.wrapKey, ToKey: keyB,
		ETagBefore: o.etag, VersionBefore: o.version,
		OldWrappedKeySHA256: o.fingerprint(), NewWrappedKeySHA256: WrappedKeyFingerprint([]byte(nw)),
	}, nw
}

// write is the S3 conditional write landing: a self-copy, which creates a
// new version in a versioned bucket.
func (o *s3Object) write(wrapped, wrapKey string) {
	o.wrapped, o.wrapKey = wrapped, wrapKey
	o.writes++
	o.etag = fmt.Sprintf(`"e%d"`, o.writes)
	if o.versioned {
		o.version = fmt.Sprintf("v%d", o.writes)
	}
}

// completed returns the object record and the event a Commit of the
// prepared ev records, with what is known only after the write read from o.
func (o *s3Object) completed(ev Event) (Object, Event) {
	ev.ETagAfter, ev.VersionAfter = o.etag, o.version
	obj := Object{ID: o.id(), WrapKey: o.wrapKey, Format: "s3ec-v2", Placement: "metadata", CEKAlg: "AES/GCM/NoPadding", State: StateRewrapped, ETag: o.etag, RunID: ev.RunID}
	return obj, ev
}

// process rewraps o as the pipeline does: Claim, Prepare, the S3 write,
// Commit.
func process(t testing.TB, l Ledger, o *s3Object, run string, attempt int) {
	t.Helper()
	processAs(t, l, o, ownr(run), attempt)
}

// processAs is process by owner.
func processAs(t testing.TB, l Ledger, o *s3Object, owner string, attempt int) {
	t.Helper()
	run := runOf(owner)
	if _, err := l.Claim(ctx, o.id(), owner, time.Hour); err != nil {
		t.Fatalf("claim %s: %v", o.id(), err)
	}
	ev, nw := o.rewrapEvent(run, attempt)
	if err := l.Prepare(ctx, owner, ev); err != nil {
		t.Fatalf("prepare %s: %v", o.id(), err)
	}
	o.write(nw, keyB)
	obj, ev := o.completed(ev)
	if err := l.Commit(ctx, owner, obj, ev); err != nil {
		t.Fatalf("commit %s: %v", o.id(), err)
	}
}

// resume does what the package documentation tells a resumed run to do:
// resolve every prepared event of run against the object, then process
// again the objects still under the old key (the run's checkpoint had not
// passed them).
func resume(t testing.TB, l Ledger, run string, objs ...*s3Object) {
	t.Helper()
	byName := map[string]*s3Object{}
	for _, o := range objs {
		byName[o.key] = o
	}
	err := l.Prepared(ctx, run, func(ev Event) error {
		owner := epochOwner(run, 2, "resumed")
		if _, err := l.Claim(ctx, ev.ID, owner, time.Hour); err != nil {
			return err
		}
		o := byName[ev.ID.Key]
		switch o.fingerprint() {
		case ev.NewWrappedKeySHA256: // the write landed
			obj, ev := o.completed(ev)
			return l.Commit(ctx, owner, obj, ev)
		case ev.OldWrappedKeySHA256: // it did not: process it again
			return l.Abandon(ctx, owner, ev.ID, ev.RunID, ev.Op)
		default: // someone else changed it
			if err := l.Abandon(ctx, owner, ev.ID, ev.RunID, ev.Op); err != nil {
				return err
			}
			changed := Object{ID: o.id(), WrapKey: o.wrapKey, State: StateChanged, ETag: o.etag, RunID: run}
			if err := l.Observe(ctx, changed); err != nil {
				return err
			}
			return l.Release(ctx, ev.ID, owner)
		}
	})
	if err != nil {
		t.Fatalf("resume %s: %v", run, err)
	}
	for _, o := range objs {
		if o.wrapKey == keyA {
			processAs(t, l, o, epochOwner(run, 2, "resumed"), 2)
		}
	}
}

// listPrepared returns the prepared events of run, sorted by object.
func listPrepared(t testing.TB, l Ledger, run string) []Event {
	t.Helper()
	var evs []Event
	if err := l.Prepared(ctx, run, func(e Event) error { evs = append(evs, e); return nil }); err != nil {
		t.Fatalf("prepared events of %s: %v", run, err)
	}
	sort.Slice(evs, func(i, j int) bool {
		if evs[i].ID.Key != evs[j].ID.Key {
			return evs[i].ID.Key < evs[j].ID.Key
		}
		return evs[i].ID.VersionID < evs[j].ID.VersionID
	})
	return evs
}

// rawPrepared counts the stored prepared events of run behind Prepared's
// back, stale ones included, to show that they are cleaned up.
func rawPrepared(t testing.TB, l Ledger, run string) int {
	t.Helper()
	n := 0
	switch l := l.(type) {
	case *boltLedger:
		err := l.db.View(func(tx *bolt.Tx) error {
			prefix := tupleKey(run)
			c := tx.Bucket(bucketPrep).Cursor()
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
				n++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	case *dynamoLedger:
		// Every intent of the run on any item, journaled or not (a scan,
		// not the journal Prepared reads).
		p := dynamodb.NewScanPaginator(l.c, &dynamodb.ScanInput{TableName: aws.String(l.table)})
		for p.HasMorePages() {
			out, err := p.NextPage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, item := range out.Items {
				evs, err := itemEvents(item, attrIntentPrefix, run, l.resolveKey)
				if err != nil {
					t.Fatal(err)
				}
				n += len(evs)
			}
		}
	default:
		t.Fatalf("rawPrepared: unknown backend %T", l)
	}
	return n
}

// checkRewrapped checks the end state of a rewrap of o by run, crashed or
// not: exactly one event, from the wrapped key o started with (oldFP) to
// the one it holds, the record under keyB, nothing prepared, no claim.
func checkRewrapped(t testing.TB, l Ledger, o *s3Object, run, oldFP string) {
	t.Helper()
	evs := lineageOf(t, l, o.id())
	if len(evs) != 1 {
		t.Fatalf("lineage of %s: %d events, want 1: %+v", o.id(), len(evs), evs)
	}
	e := evs[0]
	if e.RunID != run || e.FromKey != keyA || e.ToKey != keyB || e.OldWrappedKeySHA256 != oldFP ||
		e.NewWrappedKeySHA256 != o.fingerprint() || e.ETagAfter != o.etag || e.VersionAfter != o.version {
		t.Fatalf("lineage event of %s: %+v\nwant run %s, %s -> %s, fingerprints %s -> %s, after %s %q",
			o.id(), e, run, keyA, keyB, oldFP, o.fingerprint(), o.etag, o.version)
	}
	if got := mustGet(t, l, o.id()); got.WrapKey != keyB || got.State != StateRewrapped {
		t.Fatalf("record of %s: %+v", o.id(), got)
	}
	if p := listPrepared(t, l, run); len(p) != 0 {
		t.Fatalf("still prepared: %+v", p)
	}
	if n := rawPrepared(t, l, run); n != 0 {
		t.Fatalf("%d prepared events of %s left behind", n, run)
	}
	for _, v := range []string{"v0", o.version} {
		id := o.id()
		if o.versioned {
			id.VersionID = v
		}
		if _, err := l.Claim(ctx, id, ownr("other"), time.Hour); err != nil {
			t.Fatalf("claim on %s not released: %v", id, err)
		}
		if err := l.Release(ctx, id, ownr("other")); err != nil {
			t.Fatal(err)
		}
	}
}

func testPrepareCommit(t *testing.T, open func(...Option) Ledger) {
	l := open()
	o := newS3Object("prepared", false)
	mustObserve(t, l, observed(o.id(), keyA))
	ev, nw := o.rewrapEvent("runA", 1)
	if err := l.Prepare(ctx, ownr(ev.RunID), ev); !errors.Is(err, ErrNotClaimed) {
		t.Fatalf("prepare without a claim: got %v, want ErrNotClaimed", err)
	}
	if _, err := l.Claim(ctx, o.id(), ownr("runB"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := l.Prepare(ctx, ownr(ev.RunID), ev); !errors.Is(err, ErrNotClaimed) {
		t.Fatalf("prepare under another run's claim: got %v, want ErrNotClaimed", err)
	}
	if err := l.Release(ctx, o.id(), ownr("runB")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Claim(ctx, o.id(), ownr("runA"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := l.Prepare(ctx, ownr(ev.RunID), ev); err != nil {
		t.Fatal(err)
	}

	// Prepared, not lineage.
	got := listPrepared(t, l, "runA")
	if len(got) != 1 || !sameEvent(got[0], ev) || got[0].At.IsZero() {
		t.Fatalf("Prepared = %+v, want %+v with its time", got, ev)
	}
	if p := listPrepared(t, l, "runB"); len(p) != 0 {
		t.Fatalf("Prepared of another run: %+v", p)
	}
	if evs := lineageOf(t, l, o.id()); len(evs) != 0 {
		t.Fatalf("a prepared event is in the lineage: %+v", evs)
	}
	var buf bytes.Buffer
	if err := ExportCSV(ctx, &buf, l); err != nil || buf.String() != wantCSVHeader {
		t.Fatalf("export of prepared events: %q, %v", buf.String(), err)
	}
	if c := counts(t, l); c[keyA] != 1 || c[keyB] != 0 {
		t.Fatalf("counts = %v", c)
	}
	if got := mustGet(t, l, o.id()); got.WrapKey != keyA || got.State != StateCurrent {
		t.Fatalf("a prepared event changed the record: %+v", got)
	}

	// The write lands; the Commit must be the prepared change.
	o.write(nw, keyB)
	obj, cev := o.completed(ev)
	for name, mod := range map[string]func(*Event){
		"another new wrapped key": func(e *Event) { e.NewWrappedKeySHA256 = WrappedKeyFingerprint([]byte("other")) },
		"another to key":          func(e *Event) { e.ToKey = keyC },
		"another method":          func(e *Event) { e.Method = "kms-decrypt+local-encrypt" },
	} {
		bad := cev
		mod(&bad)
		if err := l.Commit(ctx, ownr(bad.RunID), obj, bad); !errors.Is(err, ErrConflict) {
			t.Errorf("commit with %s than prepared: got %v, want ErrConflict", name, err)
		}
	}
	if err := l.Commit(ctx, ownr(cev.RunID), obj, cev); err != nil {
		t.Fatal(err)
	}
	checkRewrapped(t, l, o, "runA", ev.OldWrappedKeySHA256)
	evs := lineageOf(t, l, o.id())
	if cev.At = evs[0].At; evs[0] != cev {
		t.Fatalf("committed event %+v, want %+v", evs[0], cev)
	}
	// A retried Commit converges.
	if err := l.Commit(ctx, ownr(cev.RunID), obj, cev); err != nil {
		t.Fatalf("retried commit: %v", err)
	}
	if evs := lineageOf(t, l, o.id()); len(evs) != 1 {
		t.Fatalf("%d events after a retried commit", len(evs))
	}

	// Validation.
	id := oid("prepare-validated")
	if _, err := l.Claim(ctx, id, ownr("runA"), time.Hour); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Event){
		"no new fingerprint":        func(e *Event) { e.NewWrappedKeySHA256 = "" },
		"uppercase new fingerprint": func(e *Event) { e.NewWrappedKeySHA256 = strings.ToUpper(e.NewWrappedKeySHA256) },
		"plaintext-sized old":       func(e *Event) { e.OldWrappedKeySHA256 = e.OldWrappedKeySHA256[:32] },
		"run id with slash":         func(e *Event) { e.RunID = ownr("runA") },
		"no op":                     func(e *Event) { e.Op = "" },
		"other version before":      func(e *Event) { e.VersionBefore = "v9" },
	} {
		_, e := change(id, "runA", keyA, keyB)
		mod(&e)
		if err := l.Prepare(ctx, ownr(e.RunID), e); !errors.Is(err, ErrInvalid) {
			t.Errorf("prepare with %s: got %v, want ErrInvalid", name, err)
		}
	}
	// A delete-version stores no wrapped key.
	del := Event{ID: id, RunID: "runA", Op: OpDeleteVersion, Method: "s3-delete-object-version", FromKey: keyA}
	if err := l.Prepare(ctx, ownr(del.RunID), del); err != nil {
		t.Fatalf("prepare delete-version: %v", err)
	}
	if err := l.Commit(ctx, ownr(del.RunID), Object{ID: id, State: StateDeleted}, del); err != nil {
		t.Fatal(err)
	}
	if p := listPrepared(t, l, "runA"); len(p) != 0 {
		t.Fatalf("still prepared: %+v", p)
	}
}

func testPrepareAbandon(t *testing.T, open func(...Option) Ledger) {
	l := open()
	o := newS3Object("abandoned", false)
	mustObserve(t, l, observed(o.id(), keyA))
	if _, err := l.Claim(ctx, o.id(), ownr("runA"), time.Hour); err != nil {
		t.Fatal(err)
	}
	ev, _ := o.rewrapEvent("runA", 1)
	if err := l.Prepare(ctx, ownr(ev.RunID), ev); err != nil {
		t.Fatal(err)
	}
	// The conditional write fails (ErrChanged): nothing landed.
	for i := range 2 {
		if err := l.Abandon(ctx, ownr("runA"), o.id(), "runA", OpRewrap); err != nil {
			t.Fatalf("abandon %d: %v", i, err)
		}
	}
	if p := listPrepared(t, l, "runA"); len(p) != 0 {
		t.Fatalf("abandoned but still prepared: %+v", p)
	}
	if n := rawPrepared(t, l, "runA"); n != 0 {
		t.Fatalf("%d prepared events left", n)
	}
	if evs := lineageOf(t, l, o.id()); len(evs) != 0 {
		t.Fatalf("an abandoned event is in the lineage: %+v", evs)
	}
	if got := mustGet(t, l, o.id()); got.WrapKey != keyA {
		t.Fatalf("record after abandon: %+v", got)
	}
	// Abandon keeps the claim.
	if _, err := l.Claim(ctx, o.id(), ownr("runB"), time.Hour); !errors.Is(err, ErrClaimed) {
		t.Fatalf("claim after abandon: got %v, want ErrClaimed", err)
	}
	if err := l.Abandon(ctx, ownr("runA"), oid("never-prepared"), "runA", OpRewrap); err != nil {
		t.Fatalf("abandon of nothing: %v", err)
	}
	for name, err := range map[string]error{
		"bad run":  l.Abandon(ctx, ownr("run/A"), o.id(), "run/A", OpRewrap),
		"bad op":   l.Abandon(ctx, ownr("runA"), o.id(), "runA", "re#wrap"),
		"no key":   l.Abandon(ctx, ownr("runA"), ObjectID{Bucket: "b"}, "runA", OpRewrap),
		"bad utf8": l.Abandon(ctx, ownr("runA"), ObjectID{Bucket: "b", Key: "\xff"}, "runA", OpRewrap),
	} {
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("abandon with %s: got %v, want ErrInvalid", name, err)
		}
	}
	// The object is processed again: a new attempt, one event.
	process(t, l, o, "runA", 2)
	checkRewrapped(t, l, o, "runA", ev.OldWrappedKeySHA256)
}

func testPrepareTwice(t *testing.T, open func(...Option) Ledger) {
	l := open()
	o := newS3Object("twice", true)
	if _, err := l.Claim(ctx, o.id(), ownr("runA"), time.Hour); err != nil {
		t.Fatal(err)
	}
	ev1, _ := o.rewrapEvent("runA", 1)
	if err := l.Prepare(ctx, ownr(ev1.RunID), ev1); err != nil {
		t.Fatal(err)
	}
	again := ev1
	again.At = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) // At is not compared
	if err := l.Prepare(ctx, ownr(again.RunID), again); err != nil {
		t.Fatalf("prepare of an identical event: %v", err)
	}
	if p := listPrepared(t, l, "runA"); len(p) != 1 || !sameEvent(p[0], ev1) {
		t.Fatalf("Prepared = %+v, want the one event", p)
	}

	// kill -9 before the write. The resumed run re-claims and retries the
	// object with a new wrapped key, from the same old one: the prepared
	// event is never replaced (only the object can tell whether its write
	// landed), so the retry must settle it first.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = open()
	p2 := epochOwner("runA", 2, "p2")
	if _, err := l.Claim(ctx, o.id(), p2, time.Hour); err != nil {
		t.Fatal(err)
	}
	ev2, nw2 := o.rewrapEvent("runA", 2)
	if err := l.Prepare(ctx, p2, ev2); !errors.Is(err, ErrConflict) {
		t.Fatalf("prepare of a retry over an unsettled event: got %v, want ErrConflict", err)
	}
	if p := listPrepared(t, l, "runA"); len(p) != 1 || !sameEvent(p[0], ev1) {
		t.Fatalf("Prepared = %+v, want the first event still", p)
	}
	// The object still holds the old wrapped key: the first write did not
	// land. Abandon it; now the retry prepares.
	if err := l.Abandon(ctx, p2, o.id(), "runA", OpRewrap); err != nil {
		t.Fatal(err)
	}
	if err := l.Prepare(ctx, p2, ev2); err != nil {
		t.Fatalf("prepare of a retry: %v", err)
	}
	if p := listPrepared(t, l, "runA"); len(p) != 1 || !sameEvent(p[0], ev2) {
		t.Fatalf("Prepared = %+v, want only the retry", p)
	}
	// A change from another wrapped key does not replace it either.
	ev3 := ev2
	ev3.OldWrappedKeySHA256, ev3.NewWrappedKeySHA256 = ev2.NewWrappedKeySHA256, WrappedKeyFingerprint([]byte("third"))
	if err := l.Prepare(ctx, p2, ev3); !errors.Is(err, ErrConflict) {
		t.Fatalf("prepare from another wrapped key: got %v, want ErrConflict", err)
	}
	// The abandoned attempt cannot be committed.
	o.write(nw2, keyB)
	obj, cev1 := o.completed(ev1)
	if err := l.Commit(ctx, p2, obj, cev1); !errors.Is(err, ErrConflict) {
		t.Fatalf("commit of the abandoned attempt: got %v, want ErrConflict", err)
	}
	obj, cev2 := o.completed(ev2)
	if err := l.Commit(ctx, p2, obj, cev2); err != nil {
		t.Fatal(err)
	}
	checkRewrapped(t, l, o, "runA", ev1.OldWrappedKeySHA256)

	// Without the claim nothing is replaced.
	p := newS3Object("twice-unclaimed", false)
	if _, err := l.Claim(ctx, p.id(), ownr("runA"), time.Hour); err != nil {
		t.Fatal(err)
	}
	pev1, _ := p.rewrapEvent("runA", 1)
	if err := l.Prepare(ctx, ownr(pev1.RunID), pev1); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx, p.id(), ownr("runA")); err != nil {
		t.Fatal(err)
	}
	pev2, _ := p.rewrapEvent("runA", 2)
	if err := l.Prepare(ctx, ownr(pev2.RunID), pev2); !errors.Is(err, ErrNotClaimed) {
		t.Fatalf("replace without the claim: got %v, want ErrNotClaimed", err)
	}
	if _, err := l.Claim(ctx, p.id(), ownr("runB"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := l.Prepare(ctx, ownr(pev2.RunID), pev2); !errors.Is(err, ErrNotClaimed) {
		t.Fatalf("replace under another run's claim: got %v, want ErrNotClaimed", err)
	}
	if got := listPrepared(t, l, "runA"); len(got) != 1 || !sameEvent(got[0], pev1) {
		t.Fatalf("Prepared = %+v, want the first attempt", got)
	}
}

func testPrepareAfterCommit(t *testing.T, open func(...Option) Ledger) {
	l := open()
	o := newS3Object("committed", false)
	ev, _ := o.rewrapEvent("runA", 1)
	process(t, l, o, "runA", 1)
	_, cev := o.completed(ev)
	// Committed: the same change again is success and prepares nothing,
	// with or without what the commit learnt after the write, with or
	// without the claim.
	for _, e := range []Event{ev, cev} {
		if err := l.Prepare(ctx, ownr(e.RunID), e); err != nil {
			t.Fatalf("prepare of a committed event: %v", err)
		}
	}
	if _, err := l.Claim(ctx, o.id(), ownr("runA"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := l.Prepare(ctx, ownr(ev.RunID), ev); err != nil {
		t.Fatalf("prepare of a committed event: %v", err)
	}
	if n := rawPrepared(t, l, "runA"); n != 0 {
		t.Fatalf("a committed event was prepared again (%d)", n)
	}
	other, _ := newS3Object("committed", false).rewrapEvent("runA", 2)
	if err := l.Prepare(ctx, ownr(other.RunID), other); !errors.Is(err, ErrConflict) {
		t.Fatalf("prepare of another change with a committed identity: got %v, want ErrConflict", err)
	}
	if evs := lineageOf(t, l, o.id()); len(evs) != 1 {
		t.Fatalf("%d events, want 1", len(evs))
	}
}

// testPreparedPages prepares 300 objects, commits and abandons some, and
// lists the rest through pages of 50; then resumes from inside fn.
func testPreparedPages(t *testing.T, open func(...Option) Ledger) {
	l := open(WithPageSize(50))
	const total = 300
	id := func(i int) ObjectID { return oid(fmt.Sprintf("prep/%03d", i)) }
	g := new(errgroup.Group)
	g.SetLimit(8)
	var want []string
	for i := range total {
		if i%4 >= 2 {
			want = append(want, id(i).Key)
		}
		g.Go(func() error {
			if _, err := l.Claim(ctx, id(i), ownr("runP"), time.Hour); err != nil {
				return err
			}
			obj, ev := change(id(i), "runP", keyA, keyB)
			if err := l.Prepare(ctx, ownr(ev.RunID), ev); err != nil {
				return err
			}
			switch i % 4 {
			case 0:
				return l.Commit(ctx, ownr(ev.RunID), obj, ev)
			case 1:
				return l.Abandon(ctx, ownr(ev.RunID), ev.ID, ev.RunID, ev.Op)
			}
			return nil
		})
	}
	for i := range 20 {
		g.Go(func() error {
			qid := oid(fmt.Sprintf("other-run/%02d", i))
			if _, err := l.Claim(ctx, qid, ownr("runQ"), time.Hour); err != nil {
				return err
			}
			_, ev := change(qid, "runQ", keyA, keyB)
			return l.Prepare(ctx, ownr(ev.RunID), ev)
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range listPrepared(t, l, "runP") {
		if _, w := change(e.ID, "runP", keyA, keyB); !sameEvent(e, w) {
			t.Errorf("prepared %+v, want %+v", e, w)
		}
		got = append(got, e.ID.Key)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Prepared lists %d events, want the %d pending ones (first %v)", len(got), len(want), got[:min(len(got), 5)])
	}
	if n := len(listPrepared(t, l, "runQ")); n != 20 {
		t.Fatalf("Prepared of the other run: %d events, want 20", n)
	}
	stop := errors.New("stop")
	calls := 0
	if err := l.Prepared(ctx, "runP", func(Event) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("Prepared with a failing fn: err %v after %d calls", err, calls)
	}
	// Resume from inside fn: every other one landed.
	seen := map[string]bool{}
	n := 0
	err := l.Prepared(ctx, "runP", func(e Event) error {
		if seen[e.ID.Key] {
			t.Errorf("%s listed twice", e.ID.Key)
		}
		seen[e.ID.Key] = true
		if n++; n%2 == 0 {
			return l.Abandon(ctx, ownr(e.RunID), e.ID, e.RunID, e.Op)
		}
		obj, ev := change(e.ID, "runP", keyA, keyB)
		return l.Commit(ctx, ownr(ev.RunID), obj, ev)
	})
	if err != nil || len(seen) != len(want) {
		t.Fatalf("resume: %d of %d events, err %v", len(seen), len(want), err)
	}
	if p := listPrepared(t, l, "runP"); len(p) != 0 {
		t.Fatalf("%d still prepared after resuming", len(p))
	}
	if n := rawPrepared(t, l, "runP"); n != 0 {
		t.Fatalf("%d prepared events left", n)
	}
	events := 0
	if err := l.Events(ctx, func(e Event) error {
		if e.RunID != "runP" {
			t.Errorf("Events lists a prepared event: %+v", e)
		}
		events++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := total/4 + (total/2+1)/2; events != want {
		t.Fatalf("Events: %d, want %d", events, want)
	}
	if err := l.Prepared(ctx, "run/P", func(Event) error { return nil }); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Prepared of a bad run id: got %v, want ErrInvalid", err)
	}
}

// testPrepareCrashPoints kills the process (closes the ledger after a
// simulated crash) at every point of the pipeline's Prepare, write, Commit
// sequence, in place and creating a new version, then resumes: every
// sequence ends with the one event and nothing left over.
func testPrepareCrashPoints(t *testing.T, open func(...Option) Ledger) {
	crash := errors.New("simulated crash")
	const beforeWrite, afterWrite = "before the S3 write", "after the S3 write"
	points := append([]string{beforeWrite, afterWrite}, crashPoints...)
	i := 0
	for _, versioned := range []bool{false, true} {
		for _, point := range points {
			inCommit := point != beforeWrite && point != afterWrite && point != pointPrepared
			for _, retry := range []bool{false, true} {
				if retry && !inCommit {
					continue
				}
				i++
				name := fmt.Sprintf("%s, versioned %v, retry %v", point, versioned, retry)
				run := fmt.Sprintf("crash%02d", i)
				o := newS3Object(fmt.Sprintf("crash/%02d", i), versioned)
				oldFP := o.fingerprint()
				var armed atomic.Bool
				armed.Store(true)
				l := open(withHook(func(p string) error {
					if p == point && armed.CompareAndSwap(true, false) {
						return crash
					}
					return nil
				}))
				if _, err := l.Claim(ctx, o.id(), ownr(run), time.Hour); err != nil {
					t.Fatal(err)
				}
				ev, nw := o.rewrapEvent(run, 1)
				err := l.Prepare(ctx, ownr(ev.RunID), ev)
				if point == pointPrepared {
					if !errors.Is(err, crash) {
						t.Fatalf("%s: prepare: got %v, want the crash", name, err)
					}
				} else if err != nil {
					t.Fatalf("%s: prepare: %v", name, err)
				}
				if point != pointPrepared && point != beforeWrite {
					o.write(nw, keyB)
				}
				obj, cev := o.completed(ev)
				if inCommit {
					if err := l.Commit(ctx, ownr(cev.RunID), obj, cev); !errors.Is(err, crash) {
						t.Fatalf("%s: commit: got %v, want the crash", name, err)
					}
				}
				// kill -9, and a new process.
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
				l = open()
				if retry {
					if err := l.Commit(ctx, ownr(cev.RunID), obj, cev); err != nil {
						t.Fatalf("%s: retried commit: %v", name, err)
					}
					if n := rawPrepared(t, l, run); n != 0 {
						t.Fatalf("%s: the retried commit left the prepared event", name)
					}
				}
				resume(t, l, run, o)
				checkRewrapped(t, l, o, run, oldFP)
				if armed.Load() && point != beforeWrite && point != afterWrite {
					t.Fatalf("%s: never crashed", name)
				}
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// testPrepareTakenOver crashes a Commit after it released the claim (on
// DynamoDB; bbolt rolls the whole Commit back), lets the lease run out and
// another run change the object, then resumes the first run: a recorded
// event is never turned into "changed by someone else", and the other run's
// record stays.
func testPrepareTakenOver(t *testing.T, open func(...Option) Ledger) {
	crash := errors.New("simulated crash")
	clk := newClock()
	var armed atomic.Bool
	armed.Store(true)
	l := open(WithClock(clk.Now), withHook(func(p string) error {
		if p == pointReleased && armed.CompareAndSwap(true, false) {
			return crash
		}
		return nil
	}))
	o := newS3Object("taken-over", false)
	if _, err := l.Claim(ctx, o.id(), ownr("runA"), time.Minute); err != nil {
		t.Fatal(err)
	}
	ev, nw := o.rewrapEvent("runA", 1)
	if err := l.Prepare(ctx, ownr(ev.RunID), ev); err != nil {
		t.Fatal(err)
	}
	o.write(nw, keyB)
	obj, cev := o.completed(ev)
	if err := l.Commit(ctx, ownr(cev.RunID), obj, cev); !errors.Is(err, crash) {
		t.Fatalf("commit: got %v, want the crash", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	l = open(WithClock(clk.Now))
	// Run B rewraps the object onto keyC.
	if _, err := l.Claim(ctx, o.id(), ownr("runB"), time.Minute); err != nil {
		t.Fatal(err)
	}
	bev := Event{ID: o.id(), RunID: "runB", Op: OpRewrap, Method: "kms-reencrypt", FromKey: keyB, ToKey: keyC,
		ETagBefore: o.etag, OldWrappedKeySHA256: o.fingerprint(), NewWrappedKeySHA256: WrappedKeyFingerprint([]byte("runB's"))}
	if err := l.Prepare(ctx, ownr(bev.RunID), bev); err != nil {
		t.Fatal(err)
	}
	o.write("runB's", keyC)
	bobj, bev := o.completed(bev)
	bobj.WrapKey = keyC
	if err := l.Commit(ctx, ownr(bev.RunID), bobj, bev); err != nil {
		t.Fatal(err)
	}
	resume(t, l, "runA", o)
	var runs []string
	for _, e := range lineageOf(t, l, o.id()) {
		runs = append(runs, e.RunID)
	}
	got := mustGet(t, l, o.id())
	switch {
	case slices.Equal(runs, []string{"runA", "runB"}): // DynamoDB: runA's event was recorded
		if got.RunID != "runB" || got.State != StateRewrapped || got.WrapKey != keyC {
			t.Fatalf("record = %+v, want runB's", got)
		}
	case slices.Equal(runs, []string{"runB"}): // bbolt: runA's Commit was rolled back
		if got.State != StateChanged || got.WrapKey != keyC {
			t.Fatalf("record = %+v, want changed under keyC", got)
		}
	default:
		t.Fatalf("lineage runs %v", runs)
	}
	if n := rawPrepared(t, l, "runA") + rawPrepared(t, l, "runB"); n != 0 {
		t.Fatalf("%d prepared events left", n)
	}
}

func testPrepareChangedBySomeoneElse(t *testing.T, open func(...Option) Ledger) {
	l := open()
	o := newS3Object("changed", true)
	start := o.id()
	if _, err := l.Claim(ctx, start, ownr("runA"), time.Hour); err != nil {
		t.Fatal(err)
	}
	ev, _ := o.rewrapEvent("runA", 1)
	if err := l.Prepare(ctx, ownr(ev.RunID), ev); err != nil {
		t.Fatal(err)
	}
	// Our write fails its guard: someone else wrote first; then kill -9.
	o.write("someone else's wrapped key", keyC)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = open()
	resume(t, l, "runA", o)
	if evs := lineageOf(t, l, o.id()); len(evs) != 0 {
		t.Fatalf("lineage after someone else's change: %+v", evs)
	}
	if got := mustGet(t, l, o.id()); got.State != StateChanged || got.WrapKey != keyC {
		t.Fatalf("record = %+v, want changed under keyC", got)
	}
	if n := rawPrepared(t, l, "runA"); n != 0 {
		t.Fatalf("%d prepared events left", n)
	}
	if _, err := l.Claim(ctx, start, ownr("runB"), time.Hour); err != nil {
		t.Fatalf("claim not released: %v", err)
	}
}

// testPrepareConcurrent prepares and commits distinct objects from many
// goroutines, and one identical event from many goroutines in both orders,
// while Prepared runs: run it under -race.
func testPrepareConcurrent(t *testing.T, open func(...Option) Ledger) {
	l := open()
	const distinct, same = 32, 16
	g := new(errgroup.Group)
	for i := range distinct {
		g.Go(func() error {
			id := oid(fmt.Sprintf("conc/%02d", i))
			if _, err := l.Claim(ctx, id, ownr("runC"), time.Hour); err != nil {
				return err
			}
			obj, ev := change(id, "runC", keyA, keyB)
			if err := l.Prepare(ctx, ownr(ev.RunID), ev); err != nil {
				return err
			}
			if i%4 == 3 {
				return l.Abandon(ctx, ownr("runC"), id, "runC", OpRewrap)
			}
			return l.Commit(ctx, ownr(ev.RunID), obj, ev)
		})
	}
	sid := oid("conc/same")
	if _, err := l.Claim(ctx, sid, ownr("runC"), time.Hour); err != nil {
		t.Fatal(err)
	}
	obj, ev := change(sid, "runC", keyA, keyB)
	for i := range same {
		g.Go(func() error {
			if i%2 == 0 {
				if err := l.Prepare(ctx, ownr(ev.RunID), ev); err != nil {
					return fmt.Errorf("prepare %d: %w", i, err)
				}
			}
			if err := l.Commit(ctx, ownr(ev.RunID), obj, ev); err != nil {
				return fmt.Errorf("commit %d: %w", i, err)
			}
			if i%2 == 1 {
				if err := l.Prepare(ctx, ownr(ev.RunID), ev); err != nil {
					return fmt.Errorf("prepare %d after commit: %w", i, err)
				}
			}
			return nil
		})
	}
	for range 3 {
		g.Go(func() error {
			return l.Prepared(ctx, "runC", func(e Event) error {
				if e.RunID != "runC" {
					return fmt.Errorf("Prepared(runC) listed %+v", e)
				}
				return nil
			})
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if evs := lineageOf(t, l, sid); len(evs) != 1 || !sameEvent(evs[0], ev) {
		t.Fatalf("lineage of the contended object: %+v", evs)
	}
	for i := range distinct {
		want := 1
		if i%4 == 3 {
			want = 0
		}
		if evs := lineageOf(t, l, oid(fmt.Sprintf("conc/%02d", i))); len(evs) != want {
			t.Errorf("conc/%02d: %d events, want %d", i, len(evs), want)
		}
	}
	if p := listPrepared(t, l, "runC"); len(p) != 0 {
		t.Fatalf("still prepared: %+v", p)
	}
	if n := rawPrepared(t, l, "runC"); n != 0 {
		t.Fatalf("%d prepared events left after Prepared", n)
	}
}
