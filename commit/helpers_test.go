package commit_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"maps"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/internal/awsx"
	"github.com/rotator-dev/rotator/internal/testenv"
)

var ctx = context.Background()

// The wrapping keys of the tests: objects are written under kek1 and
// rewrapped to kek2 (or to a KMS-shaped envelope).
var (
	kek1 = bytes.Repeat([]byte{0x11}, 32)
	kek2 = bytes.Repeat([]byte{0x22}, 32)
)

// client returns an S3 client for the local stack, or skips (fails in CI).
func client(t *testing.T) *s3.Client {
	t.Helper()
	testenv.Need(t, testenv.S3)
	return awsx.S3(testenv.AWSConfig(t))
}

// newBucket creates a bucket of its own for t and empties and deletes it
// afterwards.
func newBucket(t *testing.T, c *s3.Client, versioned bool) string {
	t.Helper()
	name := testenv.Name(t)
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &name}); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
	if versioned {
		_, err := c.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: &name,
			VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled}})
		if err != nil {
			t.Fatalf("enable versioning: %v", err)
		}
	}
	t.Cleanup(func() { deleteBucket(t, c, name) })
	return name
}

func deleteBucket(t *testing.T, c *s3.Client, bucket string) {
	for _, u := range uploads(t, c, bucket) {
		c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &bucket, Key: u.Key, UploadId: u.UploadId})
	}
	vs, err := c.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: &bucket})
	if err != nil {
		t.Errorf("cleanup: list versions of %s: %v", bucket, err)
		return
	}
	type ver struct{ key, id *string }
	var all []ver
	for _, v := range vs.Versions {
		all = append(all, ver{v.Key, v.VersionId})
	}
	for _, d := range vs.DeleteMarkers {
		all = append(all, ver{d.Key, d.VersionId})
	}
	for _, v := range all {
		if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: v.key, VersionId: v.id}); err != nil {
			t.Errorf("cleanup: delete %s: %v", aws.ToString(v.key), err)
		}
	}
	if _, err := c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: &bucket}); err != nil {
		t.Errorf("cleanup: delete bucket %s: %v", bucket, err)
	}
}

// uploads lists the multipart uploads in progress in bucket.
func uploads(t *testing.T, c *s3.Client, bucket string) []types.MultipartUpload {
	t.Helper()
	out, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &bucket})
	if err != nil {
		t.Fatalf("list multipart uploads: %v", err)
	}
	return out.Uploads
}

// fixture is an encrypted object as the tests write it.
type fixture struct {
	plaintext []byte
	format    envelope.Format
}

// headersFor fills every system header and tags an object can carry on
// the local stack.
func headersFor(in *s3.PutObjectInput) {
	in.ContentType = aws.String("application/x-rotator-test")
	in.CacheControl = aws.String("max-age=60, private")
	in.ContentDisposition = aws.String(`attachment; filename="a b.bin"`)
	in.ContentEncoding = aws.String("x-rotator")
	in.ContentLanguage = aws.String("de-CH")
	in.Expires = aws.Time(time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC))
	in.WebsiteRedirectLocation = aws.String("/elsewhere.html")
	in.StorageClass = types.StorageClassStandardIa
	in.Tagging = aws.String("team=blue%20green&cost%2Bcenter=a%2Fb&lang=gr%C3%BC%C3%9Fe")
}

