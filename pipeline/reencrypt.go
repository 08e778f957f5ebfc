package pipeline

import (
	"context"
	"errors"
	"fmt"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/reencrypt"
	"github.com/rotator-dev/rotator/rewrap"
)

// unwrapperFor returns what unwraps the object's data key: the --from
// keyring of its known key, or each KMS --from keyring in turn.
func (c *Core) unwrapperFor(cl *Classification) (rewrap.Unwrapper, error) {
	if k := c.fromKeyring(cl.Key); k != nil {
		return k, nil
	}
	if cl.Key != "" && cl.Key == c.To.ID() {
		return c.To, nil
	}
	var kms []rewrap.Keyring
	for _, k := range c.From {
		if k.Kind() == rewrap.KindKMS && cl.Wrapped.Alg.IsKMS() {
			kms = append(kms, k)
		}
	}
	if len(kms) == 0 {
		return nil, &rewrap.Error{Op: "unwrap", Code: CodeNeedFromKey,
			Hint: "re-encryption decrypts the old data key: name the key it is wrapped under with --from"}
	}
	return &firstOf{keys: kms, found: func(id string) { cl.Key = id }}, nil
}

// firstOf unwraps with the first keyring that accepts the wrapped key (KMS
// says IncorrectKeyException for the others).
type firstOf struct {
	keys  []rewrap.Keyring
	found func(id string)
}

func (f *firstOf) Unwrap(ctx context.Context, w rewrap.Wrapped, cek envelope.ContentAlg) (*envelope.DataKey, error) {
	var last error
	for _, k := range f.keys {
		dek, err := k.Unwrap(ctx, w, cek)
		var re *rewrap.Error
		if errors.As(err, &re) && re.Code == "IncorrectKeyException" {
			last = err
			continue
		}
		if err == nil {
			f.found(k.ID())
		}
		return dek, err
	}
	return nil, last
}

// reencrypt re-encrypts a held object under a fresh data key: steps 3 to 6
// of the protocol. Begin unwraps the old data key and wraps a new one (no
// write); the intent (prepared event, and the checkpoint holding the new
// envelope) is recorded before the first S3 write.
func (c *Core) reencrypt(ctx context.Context, h *hold, cl *Classification, o Outcome) (Outcome, error) {
	from, err := c.unwrapperFor(cl)
	if err != nil {
		return o.fail(CodeNeedFromKey, err.Error()), nil
	}
	job := reencrypt.Job{Obj: cl.Obj, Instr: cl.Instr, Env: cl.Env, From: from, To: c.To, Format: c.Format}
	in, err := c.Reencrypter.Begin(ctx, job)
	if err != nil {
		return c.reencryptRefused(ctx, cl, o, err)
	}
	defer in.Close()
	ev := ledger.Event{
		ID: c.id(cl), RunID: c.RunID, Op: ledger.OpReencrypt, FromKey: cl.Key, ToKey: c.To.ID(),
		Method:     method(cl.Env, in.NewEnv, c.To),
		ETagBefore: cl.Obj.ETag, VersionBefore: cl.Obj.VersionID,
		OldWrappedKeySHA256: cl.Fingerprint, NewWrappedKeySHA256: ledger.WrappedKeyFingerprint(in.NewEnv.WrappedKey),
	}
	if out, done, err := c.prepare(ctx, h, ev, o); done {
		return out, err
	}
	if in.NeedsCheckpoint() {
		if err := c.saveIntent(ctx, ev, in); err != nil {
			// Nothing was written: the prepared event alone is settled
			// by the object (still as it was) on resume.
			h.keep = true
			return o.fail(CodeLedger, err.Error()), ledgerError{err}
		}
	}
	return c.writeReencrypt(ctx, h, job, in, ev, o)
}

