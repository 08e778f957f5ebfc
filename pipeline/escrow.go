package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/escrow"
	"github.com/rotator-dev/rotator/internal/awsx"
	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/rewrap"
)

// Recovery escrow (package escrow): a second wrapping of each object's
// data key, under an escrow key, in the object's escrow file
// (KEY.escrow.instruction). Three uses of the core:
//
//   - ModeEscrow (rotator escrow): each object under a --from key (any
//     object without --from) gets its escrow file; the object is not
//     written. To is the escrow key.
//   - ModeRewrap with Escrow set (rotator run --escrow): each selected
//     object gets its escrow file before it is rewrapped, each write
//     through the commit protocol with an intent of its own (OpEscrow,
//     then OpRewrap). A rewrap keeps the data key, so the escrow file
//     stays valid after it; an object whose escrow failed is not
//     rewrapped (it is reported and left under its old key).
//   - ModeReencrypt with Escrow set (run --mode reencrypt --escrow): each
//     object's escrow file is rewritten from its new data key right after
//     its re-encryption landed (escrowAfter), and objects found already
//     re-encrypted get theirs rewritten too (what a process that died
//     between the two left stale).
//   - ModeRestore (rotator restore --from-escrow): the primary wrapping is
//     lost; each object's data key is unwrapped from its escrow file with
//     Escrow, checked against the object (V3: the key commitment; V2: the
//     body's authentication tag), wrapped under To and committed as a
//     rewrap (OpRewrap, method "escrow:UNWRAP+WRAP").
//
// The escrow wrapping is made from the primary one: KMS to KMS by
// ReEncrypt (the data key never enters the process), otherwise unwrapped
// with the --from key and wrapped under the escrow key at once (an RSA
// escrow key needs only its public key). An escrow file is rewritten with
// If-Match on the ETag read, created with If-None-Match; a crash leaves an
// intent that the run's recovery settles from the fingerprint of the
// wrapped key the escrow file holds.

// Modes of escrow (see above).
const (
	ModeEscrow  Mode = "escrow"
	ModeRestore Mode = "restore"
)

// ActionEscrow writes an object's escrow file.
const ActionEscrow = "escrow"

// Escrow outcome codes.
const (
	// CodeNoEscrow: the object has no escrow file (restore, verify
	// --escrow).
	CodeNoEscrow = "NoEscrow"
	// CodeEscrowMismatch: the escrow file does not match the object (stale,
	// or written by someone else): its data key does not open it.
	CodeEscrowMismatch = "EscrowMismatch"
	// CodeEscrowFile: the key is an escrow file of another object; escrow
	// files are handled with their objects.
	CodeEscrowFile = "EscrowFile"
)

// InstructionCreator creates instruction files where none exists
// (commit.Committer.CreateInstruction).
type InstructionCreator interface {
	CreateInstruction(ctx context.Context, bucket, instrKey string, body []byte) (commit.Result, error)
}

var _ InstructionCreator = (*commit.Committer)(nil)

func (c *Core) escrowSuffix() string {
	if c.EscrowSuffix != "" {
		return c.EscrowSuffix
	}
	return escrow.DefaultSuffix
}

// escrowing reports whether the core writes escrow files.
func (c *Core) escrowing() bool {
	return c.Escrow != nil && (c.Mode == ModeEscrow || c.Mode == ModeRewrap || c.Mode == ModeReencrypt || c.Mode == "")
}

// isEscrowFile reports whether an item's key names an escrow file (by its
// suffix; its metadata marks it as an instruction file).
func (c *Core) isEscrowFile(key string) bool {
	return strings.HasSuffix(key, c.escrowSuffix()) && len(key) > len(c.escrowSuffix())
}

