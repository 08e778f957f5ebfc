package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/sync/errgroup"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/escrow"
	"github.com/rotator-dev/rotator/gcmstream"
	"github.com/rotator-dev/rotator/internal/awsx"
	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/rewrap"
)

// Verify outcome codes.
const (
	CodeWrongKey   = "NotUnderKey"
	CodeBadTag     = "AuthenticationFailed"
	CodeLegacyBody = "LegacyContent"
)

// Getter reads object bodies.
type Getter interface {
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

// Verifier checks that objects open under a key: it unwraps each data key
// with Key and decrypts the body, checking the authentication tag, exactly
// as a reader would; so an old key is retired only after its objects are
// proven readable under the new one. Bodies are streamed through the GCM
// authentication (gcmstream.Hasher) in chunks: memory stays flat whatever
// the object size, and no plaintext is produced at all (AES-GCM decryption
// cannot fail once the tag verifies).
type Verifier struct {
	Core   *Core // its S3 reads the envelopes (Classify)
	Bodies Getter
	Key    rewrap.Keyring
	// Escrow: open each object through its escrow file alone (verify
	// --escrow): the data key is unwrapped with Key from the escrow file
	// (named by Core.EscrowSuffix), never from the object's envelope.
	Escrow bool
}

// VerifyObject checks one object. Status succeeded: it opened under Key with
// a valid tag; failed: it did not (the code says why); skipped: not
// encrypted or a delete marker.
func (v *Verifier) VerifyObject(ctx context.Context, it inventory.Item) (Outcome, error) {
	o := Outcome{Bucket: it.Bucket, Key: it.Key, VersionID: it.VersionID, Action: "verify"}
	if it.DeleteMarker {
		return o.skip(CodeDeleteMarker, "delete marker"), nil
	}
	cl, o, done := v.Core.Classify(ctx, it, o)
	if done {
		return o, nil
	}
	o.FromKey = v.Key.ID()
	if cl.CEK.Legacy() {
		return o.fail(CodeLegacyBody, "AES/CBC content carries no authentication tag: re-encrypt it to V2 or V3"), nil
	}
	w := cl.Wrapped
	if v.Escrow {
		o.Action = "verify-escrow"
		ew, eo, ok := v.escrowWrapped(ctx, cl, o)
		if !ok {
			return eo, nil
		}
		w = ew
	}
	dek, err := v.Key.Unwrap(ctx, w, cl.CEK)
	if err != nil {
		var re *rewrap.Error
		if errors.As(err, &re) {
			if rewrap.IsSystemic(err) {
				return o.fail(re.Code, err.Error()), err
			}
			return o.fail(CodeWrongKey, "does not open under "+v.Key.ID()+": "+err.Error()), nil
		}
		return o.fail(CodeWrongKey, err.Error()), nil
	}
	defer dek.Clear()
	vid := cl.Obj.VersionID
	in := &s3.GetObjectInput{Bucket: &cl.Obj.Bucket, Key: &cl.Obj.Key, IfMatch: &cl.Obj.ETag}
	if vid != "" {
		in.VersionId = &vid
	}
	out, err := awsx.GetObject(ctx, v.Bodies, in)
	if err != nil {
		return o.fromS3Error("read the body", commit.ReadError("get body", cl.Obj.Bucket, cl.Obj.Key, vid, err)), nil
	}
	defer out.Body.Close()
	if err := checkTag(cl.Env, dek, out.Body, cl.Obj.Size); err != nil {
		var re *bodyReadError
		if errors.As(err, &re) {
			return o.fromS3Error("read the body", commit.ReadError("get body", cl.Obj.Bucket, cl.Obj.Key, vid, re.err)), nil
		}
		if v.Escrow {
			return o.fail(CodeEscrowMismatch, "the escrowed data key does not open the object (a stale escrow file, or one written by someone else): "+err.Error()), nil
		}
		return o.fail(CodeBadTag, "the body does not authenticate under the data key: "+err.Error()), nil
	}
	o.Status, o.Message = StatusSucceeded, "opens under the key; tag verified"
	return o, nil
}

// escrowWrapped reads the object's escrow file: the wrapping to unwrap, or
// the outcome when there is none or it does not describe the object.
func (v *Verifier) escrowWrapped(ctx context.Context, cl *Classification, o Outcome) (rewrap.Wrapped, Outcome, bool) {
	ekey := escrow.Key(cl.Obj.Key, v.Core.escrowSuffix())
	_, body, err := v.Core.S3.ReadInstruction(ctx, cl.Obj.Bucket, ekey, "")
	if errors.Is(err, commit.ErrGone) {
		return rewrap.Wrapped{}, o.fail(CodeNoEscrow, "no escrow file "+ekey+": the object is not recoverable without its primary key (run 'rotator escrow')"), false
	}
	if err != nil {
		return rewrap.Wrapped{}, o.fromS3Error("read the escrow file "+ekey, err), false
	}
	e, err := escrow.Parse(cl.Env, body)
	if err != nil {
		return rewrap.Wrapped{}, o.fail(CodeEscrowMismatch, err.Error()), false
	}
	w := escrow.Wrapped(e)
	return rewrap.Wrapped{Alg: w.Alg, Key: w.Key, MatDesc: w.MatDesc}, o, true
}

// Verify checks sample items of src chosen uniformly at random (all of
// them when sample <= 0), workers at a time, and reports each outcome.
// Memory holds at most sample items.
func (v *Verifier) Verify(ctx context.Context, src inventory.Source, sample, workers int, report func(Outcome)) error {
	if workers <= 0 {
		workers = DefaultWorkers
	}
	g, gctx := errgroup.WithContext(ctx)
	items := make(chan inventory.Item, workers)
	if sample > 0 {
		// Reservoir sampling: one pass, sample items in memory.
		var res []inventory.Item
		seen := 0
		err := src.Stream(ctx, func(it inventory.Item) error {
			if it.DeleteMarker {
				return nil
			}
			seen++
			if len(res) < sample {
				res = append(res, it)
			} else if j := rand.IntN(seen); j < sample {
				res[j] = it
			}
			return nil
		})
		if err != nil {
			return err
		}
		g.Go(func() error {
			defer close(items)
			for _, it := range res {
				select {
				case items <- it:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
			return nil
		})
	} else {
		g.Go(func() error { return inventory.Send(gctx, src, items) })
	}
	var mu sync.Mutex
	for w := 0; w < workers; w++ {
		g.Go(func() error {
			for it := range items {
				o, err := v.VerifyObject(gctx, it)
				if err != nil {
					return err
				}
				mu.Lock()
				report(o)
				mu.Unlock()
			}
			return nil
		})
	}
	return g.Wait()
}

// verifyChunk is the size of the body reads of a verification.
const verifyChunk = 1 << 20

// checkTag streams an AES-GCM body (ciphertext then 16-byte tag) through
// the GCM authentication under the envelope's content key.
func checkTag(env *envelope.Envelope, dek *envelope.DataKey, body io.Reader, size int64) error {
	if size < gcmstream.TagSize {
		return fmt.Errorf("%d bytes: shorter than the %d-byte tag", size, gcmstream.TagSize)
	}
	key, err := env.ContentKey(dek)
	if err != nil {
		return err
	}
	defer key.Clear()
	st, err := gcmstream.New(key.Bytes(), env.ContentIV(), env.ContentAAD())
	if err != nil {
		return err
	}
	defer st.Close()
	h := st.NewHasher()
	buf := make([]byte, verifyChunk)
	for left := size - gcmstream.TagSize; left > 0; {
		n := int(min(left, verifyChunk))
		if _, err := io.ReadFull(body, buf[:n]); err != nil {
			return &bodyReadError{err}
		}
		if _, err := h.Write(buf[:n]); err != nil {
			return err
		}
		left -= int64(n)
	}
	tag := make([]byte, gcmstream.TagSize)
	if _, err := io.ReadFull(body, tag); err != nil {
		return &bodyReadError{err}
	}
	return h.Verify(tag)
}

// bodyReadError is checkTag's failure to read the body, which says
// nothing of its tag: it is reported as the S3 read error it is, not as
// a body that does not authenticate.
type bodyReadError struct{ err error }

func (e *bodyReadError) Error() string { return "read the body: " + e.err.Error() }
func (e *bodyReadError) Unwrap() error { return e.err }
