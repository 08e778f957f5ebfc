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
)

// PreparedLister lists a run's prepared events (ledger.Ledger.Prepared).
type PreparedLister interface {
	Prepared(ctx context.Context, runID string, fn func(ledger.Event) error) error
}

// Reconciled counts what ReconcileRun did.
type Reconciled struct {
	Committed, Abandoned, Changed int
	// Reencrypted counts re-encryptions finished from their checkpoints
	// (Failed the outcomes of those that could not be).
	Reencrypted int
	Failed      []Outcome
}

// ReconcileRun finishes the writes a crashed run left between its S3 write
// and its ledger commit: for every prepared event of the run, the object
// is read, and the change is committed in the ledger if the object holds
// the new wrapped key, or dropped if it does not (the object is then
// processed again by the resumed listing). A re-encryption whose write had
// not landed is taken up again at once from its checkpoint (the listing may
// have passed the object: its new instruction file may be all that is left
// to write). A resumed run calls it before listing, so that no object is
// committed twice and none is missed.
func ReconcileRun(ctx context.Context, c *Core, l PreparedLister, runID string) (Reconciled, error) {
	var n Reconciled
	err := l.Prepared(ctx, runID, func(ev ledger.Event) error {
		st, err := c.Reconcile(ctx, ev)
		if err != nil {
			return fmt.Errorf("reconcile the interrupted change of %s: %w", ev.ID, err)
		}
		switch st {
		case ReconcileCommitted:
			n.Committed++
		case ReconcileAbandoned:
			n.Abandoned++
			if ev.Op == ledger.OpReencrypt && c.Reencrypter != nil && !c.DryRun {
				o, err := c.Process(ctx, inventory.Item{Bucket: ev.ID.Bucket, Key: ev.ID.Key})
				if err != nil {
					return fmt.Errorf("finish the interrupted re-encryption of %s: %w", ev.ID, err)
				}
				if o.Status == StatusSucceeded {
					n.Abandoned--
					n.Reencrypted++
				} else if o.Status == StatusFailed {
					n.Failed = append(n.Failed, o)
				}
			}
		case ReconcileChanged:
			n.Changed++
		}
		return nil
	})
	return n, err
}

// UploadLister lists a run's re-encryption checkpoints
// (ledger.Ledger.Uploads).
type UploadLister interface {
	Uploads(ctx context.Context, runID string, fn func(ledger.Upload) error) error
}

// Settler gives up a leftover checkpoint (reencrypt.Engine.Settle).
type Settler interface {
	Settle(ctx context.Context, lo reencrypt.Leftover) (string, error)
}

// Settled counts what SettleUploads did with the checkpoints left at the
// end of a run.
type Settled struct {
	// Finished: the object already held the new content; Aborted: it
	// never landed, the upload was aborted.
	Finished, Aborted int
	// Kept: new content landed but the instruction file was not written;
	// 'rotator resume' writes it.
	Kept []ledger.ObjectID
	// Busy: claimed by another worker of the run, left to it.
	Busy int
}

// SettleUploads runs at the end of a run: every re-encryption checkpoint
// the run still holds is settled (its multipart upload aborted), so that
// no upload is left behind, except those whose new content landed without
// its instruction file, which are kept and returned.
func SettleUploads(ctx context.Context, c *Core, l UploadLister, s Settler) (Settled, error) {
	var n Settled
	var ups []ledger.Upload
	if err := l.Uploads(ctx, c.RunID, func(u ledger.Upload) error {
		ups = append(ups, u)
		return nil
	}); err != nil {
		return n, fmt.Errorf("list the re-encryption checkpoints of run %s: %w", c.RunID, err)
	}
	for _, u := range ups {
		if err := c.Ledger.Claim(ctx, u.ID, c.owner(), c.lease()); err != nil {
			if errors.Is(err, ledger.ErrClaimed) {
				n.Busy++ // another worker of the run has it in hand
				continue
			}
			return n, fmt.Errorf("ledger: claim %s: %w", u.ID, err)
		}
		st, err := settle(ctx, c, u, s)
		_ = c.Ledger.Release(context.WithoutCancel(ctx), u.ID, c.owner())
		if err != nil {
			return n, err
		}
		switch st {
		case reencrypt.SettleFinished:
			n.Finished++
		case reencrypt.SettleAborted:
			n.Aborted++
		case reencrypt.SettleKept:
			n.Kept = append(n.Kept, u.ID)
		}
	}
	return n, nil
}

// settle settles one checkpoint, reading the object as it is now.
func settle(ctx context.Context, c *Core, u ledger.Upload, s Settler) (string, error) {
	lo := reencrypt.Leftover{Upload: u, To: c.To}
	cl, o, done := c.Classify(ctx, inventory.Item{Bucket: u.ID.Bucket, Key: u.ID.Key}, Outcome{})
	switch {
	case !done:
		lo.Current, lo.CurrentWrappedKey, lo.Instruction = cl.Obj, cl.Env.WrappedKey, cl.Instr != nil
	case o.ErrorCode == CodeGone:
	default:
		obj, err := c.S3.Head(ctx, u.ID.Bucket, u.ID.Key, "")
		if errors.Is(err, commit.ErrGone) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("settle the checkpoint of %s: %w", u.ID, err)
		}
		lo.Current, lo.Instruction = obj, envelope.NeedsInstructionFile(obj.Metadata)
	}
	st, err := s.Settle(ctx, lo)
	if err != nil {
		return "", fmt.Errorf("settle the checkpoint of %s: %w", u.ID, err)
	}
	return st, nil
}
