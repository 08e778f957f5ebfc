package pipeline_test

import (
	"bytes"
	"context"
	"maps"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/internal/sample"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/pipeline"
)

// countingS3 counts the S3 writes a run sends.
type countingS3 struct {
	commit.S3
	copies, puts, deletes     atomic.Int64
	creates, parts, completes atomic.Int64 // multipart uploads
	heads, gets               atomic.Int64
}

func (c *countingS3) HeadObject(ctx2 context.Context, in *s3.HeadObjectInput, o ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	c.heads.Add(1)
	return c.S3.HeadObject(ctx2, in, o...)
}

func (c *countingS3) GetObject(ctx2 context.Context, in *s3.GetObjectInput, o ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	c.gets.Add(1)
	return c.S3.GetObject(ctx2, in, o...)
}

func (c *countingS3) CreateMultipartUpload(ctx2 context.Context, in *s3.CreateMultipartUploadInput, o ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error) {
	c.creates.Add(1)
	return c.S3.CreateMultipartUpload(ctx2, in, o...)
}

func (c *countingS3) UploadPart(ctx2 context.Context, in *s3.UploadPartInput, o ...func(*s3.Options)) (*s3.UploadPartOutput, error) {
	c.parts.Add(1)
	return c.S3.UploadPart(ctx2, in, o...)
}

func (c *countingS3) CompleteMultipartUpload(ctx2 context.Context, in *s3.CompleteMultipartUploadInput, o ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error) {
	c.completes.Add(1)
	return c.S3.CompleteMultipartUpload(ctx2, in, o...)
}

func (c *countingS3) CopyObject(ctx2 context.Context, in *s3.CopyObjectInput, o ...func(*s3.Options)) (*s3.CopyObjectOutput, error) {
	c.copies.Add(1)
	return c.S3.CopyObject(ctx2, in, o...)
}

func (c *countingS3) PutObject(ctx2 context.Context, in *s3.PutObjectInput, o ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	c.puts.Add(1)
	return c.S3.PutObject(ctx2, in, o...)
}

func (c *countingS3) DeleteObject(ctx2 context.Context, in *s3.DeleteObjectInput, o ...func(*s3.Options)) (*s3.DeleteObjectOutput, error) {
	c.deletes.Add(1)
	return c.S3.DeleteObject(ctx2, in, o...)
}