// reencryptRefused reports a re-encryption that could not begin (a wrong
// or refused key, a corrupt or truncated object): nothing was written.
func (c *Core) reencryptRefused(ctx context.Context, cl *Classification, o Outcome, err error) (Outcome, error) {
	out, systemic := o.fromError("re-encrypt the object", err)
	if systemic {
		return out, err
	}
	if out.ErrorCode == CodeDryRun {
		return out, nil
	}
	return out, c.observe(ctx, cl, c.stateFor(out), cl.Key)
}

// saveIntent saves a re-encryption's checkpoint in the ledger.
func (c *Core) saveIntent(ctx context.Context, ev ledger.Event, in *reencrypt.Intent) error {
	return c.Ledger.SaveUpload(ctx, c.owner(), ledger.Upload{ID: ev.ID, RunID: ev.RunID, UploadID: in.UploadID(), State: in.State()})
}

// writeReencrypt makes a re-encryption's writes and decides the outcome.
func (c *Core) writeReencrypt(ctx context.Context, h *hold, job reencrypt.Job, in *reencrypt.Intent, ev ledger.Event, o Outcome) (Outcome, error) {
	save := func(ctx context.Context) error {
		if err := c.saveIntent(ctx, ev, in); err != nil {
			// A ledger failure, not the upload's: reported as one, and
			// it stops the run as every other does.
			return ledgerError{fmt.Errorf("save the checkpoint: %w", err)}
		}
		return nil
	}
	res, werr := c.Reencrypter.Write(ctx, job, in, save)
	if werr == nil {
		cr := res.Commit
		return c.finishReencrypt(ctx, h, ev, in, cr.ETagAfter, cr.VersionAfter, o, res)
	}
	// An interrupted run keeps what it uploaded for resume; any other
	// failure gives the attempt up once the object shows it did not land.
	v, out, err := c.settleIntent(ctx, h, ev, in, o, ctx.Err() == nil)
	if err != nil || v == committed || v == kept {
		return out, err
	}
	out, systemic := out.writeFailed("re-encrypt the object", werr, v)
	if v == resumable {
		h.keep = true
		out = out.unfinished("interrupted; the upload is kept: 'rotator resume' goes on from the last part (" + werr.Error() + ")")
	}
	if systemic {
		return out, werr
	}
	return out, nil
}

// finishReencrypt records a re-encryption whose content (and instruction
// file) landed: leftover uploads are aborted, the checkpoint dropped, the
// lineage committed. Any failure keeps the intent (resume finishes it).
func (c *Core) finishReencrypt(ctx context.Context, h *hold, ev ledger.Event, in *reencrypt.Intent, etag, version string, o Outcome, res reencrypt.Result) (Outcome, error) {
	if err := c.Reencrypter.Orphans(ctx, in, ev.ID.Bucket, ev.ID.Key); err != nil {
		return keepIntent(h, o, "the object is re-encrypted but an upload left by a retried request could not be aborted", err), nil
	}
	if in.NeedsCheckpoint() {
		if err := c.Ledger.DeleteUpload(ctx, c.owner(), ev.RunID, ev.ID); err != nil {
			return keepIntent(h, o, "the object is re-encrypted but its checkpoint could not be dropped", err), nil
		}
	}
	ev.ETagAfter, ev.VersionAfter = etag, version
	if ev.VersionAfter == ev.VersionBefore {
		ev.VersionAfter = ""
	}
	rec := ledger.Object{
		ID: ev.ID, WrapKey: ev.ToKey, Format: in.NewEnv.Format.String(), Placement: placementOf(in),
		CEKAlg: string(in.NewEnv.CEKAlg), State: ledger.StateReencrypted, ETag: etag, RunID: ev.RunID,
		WrappedKeySHA256: ev.NewWrappedKeySHA256,
	}
	if ev.VersionAfter != "" {
		rec.ID.VersionID = ev.VersionAfter
	}
	out, err := c.record(ctx, h, rec, ev, o, ActionReencrypt)
	if out.Status == StatusSucceeded && res.Resumed > 0 {
		out.Message += fmt.Sprintf(" (resumed after %d of %d parts)", res.Resumed, res.Parts)
	}
	return out, err
}

