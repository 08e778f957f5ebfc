package awsx_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/rotator-dev/rotator/internal/awsx"
)

// breakingS3 serves one object whose bodies stop after cut bytes (one
// entry per GET, in order; -1: whole), with err (default: a reset
// connection), and records each GET.
type breakingS3 struct {
	data    []byte
	etag    string
	cuts    []int
	err     error
	gets    []s3.GetObjectInput
	changed bool // a GET after the first finds another ETag
	// ignoreRange: answer without a Content-Range, as a server that
	// ignored the Range would.
	ignoreRange bool
}

type brokenBody struct {
	r   io.Reader
	err error
}

func (b *brokenBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		return n, b.err
	}
	return n, err
}

func (b *brokenBody) Close() error { return nil }

func (s *breakingS3) GetObject(ctx context.Context, in *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.gets = append(s.gets, *in)
	if len(s.gets) > 1 && (s.changed || aws.ToString(in.IfMatch) != s.etag) {
		return nil, &smithy.GenericAPIError{Code: "PreconditionFailed", Message: "At least one of the pre-conditions you specified did not hold"}
	}
	first, last := 0, len(s.data)-1
	if r := aws.ToString(in.Range); r != "" {
		a, b, _ := strings.Cut(strings.TrimPrefix(r, "bytes="), "-")
		first, _ = strconv.Atoi(a)
		if b != "" {
			last, _ = strconv.Atoi(b)
		}
	}
	part := s.data[first : last+1]
	var body io.ReadCloser = io.NopCloser(bytes.NewReader(part))
	if i := len(s.gets) - 1; i < len(s.cuts) && s.cuts[i] >= 0 {
		err := s.err
		if err == nil {
			err = fmt.Errorf("read tcp: %w", syscall.ECONNRESET)
		}
		body = &brokenBody{r: bytes.NewReader(part[:s.cuts[i]]), err: err}
	}
	out := &s3.GetObjectOutput{Body: body, ContentLength: aws.Int64(int64(len(part))), ETag: aws.String(s.etag)}
	if in.Range != nil && !s.ignoreRange {
		out.ContentRange = aws.String(fmt.Sprintf("bytes %d-%d/%d", first, last, len(s.data)))
	}
	return out, nil
}

