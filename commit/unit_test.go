package commit

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/rotator-dev/rotator/envelope"
)

// apiErr builds the error the S3 client returns for an HTTP error response.
func apiErr(status int, code string, header ...string) error {
	h := http.Header{}
	for i := 0; i+1 < len(header); i += 2 {
		h.Set(header[i], header[i+1])
	}
	return &smithy.OperationError{ServiceID: "S3", OperationName: "Test", Err: &awshttp.ResponseError{
		ResponseError: &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status, Header: h}},
			Err:      &smithy.GenericAPIError{Code: code, Message: "test"},
		},
	}}
}

func TestClassify(t *testing.T) {
	ref := &objRef{bucket: "b", key: "k"}
	for _, tc := range []struct {
		err      error
		kind     error
		hintPart string
	}{
		{apiErr(412, "PreconditionFailed"), ErrChanged, ""},
		{apiErr(409, "ConditionalRequestConflict"), ErrChanged, ""},
		{apiErr(409, "OperationAborted"), nil, ""},
		{apiErr(404, "NoSuchKey"), ErrGone, ""},
		{apiErr(404, "NoSuchVersion"), ErrGone, ""},
		{apiErr(404, "NotFound"), ErrGone, ""},
		{apiErr(404, "NotFound", "x-amz-delete-marker", "true"), ErrGone, "delete marker"},
		{apiErr(405, "MethodNotAllowed", "x-amz-delete-marker", "true"), ErrGone, "delete marker"},
		{apiErr(404, "NoSuchBucket"), nil, "bucket"},
		{apiErr(403, "AccessDenied"), ErrAccessDenied, "s3:PutObject"},
		{apiErr(403, "Forbidden"), ErrAccessDenied, "s3:PutObject"},
		{apiErr(403, "InvalidAccessKeyId"), nil, ""},
		{apiErr(403, "InvalidObjectState"), ErrUnsupported, "restore"},
		// No classification by text.
		{errors.New("PreconditionFailed 412 NoSuchKey AccessDenied"), nil, ""},
	} {
		e := ref.classify(opCopy, tc.err, hintCopyPerms)
		if e.Kind != tc.kind {
			t.Errorf("%v: kind %v, want %v", tc.err, e.Kind, tc.kind)
		}
		if tc.kind != nil && !errors.Is(e, tc.kind) {
			t.Errorf("%v: errors.Is(%v) false", e, tc.kind)
		}
		if !strings.Contains(e.Hint, tc.hintPart) {
			t.Errorf("%v: hint %q lacks %q", tc.err, e.Hint, tc.hintPart)
		}
		var ae smithy.APIError
		if tc.kind != nil && !errors.As(e, &ae) {
			t.Errorf("%v: the S3 error is not reachable with errors.As", e)
		}
	}
	e := &Error{Op: "copy", Bucket: "b", Key: "k", VersionID: "v", Kind: ErrChanged, Err: errors.New("x"), Hint: "h"}
	if got, want := e.Error(), "commit s3://b/k@v: copy: someone changed the object since it was read: left untouched: x (hint: h)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestEscape(t *testing.T) {
	key := "dir one/ü+%#?&=;~._-/🙂"
	got := copySource("bkt", key, "v+1")
	want := "bkt/dir%20one/%C3%BC%2B%25%23%3F%26%3D%3B~._-/%F0%9F%99%82?versionId=v%2B1"
	if got != want {
		t.Errorf("copySource = %q, want %q", got, want)
	}
	// Both the path and the query decoding of S3 servers give the key back.
	src, _, _ := strings.Cut(got, "?")
	for _, dec := range []func(string) (string, error){url.PathUnescape, url.QueryUnescape} {
		if k, err := dec(src); err != nil || k != "bkt/"+key {
			t.Errorf("decoded %q, %v", k, err)
		}
	}
	tags := encodeTags([]types.Tag{{Key: aws.String("a b"), Value: aws.String("c+d=e")}, {Key: aws.String("é"), Value: aws.String("x/y&z")}})
	if *tags != "a%20b=c%2Bd%3De&%C3%A9=x%2Fy%26z" {
		t.Errorf("tags %q", *tags)
	}
	q, err := url.ParseQuery(*tags)
	if err != nil || q.Get("a b") != "c+d=e" || q.Get("é") != "x/y&z" {
		t.Errorf("tags decode to %v, %v", q, err)
	}
	if encodeTags(nil) != nil {
		t.Error("no tags must send no header")
	}
}

