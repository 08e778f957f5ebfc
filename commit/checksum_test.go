package commit_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"hash/crc64"
	"maps"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/internal/testenv"
)

// The default checksum path of multipart writes against real servers.
// Objects are stored with each checksum S3 offers: CRC32, CRC32C and
// CRC64NVME as full-object checksums of one PutObject; CRC32 and CRC32C also
// as composite checksums of a multipart upload; SHA-1 and SHA-256 in both
// ways; and none. Then:
//
//   - New content (TestNewContentUploadChecksum), written as a
//     re-encryption writes it (CreateUpload, UploadPart, CompleteUpload),
//     asks for the object's algorithm; afterwards S3 reports the checksum
//     computed here from the new bytes.
//   - A multipart self-copy (MetadataEnvelope above the multipart
//     threshold) asks for the object's algorithm and, for a full-object
//     CRC, hands the object's own checksum to the completion so that S3
//     verifies the copy. Neither local server can run that to success:
//     MinIO refuses UploadPartCopy into an upload with a checksum
//     algorithm (TestMultipartCopyChecksumMinIO), versitygw reports the
//     whole object's checksum for every copied range
//     (TestMultipartCopyChecksumVersitygw). The tests pin both, and that
//     the refusal leaves the object as it was, aborts the upload and tells
//     the operator to turn checksums off. Only AWS runs the success path.

// Sizes of the multipart tests: three parts of 5 MiB, 5 MiB and the rest.
const (
	ckPart = 5 << 20
	ckSize = 12<<20 + 12345
)

type checksumCase struct {
	name string
	alg  types.ChecksumAlgorithm // "" for none
	// composite: written by a multipart upload with a composite checksum
	// (otherwise by one PutObject, which stores a full-object checksum).
	composite bool
}

var checksumCases = []checksumCase{
	{"CRC32", types.ChecksumAlgorithmCrc32, false},
	{"CRC32-composite", types.ChecksumAlgorithmCrc32, true},
	{"CRC32C", types.ChecksumAlgorithmCrc32c, false},
	{"CRC32C-composite", types.ChecksumAlgorithmCrc32c, true},
	// No composite CRC64NVME: AWS and versitygw refuse one, MinIO makes a
	// full-object checksum of it.
	{"CRC64NVME", types.ChecksumAlgorithmCrc64nvme, false},
	{"SHA1", types.ChecksumAlgorithmSha1, false},
	{"SHA1-composite", types.ChecksumAlgorithmSha1, true},
	{"SHA256", types.ChecksumAlgorithmSha256, false},
	{"SHA256-composite", types.ChecksumAlgorithmSha256, true},
	{"none", "", false},
}