// decideEscrow is Decide for ModeEscrow and ModeRestore.
func (c *Core) decideEscrow(cl *Classification) (action, code, msg string) {
	switch {
	case cl.Obj.Noncurrent:
		return ActionSkip, CodeNoncurrent, "an older version: escrow files go with a key's current version"
	case cl.CEK.Legacy() || cl.Env.Format == envelope.V1:
		return ActionSkip, CodeNeedsReencrypt, "legacy content (V1 or AES/CBC): re-encrypt it to V2 or V3 first"
	case c.Mode == ModeRestore && cl.Key != "" && cl.Key == c.To.ID():
		return ActionSkip, CodeAlreadyTarget, "already wrapped under the target key"
	case c.Mode == ModeRestore:
		return ActionRewrap, "", ""
	case cl.Key != "" && cl.Key == c.To.ID():
		return ActionSkip, CodeAlreadyTarget, "wrapped under the escrow key itself: an escrow would add nothing"
	case cl.Key != "" && !c.selected(cl.Key):
		return ActionSkip, CodeNotFromKey, "wrapped under " + cl.Key + ", not under a --from key"
	case cl.Key == "" && !cl.Wrapped.Alg.IsKMS() && cl.ProbeErr != nil:
		return ActionSkip, CodeHSMUnavailable, "the HSM could not say which key wraps the data key: " + cl.ProbeErr.Error() +
			" (nothing was changed; run again once the HSM answers)"
	case cl.Key == "" && !cl.Wrapped.Alg.IsKMS():
		return ActionSkip, CodeNeedFromKey, "wrapped (" + string(cl.Wrapped.Alg) + ") under a key rotator was not given: name it with --from"
	}
	return ActionEscrow, "", ""
}

// escrowsFirst reports whether Core.act calls escrowFirst for cl: run
// --escrow writes the escrow file before it rewraps an object (or finds
// it under the target key); a re-encryption rewrites it for an object
// re-encrypted earlier (by this run, before a process died, or by
// another), from the new data key.
func (c *Core) escrowsFirst(cl *Classification, action, code string) bool {
	switch {
	case !c.escrowing():
		return false
	case c.Mode == ModeRewrap:
		return action == ActionRewrap || code == CodeAlreadyTarget
	case c.Mode == ModeReencrypt:
		return code == CodeAlreadyTarget && !cl.Obj.Noncurrent
	}
	return false
}

// escrowable reports whether an escrow file can describe cl: a current
// version of V2 or V3 content.
func escrowable(cl *Classification) bool {
	return !cl.Obj.Noncurrent && !cl.CEK.Legacy() && cl.Env.Format != envelope.V1
}

// escrowFirst writes the escrow file of an object (escrowable) a rewrap
// run is about to rewrap (or finds under the target key): done is set
// when the object's outcome is decided (the escrow failed, or the object
// is not selected).
func (c *Core) escrowFirst(ctx context.Context, cl *Classification, o Outcome) (Outcome, bool, error) {
	out, err := c.change(ctx, cl, o, ActionEscrow)
	if out.Action != ActionEscrow && out.Action != "" && out.Action != ActionSkip {
		// The claim settled an earlier change of this run instead (its
		// process died after the write): its outcome is the object's. A
		// rewrap begins only once its escrow is recorded; a re-encryption
		// is escrowed now, from its new data key. (out.FromKey is the
		// key before that change, not the object's now.)
		if err == nil && c.escrowsAfter(out.Action, out) {
			out, err = c.escrowAfter(ctx, cl.Obj.Bucket, cl.Obj.Key, out)
		}
		return out, true, err
	}
	if err != nil || out.Status != StatusSucceeded {
		if out.Status == StatusSkipped {
			return out, true, err
		}
		if out.Message != "" && out.Status == StatusFailed {
			out.Message = "escrow failed, so the object is left under its key: " + out.Message
		}
		return out, true, err
	}
	if cl.Key == "" && out.FromKey != "" {
		cl.Key, cl.KeySource = out.FromKey, "kms"
	}
	return out, false, nil
}