func placementOf(in *reencrypt.Intent) string {
	if in.Instruction() {
		return envelope.PlacementInstructionFile.String()
	}
	return envelope.PlacementMetadata.String()
}

// settleReencrypt decides a re-encryption intent of this run from its
// checkpoint and the object as it is now (recovery: its upload goes on
// when it did not land).
func (c *Core) settleReencrypt(ctx context.Context, h *hold, ev ledger.Event, o Outcome) (verdict, Outcome, error) {
	u, err := c.Ledger.GetUpload(ctx, ev.RunID, ev.ID)
	if errors.Is(err, ledger.ErrNotFound) {
		return c.settleReencryptMeta(ctx, h, ev, o)
	}
	if err != nil {
		return kept, o.fail(CodeLedger, err.Error()), ledgerError{err}
	}
	in, err := c.Reencrypter.Resume(u)
	if err != nil {
		return kept, keepIntent(h, o, "cannot read the checkpoint", err), nil
	}
	defer in.Close()
	return c.settleIntent(ctx, h, ev, in, o, false)
}

// settleReencryptMeta decides a re-encryption that keeps no checkpoint
// (one part, envelope in the metadata: it lands in one write, with its
// envelope) from the wrapped key the object holds.
func (c *Core) settleReencryptMeta(ctx context.Context, h *hold, ev ledger.Event, o Outcome) (verdict, Outcome, error) {
	n, err := c.current(ctx, ev.ID)
	switch {
	case err != nil:
		return kept, keepIntent(h, o, "could not read the object to learn whether its new content landed", err), nil
	case n.gone:
		return c.dropAs(ctx, h, ev, o, changedBy)
	case n.fp == ev.NewWrappedKeySHA256:
		env, perr := envelope.Parse(n.obj.Metadata, n.body, envelope.ParseOptions{MaxMetadataBytes: -1})
		if perr != nil {
			return kept, keepIntent(h, o, "the object holds the new wrapped key but its envelope does not parse", perr), nil
		}
		ev.ETagAfter, ev.VersionAfter = n.obj.ETag, n.obj.VersionID
		if ev.VersionAfter == ev.VersionBefore {
			ev.VersionAfter = ""
		}
		rec := ledger.Object{ID: ev.ID, WrapKey: ev.ToKey, Format: env.Format.String(), Placement: env.Placement.String(),
			CEKAlg: string(env.CEKAlg), State: ledger.StateReencrypted, ETag: n.obj.ETag, RunID: ev.RunID,
			WrappedKeySHA256: ev.NewWrappedKeySHA256}
		if ev.VersionAfter != "" {
			rec.ID.VersionID = ev.VersionAfter
		}
		out, err := c.record(ctx, h, rec, ev, o, ActionReencrypt)
		if out.Status != StatusSucceeded {
			return kept, out, err
		}
		return committed, out, err
	case n.fp == ev.OldWrappedKeySHA256 && n.obj.ETag == ev.ETagBefore:
		return c.dropAs(ctx, h, ev, o, dropped)
	}
	return c.dropAs(ctx, h, ev, o, changedBy)
}

