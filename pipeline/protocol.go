package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/ledger"
)

// The commit protocol, written once for every change rotator makes to an
// object (rewrap, re-encryption, deletion of an older version):
//
//  1. claim the object for this process (renewed while it works);
//  2. settle any change this run left in progress on it, and re-read it
//     if it may have changed since it was classified;
//  3. record the intended change in the ledger (a prepared event, and for
//     a re-encryption its checkpoint) before any write;
//  4. make the conditional write(s);
//  5. decide from positive evidence only whether they landed: a success
//     response, or the object read back (see settle and
//     ../shared/COMMIT.md); an error is never evidence;
//  6. commit the lineage (which drops the intent and releases the claim),
//     or drop the intent when the object proves the write did not land,
//     or keep everything when nothing proves either (the outcome is
//     Unfinished, the claim stays, and resume settles it later).
//
// Recovery (resume, the end of a run, a process finding its run's claim
// on an object) runs step 5 and 6 from what the ledger holds.

// verdict is what settling an intent decided.
type verdict int

const (
	// committed: the change landed; its lineage is recorded and the
	// intent dropped.
	committed verdict = iota
	// dropped: the change did not land; the intent is dropped and the
	// object is as it was.
	dropped
	// changedBy: someone else changed the object; the intent is dropped.
	changedBy
	// kept: no evidence either way, or the change cannot be finished now;
	// the intent stays in the ledger.
	kept
	// resumable: a re-encryption that did not land and can go on from its
	// checkpoint (the intent stays, for Write).
	resumable
)

// hold is a claim this process holds on one object, renewed every third of
// the lease until end; its context is canceled if a renewal finds the
// claim taken over.
type hold struct {
	id     ledger.ObjectID
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	// renewal runs renew a third of the lease after the claim and after
	// each renewal began; last is when the claim last made or renewed
	// was sent (read and written by renew alone: its runs never overlap).
	renewal *time.Timer
	last    time.Time
	// keep: an intent stays in the ledger, so the claim stays too (the
	// next process of the run takes it over; other runs wait for it).
	keep bool
	// released: a Commit released the claim (no Release needed).
	released bool
	// releasing: a write that releases the claim (Commit, ObserveRelease,
	// the end's Release) was sent, so a renewal that finds no claim knows
	// why; set before the write, read by renew.
	releasing atomic.Bool
}

// claim claims id for this process. On failure the outcome says why (a
// claim held by another run or shard: failed, left alone) and err is set
// when the ledger itself failed. With an intent rw (a rewrap made before
// the claim) and a ledger that can (beginner), the claim and the intent
// are one write; got.Prepared says whether the intent was recorded.
func (c *Core) claim(ctx context.Context, id ledger.ObjectID, o *Outcome, rw *newRewrap) (*hold, ledger.Claimed, error) {
	var got ledger.Claimed
	var err error
	began := time.Now() // the lease begins no earlier
	if b, ok := c.Ledger.(beginner); ok && rw != nil {
		got, err = b.Begin(ctx, c.owner(), c.lease(), rw.ev)
	} else {
		got, err = c.Ledger.Claim(ctx, id, c.owner(), c.lease())
	}
	if err != nil {
		if errors.Is(err, ledger.ErrClaimed) || errors.Is(err, errDryRun) {
			*o, _ = o.fromError("claim the object", err)
			return nil, got, nil
		}
		*o = o.fail(CodeLedger, err.Error())
		return nil, got, fmt.Errorf("ledger: claim %s: %w", id, err)
	}
	hctx, cancel := context.WithCancel(ctx)
	h := &hold{id: id, ctx: hctx, cancel: cancel, done: make(chan struct{}), last: began}
	// A timer, not a goroutine per object: almost every object is done
	// long before its first renewal, and a goroutine each (its stack, its
	// ticker, the collector scanning it) cost a run at 512 in flight a
	// few percent of its CPU. Armed once h.renewal is set, so that renew
	// never sees it unset.
	h.renewal = time.AfterFunc(time.Duration(math.MaxInt64), func() { c.renew(h) })
	h.renewal.Reset(c.lease() / 3)
	return h, got, nil
}

