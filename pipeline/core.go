package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/rewrap"
)

// Mode is what a run does to the objects it selects.
type Mode string

// Modes.
const (
	// ModeRewrap rewraps each selected object's data key under the target
	// key; the content is never read.
	ModeRewrap Mode = "rewrap"
	// ModeReencrypt re-encrypts each selected object under a fresh data key
	// wrapped by the target key (incident re-keying, format upgrades): the
	// content is read, authenticated and written anew.
	ModeReencrypt Mode = "reencrypt"
)

// Actions, as the report's Action column and the plan name them.
const (
	ActionSkip      = "skip"
	ActionRewrap    = "rewrap"
	ActionReencrypt = "reencrypt"
	// ActionDeleteVersion: an older version under a --from key deleted in
	// re-encrypt mode (--delete-old-versions).
	ActionDeleteVersion = "delete-version"
)

// Error codes of outcomes that are not AWS error codes. Codes of key
// backends (rewrap.Error.Code) and AWS error codes are passed through.
const (
	CodeDeleteMarker   = "DeleteMarker"
	CodeNotEncrypted   = "NotEncrypted"
	CodeAlreadyTarget  = "AlreadyUnderTargetKey"
	CodeNotFromKey     = rewrap.CodeNotFromKey
	CodeNeedFromKey    = rewrap.CodeNeedFromKey
	CodeBadEnvelope    = "BadEnvelope"
	CodeChanged        = "Changed"
	CodeGone           = "Gone"
	CodeNoncurrent     = "NoncurrentVersion"
	CodeNeedsReencrypt = "NeedsReencrypt"
	CodeClaimed        = "ClaimedByAnotherRun"
	CodeDryRun         = "DryRun"
	CodeLedger         = "LedgerError"
	CodeS3             = "S3Error"
	CodeAccessDenied   = "AccessDenied"
	CodeUnsupported    = "Unsupported"
	CodeCanceled       = "Canceled"
)

// Ledger is the part of the ledger the per-object core uses.
type Ledger interface {
	Claim(ctx context.Context, id ledger.ObjectID, owner string, lease time.Duration) error
	Release(ctx context.Context, id ledger.ObjectID, owner string) error
	Prepare(ctx context.Context, ev ledger.Event) error
	Commit(ctx context.Context, obj ledger.Object, ev ledger.Event) error
	Abandon(ctx context.Context, id ledger.ObjectID, runID, op string) error
	Observe(ctx context.Context, obj ledger.Object) error
	Get(ctx context.Context, id ledger.ObjectID) (ledger.Object, error)
}

// Committer is the part of commit.Committer the core uses.
type Committer interface {
	Head(ctx context.Context, bucket, key, versionID string) (*commit.Object, error)
	ReadInstruction(ctx context.Context, bucket, instrKey, versionID string) (*commit.Object, []byte, error)
	MetadataEnvelope(ctx context.Context, obj *commit.Object, newMeta map[string]string) (commit.Result, error)
	WriteInstruction(ctx context.Context, instr *commit.Object, body []byte) (commit.Result, error)
}

var _ Committer = (*commit.Committer)(nil)

// DefaultLease is how long a worker's claim on an object lasts: far longer
// than one object takes, far shorter than an operator waits before
// resuming.
const DefaultLease = 10 * time.Minute

