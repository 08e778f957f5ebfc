package commit

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/rotator-dev/rotator/envelope"
)

// MetadataEnvelope stores a new envelope in the metadata of obj, the object
// as read at classify time, and leaves its content untouched.
//
// newMeta holds the new envelope's entries (Envelope.Metadata of the
// rewrapped envelope; names with or without x-amz-meta-). The object's
// envelope entries are all removed and newMeta's written; every other user
// metadata entry is kept unchanged, and every system header is sent again
// (see the package documentation). newMeta must be a complete envelope that
// differs from the stored one only in its wrapping (ErrNotRewrap), and the
// result must fit S3's metadata limit (envelope.ErrMetadataTooLarge).
//
// Objects up to Options.MultipartThreshold are copied onto themselves with
// one CopyObject; larger ones with a multipart copy. Either way the write
// happens only if the object still has the ETag read at classify time
// (otherwise ErrChanged, and the object is left as the other writer left
// it).
func (c *Committer) MetadataEnvelope(ctx context.Context, obj *Object, newMeta map[string]string) (Result, error) {
	if err := checkWritable(obj, opCopy); err != nil {
		return Result{}, err
	}
	if envelope.IsInstructionFile(obj.Metadata) {
		return Result{}, obj.ref().fail(opCopy, ErrUnsupported, "rewrite it with InstructionEnvelope", "the object is an instruction file")
	}
	meta, err := c.mergeMetadata(obj, newMeta)
	if err != nil {
		return Result{}, err
	}
	if obj.Size > c.opts.MultipartThreshold {
		return c.multipartCopy(ctx, obj, meta, newMeta)
	}
	return c.selfCopy(ctx, obj, meta)
}

// checkWritable refuses what can never be written in place.
func checkWritable(obj *Object, op string) *Error {
	if obj == nil {
		return &Error{Op: op, Kind: ErrUnsupported, Err: fmt.Errorf("no object state given")}
	}
	ref := obj.ref()
	switch {
	case obj.DeleteMarker:
		return ref.fail(op, ErrUnsupported, "", "the version is a delete marker; delete markers are never written")
	case obj.Noncurrent:
		return ref.fail(op, ErrNotCurrent, "only the current version of a key can be rewrapped in place; older versions keep their wrapped key", "")
	case obj.SSECustomerAlgorithm != "":
		return ref.fail(op, ErrUnsupported, "re-encrypt it with its customer key outside rotator, or skip it",
			"the object is encrypted with SSE-C (%s) and cannot be copied without the customer key", obj.SSECustomerAlgorithm)
	case obj.ETag == "":
		return ref.fail(op, ErrUnsupported, "read the object with Head first", "no ETag was read, so the write cannot be guarded")
	}
	return nil
}

// mergeMetadata returns the user metadata the object gets: its entries that
// are no envelope fields, plus the new envelope's.
func (c *Committer) mergeMetadata(obj *Object, newMeta map[string]string) (map[string]string, error) {
	ref := obj.ref()
	fresh := make(map[string]string, len(newMeta))
	for k, v := range newMeta {
		n := strings.TrimPrefix(strings.ToLower(k), envelope.MetaPrefix)
		if !envelope.IsEnvelopeField(n) {
			return nil, ref.fail(opCheck, ErrNotRewrap, "pass only the entries of Envelope.Metadata", "%q is not an envelope field", n)
		}
		fresh[n] = v
	}
	po := envelope.ParseOptions{AllowLegacy: true, MaxMetadataBytes: -1}
	oldEnv, err := envelope.Parse(obj.Metadata, nil, po)
	if err != nil || oldEnv.Placement != envelope.PlacementMetadata {
		return nil, ref.fail(opCheck, ErrNotRewrap, "an envelope in an instruction file is committed with InstructionEnvelope",
			"the object's metadata holds no complete envelope: %v", err)
	}
	newEnv, err := envelope.Parse(fresh, nil, po)
	if err != nil {
		return nil, ref.fail(opCheck, ErrNotRewrap, "", "new envelope: %w", err)
	}
	if why := rewrapOnly(oldEnv, newEnv); why != "" {
		return nil, ref.fail(opCheck, ErrNotRewrap, "a rewrap may change only the wrapped key, wrapping algorithm and material description", "%s", why)
	}
	merged := make(map[string]string, len(obj.Metadata)+len(fresh))
	for k, v := range obj.Metadata {
		if !envelope.IsEnvelopeField(k) {
			merged[k] = v
		}
	}
	maps.Copy(merged, fresh)
	if n := envelope.MetadataSize(merged); n > c.opts.MaxMetadataBytes {
		return nil, &Error{Op: opCheck, Bucket: obj.Bucket, Key: obj.Key, VersionID: obj.VersionID,
			Kind: envelope.ErrMetadataTooLarge,
			Err:  fmt.Errorf("the user metadata would be %d bytes, S3 allows %d", n, c.opts.MaxMetadataBytes),
			Hint: "store this object's envelope in an instruction file, or remove other user metadata"}
	}
	return merged, nil
}

