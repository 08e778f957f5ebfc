package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	smithy "github.com/aws/smithy-go"
)

// S3ReportAPI is what an S3 report needs of an S3 client.
type S3ReportAPI interface {
	HeadObject(context.Context, *s3.HeadObjectInput, ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
	GetObject(context.Context, *s3.GetObjectInput, ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	PutObject(context.Context, *s3.PutObjectInput, ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	CreateMultipartUpload(context.Context, *s3.CreateMultipartUploadInput, ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error)
	UploadPart(context.Context, *s3.UploadPartInput, ...func(*s3.Options)) (*s3.UploadPartOutput, error)
	UploadPartCopy(context.Context, *s3.UploadPartCopyInput, ...func(*s3.Options)) (*s3.UploadPartCopyOutput, error)
	CompleteMultipartUpload(context.Context, *s3.CompleteMultipartUploadInput, ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error)
	AbortMultipartUpload(context.Context, *s3.AbortMultipartUploadInput, ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error)
	ListMultipartUploads(context.Context, *s3.ListMultipartUploadsInput, ...func(*s3.Options)) (*s3.ListMultipartUploadsOutput, error)
}

// S3 report limits.
const (
	// S3ReportPartSize is the size of the parts an S3 report is uploaded
	// in: the most of it held in memory.
	S3ReportPartSize = 8 << 20
	s3MinPart        = 5 << 20
	s3MaxCopyPart    = 5 << 30
	s3MaxParts       = 10000
	s3ReportTimeout  = 5 * time.Minute
)

// S3ReportOptions tune OpenS3Report.
type S3ReportOptions struct {
	// PartSize overrides S3ReportPartSize (at least 5 MiB; tests).
	PartSize int
}

// S3Report is a report written to one S3 object, as S3 Batch Operations
// writes its completion reports: the rows stream to S3 in parts of
// S3ReportPartSize through a multipart upload (or one PutObject when the
// report stays smaller), so that memory stays bounded and no temporary
// file is needed, and the object appears when Close completes the upload:
// at the end of the run, and when it is interrupted. A process killed
// with SIGKILL leaves no object (its upload is aborted by the next
// OpenS3Report of the same key); the ledger still holds every change.
//
// An existing object is continued, as a resumed run appends to a local
// report: its bytes are the upload's first part(s), copied inside S3
// (UploadPartCopy), or read back when smaller than a part. The write is
// conditional on the object being as it was found (If-Match, or
// If-None-Match for a new one): a report another process changed
// meanwhile is never overwritten in silence.
//
// Write is not safe for concurrent use (Report serialises its calls).
type S3Report struct {
	c        S3ReportAPI
	ctx      context.Context
	bucket   string
	key      string
	partSize int

	etag     string // the object's when opened; "" when new
	existed  bool
	dirty    bool // bytes written since it was opened
	buf      []byte
	uploadID string
	parts    []types.CompletedPart
	err      error
	closed   bool
}

var _ io.WriteCloser = (*S3Report)(nil)

// OpenS3Report opens s3://bucket/key for writing a report, continuing
// the object if it exists (existed). It first aborts the multipart
// uploads an earlier process left on the key (one killed before it could
// complete its report): call it only while holding the run's lease, so
// that no other process writes the same report.
func OpenS3Report(ctx context.Context, c S3ReportAPI, bucket, key string, o S3ReportOptions) (w *S3Report, existed bool, err error) {
	w = &S3Report{c: c, ctx: context.WithoutCancel(ctx), bucket: bucket, key: key, partSize: o.PartSize}
	if w.partSize < s3MinPart {
		w.partSize = S3ReportPartSize
	}
	if err := w.abortStale(ctx); err != nil {
		return nil, false, err
	}
	head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		if !isNotFound(err) {
			return nil, false, w.fail("read the report", err)
		}
		return w, false, nil
	}
	w.existed, w.etag = true, aws.ToString(head.ETag)
	size := aws.ToInt64(head.ContentLength)
	if size < s3MinPart {
		// Small: read it back; it is the start of the first part.
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key, IfMatch: head.ETag})
		if err != nil {
			return nil, false, w.fail("read the report", err)
		}
		defer out.Body.Close()
		w.buf, err = io.ReadAll(io.LimitReader(out.Body, s3MinPart))
		if err != nil {
			return nil, false, w.fail("read the report", err)
		}
		return w, true, nil
	}
	// Large: copy it inside S3 as the first parts, each at least 5 MiB.
	if err := w.create(); err != nil {
		return nil, false, err
	}
	n := (size + s3MaxCopyPart - 1) / s3MaxCopyPart
	chunk := (size + n - 1) / n
	src := bucket + "/" + escapeKey(key)
	for off := int64(0); off < size; off += chunk {
		last := min(off+chunk, size) - 1
		out, err := c.UploadPartCopy(ctx, &s3.UploadPartCopyInput{
			Bucket: &bucket, Key: &key, UploadId: &w.uploadID, PartNumber: aws.Int32(int32(len(w.parts) + 1)),
			CopySource: &src, CopySourceIfMatch: head.ETag, CopySourceRange: aws.String(fmt.Sprintf("bytes=%d-%d", off, last)),
		})
		if err == nil && out.CopyPartResult == nil {
			err = errors.New("no copy result")
		}
		if err != nil {
			w.abort()
			return nil, false, w.fail("continue the report", err)
		}
		w.parts = append(w.parts, types.CompletedPart{ETag: out.CopyPartResult.ETag, PartNumber: aws.Int32(int32(len(w.parts) + 1))})
	}
	return w, true, nil
}