// TestMoveToInstructionFileThenRotateWithoutCopying: --placement
// instruction-file rewraps each object whose envelope is in its metadata
// and moves the envelope into KEY.instruction in the same copy (V3 keeps
// x-amz-c, x-amz-d, x-amz-i on the object); the body, the other metadata,
// the tags and the content type are unchanged, and the object opens under
// the new key. The next rotation rewrites the instruction files only: not
// one copy.
func TestMoveToInstructionFileThenRotateWithoutCopying(t *testing.T) {
	f := newFixture(t, 8, false)
	cs := &countingS3{S3: f.s3}
	mover := commit.New(cs, commit.Options{})
	before := map[string]snapshot{}
	for _, o := range f.objs {
		before[o.Key] = snap(t, f, o.Key)
	}
	c := f.core("move-1")
	c.S3, c.Move = mover, mover
	rep, buf := f.run(t, c)
	if n := rep.Counts()[pipeline.StatusSucceeded]; n != int64(len(f.objs)) {
		t.Fatalf("succeeded %d of %d\n%s", n, len(f.objs), buf)
	}
	var inMeta int
	for _, o := range f.objs {
		if got := f.decrypt(t, o.Key, f.b); !bytes.Equal(got, f.plain[o.Key]) {
			t.Errorf("%s: plaintext differs after the move", o.Key)
		}
		after, b := snap(t, f, o.Key), before[o.Key]
		if !bytes.Equal(after.body, b.body) || !maps.Equal(after.meta, b.meta) || !maps.Equal(after.tags, b.tags) || after.ct != b.ct {
			t.Errorf("%s: body, metadata, tags or content type changed", o.Key)
		}
		h, err := f.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &f.bucket, Key: aws.String(o.Key)})
		if err != nil {
			t.Fatal(err)
		}
		if !envelope.NeedsInstructionFile(h.Metadata) {
			t.Errorf("%s: the metadata still holds a complete envelope: %v", o.Key, h.Metadata)
		}
		for _, name := range []string{envelope.FieldV3Key, envelope.FieldKeyV2, envelope.FieldIV} {
			if _, ok := h.Metadata[name]; ok {
				t.Errorf("%s: %s left in the metadata", o.Key, name)
			}
		}
		if o.Kind.Format == envelope.V3 {
			for _, name := range []string{"x-amz-c", "x-amz-d", "x-amz-i"} {
				if h.Metadata[name] == "" {
					t.Errorf("%s: V3 object lost %s (the format keeps it on the object)", o.Key, name)
				}
			}
		}
		ik := o.Key + envelope.DefaultInstructionSuffix
		io, err := f.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &f.bucket, Key: &ik})
		if err != nil {
			t.Errorf("%s: no instruction file: %v", o.Key, err)
			continue
		}
		if o.Kind.Placement == envelope.PlacementMetadata {
			inMeta++
			if !envelope.IsInstructionFile(io.Metadata) {
				t.Errorf("%s: the new instruction file lacks the Java client's marker: %v", ik, io.Metadata)
			}
		}
	}
	// Each object in metadata: one instruction file created, one copy.
	if cs.copies.Load() != int64(inMeta) || cs.puts.Load() != int64(len(f.objs)) || cs.deletes.Load() != 0 {
		t.Errorf("first run: %d copies, %d puts, %d deletes; want %d, %d, 0", cs.copies.Load(), cs.puts.Load(), cs.deletes.Load(), inMeta, len(f.objs))
	}
	evs := map[string]int{}
	if err := f.ledger.Events(ctx, func(ev ledger.Event) error {
		evs[ev.Op]++
		if ev.Op == ledger.OpMove && !strings.HasSuffix(ev.Method, "+move") {
			t.Errorf("move event with method %q", ev.Method)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if evs[ledger.OpMove] != inMeta || evs[ledger.OpRewrap] != len(f.objs)-inMeta {
		t.Errorf("events %v: want %d moves, %d rewraps", evs, inMeta, len(f.objs)-inMeta)
	}

	// The next rotation, back to A: instruction files only.
	cs.copies.Store(0)
	cs.puts.Store(0)
	c2 := f.core("move-2")
	c2.To, c2.S3, c2.Move = f.a, mover, mover
	rep, buf = f.run(t, c2)
	if n := rep.Counts()[pipeline.StatusSucceeded]; n != int64(len(f.objs)) {
		t.Fatalf("second rotation: succeeded %d of %d\n%s", n, len(f.objs), buf)
	}
	if cs.copies.Load() != 0 || cs.puts.Load() != int64(len(f.objs)) {
		t.Errorf("second rotation: %d copies, %d puts; want 0 copies, %d puts", cs.copies.Load(), cs.puts.Load(), len(f.objs))
	}
	for _, o := range f.objs {
		if got := f.decrypt(t, o.Key, f.a); !bytes.Equal(got, f.plain[o.Key]) {
			t.Errorf("%s: plaintext differs after the second rotation", o.Key)
		}
	}
}

// An instruction file someone left beside an object whose metadata holds
// the envelope is never overwritten: the object is reported and both are
// left as they are.
func TestMoveLeavesAnExistingInstructionFile(t *testing.T) {
	f := newFixture(t, 0, false)
	objs, err := sample.Seed(ctx, f.s3, f.kms.Client(""), sample.Options{Bucket: f.bucket, KMSKeyID: f.a.ID(), Count: 1,
		Kinds: []sample.Kind{{Format: envelope.V2, Placement: envelope.PlacementMetadata}}})
	if err != nil {
		t.Fatal(err)
	}
	key := objs[0].Key
	ik := key + envelope.DefaultInstructionSuffix
	stale := []byte(`{"x-amz-key-v2":"c3RhbGU=","x-amz-iv":"AAAAAAAAAAAAAAAA","x-amz-matdesc":"{}","x-amz-wrap-alg":"kms+context","x-amz-cek-alg":"AES/GCM/NoPadding","x-amz-tag-len":"128"}`)
	put(t, f, ik, stale, nil)
	orig := snap(t, f, key)
	c := f.core("move-exists")
	c.Move = f.commit
	rep, buf := f.run(t, c)
	if rep.Counts()[pipeline.StatusFailed] != 1 || !strings.Contains(buf.String(), pipeline.CodeInstructionExists) {
		t.Fatalf("want the object reported %s\n%s", pipeline.CodeInstructionExists, buf)
	}
	if got := snap(t, f, ik); !bytes.Equal(got.body, stale) {
		t.Errorf("the existing instruction file was changed")
	}
	if got := snap(t, f, key); !bytes.Equal(got.body, orig.body) {
		t.Errorf("the object was changed")
	}
	pt, _, err := sample.Open(ctx, f.s3, f.bucket, key, f.a)
	if err != nil || len(pt) != objs[0].Size {
		t.Errorf("the object no longer opens under its key: %v", err)
	}
}

// Above the multipart threshold the move's copy is a multipart copy of the
// object onto itself, without the envelope: same result.
func TestMoveMultipartCopy(t *testing.T) {
	f := newFixture(t, 4, false)
	cs := &countingS3{S3: f.s3}
	// Every object is above it: the smallest (no plaintext) is its
	// 16-byte tag. (It was 100: the fixture's sizes are uniform in
	// [0, 3000], and one object in 30 went below.)
	mover := commit.New(cs, commit.Options{MultipartThreshold: 15})
	c := f.core("move-multipart")
	c.S3, c.Move = mover, mover
	rep, buf := f.run(t, c)
	if n := rep.Counts()[pipeline.StatusSucceeded]; n != int64(len(f.objs)) {
		t.Fatalf("succeeded %d of %d\n%s", n, len(f.objs), buf)
	}
	for _, o := range f.objs {
		if got := f.decrypt(t, o.Key, f.b); !bytes.Equal(got, f.plain[o.Key]) {
			t.Errorf("%s: plaintext differs after the move", o.Key)
		}
		h, err := f.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &f.bucket, Key: aws.String(o.Key)})
		if err != nil {
			t.Fatal(err)
		}
		if !envelope.NeedsInstructionFile(h.Metadata) {
			t.Errorf("%s: the metadata still holds a complete envelope", o.Key)
		}
	}
	if cs.copies.Load() != 0 {
		t.Errorf("%d CopyObject calls: above the threshold the copy is multipart", cs.copies.Load())
	}
}

