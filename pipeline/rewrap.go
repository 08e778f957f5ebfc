package pipeline

import (
	"context"
	"errors"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/rewrap"
)

// rewrap changes the wrapping of a held object's data key (KMS ReEncrypt,
// KMS to HSM, ...) and stores the new envelope where the old one lives:
// steps 3 to 6 of the protocol.
func (c *Core) rewrap(ctx context.Context, h *hold, cl *Classification, o Outcome) (Outcome, error) {
	rw, out, done, obs, err := c.planRewrap(ctx, cl, o)
	if done {
		if obs != nil {
			err = obs(h)
		}
		return out, err
	}
	if out, done, err := c.prepare(ctx, h, rw.ev, out); done {
		return out, err
	}
	return c.writeRewrap(ctx, h, cl, rw, out)
}

// newRewrap is a rewrap decided and its new wrapping made, not written.
type newRewrap struct {
	ev     ledger.Event // the intent
	newEnv *envelope.Envelope
	move   *moveBody // set when the envelope also moves into an instruction file (--placement)
}

// planRewrap asks the key backends for the new wrapping of cl's data key
// and builds the intent. done is set when the object is not to be
// rewrapped after all (already under the target key, not under a --from
// key, a key backend's refusal): out says why, and obs, when set, records
// it as an observation, which the caller makes under the object's claim
// (so that it never lands over a change another run holding the claim
// commits meanwhile). It writes nothing.
func (c *Core) planRewrap(ctx context.Context, cl *Classification, o Outcome) (rw *newRewrap, out Outcome, done bool, obs func(*hold) error, err error) {
	res, err := c.newWrapping(ctx, cl)
	if err != nil {
		out, systemic := o.fromError("rewrap the data key", err)
		if systemic {
			return nil, out, true, nil, err
		}
		if out.ErrorCode == CodeDryRun {
			return nil, out, true, nil, nil
		}
		key := cl.Key
		return nil, out, true, func(h *hold) error { return c.observeHeld(h.ctx, h, cl, c.stateFor(out), key) }, nil
	}
	o.FromKey, o.ToKey = res.FromKey, res.ToKey
	cl.Key, cl.KeySource = res.FromKey, "kms"
	current := func(h *hold) error { return c.observeHeld(h.ctx, h, cl, ledger.StateCurrent, res.FromKey) }
	if res.FromKey == c.To.ID() && c.Mode != ModeRestore {
		o = o.skip(CodeAlreadyTarget, "already wrapped under the target key (asked KMS)")
		o.ToKey = ""
		return nil, o, true, current, nil
	}
	if !c.selected(res.FromKey) {
		o = o.skip(CodeNotFromKey, "wrapped under "+res.FromKey+", not under a --from key")
		o.ToKey = ""
		return nil, o, true, current, nil
	}
	newEnv, err := res.Apply(cl.Env)
	if err != nil {
		return nil, o.fail(CodeBadEnvelope, err.Error()), true, nil, nil
	}
	if c.moves(cl) {
		rw, out, done := c.moveIntent(cl, newEnv, res, o)
		return rw, out, done, nil, nil
	}
	ev := ledger.Event{
		ID: c.id(cl), RunID: c.RunID, Op: ledger.OpRewrap, Method: res.Method, FromKey: res.FromKey, ToKey: res.ToKey,
		ETagBefore: cl.Obj.ETag, VersionBefore: cl.Obj.VersionID,
		OldWrappedKeySHA256: cl.Fingerprint, NewWrappedKeySHA256: ledger.WrappedKeyFingerprint(res.Key),
	}
	if cl.Instr != nil {
		// The change is to the instruction file: its ETags are recorded;
		// the object's version does not change.
		ev.ETagBefore = cl.Instr.ETag
	}
	return &newRewrap{ev: ev, newEnv: newEnv}, o, false, nil, nil
}

// writeRewrap writes a rewrap whose intent is recorded and commits it on
// evidence: steps 4 to 6 of the protocol.
func (c *Core) writeRewrap(ctx context.Context, h *hold, cl *Classification, rw *newRewrap, o Outcome) (Outcome, error) {
	if rw.move != nil {
		return c.writeMove(ctx, h, cl, rw, o)
	}
	cr, werr := c.write(ctx, cl, rw.newEnv)
	if werr == nil {
		return c.recordRewrap(ctx, h, rw.ev, cl.Env, cl.Instr != nil, cr, cl.Obj, o)
	}
	_, out, err := c.afterWrite(ctx, h, rw.ev, o, "write the new envelope", werr)
	return out, err
}

// newWrapping asks the key backends for the new wrapping.
func (c *Core) newWrapping(ctx context.Context, cl *Classification) (rewrap.Result, error) {
	if c.Mode == ModeRestore {
		return c.escrowWrapping(ctx, cl)
	}
	if from := c.fromKeyring(cl.Key); from != nil {
		return rewrap.Rewrap(ctx, from, c.To, cl.Wrapped, cl.CEK)
	}
	if !cl.Wrapped.Alg.IsKMS() {
		return rewrap.Result{}, &rewrap.Error{Op: "unwrap", Code: CodeNeedFromKey,
			Hint: "name the key the object is wrapped under with --from"}
	}
	// A KMS blob under a key not given as a keyring (or not known yet).
	if re, ok := c.To.(rewrap.ReEncrypter); ok && re.CanReEncrypt(nil) {
		// ReEncrypt finds the source key itself and says which it was.
		return rewrap.Rewrap(ctx, nil, c.To, cl.Wrapped, cl.CEK)
	}
	var last error
	for _, k := range c.From {
		if k.Kind() != rewrap.KindKMS {
			continue
		}
		res, err := rewrap.Rewrap(ctx, k, c.To, cl.Wrapped, cl.CEK)
		var re *rewrap.Error
		if errors.As(err, &re) && re.Code == "IncorrectKeyException" {
			last = err
			continue
		}
		return res, err
	}
	if last != nil {
		return rewrap.Result{}, last
	}
	return rewrap.Result{}, &rewrap.Error{Op: "unwrap", Code: CodeNeedFromKey,
		Hint: "a KMS-wrapped data key going to a non-KMS key (or another region) needs its KMS key named with --from"}
}