// Core processes one object at a time: classify, rewrap, commit, record.
// It is the per-object core the pipeline runs in its workers, and what a
// shard or an S3 Batch Operations handler calls directly. A Core is safe for
// concurrent use; set its fields before the first call.
type Core struct {
	S3     Committer
	Ledger Ledger
	// To is the target key; From, when not empty, restricts the run to
	// objects wrapped under one of these keys.
	To   rewrap.Keyring
	From []rewrap.Keyring
	Mode Mode
	// RunID names the run in the ledger; Owner is the claim owner,
	// "RunID/worker" (default RunID + "/core").
	RunID string
	Owner string
	Lease time.Duration
	// InstructionSuffix is the suffix of instruction files (default
	// envelope.DefaultInstructionSuffix).
	InstructionSuffix string
	// DryRun classifies and decides, and changes nothing anywhere (no key
	// backend call, no write to S3 or the ledger).
	DryRun bool
	// Parse holds the envelope parser's options.
	Parse envelope.ParseOptions
	// Reencrypter re-encrypts objects (ModeReencrypt); nil reports them as
	// pending. Format is the format re-encrypted objects get: 0 keeps
	// theirs (V1 becomes V2), envelope.V3 upgrades to key-committing.
	Reencrypter Reencrypter
	Format      envelope.Format
	// Versions, in re-encrypt mode, deletes older versions under a --from
	// key (--delete-old-versions); nil reports them as pending.
	Versions VersionDeleter
}

func (c *Core) owner() string {
	if c.Owner != "" {
		return c.Owner
	}
	return c.RunID + "/core"
}

func (c *Core) lease() time.Duration {
	if c.Lease > 0 {
		return c.Lease
	}
	return DefaultLease
}

func (c *Core) suffix() string {
	if c.InstructionSuffix != "" {
		return c.InstructionSuffix
	}
	return envelope.DefaultInstructionSuffix
}

// Classification is what classify learned about one object version.
type Classification struct {
	Obj *commit.Object
	// Instr is the instruction file's state when the envelope lives there.
	Instr *commit.Object
	Env   *envelope.Envelope
	// Wrapped is the wrapped data key and CEK its content algorithm.
	Wrapped rewrap.Wrapped
	CEK     envelope.ContentAlg
	// Fingerprint is ledger.WrappedKeyFingerprint of the wrapped key.
	Fingerprint string
	// Key is the canonical id of the key the data key is wrapped under,
	// "" while unknown (a KMS blob nobody has asked KMS about yet).
	Key string
	// ReencryptedBy is the run that re-encrypted the object, when the
	// ledger's record says so and still matches its wrapped key.
	ReencryptedBy string
	// KeySource says how Key was learned: "offline" (the keyring
	// recognised it), "ledger" (a previous run recorded the fingerprint),
	// "probe" (a trial unwrap in the HSM), "kms" (the service's answer), or "".
	KeySource string
}

// Placement names where the envelope lives, as the ledger records it.
func (cl *Classification) Placement() string {
	if cl.Env == nil {
		return ""
	}
	return cl.Env.Placement.String()
}

// Process handles one item and returns its outcome. The error is non-nil
// only for a systemic failure (every object would fail the same way: the
// destination key is unusable, the credentials are refused, the ledger is
// down): the caller should stop the run. Per-object failures are in the
// outcome, and the object is left as it was.
func (c *Core) Process(ctx context.Context, it inventory.Item) (Outcome, error) {
	o := Outcome{Bucket: it.Bucket, Key: it.Key, VersionID: it.VersionID, Action: ActionSkip}
	if it.DeleteMarker {
		return o.skip(CodeDeleteMarker, "delete marker: never touched"), nil
	}
	cl, o, done := c.Classify(ctx, it, o)
	if done {
		return o, nil
	}
	return c.act(ctx, cl, o)
}

