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
	"github.com/rotator-dev/rotator/rewrap"
)

// VersionDeleter reads and deletes older object versions
// (commit.Committer).
type VersionDeleter interface {
	Lock(ctx context.Context, obj *commit.Object) (commit.Lock, error)
	DeleteVersion(ctx context.Context, obj *commit.Object) error
	Versions(ctx context.Context, bucket, key string) ([]commit.Version, error)
}

var _ VersionDeleter = (*commit.Committer)(nil)

// Older versions in re-encrypt mode. S3 versions are immutable: an older
// version under a --from key keeps the exposed data key until it is
// deleted, and re-encrypting a key's current version makes that version
// an older one too. With --delete-old-versions (Versions set), the worker
// that finishes a key's current version (re-encrypted now, or found
// re-encrypted) lists the key's versions and deletes every older one
// under a --from key that Object Lock does not protect, each through the
// commit protocol and with a report row of its own: one run closes the
// incident. An older version met in the listing is left to that worker,
// unless its key's current version is already safe (then it is deleted
// where it is met) or not an encrypted object at all (then it is kept and
// reported). Older versions of instruction files are not deleted: no S3
// state ties one to the content version it described, and they hold only
// the old wrapped data key.

// olderVersion handles an older version under a --from key (or under an
// unknown key) met in the listing, in re-encrypt mode.
func (c *Core) olderVersion(ctx context.Context, cl *Classification, o Outcome) (Outcome, error) {
	o.Action = ActionDeleteVersion
	if c.Versions == nil {
		o = o.pending(CodeNoncurrent, "an older version under a --from key: it cannot be re-encrypted in place; "+
			"once the current version is re-encrypted, delete it with --delete-old-versions (dry run first)")
		return o, c.observe(ctx, cl, ledger.StateCurrent, o.FromKey)
	}
	cur, co, done := c.Classify(ctx, inventory.Item{Bucket: cl.Obj.Bucket, Key: cl.Obj.Key}, Outcome{})
	switch {
	case done && co.ErrorCode != CodeNotEncrypted && co.ErrorCode != CodeDeleteMarker && co.ErrorCode != CodeGone:
		return o.pending(CodeCurrentNotDone, "the key's current version could not be read ("+co.ErrorCode+"): older versions are kept"), nil
	case done:
		return o.pending(CodeCurrentNotDone, "the key's current version is not an encrypted object ("+co.ErrorCode+"): older versions are kept"), nil
	case cur.ReencryptedBy == "" && (cur.Key == "" || c.fromKeyring(cur.Key) != nil), cl.Instr != nil:
		return o.skip(CodeWithCurrent, "left to the worker of the key's current version, which deletes (or reports) it once that version is re-encrypted (see its rows)"), nil
	}
	return c.deleteIfFrom(ctx, cl, o)
}

// deleteIfFrom deletes an older version once it is known to be under a
// --from key: from its own envelope (the key recognised, recorded, or
// found by unwrapping it with the --from keys). An older version whose
// envelope lives in an instruction file cannot be told: S3 does not tie
// an instruction file's versions to its object's.
func (c *Core) deleteIfFrom(ctx context.Context, cl *Classification, o Outcome) (Outcome, error) {
	o.Action = ActionDeleteVersion
	if cl.Instr != nil {
		return o.pending(CodeInstructionVersion, "an older version of an object whose envelope lives in an instruction file: "+
			"which key wraps its data key cannot be told (S3 versions instruction files apart from their objects); "+
			"it is kept: find its instruction file's version and delete both by hand if they are under a --from key"), nil
	}
	if cl.Key == "" {
		k, err := c.keyByUnwrap(ctx, cl)
		switch {
		case errors.Is(err, errDryRun):
			// A dry run asks no key backend: say what would happen if
			// the version is under a --from key.
			row, err := c.deleteOlder(ctx, cl, o)
			row.Message += " if it is under a --from key"
			return row, err
		case err != nil:
			row, _ := o.fromError("find which key wraps the older version's data key", err)
			return row, nil
		}
		cl.Key = k
	}
	if cl.Key == "" || c.fromKeyring(cl.Key) == nil {
		return o.skip(CodeNotFromKey, "an older version not under a --from key: kept"), nil
	}
	o.FromKey = cl.Key
	return c.deleteOlder(ctx, cl, o)
}

