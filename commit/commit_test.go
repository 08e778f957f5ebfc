package commit_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/envelope"
)

// smallMultipart exercises the multipart path on small objects. It leaves
// out the checksums, which versitygw v1.8.0 gets wrong for UploadPartCopy
// (checksum_test.go runs the default checksum path on both servers).
var smallMultipart = commit.Options{MultipartThreshold: 5 << 20, PartSize: 5 << 20, NoMultipartChecksum: true}

func TestSelfCopy(t *testing.T) {
	c := client(t)
	t.Parallel()
	bucket := newBucket(t, c, false)
	for _, tc := range []struct {
		name   string
		format envelope.Format
		toKMS  bool
	}{
		{"V3-aes-to-aes", envelope.V3, false},
		{"V3-aes-to-kms", envelope.V3, true}, // x-amz-m -> x-amz-t
		{"V2-aes-to-aes", envelope.V2, false},
		{"V2-aes-to-kms", envelope.V2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			key := "obj/" + tc.name
			fx := putEncrypted(t, c, bucket, key, tc.format, 3000)
			cm := commit.New(c, commit.Options{})
			before := snap(t, c, bucket, key, "")
			obj, err := cm.Head(ctx, bucket, key, "")
			if err != nil {
				t.Fatal(err)
			}
			if obj.ETag == "" || obj.Size != int64(len(before.body)) || obj.Noncurrent {
				t.Fatalf("head: %+v", obj)
			}
			newMeta := rewrap(t, obj, tc.toKMS)
			res, err := cm.MetadataEnvelope(ctx, obj, newMeta)
			if err != nil {
				t.Fatal(err)
			}
			if res.ETagBefore != obj.ETag || res.ETagAfter == "" || res.Parts != 0 {
				t.Errorf("result %+v", res)
			}
			after := snap(t, c, bucket, key, "")
			assertPreserved(t, before, after)
			if got := envelopeMeta(after.head.Metadata); !maps.Equal(got, newMeta) {
				t.Errorf("envelope fields after commit:\n got %v\nwant %v", got, newMeta)
			}
			if aws.ToString(after.head.ETag) != res.ETagAfter {
				t.Errorf("ETag after = %s, result says %s", aws.ToString(after.head.ETag), res.ETagAfter)
			}
			if tc.format == envelope.V3 && tc.toKMS {
				m := after.head.Metadata
				if m[envelope.FieldV3Context] == "" || m[envelope.FieldV3MatDesc] != "" {
					t.Errorf("V3 material description did not move to x-amz-t: m=%q t=%q", m[envelope.FieldV3MatDesc], m[envelope.FieldV3Context])
				}
				if before.head.Metadata[envelope.FieldV3MatDesc] == "" {
					t.Errorf("fixture has no x-amz-m")
				}
			}
			if !tc.toKMS {
				assertDecrypts(t, after, fx.plaintext)
			}
		})
	}
}

// A write between Head and the commit wins: the commit fails with
// ErrChanged and the object is what the other writer wrote.
func TestConcurrentWrite(t *testing.T) {
	c := client(t)
	t.Parallel()
	bucket := newBucket(t, c, false)
	other := []byte("the other writer's bytes")
	for _, tc := range []struct {
		name string
		opts commit.Options
	}{
		{"copy", commit.Options{}},
		{"multipart", smallMultipart},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			key := "raced/" + tc.name
			putEncrypted(t, c, bucket, key, envelope.V3, 6<<20+17)
			cm := commit.New(c, tc.opts)
			obj, err := cm.Head(ctx, bucket, key, "")
			if err != nil {
				t.Fatal(err)
			}
			newMeta := rewrap(t, obj, false)
			overwrite(t, c, bucket, key, other)
			_, err = cm.MetadataEnvelope(ctx, obj, newMeta)
			wantErr(t, err, commit.ErrChanged)
			assertOther(t, snap(t, c, bucket, key, ""), other)
			if u := uploads(t, c, bucket); len(u) != 0 {
				t.Errorf("%d multipart uploads left behind", len(u))
			}
		})
	}
}