// rawChecksum is alg over b, as S3 encodes it before base64.
func rawChecksum(t *testing.T, alg types.ChecksumAlgorithm, b []byte) []byte {
	t.Helper()
	switch alg {
	case types.ChecksumAlgorithmCrc32:
		return binary.BigEndian.AppendUint32(nil, crc32.ChecksumIEEE(b))
	case types.ChecksumAlgorithmCrc32c:
		return binary.BigEndian.AppendUint32(nil, crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
	case types.ChecksumAlgorithmCrc64nvme:
		// The NVMe polynomial, bit-reversed as hash/crc64 wants it.
		return binary.BigEndian.AppendUint64(nil, crc64.Checksum(b, crc64.MakeTable(0x9a6c9329ac4bc9b5)))
	case types.ChecksumAlgorithmSha1:
		s := sha1.Sum(b)
		return s[:]
	case types.ChecksumAlgorithmSha256:
		s := sha256.Sum256(b)
		return s[:]
	}
	t.Fatalf("no checksum algorithm %q", alg)
	return nil
}

// fullChecksum is the full-object checksum of b.
func fullChecksum(t *testing.T, alg types.ChecksumAlgorithm, b []byte) string {
	return base64.StdEncoding.EncodeToString(rawChecksum(t, alg, b))
}

// compositeChecksum is the checksum of the part checksums of b cut into
// parts of partSize, suffixed with the number of parts.
func compositeChecksum(t *testing.T, alg types.ChecksumAlgorithm, b []byte, partSize int) string {
	var cat []byte
	n := 0
	for off := 0; off < len(b); off += partSize {
		cat = append(cat, rawChecksum(t, alg, b[off:min(off+partSize, len(b))])...)
		n++
	}
	return base64.StdEncoding.EncodeToString(rawChecksum(t, alg, cat)) + "-" + strconv.Itoa(n)
}

// reported is the checksum a HEAD (checksum mode) reports: algorithm,
// type and value.
func reported(h *s3.HeadObjectOutput) (types.ChecksumAlgorithm, types.ChecksumType, string) {
	for _, c := range []struct {
		alg types.ChecksumAlgorithm
		v   *string
	}{
		{types.ChecksumAlgorithmCrc32, h.ChecksumCRC32},
		{types.ChecksumAlgorithmCrc32c, h.ChecksumCRC32C},
		{types.ChecksumAlgorithmCrc64nvme, h.ChecksumCRC64NVME},
		{types.ChecksumAlgorithmSha1, h.ChecksumSHA1},
		{types.ChecksumAlgorithmSha256, h.ChecksumSHA256},
		{types.ChecksumAlgorithmSha512, h.ChecksumSHA512},
		{types.ChecksumAlgorithmMd5, h.ChecksumMD5},
	} {
		if aws.ToString(c.v) != "" {
			return c.alg, h.ChecksumType, *c.v
		}
	}
	return "", h.ChecksumType, ""
}

// minioBucket creates a bucket of its own on MinIO for t.
func minioBucket(t *testing.T, c *s3.Client) string {
	t.Helper()
	name := testenv.Name(t)
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &name}); err != nil {
		t.Fatalf("create bucket %s on MinIO: %v", name, err)
	}
	t.Cleanup(func() { testenv.EmptyBucket(c, name) })
	return name
}

// decorate sets the system headers and tags MinIO keeps (it has no
// STANDARD_IA storage class).
func decorate(meta map[string]string) (map[string]string, func(*s3.PutObjectInput)) {
	meta = maps.Clone(meta)
	meta["owner"] = "alice"
	meta["project-id"] = "p 42; x=y"
	return meta, func(in *s3.PutObjectInput) {
		in.ContentType = aws.String("application/x-rotator-test")
		in.CacheControl = aws.String("max-age=60, private")
		in.ContentDisposition = aws.String(`attachment; filename="a b.bin"`)
		in.ContentLanguage = aws.String("de-CH")
		in.Expires = aws.Time(time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC))
		in.Tagging = aws.String("team=blue%20green&cost%2Bcenter=a%2Fb")
	}
}

// putWithChecksum stores body with user metadata meta and the checksum of
// tc: one PutObject (the SDK computes a full-object checksum; for none a
// client that sends none), or a multipart upload of ckPart parts with a
// composite checksum.
func putWithChecksum(t *testing.T, c *s3.Client, bucket, key string, tc checksumCase, body []byte, meta map[string]string) {
	t.Helper()
	meta, headers := decorate(meta)
	if !tc.composite {
		in := &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(body), Metadata: meta, ChecksumAlgorithm: tc.alg}
		headers(in)
		var opts []func(*s3.Options)
		if tc.alg == "" {
			opts = append(opts, func(o *s3.Options) { o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired })
		}
		if _, err := c.PutObject(ctx, in, opts...); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
		return
	}
	var p s3.PutObjectInput
	headers(&p)
	up, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &bucket, Key: &key, Metadata: meta,
		ChecksumAlgorithm: tc.alg, ChecksumType: types.ChecksumTypeComposite, ContentType: p.ContentType,
		CacheControl: p.CacheControl, ContentDisposition: p.ContentDisposition, ContentLanguage: p.ContentLanguage,
		Expires: p.Expires, Tagging: p.Tagging})
	if err != nil {
		t.Fatalf("create upload %s: %v", key, err)
	}
	var parts []types.CompletedPart
	for off, n := 0, int32(1); off < len(body); off, n = off+ckPart, n+1 {
		chunk := body[off:min(off+ckPart, len(body))]
		out, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: &bucket, Key: &key, UploadId: up.UploadId, PartNumber: aws.Int32(n),
			Body: bytes.NewReader(chunk), ChecksumAlgorithm: tc.alg})
		if err != nil {
			t.Fatalf("upload part %d of %s: %v", n, key, err)
		}
		parts = append(parts, types.CompletedPart{PartNumber: aws.Int32(n), ETag: out.ETag, ChecksumCRC32: out.ChecksumCRC32,
			ChecksumCRC32C: out.ChecksumCRC32C, ChecksumCRC64NVME: out.ChecksumCRC64NVME, ChecksumSHA1: out.ChecksumSHA1,
			ChecksumSHA256: out.ChecksumSHA256})
	}
	if _, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: &bucket, Key: &key, UploadId: up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}}); err != nil {
		t.Fatalf("complete upload %s: %v", key, err)
	}
}

