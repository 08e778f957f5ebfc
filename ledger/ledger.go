package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// ObjectID names one object version. VersionID "" is the null version (an
// unversioned bucket, or an object written before versioning was enabled).
// Bucket, Key and VersionID may hold any valid UTF-8, including '#', '/' and
// '%': the backends encode them so that no two ids collide.
type ObjectID struct {
	Bucket    string
	Key       string
	VersionID string
}

// String formats id as s3://bucket/key, with @version when it has one.
func (id ObjectID) String() string {
	s := "s3://" + id.Bucket + "/" + id.Key
	if id.VersionID != "" {
		s += "@" + id.VersionID
	}
	return s
}

// ObjectState is what rotator last knew about an object version.
type ObjectState string

// Object states.
const (
	// StateCurrent: seen and left unchanged (already under the target key, or
	// not selected by the plan).
	StateCurrent ObjectState = "current"
	// StateRewrapped: its data key was rewrapped under a new key.
	StateRewrapped ObjectState = "rewrapped"
	// StateReencrypted: its content was re-encrypted under a new data key.
	StateReencrypted ObjectState = "reencrypted"
	// StateFailed: rotator could not process it; see the run's report.
	StateFailed ObjectState = "failed"
	// StateChanged: someone else changed it between classify and commit; it
	// was left alone.
	StateChanged ObjectState = "changed"
	// StateDeleted: rotator deleted this version (operation delete-version).
	// Record it with an empty WrapKey so that it leaves the key's index.
	StateDeleted ObjectState = "deleted"
)

// Object is the object record: the current state of one object version.
type Object struct {
	ID ObjectID
	// WrapKey is the canonical id of the key that wraps the object's data
	// key now: a KMS key ARN, "pkcs11:token=T;object=L", "aes:<sha256
	// fingerprint of the key>". Empty when unknown (for instance a version
	// that failed to classify, or was deleted): such records are not indexed
	// by key.
	WrapKey   string
	Format    string // envelope format, e.g. "s3ec-v2"
	Placement string // where the envelope lives: "metadata" or "instruction-file"
	CEKAlg    string // content encryption algorithm, e.g. "AES/GCM/NoPadding"
	State     ObjectState
	ETag      string
	RunID     string    // the run that wrote this record
	UpdatedAt time.Time // set to the ledger's clock when zero
	// WrappedKeySHA256 identifies the wrapped data key the object held when
	// the record was written (WrappedKeyFingerprint), empty when unknown.
	// A KMS ciphertext blob does not name its key offline: a later run
	// that finds the same fingerprint on the object knows its key from
	// WrapKey without asking KMS.
	WrappedKeySHA256 string
}

// Operations recorded in lineage events.
const (
	OpRewrap        = "rewrap"
	OpReencrypt     = "reencrypt"
	OpDeleteVersion = "delete-version"
	// OpEscrow: the object's data key wrapped a second time, under an
	// escrow key, into its escrow file (package escrow). FromKey is the
	// primary key it was wrapped from, ToKey the escrow key; the wrapped
	// key fingerprints and ETags are the escrow file's (the object itself
	// is not written, so VersionAfter stays empty).
	OpEscrow = "escrow"
	// OpMove: a rewrap that also moved the envelope from the object's
	// metadata into an instruction file (--placement instruction-file):
	// the instruction file created, then the object copied onto itself
	// without the envelope. VersionAfter is the object's new version.
	OpMove = "move"
)

// Event is a lineage event: one change rotator made to one object version.
// Its identity is (ID, RunID, Op): a run records each operation on a version
// at most once.
type Event struct {
	ID     ObjectID // the version that was changed
	RunID  string
	Op     string // OpRewrap, OpReencrypt, OpDeleteVersion, OpEscrow, OpMove
	Method string // how: "kms-reencrypt", "kms-decrypt+hsm-wrap", ...
	// FromKey and ToKey are canonical key ids, as in Object.WrapKey.
	FromKey string
	ToKey   string
	At      time.Time // set to the ledger's clock when zero
	// ETags and version ids around the change. VersionBefore defaults to
	// ID.VersionID. VersionAfter differs from it when the change created a
	// new version (a self-copy in a versioned bucket).
	ETagBefore    string
	ETagAfter     string
	VersionBefore string
	VersionAfter  string
	// OldWrappedKeySHA256 identifies the wrapped data key that was replaced:
	// the lowercase hex SHA-256 of the wrapped (encrypted) key bytes, see
	// WrappedKeyFingerprint. Never the key itself.
	OldWrappedKeySHA256 string
	// NewWrappedKeySHA256 identifies the wrapped data key that replaced it,
	// in the same form. A resumed run compares it with the object to learn
	// whether a prepared change landed (see Prepare). Empty for changes
	// that store no wrapped key (delete-version).
	NewWrappedKeySHA256 string
}