// escrowsAfter reports whether the outcome out of a change (action) is
// followed by escrowAfter: a re-encryption that succeeded, in a run
// --mode reencrypt --escrow. act, recovery and escrowFirst (a change its
// claim settled) each finish re-encryptions.
func (c *Core) escrowsAfter(action string, out Outcome) bool {
	return action == ActionReencrypt && out.Status == StatusSucceeded && c.Mode == ModeReencrypt && c.escrowing()
}

// escrowAfter rewrites the escrow file of an object a re-encryption just
// gave a new data key (out is the re-encryption's outcome), from its new
// primary wrapping: a change of its own through the protocol. Until it
// lands the escrow file holds the old data key (stale: verify --escrow
// reports it); when it does not land, the object's outcome says so and
// the run does not end done (a resumed run, or rotator escrow, rewrites
// it).
func (c *Core) escrowAfter(ctx context.Context, bucket, key string, out Outcome) (Outcome, error) {
	o := Outcome{Bucket: bucket, Key: key, Action: ActionEscrow}
	fresh, fo, done := c.Classify(ctx, inventory.Item{Bucket: bucket, Key: key}, o)
	eo, err := fo, error(nil)
	if !done {
		eo, err = c.change(ctx, fresh, o, ActionEscrow)
	}
	if err != nil || eo.Status == StatusSucceeded {
		if err == nil {
			out.Message += "; escrow file rewritten (" + eo.Message + ")"
		}
		return out, err
	}
	out.ErrorCode = eo.ErrorCode
	out.Message = "re-encrypted, but its escrow file was not rewritten and holds the old data key until it is (run again, or rotator escrow): " + eo.Message
	switch eo.Status {
	case StatusUnfinished:
		out.Status = StatusUnfinished
	default:
		out.Status = StatusFailed
	}
	return out, nil
}

// escrowObject writes the escrow file of a held object: steps 3 to 6 of
// the protocol for OpEscrow.
func (c *Core) escrowObject(ctx context.Context, h *hold, cl *Classification, o Outcome) (Outcome, error) {
	o.Action = ActionEscrow
	ekey := escrow.Key(cl.Obj.Key, c.escrowSuffix())
	st, old, err := c.S3.ReadInstruction(ctx, cl.Obj.Bucket, ekey, "")
	if err != nil && !errors.Is(err, commit.ErrGone) {
		return o.fromS3Error("read the escrow file "+ekey, err), nil
	}
	if st != nil {
		if ev, ok := c.escrowedByRun(ctx, cl, old); ok {
			// This run wrote the escrow file already (a process that died
			// after it, a revisited object): a run records one escrow per
			// object, and the data key has not changed since.
			out := o.succeed(ActionEscrow, ev)
			out.Message = ev.Method + " (escrow file written by this run already)"
			// The event's source key is the one the object was under
			// then; what it is under now is only what was classified
			// (escrowFirst must not take the old one for it).
			out.FromKey = cl.Key
			return out, nil
		}
	}
	res, err := c.newWrappingTo(ctx, cl, c.Escrow)
	if err != nil {
		out, systemic := o.fromError("wrap the data key under the escrow key", err)
		if systemic {
			return out, err
		}
		return out, nil
	}
	o.FromKey, o.ToKey = res.FromKey, res.ToKey
	if !c.selected(res.FromKey) && res.FromKey != c.To.ID() {
		o = o.skip(CodeNotFromKey, "wrapped under "+res.FromKey+", not under a --from key")
		o.ToKey = ""
		return o, nil
	}
	body, err := escrow.Body(cl.Env, escrow.Wrapping{Alg: res.Alg, Key: res.Key, MatDesc: res.MatDesc})
	if err != nil {
		return o.fail(CodeBadEnvelope, err.Error()), nil
	}
	ev := ledger.Event{
		ID: c.id(cl), RunID: c.RunID, Op: ledger.OpEscrow, Method: res.Method, FromKey: res.FromKey, ToKey: res.ToKey,
		VersionBefore: cl.Obj.VersionID, NewWrappedKeySHA256: ledger.WrappedKeyFingerprint(res.Key),
	}
	if st != nil {
		ev.ETagBefore = st.ETag
		if w, werr := envelope.WrappedKeyOf(nil, old); werr == nil {
			ev.OldWrappedKeySHA256 = ledger.WrappedKeyFingerprint(w)
		}
	}
	if out, done, err := c.prepare(ctx, h, ev, o); done {
		return out, err
	}
	var cr commit.Result
	var werr error
	switch {
	case st != nil:
		cr, werr = c.S3.WriteInstruction(ctx, st, body)
	case c.Creator == nil:
		werr = &commit.Error{Op: "create escrow file", Bucket: cl.Obj.Bucket, Key: ekey, Kind: commit.ErrUnsupported}
	default:
		cr, werr = c.Creator.CreateInstruction(ctx, cl.Obj.Bucket, ekey, body)
	}
	if werr == nil {
		ev.ETagAfter = cr.ETagAfter
		return c.record(ctx, h, c.escrowRecord(ctx, cl, res.FromKey), ev, o, ActionEscrow)
	}
	_, out, err := c.afterWrite(ctx, h, ev, o, "write the escrow file "+ekey, werr)
	return out, err
}

