package pipeline

import (
	"context"
	"errors"
	"time"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/rewrap"
)

// A dry run is the same core with its writers wrapped: every write to S3
// or the ledger (a claim included) and every key backend call fails with
// errDryRun before it is sent, and the outcome says what would have been
// done (Outcome.fromError). Reads go through, so classification is real.

// errDryRun is the error of a write or key backend call in a dry run.
var errDryRun = errors.New("dry run: not sent")

// dryLedger passes reads through and refuses writes; observations are
// dropped (a dry run leaves no trace).
type dryLedger struct{ Ledger }

func (dryLedger) Claim(context.Context, ledger.ObjectID, string, time.Duration) (ledger.Claimed, error) {
	return ledger.Claimed{}, errDryRun
}
func (dryLedger) Release(context.Context, ledger.ObjectID, string) error { return nil }
func (dryLedger) Prepare(context.Context, string, ledger.Event) error    { return errDryRun }
func (dryLedger) Commit(context.Context, string, ledger.Object, ledger.Event) error {
	return errDryRun
}
func (dryLedger) Abandon(context.Context, string, ledger.ObjectID, string, string) error {
	return errDryRun
}
func (dryLedger) SaveUpload(context.Context, string, ledger.Upload) error { return errDryRun }
func (dryLedger) DeleteUpload(context.Context, string, string, ledger.ObjectID) error {
	return errDryRun
}
func (dryLedger) Observe(context.Context, ledger.Object) error { return nil }
func (dryLedger) ObserveRelease(context.Context, string, ledger.Object) error {
	return nil
}

// Reads of a dry run without a ledger (plan) find nothing.

func (d dryLedger) Get(ctx context.Context, id ledger.ObjectID) (ledger.Object, error) {
	if d.Ledger == nil {
		return ledger.Object{}, ledger.ErrNotFound
	}
	return d.Ledger.Get(ctx, id)
}
func (d dryLedger) PreparedOn(ctx context.Context, run string, id ledger.ObjectID) ([]ledger.Event, error) {
	if d.Ledger == nil {
		return nil, nil
	}
	return d.Ledger.PreparedOn(ctx, run, id)
}
func (d dryLedger) GetUpload(ctx context.Context, run string, id ledger.ObjectID) (ledger.Upload, error) {
	if d.Ledger == nil {
		return ledger.Upload{}, ledger.ErrNotFound
	}
	return d.Ledger.GetUpload(ctx, run, id)
}

// dryCommitter passes reads through and refuses the commit writes.
type dryCommitter struct{ Committer }

func (dryCommitter) MetadataEnvelope(context.Context, *commit.Object, map[string]string) (commit.Result, error) {
	return commit.Result{}, errDryRun
}
func (dryCommitter) WriteInstruction(context.Context, *commit.Object, []byte) (commit.Result, error) {
	return commit.Result{}, errDryRun
}

// dryMover refuses every write of a move.
type dryMover struct{ Mover }

func (dryMover) NewInstruction(context.Context, string, string, []byte) (commit.Result, error) {
	return commit.Result{}, errDryRun
}
func (dryMover) DropEnvelope(context.Context, *commit.Object, map[string]string) (commit.Result, error) {
	return commit.Result{}, errDryRun
}
func (dryMover) DeleteInstruction(context.Context, *commit.Object) error { return errDryRun }

// dryVersions passes reads through and refuses deletions.
type dryVersions struct{ VersionDeleter }

func (dryVersions) DeleteVersion(context.Context, *commit.Object) error { return errDryRun }

// dryKeyring answers offline recognition and refuses every backend call.
type dryKeyring struct{ k rewrap.Keyring }

func (d dryKeyring) ID() string        { return d.k.ID() }
func (d dryKeyring) Kind() rewrap.Kind { return d.k.Kind() }
func (d dryKeyring) Recognize(w rewrap.Wrapped) rewrap.Match {
	return rewrap.Classify(d.k, w)
}
func (dryKeyring) Wrap(context.Context, *envelope.DataKey, envelope.ContentAlg, map[string]string) (rewrap.Wrapped, error) {
	return rewrap.Wrapped{}, errDryRun
}
func (dryKeyring) Unwrap(context.Context, rewrap.Wrapped, envelope.ContentAlg) (*envelope.DataKey, error) {
	return nil, errDryRun
}

// dryReEncrypter is a dryKeyring of a keyring that can ReEncrypt, so that
// a dry run takes the same path as the run.
type dryReEncrypter struct {
	dryKeyring
	re rewrap.ReEncrypter
}

func (d dryReEncrypter) CanReEncrypt(from rewrap.Keyring) bool {
	if df, ok := from.(dryKeyring); ok {
		from = df.k
	} else if df, ok := from.(dryReEncrypter); ok {
		from = df.k
	}
	return d.re.CanReEncrypt(from)
}
func (dryReEncrypter) ReEncrypt(context.Context, rewrap.Keyring, rewrap.Wrapped, envelope.ContentAlg) (rewrap.Result, error) {
	return rewrap.Result{}, errDryRun
}

func dryKey(k rewrap.Keyring) rewrap.Keyring {
	if k == nil {
		return nil
	}
	if re, ok := k.(rewrap.ReEncrypter); ok {
		return dryReEncrypter{dryKeyring{k}, re}
	}
	return dryKeyring{k}
}

// DryRun returns c with its writers wrapped: classification and decisions
// are real, and nothing is written or sent to a key backend.
func DryRun(c *Core) *Core {
	d := &Core{S3: dryCommitter{c.S3}, To: dryKey(c.To), Mode: c.Mode, RunID: c.RunID, Owner: c.Owner, Lease: c.Lease,
		InstructionSuffix: c.InstructionSuffix, Parse: c.Parse, Reencrypter: c.Reencrypter, Format: c.Format,
		Escrow: dryKey(c.Escrow), EscrowSuffix: c.EscrowSuffix, Bodies: c.Bodies}
	d.Ledger = dryLedger{c.Ledger}
	for _, k := range c.From {
		d.From = append(d.From, dryKey(k))
	}
	if c.Versions != nil {
		d.Versions = dryVersions{c.Versions}
	}
	if c.Move != nil {
		d.Move = dryMover{c.Move}
	}
	return d
}