// sweepVersions deletes, once a key's current version is re-encrypted
// (replaced is its classification before, whose version is now an older
// one) or was found re-encrypted (replaced nil), the key's older versions
// under a --from key; each deletion (or refusal) is a row of its own in
// o.Also.
func (c *Core) sweepVersions(ctx context.Context, cur, replaced *Classification, o Outcome) (Outcome, error) {
	if cur.Obj.VersionID == "" || cur.Obj.VersionID == "null" {
		return o, nil
	}
	vs, err := c.Versions.Versions(ctx, cur.Obj.Bucket, cur.Obj.Key)
	if err != nil {
		row, systemic := Outcome{Bucket: cur.Obj.Bucket, Key: cur.Obj.Key, Action: ActionDeleteVersion}.fromError("list the key's older versions", err)
		o.Also = append(o.Also, row)
		if systemic {
			return o, err
		}
		return o, nil
	}
	for _, v := range vs {
		if replaced != nil && v.IsLatest && v.VersionID == replaced.Obj.VersionID {
			// Still current: a dry run, which says it would delete the
			// version its re-encryption replaces.
			vo := Outcome{Bucket: cur.Obj.Bucket, Key: cur.Obj.Key, VersionID: v.VersionID, Action: ActionDeleteVersion, FromKey: replaced.Key}
			row, err := c.deleteOlder(ctx, replaced, vo)
			if row.ErrorCode == CodeDryRun {
				row.Message = "would delete this version once it is re-encrypted (dry run)"
				o.Also = append(o.Also, row)
			}
			if err != nil {
				return o, err
			}
			continue
		}
		if v.IsLatest || v.DeleteMarker {
			continue
		}
		it := inventory.Item{Bucket: cur.Obj.Bucket, Key: cur.Obj.Key, VersionID: v.VersionID}
		vo := Outcome{Bucket: it.Bucket, Key: it.Key, VersionID: it.VersionID, Action: ActionDeleteVersion}
		var row Outcome
		var err error
		if replaced != nil && v.VersionID == replaced.Obj.VersionID {
			// The version this run just re-encrypted: its envelope and key
			// are known (its data key was unwrapped with a --from key).
			vo.FromKey = replaced.Key
			row, err = c.deleteOlder(ctx, replaced, vo)
		} else {
			vcl, vo2, done := c.Classify(ctx, it, vo)
			if done {
				if vo2.Status == StatusFailed {
					o.Also = append(o.Also, vo2)
				}
				continue
			}
			if vcl.Key != "" && !c.selected(vcl.Key) {
				continue // not the incident's
			}
			row, err = c.deleteIfFrom(ctx, vcl, vo2)
			if row.ErrorCode == CodeNotFromKey {
				continue
			}
		}
		o.Also = append(o.Also, row)
		if err != nil {
			return o, err
		}
	}
	return o, nil
}

// keyByUnwrap finds which --from KMS key wraps a KMS-wrapped data key by
// unwrapping it (the data key is cleared at once); "" when none does.
func (c *Core) keyByUnwrap(ctx context.Context, cl *Classification) (string, error) {
	if !cl.Wrapped.Alg.IsKMS() {
		return "", nil
	}
	for _, k := range c.From {
		if k.Kind() != rewrap.KindKMS {
			continue
		}
		dek, err := k.Unwrap(ctx, cl.Wrapped, cl.CEK)
		if err == nil {
			dek.Clear()
			return k.ID(), nil
		}
		if !rewrap.IsWrongKey(err) {
			return "", err
		}
	}
	return "", nil
}