// Classify reads the object's envelope. done is true when the outcome is
// already decided (not encrypted, unreadable, gone, ...).
func (c *Core) Classify(ctx context.Context, it inventory.Item, o Outcome) (*Classification, Outcome, bool) {
	obj, err := c.S3.Head(ctx, it.Bucket, it.Key, it.VersionID)
	if err != nil {
		return nil, o.fromS3Error("read the object", err), true
	}
	o.VersionID = obj.VersionID
	if obj.DeleteMarker {
		return nil, o.skip(CodeDeleteMarker, "delete marker: never touched"), true
	}
	if envelope.IsInstructionFile(obj.Metadata) {
		return nil, o.skip(CodeNotEncrypted, "an instruction file: handled with its object"), true
	}
	cl := &Classification{Obj: obj}
	var instr []byte
	if envelope.NeedsInstructionFile(obj.Metadata) {
		ik := envelope.InstructionKey(obj.Key, c.suffix())
		st, body, err := c.S3.ReadInstruction(ctx, obj.Bucket, ik, "")
		switch {
		case errors.Is(err, commit.ErrGone):
			return nil, o.skip(CodeNotEncrypted, "no S3 Encryption Client envelope in the metadata and no instruction file"), true
		case err != nil:
			return nil, o.fromS3Error("read the instruction file "+ik, err), true
		}
		cl.Instr, instr = st, body
	}
	env, err := envelope.Parse(obj.Metadata, instr, c.Parse)
	if err != nil {
		if errors.Is(err, envelope.ErrNotEncrypted) {
			return nil, o.skip(CodeNotEncrypted, "not encrypted by an S3 Encryption Client"), true
		}
		return nil, o.fail(CodeBadEnvelope, err.Error()+" (the object is left as it is; check how it was written)"), true
	}
	cl.Env = env
	cl.Wrapped, cl.CEK = rewrap.FromEnvelope(env)
	cl.Fingerprint = ledger.WrappedKeyFingerprint(cl.Wrapped.Key)
	c.identify(ctx, cl)
	return cl, o, false
}

// identify learns the key the data key is wrapped under: the keyrings'
// offline recognition, then the ledger, then (for HSM wrappings, which name
// no key) a trial unwrap with each HSM keyring, whose result is cleared at
// once.
func (c *Core) identify(ctx context.Context, cl *Classification) {
	for _, k := range c.keyrings() {
		if rewrap.Classify(k, cl.Wrapped) == rewrap.MatchYes {
			cl.Key, cl.KeySource = k.ID(), "offline"
			return
		}
	}
	if c.Ledger != nil {
		rec, err := c.Ledger.Get(ctx, c.id(cl))
		if err == nil && rec.WrapKey != "" && rec.WrappedKeySHA256 == cl.Fingerprint {
			if rec.State == ledger.StateReencrypted {
				cl.ReencryptedBy = rec.RunID
			}
			cl.Key, cl.KeySource = rec.WrapKey, "ledger"
			return
		}
	}
	if cl.Wrapped.Alg.IsKMS() || c.DryRun {
		// KMS: the run learns the key from ReEncrypt. Dry runs (and so
		// plans) call no key backend, not even for a probe: there an HSM
		// wrapping the ledger does not know stays unknown.
		return
	}
	// An HSM wrapping names no key: a trial unwrap inside the HSM tells.
	// A failure only means "not this key"; the data key is cleared at once.
	for _, k := range c.keyrings() {
		if k.Kind() == rewrap.KindKMS || rewrap.Classify(k, cl.Wrapped) != rewrap.MatchUnknown {
			continue
		}
		if dek, err := k.Unwrap(ctx, cl.Wrapped, cl.CEK); err == nil {
			dek.Clear()
			cl.Key, cl.KeySource = k.ID(), "probe"
			return
		}
	}
}

// keyrings returns the target and the --from keys.
func (c *Core) keyrings() []rewrap.Keyring {
	return append([]rewrap.Keyring{c.To}, c.From...)
}

func (c *Core) id(cl *Classification) ledger.ObjectID {
	return ledger.ObjectID{Bucket: cl.Obj.Bucket, Key: cl.Obj.Key, VersionID: cl.Obj.VersionID}
}

// fromKeyring returns the --from keyring with id, or nil.
func (c *Core) fromKeyring(id string) rewrap.Keyring {
	for _, k := range c.From {
		if k.ID() == id {
			return k
		}
	}
	return nil
}

// selected reports whether a known key is one the run rotates away from.
func (c *Core) selected(key string) bool {
	return len(c.From) == 0 || c.fromKeyring(key) != nil
}