// lineager is the ledger's lineage query (both backends have it).
type lineager interface {
	Lineage(ctx context.Context, id ledger.ObjectID) ([]ledger.Event, error)
}

// escrowedByRun returns this run's committed escrow event of the object
// when the escrow file (body) still holds the wrapped key it recorded and
// still describes the object's content (escrow.Parse: for V2 the IV). A V3
// object re-encrypted by someone else between the escrow and a revisit in
// the same run is not caught here (only its data key tells); verify
// --escrow reports it.
func (c *Core) escrowedByRun(ctx context.Context, cl *Classification, body []byte) (ledger.Event, bool) {
	l, ok := c.Ledger.(lineager)
	if !ok {
		return ledger.Event{}, false
	}
	e, err := escrow.Parse(cl.Env, body)
	if err != nil {
		return ledger.Event{}, false
	}
	fp := ledger.WrappedKeyFingerprint(e.WrappedKey)
	evs, err := l.Lineage(ctx, c.id(cl))
	if err != nil {
		return ledger.Event{}, false
	}
	for _, ev := range evs {
		if ev.RunID == c.RunID && ev.Op == ledger.OpEscrow && ev.NewWrappedKeySHA256 == fp && ev.ToKey == c.Escrow.ID() {
			return ev, true
		}
	}
	return ledger.Event{}, false
}

// escrowRecord is the object record an escrow's Commit writes: the record
// the ledger holds when it describes the wrapped key classified (an
// escrow changes nothing on the object), else the object as classified.
func (c *Core) escrowRecord(ctx context.Context, cl *Classification, key string) ledger.Object {
	id := c.id(cl)
	if rec, err := c.Ledger.Get(ctx, id); err == nil && rec.WrappedKeySHA256 == cl.Fingerprint && rec.WrapKey != "" {
		// The record is kept as it is, in this run's name (the ledger
		// sets UpdatedAt to its clock).
		rec.RunID, rec.UpdatedAt = c.RunID, time.Time{}
		return rec
	}
	return ledger.Object{
		ID: id, WrapKey: key, Format: cl.Env.Format.String(), Placement: cl.Placement(),
		CEKAlg: string(cl.CEK), State: ledger.StateCurrent, ETag: cl.Obj.ETag, RunID: c.RunID,
		WrappedKeySHA256: cl.Fingerprint,
	}
}

