package pipeline

import (
	"context"
	"errors"
	"fmt"

	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/ledger"
)

// IntentLister lists a run's recovery state in the ledger: prepared events
// (the intents of changes not committed) and re-encryption checkpoints.
type IntentLister interface {
	Prepared(ctx context.Context, runID string, fn func(ledger.Event) error) error
	Uploads(ctx context.Context, runID string, fn func(ledger.Upload) error) error
}

// Recovered is what Recover did with a run's intents.
type Recovered struct {
	// Committed: the change had landed and is now recorded; Dropped: it
	// had not (the object was processed again: its row says how that
	// went); Changed:
	// someone else changed the object; Resumed: re-encryptions taken up
	// again from their checkpoints; Kept: intents left in the ledger
	// (their outcome still unknown, or an operator must act).
	Committed, Dropped, Changed, Resumed, Kept int
	// Revisited: objects an earlier process left to be processed again,
	// processed.
	Revisited int
	// Revisit: the objects still to be processed again (Recover stopped
	// on an error before it was done with them).
	Revisit []RevisitItem
	// Outcomes holds one row per intent settled.
	Outcomes []Outcome
}

// Recover settles every intent run runID holds in the ledger, from the
// objects as they are now (the protocol's steps 5 and 6): a resumed run
// calls it before it lists again, so that what a crash left is finished
// first (an instruction file whose content landed, a commit that was not
// recorded) and re-encryptions go on from their last part; the end of a
// run calls it with giveUp, which aborts the uploads of re-encryptions
// that did not land instead of going on with them. An intent is dropped
// only on positive evidence that its change did or did not land; the
// others are kept (Kept) and the run is unfinished.
func Recover(ctx context.Context, c *Core, l IntentLister, runID string, giveUp bool) (Recovered, error) {
	return RecoverWith(ctx, c, l, runID, RecoverOptions{GiveUp: giveUp})
}

// RecoverOptions are Recover's options.
type RecoverOptions struct {
	// GiveUp aborts the re-encryptions that did not land (the end of a
	// run) instead of going on with them.
	GiveUp bool
	// Revisit are the objects an earlier process of the run began to
	// recover and did not finish (Checkpoint.Revisit): processed again.
	Revisit []RevisitItem
	// Save, when set, is given the objects Recover is about to work on
	// before it changes anything: the intents' and Revisit. An intent
	// whose change did not land is dropped and its object processed again;
	// an object behind the listing's checkpoint has nothing else to bring
	// it back should this process stop in between, so the run record must
	// hold it first. Recover does nothing until Save returns nil.
	Save func([]RevisitItem) error
}

// RevisitItem is an object to process again: its current version, or the
// older version whose deletion did not land.
type RevisitItem struct {
	Bucket    string `json:"bucket"`
	Key       string `json:"key"`
	VersionID string `json:"version,omitempty"`
}

// revisitOf is the item that processes the object of ev again.
func revisitOf(ev ledger.Event) RevisitItem {
	it := RevisitItem{Bucket: ev.ID.Bucket, Key: ev.ID.Key}
	if ev.Op == ledger.OpDeleteVersion {
		it.VersionID = ev.ID.VersionID
	}
	return it
}

func (r RevisitItem) item() inventory.Item {
	return inventory.Item{Bucket: r.Bucket, Key: r.Key, VersionID: r.VersionID, IsLatest: r.VersionID == ""}
}

// RecoverWith is Recover with options. Recovered.Revisit are the objects
// still to be processed again when it stops on an error.
func RecoverWith(ctx context.Context, c *Core, l IntentLister, runID string, opt RecoverOptions) (n Recovered, err error) {
	var evs []ledger.Event
	if err := l.Prepared(ctx, runID, func(ev ledger.Event) error {
		evs = append(evs, ev)
		return nil
	}); err != nil {
		return n, err
	}
	// left: what is not finished yet, in order; an object leaves it once
	// its intent is settled or it was processed to an outcome.
	var left []RevisitItem
	seen := map[RevisitItem]bool{}
	for _, ev := range evs {
		if it := revisitOf(ev); !seen[it] {
			seen[it] = true
			left = append(left, it)
		}
	}
	withIntent := len(left)
	for _, id := range opt.Revisit {
		if !seen[id] {
			seen[id] = true
			left = append(left, id)
		}
	}
	if opt.Save != nil && len(left) > 0 {
		if err := opt.Save(left); err != nil {
			return n, err
		}
	}
	done := map[RevisitItem]bool{}
	defer func() {
		for _, it := range left {
			if !done[it] {
				n.Revisit = append(n.Revisit, it)
			}
		}
	}()
	for _, ev := range evs {
		it := revisitOf(ev)
		o, v, err := c.recoverOne(ctx, ev, opt.GiveUp)
		if v == dropped && err == nil {
			// The change did not land: the object is as it was. Process it
			// again now (the listing may have passed it); its row is the
			// outcome of that.
			o, err = c.Process(ctx, it.item())
		}
		if err != nil {
			// Not an outcome: the object stays to be revisited.
			return n, fmt.Errorf("settle the interrupted %s of %s: %w", ev.Op, ev.ID, err)
		}
		done[it] = true
		n.Outcomes = append(n.Outcomes, o)
		switch v {
		case resumable:
			n.Resumed++
		case committed:
			n.Committed++
		case dropped:
			n.Dropped++
		case changedBy:
			n.Changed++
		default:
			n.Kept++
		}
	}
	for _, it := range left[withIntent:] {
		o, err := c.Process(ctx, it.item())
		if err != nil {
			return n, fmt.Errorf("process s3://%s/%s again: %w", it.Bucket, it.Key, err)
		}
		done[it] = true
		n.Revisited++
		n.Outcomes = append(n.Outcomes, o)
	}
	// A checkpoint without its prepared event was written by an earlier
	// version of rotator (this one drops the checkpoint first): it may
	// hold the only copy of an envelope, so it is kept and reported.
	err = l.Uploads(ctx, runID, func(u ledger.Upload) error {
		evs, err := c.Ledger.PreparedOn(ctx, runID, u.ID)
		if err != nil || len(evs) > 0 {
			return err
		}
		n.Kept++
		o := Outcome{Bucket: u.ID.Bucket, Key: u.ID.Key, VersionID: u.ID.VersionID, Action: ActionReencrypt}
		n.Outcomes = append(n.Outcomes, o.unfinished("a re-encryption checkpoint without its intent (written by an earlier version of rotator?): "+
			"kept; finish it with the version that wrote it"))
		return nil
	})
	return n, err
}