func object(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

// A whole object whose body stops twice is read whole, the rest asked for
// from where it stopped, guarded by the first answer's ETag.
func TestGetObjectReadsOnAfterABreak(t *testing.T) {
	s := &breakingS3{data: object(10000), etag: `"e1"`, cuts: []int{3000, 2500}}
	out, err := awsx.GetObject(t.Context(), s, &s3.GetObjectInput{Bucket: aws.String("b"), Key: aws.String("k"), VersionId: aws.String("v1")})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(out.Body)
	if err != nil || !bytes.Equal(got, s.data) {
		t.Fatalf("read %d bytes, %v; want the %d bytes of the object", len(got), err, len(s.data))
	}
	want := []string{"", "bytes=3000-9999", "bytes=5500-9999"}
	if len(s.gets) != len(want) {
		t.Fatalf("%d GETs, want %d", len(s.gets), len(want))
	}
	for i, in := range s.gets {
		if aws.ToString(in.Range) != want[i] {
			t.Errorf("GET %d: range %q, want %q", i, aws.ToString(in.Range), want[i])
		}
		if i > 0 && (aws.ToString(in.IfMatch) != `"e1"` || aws.ToString(in.VersionId) != "v1") {
			t.Errorf("GET %d: If-Match %q, version %q; want the first answer's ETag and the version read", i, aws.ToString(in.IfMatch), aws.ToString(in.VersionId))
		}
	}
}

// A range, closed or open, is read on within its bounds; a body that ends
// early (EOF before the announced length) counts as stopped.
func TestGetObjectRanges(t *testing.T) {
	for _, tc := range []struct {
		rng       string
		first     int
		wantRange string
	}{
		{"bytes=100-1099", 100, "bytes=400-1099"},
		{"bytes=9000-", 9000, "bytes=9300-9999"},
	} {
		s := &breakingS3{data: object(10000), etag: `"e1"`, cuts: []int{300}, err: io.EOF}
		out, err := awsx.GetObject(t.Context(), s, &s3.GetObjectInput{Range: aws.String(tc.rng), IfMatch: aws.String(`"e1"`)})
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(out.Body)
		if err != nil || !bytes.Equal(got, s.data[tc.first:tc.first+len(got)]) || len(got) != int(*out.ContentLength) {
			t.Fatalf("%s: read %d bytes, %v", tc.rng, len(got), err)
		}
		if len(s.gets) != 2 || aws.ToString(s.gets[1].Range) != tc.wantRange {
			t.Errorf("%s: GETs %d, the second's range %q, want %q", tc.rng, len(s.gets), aws.ToString(s.gets[len(s.gets)-1].Range), tc.wantRange)
		}
	}
}

// A body that stops BodyReads times fails, saying how much was read and
// why; the object is not asked for again after that.
func TestGetObjectGivesUp(t *testing.T) {
	s := &breakingS3{data: object(1000), etag: `"e1"`, cuts: []int{100, 100, 100, 100, 100}}
	out, err := awsx.GetObject(t.Context(), s, &s3.GetObjectInput{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(out.Body)
	var be *awsx.BodyError
	if !errors.As(err, &be) || be.Read != 400 || len(got) != 400 || !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read %d bytes, %v; want a BodyError after 400 bytes, a reset connection", len(got), err)
	}
	if len(s.gets) != awsx.BodyReads {
		t.Errorf("%d GETs, want %d", len(s.gets), awsx.BodyReads)
	}
}

// An object changed between the reads is never spliced: the GET of the
// rest fails its If-Match, and the error says so (S3's 412).
func TestGetObjectChangedBetweenReads(t *testing.T) {
	s := &breakingS3{data: object(1000), etag: `"e1"`, cuts: []int{500}, changed: true}
	out, err := awsx.GetObject(t.Context(), s, &s3.GetObjectInput{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(out.Body)
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "PreconditionFailed" {
		t.Fatalf("got %v, want the 412 of the GET of the rest", err)
	}
}

// A canceled read is not read again.
func TestGetObjectCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	s := &breakingS3{data: object(1000), etag: `"e1"`, cuts: []int{500}, err: context.Canceled}
	out, err := awsx.GetObject(ctx, s, &s3.GetObjectInput{})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := io.ReadAll(out.Body); !errors.Is(err, context.Canceled) || len(s.gets) != 1 {
		t.Fatalf("got %v after %d GETs, want canceled after one", err, len(s.gets))
	}
}

// A range GetObject cannot read on (a suffix range) is read as it comes.
func TestGetObjectSuffixRangeAsItComes(t *testing.T) {
	s := &breakingS3{data: object(1000), etag: `"e1"`, cuts: []int{0}}
	out, err := awsx.GetObject(t.Context(), s, &s3.GetObjectInput{Range: aws.String("bytes=0-99,200-299")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(out.Body); !errors.Is(err, syscall.ECONNRESET) || len(s.gets) != 1 {
		t.Fatalf("got %v after %d GETs, want the break itself after one", err, len(s.gets))
	}
}

// Whatever the breaks and the range, what is read is the range's bytes in
// order, whole or cut short with a BodyError after BodyReads breaks, or
// whole with the BodyError of an error that came after the last byte.
func FuzzGetObjectBreaks(f *testing.F) {
	f.Add(uint16(0), uint16(0), []byte{10, 20})
	f.Add(uint16(100), uint16(900), []byte{0, 0, 0, 0, 0})
	f.Add(uint16(999), uint16(1), []byte{1})
	f.Fuzz(func(t *testing.T, first, length uint16, cuts []byte) {
		data := object(1000)
		a := int(first) % len(data)
		b := min(a+int(length)%len(data), len(data)-1)
		s := &breakingS3{data: data, etag: `"e"`}
		rest := b - a + 1
		for _, c := range cuts {
			cut := int(c) % (rest + 1)
			s.cuts = append(s.cuts, cut)
			rest -= cut
		}
		in := &s3.GetObjectInput{Range: aws.String(fmt.Sprintf("bytes=%d-%d", a, b))}
		out, err := awsx.GetObject(t.Context(), s, in)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(out.Body)
		if !bytes.Equal(got, data[a:a+len(got)]) {
			t.Fatalf("read bytes that are not the range's, in order")
		}
		var be *awsx.BodyError
		switch {
		case err == nil && len(got) != b-a+1:
			t.Fatalf("read %d of %d bytes without an error", len(got), b-a+1)
		case err != nil && (!errors.As(err, &be) || (len(s.gets) != awsx.BodyReads && len(got) != b-a+1)):
			// A break after the last byte is an error that came with the
			// end of the body (a checksum that did not match): reported.
			t.Fatalf("after %d GETs and %d bytes: %v, want a BodyError after %d GETs or the whole range", len(s.gets), len(got), err, awsx.BodyReads)
		}
	})
}

// An error that comes with the last bytes (the SDK's checksum validation
// reports a mismatch as the body ends) fails the read; so do bytes beyond
// the announced length. The body is read past its end once, so that such
// a check sees the end.
func TestGetObjectErrorAtTheEnd(t *testing.T) {
	mismatch := errors.New("checksum did not match")
	s := &breakingS3{data: object(1000), etag: `"e1"`, cuts: []int{1000}, err: mismatch}
	out, err := awsx.GetObject(t.Context(), s, &s3.GetObjectInput{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(out.Body)
	if !errors.Is(err, mismatch) || len(got) != 1000 || len(s.gets) != 1 {
		t.Fatalf("read %d bytes, %v after %d GETs; want the mismatch after the whole body, one GET", len(got), err, len(s.gets))
	}
	long := &breakingS3{data: object(1000), etag: `"e1"`}
	wrapped, err := awsx.GetObject(t.Context(), lengthLie{long}, &s3.GetObjectInput{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(wrapped.Body); err == nil || len(got) != 999 {
		t.Fatalf("a body longer than announced: %d bytes, %v; want 999 and an error", len(got), err)
	}
}

// lengthLie announces one byte less than the body holds.
type lengthLie struct{ *breakingS3 }

func (l lengthLie) GetObject(ctx context.Context, in *s3.GetObjectInput, o ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	out, err := l.breakingS3.GetObject(ctx, in, o...)
	if err == nil {
		*out.ContentLength--
	}
	return out, err
}

// A server that ignored the Range (no Content-Range) is read as it came:
// the offsets of a further read would be wrong.
func TestGetObjectRangeIgnored(t *testing.T) {
	s := &breakingS3{data: object(1000), etag: `"e1"`, cuts: []int{10}, ignoreRange: true}
	out, err := awsx.GetObject(t.Context(), s, &s3.GetObjectInput{Range: aws.String("bytes=100-199")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(out.Body); !errors.Is(err, syscall.ECONNRESET) || len(s.gets) != 1 {
		t.Fatalf("got %v after %d GETs, want the break itself after one", err, len(s.gets))
	}
}

// An empty buffer reads nothing and returns at once.
func TestGetObjectEmptyRead(t *testing.T) {
	s := &breakingS3{data: object(100), etag: `"e1"`}
	out, err := awsx.GetObject(t.Context(), s, &s3.GetObjectInput{})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := out.Body.Read(nil); n != 0 || err != nil {
		t.Fatalf("Read(nil) = %d, %v", n, err)
	}
}