// beginner is the ability of a ledger to claim an object and record an
// intent in one write (ledger.Ledger.Begin); a ledger without it is
// claimed and prepared in two.
type beginner interface {
	Begin(ctx context.Context, owner string, lease time.Duration, ev ledger.Event) (ledger.Claimed, error)
}

// renew renews h's claim; h.renewal runs it every third of the lease
// (counted from when each renewal began, as a ticker would) until h ends.
// When the claim is taken over, or cannot be renewed within two thirds of
// the lease since it was last made (the ledger unreachable, or a renewal
// that does not answer: it is cut there), the object's context is
// canceled: before the claim can expire and another process take the
// object, this one stops writing to it. A renewal only extends a claim
// the process still holds (Ledger.Renew): one that lands after a Commit
// or the end's Release released the claim is refused, where a Claim would
// have claimed the object again for a lease. No claim at all is the end
// of the renewals when this process sent a write that releases it
// (h.releasing), and otherwise a claim lost like one taken over: another
// process took it after it expired, or a later epoch of the run took it
// over, and released it.
func (c *Core) renew(h *hold) {
	if h.ended() {
		return
	}
	began := time.Now()
	lease := c.lease()
	rctx, cancel := context.WithDeadline(h.ctx, h.last.Add(lease*2/3))
	err := c.Ledger.Renew(rctx, h.id, c.owner(), lease)
	cancel()
	switch {
	case err == nil:
		h.last = began // the new lease began no earlier
	case errors.Is(err, ledger.ErrNotClaimed) && h.releasing.Load() && time.Since(h.last) < lease*2/3:
		return // released by this process: nothing left to renew
	case errors.Is(err, ledger.ErrClaimed), errors.Is(err, ledger.ErrNotClaimed), time.Since(h.last) >= lease*2/3:
		h.cancel() // lost, or about to be: stop changing the object
		return
	}
	if !h.ended() {
		h.renewal.Reset(max(0, lease/3-time.Since(began)))
	}
}

// ended reports whether h ended (end) or its context was canceled.
func (h *hold) ended() bool {
	select {
	case <-h.done:
		return true
	case <-h.ctx.Done():
		return true
	default:
		return false
	}
}

// end stops the renewal and releases the claim, unless an intent stays.
func (c *Core) end(ctx context.Context, h *hold) {
	close(h.done)
	h.cancel()
	h.renewal.Stop() // a renewal running now sees h ended and stops
	if !h.keep && !h.released {
		h.releasing.Store(true)
		// The claim expires by itself if this fails; until then another
		// run is refused the object, so the end of the run tries again.
		if err := c.Ledger.Release(context.WithoutCancel(ctx), h.id, c.owner()); err != nil && !errors.Is(err, ledger.ErrNotClaimed) {
			c.unreleased.Lock()
			c.unreleased.ids = append(c.unreleased.ids, h.id)
			c.unreleased.Unlock()
		}
	}
}

// ReleaseLeft tries again the releases of claims that failed (end), once
// no worker holds an object: a run that reported an object and ended
// must not leave it claimed, refusing a run that retries it until the
// claim expires. It returns how many are still held.
func (c *Core) ReleaseLeft(ctx context.Context) int {
	c.unreleased.Lock()
	ids := c.unreleased.ids
	c.unreleased.ids = nil
	c.unreleased.Unlock()
	left := 0
	for _, id := range ids {
		if err := c.Ledger.Release(context.WithoutCancel(ctx), id, c.owner()); err != nil && !errors.Is(err, ledger.ErrNotClaimed) {
			left++
		}
	}
	return left
}

// enter marks id as being changed by this process; false when another
// worker has it (the object was listed twice).
func (c *Core) enter(id ledger.ObjectID) bool {
	_, busy := c.inflight.LoadOrStore(id, struct{}{})
	return !busy
}

