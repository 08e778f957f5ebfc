package commit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/rotator-dev/rotator/envelope"
)

// New content: the writes of a re-encryption, which replaces an object's
// body (and envelope) with new bytes, keeping its user metadata, system
// headers and tags. Every write that makes the new body visible is guarded
// by If-Match on the ETag read at classify time.

// Operation names of new-content writes.
const (
	opCreateUpload = "create multipart upload"
	opUploadPart   = "upload part"
	opComplete     = "complete multipart upload"
	opAbort        = "abort multipart upload"
	opPutContent   = "put object"
	opListUploads  = "list multipart uploads"
)

const hintContentPerms = "re-encryption needs s3:GetObject, s3:PutObject, s3:AbortMultipartUpload, s3:GetObjectTagging and s3:PutObjectTagging on the objects and s3:ListBucketMultipartUploads on the bucket (rotator iam-policy with the run's flags prints them all)"

// ContentMetadata returns the user metadata of obj's new version: every
// entry of obj.Metadata but the envelope fields, plus envelopeMeta (the new
// envelope's entries, names with or without x-amz-meta-). It refuses a result
// above the metadata limit (envelope.ErrMetadataTooLarge).
func (c *Committer) ContentMetadata(obj *Object, envelopeMeta map[string]string) (map[string]string, error) {
	meta := make(map[string]string, len(obj.Metadata)+len(envelopeMeta))
	for k, v := range obj.Metadata {
		if !envelope.IsEnvelopeField(k) {
			meta[k] = v
		}
	}
	for k, v := range envelopeMeta {
		meta[strings.TrimPrefix(strings.ToLower(k), envelope.MetaPrefix)] = v
	}
	if n := envelope.MetadataSize(meta); n > c.maxMeta() {
		return nil, obj.ref().fail(opCreateUpload, envelope.ErrMetadataTooLarge,
			"the new envelope does not fit beside the object's other metadata; re-encrypt it into an instruction file instead",
			"%d bytes of user metadata, S3 allows %d", n, c.maxMeta())
	}
	return meta, nil
}

func (c *Committer) maxMeta() int {
	if c.opts.MaxMetadataBytes > 0 {
		return c.opts.MaxMetadataBytes
	}
	return DefaultMaxMetadataBytes
}

// contentChecksum is the checksum algorithm new content is uploaded with:
// the object's own, when the S3 client can compute it and checksums are not
// turned off (Options.NoMultipartChecksum).
func (c *Committer) contentChecksum(obj *Object) types.ChecksumAlgorithm {
	if c.opts.NoMultipartChecksum || !sdkComputes(obj.ChecksumAlgorithm) || obj.ChecksumAlgorithm == types.ChecksumAlgorithmSha512 {
		return ""
	}
	return obj.ChecksumAlgorithm
}

// CreateUpload starts a multipart upload of new content for obj (the object
// as read at classify time) with user metadata meta (see ContentMetadata),
// obj's system headers and its tags as S3 reports them now. Nothing is
// visible until CompleteUpload.
func (c *Committer) CreateUpload(ctx context.Context, obj *Object, meta map[string]string) (string, error) {
	ref := obj.ref()
	if obj.SSECustomerAlgorithm != "" {
		return "", ref.fail(opCreateUpload, ErrUnsupported, "", "the object is encrypted with SSE-C (customer-provided key)")
	}
	tags, err := c.Tags(ctx, obj.Bucket, obj.Key, obj.VersionID)
	if err != nil {
		return "", err
	}
	h := c.headersOf(obj)
	in := &s3.CreateMultipartUploadInput{
		Bucket:   aws.String(obj.Bucket),
		Key:      aws.String(obj.Key),
		Metadata: meta,
		Tagging:  encodeTags(tags),
	}
	h.createInput(in)
	in.ChecksumAlgorithm = c.contentChecksum(obj)
	if in.ChecksumAlgorithm != "" {
		in.ChecksumType = multipartChecksumType(in.ChecksumAlgorithm, obj.ChecksumType)
	}
	out, err := c.s3.CreateMultipartUpload(ctx, in, h.optFns()...)
	if err != nil {
		return "", ref.classify(opCreateUpload, err, hintContentPerms)
	}
	return aws.ToString(out.UploadId), nil
}