// wantStored checks that S3 reports for key the checksum of tc as stored
// by putWithChecksum.
func wantStored(t *testing.T, h *s3.HeadObjectOutput, tc checksumCase, body []byte) {
	t.Helper()
	alg, typ, v := reported(h)
	switch {
	case tc.alg == "":
		if alg != "" {
			t.Fatalf("fixture: stored without a checksum, S3 reports %s %s %s", alg, typ, v)
		}
	case tc.composite:
		if want := compositeChecksum(t, tc.alg, body, ckPart); alg != tc.alg || typ != types.ChecksumTypeComposite || v != want {
			t.Fatalf("fixture: S3 reports %s %s %s, want %s COMPOSITE %s", alg, typ, v, tc.alg, want)
		}
	default:
		if want := fullChecksum(t, tc.alg, body); alg != tc.alg || v != want || (typ != "" && typ != types.ChecksumTypeFullObject) {
			t.Fatalf("fixture: S3 reports %s %s %s, want %s FULL_OBJECT %s", alg, typ, v, tc.alg, want)
		}
	}
}

// wantAfter checks the checksum S3 reports after a multipart write of body
// in ckPart parts by the committer, which asks for the object's algorithm:
// a full-object CRC stays a full-object CRC (over the new bytes), composite
// CRCs and SHAs become composite checksums over the new parts, and an
// object without a checksum gets none.
func wantAfter(t *testing.T, h *s3.HeadObjectOutput, tc checksumCase, body []byte) {
	t.Helper()
	alg, typ, v := reported(h)
	var wantTyp types.ChecksumType
	var want string
	switch {
	case tc.alg == "":
		if alg != "" {
			t.Errorf("an object without a checksum got %s %s %s", alg, typ, v)
		}
		return
	case tc.composite || tc.alg == types.ChecksumAlgorithmSha1 || tc.alg == types.ChecksumAlgorithmSha256:
		wantTyp, want = types.ChecksumTypeComposite, compositeChecksum(t, tc.alg, body, ckPart)
	default:
		wantTyp, want = types.ChecksumTypeFullObject, fullChecksum(t, tc.alg, body)
	}
	if alg != tc.alg || typ != wantTyp || v != want {
		t.Errorf("S3 reports %s %s %s, want %s %s %s", alg, typ, v, tc.alg, wantTyp, want)
	}
}

// servers are the S3 servers of the local stack.
var servers = []struct {
	name   string
	client func(t *testing.T) *s3.Client
	bucket func(t *testing.T, c *s3.Client) string
}{
	{"versitygw", client, func(t *testing.T, c *s3.Client) string { return newBucket(t, c, false) }},
	{"minio", func(t *testing.T) *s3.Client { return testenv.MinIOS3(t) }, minioBucket},
}

// uploadsOf lists the multipart uploads in progress of one key.
func uploadsOf(t *testing.T, c *s3.Client, bucket, key string) []types.MultipartUpload {
	t.Helper()
	out, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &bucket, Prefix: &key})
	if err != nil {
		t.Fatalf("list multipart uploads: %v", err)
	}
	var ups []types.MultipartUpload
	for _, u := range out.Uploads {
		if aws.ToString(u.Key) == key {
			ups = append(ups, u)
		}
	}
	return ups
}