func (c *Core) leave(id ledger.ObjectID) { c.inflight.Delete(id) }

// change runs the protocol for one classified object and action.
func (c *Core) change(ctx context.Context, cl *Classification, o Outcome, action string) (Outcome, error) {
	id := c.id(cl)
	if !c.enter(id) {
		return o.skip(CodeDuplicate, "listed more than once: processed once, by another worker"), nil
	}
	defer c.leave(id)
	// A rewrap makes its new wrapping first (KMS ReEncrypt writes
	// nothing), so that the claim can carry the intent: one ledger write
	// instead of two, when nothing was left on the object.
	var rw *newRewrap
	var obs func(*hold) error
	if _, ok := c.Ledger.(beginner); ok && action == ActionRewrap {
		var out Outcome
		var done bool
		var err error
		if rw, out, done, obs, err = c.planRewrap(ctx, cl, o); done && obs == nil {
			return out, err
		}
		o = out
	}
	h, got, err := c.claim(ctx, id, &o, rw)
	if h == nil {
		return o, err
	}
	defer c.end(ctx, h)
	ctx = h.ctx
	if obs != nil && got.Prev == "" && !recordMoved(got.Record, cl) {
		// Not to be rewrapped after all: recorded under the claim once
		// what the run left on the object is settled, as the long way
		// does (which it takes when the claim or the record says the
		// object may have changed since it was read).
		if out, done, err := c.prior(ctx, h, got, o); done || err != nil {
			return out, err
		}
		return o, obs(h)
	}
	if got.Prepared {
		if got.Prev == "" && !recordMoved(got.Record, cl) {
			// Nothing earlier on the object, and the ledger agrees with
			// what was read: the intent is recorded, write.
			return c.writeRewrap(ctx, h, cl, rw, o)
		}
		// Another run changed the object since it was read: nothing
		// was written, so the intent is dropped and the object read
		// again below.
		if err := c.drop(ctx, h, rw.ev); err != nil {
			if errors.Is(err, ledger.ErrNotClaimed) || errors.Is(err, context.Canceled) {
				return keepIntent(h, o, "could not drop the intent", err), nil
			}
			return o.fail(CodeLedger, err.Error()), ledgerError{err}
		}
	}

	// Step 2: what an earlier process left, and a fresh read.
	out, done, err := c.prior(ctx, h, got, o)
	if done || err != nil {
		return out, err
	}
	if got.Prev != "" || recordMoved(got.Record, cl) {
		fresh, fo, fdone := c.Classify(ctx, inventory.Item{Bucket: id.Bucket, Key: id.Key, VersionID: cl.Obj.VersionID}, o)
		if fdone {
			return fo, nil
		}
		a, code, msg := c.Decide(fresh)
		if action == ActionEscrow && c.Mode != ModeEscrow && (a == ActionRewrap || a == ActionReencrypt || code == CodeAlreadyTarget) {
			a = ActionEscrow // run --escrow escrows what it rewraps or re-encrypts
		}
		if a != action {
			if a == ActionSkip {
				return fo.skip(code, msg), nil
			}
			return fo.changed("changed since it was listed (" + a + " now): left untouched"), nil
		}
		cl = fresh
	}
	switch action {
	case ActionRewrap:
		return c.rewrap(ctx, h, cl, o)
	case ActionReencrypt:
		return c.reencrypt(ctx, h, cl, o)
	case ActionDeleteVersion:
		return c.deleteVersion(ctx, h, cl, o)
	case ActionEscrow:
		return c.escrowObject(ctx, h, cl, o)
	}
	return o.fail(CodeUnsupported, "unknown action "+action), nil
}

// recordMoved reports whether the ledger's record of the object names
// another wrapped key than the one classified: another run changed it
// between the read and the claim, so it is read again.
func recordMoved(rec ledger.Object, cl *Classification) bool {
	return rec.WrappedKeySHA256 != "" && rec.WrappedKeySHA256 != cl.Fingerprint
}

