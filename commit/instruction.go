package commit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/rotator-dev/rotator/envelope"
)

const hintInstrPerms = "rewriting an instruction file needs s3:GetObject, s3:PutObject, s3:GetObjectTagging and s3:PutObjectTagging on it"

// ReadInstruction reads an instruction file in one GET: its state (to guard
// the later rewrite with WriteInstruction) and its body, at most
// envelope.DefaultMaxInstructionFileBytes. versionID "" reads the current
// version.
func (c *Committer) ReadInstruction(ctx context.Context, bucket, instrKey, versionID string) (*Object, []byte, error) {
	ref := &objRef{bucket: bucket, key: instrKey, versionID: versionID}
	in := &s3.GetObjectInput{Bucket: &bucket, Key: &instrKey, VersionId: optString(versionID), ChecksumMode: types.ChecksumModeEnabled}
	out, err := c.s3.GetObject(ctx, in)
	if code, _ := apiCode(err); code == codeAccessDenied || code == codeForbidden {
		in.ChecksumMode = ""
		out, err = c.s3.GetObject(ctx, in)
	}
	if err != nil {
		return nil, nil, ref.classify(opGetInstr, err, hintInstrPerms)
	}
	defer out.Body.Close()
	const limit = envelope.DefaultMaxInstructionFileBytes
	body, err := io.ReadAll(io.LimitReader(out.Body, limit+1))
	if err != nil {
		return nil, nil, ref.fail(opGetInstr, nil, "", "read body: %w", err)
	}
	if len(body) > limit {
		return nil, nil, ref.fail(opGetInstr, envelope.ErrMetadataTooLarge, "", "instruction file is larger than %d bytes", limit)
	}
	obj := objectFromHead(bucket, instrKey, headFromGet(out))
	if obj.VersionID == "" {
		obj.VersionID = versionID
	}
	return obj, body, nil
}

// InstructionEnvelope rewrites the instruction file instrKey with body (the
// new envelope as JSON, the second result of Envelope.InstructionFile),
// only if the file still has etag, the ETag read at classify time
// (otherwise ErrChanged). instrMeta is the file's own user metadata as read
// at classify time (for the Java client's files x-amz-crypto-instr-file);
// nil keeps what S3 reports now. Content type and the other system headers
// and tags of the file are kept: they are read with a HEAD guarded by the
// same ETag, which costs one request more than WriteInstruction.
//
// The encrypted object is not written: see CheckObjectSide.
func (c *Committer) InstructionEnvelope(ctx context.Context, bucket, instrKey, etag string, body []byte, instrMeta map[string]string) (Result, error) {
	ref := &objRef{bucket: bucket, key: instrKey}
	if etag == "" {
		return Result{}, ref.fail(opPutInstr, ErrUnsupported, "read the instruction file first", "no ETag was read, so the write cannot be guarded")
	}
	out, err := c.headObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &instrKey, IfMatch: &etag})
	if err != nil {
		return Result{}, ref.classify(opPutInstr, err, hintInstrPerms)
	}
	instr := objectFromHead(bucket, instrKey, out)
	instr.ETag = etag
	if instrMeta != nil {
		instr.Metadata = maps.Clone(instrMeta)
	}
	return c.WriteInstruction(ctx, instr, body)
}

// WriteInstruction rewrites the instruction file instr (as read by
// ReadInstruction or Head) with body, guarded by If-Match on instr.ETag,
// keeping its user metadata, system headers and tags.
func (c *Committer) WriteInstruction(ctx context.Context, instr *Object, body []byte) (Result, error) {
	if err := checkWritable(instr, opPutInstr); err != nil {
		return Result{}, err
	}
	ref := instr.ref()
	if err := checkInstructionBody(body); err != nil {
		return Result{}, ref.fail(opPutInstr, ErrNotRewrap, "pass the body from Envelope.InstructionFile", "%w", err)
	}
	// Tags are read even when HEAD reported none: S3 leaves the count out
	// when the caller may not read tags, and PutObject would drop them.
	tags, err := c.Tags(ctx, instr.Bucket, instr.Key, "")
	if err != nil {
		return Result{}, err
	}
	in := &s3.PutObjectInput{
		Bucket:        aws.String(instr.Bucket),
		Key:           aws.String(instr.Key),
		Body:          bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))),
		IfMatch:       aws.String(instr.ETag),
		Metadata:      instr.Metadata,
		Tagging:       encodeTags(tags),
	}
	h := c.headersOf(instr)
	h.putInput(in)
	out, err := c.s3.PutObject(ctx, in, h.optFns()...)
	if err != nil {
		e := ref.classify(opPutInstr, err, hintInstrPerms)
		if e.Kind == ErrChanged {
			// A PutObject retried after a lost response fails against our
			// own new ETag: check whether the file already holds body.
			if cur, ok := c.instructionLanded(ctx, instr, body); ok {
				return Result{ETagBefore: instr.ETag, VersionBefore: instr.VersionID, ETagAfter: cur.ETag, VersionAfter: cur.VersionID}, nil
			}
		}
		return Result{}, e
	}
	return Result{ETagBefore: instr.ETag, VersionBefore: instr.VersionID,
		ETagAfter: aws.ToString(out.ETag), VersionAfter: aws.ToString(out.VersionId)}, nil
}

