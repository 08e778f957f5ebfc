package ledger

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// The contract of Begin (a claim and a prepared event in one call), part
// of testContract.

// processLean rewraps o as the pipeline does when nothing was left on it:
// Begin, the S3 write, Commit (which releases the claim).
func processLean(t testing.TB, l Ledger, o *s3Object, owner string, attempt int) {
	t.Helper()
	ev, nw := o.rewrapEvent(runOf(owner), attempt)
	got, err := l.Begin(ctx, owner, time.Hour, ev)
	if err != nil || !got.Prepared || got.Prev != "" {
		t.Fatalf("begin %s: %+v, %v; want the intent recorded", o.id(), got, err)
	}
	o.write(nw, keyB)
	obj, ev := o.completed(ev)
	if err := l.Commit(ctx, owner, obj, ev); err != nil {
		t.Fatalf("commit %s: %v", o.id(), err)
	}
}

func testBegin(t *testing.T, open func(...Option) Ledger) {
	l := open()
	for _, versioned := range []bool{false, true} {
		o := newS3Object(fmt.Sprintf("begin/%v", versioned), versioned)
		mustObserve(t, l, observed(o.id(), keyA))
		oldFP := o.fingerprint()
		ev, nw := o.rewrapEvent("runA", 1)
		got, err := l.Begin(ctx, ownr("runA"), time.Hour, ev)
		if err != nil || !got.Prepared || got.Prev != "" || got.Record.WrapKey != keyA {
			t.Fatalf("begin: %+v, %v", got, err)
		}
		// The claim is taken: another run is refused, and records nothing.
		ev2, _ := o.rewrapEvent("runB", 1)
		if got, err := l.Begin(ctx, ownr("runB"), time.Hour, ev2); !errors.Is(err, ErrClaimed) || got.Prepared {
			t.Fatalf("begin under another run's claim: %+v, %v; want ErrClaimed", got, err)
		}
		if p := listPrepared(t, l, "runB"); len(p) != 0 {
			t.Fatalf("a refused begin prepared %+v", p)
		}
		// The intent is there, as Prepare's would be.
		if p := listPrepared(t, l, "runA"); len(p) != 1 || !sameEvent(p[0], ev) {
			t.Fatalf("Prepared = %+v, want %+v", p, ev)
		}
		if evs, err := l.PreparedOn(ctx, "runA", o.id()); err != nil || len(evs) != 1 || !sameEvent(evs[0], ev) {
			t.Fatalf("PreparedOn = %+v, %v", evs, err)
		}
		// Begun again by the same owner (a retry): the same intent, no
		// second one.
		if got, err := l.Begin(ctx, ownr("runA"), time.Hour, ev); err != nil || got.Prepared {
			t.Fatalf("begin again: %+v, %v; want the claim only (something is prepared)", got, err)
		}
		o.write(nw, keyB)
		obj, cev := o.completed(ev)
		if err := l.Commit(ctx, ownr("runA"), obj, cev); err != nil {
			t.Fatal(err)
		}
		// One event, nothing prepared, the claim released by the Commit.
		checkRewrapped(t, l, o, "runA", oldFP)
	}
	// Invalid events are refused before anything is written.
	o := newS3Object("begin/invalid", false)
	ev, _ := o.rewrapEvent("runA", 1)
	ev.NewWrappedKeySHA256 = ""
	if _, err := l.Begin(ctx, ownr("runA"), time.Hour, ev); !errors.Is(err, ErrInvalid) {
		t.Fatalf("begin without the new fingerprint: %v, want ErrInvalid", err)
	}
	if _, err := l.Begin(ctx, ownr("runB"), time.Hour, ev); !errors.Is(err, ErrInvalid) {
		t.Fatalf("begin by another run's owner: %v, want ErrInvalid", err)
	}
	if _, err := l.Claim(ctx, o.id(), ownr("runB"), time.Hour); err != nil {
		t.Fatalf("a refused begin left a claim: %v", err)
	}
}

// testBeginLeavesEarlierIntents: an intent a crashed process left on the
// object is never covered by a new one: Begin of the next process takes
// the claim over (Prev set) and records nothing; the caller settles first.
func testBeginLeavesEarlierIntents(t *testing.T, open func(...Option) Ledger) {
	crash := errors.New("simulated crash")
	for _, versioned := range []bool{false, true} {
		run := fmt.Sprintf("beginCrash%v", versioned)
		o := newS3Object("begin-crash/"+run, versioned)
		oldFP := o.fingerprint()
		var armed atomic.Bool
		armed.Store(true)
		l := open(withHook(func(p string) error {
			if p == pointPrepared && armed.CompareAndSwap(true, false) {
				return crash
			}
			return nil
		}))
		ev, _ := o.rewrapEvent(run, 1)
		if _, err := l.Begin(ctx, ownr(run), time.Hour, ev); !errors.Is(err, crash) {
			t.Fatalf("begin: got %v, want the crash", err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		l = open()
		// bbolt rolled the transaction back (nothing, not even the
		// claim); DynamoDB kept both writes. Either way a new process's
		// Begin may not record over what is there.
		left := listPrepared(t, l, run)
		ev2, _ := o.rewrapEvent(run, 2)
		next := epochOwner(run, 2, "p2")
		got, err := l.Begin(ctx, next, time.Hour, ev2)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case len(left) == 1 && (got.Prepared || got.Prev == ""):
			t.Fatalf("begin over an earlier intent: %+v", got)
		case len(left) == 1:
			// The long way: the earlier intent did not land (the
			// object still holds the old key), so it is dropped, and
			// the change prepared again.
			if o.fingerprint() != left[0].OldWrappedKeySHA256 {
				t.Fatal("object changed")
			}
			if err := l.Abandon(ctx, next, o.id(), run, OpRewrap); err != nil {
				t.Fatal(err)
			}
			if err := l.Prepare(ctx, next, ev2); err != nil {
				t.Fatal(err)
			}
		case len(left) == 0 && !got.Prepared:
			t.Fatalf("begin on a clean object did not prepare: %+v", got)
		}
		nw2 := fmt.Sprintf("wrapped %s under %s, attempt %d", o.key, keyB, 2)
		o.write(nw2, keyB)
		obj, cev := o.completed(ev2)
		if err := l.Commit(ctx, next, obj, cev); err != nil {
			t.Fatal(err)
		}
		checkRewrapped(t, l, o, run, oldFP)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// testBeginAfterCommit: a version whose change the run committed already
// is begun the long way (Prepare says whether it is the same change).
func testBeginAfterCommit(t *testing.T, open func(...Option) Ledger) {
	l := open()
	o := newS3Object("begin-after-commit", false)
	oldFP := o.fingerprint()
	processLean(t, l, o, ownr("runC"), 1)
	checkRewrapped(t, l, o, "runC", oldFP)
	// The same run meets the (unversioned) object again: the identity is
	// committed, so nothing is prepared.
	ev, _ := o.rewrapEvent("runC", 2)
	got, err := l.Begin(ctx, ownr("runC"), time.Hour, ev)
	if err != nil || got.Prepared {
		t.Fatalf("begin after commit: %+v, %v; want the claim only", got, err)
	}
	if err := l.Release(ctx, o.id(), ownr("runC")); err != nil {
		t.Fatal(err)
	}
	if p := listPrepared(t, l, "runC"); len(p) != 0 {
		t.Fatalf("prepared after commit: %+v", p)
	}
}
