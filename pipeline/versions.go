package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/ledger"
)

// Outcome codes of older versions in re-encrypt mode.
const (
	// CodeObjectLocked: Object Lock retention or a legal hold protects the
	// version: left in place, never bypassed.
	CodeObjectLocked = "ObjectLocked"
	// CodeCurrentNotDone: the key's current version is still under a
	// --from key (or unreadable): its older versions are kept until it is
	// re-encrypted.
	CodeCurrentNotDone = "CurrentVersionNotReencrypted"
)

// VersionDeleter deletes older object versions (commit.Committer).
type VersionDeleter interface {
	Lock(ctx context.Context, obj *commit.Object) (commit.Lock, error)
	DeleteVersion(ctx context.Context, obj *commit.Object) error
}

var _ VersionDeleter = (*commit.Committer)(nil)

// oldVersion handles an older version wrapped under a --from key in
// re-encrypt mode: it cannot be re-encrypted in place (S3 versions are
// immutable), so it is reported, or, with DeleteOldVersions, deleted once
// the key's current version is safe and if Object Lock allows it. Older
// versions of instruction files are not deleted: no S3 state ties one to
// the content version it described, and they hold only the old wrapped
// data key.
//
// A version is deleted only when the key's current version is readable
// and re-encrypted (the ledger says so) or under a key that is not a
// --from key. Listings give versions in no guaranteed order against the
// workers, so a version met before its current version was re-encrypted is
// reported pending; a second run deletes it.
func (c *Core) oldVersion(ctx context.Context, cl *Classification, o Outcome) (Outcome, error) {
	pending := func(code, msg string) (Outcome, error) {
		o = o.skip(code, msg)
		o.Status = StatusPending
		return o, c.observe(ctx, cl, ledger.StateCurrent, o.FromKey)
	}
	if c.Versions == nil {
		return pending(CodeNoncurrent, "an older version under a --from key: it cannot be re-encrypted in place; "+
			"once the current version is re-encrypted, delete it with --delete-old-versions (dry run first)")
	}
	o.Action = ActionDeleteVersion
	lock, err := c.Versions.Lock(ctx, cl.Obj)
	if err != nil {
		return o.fromS3Error("read the older version's Object Lock state", err), nil
	}
	if why := lockedBy(cl.Obj, lock, time.Now()); why != "" {
		return pending(CodeObjectLocked, why+": left in place (rotator never bypasses Object Lock); delete it when the lock allows")
	}
	// The key must keep a readable current version not under a --from key.
	cur, co, done := c.Classify(ctx, inventory.Item{Bucket: cl.Obj.Bucket, Key: cl.Obj.Key}, Outcome{})
	switch {
	case done:
		return pending(CodeCurrentNotDone, "the key's current version is not a re-encrypted object ("+co.ErrorCode+"): older versions are kept")
	case cur.ReencryptedBy != "":
		// Re-encrypted under a fresh data key (this run or another).
	case c.DryRun && c.wouldReencrypt(cur):
		o.Status, o.ErrorCode = StatusPending, CodeDryRun
		o.Message = "would delete this older version once the current version is re-encrypted (dry run)"
		return o, nil
	case cur.Key == "" || c.fromKeyring(cur.Key) != nil:
		return pending(CodeCurrentNotDone, "the key's current version is still under a --from key (or its key is unknown): it is re-encrypted first; run again to delete older versions")
	}
	if c.DryRun {
		o.Status, o.ErrorCode = StatusPending, CodeDryRun
		o.Message = "would delete this older version (dry run)"
		return o, nil
	}
	id := c.id(cl)
	if failed, err := c.claim(ctx, id, &o); failed {
		return o, err
	}
	ev := ledger.Event{ID: id, RunID: c.RunID, Op: ledger.OpDeleteVersion, FromKey: cl.Key, Method: "delete-version",
		ETagBefore: cl.Obj.ETag, VersionBefore: cl.Obj.VersionID, OldWrappedKeySHA256: cl.Fingerprint}
	if err := c.Ledger.Prepare(ctx, ev); err != nil {
		_ = c.Ledger.Release(context.WithoutCancel(ctx), id, c.owner())
		return o.fail(CodeLedger, err.Error()), fmt.Errorf("ledger: prepare %s: %w", id, err)
	}
	if err := c.Versions.DeleteVersion(ctx, cl.Obj); err != nil {
		_ = c.Ledger.Abandon(context.WithoutCancel(ctx), id, c.RunID, ev.Op)
		_ = c.Ledger.Release(context.WithoutCancel(ctx), id, c.owner())
		if errors.Is(err, commit.ErrAccessDenied) {
			o = o.fail(CodeAccessDenied, err.Error())
			return o, c.observe(ctx, cl, ledger.StateFailed, o.FromKey)
		}
		return o.fromS3Error("delete the older version", err), nil
	}
	return c.commitDeleted(ctx, cl, ev, o)
}