func (c *Committer) instructionLanded(ctx context.Context, instr *Object, body []byte) (*Object, bool) {
	cur, got, err := c.ReadInstruction(ctx, instr.Bucket, instr.Key, "")
	if err != nil || !bytes.Equal(got, body) {
		return nil, false
	}
	return cur, true
}

// checkInstructionBody checks that body is a JSON object holding a wrapped
// key, the least an instruction file needs.
func checkInstructionBody(body []byte) error {
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		return fmt.Errorf("new instruction file is not a JSON object: %v", err)
	}
	for _, k := range []string{envelope.FieldV3Key, envelope.FieldKeyV2} {
		if _, ok := m[k]; ok {
			return nil
		}
	}
	return fmt.Errorf("new instruction file holds no wrapped key (%s or %s)", envelope.FieldV3Key, envelope.FieldKeyV2)
}

// CheckObjectSide verifies that a rewrap stored in an instruction file needs
// no write to the encrypted object itself: obj is the object as read at
// classify time, objectSide the first result of
// Envelope.InstructionFile for the new envelope (V3: x-amz-c, x-amz-d,
// x-amz-i; nothing for V2). Each entry must already be on the object with
// the same value; otherwise the error wraps ErrNotRewrap.
func CheckObjectSide(obj *Object, objectSide map[string]string) error {
	have := make(map[string]string, len(obj.Metadata))
	for k, v := range obj.Metadata {
		have[strings.TrimPrefix(strings.ToLower(k), envelope.MetaPrefix)] = v
	}
	for k, want := range objectSide {
		n := strings.TrimPrefix(strings.ToLower(k), envelope.MetaPrefix)
		got, ok := have[n]
		if !ok || got != want {
			return obj.ref().fail(opCheckObject, ErrNotRewrap,
				"a rewrap never changes x-amz-c, x-amz-d or x-amz-i; the object would need re-encrypting",
				"the object's %s is %q, the new envelope needs %q", n, got, want)
		}
	}
	return nil
}

// CreateInstruction writes a new instruction file (an escrow file) at
// instrKey with body and the Java client's marker metadata
// (envelope.InstructionObjectMetadata), only if no object exists there
// (If-None-Match: *; otherwise ErrChanged: read it and rewrite it with
// WriteInstruction). A retried PutObject whose first attempt landed fails
// its condition against itself: the file read back holding body is then
// success.
func (c *Committer) CreateInstruction(ctx context.Context, bucket, instrKey string, body []byte) (Result, error) {
	ref := &objRef{bucket: bucket, key: instrKey}
	if err := checkInstructionBody(body); err != nil {
		return Result{}, ref.fail(opPutInstr, ErrNotRewrap, "pass the body from Envelope.InstructionFile", "%w", err)
	}
	in := &s3.PutObjectInput{
		Bucket:        aws.String(bucket),
		Key:           aws.String(instrKey),
		Body:          bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))),
		IfNoneMatch:   aws.String("*"),
		Metadata:      envelope.InstructionObjectMetadata(),
	}
	out, err := c.s3.PutObject(ctx, in)
	if err != nil {
		e := ref.classify(opPutInstr, err, hintInstrPerms)
		if e.Kind == ErrChanged {
			if cur, ok := c.instructionLanded(ctx, &Object{Bucket: bucket, Key: instrKey}, body); ok {
				return Result{ETagAfter: cur.ETag, VersionAfter: cur.VersionID}, nil
			}
		}
		return Result{}, e
	}
	return Result{ETagAfter: aws.ToString(out.ETag), VersionAfter: aws.ToString(out.VersionId)}, nil
}
