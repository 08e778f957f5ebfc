package reencrypt

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/gcmstream"
	"github.com/rotator-dev/rotator/rewrap"
)

// Content is what an object holds, as far as an intent is concerned.
type Content int

// Contents.
const (
	// ContentOld: the object is the version the intent re-encrypts (same
	// ETag, version id and size): the new content did not land.
	ContentOld Content = iota
	// ContentNew: the object holds the intent's new content.
	ContentNew
	// ContentOther: neither; someone else wrote the object.
	ContentOther
)

func (c Content) String() string {
	switch c {
	case ContentOld:
		return "old content"
	case ContentNew:
		return "new content"
	}
	return "someone else's content"
}

// Content finds out, from positive evidence only, what cur (the key's
// current version, as read now) holds: the intent's new content, the
// version the intent started from, or neither. Evidence, in order: the new
// wrapped key in the metadata (metadata envelopes); the V3 message id the
// new content carries (x-amz-i); the ETag the completed upload must have
// (computed from the parts' MD5s); the source's ETag, version id and size
// (the content did not land); and last, reading cur and checking its tag
// under the new data key, which to must unwrap. An error means no evidence
// either way: keep the intent.
func (e *Engine) Content(ctx context.Context, in *Intent, cur *commit.Object, to rewrap.Unwrapper) (Content, error) {
	e.init()
	ck := in.ck
	if !ck.Instruction {
		w, err := envelope.WrappedKeyOf(cur.Metadata, nil)
		switch {
		case err == nil && bytes.Equal(w, in.NewEnv.WrappedKey):
			return ContentNew, nil
		case isSource(ck, cur):
			return ContentOld, nil
		}
		return ContentOther, nil
	}
	if id := in.NewEnv.MessageID; len(id) > 0 {
		if v, ok := metaValue(cur.Metadata, envelope.FieldV3MessageID); ok && v == b64(id) {
			return ContentNew, nil
		}
	}
	if ck.ExpectedETag != "" && cur.ETag == ck.ExpectedETag {
		return ContentNew, nil
	}
	if isSource(ck, cur) {
		return ContentOld, nil
	}
	if to == nil {
		return 0, fmt.Errorf("cannot tell whether s3://%s/%s holds the re-encrypted content without the key %s", cur.Bucket, cur.Key, ck.ToKey)
	}
	r := &run{e: e, job: Job{Obj: cur, To: rewrapKeyring{to}}, ck: ck}
	defer r.close()
	if err := r.openNew(ctx, ck.NewEnvelope); err != nil {
		return 0, err
	}
	switch err := r.authenticates(ctx, cur, r.new); {
	case err == nil:
		return ContentNew, nil
	case errors.Is(err, ErrAuthentication):
		return ContentOther, nil
	default:
		return 0, err
	}
}

// isSource reports whether cur is the version ck started from.
func isSource(ck *checkpoint, cur *commit.Object) bool {
	return cur.ETag == ck.SourceETag && cur.Size == ck.Size && (cur.VersionID == ck.SourceVersion || ck.SourceVersion == "")
}

func metaValue(meta map[string]string, name string) (string, bool) {
	for k, v := range meta {
		if strings.TrimPrefix(strings.ToLower(k), envelope.MetaPrefix) == name {
			return v, true
		}
	}
	return "", false
}

// rewrapKeyring lets an Unwrapper stand for the keyring Job.To needs when
// only unwrapping.
type rewrapKeyring struct{ rewrap.Unwrapper }

func (rewrapKeyring) ID() string { return "" }

func (rewrapKeyring) Kind() rewrap.Kind { return 0 }

func (rewrapKeyring) Wrap(context.Context, *envelope.DataKey, envelope.ContentAlg, map[string]string) (rewrap.Wrapped, error) {
	return rewrap.Wrapped{}, errors.New("reencrypt: this keyring only unwraps")
}

// authenticates reads obj (its current state) in parts and checks that its
// content is a message of s with a valid tag. No plaintext is produced.
// It holds one buffer of the memory budget at a time.
func (r *run) authenticates(ctx context.Context, obj *commit.Object, s *gcmstream.Stream) error {
	if obj.Size < tagSize {
		return ErrAuthentication
	}
	n := obj.Size - tagSize
	ps := r.e.partSize(n)
	h := s.NewHasher()
	for off := int64(0); off < n; off += ps {
		ln := min(ps, n-off)
		buf, release, err := r.buffer(ctx, ln)
		if err != nil {
			return err
		}
		err = r.e.get(ctx, obj, buf, off)
		if err == nil {
			_, err = h.Write(buf)
		}
		release()
		if err != nil {
			return err
		}
	}
	tag := make([]byte, tagSize)
	if err := r.e.get(ctx, obj, tag, n); err != nil {
		return err
	}
	if err := h.Verify(tag); err != nil {
		return fmt.Errorf("%w: %v", ErrAuthentication, err)
	}
	return nil
}

// uploadSkew is how much earlier than an intent's start (by this
// process's clock) S3 may date an upload the intent created.
const uploadSkew = 5 * time.Second

// Abort gives an intent up on the key bucket/key: it aborts the intent's
// multipart upload and any other upload on the key created since the
// intent began (a CreateMultipartUpload whose response was lost, retried
// by the SDK, leaves one nobody knows the id of). After Abort returns, no
// completion of the intent can land any more.
func (e *Engine) Abort(ctx context.Context, in *Intent, bucket, key string) error {
	return e.abortUploads(ctx, in, bucket, key, "")
}

// Orphans aborts the uploads on bucket/key created since the intent began
// other than the intent's own (see Abort). Call it once the intent's
// content landed.
func (e *Engine) Orphans(ctx context.Context, in *Intent, bucket, key string) error {
	if !in.ck.Multipart {
		return nil
	}
	return e.abortUploads(ctx, in, bucket, key, in.ck.UploadID)
}

func (e *Engine) abortUploads(ctx context.Context, in *Intent, bucket, key, keep string) error {
	ref := &commit.Object{Bucket: bucket, Key: key}
	var errs []error
	if id := in.ck.UploadID; id != "" && id != keep {
		errs = append(errs, e.Writer.AbortUpload(ctx, ref, id))
	}
	if !in.ck.Multipart {
		return errors.Join(errs...)
	}
	ups, err := e.Writer.ListUploads(ctx, bucket, key)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	since := time.UnixMilli(in.ck.Created).Add(-uploadSkew)
	for _, u := range ups {
		if u.ID == keep || u.ID == in.ck.UploadID || u.Initiated.Before(since) {
			continue
		}
		errs = append(errs, e.Writer.AbortUpload(ctx, ref, u.ID))
	}
	return errors.Join(errs...)
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