func TestPlanParts(t *testing.T) {
	for _, tc := range []struct {
		size, want int64
		n          int
	}{
		{12<<20 + 1, 5 << 20, 3},
		{15 << 20, 5 << 20, 3},
		{6 << 30, DefaultPartSize, 48},
		{6 << 30, 1, 1229},
		{5 << 40, MinPartSize, 9987}, // 525 MiB parts
	} {
		parts, err := planParts(tc.size, tc.want)
		if err != nil {
			t.Fatal(err)
		}
		if len(parts) != tc.n || len(parts) > MaxParts {
			t.Errorf("%d bytes: %d parts, want %d", tc.size, len(parts), tc.n)
		}
		next := int64(0)
		for i, p := range parts {
			if p.first != next || p.last < p.first {
				t.Fatalf("%d bytes: part %d is [%d, %d], want it to start at %d", tc.size, i, p.first, p.last, next)
			}
			if n := p.last - p.first + 1; i < len(parts)-1 && (n < MinPartSize || n > MaxPartSize) {
				t.Fatalf("%d bytes: part %d has %d bytes", tc.size, i, n)
			}
			next = p.last + 1
		}
		if next != tc.size {
			t.Errorf("%d bytes: parts end at %d", tc.size, next)
		}
	}
	if _, err := planParts(MaxParts*MaxPartSize+1, MinPartSize); err == nil {
		t.Error("an object beyond 10,000 parts of 5 GiB was planned")
	}
}

// fake records requests and answers them. Calls it does not expect panic
// (the embedded interface is nil).
type fake struct {
	S3
	mu        sync.Mutex
	copies    []*s3.CopyObjectInput
	creates   []*s3.CreateMultipartUploadInput
	parts     []*s3.UploadPartCopyInput
	completes []*s3.CompleteMultipartUploadInput
	aborts    []*s3.AbortMultipartUploadInput
	abortCtx  []error
	puts      []*s3.PutObjectInput
	putBodies [][]byte
	heads     []*s3.HeadObjectInput

	tags        []types.Tag
	headFn      func(*s3.HeadObjectInput) (*s3.HeadObjectOutput, error)
	getFn       func(*s3.GetObjectInput) (*s3.GetObjectOutput, error)
	partFn      func(context.Context, *s3.UploadPartCopyInput) error
	completeErr error
	putErr      error
}

func (f *fake) CopyObject(_ context.Context, in *s3.CopyObjectInput, _ ...func(*s3.Options)) (*s3.CopyObjectOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.copies = append(f.copies, in)
	return &s3.CopyObjectOutput{CopyObjectResult: &types.CopyObjectResult{ETag: in.CopySourceIfMatch}, VersionId: aws.String("v2")}, nil
}

func (f *fake) GetObjectTagging(context.Context, *s3.GetObjectTaggingInput, ...func(*s3.Options)) (*s3.GetObjectTaggingOutput, error) {
	return &s3.GetObjectTaggingOutput{TagSet: f.tags}, nil
}

func (f *fake) HeadObject(_ context.Context, in *s3.HeadObjectInput, _ ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	f.mu.Lock()
	f.heads = append(f.heads, in)
	f.mu.Unlock()
	return f.headFn(in)
}

func (f *fake) GetObject(_ context.Context, in *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	return f.getFn(in)
}

func (f *fake) CreateMultipartUpload(_ context.Context, in *s3.CreateMultipartUploadInput, _ ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.creates = append(f.creates, in)
	return &s3.CreateMultipartUploadOutput{UploadId: aws.String("up-1")}, nil
}

func (f *fake) UploadPartCopy(ctx context.Context, in *s3.UploadPartCopyInput, _ ...func(*s3.Options)) (*s3.UploadPartCopyOutput, error) {
	f.mu.Lock()
	f.parts = append(f.parts, in)
	f.mu.Unlock()
	if f.partFn != nil {
		if err := f.partFn(ctx, in); err != nil {
			return nil, err
		}
	}
	n := *in.PartNumber
	return &s3.UploadPartCopyOutput{CopyPartResult: &types.CopyPartResult{
		ETag:          aws.String(fmt.Sprintf(`"etag-%d"`, n)),
		ChecksumCRC32: aws.String(fmt.Sprintf("crc-%d", n)),
		ChecksumSHA1:  aws.String(fmt.Sprintf("sha-%d", n)),
	}}, nil
}

