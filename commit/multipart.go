package commit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

	"github.com/rotator-dev/rotator/envelope"
)

// abortTimeout bounds the AbortMultipartUpload after a failure, which runs
// even when the caller's context is done.
const abortTimeout = 2 * time.Minute

// part is one byte range [first, last] of a multipart copy.
type part struct{ first, last int64 }

// planParts splits size bytes into parts of at least want bytes (and
// MinPartSize), larger when needed to stay within MaxParts.
func planParts(size, want int64) ([]part, error) {
	ps := max(want, MinPartSize)
	if need := (size + MaxParts - 1) / MaxParts; ps < need {
		const mib = 1 << 20
		ps = (need + mib - 1) / mib * mib
	}
	if ps > MaxPartSize {
		return nil, fmt.Errorf("%d bytes need parts of %d bytes, more than S3's %d", size, ps, int64(MaxPartSize))
	}
	parts := make([]part, 0, (size+ps-1)/ps)
	for off := int64(0); off < size; off += ps {
		parts = append(parts, part{off, min(off+ps, size) - 1})
	}
	return parts, nil
}

// multipartCopy writes obj onto itself with new user metadata through a
// multipart upload whose parts are ranges of obj (S3 refuses CopyObject
// above 5 GiB). newMeta is the new envelope, used to recognise our own
// completion after an ambiguous failure.
func (c *Committer) multipartCopy(ctx context.Context, obj *Object, meta, newMeta map[string]string) (Result, error) {
	ref := obj.ref()
	parts, err := planParts(obj.Size, c.opts.PartSize)
	if err != nil {
		return Result{}, ref.fail(opMultipart, ErrUnsupported, "", "%w", err)
	}
	// Tags are read even when HEAD reported none: S3 leaves the count out
	// when the caller may not read tags.
	tags, err := c.Tags(ctx, obj.Bucket, obj.Key, "")
	if err != nil {
		return Result{}, err
	}
	h := c.headersOf(obj)
	create := &s3.CreateMultipartUploadInput{
		Bucket:   aws.String(obj.Bucket),
		Key:      aws.String(obj.Key),
		Metadata: meta,
		Tagging:  encodeTags(tags),
	}
	h.createInput(create)
	var ck checksum
	if !c.opts.NoMultipartChecksum && h.checksum != "" {
		ck.alg = h.checksum
		ck.typ = multipartChecksumType(h.checksum, obj.ChecksumType)
		if ck.typ == types.ChecksumTypeFullObject && obj.ChecksumType != types.ChecksumTypeComposite &&
			!strings.Contains(obj.Checksum, "-") {
			ck.full = obj.Checksum
		}
		create.ChecksumType = ck.typ
	} else {
		create.ChecksumAlgorithm = ""
	}
	cout, err := c.s3.CreateMultipartUpload(ctx, create, h.optFns()...)
	if err != nil {
		return Result{}, c.recheck(ctx, obj, ref.classify(opMultipart, err, hintCopyPerms))
	}
	uploadID := aws.ToString(cout.UploadId)

	res, cerr := c.copyParts(ctx, obj, uploadID, parts, ck, newMeta)
	if cerr != nil {
		if aerr := c.abort(ctx, obj, uploadID); aerr != nil {
			cerr.Err = errors.Join(cerr.Err, aerr)
			cerr.Hint = fmt.Sprintf("abort upload %s of the key by hand, and keep an AbortIncompleteMultipartUpload lifecycle rule on the bucket", uploadID)
		}
		return Result{}, cerr
	}
	return res, nil
}

// checksum is the checksum a multipart copy asks S3 for.
type checksum struct {
	alg types.ChecksumAlgorithm // "" for none
	typ types.ChecksumType
	// full is the object's full-object checksum, sent with the completion
	// so S3 checks that the copy has the same bytes; "" when unknown.
	full string
}

