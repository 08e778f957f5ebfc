package ledger

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The contract of re-encryption checkpoints (SaveUpload, GetUpload,
// DeleteUpload, Uploads), part of testContract.

// randomState returns n bytes that neither backend can compress, every byte
// value included.
func randomState(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func mustClaim(t *testing.T, l Ledger, id ObjectID, owner string) {
	t.Helper()
	if _, err := l.Claim(ctx, id, owner, time.Hour); err != nil {
		t.Fatalf("claim %s by %s: %v", id, owner, err)
	}
}

func mustSaveUpload(t *testing.T, l Ledger, u Upload) {
	t.Helper()
	if err := l.SaveUpload(ctx, ownr(u.RunID), u); err != nil {
		t.Fatalf("save checkpoint of %q by %s: %v", u.ID.String(), u.RunID, err)
	}
}

func mustGetUpload(t *testing.T, l Ledger, run string, id ObjectID) Upload {
	t.Helper()
	u, err := l.GetUpload(ctx, run, id)
	if err != nil {
		t.Fatalf("get checkpoint of %q by %s: %v", id.String(), run, err)
	}
	return u
}

func wantNoUpload(t *testing.T, l Ledger, run string, id ObjectID) {
	t.Helper()
	if u, err := l.GetUpload(ctx, run, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get checkpoint of %q by %s: %+v, %v; want ErrNotFound", id.String(), run, u, err)
	}
}

// listUploads returns the checkpoints Uploads lists for run, failing on a
// version listed twice.
func listUploads(t *testing.T, l Ledger, run string) map[ObjectID]Upload {
	t.Helper()
	got := map[ObjectID]Upload{}
	err := l.Uploads(ctx, run, func(u Upload) error {
		if _, dup := got[u.ID]; dup {
			t.Errorf("Uploads(%s) lists %q twice", run, u.ID.String())
		}
		got[u.ID] = u
		return nil
	})
	if err != nil {
		t.Fatalf("Uploads(%s): %v", run, err)
	}
	return got
}

// testUploadSave covers one checkpoint: round trip, replace, the claim
// guard, validation and the size limit.
func testUploadSave(t *testing.T, open func(...Option) Ledger) {
	clk := newClock()
	l := open(WithClock(clk.Now))
	id := ObjectID{Bucket: "data-bucket", Key: "video/big.mp4", VersionID: "v1"}
	wantNoUpload(t, l, "runA", id)

	// The claim guard: none, then another run's.
	u := Upload{ID: id, RunID: "runA", UploadID: "up-1", State: []byte("parts 1-3")}
	if err := l.SaveUpload(ctx, ownr(u.RunID), u); !errors.Is(err, ErrNotClaimed) {
		t.Fatalf("save without a claim: %v, want ErrNotClaimed", err)
	}
	mustClaim(t, l, id, ownr("runB"))
	if err := l.SaveUpload(ctx, ownr(u.RunID), u); !errors.Is(err, ErrNotClaimed) {
		t.Fatalf("save under runB's claim: %v, want ErrNotClaimed", err)
	}
	wantNoUpload(t, l, "runA", id)
	if err := l.Release(ctx, id, ownr("runB")); err != nil {
		t.Fatal(err)
	}

	// Round trip: the bytes as given, UpdatedAt from the ledger's clock
	// whatever the caller set.
	mustClaim(t, l, id, ownr("runA"))
	u.State = randomState(4096, 1)
	u.UpdatedAt = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	mustSaveUpload(t, l, u)
	got := mustGetUpload(t, l, "runA", id)
	if got.ID != id || got.RunID != "runA" || got.UploadID != "up-1" || !bytes.Equal(got.State, u.State) {
		t.Fatalf("got %+v", got)
	}
	if !got.UpdatedAt.Equal(clk.Now()) {
		t.Errorf("UpdatedAt = %v, want the ledger's clock %v", got.UpdatedAt, clk.Now())
	}
	wantNoUpload(t, l, "runB", id) // checkpoints belong to their run

	// Replace, by the next process of the run (a later epoch of its lease).
	next := epochOwner("runA", 2, "p2")
	mustClaim(t, l, id, next)
	clk.Advance(time.Minute)
	if err := l.SaveUpload(ctx, ownr("runA"), Upload{ID: id, RunID: "runA", UploadID: "up-x"}); !errors.Is(err, ErrNotClaimed) {
		t.Fatalf("save by the earlier epoch: got %v, want ErrNotClaimed", err)
	}
	if err := l.SaveUpload(ctx, next, Upload{ID: id, RunID: "runA", UploadID: "up-2", State: []byte("parts 1-4")}); err != nil {
		t.Fatal(err)
	}
	got = mustGetUpload(t, l, "runA", id)
	if got.UploadID != "up-2" || string(got.State) != "parts 1-4" || !got.UpdatedAt.Equal(clk.Now()) {
		t.Fatalf("after replace: %+v", got)
	}
	if err := l.Release(ctx, id, next); err != nil {
		t.Fatal(err)
	}
	mustClaim(t, l, id, ownr("runA"))
	// Replace with an empty one: nothing of the old one stays.
	clk.Advance(time.Minute)
	mustSaveUpload(t, l, Upload{ID: id, RunID: "runA"})
	got = mustGetUpload(t, l, "runA", id)
	if got.UploadID != "" || len(got.State) != 0 || !got.UpdatedAt.Equal(clk.Now()) {
		t.Fatalf("after replace with an empty checkpoint: %+v", got)
	}

	// The size limit: MaxUploadStateBytes (300 KiB) fits a DynamoDB item,
	// one byte more is refused and leaves the stored checkpoint alone.
	big := randomState(MaxUploadStateBytes, 2)
	mustSaveUpload(t, l, Upload{ID: id, RunID: "runA", UploadID: "up-3", State: big})
	if got := mustGetUpload(t, l, "runA", id); !bytes.Equal(got.State, big) || got.UploadID != "up-3" {
		t.Fatalf("a state of %d bytes did not round-trip (%d bytes back)", len(big), len(got.State))
	}
	if err := l.SaveUpload(ctx, ownr("runA"), Upload{ID: id, RunID: "runA", State: randomState(MaxUploadStateBytes+1, 3)}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("save of %d bytes of state: %v, want ErrInvalid", MaxUploadStateBytes+1, err)
	}
	if got := mustGetUpload(t, l, "runA", id); !bytes.Equal(got.State, big) {
		t.Fatal("a refused save changed the checkpoint")
	}

	// Bad arguments.
	for _, bad := range []Upload{
		{ID: id, RunID: ""},
		{ID: id, RunID: ownr("runA")},
		{ID: id, RunID: "run#A"},
		{ID: ObjectID{Key: "k"}, RunID: "runA"},
		{ID: ObjectID{Bucket: "b"}, RunID: "runA"},
		{ID: ObjectID{Bucket: "b", Key: "\xff"}, RunID: "runA"},
		{ID: id, RunID: "runA", UploadID: "\xfe"},
	} {
		if err := l.SaveUpload(ctx, ownr(bad.RunID), bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("SaveUpload(%+v): %v, want ErrInvalid", bad, err)
		}
	}
	for _, run := range []string{"", "a/b", "run#A"} {
		if _, err := l.GetUpload(ctx, run, id); !errors.Is(err, ErrInvalid) {
			t.Errorf("GetUpload(%q): %v, want ErrInvalid", run, err)
		}
		if err := l.DeleteUpload(ctx, ownr(run), run, id); !errors.Is(err, ErrInvalid) {
			t.Errorf("DeleteUpload(%q): %v, want ErrInvalid", run, err)
		}
		if err := l.Uploads(ctx, run, func(Upload) error { return nil }); !errors.Is(err, ErrInvalid) {
			t.Errorf("Uploads(%q): %v, want ErrInvalid", run, err)
		}
	}
	if _, err := l.GetUpload(ctx, "runA", ObjectID{Bucket: "b"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("GetUpload without a key: %v, want ErrInvalid", err)
	}

	// Commit leaves the checkpoint alone, and without the claim it can no
	// longer be saved.
	obj, ev := change(id, "runA", keyA, keyB)
	if err := l.Commit(ctx, ownr(ev.RunID), obj, ev); err != nil {
		t.Fatal(err)
	}
	if got := mustGetUpload(t, l, "runA", id); !bytes.Equal(got.State, big) {
		t.Fatal("Commit changed the checkpoint")
	}
	if err := l.SaveUpload(ctx, ownr("runA"), Upload{ID: id, RunID: "runA"}); !errors.Is(err, ErrNotClaimed) {
		t.Fatalf("save after Commit released the claim: %v, want ErrNotClaimed", err)
	}

	// A claim taken over by another run once the lease expired.
	id2 := ObjectID{Bucket: "data-bucket", Key: "video/other.mp4"}
	mustClaim(t, l, id2, ownr("runA"))
	mustSaveUpload(t, l, Upload{ID: id2, RunID: "runA", UploadID: "up-a"})
	clk.Advance(2 * time.Hour)
	mustClaim(t, l, id2, ownr("runB"))
	if err := l.SaveUpload(ctx, ownr("runA"), Upload{ID: id2, RunID: "runA", UploadID: "up-a2"}); !errors.Is(err, ErrNotClaimed) {
		t.Fatalf("save after runB took the claim over: %v, want ErrNotClaimed", err)
	}
	mustSaveUpload(t, l, Upload{ID: id2, RunID: "runB", UploadID: "up-b"})
	if a, b := mustGetUpload(t, l, "runA", id2), mustGetUpload(t, l, "runB", id2); a.UploadID != "up-a" || b.UploadID != "up-b" {
		t.Fatalf("runA's checkpoint %+v, runB's %+v", a, b)
	}

	// Delete needs the claim: runA lost it, and its checkpoint may hold
	// the only copy of an envelope whose content landed.
	if err := l.DeleteUpload(ctx, ownr("runA"), "runA", id2); !errors.Is(err, ErrNotClaimed) {
		t.Fatalf("delete after runB took the claim over: %v, want ErrNotClaimed", err)
	}
	if got := mustGetUpload(t, l, "runA", id2); got.UploadID != "up-a" {
		t.Fatalf("a refused delete changed runA's checkpoint: %+v", got)
	}
	// Once runA holds the claim again: deleting, and deleting again, or
	// what never existed, is no error.
	if err := l.Release(ctx, id2, ownr("runB")); err != nil {
		t.Fatal(err)
	}
	mustClaim(t, l, id2, ownr("runA"))
	for range 2 {
		if err := l.DeleteUpload(ctx, ownr("runA"), "runA", id2); err != nil {
			t.Fatal(err)
		}
		wantNoUpload(t, l, "runA", id2)
	}
	if err := l.DeleteUpload(ctx, ownr("runC"), "runC", ObjectID{Bucket: "b", Key: "never"}); err != nil {
		t.Fatalf("delete of a checkpoint that never existed: %v", err)
	}
	if got := mustGetUpload(t, l, "runB", id2); got.UploadID != "up-b" {
		t.Fatalf("deleting runA's checkpoint changed runB's: %+v", got)
	}

	// Checkpoints outlive the process.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = open(WithClock(clk.Now))
	if got := mustGetUpload(t, l, "runA", id); !bytes.Equal(got.State, big) || got.UploadID != "up-3" {
		t.Fatalf("after reopening: %d bytes, upload id %q", len(got.State), got.UploadID)
	}
}

// testUploadsList covers Uploads: only the run's checkpoints, every one
// once, across pages, with fn writing to the ledger; and versions whose
// names look like separators or other sort keys.
func testUploadsList(t *testing.T, open func(...Option) Ledger) {
	l := open(WithPageSize(3))
	ids := append([]ObjectID{
		{Bucket: "b", Key: "upl#x", VersionID: "upl#"},
		{Bucket: "b", Key: "prep#x", VersionID: "%"},
		{Bucket: "b", Key: "nul\x00key", VersionID: "\x00"},
		{Bucket: "b", Key: "same", VersionID: ""},
		{Bucket: "b", Key: "same", VersionID: "%23"},
		{Bucket: "b", Key: "same", VersionID: "%25"},
		{Bucket: "b", Key: "same", VersionID: "%"},
	}, oddIDs...)
	state := func(id ObjectID) []byte { return []byte("state of " + id.String()) }
	for i, id := range ids {
		mustClaim(t, l, id, ownr("r1"))
		mustSaveUpload(t, l, Upload{ID: id, RunID: "r1", UploadID: "up-" + string(rune('a'+i)), State: state(id)})
	}
	// Other runs, one whose id extends r1's, and a prepared event of r1 in
	// the same partitions.
	for _, run := range []string{"r10", "r", "r1.0"} {
		id := ObjectID{Bucket: "b", Key: "of " + run}
		mustClaim(t, l, id, ownr(run))
		mustSaveUpload(t, l, Upload{ID: id, RunID: run, State: []byte(run)})
	}
	_, ev := change(ids[3], "r1", keyA, keyB)
	if err := l.Prepare(ctx, ownr(ev.RunID), ev); err != nil {
		t.Fatal(err)
	}

	for i, id := range ids {
		got := mustGetUpload(t, l, "r1", id)
		if got.ID != id || got.UploadID != "up-"+string(rune('a'+i)) || !bytes.Equal(got.State, state(id)) {
			t.Errorf("get %q: %+v: ids collide", id.String(), got)
		}
	}

	// fn writes to the ledger (a save that replaces the checkpoint it is
	// given): every checkpoint is still listed once.
	n := 0
	err := l.Uploads(ctx, "r1", func(u Upload) error {
		n++
		if u.RunID != "r1" || !bytes.Equal(u.State, state(u.ID)) {
			t.Errorf("listed %+v", u)
		}
		u.State = append(u.State, " again"...)
		return l.SaveUpload(ctx, ownr(u.RunID), u)
	})
	if err != nil {
		t.Fatal(err)
	}
	got := listUploads(t, l, "r1")
	if n != len(ids) || len(got) != len(ids) {
		t.Fatalf("Uploads(r1) called fn %d times, then listed %d; want %d", n, len(got), len(ids))
	}
	for _, id := range ids {
		if u, ok := got[id]; !ok || string(u.State) != string(state(id))+" again" {
			t.Errorf("%q: listed %v, %+v", id.String(), ok, u)
		}
	}

	// Prepared events and checkpoints share partitions but not listings.
	var prepared []Event
	if err := l.Prepared(ctx, "r1", func(e Event) error { prepared = append(prepared, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(prepared) != 1 || prepared[0].ID != ids[3] {
		t.Fatalf("Prepared(r1) = %+v, want the one prepared event", prepared)
	}

	// fn's first error stops the listing.
	stop := errors.New("stop")
	n = 0
	if err := l.Uploads(ctx, "r1", func(Upload) error { n++; return stop }); err != stop || n != 1 {
		t.Fatalf("Uploads with a failing fn: %v after %d calls, want stop after 1", err, n)
	}

	// fn deletes what it is given.
	n = 0
	err = l.Uploads(ctx, "r1", func(u Upload) error {
		n++
		return l.DeleteUpload(ctx, ownr(u.RunID), u.RunID, u.ID)
	})
	if err != nil || n != len(ids) {
		t.Fatalf("Uploads deleting: %v after %d calls, want %d", err, n, len(ids))
	}
	if got := listUploads(t, l, "r1"); len(got) != 0 {
		t.Fatalf("after deleting them all, Uploads(r1) lists %d", len(got))
	}
	for _, id := range ids {
		wantNoUpload(t, l, "r1", id)
	}
	for _, run := range []string{"r10", "r", "r1.0"} {
		got := listUploads(t, l, run)
		id := ObjectID{Bucket: "b", Key: "of " + run}
		if len(got) != 1 || string(got[id].State) != run {
			t.Errorf("Uploads(%s) = %+v", run, got)
		}
	}
	if got := listUploads(t, l, "nobody"); len(got) != 0 {
		t.Errorf("Uploads of a run without checkpoints: %+v", got)
	}
	if err := l.Abandon(ctx, ownr(ev.RunID), ev.ID, ev.RunID, ev.Op); err != nil {
		t.Fatal(err)
	}
	if n := rawPrepared(t, l, "r1"); n != 0 {
		t.Fatalf("%d prepared events left", n)
	}
}

// TestBoltUploadsOldFile opens a file written before the uploads bucket
// existed (schema 1 without it): opening adds the bucket.
func TestBoltUploadsOldFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	l, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	id := oid("old-file")
	mustObserve(t, l, observed(id, keyA))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketUploads) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	l, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := mustGet(t, l, id); got.WrapKey != keyA {
		t.Fatalf("record lost: %+v", got)
	}
	wantNoUpload(t, l, "runA", id)
	if got := listUploads(t, l, "runA"); len(got) != 0 {
		t.Fatalf("Uploads: %+v", got)
	}
	mustClaim(t, l, id, ownr("runA"))
	mustSaveUpload(t, l, Upload{ID: id, RunID: "runA", UploadID: "up"})
	if got := mustGetUpload(t, l, "runA", id); got.UploadID != "up" {
		t.Fatalf("got %+v", got)
	}
}