// interfering runs before each DropEnvelope: someone else writes the
// object between the move's two writes.
type interfering struct {
	pipeline.Mover
	before func(obj *commit.Object)
}

func (m interfering) DropEnvelope(ctx context.Context, obj *commit.Object, side map[string]string) (commit.Result, error) {
	m.before(obj)
	return m.Mover.DropEnvelope(ctx, obj, side)
}

// An object someone else rewrites between the move's two writes is left
// as they made it (Changed), and the instruction file the move created
// beside it, which no reader uses (their object holds its envelope in its
// metadata), is deleted.
func TestMoveLeavesAnObjectChangedMidMoveAndRemovesItsFile(t *testing.T) {
	f := newFixture(t, 0, false)
	objs, err := sample.Seed(ctx, f.s3, f.kms.Client(""), sample.Options{Bucket: f.bucket, KMSKeyID: f.a.ID(), Count: 1,
		Kinds: []sample.Kind{{Format: envelope.V3, Placement: envelope.PlacementMetadata}}})
	if err != nil {
		t.Fatal(err)
	}
	key := objs[0].Key
	theirs := []byte("their new content")
	c := f.core("move-changed")
	c.Move = interfering{Mover: f.commit, before: func(obj *commit.Object) {
		put(t, f, key, theirs, obj.Metadata) // a complete envelope in the metadata, another body
	}}
	rep, buf := f.run(t, c)
	if rep.Counts()[pipeline.StatusChanged] != 1 {
		t.Fatalf("want the object reported changed\n%s", buf)
	}
	if got := snap(t, f, key); !bytes.Equal(got.body, theirs) {
		t.Errorf("the other writer's object was changed")
	}
	ik := key + envelope.DefaultInstructionSuffix
	if _, err := f.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &f.bucket, Key: &ik}); err == nil {
		t.Errorf("the move's instruction file is left beside the changed object")
	}
}