// rewrapOnly says what, besides the wrapping, differs between the stored
// envelope and the new one ("" if nothing).
func rewrapOnly(old, new *envelope.Envelope) string {
	switch {
	case new.Format == envelope.V1 || new.WrapAlg.Legacy():
		return fmt.Sprintf("the new envelope uses a read-only format or wrapping (%v, %s)", new.Format, new.WrapAlg)
	case old.Format != new.Format:
		return fmt.Sprintf("format changes from %v to %v (that takes re-encrypting the content)", old.Format, new.Format)
	case old.CEKAlg != new.CEKAlg:
		return fmt.Sprintf("content algorithm changes from %s to %s", old.CEKAlg, new.CEKAlg)
	case !bytes.Equal(old.IV, new.IV):
		return "the content IV changes"
	case !bytes.Equal(old.MessageID, new.MessageID):
		return "the message ID changes"
	case !bytes.Equal(old.KeyCommitment, new.KeyCommitment):
		return "the key commitment changes"
	case old.UnencryptedContentLength != new.UnencryptedContentLength:
		return fmt.Sprintf("the unencrypted content length changes from %d to %d", old.UnencryptedContentLength, new.UnencryptedContentLength)
	case old.TagLenBits != new.TagLenBits:
		return fmt.Sprintf("the tag length changes from %d to %d", old.TagLenBits, new.TagLenBits)
	}
	return ""
}

// selfCopy is the CopyObject of obj onto itself with new user metadata.
//
// The copy source is the key's current version, not obj.VersionID: with
// CopySourceIfMatch it is the same bytes, and a delete marker or another
// object put on the key since classify time fails the copy on any server.
// A copy from a pinned version id would put the old version back over
// them wherever the destination If-Match is not honoured (versitygw).
func (c *Committer) selfCopy(ctx context.Context, obj *Object, meta map[string]string) (Result, error) {
	in := &s3.CopyObjectInput{
		Bucket:            aws.String(obj.Bucket),
		Key:               aws.String(obj.Key),
		CopySource:        aws.String(copySource(obj.Bucket, obj.Key, "")),
		CopySourceIfMatch: aws.String(obj.ETag),
		MetadataDirective: types.MetadataDirectiveReplace,
		Metadata:          meta,
		TaggingDirective:  types.TaggingDirectiveCopy,
	}
	if !c.opts.NoDestinationIfMatch {
		in.IfMatch = aws.String(obj.ETag)
	}
	h := c.headersOf(obj)
	h.copyInput(in)
	out, err := c.s3.CopyObject(ctx, in, h.optFns()...)
	if err != nil {
		return Result{}, c.recheck(ctx, obj, obj.ref().classify(opCopy, err, hintCopyPerms))
	}
	res := Result{ETagBefore: obj.ETag, VersionBefore: obj.VersionID, VersionAfter: aws.ToString(out.VersionId)}
	if out.CopyObjectResult != nil {
		res.ETagAfter = aws.ToString(out.CopyObjectResult.ETag)
	}
	return res, nil
}

// recheck classifies an error that carries no precondition code by reading
// the key's current state: another ETag means someone changed the object
// (some servers check a copy range before the precondition), a missing key
// that it is gone.
func (c *Committer) recheck(ctx context.Context, obj *Object, e *Error) *Error {
	if e.Kind != nil || ctx.Err() != nil {
		return e
	}
	cur, err := c.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(obj.Bucket), Key: aws.String(obj.Key)})
	switch {
	case err != nil:
		if obj.ref().classify(opHead, err, "").Kind == ErrGone {
			e.Kind = ErrGone
		}
	case aws.ToString(cur.ETag) != obj.ETag:
		e.Kind = ErrChanged
	}
	return e
}