// UploadPart uploads part number n (1-based) of an upload CreateUpload
// started for obj. The body is not kept.
func (c *Committer) UploadPart(ctx context.Context, obj *Object, uploadID string, n int, body []byte) (types.CompletedPart, error) {
	alg := c.contentChecksum(obj)
	out, err := c.s3.UploadPart(ctx, &s3.UploadPartInput{
		Bucket:            aws.String(obj.Bucket),
		Key:               aws.String(obj.Key),
		UploadId:          aws.String(uploadID),
		PartNumber:        aws.Int32(int32(n)),
		Body:              bytes.NewReader(body),
		ContentLength:     aws.Int64(int64(len(body))),
		ChecksumAlgorithm: alg,
	})
	if err != nil {
		e := obj.ref().classify(opUploadPart, err, hintContentPerms)
		if code, _ := apiCode(err); code == codeNoSuchUpload {
			e.Kind = ErrUploadGone
		}
		e.Err = fmt.Errorf("part %d: %w", n, err)
		return types.CompletedPart{}, e
	}
	p := types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(int32(n))}
	switch alg {
	case types.ChecksumAlgorithmCrc32:
		p.ChecksumCRC32 = out.ChecksumCRC32
	case types.ChecksumAlgorithmCrc32c:
		p.ChecksumCRC32C = out.ChecksumCRC32C
	case types.ChecksumAlgorithmCrc64nvme:
		p.ChecksumCRC64NVME = out.ChecksumCRC64NVME
	case types.ChecksumAlgorithmSha1:
		p.ChecksumSHA1 = out.ChecksumSHA1
	case types.ChecksumAlgorithmSha256:
		p.ChecksumSHA256 = out.ChecksumSHA256
	}
	return p, nil
}

// ErrUploadGone: the multipart upload no longer exists (aborted, or removed
// by a lifecycle rule); its parts must be uploaded again to a new one.
var ErrUploadGone = errors.New("the multipart upload no longer exists")

// CompleteUpload makes the uploaded parts the object's new version, only if
// the object still has the ETag read at classify time (If-Match; otherwise
// ErrChanged and nothing changes). A completion whose response was lost
// fails its own retry (ErrChanged or ErrUploadGone): the caller finds out
// whether it landed (the new envelope is its own). parts must be in part
// number order.
func (c *Committer) CompleteUpload(ctx context.Context, obj *Object, uploadID string, parts []types.CompletedPart) (Result, error) {
	in := &s3.CompleteMultipartUploadInput{
		Bucket:          aws.String(obj.Bucket),
		Key:             aws.String(obj.Key),
		UploadId:        aws.String(uploadID),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	}
	if !c.opts.NoDestinationIfMatch {
		in.IfMatch = aws.String(obj.ETag)
	}
	out, err := c.s3.CompleteMultipartUpload(ctx, in)
	if err != nil {
		e := obj.ref().classify(opComplete, err, hintContentPerms)
		if code, _ := apiCode(err); code == codeNoSuchUpload {
			e.Kind = ErrUploadGone
		}
		return Result{}, c.recheck(ctx, obj, e)
	}
	res := Result{ETagBefore: obj.ETag, VersionBefore: obj.VersionID,
		ETagAfter: aws.ToString(out.ETag), VersionAfter: aws.ToString(out.VersionId), Parts: len(parts)}
	if err := c.confirmCompleted(ctx, obj, uploadID, res); err != nil {
		return Result{}, err
	}
	return res, nil
}