// prior settles the changes this run left in progress on the held object
// (a process that died, a write whose outcome was unknown), and refuses an
// object another run left in progress. done is set when the outcome is
// decided (the earlier change was finished, or must stay as it is).
func (c *Core) prior(ctx context.Context, h *hold, got ledger.Claimed, o Outcome) (Outcome, bool, error) {
	if got.NoIntents {
		// The claim's answer says the object holds no intent of any run
		// (only the claim's holder prepares one): nothing to read.
		return o, false, nil
	}
	if prev := got.Prev; prev != "" {
		if run := runOfOwner(prev); run != c.RunID {
			evs, err := c.Ledger.PreparedOn(ctx, run, h.id)
			if err != nil {
				return o.fail(CodeLedger, err.Error()), true, ledgerError{err}
			}
			if len(evs) > 0 {
				h.keep = false
				return o.fail(CodeOtherRunUnfinished, fmt.Sprintf("run %s left a %s of this object unfinished: it is left to that run (rotator resume --run-id %s)", run, evs[0].Op, run)), true, nil
			}
		}
	}
	evs, err := c.Ledger.PreparedOn(ctx, c.RunID, h.id)
	if err != nil {
		return o.fail(CodeLedger, err.Error()), true, ledgerError{err}
	}
	for _, ev := range evs {
		v, out, err := c.settle(ctx, h, ev, o)
		switch {
		case err != nil:
			return out, true, err
		case v == committed, v == kept:
			return out, true, nil
		case v == resumable:
			return c.resumeReencrypt(ctx, h, ev, out)
		}
	}
	return o, false, nil
}

func runOfOwner(owner string) string {
	o, err := ledger.ParseOwner(owner)
	if err != nil {
		return ""
	}
	return o.Run
}

// prepare records the intent ev. An intent of this run already prepared
// on the object is settled first (only the object can tell whether its
// write landed); then ev is prepared again, once.
func (c *Core) prepare(ctx context.Context, h *hold, ev ledger.Event, o Outcome) (Outcome, bool, error) {
	err := c.Ledger.Prepare(ctx, c.owner(), ev)
	if errors.Is(err, ledger.ErrConflict) {
		if out, done, perr := c.prior(ctx, h, ledger.Claimed{}, o); done || perr != nil {
			return out, true, perr
		}
		err = c.Ledger.Prepare(ctx, c.owner(), ev)
	}
	switch {
	case err == nil:
		return o, false, nil
	case errors.Is(err, ledger.ErrNotClaimed), errors.Is(err, context.Canceled):
		out, _ := o.fromError("record the intended change", err)
		return out, true, nil
	}
	return o.fail(CodeLedger, err.Error()), true, ledgerError{fmt.Errorf("prepare %s of %s: %w", ev.Op, ev.ID, err)}
}

// record commits ev's lineage with the object record rec: the intent is
// dropped and the claim released. A failure keeps the intent (resume
// commits it: the write is known to have landed).
func (c *Core) record(ctx context.Context, h *hold, rec ledger.Object, ev ledger.Event, o Outcome, action string) (Outcome, error) {
	h.releasing.Store(true)
	if err := c.Ledger.Commit(ctx, c.owner(), rec, ev); err != nil {
		h.keep = true
		if errors.Is(err, ledger.ErrNotClaimed) || errors.Is(err, context.Canceled) {
			return o.unfinished(fmt.Sprintf("the %s landed but the ledger did not record it (%v): run 'rotator resume' to record it", action, err)), nil
		}
		return o.unfinished(fmt.Sprintf("the %s landed but the ledger did not record it (%v): run 'rotator resume' to record it", action, err)),
			ledgerError{fmt.Errorf("commit %s: %w", ev.ID, err)}
	}
	h.keep, h.released = false, true
	if rec.ID.VersionID != ev.ID.VersionID {
		o.VersionID = rec.ID.VersionID
	}
	return o.succeed(action, ev), nil
}