// URL is s3://bucket/key.
func (w *S3Report) URL() string { return "s3://" + w.bucket + "/" + w.key }

// Write appends p, uploading a part each time S3ReportPartSize bytes are
// buffered.
func (w *S3Report) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.closed {
		return 0, errors.New("report " + w.URL() + ": closed")
	}
	w.dirty = w.dirty || len(p) > 0
	w.buf = append(w.buf, p...)
	for len(w.buf) >= w.partSize {
		if err := w.upload(w.buf[:w.partSize]); err != nil {
			return 0, err
		}
		w.buf = w.buf[:copy(w.buf, w.buf[w.partSize:])]
	}
	return len(p), nil
}

// Close writes the object: the rest of the rows and the completion of
// the upload. Nothing is written when nothing was added to an existing
// report. Close after Close is a no-op.
func (w *S3Report) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	if w.err != nil {
		w.abort()
		return w.err
	}
	if w.existed && !w.dirty {
		w.abort()
		return nil
	}
	ctx, cancel := context.WithTimeout(w.ctx, s3ReportTimeout)
	defer cancel()
	if w.uploadID == "" {
		in := &s3.PutObjectInput{Bucket: &w.bucket, Key: &w.key, Body: bytes.NewReader(w.buf), ContentType: aws.String("text/csv")}
		w.condition(&in.IfMatch, &in.IfNoneMatch)
		if _, err := w.c.PutObject(ctx, in); err != nil {
			return w.fail("write the report", err)
		}
		return nil
	}
	if len(w.buf) > 0 {
		if err := w.upload(w.buf); err != nil {
			w.abort()
			return err
		}
		w.buf = nil
	}
	in := &s3.CompleteMultipartUploadInput{Bucket: &w.bucket, Key: &w.key, UploadId: &w.uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: w.parts}}
	w.condition(&in.IfMatch, &in.IfNoneMatch)
	if _, err := w.c.CompleteMultipartUpload(ctx, in); err != nil {
		w.abort()
		return w.fail("complete the report", err)
	}
	return nil
}

// condition makes a write conditional on the object being as it was
// found.
func (w *S3Report) condition(ifMatch, ifNoneMatch **string) {
	if w.existed {
		*ifMatch = aws.String(w.etag)
	} else {
		*ifNoneMatch = aws.String("*")
	}
}

