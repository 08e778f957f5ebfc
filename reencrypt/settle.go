package reencrypt

import (
	"context"
	"errors"
	"fmt"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/rewrap"
)

// Leftover is a checkpoint still in the ledger when a run ends, with the
// object as it is now.
type Leftover struct {
	Upload ledger.Upload
	// Current is the object's current version (nil: the object is gone);
	// CurrentWrappedKey the wrapped data key its envelope holds now (nil:
	// none could be read).
	Current           *commit.Object
	CurrentWrappedKey []byte
	// Instruction is set when the object's envelope lives in an
	// instruction file.
	Instruction bool
	// To unwraps the checkpoint's new data key, to recognise new content
	// that landed without being recorded.
	To rewrap.Keyring
}

// Settle outcomes.
const (
	// SettleFinished: the object holds the checkpoint's new envelope; the
	// checkpoint was dropped.
	SettleFinished = "finished"
	// SettleAborted: the new content never landed; the upload was aborted
	// and the checkpoint dropped. The object is as it was (or as someone
	// else made it).
	SettleAborted = "aborted"
	// SettleKept: the new content landed but the instruction file still
	// holds the old envelope; the checkpoint holds the only copy of the
	// new one and was kept ('rotator resume' writes it).
	SettleKept = "kept"
)

// Settle gives up a leftover checkpoint: its multipart upload is aborted
// (an upload that completed, or no longer exists, needs nothing) and the
// checkpoint dropped, unless the object's new content landed while its
// instruction file was not written yet. Nothing in the object is changed.
func (e *Engine) Settle(ctx context.Context, lo Leftover) (string, error) {
	e.init()
	u := lo.Upload
	ck, err := unmarshalCheckpoint(u.State)
	if err != nil {
		return SettleKept, fmt.Errorf("ledger: the checkpoint of %s is unreadable, left in place (run %s): %w", u.ID, u.RunID, err)
	}
	if u.UploadID != "" {
		ref := &commit.Object{Bucket: u.ID.Bucket, Key: u.ID.Key, VersionID: u.ID.VersionID}
		if err := e.Writer.AbortUpload(ctx, ref, u.UploadID); err != nil {
			return "", err
		}
	}
	outcome := SettleAborted
	newEnv, err := envelope.Parse(ck.NewEnvelope, nil, envelope.ParseOptions{MaxMetadataBytes: -1})
	if err != nil {
		return SettleKept, fmt.Errorf("ledger: the checkpoint of %s holds an unreadable envelope, left in place (run %s): %w", u.ID, u.RunID, err)
	}
	cur := lo.Current
	switch {
	case cur == nil:
		// Gone: nothing to finish.
	case lo.CurrentWrappedKey != nil && string(lo.CurrentWrappedKey) == string(newEnv.WrappedKey):
		outcome = SettleFinished
	case cur.ETag == ck.SourceETag:
		// Unchanged: the upload never completed.
	case lo.Instruction:
		landed := ck.Completed && cur.ETag == ck.ETagAfter
		if !landed {
			landed, err = e.ownContent(ctx, cur, ck, lo.To, u.RunID)
			if err != nil {
				return "", err
			}
		}
		if landed {
			return SettleKept, nil
		}
	}
	if err := e.Checkpoints.DeleteUpload(context.WithoutCancel(ctx), u.RunID, u.ID); err != nil {
		return "", fmt.Errorf("ledger: drop the checkpoint of %s: %w", u.ID, err)
	}
	return outcome, nil
}

// ownContent reports whether obj's content authenticates under the
// checkpoint's new content key.
func (e *Engine) ownContent(ctx context.Context, obj *commit.Object, ck *checkpoint, to rewrap.Keyring, runID string) (bool, error) {
	if to == nil || to.ID() != ck.ToKey {
		// Cannot tell without the key: keep it to be safe.
		return true, nil
	}
	r := &run{e: e, job: Job{Obj: obj, To: to}}
	defer r.close()
	if err := r.openNew(ctx, ck.NewEnvelope); err != nil {
		return false, fmt.Errorf("settle the checkpoint of %s/%s (run %s): %w", obj.Bucket, obj.Key, runID, err)
	}
	switch err := r.authenticates(ctx, obj, r.new); {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrAuthentication):
		return false, nil // someone else's content
	default:
		return false, err
	}
}
