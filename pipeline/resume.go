package pipeline

import (
	"context"
	"fmt"

	"github.com/rotator-dev/rotator/ledger"
)

// PreparedLister lists a run's prepared events (ledger.Ledger.Prepared).
type PreparedLister interface {
	Prepared(ctx context.Context, runID string, fn func(ledger.Event) error) error
}

// Reconciled counts what ReconcileRun did.
type Reconciled struct {
	Committed, Abandoned, Changed int
}

// ReconcileRun finishes the writes a crashed run left between its S3 write
// and its ledger commit: for every prepared event of the run, the object
// is read, and the change is committed in the ledger if the object holds
// the new wrapped key, or dropped if it does not (the object is then
// processed again by the resumed listing). A resumed run calls it before
// listing, so that no object is committed twice and none is missed.
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
		case ReconcileChanged:
			n.Changed++
		}
		return nil
	})
	return n, err
}