// deleteOlder deletes one older version under a --from key, unless Object
// Lock protects it: the protocol with a DeleteObject of the version as its
// write.
func (c *Core) deleteOlder(ctx context.Context, cl *Classification, o Outcome) (Outcome, error) {
	o.Action = ActionDeleteVersion
	lock, err := c.Versions.Lock(ctx, cl.Obj)
	if err != nil {
		return o.fromS3Error("read the older version's Object Lock state", err), nil
	}
	if why := lockedBy(cl.Obj, lock, time.Now()); why != "" {
		o = o.pending(CodeObjectLocked, why+": left in place (rotator never bypasses Object Lock); delete it when the lock allows")
		return o, c.observe(ctx, cl, ledger.StateCurrent, o.FromKey)
	}
	return c.change(ctx, cl, o, ActionDeleteVersion)
}

// deleteVersion deletes a held older version: steps 3 to 6.
func (c *Core) deleteVersion(ctx context.Context, h *hold, cl *Classification, o Outcome) (Outcome, error) {
	// The re-read: another worker of the run may have deleted it since it
	// was classified (the sweep of its current version).
	if _, err := c.S3.Head(ctx, cl.Obj.Bucket, cl.Obj.Key, cl.Obj.VersionID); errors.Is(err, commit.ErrGone) {
		return o.skip(CodeGone, "already deleted"), nil
	}
	ev := ledger.Event{ID: c.id(cl), RunID: c.RunID, Op: ledger.OpDeleteVersion, FromKey: cl.Key, Method: "delete-version",
		ETagBefore: cl.Obj.ETag, VersionBefore: cl.Obj.VersionID, OldWrappedKeySHA256: cl.Fingerprint}
	if out, done, err := c.prepare(ctx, h, ev, o); done {
		return out, err
	}
	werr := c.Versions.DeleteVersion(ctx, cl.Obj)
	if werr == nil {
		return c.recordDeleted(ctx, h, ev, cl, o)
	}
	_, out, err := c.afterWrite(ctx, h, ev, o, "delete the older version", werr)
	return out, err
}

// recordDeleted commits a version deletion.
func (c *Core) recordDeleted(ctx context.Context, h *hold, ev ledger.Event, cl *Classification, o Outcome) (Outcome, error) {
	rec := ledger.Object{ID: ev.ID, State: ledger.StateDeleted, ETag: ev.ETagBefore, RunID: ev.RunID}
	if cl != nil && cl.Env != nil {
		rec.Format, rec.Placement, rec.CEKAlg = cl.Env.Format.String(), cl.Placement(), string(cl.CEK)
	}
	out, err := c.record(ctx, h, rec, ev, o, ActionDeleteVersion)
	if out.Status == StatusSucceeded {
		out.Message = "deleted this older version (it was under a --from key)"
	}
	return out, err
}

// settleDeleted decides a version deletion from a listing of the key's
// versions: the version is gone (recorded) or still there (dropped).
func (c *Core) settleDeleted(ctx context.Context, h *hold, ev ledger.Event, o Outcome) (verdict, Outcome, error) {
	if c.Versions == nil {
		return kept, keepIntent(h, o, "a version deletion is in progress but this run does not delete versions", nil), nil
	}
	vs, err := c.Versions.Versions(ctx, ev.ID.Bucket, ev.ID.Key)
	if err != nil {
		return kept, keepIntent(h, o, "could not list the key's versions to learn whether the version was deleted", err), nil
	}
	for _, v := range vs {
		if v.VersionID == ev.ID.VersionID {
			return c.dropAs(ctx, h, ev, o, dropped)
		}
	}
	out, err := c.recordDeleted(ctx, h, ev, nil, o)
	if out.Status != StatusSucceeded {
		return kept, out, err
	}
	return committed, out, err
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