// drop abandons the intent ev: the object is proven not to hold it.
func (c *Core) drop(ctx context.Context, h *hold, ev ledger.Event) error {
	if err := c.Ledger.Abandon(ctx, c.owner(), ev.ID, ev.RunID, ev.Op); err != nil {
		h.keep = true
		return err
	}
	return nil
}

// keepIntent reports an intent whose outcome is unknown: it stays in the
// ledger with the claim.
func keepIntent(h *hold, o Outcome, why string, err error) Outcome {
	h.keep = true
	msg := why
	if err != nil {
		msg += ": " + err.Error()
	}
	return o.unfinished(msg + " (the intended change is kept in the ledger; 'rotator resume' finishes it)")
}

// afterWrite decides a change whose write returned werr (nil: it
// landed, the response says so): from the write's success, or from the
// object read back.
func (c *Core) afterWrite(ctx context.Context, h *hold, ev ledger.Event, o Outcome, what string, werr error) (verdict, Outcome, error) {
	if werr == nil {
		return committed, o, nil
	}
	v, out, err := c.settle(ctx, h, ev, o)
	if err != nil || v == committed || v == kept {
		return v, out, err
	}
	// Not landed (or someone else's): report the write's failure.
	out, systemic := out.writeFailed(what, werr, v)
	if systemic {
		return v, out, werr
	}
	return v, out, nil
}

// writeFailed is the outcome of a write that returned werr and did not
// land (verdict v): the write's error, or changed when it met someone
// else's change; systemic as fromError says.
func (o Outcome) writeFailed(what string, werr error, v verdict) (Outcome, bool) {
	out, systemic := o.fromError(what, werr)
	if v == changedBy {
		out = out.changed(msgChangedSinceRead)
	}
	return out, systemic
}

// settle decides the intent ev on the held object from the object as it
// is now, and acts on the verdict: commit, drop or keep.
func (c *Core) settle(ctx context.Context, h *hold, ev ledger.Event, o Outcome) (verdict, Outcome, error) {
	switch ev.Op {
	case ledger.OpRewrap:
		return c.settleRewrap(ctx, h, ev, o)
	case ledger.OpReencrypt:
		return c.settleReencrypt(ctx, h, ev, o)
	case ledger.OpDeleteVersion:
		return c.settleDeleted(ctx, h, ev, o)
	case ledger.OpEscrow:
		return c.settleEscrow(ctx, h, ev, o)
	case ledger.OpMove:
		return c.settleMove(ctx, h, ev, o)
	}
	return kept, keepIntent(h, o, "an intent with an unknown operation "+ev.Op, nil), nil
}

// now is an object as it is now, read for evidence.
type now struct {
	obj   *commit.Object
	instr *commit.Object // nil when the metadata holds the envelope, or the file is gone
	body  []byte         // the instruction file's body
	fp    string         // fingerprint of the wrapped key held; "" when none could be read
	gone  bool           // the key's current version does not exist
}

// current reads the wrapped key the object holds now: from its metadata,
// or from its instruction file when the metadata holds no envelope.
func (c *Core) current(ctx context.Context, id ledger.ObjectID) (now, error) {
	var n now
	cur, err := c.S3.Head(ctx, id.Bucket, id.Key, "")
	if errors.Is(err, commit.ErrGone) {
		n.gone = true
		return n, nil
	}
	if err != nil {
		return n, err
	}
	n.obj = cur
	if needsInstruction(cur) {
		ik := instructionKey(id.Key, c.suffix())
		instr, body, ierr := c.S3.ReadInstruction(ctx, id.Bucket, ik, "")
		if ierr != nil && !errors.Is(ierr, commit.ErrGone) {
			return n, ierr
		}
		n.instr, n.body = instr, body
	}
	if w, werr := wrappedKeyOf(cur, n.body); werr == nil {
		n.fp = ledger.WrappedKeyFingerprint(w)
	}
	return n, nil
}