// WrappedKeyFingerprint returns the value for Event.OldWrappedKeySHA256 and
// Event.NewWrappedKeySHA256: the hex SHA-256 of a wrapped (never a
// plaintext) data key.
func WrappedKeyFingerprint(wrapped []byte) string {
	sum := sha256.Sum256(wrapped)
	return hex.EncodeToString(sum[:])
}

// RunState is the state of a run.
type RunState string

// Run states.
const (
	RunRunning     RunState = "running"
	RunInterrupted RunState = "interrupted"
	RunDone        RunState = "done"
	RunFailed      RunState = "failed"
	// RunUnfinished: the run went through its listing, but changes whose
	// outcome is not known yet remain (their intents are in the ledger):
	// 'rotator resume' settles them.
	RunUnfinished RunState = "unfinished"
)

// Run is a run record.
type Run struct {
	// ID is 1 to 128 characters from [A-Za-z0-9._:-], starting with a letter
	// or digit. It never holds '/': claim owners are "runID/worker".
	ID     string
	Config json.RawMessage // the run's plan, valid JSON (or empty)
	State  RunState
	Counts map[string]int64
	// Checkpoint is opaque to the ledger. The caller must keep secrets out
	// of it.
	Checkpoint []byte
	// Revision counts updates: CreateRun sets 1 and every UpdateRun adds 1.
	Revision  int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// MaxRunBytes bounds len(Config)+len(Checkpoint), so that a run record fits
// a DynamoDB item (400 KB) with room to spare. Both backends enforce it.
const MaxRunBytes = 300 << 10

// Ledger is implemented by both backends. Callers declare the smaller
// interfaces they need.
type Ledger interface {
	// Claim makes owner (Owner.String: "run/lease/epoch/holder") the only
	// one allowed to record anything on the object version id, for lease.
	// It succeeds when the version is unclaimed, its claim has expired, the
	// claim is owner's already (the lease is extended), or the claim is held
	// by an earlier epoch of owner's run and lease (a process that lost the
	// run's lease: see Owner). Otherwise it returns a *ClaimedError, which
	// matches ErrClaimed. Claimed says what was there before: the owner
	// taken over, if any, and the object record (so that a caller can tell
	// whether the object changed since it read it).
	Claim(ctx context.Context, id ObjectID, owner string, lease time.Duration) (Claimed, error)
	// Renew extends owner's claim on id to lease from now, on condition
	// that owner still holds it (an expired claim nobody took over is
	// still owner's). It never claims: a renewal that lands after the
	// claim was released (Release, Commit, ObserveRelease) fails instead
	// of claiming the object again. ErrNotClaimed when no claim is on id;
	// a *ClaimedError when another owner holds it.
	Renew(ctx context.Context, id ObjectID, owner string, lease time.Duration) error
	// Begin is Claim and Prepare in one write, for the common case of a
	// version nobody left anything on: it claims ev.ID for owner (whose
	// run is ev.RunID) for lease, as Claim does, and when the claim was
	// free, expired or owner's already (Claimed.Prev empty), nothing of
	// ev.RunID is prepared on the version and ev's identity is not
	// committed, it records ev as prepared (the intent) with the claim,
	// atomically on the embedded store (one transaction). Claimed.Prepared
	// says whether it did. When it did not, the claim alone is taken (or
	// refused, as Claim's) and the caller goes the long way: settle what
	// is there (PreparedOn), read the object again, Prepare. A crash after
	// Begin leaves the claim and the intent, exactly what Claim followed
	// by Prepare leaves. ev is validated as Prepare's is.
	Begin(ctx context.Context, owner string, lease time.Duration, ev Event) (Claimed, error)
	// Release drops owner's claim on id. It is a no-op when owner does not
	// hold it.
	Release(ctx context.Context, id ObjectID, owner string) error
	// Prepare records ev as prepared before the caller writes the change to
	// S3, so that a run resumed after a crash between the write and the
	// Commit can finish it (see Prepared). A prepared event is not lineage:
	// only Prepared, Commit and Abandon see it. The claim on ev.ID must be
	// held by owner (whose run is ev.RunID), else ErrNotClaimed.
	// ev.NewWrappedKeySHA256 is
	// required unless ev.Op is OpDeleteVersion. ETagAfter and VersionAfter
	// may be left empty (Commit fills them in); At defaults to now.
	//
	// For one identity (ID, RunID, Op):
	//   - nothing prepared: ev is recorded;
	//   - an identical event prepared (every field but At): success;
	//   - another event prepared: ErrConflict, whatever it is. Its write may
	//     have landed: only the object can tell, so the caller settles it
	//     first (Commit or Abandon) and prepares again;
	//   - the identity already committed: success if the committed event is
	//     ev completed (see Commit), nothing is written; ErrConflict if not.
	Prepare(ctx context.Context, owner string, ev Event) error
	// Commit records a change exactly once: the event (identity: version,
	// run id, op) if it is not recorded yet, then the object record, then it
	// releases the claim, then it drops the prepared event. A successful
	// Commit has released the claim: no Release is needed after it. The claim on
	// ev.ID must be held by owner (whose run is ev.RunID), else
	// ErrNotClaimed. Retrying a Commit
	// (after a crash, a timeout, or concurrently) converges: an identical
	// recorded event is success (At is not compared); a different one with
	// the same identity is ErrConflict. obj.ID is ev.ID, or the version the
	// change created (ev.VersionAfter).
	//
	// When ev's identity is prepared, ev must be the prepared event
	// completed: every field equal but At, and ETagAfter and VersionAfter
	// where the prepared event left them empty; else ErrConflict. Commit
	// without Prepare works as well.
	Commit(ctx context.Context, owner string, obj Object, ev Event) error
	// Abandon drops the prepared event of the identity (id, runID, op): its
	// S3 write did not happen (the conditional write failed, or a resumed
	// run found the object still under the old wrapped key). It is a no-op
	// when nothing is prepared, never touches lineage and keeps the claim,
	// which owner must hold (else ErrNotClaimed): a process that lost the
	// object to another cannot drop what the other relies on.
	Abandon(ctx context.Context, owner string, id ObjectID, runID, op string) error
	// Prepared calls fn for every prepared event of run runID that is not
	// committed, in no particular order, one call at a time, so that a
	// resumed run can finish or abandon them (see the package
	// documentation). It stops at fn's first error and returns it. fn may
	// call the ledger (Claim, Commit, Abandon). A prepared event left behind
	// by a crash after its Commit had recorded it and released the claim is
	// dropped instead of listed.
	Prepared(ctx context.Context, runID string, fn func(Event) error) error
	// PreparedOn returns the prepared events of run runID on the version
	// id (at most one per operation), for a process that finds the run's
	// claim on an object it is about to change.
	PreparedOn(ctx context.Context, runID string, id ObjectID) ([]Event, error)
	// Observe records an object version seen without a change (skipped,
	// already under the target key, failed, changed by someone else). It
	// never overwrites a record with a later UpdatedAt: of two observations
	// the later one wins, whichever lands last. An observation that does
	// not know the wrap key (WrapKey empty: the object could not be read,
	// or its key could not be told) keeps the key the record names, unless
	// it saw another wrapped key (a WrappedKeySHA256 that differs): not
	// knowing is no evidence that the key changed.
	Observe(ctx context.Context, obj Object) error
	// ObserveRelease is Observe then Release (of obj.ID by owner), in one
	// write where it can: the embedded store in one transaction, DynamoDB
	// in one conditional write of the object's item when owner holds the
	// claim and no later record is there (else it makes the two writes).
	// For an object found under its claim to need no change.
	ObserveRelease(ctx context.Context, owner string, obj Object) error
	// Get returns the object record of id, or ErrNotFound.
	Get(ctx context.Context, id ObjectID) (Object, error)
	// Lineage returns the events of id's lineage ordered by At: the events
	// on id and on the versions connected to it through VersionBefore ->
	// VersionAfter. For an unversioned object that is every event on it.
	Lineage(ctx context.Context, id ObjectID) ([]Event, error)
	// ByKey calls fn for every object record whose WrapKey is wrapKey, in no
	// particular order, one call at a time. It stops at fn's first error and
	// returns it. fn may call the ledger.
	ByKey(ctx context.Context, wrapKey string, fn func(Object) error) error
	// CountsByKey returns the number of object records under each wrap key
	// the ledger has seen (keys no object uses any more count 0).
	CountsByKey(ctx context.Context) (map[string]int64, error)
	// Events calls fn for every lineage event, in no particular order, one
	// call at a time, for audit exports (see ExportCSV, ExportJSONLines).
	Events(ctx context.Context, fn func(Event) error) error
	// CreateRun records a new run with Revision 1 and sets r.Revision,
	// r.CreatedAt and r.UpdatedAt. ErrRunExists when the id is taken.
	CreateRun(ctx context.Context, r *Run) error
	// GetRun returns a run, or ErrNotFound.
	GetRun(ctx context.Context, id string) (Run, error)
	// UpdateRun replaces the run if its stored Revision is still r.Revision,
	// then sets r.Revision to the next revision and r.UpdatedAt. ErrConflict
	// when someone else updated it first (GetRun and retry), ErrNotFound when
	// there is no such run. CreatedAt is kept.
	UpdateRun(ctx context.Context, r *Run) error
	// ListRuns returns every run, oldest first.
	ListRuns(ctx context.Context) ([]Run, error)
	// SaveUpload creates or replaces the re-encryption checkpoint of
	// (u.RunID, u.ID), with UpdatedAt set to the ledger's clock (u.UpdatedAt
	// is ignored). The claim on u.ID must be held by owner (whose run is
	// u.RunID), else ErrNotClaimed (the same check as Prepare's). State longer than
	// MaxUploadStateBytes is refused with ErrInvalid. A checkpoint is not
	// lineage: only GetUpload and Uploads see it, and Commit leaves it alone
	// (the caller deletes it).
	SaveUpload(ctx context.Context, owner string, u Upload) error
	// GetUpload returns the checkpoint of (runID, id), or ErrNotFound.
	GetUpload(ctx context.Context, runID string, id ObjectID) (Upload, error)
	// DeleteUpload drops the checkpoint of (runID, id); it is a no-op when
	// there is none. The claim on id must be held by owner (whose run is
	// runID), else ErrNotClaimed: a checkpoint may hold the only copy of
	// the envelope of content that landed.
	DeleteUpload(ctx context.Context, owner, runID string, id ObjectID) error
	// Uploads calls fn for every checkpoint of run runID, in no particular
	// order, one call at a time. It stops at fn's first error and returns
	// it. fn may call the ledger, DeleteUpload included.
	Uploads(ctx context.Context, runID string, fn func(Upload) error) error
	// AcquireLease makes want.Holder the holder of the lease (want.Run,
	// want.Name) for ttl, with the next epoch, and returns it. It succeeds
	// when the lease is new, expired, released, held by want.Holder
	// already (the epoch is kept), or held by a holder takeOver accepts
	// (nil accepts none), such as a process on this host that no longer
	// exists. Otherwise it returns a *LeaseHeldError naming the holder.
	AcquireLease(ctx context.Context, want Lease, ttl time.Duration, takeOver func(cur Lease) bool) (Lease, error)
	// RenewLease extends l for ttl from now, on condition that l's holder
	// and epoch still hold it; otherwise ErrLeaseLost.
	RenewLease(ctx context.Context, l Lease, ttl time.Duration) (Lease, error)
	// ReleaseLease ends l now if its holder and epoch still hold it (the
	// epoch is kept, so that the next holder's is higher); a no-op
	// otherwise.
	ReleaseLease(ctx context.Context, l Lease) error
	// Leases returns every lease of run runID (one per shard), by name.
	Leases(ctx context.Context, runID string) ([]Lease, error)
	Close() error
}

// Errors callers branch on with errors.Is.
var (
	ErrNotFound   = errors.New("ledger: not found")
	ErrClaimed    = errors.New("ledger: claimed by another run")
	ErrNotClaimed = errors.New("ledger: claim not held by this run")
	ErrRunExists  = errors.New("ledger: run already exists")
	ErrConflict   = errors.New("ledger: conflicting update")
	ErrInvalid    = errors.New("ledger: invalid record")
	ErrLeaseHeld  = errors.New("ledger: lease held by another process")
	ErrLeaseLost  = errors.New("ledger: lease lost")
)

// objectNotFound is the ErrNotFound of Get: a miss is the common answer
// of a first rotation (every KMS-wrapped object is looked up), so its
// message is formatted only when someone reads it.
type objectNotFound ObjectID

func (e objectNotFound) Error() string { return fmt.Sprintf("%v: object %s", ErrNotFound, ObjectID(e)) }
func (e objectNotFound) Unwrap() error { return ErrNotFound }

// Claimed is what Claim found on an object version before taking it.
type Claimed struct {
	// Prev is the owner whose claim was taken over (expired, or held by
	// an earlier epoch of the caller's run and lease): it may have left a
	// change in progress (see PreparedOn). Empty when the version was
	// unclaimed or the caller held the claim already.
	Prev string
	// Record is the version's object record; zero (empty State) when there
	// is none.
	Record Object
	// Prepared is set by Begin when it recorded its event as prepared
	// together with the claim.
	Prepared bool
	// NoIntents is set when the version held no intent of any run when
	// it was claimed, as the claim's own answer says (DynamoDB; false
	// where it is not known): PreparedOn would find none, since only the
	// claim's holder prepares one.
	NoIntents bool
}

// ClaimedError is returned by Claim when another run holds the claim.
type ClaimedError struct {
	ID      ObjectID
	Owner   string    // the holder, "runID/worker"
	Expires time.Time // when its lease ends
}

func (e *ClaimedError) Error() string {
	return fmt.Sprintf("ledger: claim %s: held by %s until %s", e.ID, e.Owner, e.Expires.UTC().Format(time.RFC3339))
}

// Is makes a *ClaimedError match ErrClaimed.
func (e *ClaimedError) Is(target error) bool { return target == ErrClaimed }

// Option configures Open.
type Option func(*options)

type options struct {
	now    func() time.Time
	awsCfg *aws.Config
	// ioTimeout is the I/O timeout of a configuration loaded without
	// awsCfg (WithIOTimeout).
	ioTimeout time.Duration
	pageSize  int
	segments  int
	// lockWait is how long the embedded backend waits for the file lock.
	lockWait time.Duration
	// hook, when set, runs at each crash point (see the point* constants);
	// an error from it aborts the operation there as a crash would: what is
	// written stays written (DynamoDB) or the transaction is rolled back
	// (bbolt). Tests use it.
	hook func(point string) error
}

// Crash points of Prepare and Commit, after each of their writes. On
// DynamoDB a Commit that changes a version in place writes the record and
// releases the claim in one request: pointRecord and pointReleased follow
// each other there.
const (
	pointPrepared = "prepare: prepared event written"
	pointEvent    = "commit: event written"
	pointRecord   = "commit: object record written"
	pointReleased = "commit: claim released"
	pointDropped  = "commit: prepared event dropped"
)

// crashPoints lists them in the order a Commit passes them.
var crashPoints = []string{pointPrepared, pointEvent, pointRecord, pointReleased, pointDropped}

// at runs the test hook at a crash point.
func (o *options) at(point string) error {
	if o.hook == nil {
		return nil
	}
	return o.hook(point)
}

// WithClock sets the clock for leases and default timestamps (default
// time.Now). Claim expiry compares the clocks of all workers: keep leases
// much longer than the clock skew between machines.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithPageSize bounds the items read per request (DynamoDB Limit) or per read
// transaction (bbolt). 0 keeps the default: DynamoDB's 1 MB pages, 1000 for
// bbolt.
func WithPageSize(n int) Option { return func(o *options) { o.pageSize = n } }

// WithScanSegments sets the number of parallel scan segments Events uses on
// DynamoDB (default 4).
func WithScanSegments(n int) Option { return func(o *options) { o.segments = n } }

func withHook(f func(point string) error) Option { return func(o *options) { o.hook = f } }

func withLockWait(d time.Duration) Option { return func(o *options) { o.lockWait = d } }

// Open opens a ledger:
//
//	/path/to/ledger.db, bolt:///path/to/ledger.db   embedded (bbolt), single process
//	dynamodb://TABLE                                 DynamoDB table TABLE
//	dynamodb://TABLE?create=true                     ... created if missing
//
// The DynamoDB client comes from the default AWS configuration chain
// (environment, shared config, AWS_ENDPOINT_URL_DYNAMODB) unless
// WithAWSConfig is given.
func Open(ctx context.Context, url string, opts ...Option) (Ledger, error) {
	o := options{now: time.Now, segments: 4, lockWait: 2 * time.Second}
	for _, f := range opts {
		f(&o)
	}
	switch {
	case strings.HasPrefix(url, "dynamodb://"):
		d, err := openDynamo(ctx, strings.TrimPrefix(url, "dynamodb://"), o)
		if err != nil {
			return nil, err // not a typed nil in the interface
		}
		return d, nil
	case strings.HasPrefix(url, "bolt://"):
		return openBolt(strings.TrimPrefix(url, "bolt://"), o)
	case strings.Contains(url, "://"):
		return nil, fmt.Errorf("ledger: open %q: unknown scheme (hint: use a file path, bolt:///path/ledger.db or dynamodb://TABLE)", url)
	case url == "":
		return nil, errors.New("ledger: open: empty location (hint: use a file path, bolt:///path/ledger.db or dynamodb://TABLE)")
	}
	return openBolt(url, o)
}

// Timestamps are stored in UTC with a fixed width so that they compare as
// strings in both backends.
const timeLayout = "2006-01-02T15:04:05.000000000Z"

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	return time.Parse(time.RFC3339Nano, s)
}