// assertUntouched checks that a failed commit left the object exactly as
// it was: bytes, user metadata, ETag, checksum, and no upload behind.
func assertUntouched(t *testing.T, c *s3.Client, bucket, key string, before snapshot) {
	t.Helper()
	after := snap(t, c, bucket, key, "")
	assertPreserved(t, before, after)
	if !maps.Equal(before.head.Metadata, after.head.Metadata) || aws.ToString(before.head.ETag) != aws.ToString(after.head.ETag) {
		t.Error("a failed multipart copy changed the object")
	}
	ba, bt, bv := reported(before.head)
	if aa, at, av := reported(after.head); aa != ba || at != bt || av != bv {
		t.Errorf("checksum changed by a failed copy: %s %s %s -> %s %s %s", ba, bt, bv, aa, at, av)
	}
	if u := uploadsOf(t, c, bucket, key); len(u) != 0 {
		t.Errorf("%d multipart uploads left behind", len(u))
	}
}

// putSealed writes a V3 object of ckSize bytes under kek1 with the
// checksum of tc, checks what S3 stored, and returns its snapshot, its
// plaintext and the checksum case it really has: an object written without
// a checksum gets a full-object CRC64NVME from servers that do as AWS does
// since 2025 (versitygw; MinIO stores none).
func putSealed(t *testing.T, c *s3.Client, bucket, key string, tc checksumCase) (snapshot, []byte, checksumCase) {
	t.Helper()
	env, ct, pt := seal(t, envelope.V3, ckSize)
	meta, err := env.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	putWithChecksum(t, c, bucket, key, tc, ct, meta)
	before := snap(t, c, bucket, key, "")
	if alg, _, _ := reported(before.head); tc.alg == "" && alg == types.ChecksumAlgorithmCrc64nvme {
		t.Logf("the server gave the object a default %s checksum", alg)
		tc.alg = alg
	}
	wantStored(t, before.head, tc, ct)
	return before, pt, tc
}

// headFor reads obj for a commit and checks the checksum algorithm it
// recorded.
func headFor(t *testing.T, cm *commit.Committer, bucket, key string, tc checksumCase) *commit.Object {
	t.Helper()
	obj, err := cm.Head(ctx, bucket, key, "")
	if err != nil {
		t.Fatal(err)
	}
	if obj.ChecksumAlgorithm != tc.alg {
		t.Fatalf("Head read checksum algorithm %q, want %q", obj.ChecksumAlgorithm, tc.alg)
	}
	return obj
}

// TestNewContentUploadChecksum: new content written as a re-encryption
// writes it gets the object's checksum algorithm, computed by S3 over the
// new bytes, on both servers.
func TestNewContentUploadChecksum(t *testing.T) {
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			c := srv.client(t)
			t.Parallel()
			bucket := srv.bucket(t, c)
			for _, tc := range checksumCases {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					key := "upload/ü b+c/" + tc.name
					before, pt, tc := putSealed(t, c, bucket, key, tc)
					cm := commit.New(c, commit.Options{})
					obj := headFor(t, cm, bucket, key, tc)
					// The new content: the same plaintext under a fresh
					// data key wrapped with kek2.
					newEnv, newCT := reseal(t, pt)
					envMeta, err := newEnv.Metadata()
					if err != nil {
						t.Fatal(err)
					}
					newMeta, err := cm.ContentMetadata(obj, envMeta)
					if err != nil {
						t.Fatal(err)
					}
					id, err := cm.CreateUpload(ctx, obj, newMeta)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { cm.AbortUpload(ctx, obj, id) })
					var parts []types.CompletedPart
					for off, n := 0, 1; off < len(newCT); off, n = off+ckPart, n+1 {
						p, err := cm.UploadPart(ctx, obj, id, n, newCT[off:min(off+ckPart, len(newCT))])
						if err != nil {
							t.Fatal(err)
						}
						parts = append(parts, p)
					}
					res, err := cm.CompleteUpload(ctx, obj, id, parts)
					if err != nil {
						t.Fatalf("complete the new content with the object's checksum: %v", err)
					}
					if res.Parts != 3 || res.ETagAfter == "" || res.ETagAfter == res.ETagBefore {
						t.Errorf("result %+v: want 3 parts and a new ETag", res)
					}
					after := snap(t, c, bucket, key, "")
					if aws.ToString(after.head.ETag) != res.ETagAfter {
						t.Errorf("ETag after = %s, result says %s", aws.ToString(after.head.ETag), res.ETagAfter)
					}
					if !bytes.Equal(after.body, newCT) {
						t.Fatal("the object does not hold the new content")
					}
					if b, a := otherMeta(before.head.Metadata), otherMeta(after.head.Metadata); !maps.Equal(b, a) {
						t.Errorf("other user metadata changed:\nbefore %v\nafter  %v", b, a)
					}
					if !maps.Equal(before.tags, after.tags) || aws.ToString(before.head.ContentType) != aws.ToString(after.head.ContentType) {
						t.Errorf("tags or content type changed: %v %q -> %v %q", before.tags, aws.ToString(before.head.ContentType),
							after.tags, aws.ToString(after.head.ContentType))
					}
					wantAfter(t, after.head, tc, newCT)
					assertDecrypts(t, after, pt)
					if u := uploadsOf(t, c, bucket, key); len(u) != 0 {
						t.Errorf("%d multipart uploads left behind", len(u))
					}
				})
			}
		})
	}
}