// The guard is evaluated by the copy itself: a write landing just before
// the request (after every check in this package) is still caught.
func TestConcurrentWriteJustBeforeCopy(t *testing.T) {
	c := client(t)
	t.Parallel()
	bucket := newBucket(t, c, false)
	key := "raced"
	putEncrypted(t, c, bucket, key, envelope.V3, 1000)
	other := []byte("late writer")
	h := &hooked{Client: c}
	h.beforeCopy = func() { overwrite(t, c, bucket, key, other) }
	cm := commit.New(h, commit.Options{})
	obj, err := cm.Head(ctx, bucket, key, "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = cm.MetadataEnvelope(ctx, obj, rewrap(t, obj, false))
	wantErr(t, err, commit.ErrChanged)
	assertOther(t, snap(t, c, bucket, key, ""), other)
}

// TestMultipart: a multipart copy without checksums (smallMultipart) keeps
// everything but the envelope. The default checksum path runs in
// checksum_test.go.
func TestMultipart(t *testing.T) {
	c := client(t)
	t.Parallel()
	bucket := newBucket(t, c, false)
	key := "big/ü b+c/no-checksum-option"
	fx := putEncrypted(t, c, bucket, key, envelope.V3, 12<<20+12345)
	before := snap(t, c, bucket, key, "")
	cm := commit.New(c, smallMultipart)
	obj, err := cm.Head(ctx, bucket, key, "")
	if err != nil {
		t.Fatal(err)
	}
	newMeta := rewrap(t, obj, false)
	res, err := cm.MetadataEnvelope(ctx, obj, newMeta)
	if err != nil {
		t.Fatal(err)
	}
	if res.Parts != 3 {
		t.Errorf("parts = %d, want 3 (5 MiB parts of a 12 MiB object)", res.Parts)
	}
	if res.ETagAfter == "" || res.ETagAfter == res.ETagBefore {
		t.Errorf("result %+v: a multipart copy gets a new ETag", res)
	}
	after := snap(t, c, bucket, key, "")
	assertPreserved(t, before, after)
	if got := envelopeMeta(after.head.Metadata); !maps.Equal(got, newMeta) {
		t.Errorf("envelope fields after commit:\n got %v\nwant %v", got, newMeta)
	}
	if aws.ToString(after.head.ETag) != res.ETagAfter {
		t.Errorf("ETag after = %s, result says %s", aws.ToString(after.head.ETag), res.ETagAfter)
	}
	assertDecrypts(t, after, fx.plaintext)
	if u := uploads(t, c, bucket); len(u) != 0 {
		t.Errorf("%d multipart uploads left behind", len(u))
	}
}

// A write after the parts are copied is caught by the If-Match of the
// completion, and the upload is aborted.
func TestMultipartChangedBeforeComplete(t *testing.T) {
	c := client(t)
	t.Parallel()
	bucket := newBucket(t, c, false)
	key := "big"
	putEncrypted(t, c, bucket, key, envelope.V3, 11<<20)
	other := []byte("written while the parts were copied")
	h := &hooked{Client: c}
	h.beforeComplete = func() { overwrite(t, c, bucket, key, other) }
	cm := commit.New(h, smallMultipart)
	obj, err := cm.Head(ctx, bucket, key, "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = cm.MetadataEnvelope(ctx, obj, rewrap(t, obj, false))
	wantErr(t, err, commit.ErrChanged)
	assertOther(t, snap(t, c, bucket, key, ""), other)
	if u := uploads(t, c, bucket); len(u) != 0 {
		t.Errorf("%d multipart uploads left behind", len(u))
	}
}

// A write between two part copies fails the next part's
// CopySourceIfMatch; the upload is aborted.
func TestMultipartChangedBetweenParts(t *testing.T) {
	c := client(t)
	t.Parallel()
	bucket := newBucket(t, c, false)
	key := "big"
	putEncrypted(t, c, bucket, key, envelope.V2, 16<<20)
	other := []byte("written between parts")
	h := &hooked{Client: c}
	var n int
	h.beforePartCopy = func() {
		n++
		if n == 2 {
			overwrite(t, c, bucket, key, other)
		}
	}
	cm := commit.New(h, commit.Options{MultipartThreshold: 5 << 20, PartSize: 5 << 20, PartConcurrency: 1})
	obj, err := cm.Head(ctx, bucket, key, "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = cm.MetadataEnvelope(ctx, obj, rewrap(t, obj, false))
	wantErr(t, err, commit.ErrChanged)
	assertOther(t, snap(t, c, bucket, key, ""), other)
	if u := uploads(t, c, bucket); len(u) != 0 {
		t.Errorf("%d multipart uploads left behind", len(u))
	}
}

func TestKeys(t *testing.T) {
	c := client(t)
	t.Parallel()
	bucket := newBucket(t, c, false)
	keys := []string{
		"with space/and  two",
		"unicode/grüße/日本語/🙂",
		"plus/a+b+c",
		"percent/100%/%41%2F%zz",
		"hash/#frag#",
		"mixed/ +%#?&=;:@,$!'()*[]~",
	}
	for i, key := range keys {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			opts := commit.Options{}
			if i == 0 || i == 3 {
				opts = smallMultipart
			}
			size := 2000
			if opts.MultipartThreshold != 0 {
				size = 6 << 20
			}
			// A neighbour whose name a wrong decoding would produce.
			decoy := strings.NewReplacer("+", " ", "%41", "A").Replace(key)
			if decoy != key {
				overwrite(t, c, bucket, decoy, []byte("decoy"))
			}
			putEncrypted(t, c, bucket, key, envelope.V3, size)
			before := snap(t, c, bucket, key, "")
			cm := commit.New(c, opts)
			obj, err := cm.Head(ctx, bucket, key, "")
			if err != nil {
				t.Fatal(err)
			}
			newMeta := rewrap(t, obj, false)
			if _, err := cm.MetadataEnvelope(ctx, obj, newMeta); err != nil {
				t.Fatalf("%q: %v", key, err)
			}
			after := snap(t, c, bucket, key, "")
			assertPreserved(t, before, after)
			if got := envelopeMeta(after.head.Metadata); !maps.Equal(got, newMeta) {
				t.Errorf("%q: envelope not replaced", key)
			}
			if decoy != key {
				assertOther(t, snap(t, c, bucket, decoy, ""), []byte("decoy"))
			}
		})
	}
}

func TestVersioned(t *testing.T) {
	c := client(t)
	t.Parallel()
	bucket := newBucket(t, c, true)

	t.Run("records versions", func(t *testing.T) {
		t.Parallel()
		for _, opts := range []commit.Options{{}, smallMultipart} {
			key := fmt.Sprintf("v/%d", opts.MultipartThreshold)
			fx := putEncrypted(t, c, bucket, key, envelope.V3, 6<<20)
			cm := commit.New(c, opts)
			obj, err := cm.Head(ctx, bucket, key, "")
			if err != nil {
				t.Fatal(err)
			}
			if obj.VersionID == "" {
				t.Fatal("no version id read in a versioned bucket")
			}
			// The same version asked for by id is current.
			byID, err := cm.Head(ctx, bucket, key, obj.VersionID)
			if err != nil || byID.Noncurrent || byID.ETag != obj.ETag {
				t.Fatalf("head by version id: %+v, %v", byID, err)
			}
			before := snap(t, c, bucket, key, "")
			newMeta := rewrap(t, obj, false)
			res, err := cm.MetadataEnvelope(ctx, byID, newMeta)
			if err != nil {
				t.Fatal(err)
			}
			if res.VersionBefore != obj.VersionID || res.VersionAfter == "" {
				t.Fatalf("result %+v", res)
			}
			after := snap(t, c, bucket, key, "")
			if got := aws.ToString(after.head.VersionId); got != res.VersionAfter {
				t.Errorf("current version %s, result says %s", got, res.VersionAfter)
			}
			assertPreserved(t, before, after)
			assertDecrypts(t, after, fx.plaintext)
			if res.VersionAfter != res.VersionBefore {
				// A new version was made (AWS; versitygw only for the
				// multipart path): the old one keeps the old wrapped key.
				old := snap(t, c, bucket, key, res.VersionBefore)
				if !maps.Equal(old.head.Metadata, before.head.Metadata) || !bytes.Equal(old.body, before.body) {
					t.Error("the old version changed")
				}
			}
			t.Logf("threshold %d: version %s -> %s", opts.MultipartThreshold, res.VersionBefore, res.VersionAfter)
		}
	})

	t.Run("noncurrent refused", func(t *testing.T) {
		t.Parallel()
		key := "v/old"
		putEncrypted(t, c, bucket, key, envelope.V3, 100)
		cm := commit.New(c, commit.Options{})
		first, err := cm.Head(ctx, bucket, key, "")
		if err != nil {
			t.Fatal(err)
		}
		newer := []byte("a newer version")
		overwrite(t, c, bucket, key, newer)
		old, err := cm.Head(ctx, bucket, key, first.VersionID)
		if err != nil {
			t.Fatal(err)
		}
		if !old.Noncurrent {
			t.Fatal("an older version read as current")
		}
		_, err = cm.MetadataEnvelope(ctx, old, rewrap(t, old, false))
		wantErr(t, err, commit.ErrNotCurrent)
		assertOther(t, snap(t, c, bucket, key, ""), newer)
	})

	t.Run("delete marker", func(t *testing.T) {
		t.Parallel()
		key := "v/deleted"
		putEncrypted(t, c, bucket, key, envelope.V3, 100)
		cm := commit.New(c, commit.Options{})
		first, err := cm.Head(ctx, bucket, key, "")
		if err != nil {
			t.Fatal(err)
		}
		del, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: &key})
		if err != nil {
			t.Fatal(err)
		}
		_, err = cm.Head(ctx, bucket, key, "")
		wantErr(t, err, commit.ErrGone)
		if dm := aws.ToString(del.VersionId); dm != "" {
			_, err = cm.Head(ctx, bucket, key, dm)
			wantErr(t, err, commit.ErrGone)
		}
		// The version read before the delete is no longer current.
		old, err := cm.Head(ctx, bucket, key, first.VersionID)
		if err != nil {
			t.Fatal(err)
		}
		if !old.Noncurrent {
			t.Fatal("a version under a delete marker read as current")
		}
		// A commit from the state read before the delete must not bring
		// the key back. AWS answers 404 (ErrGone); versitygw v1.8.0
		// copies onto its delete marker file, reports success and leaves
		// the key deleted.
		res, err := cm.MetadataEnvelope(ctx, first, rewrap(t, first, false))
		switch {
		case err == nil:
			t.Logf("the server reported success for a copy onto a delete marker: %+v", res)
		case !errors.Is(err, commit.ErrChanged) && !errors.Is(err, commit.ErrGone):
			t.Fatalf("commit over a delete marker: %v", err)
		}
		if _, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key}); err == nil {
			t.Fatal("the deleted key has a current object again")
		}
	})
}