// runOf returns the run id of a claim owner: the part before the first '/'.
func runOf(owner string) string {
	run, _, _ := strings.Cut(owner, "/")
	return run
}

func validRunID(id string) error {
	if id == "" || len(id) > 128 {
		return fmt.Errorf("%w: run id %q: want 1 to 128 characters", ErrInvalid, id)
	}
	for i, c := range id {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !ok && i > 0 {
			ok = c == '.' || c == '_' || c == ':' || c == '-'
		}
		if !ok {
			return fmt.Errorf("%w: run id %q: only [A-Za-z0-9._:-] allowed, starting with a letter or digit", ErrInvalid, id)
		}
	}
	return nil
}

func validOwner(owner string) error {
	if err := validRunID(runOf(owner)); err != nil {
		return fmt.Errorf("claim owner %q must be runID/worker: %w", owner, err)
	}
	if len(owner) > 512 || !utf8.ValidString(owner) {
		return fmt.Errorf("%w: claim owner %q: want at most 512 bytes of UTF-8", ErrInvalid, owner)
	}
	return nil
}

func validID(id ObjectID) error {
	if id.Bucket == "" || id.Key == "" {
		return fmt.Errorf("%w: object id %s: bucket and key are required", ErrInvalid, id)
	}
	if !utf8.ValidString(id.Bucket) || !utf8.ValidString(id.Key) || !utf8.ValidString(id.VersionID) {
		return fmt.Errorf("%w: object id %q: not valid UTF-8", ErrInvalid, id.String())
	}
	return nil
}

