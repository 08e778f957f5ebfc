package commit

import (
	"bytes"
	"context"
	"errors"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rotator-dev/rotator/envelope"
)

// ErrExists: a write that creates an object (If-None-Match: *) found one
// already there, and it is not what this write would have put.
var ErrExists = errors.New("an object already exists where a new one was to be created")

const (
	opNewInstr    = "create instruction file"
	opMove        = "move envelope to instruction file"
	opDeleteInstr = "delete instruction file"
	hintExists    = "an instruction file beside an object whose metadata holds its envelope is read by no official client, but older versions of the object may depend on it: it is left as it is; remove it yourself if it is stale, then run again"
)

// NewInstruction creates the instruction file instrKey with body (the
// second result of Envelope.InstructionFile), only if no object exists
// there (If-None-Match: *), with the user metadata the Java client marks
// instruction files with (envelope.InstructionObjectMetadata). A retry
// after a lost response finds its own file: when the object there holds
// exactly body, that is success. Any other file there is left as it is
// and the error wraps ErrExists.
func (c *Committer) NewInstruction(ctx context.Context, bucket, instrKey string, body []byte) (Result, error) {
	ref := &objRef{bucket: bucket, key: instrKey}
	if err := checkInstructionBody(body); err != nil {
		return Result{}, ref.fail(opNewInstr, ErrNotRewrap, "pass the body from Envelope.InstructionFile", "%w", err)
	}
	out, err := c.s3.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(instrKey), Body: bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))), IfNoneMatch: aws.String("*"),
		Metadata: envelope.InstructionObjectMetadata(),
	})
	if err == nil {
		return Result{ETagAfter: aws.ToString(out.ETag), VersionAfter: aws.ToString(out.VersionId)}, nil
	}
	e := ref.classify(opNewInstr, err, hintInstrPerms)
	if e.Kind != ErrChanged {
		return Result{}, e
	}
	cur, got, rerr := c.ReadInstruction(ctx, bucket, instrKey, "")
	switch {
	case rerr != nil:
		return Result{}, e // no evidence either way
	case bytes.Equal(got, body):
		return Result{ETagAfter: cur.ETag, VersionAfter: cur.VersionID}, nil
	}
	return Result{}, ref.fail(opNewInstr, ErrExists, hintExists, "%s exists and holds another envelope", instrKey)
}

// DropEnvelope removes the envelope from the metadata of obj (the object
// as read at classify time), once its instruction file holds it: a copy
// onto itself, as MetadataEnvelope makes, whose user metadata is obj's
// entries that are no envelope fields plus objectSide, the first result
// of Envelope.InstructionFile (V3: x-amz-c, x-amz-d and x-amz-i stay on
// the object, as the format requires; V2: nothing). Each objectSide entry
// must already be on obj with the same value (ErrNotRewrap): the content
// is not touched. The copy is guarded by obj's ETag (ErrChanged).
func (c *Committer) DropEnvelope(ctx context.Context, obj *Object, objectSide map[string]string) (Result, error) {
	if err := checkWritable(obj, opMove); err != nil {
		return Result{}, err
	}
	ref := obj.ref()
	if envelope.IsInstructionFile(obj.Metadata) {
		return Result{}, ref.fail(opMove, ErrUnsupported, "", "the object is an instruction file")
	}
	old, err := envelope.Parse(obj.Metadata, nil, envelope.ParseOptions{AllowLegacy: true, MaxMetadataBytes: -1})
	if err != nil || old.Placement != envelope.PlacementMetadata {
		return Result{}, ref.fail(opMove, ErrNotRewrap, "only an envelope in the object's metadata can be moved", "the metadata holds no complete envelope: %v", err)
	}
	if err := CheckObjectSide(obj, objectSide); err != nil {
		return Result{}, err
	}
	meta := make(map[string]string, len(obj.Metadata))
	for k, v := range obj.Metadata {
		if !envelope.IsEnvelopeField(k) {
			meta[k] = v
		}
	}
	for k, v := range objectSide {
		meta[strings.TrimPrefix(strings.ToLower(k), envelope.MetaPrefix)] = v
	}
	if obj.Size > c.opts.MultipartThreshold {
		// No envelope to recognise a lost completion by: the caller
		// settles it from the object read back.
		return c.multipartCopy(ctx, obj, meta, nil)
	}
	return c.selfCopy(ctx, obj, meta)
}

// DeleteInstruction deletes the instruction file instr (as read by
// ReadInstruction) only if it still has the ETag read (If-Match; a server
// that ignores the header deletes it unconditionally). It is for a file a
// move created whose copy did not land: no reader uses it (the object's
// metadata holds the envelope). A file already gone is no error.
func (c *Committer) DeleteInstruction(ctx context.Context, instr *Object) error {
	ref := instr.ref()
	if instr.ETag == "" {
		return ref.fail(opDeleteInstr, ErrUnsupported, "read the instruction file first", "no ETag was read, so the deletion cannot be guarded")
	}
	_, err := c.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(instr.Bucket), Key: aws.String(instr.Key), IfMatch: aws.String(instr.ETag)})
	if err != nil {
		e := ref.classify(opDeleteInstr, err, "deleting an instruction file a move left needs s3:DeleteObject on it")
		if errors.Is(e, ErrGone) {
			return nil
		}
		return e
	}
	return nil
}