// Decide returns the action for a classified object and, for a skip, the
// code and message.
func (c *Core) Decide(cl *Classification) (action, code, msg string) {
	switch {
	case cl.Key != "" && cl.Key == c.To.ID() && c.Mode == ModeReencrypt && cl.KeySource == "ledger" && cl.ReencryptedBy == c.RunID:
		return ActionSkip, CodeAlreadyTarget, "already re-encrypted by this run"
	case cl.Key != "" && cl.Key == c.To.ID() && !(c.Mode == ModeReencrypt && c.fromKeyring(cl.Key) != nil):
		return ActionSkip, CodeAlreadyTarget, "already wrapped under the target key"
	case cl.Key != "" && !c.selected(cl.Key):
		return ActionSkip, CodeNotFromKey, "wrapped under " + cl.Key + ", not under a --from key"
	case cl.Key == "" && !cl.Wrapped.Alg.IsKMS():
		// Local and HSM keys are recognised offline: no given key wraps it.
		if len(c.From) > 0 {
			return ActionSkip, CodeNotFromKey, "wrapped (" + string(cl.Wrapped.Alg) + ") under none of the --from keys"
		}
		return ActionSkip, CodeNeedFromKey, "wrapped (" + string(cl.Wrapped.Alg) + ") under a key rotator was not given: name it with --from"
	}
	if c.Mode == ModeReencrypt {
		return ActionReencrypt, "", ""
	}
	if cl.Wrapped.Alg.Legacy() || cl.CEK.Legacy() {
		return ActionReencrypt, "", ""
	}
	if cl.Obj.Noncurrent {
		return ActionSkip, CodeNoncurrent, "an older version: its wrapped key cannot be changed in place"
	}
	return ActionRewrap, "", ""
}

func (c *Core) act(ctx context.Context, cl *Classification, o Outcome) (Outcome, error) {
	o.FromKey = cl.Key
	action, code, msg := c.Decide(cl)
	o.Action = action
	switch action {
	case ActionSkip:
		if code == CodeAlreadyTarget && cl.KeySource == "ledger" {
			// The ledger says so already: nothing to write.
			return o.skip(code, msg), nil
		}
		if code == CodeNeedFromKey {
			o = o.fail(code, msg)
		} else {
			o = o.skip(code, msg)
		}
		if code == CodeNoncurrent {
			o.Status = StatusPending
		}
		return o, c.observe(ctx, cl, c.stateFor(o), o.FromKey)
	case ActionReencrypt:
		switch {
		case c.Reencrypter == nil || c.Mode != ModeReencrypt:
			o.Status, o.ErrorCode = StatusPending, CodeNeedsReencrypt
			o.Message = "needs re-encryption under a fresh data key (a legacy algorithm): run with --mode reencrypt"
			return o, c.observe(ctx, cl, ledger.StateCurrent, o.FromKey)
		case cl.Obj.Noncurrent:
			return c.oldVersion(ctx, cl, o)
		case c.DryRun:
			o.Status, o.ErrorCode, o.ToKey = StatusPending, CodeDryRun, c.To.ID()
			o.Message = "would re-encrypt under a fresh data key (dry run)"
			return o, nil
		}
		return c.reencrypt(ctx, cl, o)
	}
	if c.DryRun {
		o.Status, o.ErrorCode, o.ToKey = StatusPending, CodeDryRun, c.To.ID()
		o.Message = "would rewrap (dry run)"
		return o, nil
	}
	return c.rewrap(ctx, cl, o)
}

func (c *Core) stateFor(o Outcome) ledger.ObjectState {
	switch o.Status {
	case StatusFailed:
		return ledger.StateFailed
	case StatusChanged:
		return ledger.StateChanged
	}
	return ledger.StateCurrent
}