func TestGone(t *testing.T) {
	c := client(t)
	t.Parallel()
	bucket := newBucket(t, c, false)
	key := "gone"
	putEncrypted(t, c, bucket, key, envelope.V3, 100)
	cm := commit.New(c, commit.Options{})
	obj, err := cm.Head(ctx, bucket, key, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: &key}); err != nil {
		t.Fatal(err)
	}
	_, err = cm.MetadataEnvelope(ctx, obj, rewrap(t, obj, false))
	wantErr(t, err, commit.ErrGone)
	_, err = cm.Head(ctx, bucket, key, "")
	wantErr(t, err, commit.ErrGone)
	if _, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key}); err == nil {
		t.Fatal("the deleted object came back")
	}
}

func TestMetadataTooLarge(t *testing.T) {
	c := client(t)
	t.Parallel()
	bucket := newBucket(t, c, false)
	key := "crowded"
	// Other user metadata fills the object's metadata close to the limit.
	env, ct, _ := seal(t, envelope.V3, 100)
	meta, err := env.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	meta["filler"] = ""
	meta["filler"] = strings.Repeat("f", 2000-envelope.MetadataSize(meta)-envelope.MetadataSize(map[string]string{"owner": "alice", "project-id": "p 42; x=y"}))
	putObject(t, c, bucket, key, ct, meta)
	cm := commit.New(c, commit.Options{})
	obj, err := cm.Head(ctx, bucket, key, "")
	if err != nil {
		t.Fatal(err)
	}
	if n := envelope.MetadataSize(obj.Metadata); n != 2000 {
		t.Fatalf("fixture has %d bytes of user metadata", n)
	}
	before := snap(t, c, bucket, key, "")
	// The KMS envelope is larger than the AES one.
	_, err = cm.MetadataEnvelope(ctx, obj, rewrap(t, obj, true))
	wantErr(t, err, envelope.ErrMetadataTooLarge)
	_, err = commit.New(c, commit.Options{MaxMetadataBytes: 1000}).MetadataEnvelope(ctx, obj, rewrap(t, obj, false))
	wantErr(t, err, envelope.ErrMetadataTooLarge)
	after := snap(t, c, bucket, key, "")
	if !maps.Equal(before.head.Metadata, after.head.Metadata) {
		t.Error("metadata changed after a refused commit")
	}
}