// settleIntent decides a re-encryption from the object as it is now, from
// positive evidence (reencrypt.Engine.Content): the new content landed
// (finish it: the instruction file, then the lineage), the object is as
// it was (give the attempt up when giveUp, after aborting its upload so
// that no completion can land any more; else it can go on: resumable),
// someone else wrote it (give up), or no evidence (keep everything).
func (c *Core) settleIntent(ctx context.Context, h *hold, ev ledger.Event, in *reencrypt.Intent, o Outcome, giveUp bool) (verdict, Outcome, error) {
	n, err := c.current(ctx, ev.ID)
	if err != nil {
		return kept, keepIntent(h, o, "could not read the object to learn whether its new content landed", err), nil
	}
	if n.gone {
		return c.abandonReencrypt(ctx, h, ev, in, o, changedBy)
	}
	content, err := c.Reencrypter.Content(ctx, in, n.obj, c.keyFor(ctx, in.ToKey()))
	if err != nil {
		return kept, keepIntent(h, o, "could not tell whether the object holds the new content", err), nil
	}
	switch {
	case content == reencrypt.ContentOther:
		return c.abandonReencrypt(ctx, h, ev, in, o, changedBy)
	case content == reencrypt.ContentOld && in.Phase() == reencrypt.PhaseCompleted:
		// Our content had landed and was replaced by the original bytes:
		// someone restored the object.
		return c.abandonReencrypt(ctx, h, ev, in, o, changedBy)
	case content == reencrypt.ContentOld && !giveUp:
		h.keep = true
		return resumable, o, nil
	case content == reencrypt.ContentOld:
		if err := c.Reencrypter.Abort(ctx, in, ev.ID.Bucket, ev.ID.Key); err != nil {
			return kept, keepIntent(h, o, "could not abort the upload of an attempt given up", err), nil
		}
		// No completion can land now: look once more.
		if in.Phase() == reencrypt.PhaseCompleting {
			if n2, err := c.current(ctx, ev.ID); err != nil {
				return kept, keepIntent(h, o, "could not read the object after aborting its upload", err), nil
			} else if !n2.gone {
				again, err := c.Reencrypter.Content(ctx, in, n2.obj, c.keyFor(ctx, in.ToKey()))
				if err != nil {
					return kept, keepIntent(h, o, "could not tell whether the object holds the new content", err), nil
				}
				if again == reencrypt.ContentNew {
					return c.landedReencrypt(ctx, h, ev, in, n2, o)
				}
			}
		}
		return c.abandonReencrypt(ctx, h, ev, in, o, dropped)
	}
	return c.landedReencrypt(ctx, h, ev, in, n, o)
}

// landedReencrypt finishes a re-encryption whose new content is on the
// object: for an instruction-file object, the new instruction file is
// written (If-Match the old one) unless it already is.
func (c *Core) landedReencrypt(ctx context.Context, h *hold, ev ledger.Event, in *reencrypt.Intent, n now, o Outcome) (verdict, Outcome, error) {
	if in.Instruction() && n.fp != ev.NewWrappedKeySHA256 {
		if n.fp != ev.OldWrappedKeySHA256 || n.instr == nil {
			h.keep = true
			return kept, o.fail(CodeInstructionConflict, fmt.Sprintf("the object holds the re-encrypted content but its instruction file %s holds neither the old nor the new envelope "+
				"(someone rewrote or deleted it): the object cannot be decrypted as it is. The new envelope is kept in the ledger (run %s); "+
				"see docs/reliability.md for restoring the instruction file from it", instructionKey(ev.ID.Key, c.suffix()), ev.RunID)), nil
		}
		if in.Phase() != reencrypt.PhaseCompleted {
			if err := c.markLanded(ctx, ev, in, n.obj); err != nil {
				return kept, keepIntent(h, o, "could not record that the new content landed", err), nil
			}
		}
		job := reencrypt.Job{Obj: n.obj, Instr: n.instr, To: c.To}
		if _, werr := c.Reencrypter.Write(ctx, job, in, func(ctx context.Context) error { return c.saveIntent(ctx, ev, in) }); werr != nil {
			n2, err := c.current(ctx, ev.ID)
			if err != nil || n2.fp != ev.NewWrappedKeySHA256 {
				return kept, keepIntent(h, o, "the object holds the re-encrypted content, and its new instruction file is not written yet", errors.Join(werr, err)), nil
			}
		}
	}
	etag, version := n.obj.ETag, n.obj.VersionID
	out, err := c.finishReencrypt(ctx, h, ev, in, etag, version, o, reencrypt.Result{})
	if out.Status != StatusSucceeded {
		return kept, out, err
	}
	out.Message += " (finished from the ledger)"
	return committed, out, err
}

// markLanded records in the checkpoint that the new content is on the
// object (found by evidence after its completion's response was lost).
func (c *Core) markLanded(ctx context.Context, ev ledger.Event, in *reencrypt.Intent, obj *commit.Object) error {
	in.MarkLanded(obj.ETag, obj.VersionID)
	return c.saveIntent(ctx, ev, in)
}