func (f *fake) CompleteMultipartUpload(_ context.Context, in *s3.CompleteMultipartUploadInput, _ ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.completes = append(f.completes, in)
	if f.completeErr != nil {
		return nil, f.completeErr
	}
	return &s3.CompleteMultipartUploadOutput{ETag: aws.String(`"new-3"`), VersionId: aws.String("v2")}, nil
}

func (f *fake) AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, _ ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.aborts = append(f.aborts, in)
	f.abortCtx = append(f.abortCtx, ctx.Err())
	return &s3.AbortMultipartUploadOutput{}, nil
}

func (f *fake) PutObject(_ context.Context, in *s3.PutObjectInput, _ ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, _ := io.ReadAll(in.Body)
	f.puts = append(f.puts, in)
	f.putBodies = append(f.putBodies, b)
	if f.putErr != nil {
		return nil, f.putErr
	}
	return &s3.PutObjectOutput{ETag: aws.String(`"new"`), VersionId: aws.String("v2")}, nil
}

// sealed returns the metadata of a fresh envelope (AES/GCM wrapping) and a
// rewrap of it with another wrapped key.
func sealed(t *testing.T, f envelope.Format) (env *envelope.Envelope, meta, rewrapped map[string]string) {
	t.Helper()
	dk, err := envelope.GenerateDataKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	env, _, err = envelope.EncryptContent(f, dk, []byte("hello"), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	wrap := func(kek byte, md string) *envelope.Envelope {
		w, err := envelope.WrapKeyAESGCM(bytes.Repeat([]byte{kek}, 32), dk, env.CEKAlg, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		e, err := env.WithWrappedKey(w, envelope.WrapAESGCM, map[string]string{"kek": md})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	env = wrap(1, "one")
	if meta, err = env.Metadata(); err != nil {
		t.Fatal(err)
	}
	if rewrapped, err = wrap(2, "two").Metadata(); err != nil {
		t.Fatal(err)
	}
	return env, meta, rewrapped
}

// fullObject is an object with every header set.
func fullObject(t *testing.T, size int64) (*Object, map[string]string) {
	_, meta, newMeta := sealed(t, envelope.V3)
	meta["owner"] = "alice"
	meta["x-amz-meta-gone"] = "no" // odd casing survives too
	return &Object{
		Bucket: "b", Key: "dir/a b+c", VersionID: "v1", ETag: `"e1"`, Size: size,
		Metadata:    meta,
		ContentType: "application/x-test", CacheControl: "max-age=1", ContentDisposition: "inline",
		ContentEncoding: "x-enc", ContentLanguage: "fr", Expires: "Wed, 21 Oct 2037 07:28:00 GMT",
		StorageClass: types.StorageClassStandardIa, ServerSideEncryption: types.ServerSideEncryptionAwsKms,
		SSEKMSKeyID: "arn:aws:kms:us-east-1:111:key/k", BucketKeyEnabled: true,
		WebsiteRedirectLocation: "/r", ChecksumAlgorithm: types.ChecksumAlgorithmCrc32, ChecksumType: types.ChecksumTypeFullObject,
		Checksum:       "full==",
		ObjectLockMode: types.ObjectLockModeGovernance, ObjectLockRetainUntil: time.Date(2040, 1, 2, 3, 4, 5, 0, time.UTC),
		ObjectLockLegalHold: types.ObjectLockLegalHoldStatusOn,
	}, newMeta
}

func wantMetadata(t *testing.T, obj *Object, newMeta, got map[string]string) {
	t.Helper()
	want := map[string]string{"owner": "alice", "x-amz-meta-gone": "no"}
	maps.Copy(want, newMeta)
	if !maps.Equal(got, want) {
		t.Errorf("metadata\n got %v\nwant %v", got, want)
	}
}

func TestSelfCopyRequest(t *testing.T) {
	for _, lock := range []bool{false, true} {
		f := &fake{}
		obj, newMeta := fullObject(t, 1000)
		res, err := New(f, Options{CopyObjectLock: lock}).MetadataEnvelope(context.Background(), obj, newMeta)
		if err != nil {
			t.Fatal(err)
		}
		if res != (Result{ETagBefore: `"e1"`, VersionBefore: "v1", ETagAfter: `"e1"`, VersionAfter: "v2"}) {
			t.Errorf("result %+v", res)
		}
		in := f.copies[0]
		wantMetadata(t, obj, newMeta, in.Metadata)
		expires, _ := http.ParseTime(obj.Expires)
		for name, ok := range map[string]bool{
			"bucket/key":          *in.Bucket == "b" && *in.Key == "dir/a b+c",
			"copy source":         *in.CopySource == "b/dir/a%20b%2Bc",
			"source guard":        *in.CopySourceIfMatch == `"e1"`,
			"destination guard":   aws.ToString(in.IfMatch) == `"e1"`,
			"metadata directive":  in.MetadataDirective == types.MetadataDirectiveReplace,
			"tagging directive":   in.TaggingDirective == types.TaggingDirectiveCopy,
			"content type":        *in.ContentType == "application/x-test",
			"cache control":       *in.CacheControl == "max-age=1",
			"content disposition": *in.ContentDisposition == "inline",
			"content encoding":    *in.ContentEncoding == "x-enc",
			"content language":    *in.ContentLanguage == "fr",
			"expires":             in.Expires != nil && in.Expires.Equal(expires),
			"storage class":       in.StorageClass == types.StorageClassStandardIa,
			"sse":                 in.ServerSideEncryption == types.ServerSideEncryptionAwsKms,
			"kms key":             *in.SSEKMSKeyId == obj.SSEKMSKeyID,
			"bucket key":          *in.BucketKeyEnabled,
			"redirect":            *in.WebsiteRedirectLocation == "/r",
			"checksum":            in.ChecksumAlgorithm == types.ChecksumAlgorithmCrc32,
			"lock mode":           (in.ObjectLockMode == types.ObjectLockModeGovernance) == lock,
			"lock until":          (in.ObjectLockRetainUntilDate != nil && in.ObjectLockRetainUntilDate.Equal(obj.ObjectLockRetainUntil)) == lock,
			"legal hold":          (in.ObjectLockLegalHoldStatus == types.ObjectLockLegalHoldStatusOn) == lock,
		} {
			if !ok {
				t.Errorf("lock=%v: %s not as expected: %+v", lock, name, in)
			}
		}
	}

	f := &fake{}
	obj, newMeta := fullObject(t, 1000)
	obj.ServerSideEncryption = types.ServerSideEncryptionAes256
	if _, err := New(f, Options{NoDestinationIfMatch: true}).MetadataEnvelope(context.Background(), obj, newMeta); err != nil {
		t.Fatal(err)
	}
	if in := f.copies[0]; in.IfMatch != nil || in.CopySourceIfMatch == nil || in.SSEKMSKeyId != nil || in.BucketKeyEnabled != nil {
		t.Errorf("NoDestinationIfMatch / SSE-S3: %+v", in)
	}
}

func TestExpiresVerbatim(t *testing.T) {
	c := New(&fake{}, Options{})
	for _, v := range []string{"0", "Thu, 01 Jan 1970 00:00:00 GMT ", "Sunday, 06-Nov-94 08:49:37 GMT", "soon"} {
		h := c.headersOf(&Object{Expires: v})
		if h.expires != nil || h.rawExpires != v || len(h.optFns()) != 1 {
			t.Errorf("%q: expires %v raw %q", v, h.expires, h.rawExpires)
		}
	}
	h := c.headersOf(&Object{Expires: "Wed, 21 Oct 2037 07:28:00 GMT"})
	if h.expires == nil || h.rawExpires != "" || h.optFns() != nil {
		t.Errorf("a date the SDK prints back the same is sent typed")
	}
}

func TestMultipartRequests(t *testing.T) {
	for _, noChecksum := range []bool{false, true} {
		f := &fake{tags: []types.Tag{{Key: aws.String("t 1"), Value: aws.String("v+1")}}}
		obj, newMeta := fullObject(t, 12<<20+1)
		res, err := New(f, Options{MultipartThreshold: 5 << 20, PartSize: 5 << 20, NoMultipartChecksum: noChecksum}).
			MetadataEnvelope(context.Background(), obj, newMeta)
		if err != nil {
			t.Fatal(err)
		}
		if res != (Result{ETagBefore: `"e1"`, VersionBefore: "v1", ETagAfter: `"new-3"`, VersionAfter: "v2", Parts: 3}) {
			t.Errorf("result %+v", res)
		}
		if len(f.copies) != 0 || len(f.creates) != 1 || len(f.parts) != 3 || len(f.completes) != 1 || len(f.aborts) != 0 {
			t.Fatalf("calls: %d copies, %d creates, %d parts, %d completes, %d aborts", len(f.copies), len(f.creates), len(f.parts), len(f.completes), len(f.aborts))
		}
		cr := f.creates[0]
		wantMetadata(t, obj, newMeta, cr.Metadata)
		if aws.ToString(cr.Tagging) != "t%201=v%2B1" || aws.ToString(cr.ContentType) != obj.ContentType ||
			aws.ToString(cr.SSEKMSKeyId) != obj.SSEKMSKeyID || cr.StorageClass != obj.StorageClass || cr.Expires == nil ||
			aws.ToString(cr.WebsiteRedirectLocation) != "/r" || aws.ToString(cr.ContentLanguage) != "fr" {
			t.Errorf("create: %+v", cr)
		}
		wantAlg, wantType := types.ChecksumAlgorithmCrc32, types.ChecksumTypeFullObject
		if noChecksum {
			wantAlg, wantType = "", ""
		}
		if cr.ChecksumAlgorithm != wantAlg || cr.ChecksumType != wantType {
			t.Errorf("create checksum %q %q", cr.ChecksumAlgorithm, cr.ChecksumType)
		}
		ranges := map[string]bool{}
		for _, p := range f.parts {
			if *p.CopySource != "b/dir/a%20b%2Bc" || *p.CopySourceIfMatch != `"e1"` || *p.UploadId != "up-1" {
				t.Errorf("part %+v", p)
			}
			ranges[*p.CopySourceRange] = true
		}
		if !ranges["bytes=0-5242879"] || !ranges["bytes=5242880-10485759"] || !ranges["bytes=10485760-12582912"] {
			t.Errorf("ranges %v", ranges)
		}
		co := f.completes[0]
		if aws.ToString(co.IfMatch) != `"e1"` || len(co.MultipartUpload.Parts) != 3 {
			t.Errorf("complete %+v", co)
		}
		for i, p := range co.MultipartUpload.Parts {
			if *p.PartNumber != int32(i+1) || *p.ETag != fmt.Sprintf(`"etag-%d"`, i+1) || p.ChecksumSHA1 != nil {
				t.Errorf("completed part %d: %+v", i, p)
			}
			if got := aws.ToString(p.ChecksumCRC32); (got == fmt.Sprintf("crc-%d", i+1)) == noChecksum {
				t.Errorf("completed part %d: checksum %q echoed with noChecksum=%v", i, got, noChecksum)
			}
		}
		if full := aws.ToString(co.ChecksumCRC32); (full == "full==") == noChecksum || (co.ChecksumType == types.ChecksumTypeFullObject) == noChecksum {
			t.Errorf("complete checksum %q %q", full, co.ChecksumType)
		}
	}
}

func TestMultipartAborts(t *testing.T) {
	obj, newMeta := fullObject(t, 30<<20)
	opts := Options{MultipartThreshold: 5 << 20, PartSize: 5 << 20, PartConcurrency: 2}

	t.Run("part changed", func(t *testing.T) {
		f := &fake{partFn: func(_ context.Context, in *s3.UploadPartCopyInput) error {
			if *in.PartNumber == 3 {
				return apiErr(412, "PreconditionFailed")
			}
			return nil
		}}
		_, err := New(f, opts).MetadataEnvelope(context.Background(), obj, newMeta)
		if !errors.Is(err, ErrChanged) {
			t.Fatalf("err %v", err)
		}
		if len(f.aborts) != 1 || *f.aborts[0].UploadId != "up-1" || len(f.completes) != 0 {
			t.Fatalf("%d aborts, %d completes", len(f.aborts), len(f.completes))
		}
	})

	t.Run("caller cancels", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		f := &fake{partFn: func(ctx context.Context, in *s3.UploadPartCopyInput) error {
			cancel()
			return ctx.Err()
		}}
		_, err := New(f, opts).MetadataEnvelope(ctx, obj, newMeta)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v", err)
		}
		if len(f.aborts) != 1 || f.abortCtx[0] != nil {
			t.Fatalf("aborts %d, abort context %v", len(f.aborts), f.abortCtx)
		}
		if len(f.parts) >= 6 {
			t.Errorf("%d parts started after the cancel", len(f.parts))
		}
	})

	t.Run("range error on a changed object", func(t *testing.T) {
		// Some servers check the range before the precondition.
		f := &fake{
			partFn: func(context.Context, *s3.UploadPartCopyInput) error { return apiErr(400, "InvalidArgument") },
			headFn: func(*s3.HeadObjectInput) (*s3.HeadObjectOutput, error) {
				return &s3.HeadObjectOutput{ETag: aws.String(`"other"`), ContentLength: aws.Int64(5)}, nil
			},
		}
		_, err := New(f, opts).MetadataEnvelope(context.Background(), obj, newMeta)
		if !errors.Is(err, ErrChanged) || len(f.aborts) != 1 {
			t.Fatalf("err %v, %d aborts", err, len(f.aborts))
		}
	})

	t.Run("bad digest", func(t *testing.T) {
		f := &fake{
			completeErr: apiErr(400, "BadDigest"),
			headFn: func(*s3.HeadObjectInput) (*s3.HeadObjectOutput, error) {
				return &s3.HeadObjectOutput{ETag: aws.String(obj.ETag), ContentLength: aws.Int64(obj.Size), Metadata: obj.Metadata}, nil
			},
		}
		_, err := New(f, opts).MetadataEnvelope(context.Background(), obj, newMeta)
		var e *Error
		if !errors.As(err, &e) || e.Kind != nil || !strings.Contains(e.Hint, "NoMultipartChecksum") || len(f.aborts) != 1 {
			t.Fatalf("err %v, %d aborts", err, len(f.aborts))
		}
	})
}

// A completion whose response was lost and that the client retried fails;
// the commit still succeeds when the object carries the new envelope.
func TestMultipartLanded(t *testing.T) {
	obj, newMeta := fullObject(t, 12<<20)
	opts := Options{MultipartThreshold: 5 << 20, PartSize: 5 << 20}
	for _, tc := range []struct {
		name    string
		meta    map[string]string
		success bool
	}{
		{"ours", newMeta, true},
		{"someone else's", obj.Metadata, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fake{
				completeErr: apiErr(404, "NoSuchUpload"),
				headFn: func(*s3.HeadObjectInput) (*s3.HeadObjectOutput, error) {
					return &s3.HeadObjectOutput{ETag: aws.String(`"landed-3"`), VersionId: aws.String("v9"),
						ContentLength: aws.Int64(obj.Size), Metadata: tc.meta}, nil
				},
			}
			res, err := New(f, opts).MetadataEnvelope(context.Background(), obj, newMeta)
			if tc.success {
				if err != nil || res.ETagAfter != `"landed-3"` || res.VersionAfter != "v9" || len(f.aborts) != 0 {
					t.Fatalf("res %+v, err %v, %d aborts", res, err, len(f.aborts))
				}
				return
			}
			if err == nil || len(f.aborts) != 1 {
				t.Fatalf("err %v, %d aborts", err, len(f.aborts))
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	ctx := context.Background()
	c := New(&fake{}, Options{}) // any S3 call panics
	_, meta, newMeta := sealed(t, envelope.V3)
	_, _, otherContent := sealed(t, envelope.V3)
	_, _, v2 := sealed(t, envelope.V2)
	env, _, _ := sealed(t, envelope.V3)
	objSide, _, err := env.InstructionFile()
	if err != nil {
		t.Fatal(err)
	}
	incomplete := maps.Clone(newMeta)
	delete(incomplete, envelope.FieldV3Key)
	base := Object{Bucket: "b", Key: "k", ETag: `"e"`, Size: 10, Metadata: meta}
	with := func(f func(o *Object)) *Object {
		o := base
		o.Metadata = maps.Clone(meta)
		f(&o)
		return &o
	}
	for _, tc := range []struct {
		name    string
		obj     *Object
		newMeta map[string]string
		kind    error
	}{
		{"nil object", nil, newMeta, ErrUnsupported},
		{"delete marker", with(func(o *Object) { o.DeleteMarker = true }), newMeta, ErrUnsupported},
		{"noncurrent", with(func(o *Object) { o.Noncurrent = true }), newMeta, ErrNotCurrent},
		{"SSE-C", with(func(o *Object) { o.SSECustomerAlgorithm = "AES256" }), newMeta, ErrUnsupported},
		{"no ETag", with(func(o *Object) { o.ETag = "" }), newMeta, ErrUnsupported},
		{"instruction file", with(func(o *Object) { o.Metadata = envelope.InstructionObjectMetadata() }), newMeta, ErrUnsupported},
		{"envelope in an instruction file", with(func(o *Object) { o.Metadata = objSide }), newMeta, ErrNotRewrap},
		{"non-envelope field", base.clone(), merge(newMeta, "owner", "mallory"), ErrNotRewrap},
		{"incomplete", base.clone(), incomplete, ErrNotRewrap},
		{"other content", base.clone(), otherContent, ErrNotRewrap},
		{"V3 to V2", base.clone(), v2, ErrNotRewrap},
		{"empty", base.clone(), map[string]string{}, ErrNotRewrap},
	} {
		_, err := c.MetadataEnvelope(ctx, tc.obj, tc.newMeta)
		if !errors.Is(err, tc.kind) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.kind)
		} else {
			t.Logf("%s: %v", tc.name, err)
		}
	}
	// Names with the wire prefix and in any case are accepted.
	prefixed := map[string]string{}
	for k, v := range newMeta {
		prefixed["X-Amz-Meta-"+strings.ToUpper(k)] = v
	}
	f := &fake{}
	if _, err := New(f, Options{}).MetadataEnvelope(ctx, base.clone(), prefixed); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(f.copies[0].Metadata, newMeta) {
		t.Errorf("metadata %v", f.copies[0].Metadata)
	}
}

func (o Object) clone() *Object {
	o.Metadata = maps.Clone(o.Metadata)
	return &o
}

func merge(m map[string]string, k, v string) map[string]string {
	m = maps.Clone(m)
	m[k] = v
	return m
}

func TestCheckObjectSide(t *testing.T) {
	env, _, _ := sealed(t, envelope.V3)
	objSide, _, err := env.InstructionFile()
	if err != nil {
		t.Fatal(err)
	}
	obj := &Object{Bucket: "b", Key: "k", Metadata: merge(objSide, "owner", "alice")}
	if err := CheckObjectSide(obj, objSide); err != nil {
		t.Fatal(err)
	}
	if err := CheckObjectSide(obj, nil); err != nil { // V2: nothing on the object
		t.Fatal(err)
	}
	for _, f := range []string{envelope.FieldV3ContentAlg, envelope.FieldV3Commitment, envelope.FieldV3MessageID} {
		changed := &Object{Bucket: "b", Key: "k", Metadata: merge(obj.Metadata, f, "x")}
		missing := &Object{Bucket: "b", Key: "k", Metadata: maps.Clone(obj.Metadata)}
		delete(missing.Metadata, f)
		for _, o := range []*Object{changed, missing} {
			if err := CheckObjectSide(o, objSide); !errors.Is(err, ErrNotRewrap) {
				t.Errorf("%s: %v", f, err)
			}
		}
	}
}

func instrObject() *Object {
	return &Object{Bucket: "b", Key: "k.instruction", VersionID: "v1", ETag: `"i1"`, Size: 10,
		Metadata:    envelope.InstructionObjectMetadata(),
		ContentType: "application/json", CacheControl: "no-store", ChecksumAlgorithm: types.ChecksumAlgorithmXxhash3}
}

func TestWriteInstructionRequest(t *testing.T) {
	env, _, _ := sealed(t, envelope.V3)
	_, body, err := env.InstructionFile()
	if err != nil {
		t.Fatal(err)
	}
	f := &fake{tags: []types.Tag{{Key: aws.String("kind"), Value: aws.String("instr")}}}
	res, err := New(f, Options{}).WriteInstruction(context.Background(), instrObject(), body)
	if err != nil {
		t.Fatal(err)
	}
	if res != (Result{ETagBefore: `"i1"`, VersionBefore: "v1", ETagAfter: `"new"`, VersionAfter: "v2"}) {
		t.Errorf("result %+v", res)
	}
	in := f.puts[0]
	if aws.ToString(in.IfMatch) != `"i1"` || in.IfNoneMatch != nil || !maps.Equal(in.Metadata, envelope.InstructionObjectMetadata()) ||
		aws.ToString(in.ContentType) != "application/json" || aws.ToString(in.CacheControl) != "no-store" ||
		aws.ToString(in.Tagging) != "kind=instr" || *in.ContentLength != int64(len(body)) || !bytes.Equal(f.putBodies[0], body) ||
		in.ChecksumAlgorithm != "" {
		t.Errorf("put %+v", in)
	}
	for _, bad := range [][]byte{nil, []byte("[]"), []byte(`{"x-amz-iv":"AAAA"}`)} {
		if _, err := New(&fake{}, Options{}).WriteInstruction(context.Background(), instrObject(), bad); !errors.Is(err, ErrNotRewrap) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// A PutObject retried after a lost response fails against its own new ETag;
// the rewrite still succeeds when the file holds the new body.
func TestWriteInstructionLanded(t *testing.T) {
	env, _, _ := sealed(t, envelope.V2)
	_, body, err := env.InstructionFile()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		stored  []byte
		success bool
	}{{body, true}, {append(bytes.Clone(body), ' '), false}} {
		f := &fake{putErr: apiErr(412, "PreconditionFailed"), getFn: func(*s3.GetObjectInput) (*s3.GetObjectOutput, error) {
			return &s3.GetObjectOutput{Body: io.NopCloser(bytes.NewReader(tc.stored)), ETag: aws.String(`"landed"`), VersionId: aws.String("v7")}, nil
		}}
		res, err := New(f, Options{}).WriteInstruction(context.Background(), instrObject(), body)
		if tc.success && (err != nil || res.ETagAfter != `"landed"` || res.VersionAfter != "v7") {
			t.Errorf("landed: %+v, %v", res, err)
		}
		if !tc.success && !errors.Is(err, ErrChanged) {
			t.Errorf("not landed: %v", err)
		}
	}
}

func TestHead(t *testing.T) {
	ctx := context.Background()
	current := "v2"
	f := &fake{headFn: func(in *s3.HeadObjectInput) (*s3.HeadObjectOutput, error) {
		if in.ChecksumMode != "" {
			return nil, apiErr(403, "Forbidden") // SSE-KMS without kms:Decrypt
		}
		if in.VersionId == nil {
			if current == "" {
				return nil, apiErr(404, "NotFound", "x-amz-delete-marker", "true")
			}
			return &s3.HeadObjectOutput{VersionId: &current, ETag: aws.String(`"e"`)}, nil
		}
		return &s3.HeadObjectOutput{VersionId: in.VersionId, ETag: aws.String(`"e"`), ContentLength: aws.Int64(3),
			ExpiresString: aws.String("0"), TagCount: aws.Int32(2), ServerSideEncryption: types.ServerSideEncryptionAwsKms}, nil
	}}
	c := New(f, Options{})
	for _, tc := range []struct {
		current, asked string
		noncurrent     bool
	}{{"v2", "v2", false}, {"v2", "v1", true}, {"", "v1", true}} {
		current = tc.current
		obj, err := c.Head(ctx, "b", "k", tc.asked)
		if err != nil {
			t.Fatal(err)
		}
		if obj.Noncurrent != tc.noncurrent || obj.VersionID != tc.asked || obj.ChecksumAlgorithm != "" ||
			obj.Expires != "0" || obj.TagCount != 2 || obj.Size != 3 {
			t.Errorf("%+v: %+v", tc, obj)
		}
	}
	f.headFn = func(*s3.HeadObjectInput) (*s3.HeadObjectOutput, error) { return nil, apiErr(403, "Forbidden") }
	_, err := c.Head(ctx, "b", "k", "")
	if !errors.Is(err, ErrAccessDenied) || !strings.Contains(err.Error(), "hint: ") {
		t.Errorf("head denied: %v", err)
	}
}

// ReadError classifies a read's error wherever it is wrapped: a guard that
// failed on the GET of the rest of a body that stopped (a BodyError) is a
// changed object, not an S3 error.
func TestReadError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		kind error
	}{
		{fmt.Errorf("the body stopped after 10 bytes: %w", apiErr(412, "PreconditionFailed")), ErrChanged},
		{apiErr(404, "NoSuchVersion"), ErrGone},
		{apiErr(403, "AccessDenied"), ErrAccessDenied},
		{apiErr(403, "InvalidObjectState"), ErrUnsupported},
		{io.ErrUnexpectedEOF, nil},
	} {
		e := ReadError("get body", "b", "k", "v", tc.err)
		if e.Kind != tc.kind || !errors.Is(e, tc.err) || e.Op != "get body" || e.VersionID != "v" {
			t.Errorf("%v: %+v, want kind %v", tc.err, e, tc.kind)
		}
	}
}
