package commit_test

import (
	"testing"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/envelope"
)

// TestCreateInstruction: a new instruction file (an escrow file) is written
// only where nothing exists; an existing file is never overwritten (not
// even one written between the read and the write); a retry of a write
// that landed is success.
func TestCreateInstruction(t *testing.T) {
	c := client(t)
	t.Parallel()
	bucket := newBucket(t, c, false)
	cm := commit.New(c, commit.Options{})
	key := "obj.escrow.instruction"
	body := []byte(`{"x-amz-3":"AAAA","x-amz-m":"{}","x-amz-w":"02"}`)
	res, err := cm.CreateInstruction(ctx, bucket, key, body)
	if err != nil {
		t.Fatal(err)
	}
	st, got, err := cm.ReadInstruction(ctx, bucket, key, "")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(body) || st.ETag != res.ETagAfter || !envelope.IsInstructionFile(st.Metadata) {
		t.Errorf("created file %s etag %s (result %s) metadata %v", got, st.ETag, res.ETagAfter, st.Metadata)
	}
	// The same body again: the file holds it, so the create reports success
	// (what a retry after a lost response sees).
	if _, err := cm.CreateInstruction(ctx, bucket, key, body); err != nil {
		t.Errorf("create of a file that holds the body already: %v", err)
	}
	// Another body: refused, the file is left as it is.
	other := []byte(`{"x-amz-3":"BBBB","x-amz-m":"{}","x-amz-w":"02"}`)
	_, err = cm.CreateInstruction(ctx, bucket, key, other)
	wantErr(t, err, commit.ErrChanged)
	if _, got, err := cm.ReadInstruction(ctx, bucket, key, ""); err != nil || string(got) != string(body) {
		t.Errorf("after a refused create the file holds %s (%v), want %s", got, err, body)
	}

	// A file written just before the create is kept.
	key2 := "obj2.escrow.instruction"
	h := &hooked{Client: c}
	h.beforePut = func() { h.beforePut = nil; overwrite(t, c, bucket, key2, other) }
	_, err = commit.New(h, commit.Options{}).CreateInstruction(ctx, bucket, key2, body)
	wantErr(t, err, commit.ErrChanged)
	assertOther(t, snap(t, c, bucket, key2, ""), other)

	if _, err := cm.CreateInstruction(ctx, bucket, "x", []byte(`{}`)); err == nil {
		t.Error("a body without a wrapped key was written")
	}
}