func (w *S3Report) create() error {
	// No checksum algorithm: parts copied from the report (UploadPartCopy)
	// cannot carry one on every server (versitygw computes a copied
	// part's checksum over the whole source). The SDK still sends each
	// uploaded part's CRC32, which the server checks.
	out, err := w.c.CreateMultipartUpload(w.ctx, &s3.CreateMultipartUploadInput{Bucket: &w.bucket, Key: &w.key, ContentType: aws.String("text/csv")})
	if err != nil {
		return w.fail("write the report", err)
	}
	w.uploadID = aws.ToString(out.UploadId)
	return nil
}

// upload uploads b as the next part.
func (w *S3Report) upload(b []byte) error {
	if w.uploadID == "" {
		if err := w.create(); err != nil {
			return err
		}
	}
	if len(w.parts) == s3MaxParts {
		return w.fail("write the report", fmt.Errorf("more than %d parts of %d bytes: split the run into more shards", s3MaxParts, w.partSize))
	}
	n := int32(len(w.parts) + 1)
	out, err := w.c.UploadPart(w.ctx, &s3.UploadPartInput{Bucket: &w.bucket, Key: &w.key, UploadId: &w.uploadID, PartNumber: &n, Body: bytes.NewReader(b)})
	if err != nil {
		return w.fail("write the report", err)
	}
	w.parts = append(w.parts, types.CompletedPart{ETag: out.ETag, PartNumber: &n})
	return nil
}

// abort drops the upload in progress, if any.
func (w *S3Report) abort() {
	if w.uploadID == "" {
		return
	}
	ctx, cancel := context.WithTimeout(w.ctx, time.Minute)
	defer cancel()
	_, _ = w.c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &w.bucket, Key: &w.key, UploadId: &w.uploadID})
	w.uploadID = ""
}

// abortStale aborts the uploads left on the key by processes that died
// before they completed them.
func (w *S3Report) abortStale(ctx context.Context) error {
	in := &s3.ListMultipartUploadsInput{Bucket: &w.bucket, Prefix: &w.key}
	for {
		out, err := w.c.ListMultipartUploads(ctx, in)
		if err != nil {
			return w.fail("list the report's unfinished uploads", err)
		}
		for _, u := range out.Uploads {
			if aws.ToString(u.Key) != w.key {
				continue
			}
			if _, err := w.c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &w.bucket, Key: &w.key, UploadId: u.UploadId}); err != nil && !isNotFound(err) {
				return w.fail("abort an unfinished upload of the report", err)
			}
		}
		if !aws.ToBool(out.IsTruncated) {
			return nil
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
}

// fail records the first error, with what to do about it.
func (w *S3Report) fail(what string, err error) error {
	hint := "check s3:PutObject, s3:GetObject and s3:ListBucketMultipartUploads on the report's bucket; the ledger holds every change ('rotator ledger export')"
	var ae smithy.APIError
	if errors.As(err, &ae) && (ae.ErrorCode() == "PreconditionFailed" || ae.ErrorCode() == "ConditionalRequestConflict") {
		hint = "another process wrote the report meanwhile (two processes of one run or shard?): this process's rows are not in it; the ledger holds every change ('rotator ledger export')"
	}
	if w.err == nil {
		w.err = fmt.Errorf("%s %s: %w (hint: %s)", what, w.URL(), err, hint)
	}
	return w.err
}

// isNotFound reports a 404 (NotFound, NoSuchKey, NoSuchUpload).
func isNotFound(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NotFound", "NoSuchKey", "NoSuchUpload":
			return true
		}
	}
	var nf *types.NotFound
	var nk *types.NoSuchKey
	return errors.As(err, &nf) || errors.As(err, &nk)
}

// escapeKey percent-encodes a key for CopySource (every byte but the
// unreserved characters and '/').
func escapeKey(k string) string {
	const hex = "0123456789ABCDEF"
	var b []byte
	for i := 0; i < len(k); i++ {
		c := k[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' || c == '/' {
			b = append(b, c)
			continue
		}
		b = append(b, '%', hex[c>>4], hex[c&15])
	}
	return string(b)
}
