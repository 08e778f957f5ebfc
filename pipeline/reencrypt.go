package pipeline

import (
	"context"
	"errors"
	"fmt"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/reencrypt"
	"github.com/rotator-dev/rotator/rewrap"
)

// Outcome codes of re-encryption.
const (
	// CodeContentAuth: the object's content does not authenticate under its
	// data key (corrupted or tampered); it was left untouched.
	CodeContentAuth = "ContentAuthenticationFailed"
	// CodeInstructionPending: the new content landed but the new
	// instruction file was not written; resume writes it.
	CodeInstructionPending = "InstructionFilePending"
)

// Reencrypter re-encrypts one object (reencrypt.Engine).
type Reencrypter interface {
	Reencrypt(ctx context.Context, job reencrypt.Job) (reencrypt.Result, error)
}

var _ Reencrypter = (*reencrypt.Engine)(nil)

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

// reencrypt claims the object, re-encrypts it under a fresh data key and
// records the change.
func (c *Core) reencrypt(ctx context.Context, cl *Classification, o Outcome) (Outcome, error) {
	id := c.id(cl)
	if failed, err := c.claim(ctx, id, &o); failed {
		return o, err
	}
	claimed := true
	defer func() {
		if claimed {
			_ = c.Ledger.Release(context.WithoutCancel(ctx), id, c.owner())
		}
	}()
	from, err := c.unwrapperFor(cl)
	if err != nil {
		return o.fail(CodeNeedFromKey, err.Error()), nil
	}
	ev := ledger.Event{
		ID: id, RunID: c.RunID, Op: ledger.OpReencrypt, ToKey: c.To.ID(),
		ETagBefore: cl.Obj.ETag, VersionBefore: cl.Obj.VersionID, OldWrappedKeySHA256: cl.Fingerprint,
	}
	prepared := false
	job := reencrypt.Job{Obj: cl.Obj, Instr: cl.Instr, Env: cl.Env, From: from, To: c.To, Format: c.Format,
		Prepare: func(ctx context.Context, newEnv *envelope.Envelope) error {
			ev.FromKey = cl.Key
			ev.Method = method(cl.Env, newEnv, c.To)
			ev.NewWrappedKeySHA256 = ledger.WrappedKeyFingerprint(newEnv.WrappedKey)
			if err := c.Ledger.Prepare(ctx, ev); err != nil {
				return fmt.Errorf("ledger: prepare %s: %w", id, err)
			}
			prepared = true
			return nil
		}}
	res, err := c.Reencrypter.Reencrypt(ctx, job)
	if err != nil {
		return c.reencryptFailed(ctx, cl, ev, prepared, o, err)
	}
	ev.FromKey = cl.Key
	ev.Method = method(cl.Env, res.NewEnv, c.To)
	ev.NewWrappedKeySHA256 = ledger.WrappedKeyFingerprint(res.NewEnv.WrappedKey)
	ev.ETagAfter, ev.VersionAfter = res.Commit.ETagAfter, res.Commit.VersionAfter
	if ev.VersionAfter == ev.VersionBefore {
		ev.VersionAfter = ""
	}
	if res.Commit.ETagBefore != "" && res.Commit.ETagBefore != ev.ETagBefore {
		// Finished from a checkpoint: the content was written before.
		ev.ETagBefore = res.Commit.ETagBefore
	}
	rec := ledger.Object{
		ID: id, WrapKey: c.To.ID(), Format: res.NewEnv.Format.String(), Placement: cl.Placement(),
		CEKAlg: string(res.NewEnv.CEKAlg), State: ledger.StateReencrypted, ETag: res.Commit.ETagAfter, RunID: c.RunID,
		WrappedKeySHA256: ev.NewWrappedKeySHA256,
	}
	if ev.VersionAfter != "" {
		rec.ID.VersionID = ev.VersionAfter
	}
	claimed = false // Commit releases it
	if err := c.Ledger.Commit(context.WithoutCancel(ctx), rec, ev); err != nil {
		o = o.fail(CodeLedger, "the object was re-encrypted but the ledger did not record it: "+err.Error()+" (run 'rotator resume' to record it)")
		return o, fmt.Errorf("ledger: commit %s: %w", id, err)
	}
	if ev.VersionAfter != "" {
		o.VersionID = ev.VersionAfter
	}
	o.Status, o.ErrorCode, o.Message = StatusSucceeded, "", ev.Method
	o.Action, o.FromKey, o.ToKey = ActionReencrypt, ev.FromKey, ev.ToKey
	if res.Resumed > 0 {
		o.Message += fmt.Sprintf(" (resumed after %d of %d parts)", res.Resumed, res.Parts)
	}
	return o, nil
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

// reencryptFailed turns a failed re-encryption into an outcome. The engine
// has already aborted its upload (or kept it, when interrupted, for
// resume); a prepared event whose write may have landed is reconciled.
func (c *Core) reencryptFailed(ctx context.Context, cl *Classification, ev ledger.Event, prepared bool, o Outcome, err error) (Outcome, error) {
	bg := context.WithoutCancel(ctx)
	if prepared && !errors.Is(err, reencrypt.ErrInstructionNotWritten) {
		definite := errors.Is(err, commit.ErrChanged) || errors.Is(err, commit.ErrGone) ||
			errors.Is(err, commit.ErrAccessDenied) || errors.Is(err, commit.ErrUnsupported) ||
			errors.Is(err, envelope.ErrMetadataTooLarge)
		if !definite && cl.Instr == nil {
			if st, rerr := c.Reconcile(bg, ev); rerr == nil && st == ReconcileCommitted {
				o.Status, o.ErrorCode, o.Message = StatusSucceeded, "", ev.Method
				o.Action, o.FromKey, o.ToKey = ActionReencrypt, ev.FromKey, ev.ToKey
				return o, nil
			}
		}
		if aerr := c.Ledger.Abandon(bg, ev.ID, ev.RunID, ev.Op); aerr != nil {
			return o.fail(CodeLedger, aerr.Error()), fmt.Errorf("ledger: abandon %s: %w", ev.ID, aerr)
		}
	}
	var re *rewrap.Error
	switch {
	case errors.Is(err, reencrypt.ErrInstructionNotWritten):
		o = o.fail(CodeInstructionPending, err.Error())
		return o, nil
	case errors.Is(err, reencrypt.ErrAuthentication):
		o = o.fail(CodeContentAuth, err.Error()+" (check the object's history; it cannot be decrypted as it is)")
	case errors.Is(err, reencrypt.ErrUnsupported):
		o = o.fail(CodeUnsupported, err.Error())
	case errors.As(err, &re):
		o = o.fail(re.Code, err.Error())
		if re.Code == "IncorrectKeyException" {
			o = o.skip(CodeNotFromKey, "not wrapped under a --from key")
		}
		if rewrap.IsSystemic(err) {
			return o, err
		}
	case errors.Is(err, envelope.ErrCommitmentMismatch), errors.Is(err, envelope.ErrAuthentication):
		o = o.fail(CodeBadEnvelope, err.Error()+" (the wrapped data key or key commitment does not match: left untouched)")
	default:
		var ce *commit.Error
		if errors.As(err, &ce) || errors.Is(err, context.Canceled) {
			o = o.fromS3Error("re-encrypt the object", err)
		} else {
			o = o.fail(CodeS3, err.Error())
		}
		if o.ErrorCode == CodeLedger {
			return o, err
		}
	}
	o.ToKey = ""
	return o, c.observe(bg, cl, c.stateFor(o), cl.Key)
}