func validOp(op string) error {
	if op == "" || len(op) > 64 {
		return fmt.Errorf("%w: op %q", ErrInvalid, op)
	}
	for _, c := range op {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '+' || c == '_') {
			return fmt.Errorf("%w: op %q: only [a-z0-9+_-] allowed", ErrInvalid, op)
		}
	}
	return nil
}

// validFingerprint checks a wrapped key fingerprint; which is "old" or "new".
func validFingerprint(which, s string) error {
	if s == "" {
		return nil
	}
	if len(s) != 64 || strings.ToLower(s) != s {
		return fmt.Errorf("%w: %s wrapped key fingerprint must be 64 lowercase hex digits (the SHA-256 of the wrapped key, see WrappedKeyFingerprint)", ErrInvalid, which)
	}
	if _, err := hex.DecodeString(s); err != nil {
		return fmt.Errorf("%w: %s wrapped key fingerprint: %v", ErrInvalid, which, err)
	}
	return nil
}

func validStrings(ss ...string) error {
	for _, s := range ss {
		if !utf8.ValidString(s) {
			return fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalid, s)
		}
	}
	return nil
}

// prepObject validates obj and fills its defaults.
func prepObject(obj Object, now time.Time) (Object, error) {
	if err := validID(obj.ID); err != nil {
		return obj, err
	}
	if obj.RunID != "" {
		if err := validRunID(obj.RunID); err != nil {
			return obj, err
		}
	}
	if err := validStrings(obj.WrapKey, obj.Format, obj.Placement, obj.CEKAlg, string(obj.State), obj.ETag); err != nil {
		return obj, fmt.Errorf("object %s: %w", obj.ID, err)
	}
	if obj.State == "" {
		return obj, fmt.Errorf("%w: object %s: state is required", ErrInvalid, obj.ID)
	}
	if obj.UpdatedAt.IsZero() {
		obj.UpdatedAt = now
	}
	obj.UpdatedAt = obj.UpdatedAt.UTC()
	return obj, nil
}