// abandonReencrypt gives a re-encryption up: its uploads are aborted, its
// checkpoint and prepared event dropped.
func (c *Core) abandonReencrypt(ctx context.Context, h *hold, ev ledger.Event, in *reencrypt.Intent, o Outcome, v verdict) (verdict, Outcome, error) {
	if err := c.Reencrypter.Abort(ctx, in, ev.ID.Bucket, ev.ID.Key); err != nil {
		return kept, keepIntent(h, o, "could not abort the upload of an attempt given up", err), nil
	}
	if err := c.Ledger.DeleteUpload(ctx, c.owner(), ev.RunID, ev.ID); err != nil {
		return kept, keepIntent(h, o, "could not drop the checkpoint of an attempt given up", err), nil
	}
	return c.dropAs(ctx, h, ev, o, v)
}

// resumeReencrypt goes on with a re-encryption this run left in progress
// (its content did not land): from the object as it is now (still the
// version the checkpoint started from) and the checkpoint.
func (c *Core) resumeReencrypt(ctx context.Context, h *hold, ev ledger.Event, o Outcome) (Outcome, bool, error) {
	cl, out, done := c.Classify(ctx, inventory.Item{Bucket: ev.ID.Bucket, Key: ev.ID.Key}, o)
	if done {
		h.keep = true
		return out.unfinished("an interrupted re-encryption cannot go on: " + out.Message), true, nil
	}
	o.Action, o.FromKey = ActionReencrypt, cl.Key
	from, err := c.unwrapperFor(cl)
	if err != nil {
		h.keep = true
		return o.unfinished("an interrupted re-encryption cannot go on: " + err.Error()), true, nil
	}
	u, err := c.Ledger.GetUpload(ctx, ev.RunID, ev.ID)
	if err != nil {
		h.keep = true
		return o.unfinished("an interrupted re-encryption cannot go on: " + err.Error()), true, nil
	}
	in, err := c.Reencrypter.Resume(u)
	if err != nil {
		h.keep = true
		return o.unfinished("cannot read the checkpoint: " + err.Error()), true, nil
	}
	defer in.Close()
	to := c.keyFor(ctx, in.ToKey())
	if to == nil {
		h.keep = true
		return o.unfinished("the new data key is wrapped under " + in.ToKey() + ", which this run cannot open"), true, nil
	}
	job := reencrypt.Job{Obj: cl.Obj, Instr: cl.Instr, Env: cl.Env, From: from, To: to, Format: c.Format}
	out, err = c.writeReencrypt(ctx, h, job, in, ev, o)
	return out, true, err
}

// keyFor returns the keyring of a canonical key id: To, a --from key, or
// one opened by KeyFor; nil when none can be had.
func (c *Core) keyFor(ctx context.Context, id string) rewrap.Keyring {
	if c.To != nil && c.To.ID() == id {
		return c.To
	}
	if k := c.fromKeyring(id); k != nil {
		return k
	}
	if c.KeyFor != nil {
		if k, err := c.KeyFor(ctx, id); err == nil {
			return k
		}
	}
	return nil
}

// method names how an object was re-encrypted, e.g. "reencrypt V2->V3
// kms-decrypt+kms-encrypt".
func method(old, new *envelope.Envelope, to rewrap.Keyring) string {
	unwrap := "kms-decrypt"
	if !old.WrapAlg.IsKMS() {
		unwrap = "unwrap"
	}
	wrap := "kms-encrypt"
	switch to.Kind() {
	case rewrap.KindPKCS11:
		wrap = "hsm-wrap"
	case rewrap.KindKMS:
	default:
		wrap = "local-wrap"
	}
	nf := old.Format
	if new != nil {
		nf = new.Format
	}
	return fmt.Sprintf("reencrypt %v->%v %s+%s", old.Format, nf, unwrap, wrap)
}