// write stores the new envelope where the old one lives.
func (c *Core) write(ctx context.Context, cl *Classification, newEnv *envelope.Envelope) (commit.Result, error) {
	if cl.Instr == nil {
		meta, err := newEnv.Metadata()
		if err != nil {
			return commit.Result{}, err
		}
		return c.S3.MetadataEnvelope(ctx, cl.Obj, meta)
	}
	side, body, err := newEnv.InstructionFile()
	if err != nil {
		return commit.Result{}, err
	}
	if err := commit.CheckObjectSide(cl.Obj, side); err != nil {
		return commit.Result{}, err
	}
	return c.S3.WriteInstruction(ctx, cl.Instr, body)
}

// recordRewrap commits a rewrap that landed: cr is the write that did it
// (the object's for a metadata envelope, the instruction file's
// otherwise), obj the object.
func (c *Core) recordRewrap(ctx context.Context, h *hold, ev ledger.Event, env *envelope.Envelope, instruction bool, cr commit.Result, obj *commit.Object, o Outcome) (Outcome, error) {
	ev.ETagAfter, ev.VersionAfter = cr.ETagAfter, cr.VersionAfter
	if instruction || ev.VersionAfter == ev.VersionBefore {
		ev.VersionAfter = "" // no new version of the object
	}
	rec := ledger.Object{
		ID: ev.ID, WrapKey: ev.ToKey, Format: env.Format.String(), Placement: env.Placement.String(),
		CEKAlg: string(env.CEKAlg), State: ledger.StateRewrapped, ETag: obj.ETag, RunID: c.RunID,
		WrappedKeySHA256: ev.NewWrappedKeySHA256,
	}
	if !instruction {
		rec.ETag = cr.ETagAfter
		if ev.VersionAfter != "" {
			rec.ID.VersionID = ev.VersionAfter
		}
	}
	return c.record(ctx, h, rec, ev, o, ActionRewrap)
}

// settleRewrap decides a rewrap from the wrapped key the object (or its
// instruction file) holds now.
func (c *Core) settleRewrap(ctx context.Context, h *hold, ev ledger.Event, o Outcome) (verdict, Outcome, error) {
	n, err := c.current(ctx, ev.ID)
	switch {
	case err != nil:
		return kept, keepIntent(h, o, "could not read the object to learn whether its new envelope landed", err), nil
	case n.gone:
		return c.dropAs(ctx, h, ev, o, changedBy)
	case n.fp == ev.NewWrappedKeySHA256:
		env, perr := envelope.Parse(n.obj.Metadata, n.body, envelope.ParseOptions{AllowLegacy: true, MaxMetadataBytes: -1})
		if perr != nil {
			return kept, keepIntent(h, o, "the object holds the new wrapped key but its envelope does not parse", perr), nil
		}
		cr := commit.Result{ETagAfter: n.obj.ETag, VersionAfter: n.obj.VersionID}
		if n.instr != nil {
			cr = commit.Result{ETagAfter: n.instr.ETag, VersionAfter: n.instr.VersionID}
		}
		out, err := c.recordRewrap(ctx, h, ev, env, n.instr != nil, cr, n.obj, o)
		if out.Status != StatusSucceeded {
			return kept, out, err
		}
		return committed, out, err
	case n.fp == ev.OldWrappedKeySHA256 && (n.instr != nil || n.obj.ETag == ev.ETagBefore):
		return c.dropAs(ctx, h, ev, o, dropped)
	}
	return c.dropAs(ctx, h, ev, o, changedBy)
}

// dropAs abandons ev and returns v with its outcome.
func (c *Core) dropAs(ctx context.Context, h *hold, ev ledger.Event, o Outcome, v verdict) (verdict, Outcome, error) {
	if err := c.drop(ctx, h, ev); err != nil {
		if errors.Is(err, ledger.ErrNotClaimed) || errors.Is(err, context.Canceled) {
			return kept, keepIntent(h, o, "could not drop the intent", err), nil
		}
		return kept, o.fail(CodeLedger, err.Error()), ledgerError{err}
	}
	switch v {
	case changedBy:
		o = o.changed(msgChangedSinceRead)
	case dropped:
		o = o.fail(CodeS3, "the write did not land: the object is as it was")
	}
	o.ToKey = ""
	return v, o, nil
}

// needsInstruction reports whether obj's metadata holds no envelope.
func needsInstruction(obj *commit.Object) bool { return envelope.NeedsInstructionFile(obj.Metadata) }

func instructionKey(key, suffix string) string { return envelope.InstructionKey(key, suffix) }

// wrappedKeyOf returns the wrapped data key obj holds: in its instruction
// file body when its metadata holds none.
func wrappedKeyOf(obj *commit.Object, body []byte) ([]byte, error) {
	if body != nil && needsInstruction(obj) {
		return envelope.WrappedKeyOf(nil, body)
	}
	return envelope.WrappedKeyOf(obj.Metadata, nil)
}