// prepEvent validates an event for Prepare and Commit and fills its
// defaults.
func prepEvent(ev Event, now time.Time) (Event, error) {
	if err := validID(ev.ID); err != nil {
		return ev, err
	}
	if err := validRunID(ev.RunID); err != nil {
		return ev, err
	}
	if err := validOp(ev.Op); err != nil {
		return ev, err
	}
	if err := validFingerprint("old", ev.OldWrappedKeySHA256); err != nil {
		return ev, err
	}
	if err := validFingerprint("new", ev.NewWrappedKeySHA256); err != nil {
		return ev, err
	}
	if err := validStrings(ev.Method, ev.FromKey, ev.ToKey, ev.ETagBefore, ev.ETagAfter, ev.VersionBefore, ev.VersionAfter); err != nil {
		return ev, fmt.Errorf("event on %s: %w", ev.ID, err)
	}
	if ev.VersionBefore == "" {
		ev.VersionBefore = ev.ID.VersionID
	}
	if ev.VersionBefore != ev.ID.VersionID {
		return ev, fmt.Errorf("%w: event on %s: version before %q is not the event's version", ErrInvalid, ev.ID, ev.VersionBefore)
	}
	if ev.At.IsZero() {
		ev.At = now
	}
	ev.At = ev.At.UTC()
	return ev, nil
}

