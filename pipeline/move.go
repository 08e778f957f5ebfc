package pipeline

import (
	"context"
	"errors"
	"fmt"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/rewrap"
)

// PlacementInstructionFile is the value of Config.Placement (--placement
// instruction-file) that moves envelopes out of objects' metadata.
const PlacementInstructionFile = "instruction-file"

// Mover moves an envelope from an object's metadata into an instruction
// file (--placement instruction-file). *commit.Committer implements it.
type Mover interface {
	NewInstruction(ctx context.Context, bucket, instrKey string, body []byte) (commit.Result, error)
	DropEnvelope(ctx context.Context, obj *commit.Object, objectSide map[string]string) (commit.Result, error)
	DeleteInstruction(ctx context.Context, instr *commit.Object) error
}

var _ Mover = (*commit.Committer)(nil)

// CodeInstructionExists: --placement instruction-file found an instruction
// file beside an object whose metadata holds the envelope (no official
// client reads it, but older versions of the object may): both are left
// as they are.
const CodeInstructionExists = "InstructionFileExists"

// moves reports whether the rewrap of cl also moves its envelope into an
// instruction file.
func (c *Core) moves(cl *Classification) bool {
	return c.Move != nil && cl.Instr == nil && cl.Env != nil && cl.Env.Placement == envelope.PlacementMetadata
}

// moveIntent is the intent of a rewrap that also moves the envelope (the
// instruction file's body and what stays on the object), or a failed
// outcome when newEnv cannot be split so.
func (c *Core) moveIntent(cl *Classification, newEnv *envelope.Envelope, res rewrap.Result, o Outcome) (*newRewrap, Outcome, bool) {
	side, body, err := newEnv.InstructionFile()
	if err != nil {
		return nil, o.fail(CodeBadEnvelope, err.Error()), true
	}
	if err := commit.CheckObjectSide(cl.Obj, side); err != nil {
		return nil, o.fail(CodeBadEnvelope, err.Error()), true
	}
	ev := ledger.Event{
		ID: c.id(cl), RunID: c.RunID, Op: ledger.OpMove, Method: res.Method + "+move", FromKey: res.FromKey, ToKey: res.ToKey,
		ETagBefore: cl.Obj.ETag, VersionBefore: cl.Obj.VersionID,
		OldWrappedKeySHA256: cl.Fingerprint, NewWrappedKeySHA256: ledger.WrappedKeyFingerprint(res.Key),
	}
	return &newRewrap{ev: ev, newEnv: newEnv, move: &moveBody{side: side, body: body}}, o, false
}

// moveBody is what a move writes: the new instruction file's body, and
// the object's metadata without the envelope.
type moveBody struct {
	side map[string]string
	body []byte
}

// writeMove stores the rewrapped envelope of a held object, whose move
// intent is recorded, in a new instruction file and removes the envelope
// from the object's metadata, in this order, so that the official clients
// open the object at every instant: while both exist, the metadata (the
// old wrapped key, under a key still enabled) wins; after the copy only
// the instruction file holds the envelope. Steps 4 to 6 of the protocol,
// with an OpMove intent: its evidence is where the object's envelope is
// (settleMove).
func (c *Core) writeMove(ctx context.Context, h *hold, cl *Classification, rw *newRewrap, o Outcome) (Outcome, error) {
	ev := rw.ev
	ik := instructionKey(cl.Obj.Key, c.suffix())
	if _, werr := c.Move.NewInstruction(ctx, cl.Obj.Bucket, ik, rw.move.body); werr != nil {
		v, out, err := c.afterWrite(ctx, h, ev, o, "create the instruction file", werr)
		if v == dropped && errors.Is(werr, commit.ErrExists) {
			out = out.fail(CodeInstructionExists, fmt.Sprintf("%s exists beside the object, whose metadata holds its envelope: both left as they are (%v)", ik, werr))
		}
		return out, err
	}
	cr, werr := c.Move.DropEnvelope(ctx, cl.Obj, rw.move.side)
	if werr == nil {
		return c.recordMove(ctx, h, ev, rw.newEnv, cr, o)
	}
	_, out, err := c.afterWrite(ctx, h, ev, o, "remove the envelope from the object's metadata", werr)
	return out, err
}

// recordMove commits a move that landed: cr is the object's copy.
func (c *Core) recordMove(ctx context.Context, h *hold, ev ledger.Event, env *envelope.Envelope, cr commit.Result, o Outcome) (Outcome, error) {
	moved := *env
	moved.Placement = envelope.PlacementInstructionFile
	return c.recordRewrap(ctx, h, ev, &moved, false, cr, &commit.Object{}, o)
}

// settleMove decides a move from where the object's envelope is now:
// in the instruction file with the new wrapped key, and gone from the
// metadata (landed); in the metadata with the old wrapped key and the
// original ETag (the copy did not land); anything else is someone else's
// change. When it did not land, the instruction file the move may have
// created is deleted if it holds the new wrapped key (only this move made
// it) and no reader uses it (the object is gone, or its metadata holds a
// complete envelope).
func (c *Core) settleMove(ctx context.Context, h *hold, ev ledger.Event, o Outcome) (verdict, Outcome, error) {
	n, err := c.current(ctx, ev.ID)
	switch {
	case err != nil:
		return kept, keepIntent(h, o, "could not read the object to learn whether its envelope moved", err), nil
	case !n.gone && n.instr != nil && n.fp == ev.NewWrappedKeySHA256:
		env, perr := envelope.Parse(n.obj.Metadata, n.body, envelope.ParseOptions{AllowLegacy: true, MaxMetadataBytes: -1})
		if perr != nil {
			return kept, keepIntent(h, o, "the instruction file holds the new wrapped key but the envelope does not parse", perr), nil
		}
		out, err := c.recordRewrap(ctx, h, ev, env, false, commit.Result{ETagAfter: n.obj.ETag, VersionAfter: n.obj.VersionID}, n.obj, o)
		if out.Status != StatusSucceeded {
			return kept, out, err
		}
		return committed, out, err
	}
	v := changedBy
	if !n.gone && n.instr == nil && n.fp == ev.OldWrappedKeySHA256 && n.obj.ETag == ev.ETagBefore {
		v = dropped
	}
	if n.gone || !needsInstruction(n.obj) {
		if why, err := c.removeMoveFile(ctx, ev); err != nil {
			return kept, keepIntent(h, o, why, err), nil
		}
	}
	return c.dropAs(ctx, h, ev, o, v)
}

// removeMoveFile deletes the instruction file of the move ev when it
// holds ev's new wrapped key; why says what failed.
func (c *Core) removeMoveFile(ctx context.Context, ev ledger.Event) (string, error) {
	ik := instructionKey(ev.ID.Key, c.suffix())
	instr, body, err := c.S3.ReadInstruction(ctx, ev.ID.Bucket, ik, "")
	switch {
	case errors.Is(err, commit.ErrGone):
		return "", nil
	case err != nil:
		return "the move did not land; could not read the instruction file it may have created", err
	}
	w, werr := envelope.WrappedKeyOf(nil, body)
	if werr != nil || ledger.WrappedKeyFingerprint(w) != ev.NewWrappedKeySHA256 {
		return "", nil // someone else's: left as it is
	}
	if c.Move == nil {
		return "the move did not land, and the instruction file it created can only be deleted with --placement instruction-file", errors.New("no mover")
	}
	if err := c.Move.DeleteInstruction(ctx, instr); err != nil {
		return "the move did not land; could not delete the instruction file it created", err
	}
	return "", nil
}