// seal encrypts size random bytes under a fresh data key wrapped with
// kek1 (AES/GCM, material description {"kek":"one"}).
func seal(t *testing.T, f envelope.Format, size int) (env *envelope.Envelope, ciphertext, plaintext []byte) {
	t.Helper()
	dk, err := envelope.GenerateDataKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	defer dk.Clear()
	plaintext = make([]byte, size)
	rand.Read(plaintext)
	env, ciphertext, err = envelope.EncryptContent(f, dk, plaintext, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	w, err := envelope.WrapKeyAESGCM(kek1, dk, env.CEKAlg, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if env, err = env.WithWrappedKey(w, envelope.WrapAESGCM, map[string]string{"kek": "one"}); err != nil {
		t.Fatal(err)
	}
	return env, ciphertext, plaintext
}

// putObject writes body with meta (plus two entries of other user metadata)
// and every system header and tag of headersFor.
func putObject(t *testing.T, c *s3.Client, bucket, key string, body []byte, meta map[string]string) {
	t.Helper()
	meta = maps.Clone(meta)
	meta["owner"] = "alice"
	meta["project-id"] = "p 42; x=y"
	in := &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(body), Metadata: meta}
	headersFor(in)
	if _, err := c.PutObject(ctx, in); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

// putEncrypted writes an object encrypted by seal with its envelope in its
// metadata, beside other user metadata, system headers and tags.
func putEncrypted(t *testing.T, c *s3.Client, bucket, key string, f envelope.Format, size int) fixture {
	t.Helper()
	env, ct, pt := seal(t, f, size)
	meta, err := env.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	putObject(t, c, bucket, key, ct, meta)
	return fixture{plaintext: pt, format: f}
}

// rewrap returns the new envelope entries for obj: its data key wrapped
// with kek2, or with toKMS a KMS-shaped envelope (opaque blob, KMS
// context), which moves V3's material description from x-amz-m to x-amz-t.
func rewrap(t *testing.T, obj *commit.Object, toKMS bool) map[string]string {
	t.Helper()
	env, err := envelope.Parse(obj.Metadata, nil, envelope.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return rewrapEnv(t, env, toKMS)
}

func rewrapEnv(t *testing.T, env *envelope.Envelope, toKMS bool) map[string]string {
	t.Helper()
	n := newEnvelope(t, env, toKMS)
	m, err := n.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func newEnvelope(t *testing.T, env *envelope.Envelope, toKMS bool) *envelope.Envelope {
	t.Helper()
	dk, err := env.UnwrapAESGCM(kek1)
	if err != nil {
		t.Fatal(err)
	}
	defer dk.Clear()
	var n *envelope.Envelope
	if toKMS {
		blob := make([]byte, 184)
		rand.Read(blob)
		kctx, err := envelope.NewKMSContext(env.CEKAlg, map[string]string{"purpose": "commit test"})
		if err != nil {
			t.Fatal(err)
		}
		n, err = env.WithWrappedKey(blob, envelope.WrapKMSContext, kctx)
		if err != nil {
			t.Fatal(err)
		}
	} else {
		w, err := envelope.WrapKeyAESGCM(kek2, dk, env.CEKAlg, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		n, err = env.WithWrappedKey(w, envelope.WrapAESGCM, map[string]string{"kek": "two"})
		if err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// snapshot is everything a reader can see of an object.
type snapshot struct {
	body []byte
	head *s3.HeadObjectOutput
	tags map[string]string
}

func snap(t *testing.T, c *s3.Client, bucket, key, versionID string) snapshot {
	t.Helper()
	var vid *string
	if versionID != "" {
		vid = &versionID
	}
	g, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key, VersionId: vid})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	body, err := io.ReadAll(g.Body)
	g.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	h, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key, VersionId: vid, ChecksumMode: types.ChecksumModeEnabled})
	if err != nil {
		t.Fatalf("head %s: %v", key, err)
	}
	tg, err := c.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: &bucket, Key: &key, VersionId: vid})
	if err != nil {
		t.Fatalf("get tagging %s: %v", key, err)
	}
	tags := map[string]string{}
	for _, tag := range tg.TagSet {
		tags[aws.ToString(tag.Key)] = aws.ToString(tag.Value)
	}
	return snapshot{body: body, head: h, tags: tags}
}

// otherMeta is the user metadata that is no envelope field.
func otherMeta(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if !envelope.IsEnvelopeField(k) {
			out[k] = v
		}
	}
	return out
}

func envelopeMeta(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if envelope.IsEnvelopeField(k) {
			out[k] = v
		}
	}
	return out
}

// assertPreserved checks that everything but the envelope fields is as
// before: body bytes, other user metadata, system headers and tags.
func assertPreserved(t *testing.T, before, after snapshot) {
	t.Helper()
	if !bytes.Equal(before.body, after.body) {
		t.Errorf("body changed: %d bytes before, %d after", len(before.body), len(after.body))
	}
	if b, a := otherMeta(before.head.Metadata), otherMeta(after.head.Metadata); !maps.Equal(b, a) {
		t.Errorf("other user metadata changed:\nbefore %v\nafter  %v", b, a)
	}
	bh, ah := before.head, after.head
	for _, f := range []struct {
		name string
		b, a *string
	}{
		{"Content-Type", bh.ContentType, ah.ContentType},
		{"Cache-Control", bh.CacheControl, ah.CacheControl},
		{"Content-Disposition", bh.ContentDisposition, ah.ContentDisposition},
		{"Content-Encoding", bh.ContentEncoding, ah.ContentEncoding},
		{"Content-Language", bh.ContentLanguage, ah.ContentLanguage},
		{"Expires", bh.ExpiresString, ah.ExpiresString},
		{"Website-Redirect-Location", bh.WebsiteRedirectLocation, ah.WebsiteRedirectLocation},
		{"SSE-KMS key", bh.SSEKMSKeyId, ah.SSEKMSKeyId},
	} {
		if aws.ToString(f.b) != aws.ToString(f.a) {
			t.Errorf("%s changed: %q -> %q", f.name, aws.ToString(f.b), aws.ToString(f.a))
		}
	}
	if bh.StorageClass != ah.StorageClass {
		t.Errorf("storage class changed: %q -> %q", bh.StorageClass, ah.StorageClass)
	}
	if bh.ServerSideEncryption != ah.ServerSideEncryption {
		t.Errorf("server-side encryption changed: %q -> %q", bh.ServerSideEncryption, ah.ServerSideEncryption)
	}
	if aws.ToInt64(bh.ContentLength) != aws.ToInt64(ah.ContentLength) {
		t.Errorf("size changed: %d -> %d", aws.ToInt64(bh.ContentLength), aws.ToInt64(ah.ContentLength))
	}
	if !maps.Equal(before.tags, after.tags) {
		t.Errorf("tags changed: %v -> %v", before.tags, after.tags)
	}
}