// newWrappingTo asks the key backends for a wrapping of cl's data key
// under to: from the --from key (or To) that wraps it, or for a KMS blob
// whose key is not known yet by ReEncrypt (which finds the source key) or
// by trying each KMS --from key.
func (c *Core) newWrappingTo(ctx context.Context, cl *Classification, to rewrap.Keyring) (rewrap.Result, error) {
	if from := c.fromKeyring(cl.Key); from != nil {
		return rewrap.Rewrap(ctx, from, to, cl.Wrapped, cl.CEK)
	}
	if cl.Key != "" && c.To != nil && cl.Key == c.To.ID() && to != c.To {
		return rewrap.Rewrap(ctx, c.To, to, cl.Wrapped, cl.CEK)
	}
	if !cl.Wrapped.Alg.IsKMS() {
		return rewrap.Result{}, &rewrap.Error{Op: "unwrap", Code: CodeNeedFromKey,
			Hint: "name the key the object is wrapped under with --from"}
	}
	if re, ok := to.(rewrap.ReEncrypter); ok && re.CanReEncrypt(nil) {
		return rewrap.Rewrap(ctx, nil, to, cl.Wrapped, cl.CEK)
	}
	var last error
	for _, k := range c.From {
		if k.Kind() != rewrap.KindKMS {
			continue
		}
		res, err := rewrap.Rewrap(ctx, k, to, cl.Wrapped, cl.CEK)
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

// settleEscrow decides an escrow intent from the wrapped key the escrow
// file holds now.
func (c *Core) settleEscrow(ctx context.Context, h *hold, ev ledger.Event, o Outcome) (verdict, Outcome, error) {
	o.Action = ActionEscrow
	ekey := escrow.Key(ev.ID.Key, c.escrowSuffix())
	st, body, err := c.S3.ReadInstruction(ctx, ev.ID.Bucket, ekey, "")
	fp := ""
	switch {
	case errors.Is(err, commit.ErrGone):
		if ev.OldWrappedKeySHA256 == "" && ev.ETagBefore == "" {
			return c.dropAs(ctx, h, ev, o, dropped)
		}
		return c.dropAs(ctx, h, ev, o, changedBy)
	case err != nil:
		return kept, keepIntent(h, o, "could not read the escrow file to learn whether it was written", err), nil
	}
	if w, werr := envelope.WrappedKeyOf(nil, body); werr == nil {
		fp = ledger.WrappedKeyFingerprint(w)
	}
	switch {
	case fp != "" && fp == ev.NewWrappedKeySHA256:
		ev.ETagAfter = st.ETag
		// An escrow changes nothing on the object: its record is kept
		// as it is (none: the key the object was escrowed from, which
		// its claim has kept it under).
		rec, gerr := c.Ledger.Get(ctx, ev.ID)
		switch {
		case errors.Is(gerr, ledger.ErrNotFound):
			rec = ledger.Object{ID: ev.ID, WrapKey: ev.FromKey, State: ledger.StateCurrent}
		case gerr != nil:
			return kept, keepIntent(h, o, "the escrow file landed but the object's ledger record could not be read", gerr),
				ledgerError{fmt.Errorf("get %s: %w", ev.ID, gerr)}
		}
		rec.RunID, rec.UpdatedAt = c.RunID, time.Time{}
		out, err := c.record(ctx, h, rec, ev, o, ActionEscrow)
		if out.Status != StatusSucceeded {
			return kept, out, err
		}
		return committed, out, err
	case st.ETag == ev.ETagBefore || (fp != "" && fp == ev.OldWrappedKeySHA256):
		return c.dropAs(ctx, h, ev, o, dropped)
	}
	return c.dropAs(ctx, h, ev, o, changedBy)
}

// escrowWrapping is newWrapping for ModeRestore: the data key is unwrapped
// from the object's escrow file with Escrow, proven to be the object's
// (V3: its key commitment; V2: the body's tag), and wrapped under To.
func (c *Core) escrowWrapping(ctx context.Context, cl *Classification) (rewrap.Result, error) {
	dek, err := c.escrowedKey(ctx, cl)
	if err != nil {
		return rewrap.Result{}, err
	}
	defer dek.Clear()
	nw, err := c.To.Wrap(ctx, dek, cl.CEK, rewrap.UserEntries(cl.Wrapped.MatDesc))
	if err != nil {
		return rewrap.Result{}, err
	}
	return rewrap.Result{Wrapped: nw, Lineage: rewrap.Lineage{
		FromKey: c.Escrow.ID(), ToKey: c.To.ID(),
		Method: "escrow:" + rewrap.UnwrapOp(c.Escrow.Kind()) + "+" + rewrap.WrapOp(c.To.Kind()),
	}}, nil
}

// escrowError is a per-object failure of an escrow file: missing, or not
// the object's.
type escrowError struct {
	code string
	msg  string
}

func (e *escrowError) Error() string { return e.msg }

// escrowedKey returns the data key the object's escrow file wraps under
// Escrow, once it is proven to be the object's data key (the caller must
// Clear it). Nothing in the escrow file is trusted before that proof.
func (c *Core) escrowedKey(ctx context.Context, cl *Classification) (*envelope.DataKey, error) {
	ekey := escrow.Key(cl.Obj.Key, c.escrowSuffix())
	_, body, err := c.S3.ReadInstruction(ctx, cl.Obj.Bucket, ekey, "")
	if errors.Is(err, commit.ErrGone) {
		return nil, &escrowError{CodeNoEscrow, "no escrow file " + ekey + " (write escrow files with 'rotator escrow' or 'run --escrow' while the primary key works)"}
	}
	if err != nil {
		return nil, err
	}
	e, err := escrow.Parse(cl.Env, body)
	if err != nil {
		return nil, &escrowError{CodeEscrowMismatch, err.Error()}
	}
	w := escrow.Wrapped(e)
	dek, err := c.Escrow.Unwrap(ctx, rewrap.Wrapped{Alg: w.Alg, Key: w.Key, MatDesc: w.MatDesc}, cl.CEK)
	if err != nil {
		if rewrap.IsSystemic(err) {
			return nil, err
		}
		return nil, &escrowError{CodeEscrowMismatch, "the escrow file does not open under " + c.Escrow.ID() + ": " + err.Error()}
	}
	if err := c.checkEscrowed(ctx, cl, dek); err != nil {
		dek.Clear()
		return nil, err
	}
	return dek, nil
}

// checkEscrowed proves that dek is the object's data key: for V3 by the key
// commitment, for V2 by streaming the body through the GCM tag check.
func (c *Core) checkEscrowed(ctx context.Context, cl *Classification, dek *envelope.DataKey) error {
	err := escrow.CheckKey(cl.Env, dek)
	if err == nil {
		return nil
	}
	if !errors.Is(err, escrow.ErrNeedsBody) {
		return &escrowError{CodeEscrowMismatch, err.Error()}
	}
	if c.Bodies == nil {
		return &escrowError{CodeUnsupported, "a V2 object's escrowed data key is checked against its body, and this core reads no bodies"}
	}
	vid := cl.Obj.VersionID
	in := &s3.GetObjectInput{Bucket: &cl.Obj.Bucket, Key: &cl.Obj.Key, IfMatch: &cl.Obj.ETag}
	if vid != "" {
		in.VersionId = &vid
	}
	out, err := awsx.GetObject(ctx, c.Bodies, in)
	if err != nil {
		return fmt.Errorf("read the body to check the escrowed data key: %w", commit.ReadError("get body", cl.Obj.Bucket, cl.Obj.Key, vid, err))
	}
	defer out.Body.Close()
	if err := checkTag(cl.Env, dek, out.Body, cl.Obj.Size); err != nil {
		var re *bodyReadError
		if errors.As(err, &re) {
			return fmt.Errorf("read the body to check the escrowed data key: %w", commit.ReadError("get body", cl.Obj.Bucket, cl.Obj.Key, vid, re.err))
		}
		return &escrowError{CodeEscrowMismatch, "the escrowed data key does not authenticate the body (stale, or written by someone else): " + err.Error()}
	}
	return nil
}