// prepPrepare validates a Prepare's event and fills its defaults.
func prepPrepare(ev Event, now time.Time) (Event, error) {
	ev, err := prepEvent(ev, now)
	if err != nil {
		return ev, err
	}
	if ev.NewWrappedKeySHA256 == "" && ev.Op != OpDeleteVersion {
		return ev, fmt.Errorf("%w: prepare %s of %s: the new wrapped key fingerprint is required (hint: set NewWrappedKeySHA256 to WrappedKeyFingerprint of the new wrapped key; a resumed run decides by it)", ErrInvalid, ev.Op, ev.ID)
	}
	return ev, nil
}

// prepBegin validates a Begin's arguments and fills the event's defaults.
func prepBegin(ev Event, owner string, lease time.Duration, now time.Time) (Event, error) {
	ev, err := prepPrepare(ev, now)
	if err == nil {
		err = checkOwnerRun(owner, ev.RunID)
	}
	if err == nil {
		err = checkClaimArgs(ev.ID, owner, lease)
	}
	return ev, err
}

// prepCommit validates a Commit's arguments and fills their defaults.
func prepCommit(obj Object, ev Event, now time.Time) (Object, Event, error) {
	ev, err := prepEvent(ev, now)
	if err != nil {
		return obj, ev, err
	}
	if obj.ID.Bucket != ev.ID.Bucket || obj.ID.Key != ev.ID.Key {
		return obj, ev, fmt.Errorf("%w: object %s and event on %s are different objects", ErrInvalid, obj.ID, ev.ID)
	}
	if obj.ID.VersionID != ev.ID.VersionID && obj.ID.VersionID != ev.VersionAfter {
		return obj, ev, fmt.Errorf("%w: object %s is neither the event's version nor its version after (%q)", ErrInvalid, obj.ID, ev.VersionAfter)
	}
	if obj.RunID == "" {
		obj.RunID = ev.RunID
	}
	if obj.RunID != ev.RunID {
		return obj, ev, fmt.Errorf("%w: object %s: run id %q is not the event's %q", ErrInvalid, obj.ID, obj.RunID, ev.RunID)
	}
	obj, err = prepObject(obj, now)
	return obj, ev, err
}