// putInstructionFixture writes an object whose envelope is in an
// instruction file written as the Java client does (marker metadata, JSON
// content type), and returns its content.
func putInstructionFixture(t *testing.T, c *s3.Client, bucket, key string, f envelope.Format) fixture {
	t.Helper()
	env, ct, pt := seal(t, f, 500)
	objSide, body, err := env.InstructionFile()
	if err != nil {
		t.Fatal(err)
	}
	putObject(t, c, bucket, key, ct, objSide)
	ikey := envelope.InstructionKey(key, "")
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &ikey, Body: bytes.NewReader(body),
		Metadata: envelope.InstructionObjectMetadata(), ContentType: aws.String("application/json"),
		CacheControl: aws.String("no-store"), Tagging: aws.String("kind=instruction%20file")}); err != nil {
		t.Fatal(err)
	}
	return fixture{plaintext: pt, format: f}
}

func TestInstructionFile(t *testing.T) {
	c := client(t)
	t.Parallel()
	bucket := newBucket(t, c, true)
	for _, f := range []envelope.Format{envelope.V2, envelope.V3} {
		for _, via := range []string{"InstructionEnvelope", "WriteInstruction"} {
			t.Run(fmt.Sprint(f, "-", via), func(t *testing.T) {
				t.Parallel()
				key := fmt.Sprintf("instr/%v/%s/ä +#%%", f, via)
				ikey := envelope.InstructionKey(key, "")
				fx := putInstructionFixture(t, c, bucket, key, f)
				cm := commit.New(c, commit.Options{})
				objBefore := snap(t, c, bucket, key, "")
				instrBefore := snap(t, c, bucket, ikey, "")

				// Classify: the object's metadata and the instruction file.
				obj, err := cm.Head(ctx, bucket, key, "")
				if err != nil {
					t.Fatal(err)
				}
				instr, body, err := cm.ReadInstruction(ctx, bucket, ikey, "")
				if err != nil {
					t.Fatal(err)
				}
				env, err := envelope.Parse(obj.Metadata, body, envelope.ParseOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if env.Placement != envelope.PlacementInstructionFile {
					t.Fatalf("fixture placement %v", env.Placement)
				}
				objSide, newBody, err := newEnvelope(t, env, false).InstructionFile()
				if err != nil {
					t.Fatal(err)
				}
				// The object itself needs no write.
				if err := commit.CheckObjectSide(obj, objSide); err != nil {
					t.Fatal(err)
				}
				if f == envelope.V3 && len(objSide) != 3 {
					t.Fatalf("V3 object-side fields: %v", objSide)
				}

				var res commit.Result
				if via == "InstructionEnvelope" {
					res, err = cm.InstructionEnvelope(ctx, bucket, ikey, instr.ETag, newBody, instr.Metadata)
				} else {
					res, err = cm.WriteInstruction(ctx, instr, newBody)
				}
				if err != nil {
					t.Fatal(err)
				}
				if res.ETagBefore != instr.ETag || res.ETagAfter == "" || res.ETagAfter == res.ETagBefore || res.VersionAfter == "" {
					t.Errorf("result %+v", res)
				}
				instrAfter := snap(t, c, bucket, ikey, "")
				if !bytes.Equal(instrAfter.body, newBody) {
					t.Errorf("instruction file body:\n got %s\nwant %s", instrAfter.body, newBody)
				}
				if !maps.Equal(instrAfter.head.Metadata, instrBefore.head.Metadata) || !envelope.IsInstructionFile(instrAfter.head.Metadata) {
					t.Errorf("instruction file metadata %v -> %v", instrBefore.head.Metadata, instrAfter.head.Metadata)
				}
				instrBefore.body = instrAfter.body // the body is meant to change
				assertPreserved(t, instrBefore, instrAfter)
				if aws.ToString(instrAfter.head.ContentType) != "application/json" {
					t.Errorf("instruction file content type %q", aws.ToString(instrAfter.head.ContentType))
				}

				// The encrypted object was not written at all.
				objAfter := snap(t, c, bucket, key, "")
				assertPreserved(t, objBefore, objAfter)
				if !maps.Equal(objBefore.head.Metadata, objAfter.head.Metadata) ||
					aws.ToString(objBefore.head.ETag) != aws.ToString(objAfter.head.ETag) ||
					aws.ToString(objBefore.head.VersionId) != aws.ToString(objAfter.head.VersionId) {
					t.Error("the encrypted object was written")
				}
				// And it opens with the new key.
				stored, err := envelope.Parse(objAfter.head.Metadata, instrAfter.body, envelope.ParseOptions{})
				if err != nil {
					t.Fatal(err)
				}
				dk, err := stored.UnwrapAESGCM(kek2)
				if err != nil {
					t.Fatal(err)
				}
				pt, err := envelope.DecryptContent(stored, dk, objAfter.body)
				if err != nil || !bytes.Equal(pt, fx.plaintext) {
					t.Fatalf("decrypt after rewrap: %v", err)
				}

				// A second rewrite with the ETag read before the first one
				// is refused and leaves the file alone.
				_, err = cm.InstructionEnvelope(ctx, bucket, ikey, instr.ETag, body, nil)
				wantErr(t, err, commit.ErrChanged)
				_, err = cm.WriteInstruction(ctx, instr, body)
				wantErr(t, err, commit.ErrChanged)
				if got := snap(t, c, bucket, ikey, ""); !bytes.Equal(got.body, newBody) {
					t.Error("a refused rewrite changed the instruction file")
				}
			})
		}
	}
}

// A PutObject of the instruction file by someone else between the read and
// the rewrite wins.
func TestInstructionFileConcurrentWrite(t *testing.T) {
	c := client(t)
	t.Parallel()
	bucket := newBucket(t, c, false)
	key := "instr"
	ikey := envelope.InstructionKey(key, "")
	putInstructionFixture(t, c, bucket, key, envelope.V3)
	cm := commit.New(c, commit.Options{})
	obj, err := cm.Head(ctx, bucket, key, "")
	if err != nil {
		t.Fatal(err)
	}
	instr, body, err := cm.ReadInstruction(ctx, bucket, ikey, "")
	if err != nil {
		t.Fatal(err)
	}
	env, err := envelope.Parse(obj.Metadata, body, envelope.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, newBody, err := newEnvelope(t, env, false).InstructionFile()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]string
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	m["x-amz-m"] = `{"kek":"someone else"}`
	theirs, _ := json.Marshal(m)
	overwrite(t, c, bucket, ikey, theirs)

	_, err = cm.WriteInstruction(ctx, instr, newBody)
	wantErr(t, err, commit.ErrChanged)
	assertOther(t, snap(t, c, bucket, ikey, ""), theirs)

	// The same through a hook: the write lands just before the PutObject.
	instr, _, err = cm.ReadInstruction(ctx, bucket, ikey, "")
	if err != nil {
		t.Fatal(err)
	}
	late := append(bytes.Clone(theirs[:len(theirs)-1]), []byte(`,"late":"1"}`)...)
	h := &hooked{Client: c}
	h.beforePut = func() { overwrite(t, c, bucket, ikey, late) }
	_, err = commit.New(h, commit.Options{}).WriteInstruction(ctx, instr, newBody)
	wantErr(t, err, commit.ErrChanged)
	assertOther(t, snap(t, c, bucket, ikey, ""), late)
}

// Headers S3 gives back in a form the SDK cannot type: an Expires that is
// no date, and non-ASCII user metadata.
func TestOddHeaders(t *testing.T) {
	c := client(t)
	t.Parallel()
	bucket := newBucket(t, c, false)
	key := "odd"
	env, ct, pt := seal(t, envelope.V3, 100)
	meta, err := env.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	meta["note"] = "grüße – ✓"
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(ct), Metadata: meta},
		func(o *s3.Options) { o.APIOptions = append(o.APIOptions, smithyhttp.SetHeaderValue("Expires", "0")) }); err != nil {
		t.Fatal(err)
	}
	before := snap(t, c, bucket, key, "")
	t.Logf("stored: Expires %q, note %q", aws.ToString(before.head.ExpiresString), before.head.Metadata["note"])
	cm := commit.New(c, commit.Options{})
	obj, err := cm.Head(ctx, bucket, key, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cm.MetadataEnvelope(ctx, obj, rewrap(t, obj, false)); err != nil {
		t.Fatal(err)
	}
	after := snap(t, c, bucket, key, "")
	assertPreserved(t, before, after)
	assertDecrypts(t, after, pt)
}