// copyParts copies every part, guarded by CopySourceIfMatch, and completes
// the upload, guarded by If-Match. The caller aborts on error.
func (c *Committer) copyParts(ctx context.Context, obj *Object, uploadID string, parts []part, ck checksum, newMeta map[string]string) (Result, *Error) {
	ref := obj.ref()
	src := copySource(obj.Bucket, obj.Key, "") // the current version: see selfCopy
	done := make([]types.CompletedPart, len(parts))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.opts.PartConcurrency)
	for i, p := range parts {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			out, err := c.s3.UploadPartCopy(gctx, &s3.UploadPartCopyInput{
				Bucket:            aws.String(obj.Bucket),
				Key:               aws.String(obj.Key),
				UploadId:          aws.String(uploadID),
				PartNumber:        aws.Int32(int32(i + 1)),
				CopySource:        aws.String(src),
				CopySourceIfMatch: aws.String(obj.ETag),
				CopySourceRange:   aws.String(fmt.Sprintf("bytes=%d-%d", p.first, p.last)),
			})
			if err != nil {
				return fmt.Errorf("part %d of %d: %w", i+1, len(parts), err)
			}
			if out.CopyPartResult == nil {
				return fmt.Errorf("part %d of %d: no result", i+1, len(parts))
			}
			cp := types.CompletedPart{ETag: out.CopyPartResult.ETag, PartNumber: aws.Int32(int32(i + 1))}
			partChecksum(&cp, out.CopyPartResult, ck.alg)
			done[i] = cp
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		e := c.recheck(ctx, obj, ref.classify(opMultipart, err, hintCopyPerms))
		if code, _ := apiCode(err); e.Kind == nil && checksumHint(code, ck, false) != "" {
			e.Hint = checksumHint(code, ck, false) // a server that cannot copy checksummed parts
		}
		return Result{}, e
	}
	if err := ctx.Err(); err != nil {
		return Result{}, ref.classify(opMultipart, err, "")
	}
	complete := &s3.CompleteMultipartUploadInput{
		Bucket:          aws.String(obj.Bucket),
		Key:             aws.String(obj.Key),
		UploadId:        aws.String(uploadID),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: done},
	}
	if !c.opts.NoDestinationIfMatch {
		complete.IfMatch = aws.String(obj.ETag)
	}
	if ck.full != "" {
		complete.ChecksumType = types.ChecksumTypeFullObject
		switch ck.alg {
		case types.ChecksumAlgorithmCrc32:
			complete.ChecksumCRC32 = &ck.full
		case types.ChecksumAlgorithmCrc32c:
			complete.ChecksumCRC32C = &ck.full
		case types.ChecksumAlgorithmCrc64nvme:
			complete.ChecksumCRC64NVME = &ck.full
		}
	}
	out, err := c.s3.CompleteMultipartUpload(ctx, complete)
	if err != nil {
		e := ref.classify(opMultipart, err, hintCopyPerms)
		code, _ := apiCode(err)
		// A completion retried after a lost response fails (412 against
		// our own new ETag, or NoSuchUpload): check whether it landed.
		if e.Kind == ErrChanged || code == codeNoSuchUpload {
			if cur, ok := c.landed(ctx, obj, newMeta); ok {
				return Result{ETagBefore: obj.ETag, VersionBefore: obj.VersionID,
					ETagAfter: cur.ETag, VersionAfter: cur.VersionID, Parts: len(parts)}, nil
			}
		}
		e = c.recheck(ctx, obj, e)
		if h := checksumHint(code, ck, true); h != "" && e.Kind == nil {
			e.Hint = h
		}
		return Result{}, e
	}
	return Result{ETagBefore: obj.ETag, VersionBefore: obj.VersionID,
		ETagAfter: aws.ToString(out.ETag), VersionAfter: aws.ToString(out.VersionId), Parts: len(parts)}, nil
}

// landed reports whether the key's current version already carries the new
// envelope with obj's size: our own write, whose response was lost. The new
// wrapped key is unique to this rewrap, so no other writer produces it.
func (c *Committer) landed(ctx context.Context, obj *Object, newMeta map[string]string) (*Object, bool) {
	cur, err := c.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(obj.Bucket), Key: aws.String(obj.Key)})
	if err != nil || aws.ToInt64(cur.ContentLength) != obj.Size {
		return nil, false
	}
	got := objectFromHead(obj.Bucket, obj.Key, cur)
	want, err := envelope.Parse(newMeta, nil, envelope.ParseOptions{AllowLegacy: true, MaxMetadataBytes: -1})
	if err != nil {
		return nil, false
	}
	have, err := envelope.Parse(got.Metadata, nil, envelope.ParseOptions{AllowLegacy: true, MaxMetadataBytes: -1})
	if err != nil || have.WrapAlg != want.WrapAlg || string(have.WrappedKey) != string(want.WrappedKey) || rewrapOnly(have, want) != "" {
		return nil, false
	}
	return got, true
}

// abort aborts an upload even when ctx is done.
func (c *Committer) abort(ctx context.Context, obj *Object, uploadID string) error {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	_, err := c.s3.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{
		Bucket: aws.String(obj.Bucket), Key: aws.String(obj.Key), UploadId: aws.String(uploadID),
	})
	if code, _ := apiCode(err); code == codeNoSuchUpload {
		return nil
	}
	if err != nil {
		return fmt.Errorf("abort multipart upload %s: %w", uploadID, err)
	}
	return nil
}