// sameEvent reports whether a and b record the same change: every field but
// At.
func sameEvent(a, b Event) bool {
	a.At, b.At = time.Time{}, time.Time{}
	return a == b
}

// completes reports whether ev is the prepared event p completed by its
// Commit: every field equal but At, and ETagAfter and VersionAfter where p
// left them empty (they are known only after the S3 write).
func completes(ev, p Event) bool {
	if p.ETagAfter == "" {
		p.ETagAfter = ev.ETagAfter
	}
	if p.VersionAfter == "" {
		p.VersionAfter = ev.VersionAfter
	}
	return sameEvent(ev, p)
}

// staleMarker reports whether the prepared event p is left over from a
// Commit that recorded it and then released the claim (or lost it to
// another run) but crashed before dropping p: nothing is left to resume.
// committed is the recorded event of p's identity, if any; claimRun is the
// run holding the claim on p.ID.
func staleMarker(p Event, committed *Event, claimRun string) bool {
	return committed != nil && completes(*committed, p) && claimRun != p.RunID
}

func conflictingEvent(ev Event) error {
	return fmt.Errorf("%w: %s by run %s on %s is already recorded with different content", ErrConflict, ev.Op, ev.RunID, ev.ID)
}

// notPrepared is Commit's error for an event that is not the prepared one.
func notPrepared(ev Event) error {
	return fmt.Errorf("%w: commit %s of %s by run %s: another change is prepared (hint: commit the prepared event, or Prepare this one again before its S3 write)", ErrConflict, ev.Op, ev.ID, ev.RunID)
}