// observe records an object seen without a change. Unencrypted objects and
// dry runs leave no record.
func (c *Core) observe(ctx context.Context, cl *Classification, st ledger.ObjectState, key string) error {
	if c.DryRun || c.Ledger == nil || cl == nil || cl.Env == nil {
		return nil
	}
	fp := cl.Fingerprint
	if key == "" {
		fp = ""
	}
	err := c.Ledger.Observe(ctx, ledger.Object{
		ID: c.id(cl), WrapKey: key, Format: cl.Env.Format.String(), Placement: cl.Placement(),
		CEKAlg: string(cl.CEK), State: st, ETag: cl.Obj.ETag, RunID: c.RunID, WrappedKeySHA256: fp,
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("ledger: record %s: %w", c.id(cl), err)
	}
	return nil
}

// claim claims object id for this worker. When it cannot, o says why and
// failed is set; err is set when the ledger itself failed (systemic).
func (c *Core) claim(ctx context.Context, id ledger.ObjectID, o *Outcome) (failed bool, err error) {
	err = c.Ledger.Claim(ctx, id, c.owner(), c.lease())
	switch {
	case err == nil:
		return false, nil
	case errors.Is(err, ledger.ErrClaimed):
		*o = o.fail(CodeClaimed, err.Error()+" (another run or shard is processing it; run again after it ends)")
		return true, nil
	}
	*o = o.fail(CodeLedger, err.Error())
	return true, fmt.Errorf("ledger: claim %s: %w", id, err)
}

// rewrap claims the object, rewraps its data key, and commits.
func (c *Core) rewrap(ctx context.Context, cl *Classification, o Outcome) (Outcome, error) {
	id := c.id(cl)
	if failed, err := c.claim(ctx, id, &o); failed {
		return o, err
	}
	claimed := true
	defer func() {
		if claimed {
			// The claim expires by itself if this fails.
			_ = c.Ledger.Release(context.WithoutCancel(ctx), id, c.owner())
		}
	}()

	res, err := c.newWrapping(ctx, cl)
	if err != nil {
		var re *rewrap.Error
		if errors.As(err, &re) {
			o = o.fail(re.Code, err.Error())
			if re.Code == "IncorrectKeyException" || re.Code == CodeNotFromKey {
				o = o.skip(CodeNotFromKey, "not wrapped under a --from key")
			}
			if rewrap.IsSystemic(err) {
				return o, err
			}
			return o, c.observe(ctx, cl, c.stateFor(o), cl.Key)
		}
		return o.fail(CodeUnsupported, err.Error()), nil
	}
	o.FromKey, o.ToKey = res.FromKey, res.ToKey
	cl.Key, cl.KeySource = res.FromKey, "kms"
	if res.FromKey == c.To.ID() {
		o = o.skip(CodeAlreadyTarget, "already wrapped under the target key (asked KMS)")
		o.ToKey = ""
		return o, c.observe(ctx, cl, ledger.StateCurrent, res.FromKey)
	}
	if !c.selected(res.FromKey) {
		o = o.skip(CodeNotFromKey, "wrapped under "+res.FromKey+", not under a --from key")
		o.ToKey = ""
		return o, c.observe(ctx, cl, ledger.StateCurrent, res.FromKey)
	}
	newEnv, err := res.Apply(cl.Env)
	if err != nil {
		return o.fail(CodeBadEnvelope, err.Error()), nil
	}
	ev := ledger.Event{
		ID: id, RunID: c.RunID, Op: ledger.OpRewrap, Method: res.Method, FromKey: res.FromKey, ToKey: res.ToKey,
		ETagBefore: cl.Obj.ETag, VersionBefore: cl.Obj.VersionID,
		OldWrappedKeySHA256: cl.Fingerprint, NewWrappedKeySHA256: ledger.WrappedKeyFingerprint(res.Key),
	}
	if cl.Instr != nil {
		// The change is to the instruction file: its ETags are recorded;
		// the object's version does not change.
		ev.ETagBefore = cl.Instr.ETag
	}
	if err := c.Ledger.Prepare(ctx, ev); err != nil {
		return o.fail(CodeLedger, err.Error()), fmt.Errorf("ledger: prepare %s: %w", id, err)
	}
	cr, err := c.write(ctx, cl, newEnv)
	if err != nil {
		return c.writeFailed(ctx, cl, ev, o, err)
	}
	claimed = false // Commit releases it
	return c.commitLedger(ctx, cl, ev, cr, o)
}

// newWrapping asks the key backends for the new wrapping.
func (c *Core) newWrapping(ctx context.Context, cl *Classification) (rewrap.Result, error) {
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

// writeFailed handles a failed conditional write. A definite refusal
// abandons the prepared event; an uncertain failure (the request may have
// landed) is reconciled against the object right away.
func (c *Core) writeFailed(ctx context.Context, cl *Classification, ev ledger.Event, o Outcome, werr error) (Outcome, error) {
	id := ev.ID
	bg := context.WithoutCancel(ctx)
	definite := errors.Is(werr, commit.ErrChanged) || errors.Is(werr, commit.ErrGone) ||
		errors.Is(werr, commit.ErrAccessDenied) || errors.Is(werr, commit.ErrUnsupported) ||
		errors.Is(werr, commit.ErrNotRewrap) || errors.Is(werr, commit.ErrNotCurrent) ||
		errors.Is(werr, envelope.ErrMetadataTooLarge)
	if !definite {
		st, err := c.Reconcile(bg, ev)
		if err == nil && st == ReconcileCommitted {
			return o.succeed(ev), nil
		}
	}
	if err := c.Ledger.Abandon(bg, id, ev.RunID, ev.Op); err != nil {
		return o.fail(CodeLedger, err.Error()), fmt.Errorf("ledger: abandon %s: %w", id, err)
	}
	o = o.fromS3Error("write the new envelope", werr)
	o.ToKey = ""
	return o, c.observe(bg, cl, c.stateFor(o), cl.Key)
}

// commitLedger records a landed write.
func (c *Core) commitLedger(ctx context.Context, cl *Classification, ev ledger.Event, cr commit.Result, o Outcome) (Outcome, error) {
	ev.ETagAfter, ev.VersionAfter = cr.ETagAfter, cr.VersionAfter
	if cl.Instr != nil || ev.VersionAfter == ev.VersionBefore {
		ev.VersionAfter = "" // no new version of the object
	}
	obj := ledger.Object{
		ID: ev.ID, WrapKey: ev.ToKey, Format: cl.Env.Format.String(), Placement: cl.Placement(),
		CEKAlg: string(cl.CEK), State: ledger.StateRewrapped, ETag: cl.Obj.ETag, RunID: c.RunID,
		WrappedKeySHA256: ev.NewWrappedKeySHA256,
	}
	if ev.Op == ledger.OpReencrypt {
		// New content: the object's ETag is the new one whatever the
		// placement (reconciled from the object as it is now).
		obj.State = ledger.StateReencrypted
		obj.ETag = cl.Obj.ETag
	}
	if cl.Instr == nil {
		obj.ETag = cr.ETagAfter
		if cr.VersionAfter != "" {
			obj.ID.VersionID = cr.VersionAfter
		}
	}
	if err := c.Ledger.Commit(context.WithoutCancel(ctx), obj, ev); err != nil {
		o = o.fail(CodeLedger, "the object was rewrapped but the ledger did not record it: "+err.Error()+" (run 'rotator resume' to record it)")
		return o, fmt.Errorf("ledger: commit %s: %w", ev.ID, err)
	}
	if cl.Instr == nil && cr.VersionAfter != "" {
		o.VersionID = cr.VersionAfter
	}
	o = o.succeed(ev)
	if ev.Op == ledger.OpReencrypt {
		o.Action = ActionReencrypt
	}
	return o, nil
}

// Reconcile outcomes.
const (
	ReconcileCommitted = "committed" // the write had landed: recorded
	ReconcileAbandoned = "abandoned" // it had not: dropped
	ReconcileChanged   = "changed"   // someone else changed the object: dropped
)

// Reconcile finishes a prepared event left by an interrupted write: it reads
// the object's envelope now and compares its wrapped key with the event's
// fingerprints. The claim on the object must be held by ev.RunID (a resumed
// run re-takes its own claims).
func (c *Core) Reconcile(ctx context.Context, ev ledger.Event) (string, error) {
	owner := ev.RunID + "/reconcile"
	if err := c.Ledger.Claim(ctx, ev.ID, owner, c.lease()); err != nil {
		return "", fmt.Errorf("ledger: claim %s: %w", ev.ID, err)
	}
	if ev.Op == ledger.OpDeleteVersion {
		return c.reconcileDeleted(ctx, ev, owner)
	}
	it := inventory.Item{Bucket: ev.ID.Bucket, Key: ev.ID.Key}
	cl, o, done := c.Classify(ctx, it, Outcome{})
	var fp string
	if !done {
		fp = cl.Fingerprint
	} else if o.ErrorCode != CodeGone && o.ErrorCode != CodeNotEncrypted {
		return "", fmt.Errorf("reconcile %s: %s: %s", ev.ID, o.ErrorCode, o.Message)
	}
	switch fp {
	case ev.NewWrappedKeySHA256:
		cr := commit.Result{ETagAfter: cl.Obj.ETag, VersionAfter: cl.Obj.VersionID}
		if cl.Instr != nil {
			cr = commit.Result{ETagAfter: cl.Instr.ETag, VersionAfter: cl.Instr.VersionID}
		}
		if cr.VersionAfter == ev.VersionBefore {
			cr.VersionAfter = ""
		}
		// The object record: for a metadata envelope the version now
		// current holds the change.
		ev2 := ev
		if _, err := c.commitLedger(ctx, cl, ev2, cr, Outcome{}); err != nil {
			return "", err
		}
		return ReconcileCommitted, nil
	case ev.OldWrappedKeySHA256:
		if err := c.Ledger.Abandon(ctx, ev.ID, ev.RunID, ev.Op); err != nil {
			return "", err
		}
		_ = c.Ledger.Release(ctx, ev.ID, owner)
		return ReconcileAbandoned, nil
	default:
		if err := c.Ledger.Abandon(ctx, ev.ID, ev.RunID, ev.Op); err != nil {
			return "", err
		}
		_ = c.Ledger.Release(ctx, ev.ID, owner)
		return ReconcileChanged, nil
	}
}

// Outcome helpers.

func (o Outcome) skip(code, msg string) Outcome {
	o.Status, o.ErrorCode, o.Message = StatusSkipped, code, msg
	return o
}

func (o Outcome) fail(code, msg string) Outcome {
	o.Status, o.ErrorCode, o.Message = StatusFailed, code, msg
	return o
}

func (o Outcome) succeed(ev ledger.Event) Outcome {
	o.Status, o.ErrorCode, o.Message = StatusSucceeded, "", ev.Method
	o.Action, o.FromKey, o.ToKey = ActionRewrap, ev.FromKey, ev.ToKey
	return o
}

// fromS3Error turns an error of the commit package into an outcome.
func (o Outcome) fromS3Error(what string, err error) Outcome {
	msg := "could not " + what + ": " + err.Error()
	switch {
	case errors.Is(err, commit.ErrChanged):
		o = o.fail(CodeChanged, "changed by someone else since it was read: left untouched")
		o.Status = StatusChanged
	case errors.Is(err, commit.ErrGone):
		o = o.skip(CodeGone, "deleted since it was listed")
	case errors.Is(err, commit.ErrAccessDenied):
		o = o.fail(CodeAccessDenied, msg)
	case errors.Is(err, commit.ErrNotCurrent):
		o = o.skip(CodeNoncurrent, msg)
		o.Status = StatusPending
	case errors.Is(err, commit.ErrUnsupported), errors.Is(err, commit.ErrNotRewrap), errors.Is(err, envelope.ErrMetadataTooLarge):
		o = o.fail(CodeUnsupported, msg)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		o = o.fail(CodeCanceled, msg)
	default:
		o = o.fail(CodeS3, msg)
	}
	return o
}