// TestMultipartCopyChecksumMinIO: MinIO computes no checksums for
// UploadPartCopy and refuses it in an upload created with a checksum
// algorithm. The default multipart copy of an object with a checksum is
// therefore refused at its first part: the object is left as it was, the
// upload aborted, and the error tells the operator to copy without
// checksums, which then works (and MinIO stores no checksum for the copy).
// An object without a checksum is copied on the default path.
func TestMultipartCopyChecksumMinIO(t *testing.T) {
	c := testenv.MinIOS3(t)
	t.Parallel()
	bucket := minioBucket(t, c)
	for _, tc := range checksumCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			key := "copy/ü b+c/" + tc.name
			before, pt, tc := putSealed(t, c, bucket, key, tc)
			cm := commit.New(c, commit.Options{MultipartThreshold: ckPart, PartSize: ckPart})
			obj := headFor(t, cm, bucket, key, tc)
			newMeta := rewrap(t, obj, false)
			res, err := cm.MetadataEnvelope(ctx, obj, newMeta)
			if tc.alg != "" {
				var e *commit.Error
				if !errors.As(err, &e) || e.Kind != nil || !strings.Contains(e.Hint, "NoMultipartChecksum") ||
					!strings.Contains(e.Hint, "--s3-no-multipart-checksum") || !strings.Contains(e.Error(), "InvalidArgument") {
					t.Fatalf("MinIO took a checksummed UploadPartCopy, or the refusal has no hint: %v", err)
				}
				t.Logf("refused as expected: %v", err)
				assertUntouched(t, c, bucket, key, before)
				// The way out the hint names.
				cm = commit.New(c, commit.Options{MultipartThreshold: ckPart, PartSize: ckPart, NoMultipartChecksum: true})
				res, err = cm.MetadataEnvelope(ctx, obj, newMeta)
			}
			if err != nil {
				t.Fatal(err)
			}
			// A multipart ETag (the same as before when the object was
			// uploaded in the same parts).
			if res.Parts != 3 || !strings.HasSuffix(res.ETagAfter, `-3"`) {
				t.Errorf("result %+v: want 3 parts and a multipart ETag", res)
			}
			after := snap(t, c, bucket, key, "")
			assertPreserved(t, before, after)
			if aws.ToString(after.head.ETag) != res.ETagAfter {
				t.Errorf("ETag after = %s, result says %s", aws.ToString(after.head.ETag), res.ETagAfter)
			}
			if got := envelopeMeta(after.head.Metadata); !maps.Equal(got, newMeta) {
				t.Errorf("envelope fields after commit:\n got %v\nwant %v", got, newMeta)
			}
			if alg, typ, v := reported(after.head); alg != "" {
				t.Errorf("MinIO reports checksum %s %s %s for a copy made without one", alg, typ, v)
			}
			assertDecrypts(t, after, pt)
			if u := uploadsOf(t, c, bucket, key); len(u) != 0 {
				t.Errorf("%d multipart uploads left behind", len(u))
			}
		})
	}
}