// confirmCompleted reads back the object a completion answered: a success
// response is not evidence that it landed. versitygw answers one for an
// upload that was aborted, with the ETag the parts would make, and leaves
// the object as it was; an instruction file written next would then name
// a data key the object does not hold. The object (its version, when the
// completion named one) must have the ETag the completion answered;
// otherwise the upload is taken as gone (ErrUploadGone) and the caller
// settles from the object.
func (c *Committer) confirmCompleted(ctx context.Context, obj *Object, uploadID string, res Result) error {
	cur, err := c.Head(ctx, obj.Bucket, obj.Key, res.VersionAfter)
	switch {
	case err != nil:
		return obj.ref().fail(opComplete, nil, "", "the completion of upload %s was answered, but the object could not be read back to confirm it: %w", uploadID, err)
	case cur.ETag != res.ETagAfter:
		return obj.ref().fail(opComplete, ErrUploadGone, "",
			"the completion of upload %s was answered with ETag %s, but the object has ETag %s: the upload did not land (aborted?)", uploadID, res.ETagAfter, cur.ETag)
	}
	return nil
}

// AbortUpload aborts an upload and frees its parts, even when ctx is done.
// An upload that no longer exists is not an error.
func (c *Committer) AbortUpload(ctx context.Context, obj *Object, uploadID string) error {
	if err := c.abort(ctx, obj, uploadID); err != nil {
		return obj.ref().fail(opAbort, nil,
			fmt.Sprintf("abort upload %s of the key by hand (aws s3api abort-multipart-upload), and keep an AbortIncompleteMultipartUpload lifecycle rule on the bucket", uploadID),
			"%w", err)
	}
	return nil
}

// PutContent writes body as obj's new version in one PutObject, with user
// metadata meta (see ContentMetadata), obj's system headers and its tags as
// S3 reports them now, only if the object still has the ETag read at
// classify time (If-Match; otherwise ErrChanged).
func (c *Committer) PutContent(ctx context.Context, obj *Object, meta map[string]string, body []byte) (Result, error) {
	ref := obj.ref()
	if obj.SSECustomerAlgorithm != "" {
		return Result{}, ref.fail(opPutContent, ErrUnsupported, "", "the object is encrypted with SSE-C (customer-provided key)")
	}
	tags, err := c.Tags(ctx, obj.Bucket, obj.Key, obj.VersionID)
	if err != nil {
		return Result{}, err
	}
	h := c.headersOf(obj)
	in := &s3.PutObjectInput{
		Bucket:        aws.String(obj.Bucket),
		Key:           aws.String(obj.Key),
		Body:          bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))),
		Metadata:      maps.Clone(meta),
		Tagging:       encodeTags(tags),
		IfMatch:       aws.String(obj.ETag),
	}
	h.putInput(in)
	out, err := c.s3.PutObject(ctx, in, h.optFns()...)
	if err != nil {
		return Result{}, c.recheck(ctx, obj, ref.classify(opPutContent, err, hintContentPerms))
	}
	return Result{ETagBefore: obj.ETag, VersionBefore: obj.VersionID,
		ETagAfter: aws.ToString(out.ETag), VersionAfter: aws.ToString(out.VersionId)}, nil
}

// Upload is a multipart upload in progress.
type Upload struct {
	Key, ID   string
	Initiated time.Time
}

// ListUploads lists the multipart uploads in progress on exactly key
// (s3:ListBucketMultipartUploads).
func (c *Committer) ListUploads(ctx context.Context, bucket, key string) ([]Upload, error) {
	ref := &objRef{bucket: bucket, key: key}
	p := s3.NewListMultipartUploadsPaginator(c.s3, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket), Prefix: aws.String(key)})
	var out []Upload
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, ref.classify(opListUploads, err, "listing a key's uploads needs s3:ListBucketMultipartUploads on the bucket")
		}
		for _, u := range page.Uploads {
			if aws.ToString(u.Key) == key {
				out = append(out, Upload{Key: key, ID: aws.ToString(u.UploadId), Initiated: aws.ToTime(u.Initiated)})
			}
		}
	}
	return out, nil
}
