package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/reencrypt"
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

// Ledger is the part of the ledger the per-object core uses.
type Ledger interface {
	Claim(ctx context.Context, id ledger.ObjectID, owner string, lease time.Duration) (ledger.Claimed, error)
	Renew(ctx context.Context, id ledger.ObjectID, owner string, lease time.Duration) error
	Release(ctx context.Context, id ledger.ObjectID, owner string) error
	Prepare(ctx context.Context, owner string, ev ledger.Event) error
	Commit(ctx context.Context, owner string, obj ledger.Object, ev ledger.Event) error
	Abandon(ctx context.Context, owner string, id ledger.ObjectID, runID, op string) error
	PreparedOn(ctx context.Context, runID string, id ledger.ObjectID) ([]ledger.Event, error)
	SaveUpload(ctx context.Context, owner string, u ledger.Upload) error
	GetUpload(ctx context.Context, runID string, id ledger.ObjectID) (ledger.Upload, error)
	DeleteUpload(ctx context.Context, owner, runID string, id ledger.ObjectID) error
	Observe(ctx context.Context, obj ledger.Object) error
	ObserveRelease(ctx context.Context, owner string, obj ledger.Object) error
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

// DefaultLease is how long a worker's claim on an object lasts without a
// renewal; claims are renewed every third of it while the object is being
// changed, so it only matters when a process dies (and then only to other
// runs: the next process of the same run takes its claims over at once).
const DefaultLease = 10 * time.Minute

// Core processes one object at a time: classify, then change it through
// the commit protocol (protocol.go). It is the per-object core the
// pipeline runs in its workers, and what a shard or an S3 Batch Operations
// handler calls directly. A Core is safe for concurrent use; set its
// fields before the first call.
type Core struct {
	S3     Committer
	Ledger Ledger
	// To is the target key; From, when not empty, restricts the run to
	// objects wrapped under one of these keys.
	To   rewrap.Keyring
	From []rewrap.Keyring
	Mode Mode
	// RunID names the run in the ledger. Owner is this process's claim
	// owner (ledger.Owner of the run's lease it holds; default
	// RunID + "/core").
	RunID string
	Owner string
	Lease time.Duration
	// InstructionSuffix is the suffix of instruction files (default
	// envelope.DefaultInstructionSuffix).
	InstructionSuffix string
	// Parse holds the envelope parser's options.
	Parse envelope.ParseOptions
	// Reencrypter re-encrypts objects (ModeReencrypt); nil reports them as
	// pending. Format is the format re-encrypted objects get: 0 keeps
	// theirs (V1 becomes V2), envelope.V3 upgrades to key-committing.
	Reencrypter Reencrypter
	Format      envelope.Format
	// Versions, in re-encrypt mode, deletes older versions under a --from
	// key once their key's current version is re-encrypted
	// (--delete-old-versions); nil keeps them.
	Versions VersionDeleter
	// Escrow is the escrow key (pipeline/escrow.go): with ModeEscrow the
	// key escrow files are written under (the same as To); with
	// ModeRewrap, when set, each object is escrowed under it before it is
	// rewrapped; with ModeRestore the key objects are restored from.
	// EscrowSuffix names escrow files (default escrow.DefaultSuffix).
	Escrow       rewrap.Keyring
	EscrowSuffix string
	// Creator creates escrow files where none exists (commit.Committer).
	Creator InstructionCreator
	// Bodies reads object bodies: ModeRestore checks a V2 object's
	// escrowed data key against its body's tag.
	Bodies Getter
	// Move, when set (--placement instruction-file), moves the envelope
	// of every object it rewraps from the object's metadata into an
	// instruction file, in the same copy (move.go); nil keeps envelopes
	// where they are.
	Move Mover
	// KeyFor opens the keyring of a canonical key id an intent recorded
	// (an intent resumed after --to changed its meaning, an alias moved);
	// nil knows only To and From.
	KeyFor func(ctx context.Context, id string) (rewrap.Keyring, error)

	// inflight holds the objects this process is changing now: a list
	// naming one object twice must not have two workers on it (their
	// claims would be the same owner's).
	inflight sync.Map
	// unreleased are the claims whose release failed (ReleaseLeft tries
	// them again at the end of the run).
	unreleased struct {
		sync.Mutex
		ids []ledger.ObjectID
	}
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
	// ProbeErr is the error of an HSM trial unwrap that could not tell
	// (the HSM unavailable or busy, the login refused): the key is
	// unknown for a reason that is not the object's.
	ProbeErr error
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
	o, err := c.process(ctx, it)
	o = c.NoteUnpairedSuffix(it, o)
	if o.Status == StatusSkipped && o.ErrorCode == CodeEscrowFile {
		o.ErrorCode = CodeEscrowFile
		o.Message = "an escrow file (" + c.escrowSuffix() + "): handled with its object"
	}
	return o, err
}

func (c *Core) process(ctx context.Context, it inventory.Item) (Outcome, error) {
	o := Outcome{Bucket: it.Bucket, Key: it.Key, VersionID: it.VersionID, Action: ActionSkip}
	if it.DeleteMarker {
		return o.skip(CodeDeleteMarker, "delete marker: never touched"), nil
	}
	cl, o, done := c.Classify(ctx, it, o)
	if done {
		if o.ErrorCode == CodeLedger {
			// The ledger cannot be read: as any ledger failure, it stops
			// the run rather than fail every object after this one.
			return o, ledgerError{errors.New(o.Message)}
		}
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
		if c.isEscrowFile(obj.Key) {
			return nil, o.skip(CodeEscrowFile, "an escrow file ("+c.escrowSuffix()+"): handled with its object"), true
		}
		return nil, o.skip(CodeNotEncrypted, "an instruction file: handled with its object"), true
	}
	cl := &Classification{Obj: obj}
	var instr []byte
	if envelope.NeedsInstructionFile(obj.Metadata) {
		if c.listedWithout(it, obj) {
			return nil, o.skip(CodeNotEncrypted, "no S3 Encryption Client envelope in the metadata and no instruction file (none was listed beside it)"), true
		}
		ik := envelope.InstructionKey(obj.Key, c.suffix())
		o.instrRead = true
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
	if msg := lengthMismatch(obj, env); msg != "" {
		return nil, o.fail(CodeLengthMismatch, msg), true
	}
	cl.Wrapped, cl.CEK = rewrap.FromEnvelope(env)
	cl.Fingerprint = ledger.WrappedKeyFingerprint(cl.Wrapped.Key)
	if err := c.identify(ctx, cl); err != nil {
		o.ledgerRead = true // (identify fails only in its read)
		return nil, o.fail(CodeLedger, "could not read the object's ledger record to learn its key (left untouched): "+err.Error()), true
	}
	return cl, o, false
}

// InstructionGrace is how old an object must have been when its listing
// page was requested for the listing's word that it has no instruction
// file to be taken (inventory.Item.NoInstructionFile): a writer that puts
// the object first and its instruction file second may still be between
// the two when the listing passes. It also covers the skew between this
// machine's clock and S3's.
const InstructionGrace = time.Hour

// listedWithout reports whether the object read (obj, whose metadata holds
// no envelope) has no instruction file by the listing's word, so that the
// GET of one can be spared: the listing proved KEY+suffix missing when it
// listed the page, and the object is the one listed (same version, ETag
// and Last-Modified, so not rewritten since) and was written well before
// (InstructionGrace), and its metadata holds no envelope field at all (a
// V3 object keeps x-amz-c, x-amz-d and x-amz-i beside an instruction file:
// its metadata says one is needed). Any doubt: false, and the instruction
// file is read.
func (c *Core) listedWithout(it inventory.Item, obj *commit.Object) bool {
	for k := range obj.Metadata {
		if envelope.IsEnvelopeField(k) {
			return false
		}
	}
	switch {
	case it.NoInstructionFile == "" || it.NoInstructionFile != c.suffix():
		return false
	case it.ETag == "" || obj.ETag != it.ETag:
		return false
	case it.VersionID != "" && obj.VersionID != it.VersionID:
		return false
	case it.LastModified.IsZero() || it.ListedAt.IsZero():
		return false
	case !obj.LastModified.Truncate(time.Second).Equal(it.LastModified.Truncate(time.Second)):
		// HEAD says seconds, a listing milliseconds.
		return false
	}
	return it.LastModified.Before(it.ListedAt.Add(-InstructionGrace))
}

// lengthMismatch says what is wrong when the object's size is not the
// plaintext length its envelope records plus the tag (AES-GCM), or a
// padded length (AES-CBC); "" when it is, or nothing is recorded.
func lengthMismatch(obj *commit.Object, env *envelope.Envelope) string {
	n := env.UnencryptedContentLength
	if n < 0 {
		return ""
	}
	var want int64
	switch env.CEKAlg {
	case envelope.ContentAESCBC:
		want = (n/16 + 1) * 16
	default:
		want = n + 16
	}
	if obj.Size == want {
		return ""
	}
	return fmt.Sprintf("the object has %d bytes; its envelope records %d bytes of plaintext, which encrypt to %d: the body was truncated or extended. Left untouched; restore it from a backup or an older version", obj.Size, n, want)
}

// identify learns the key the data key is wrapped under: the keyrings'
// offline recognition, then the ledger, then (for HSM wrappings, which name
// no key) a trial unwrap with each HSM keyring, whose result is cleared at
// once. An error is a ledger that could not be read: the key is not
// guessed without it (a KMS wrapping under the target would be tried
// against the --from keys, and reported as under none of them).
func (c *Core) identify(ctx context.Context, cl *Classification) error {
	for _, k := range c.keyrings() {
		if rewrap.Classify(k, cl.Wrapped) == rewrap.MatchYes {
			cl.Key, cl.KeySource = k.ID(), "offline"
			return nil
		}
	}
	if c.Ledger != nil {
		rec, err := c.Ledger.Get(ctx, c.id(cl))
		if err != nil && !errors.Is(err, ledger.ErrNotFound) {
			return err
		}
		if err == nil && rec.WrapKey != "" && rec.WrappedKeySHA256 == cl.Fingerprint {
			if rec.State == ledger.StateReencrypted {
				cl.ReencryptedBy = rec.RunID
			}
			cl.Key, cl.KeySource = rec.WrapKey, "ledger"
			return nil
		}
	}
	if cl.Wrapped.Alg.IsKMS() {
		// KMS: the run learns the key from ReEncrypt.
		return nil
	}
	// An HSM wrapping names no key: a trial unwrap inside the HSM tells.
	// Only an answer about the key ("not this key") rules a key out; an
	// HSM that cannot answer leaves the key unknown, and says so.
	for _, k := range c.keyrings() {
		if k.Kind() == rewrap.KindKMS || rewrap.Classify(k, cl.Wrapped) != rewrap.MatchUnknown {
			continue
		}
		dek, err := k.Unwrap(ctx, cl.Wrapped, cl.CEK)
		if err == nil {
			dek.Clear()
			cl.Key, cl.KeySource, cl.ProbeErr = k.ID(), "probe", nil
			return nil
		}
		if !rewrap.IsWrongKey(err) && !errors.Is(err, errDryRun) && cl.ProbeErr == nil {
			cl.ProbeErr = err
		}
	}
	return nil
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
	if c.Mode == ModeEscrow || c.Mode == ModeRestore {
		return c.decideEscrow(cl)
	}
	switch {
	case cl.Key != "" && cl.Key == c.To.ID() && c.Mode == ModeReencrypt && cl.KeySource == "ledger" && cl.ReencryptedBy == c.RunID:
		return ActionSkip, CodeAlreadyTarget, "already re-encrypted by this run"
	case cl.Key != "" && cl.Key == c.To.ID() && !(c.Mode == ModeReencrypt && c.fromKeyring(cl.Key) != nil):
		return ActionSkip, CodeAlreadyTarget, "already wrapped under the target key"
	case cl.Key != "" && !c.selected(cl.Key):
		return ActionSkip, CodeNotFromKey, "wrapped under " + cl.Key + ", not under a --from key"
	case cl.Key == "" && !cl.Wrapped.Alg.IsKMS() && cl.ProbeErr != nil:
		return ActionSkip, CodeHSMUnavailable, "the HSM could not say which key wraps the data key: " + cl.ProbeErr.Error() +
			" (nothing was changed; run again once the HSM answers)"
	case cl.Key == "" && !cl.Wrapped.Alg.IsKMS():
		// Local and HSM keys are recognised offline: no given key wraps it.
		if len(c.From) > 0 {
			return ActionSkip, CodeNotFromKey, "wrapped (" + string(cl.Wrapped.Alg) + ") under none of the --from keys"
		}
		return ActionSkip, CodeNeedFromKey, "wrapped (" + string(cl.Wrapped.Alg) + ") under a key rotator was not given: name it with --from"
	}
	if c.Mode == ModeReencrypt {
		if cl.Obj.Noncurrent {
			return ActionDeleteVersion, "", ""
		}
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

// act decides and acts on a classified object.
func (c *Core) act(ctx context.Context, cl *Classification, o Outcome) (Outcome, error) {
	o.FromKey = cl.Key
	action, code, msg := c.Decide(cl)
	if c.escrowsFirst(cl, action, code) && !escrowable(cl) {
		// Legacy content under the target key (Decide sends any other
		// to a re-encryption): no escrow file can describe it.
		msg += "; no escrow file: legacy content (V1 or AES/CBC) has none until it is re-encrypted to V2 or V3 (--mode reencrypt --escrow, with its key in --from)"
	} else if c.escrowsFirst(cl, action, code) {
		eo, done, err := c.escrowFirst(ctx, cl, o)
		if done || err != nil {
			return eo, err
		}
		if c.Mode == ModeReencrypt {
			msg += "; escrow file written (" + eo.Message + ")"
		} else if action, code, msg = c.Decide(cl); action == ActionSkip {
			o.Action = action
			if code == CodeAlreadyTarget {
				return o.skip(code, msg+"; escrow file written ("+eo.Message+")"), nil
			}
			return o.skip(code, msg), nil
		}
	}
	o.Action = action
	switch {
	case action == ActionSkip:
		if code == CodeAlreadyTarget && cl.KeySource == "ledger" {
			// The ledger says so already: nothing to write.
			if c.Mode == ModeReencrypt && c.Versions != nil && !cl.Obj.Noncurrent {
				return c.sweepVersions(ctx, cl, nil, o.skip(code, msg))
			}
			return o.skip(code, msg), nil
		}
		switch code {
		case CodeNeedFromKey, CodeHSMUnavailable:
			o = o.fail(code, msg)
		case CodeNoncurrent:
			o = o.pending(code, msg)
		default:
			o = o.skip(code, msg)
		}
		if err := c.observe(ctx, cl, c.stateFor(o), o.FromKey); err != nil {
			return o, err
		}
		if code == CodeAlreadyTarget && c.Mode == ModeReencrypt && c.Versions != nil && !cl.Obj.Noncurrent {
			return c.sweepVersions(ctx, cl, nil, o)
		}
		return o, nil
	case action == ActionReencrypt && (c.Reencrypter == nil || c.Mode != ModeReencrypt):
		o = o.pending(CodeNeedsReencrypt, "needs re-encryption under a fresh data key (a legacy algorithm): run with --mode reencrypt")
		return o, c.observe(ctx, cl, ledger.StateCurrent, o.FromKey)
	case action == ActionDeleteVersion:
		return c.olderVersion(ctx, cl, o)
	}
	out, err := c.change(ctx, cl, o, action)
	if err == nil && !cl.Obj.Noncurrent && c.escrowsAfter(action, out) {
		out, err = c.escrowAfter(ctx, cl.Obj.Bucket, cl.Obj.Key, out)
	}
	if err == nil && action == ActionReencrypt && c.Versions != nil && (out.Status == StatusSucceeded || out.ErrorCode == CodeDryRun) {
		return c.sweepVersions(ctx, cl, cl, out)
	}
	return out, err
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

// observe records an object seen without a change. Unencrypted objects
// leave no record. With key empty (not told) the fingerprint of the
// wrapped key read tells the ledger whether the key it records still
// holds (Ledger.Observe).
func (c *Core) observe(ctx context.Context, cl *Classification, st ledger.ObjectState, key string) error {
	return c.observeHeld(ctx, nil, cl, st, key)
}

// observeHeld is observe for an object held by h (nil: none), whose claim
// the observation releases in the same write (Ledger.ObserveRelease): an
// object found under its claim to need no change costs the ledger two
// writes (the claim; the record with the release) instead of three (four
// requests on DynamoDB, whose Release tries a DeleteItem first). A claim
// that stays (h.keep) is not released.
func (c *Core) observeHeld(ctx context.Context, h *hold, cl *Classification, st ledger.ObjectState, key string) error {
	if c.Ledger == nil || cl == nil || cl.Env == nil {
		return nil
	}
	obj := ledger.Object{
		ID: c.id(cl), WrapKey: key, Format: cl.Env.Format.String(), Placement: cl.Placement(),
		CEKAlg: string(cl.CEK), State: st, ETag: cl.Obj.ETag, RunID: c.RunID, WrappedKeySHA256: cl.Fingerprint,
	}
	var err error
	if h != nil && !h.keep && !h.released && h.id == obj.ID {
		h.releasing.Store(true)
		if err = c.Ledger.ObserveRelease(ctx, c.owner(), obj); err == nil {
			h.released = true
		}
	} else {
		err = c.Ledger.Observe(ctx, obj)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("ledger: record %s: %w", c.id(cl), err)
	}
	return nil
}

// fromS3Error turns the error of a read into an outcome.
func (o Outcome) fromS3Error(what string, err error) Outcome {
	out, _ := o.fromError(what, err)
	return out
}

// Reencrypter re-encrypts objects (reencrypt.Engine): see the protocol's
// use in reencrypt.go.
type Reencrypter interface {
	Begin(ctx context.Context, job reencrypt.Job) (*reencrypt.Intent, error)
	Resume(u ledger.Upload) (*reencrypt.Intent, error)
	Write(ctx context.Context, job reencrypt.Job, in *reencrypt.Intent, save func(context.Context) error) (reencrypt.Result, error)
	Content(ctx context.Context, in *reencrypt.Intent, cur *commit.Object, to rewrap.Unwrapper) (reencrypt.Content, error)
	Abort(ctx context.Context, in *reencrypt.Intent, bucket, key string) error
	Orphans(ctx context.Context, in *reencrypt.Intent, bucket, key string) error
	PartSizeFor(size int64) int64
}

var _ Reencrypter = (*reencrypt.Engine)(nil)