// assertDecrypts checks that the stored object opens with kek2 and gives
// plaintext.
func assertDecrypts(t *testing.T, s snapshot, plaintext []byte) {
	t.Helper()
	env, err := envelope.Parse(s.head.Metadata, nil, envelope.ParseOptions{})
	if err != nil {
		t.Fatalf("parse stored envelope: %v", err)
	}
	dk, err := env.UnwrapAESGCM(kek2)
	if err != nil {
		t.Fatalf("unwrap with the new key: %v", err)
	}
	defer dk.Clear()
	pt, err := envelope.DecryptContent(env, dk, s.body)
	if err != nil {
		t.Fatalf("decrypt: %v", err)
	}
	if !bytes.Equal(pt, plaintext) {
		t.Fatal("decrypted content differs from the plaintext written")
	}
}

// wantErr checks that err wraps sentinel and is a *commit.Error.
func wantErr(t *testing.T, err, sentinel error) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("error = %v, want %v", err, sentinel)
	}
	var ce *commit.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %T is no *commit.Error", err)
	}
	t.Logf("got expected error: %v", err)
}

// hooked wraps the client to run a function just before an operation, as
// a concurrent writer would.
type hooked struct {
	*s3.Client
	beforeCopy, beforePartCopy, beforeComplete, beforePut func()
}

func (h *hooked) CopyObject(ctx context.Context, in *s3.CopyObjectInput, o ...func(*s3.Options)) (*s3.CopyObjectOutput, error) {
	if h.beforeCopy != nil {
		h.beforeCopy()
	}
	return h.Client.CopyObject(ctx, in, o...)
}

func (h *hooked) UploadPartCopy(ctx context.Context, in *s3.UploadPartCopyInput, o ...func(*s3.Options)) (*s3.UploadPartCopyOutput, error) {
	if h.beforePartCopy != nil {
		h.beforePartCopy()
	}
	return h.Client.UploadPartCopy(ctx, in, o...)
}

func (h *hooked) CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, o ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error) {
	if h.beforeComplete != nil {
		h.beforeComplete()
	}
	return h.Client.CompleteMultipartUpload(ctx, in, o...)
}

func (h *hooked) PutObject(ctx context.Context, in *s3.PutObjectInput, o ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	if h.beforePut != nil {
		h.beforePut()
	}
	return h.Client.PutObject(ctx, in, o...)
}

// overwrite is the other writer: it replaces the object with new bytes and
// metadata.
func overwrite(t *testing.T, c *s3.Client, bucket, key string, body []byte) {
	t.Helper()
	_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(body),
		Metadata: map[string]string{"writer": "other"}, ContentType: aws.String("text/x-other")})
	if err != nil {
		t.Fatalf("concurrent put: %v", err)
	}
}

// assertOther checks that the object is exactly what overwrite wrote.
func assertOther(t *testing.T, s snapshot, body []byte) {
	t.Helper()
	if !bytes.Equal(s.body, body) {
		t.Errorf("object body is not the other writer's (%d bytes)", len(s.body))
	}
	if !maps.Equal(s.head.Metadata, map[string]string{"writer": "other"}) {
		t.Errorf("object metadata is not the other writer's: %v", s.head.Metadata)
	}
	if aws.ToString(s.head.ContentType) != "text/x-other" {
		t.Errorf("content type is not the other writer's: %q", aws.ToString(s.head.ContentType))
	}
}