// TestMultipartCopyChecksumVersitygw: versitygw v1.8.0 answers every
// UploadPartCopy of a range with the whole object's stored checksum, so
// the completion of the default multipart copy fails: BadDigest against a
// full-object CRC (also for an object written without a checksum, to
// which versitygw gives a CRC64NVME), InvalidArgument for a composite
// checksum ("-3" is no base64). The object is left as it was, the upload
// aborted, and the hint says to copy without checksums. (A full-object
// SHA-256 or SHA-1 becomes a composite one, which versitygw computes from
// the wrong part checksums without complaint: that case is left out,
// since nothing on the client side can notice it.)
func TestMultipartCopyChecksumVersitygw(t *testing.T) {
	c := client(t)
	t.Parallel()
	bucket := newBucket(t, c, false)
	for _, tc := range checksumCases {
		if !tc.composite && (tc.alg == types.ChecksumAlgorithmSha1 || tc.alg == types.ChecksumAlgorithmSha256) {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			key := "copy/ü b+c/" + tc.name
			before, _, tc := putSealed(t, c, bucket, key, tc)
			stored, _, storedValue := reported(before.head)
			var mu sync.Mutex
			var partValues []string
			h := &recorded{Client: c, onPartCopy: func(r *types.CopyPartResult) {
				mu.Lock()
				defer mu.Unlock()
				partValues = append(partValues, partValue(r, stored))
			}}
			cm := commit.New(h, commit.Options{MultipartThreshold: ckPart, PartSize: ckPart})
			obj := headFor(t, cm, bucket, key, checksumCase{alg: stored})
			_, err := cm.MetadataEnvelope(ctx, obj, rewrap(t, obj, false))
			wantCode := "BadDigest"
			if tc.composite {
				wantCode = "InvalidArgument"
			}
			var ae smithy.APIError
			var e *commit.Error
			if !errors.As(err, &ae) || ae.ErrorCode() != wantCode || !errors.As(err, &e) || e.Kind != nil ||
				!strings.Contains(e.Hint, "NoMultipartChecksum") {
				t.Fatalf("got %v, want %s with a hint to copy without checksums (has versitygw been fixed?)", err, wantCode)
			}
			t.Logf("failed as expected: %v", err)
			// The server bug: every range "has" the whole object's checksum.
			if len(partValues) != 3 {
				t.Fatalf("%d part copies recorded, want 3", len(partValues))
			}
			for i, v := range partValues {
				if v != storedValue {
					t.Errorf("part %d: versitygw reported %s %q, not the whole object's %q: the server bug changed, revisit this test", i+1, stored, v, storedValue)
				}
			}
			assertUntouched(t, c, bucket, key, before)
		})
	}
}

// recorded wraps the client to see UploadPartCopy results.
type recorded struct {
	*s3.Client
	onPartCopy func(*types.CopyPartResult)
}

func (r *recorded) UploadPartCopy(ctx context.Context, in *s3.UploadPartCopyInput, o ...func(*s3.Options)) (*s3.UploadPartCopyOutput, error) {
	out, err := r.Client.UploadPartCopy(ctx, in, o...)
	if err == nil && out.CopyPartResult != nil {
		r.onPartCopy(out.CopyPartResult)
	}
	return out, err
}

// partValue is the checksum of algorithm alg in a part copy's result.
func partValue(r *types.CopyPartResult, alg types.ChecksumAlgorithm) string {
	switch alg {
	case types.ChecksumAlgorithmCrc32:
		return aws.ToString(r.ChecksumCRC32)
	case types.ChecksumAlgorithmCrc32c:
		return aws.ToString(r.ChecksumCRC32C)
	case types.ChecksumAlgorithmCrc64nvme:
		return aws.ToString(r.ChecksumCRC64NVME)
	case types.ChecksumAlgorithmSha1:
		return aws.ToString(r.ChecksumSHA1)
	case types.ChecksumAlgorithmSha256:
		return aws.ToString(r.ChecksumSHA256)
	}
	return ""
}

// reseal encrypts plaintext under a fresh data key wrapped with kek2.
func reseal(t *testing.T, plaintext []byte) (*envelope.Envelope, []byte) {
	t.Helper()
	dk, err := envelope.GenerateDataKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	defer dk.Clear()
	env, ct, err := envelope.EncryptContent(envelope.V3, dk, plaintext, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	w, err := envelope.WrapKeyAESGCM(kek2, dk, env.CEKAlg, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if env, err = env.WithWrappedKey(w, envelope.WrapAESGCM, map[string]string{"kek": "two"}); err != nil {
		t.Fatal(err)
	}
	return env, ct
}