// recoverOne claims the object of one intent and settles it; a
// re-encryption that did not land goes on (or, with giveUp, is given up).
// The verdict resumable says that it went on and succeeded. A
// re-encryption finished here is then escrowed, as act does after one:
// the process that began it died before, and the escrow file holds the
// old data key, or there is none.
func (c *Core) recoverOne(ctx context.Context, ev ledger.Event, giveUp bool) (Outcome, verdict, error) {
	out, v, err := c.recoverHeld(ctx, ev, giveUp)
	if err == nil && c.escrowsAfter(actionOf(ev.Op), out) {
		out, err = c.escrowAfter(ctx, ev.ID.Bucket, ev.ID.Key, out)
	}
	return out, v, err
}

// recoverHeld is recoverOne with the object claimed.
func (c *Core) recoverHeld(ctx context.Context, ev ledger.Event, giveUp bool) (Outcome, verdict, error) {
	o := Outcome{Bucket: ev.ID.Bucket, Key: ev.ID.Key, VersionID: ev.ID.VersionID, Action: actionOf(ev.Op), FromKey: ev.FromKey, ToKey: ev.ToKey}
	if !c.enter(ev.ID) {
		return o.unfinished("being changed by another worker of this process"), kept, nil
	}
	defer c.leave(ev.ID)
	h, _, err := c.claim(ctx, ev.ID, &o, nil)
	if h == nil {
		if err == nil {
			o = o.unfinished(o.Message)
		}
		return o, kept, err
	}
	defer c.end(ctx, h)
	ctx = h.ctx
	v, out, err := c.settle(ctx, h, ev, o)
	if err != nil || v != resumable {
		return out, v, err
	}
	if giveUp {
		return c.giveUpReencrypt(ctx, h, ev, out)
	}
	out, _, err = c.resumeReencrypt(ctx, h, ev, out)
	switch {
	case out.Status == StatusSucceeded:
		return out, resumable, err
	case out.Status == StatusChanged:
		return out, changedBy, err
	case out.Status == StatusUnfinished:
		return out, kept, err
	}
	return out, dropped, err
}

// giveUpReencrypt aborts a re-encryption that did not land (its upload,
// its checkpoint, its intent).
func (c *Core) giveUpReencrypt(ctx context.Context, h *hold, ev ledger.Event, o Outcome) (Outcome, verdict, error) {
	u, err := c.Ledger.GetUpload(ctx, ev.RunID, ev.ID)
	if err != nil {
		if errors.Is(err, ledger.ErrNotFound) {
			v, out, err := c.dropAs(ctx, h, ev, o, dropped)
			return out, v, err
		}
		return o.fail(CodeLedger, err.Error()), kept, ledgerError{err}
	}
	in, err := c.Reencrypter.Resume(u)
	if err != nil {
		return keepIntent(h, o, "cannot read the checkpoint", err), kept, nil
	}
	defer in.Close()
	v, out, err := c.settleIntent(ctx, h, ev, in, o, true)
	if v == dropped {
		out = out.fail(CodeS3, "given up at the end of the run: the upload was aborted and the object is as it was (a later run re-encrypts it)")
	}
	return out, v, err
}

func actionOf(op string) string {
	switch op {
	case ledger.OpReencrypt:
		return ActionReencrypt
	case ledger.OpDeleteVersion:
		return ActionDeleteVersion
	case ledger.OpEscrow:
		return ActionEscrow
	}
	return ActionRewrap
}

// Unfinished counts the intents run runID still holds in the ledger:
// changes whose outcome is unknown. A run is done only when there are
// none.
func Unfinished(ctx context.Context, l IntentLister, runID string) (int, error) {
	n := 0
	prepared := map[ledger.ObjectID]bool{}
	err := l.Prepared(ctx, runID, func(ev ledger.Event) error {
		n++
		prepared[ev.ID] = true
		return nil
	})
	if err != nil {
		return 0, err
	}
	// A checkpoint counts when no prepared event stands for it. (Prepared
	// is read once: on DynamoDB it queries the journal and what it names.)
	err = l.Uploads(ctx, runID, func(u ledger.Upload) error {
		if !prepared[u.ID] {
			n++
		}
		return nil
	})
	return n, err
}