// commitDeleted records a deleted version in the ledger.
func (c *Core) commitDeleted(ctx context.Context, cl *Classification, ev ledger.Event, o Outcome) (Outcome, error) {
	id := ev.ID
	rec := ledger.Object{ID: id, State: ledger.StateDeleted, ETag: cl.Obj.ETag, RunID: ev.RunID}
	if cl.Env != nil {
		rec.Format, rec.Placement, rec.CEKAlg = cl.Env.Format.String(), cl.Placement(), string(cl.CEK)
	}
	if err := c.Ledger.Commit(context.WithoutCancel(ctx), rec, ev); err != nil {
		o = o.fail(CodeLedger, "the older version was deleted but the ledger did not record it: "+err.Error())
		return o, fmt.Errorf("ledger: commit %s: %w", id, err)
	}
	o.Status, o.ErrorCode, o.Message = StatusSucceeded, "", "deleted this older version (it was under a --from key)"
	o.Action = ActionDeleteVersion
	return o, nil
}

// reconcileDeleted finishes a delete-version event left by a crash: the
// version is gone (recorded) or still there (dropped; a later run deletes
// it).
func (c *Core) reconcileDeleted(ctx context.Context, ev ledger.Event, owner string) (string, error) {
	_, err := c.S3.Head(ctx, ev.ID.Bucket, ev.ID.Key, ev.ID.VersionID)
	switch {
	case errors.Is(err, commit.ErrGone):
		cl := &Classification{Obj: &commit.Object{Bucket: ev.ID.Bucket, Key: ev.ID.Key, VersionID: ev.ID.VersionID, ETag: ev.ETagBefore}}
		if _, err := c.commitDeleted(ctx, cl, ev, Outcome{}); err != nil {
			return "", err
		}
		return ReconcileCommitted, nil
	case err != nil:
		return "", fmt.Errorf("reconcile %s: %w", ev.ID, err)
	}
	if err := c.Ledger.Abandon(ctx, ev.ID, ev.RunID, ev.Op); err != nil {
		return "", err
	}
	_ = c.Ledger.Release(ctx, ev.ID, owner)
	return ReconcileAbandoned, nil
}

// lockedBy says what Object Lock setting protects obj now, or "".
// The HEAD response shows it only to callers allowed to read it; Lock asks.
func lockedBy(obj *commit.Object, l commit.Lock, now time.Time) string {
	if l.LegalHold || obj.ObjectLockLegalHold == types.ObjectLockLegalHoldStatusOn {
		return "legal hold ON"
	}
	mode, until := string(l.Mode), l.RetainUntil
	if mode == "" {
		mode, until = string(obj.ObjectLockMode), obj.ObjectLockRetainUntil
	}
	if mode != "" && until.After(now) {
		return fmt.Sprintf("%s retention until %s", mode, until.UTC().Format(time.RFC3339))
	}
	return ""
}

// wouldReencrypt reports whether Decide re-encrypts cl.
func (c *Core) wouldReencrypt(cl *Classification) bool {
	action, _, _ := c.Decide(cl)
	return action == ActionReencrypt
}