// TestCompleteOfAbortedUploadIsNotLanded: a completion answered with
// success is confirmed from the object. versitygw answers success, with
// the ETag the parts would make, for an upload that was aborted, and leaves
// the object as it was: CompleteUpload reports the upload gone and the
// object is untouched. (The fault trials found this: a resumed
// re-encryption completed the upload an earlier attempt had aborted, then
// wrote the new instruction file over the old content.)
func TestCompleteOfAbortedUploadIsNotLanded(t *testing.T) {
	c := client(t)
	bucket := newBucket(t, c, false)
	putEncrypted(t, c, bucket, "aborted", envelope.V2, 100)
	cm := commit.New(c, commit.Options{})
	obj, err := cm.Head(ctx, bucket, "aborted", "")
	if err != nil {
		t.Fatal(err)
	}
	before := snap(t, c, bucket, "aborted", "")
	meta, err := cm.ContentMetadata(obj, rewrap(t, obj, false))
	if err != nil {
		t.Fatal(err)
	}
	id, err := cm.CreateUpload(ctx, obj, meta)
	if err != nil {
		t.Fatal(err)
	}
	p, err := cm.UploadPart(ctx, obj, id, 1, bytes.Repeat([]byte{7}, 116))
	if err != nil {
		t.Fatal(err)
	}
	if err := cm.AbortUpload(ctx, obj, id); err != nil {
		t.Fatal(err)
	}
	res, err := cm.CompleteUpload(ctx, obj, id, []types.CompletedPart{p})
	if !errors.Is(err, commit.ErrUploadGone) {
		t.Fatalf("completing an aborted upload: %+v, %v; want ErrUploadGone", res, err)
	}
	after := snap(t, c, bucket, "aborted", "")
	if !bytes.Equal(after.body, before.body) || aws.ToString(after.head.ETag) != aws.ToString(before.head.ETag) ||
		!maps.Equal(after.head.Metadata, before.head.Metadata) {
		t.Fatal("the object changed")
	}
}