// preparedElsewhere is Prepare's error when another event is prepared for
// the identity: its write may have landed.
func preparedElsewhere(ev Event) error {
	return fmt.Errorf("%w: prepare %s of %s by run %s: another change is prepared and may have landed (hint: settle it first, as a resumed run does: Commit it if the object holds its new wrapped key, else Abandon it)", ErrConflict, ev.Op, ev.ID, ev.RunID)
}

// committedOtherwise is Prepare's error when the identity is committed
// with other content.
func committedOtherwise(ev Event) error {
	return fmt.Errorf("%w: prepare %s of %s by run %s: already committed with different content (hint: a run changes a version at most once per operation)", ErrConflict, ev.Op, ev.ID, ev.RunID)
}

// prepRun validates a run for CreateRun and UpdateRun.
func prepRun(r *Run) error {
	if err := validRunID(r.ID); err != nil {
		return err
	}
	if len(r.Config) > 0 && !json.Valid(r.Config) {
		return fmt.Errorf("%w: run %s: config is not valid JSON", ErrInvalid, r.ID)
	}
	if len(r.Config)+len(r.Checkpoint) > MaxRunBytes {
		return fmt.Errorf("%w: run %s: config and checkpoint take %d bytes, more than %d (hint: keep the checkpoint small: a position, not a list)", ErrInvalid, r.ID, len(r.Config)+len(r.Checkpoint), MaxRunBytes)
	}
	if err := validStrings(string(r.State)); err != nil {
		return err
	}
	for k := range r.Counts {
		if err := validStrings(k); err != nil || k == "" {
			return fmt.Errorf("%w: run %s: count name %q", ErrInvalid, r.ID, k)
		}
	}
	return nil
}

// lineage returns the events of all (every event recorded on one S3 object,
// any version) connected to version v, ordered by At.
func lineage(v string, all []Event) []Event {
	// Versions are nodes; an event links its version to the version it
	// created. A delete-version event creates nothing, and an empty
	// VersionAfter links nothing (the change kept the null version).
	reach := map[string]bool{v: true}
	for changed := true; changed; {
		changed = false
		for _, e := range all {
			if e.Op == OpDeleteVersion || e.VersionAfter == "" {
				continue
			}
			a, b := e.ID.VersionID, e.VersionAfter
			if reach[a] != reach[b] {
				reach[a], reach[b] = true, true
				changed = true
			}
		}
	}
	var out []Event
	for _, e := range all {
		if reach[e.ID.VersionID] {
			out = append(out, e)
		}
	}
	sortEvents(out)
	return out
}
