package ledger

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
)

// backend allocates a fresh, empty store for one test and returns a function
// that opens it; every call opens the same store again (as a restarted
// process would), and the test closes what it opened at cleanup.
type backend func(t testing.TB) func(opts ...Option) Ledger

// testContract runs the behaviour every Ledger must have. Subtests run in
// parallel when the backend gains from it (dynalite serves one request at a
// time and only slows down).
func testContract(t *testing.T, newStore backend, parallel bool) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, open func(...Option) Ledger)
	}{
		{"ClaimExclusive", testClaimExclusive},
		{"ClaimLeaseExpiry", testClaimLeaseExpiry},
		{"ClaimSameRunAfterCrash", testClaimSameRunAfterCrash},
		{"ReleaseOnlyByOwner", testReleaseOnlyByOwner},
		{"Renew", testRenew},
		{"CommitWithoutClaim", testCommitWithoutClaim},
		{"CommitConcurrentDuplicates", testCommitConcurrentDuplicates},
		{"CommitRetried", testCommitRetried},
		{"CommitCrashBetweenWrites", testCommitCrashBetweenWrites},
		{"CommitNewVersion", testCommitNewVersion},
		{"CommitValidation", testCommitValidation},
		{"ObserveLaterWins", testObserveLaterWins},
		{"ObserveUnknownKey", testObserveUnknownKey},
		{"ObserveRelease", testObserveRelease},
		{"GetNotFound", testGetNotFound},
		{"ByKeyAndCounts", testByKeyAndCounts},
		{"Lineage", testLineage},
		{"OddKeys", testOddKeys},
		{"Runs", testRuns},
		{"RunsConcurrentUpdate", testRunsConcurrentUpdate},
		{"Export", testExport},
		{"Pages", testPages},
		{"LargeTable", testLargeTable},
		{"PrepareCommit", testPrepareCommit},
		{"PrepareAbandon", testPrepareAbandon},
		{"PrepareTwice", testPrepareTwice},
		{"PrepareAfterCommit", testPrepareAfterCommit},
		{"PreparedPages", testPreparedPages},
		{"PrepareCrashPoints", testPrepareCrashPoints},
		{"PrepareTakenOver", testPrepareTakenOver},
		{"PrepareChangedBySomeoneElse", testPrepareChangedBySomeoneElse},
		{"PrepareConcurrent", testPrepareConcurrent},
		{"UploadSave", testUploadSave},
		{"UploadsList", testUploadsList},
		{"Lease", testLease},
		{"PreparedOn", testPreparedOn},
		{"ClaimNoIntents", testClaimNoIntents},
		{"Begin", testBegin},
		{"BeginLeavesEarlierIntents", testBeginLeavesEarlierIntents},
		{"BeginAfterCommit", testBeginAfterCommit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if parallel {
				t.Parallel()
			}
			tc.fn(t, newStore(t))
		})
	}
}

// clock is a settable clock for leases.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

const (
	keyA = "arn:aws:kms:us-east-1:111122223333:key/aaaaaaaa-1111-2222-3333-444444444444"
	keyB = "pkcs11:token=rotator;object=kek-2026"
	keyC = "aes:5a7c0f0e3c0e4f8f9d3b2a1908f7e6d5c4b3a29180706f5e4d3c2b1a09080706"
)

var ctx = context.Background()

func oid(key string) ObjectID { return ObjectID{Bucket: "data-bucket", Key: key} }

func observed(id ObjectID, wrapKey string) Object {
	return Object{ID: id, WrapKey: wrapKey, Format: "s3ec-v2", Placement: "metadata", CEKAlg: "AES/GCM/NoPadding", State: StateCurrent, ETag: `"e0"`, RunID: "inventory"}
}

// change returns the object record and event of a rewrap of id by run.
func change(id ObjectID, run, from, to string) (Object, Event) {
	obj := Object{ID: id, WrapKey: to, Format: "s3ec-v2", Placement: "metadata", CEKAlg: "AES/GCM/NoPadding", State: StateRewrapped, ETag: `"e1"`, RunID: run, WrappedKeySHA256: WrappedKeyFingerprint([]byte("wrapped under " + to))}
	ev := Event{
		ID: id, RunID: run, Op: OpRewrap, Method: "kms-reencrypt", FromKey: from, ToKey: to,
		ETagBefore: `"e0"`, ETagAfter: `"e1"`, VersionBefore: id.VersionID, VersionAfter: id.VersionID,
		OldWrappedKeySHA256: WrappedKeyFingerprint([]byte("wrapped " + id.Key)),
		NewWrappedKeySHA256: WrappedKeyFingerprint([]byte("wrapped " + id.Key + " under " + to)),
	}
	return obj, ev
}

// rewrap claims id for run and commits a rewrap from one key to another.
func rewrap(t testing.TB, l Ledger, id ObjectID, run, from, to string) {
	t.Helper()
	if _, err := l.Claim(ctx, id, ownr(run), time.Minute); err != nil {
		t.Fatalf("claim %s: %v", id, err)
	}
	obj, ev := change(id, run, from, to)
	if err := l.Commit(ctx, ownr(ev.RunID), obj, ev); err != nil {
		t.Fatalf("commit %s: %v", id, err)
	}
}

func mustObserve(t testing.TB, l Ledger, obj Object) {
	t.Helper()
	if err := l.Observe(ctx, obj); err != nil {
		t.Fatalf("observe %s: %v", obj.ID, err)
	}
}

func mustGet(t testing.TB, l Ledger, id ObjectID) Object {
	t.Helper()
	o, err := l.Get(ctx, id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return o
}

func lineageOf(t testing.TB, l Ledger, id ObjectID) []Event {
	t.Helper()
	evs, err := l.Lineage(ctx, id)
	if err != nil {
		t.Fatalf("lineage %s: %v", id, err)
	}
	return evs
}

func byKey(t testing.TB, l Ledger, wrapKey string) []string {
	t.Helper()
	var keys []string
	err := l.ByKey(ctx, wrapKey, func(o Object) error {
		if o.WrapKey != wrapKey {
			t.Errorf("ByKey(%s) returned %s under %s", wrapKey, o.ID, o.WrapKey)
		}
		keys = append(keys, o.ID.Key+"@"+o.ID.VersionID)
		return nil
	})
	if err != nil {
		t.Fatalf("by key %s: %v", wrapKey, err)
	}
	sort.Strings(keys)
	return keys
}

func counts(t testing.TB, l Ledger) map[string]int64 {
	t.Helper()
	c, err := l.CountsByKey(ctx)
	if err != nil {
		t.Fatalf("counts by key: %v", err)
	}
	return c
}

func testClaimExclusive(t *testing.T, open func(...Option) Ledger) {
	l := open()
	id := oid("contended")
	const n = 32
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { _, errs[i] = l.Claim(ctx, id, fmt.Sprintf("run%02d/w0", i), time.Minute) })
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("run%02d and run%02d both claimed %s", winner, i, id)
		case err == nil:
			winner = i
		case !errors.Is(err, ErrClaimed):
			t.Fatalf("run%02d: got %v, want ErrClaimed", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no goroutine won the claim")
	}
	for i, err := range errs {
		var ce *ClaimedError
		if i != winner && (!errors.As(err, &ce) || ce.Owner != fmt.Sprintf("run%02d/w0", winner) || ce.ID != id) {
			t.Errorf("run%02d: got %v, want the winner run%02d/w0 named", i, err, winner)
		}
	}
}

func testClaimLeaseExpiry(t *testing.T, open func(...Option) Ledger) {
	clk := newClock()
	l := open(WithClock(clk.Now))
	id := oid("leased")
	if _, err := l.Claim(ctx, id, ownr("runA"), time.Minute); err != nil {
		t.Fatal(err)
	}
	var ce *ClaimedError
	if _, err := l.Claim(ctx, id, ownr("runB"), time.Minute); !errors.As(err, &ce) {
		t.Fatalf("claim held by runA: got %v, want ErrClaimed", err)
	}
	if want := clk.Now().Add(time.Minute); !ce.Expires.Equal(want) {
		t.Errorf("ClaimedError.Expires = %v, want %v", ce.Expires, want)
	}
	clk.Advance(59 * time.Second)
	if _, err := l.Claim(ctx, id, ownr("runB"), time.Minute); !errors.Is(err, ErrClaimed) {
		t.Fatalf("claim before expiry: got %v, want ErrClaimed", err)
	}
	clk.Advance(time.Second)
	if _, err := l.Claim(ctx, id, ownr("runB"), time.Minute); err != nil {
		t.Fatalf("claim after expiry: %v", err)
	}
	objA, evA := change(id, "runA", keyA, keyB)
	if err := l.Commit(ctx, ownr(evA.RunID), objA, evA); !errors.Is(err, ErrNotClaimed) {
		t.Fatalf("commit by the run whose lease was taken over: got %v, want ErrNotClaimed", err)
	}
	if _, err := l.Claim(ctx, id, ownr("runA"), time.Minute); !errors.Is(err, ErrClaimed) {
		t.Fatalf("re-claim by the old holder: got %v, want ErrClaimed", err)
	}
	objB, evB := change(id, "runB", keyA, keyC)
	if err := l.Commit(ctx, ownr(evB.RunID), objB, evB); err != nil {
		t.Fatalf("commit by the new holder: %v", err)
	}
	if got := mustGet(t, l, id); got.WrapKey != keyC || got.RunID != "runB" {
		t.Errorf("record = %+v, want under keyC by runB", got)
	}
	// An expired claim that nobody took over still lets its run commit.
	id2 := oid("expired-not-taken")
	if _, err := l.Claim(ctx, id2, ownr("runA"), time.Second); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	obj, ev := change(id2, "runA", keyA, keyB)
	if err := l.Commit(ctx, ownr(ev.RunID), obj, ev); err != nil {
		t.Fatalf("commit under an expired but untaken claim: %v", err)
	}
}

func testClaimSameRunAfterCrash(t *testing.T, open func(...Option) Ledger) {
	l := open()
	ids := []ObjectID{oid("c1"), oid("c2"), oid("c3")}
	first := epochOwner("run7", 1, "host-1-a")
	for _, id := range ids {
		if _, err := l.Claim(ctx, id, first, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	// kill -9: no release; the claims outlive the process.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = open()
	if _, err := l.Claim(ctx, ids[0], ownr("run8"), time.Hour); !errors.Is(err, ErrClaimed) {
		t.Fatalf("another run: got %v, want ErrClaimed", err)
	}
	// Another lease of the same run (another shard) waits for expiry too.
	shard := Owner{Run: "run7", Lease: "shard-1-of-2", Epoch: 9, Holder: "host-2-b"}.String()
	if _, err := l.Claim(ctx, ids[0], shard, time.Hour); !errors.Is(err, ErrClaimed) {
		t.Fatalf("another lease of the run: got %v, want ErrClaimed", err)
	}
	// The next holder of the run's lease (a later epoch) takes the claims
	// over at once, and learns whose they were.
	resumed := epochOwner("run7", 2, "host-1-b")
	for _, id := range ids {
		got, err := l.Claim(ctx, id, resumed, time.Hour)
		if err != nil {
			t.Fatalf("resumed run re-claiming %s: %v", id, err)
		}
		if got.Prev != first {
			t.Fatalf("Claimed.Prev = %q, want %q", got.Prev, first)
		}
	}
	// The earlier epoch is fenced: it can neither claim again nor record.
	if _, err := l.Claim(ctx, ids[1], first, time.Hour); !errors.Is(err, ErrClaimed) {
		t.Fatalf("earlier epoch re-claiming: got %v, want ErrClaimed", err)
	}
	obj, ev := change(ids[1], "run7", keyA, keyB)
	if err := l.Prepare(ctx, first, ev); !errors.Is(err, ErrNotClaimed) {
		t.Fatalf("earlier epoch preparing: got %v, want ErrNotClaimed", err)
	}
	if err := l.Commit(ctx, first, obj, ev); !errors.Is(err, ErrNotClaimed) {
		t.Fatalf("earlier epoch committing: got %v, want ErrNotClaimed", err)
	}
	// Claiming again as the holder is a renewal: nothing taken over.
	if got, err := l.Claim(ctx, ids[1], resumed, time.Hour); err != nil || got.Prev != "" {
		t.Fatalf("renewal: got %+v, %v", got, err)
	}
	if err := l.Commit(ctx, resumed, obj, ev); err != nil {
		t.Fatal(err)
	}
	var ce *ClaimedError
	if _, err := l.Claim(ctx, ids[2], ownr("run8"), time.Hour); !errors.As(err, &ce) || ce.Owner != resumed {
		t.Fatalf("claim now held by %s: got %v", resumed, err)
	}
}

func testReleaseOnlyByOwner(t *testing.T, open func(...Option) Ledger) {
	l := open()
	id := oid("released")
	if _, err := l.Claim(ctx, id, ownr("runA"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx, id, ownr("runB")); err != nil {
		t.Fatalf("release by a non-holder: %v, want a no-op", err)
	}
	if _, err := l.Claim(ctx, id, ownr("runB"), time.Hour); !errors.Is(err, ErrClaimed) {
		t.Fatalf("after a non-holder's release: got %v, want ErrClaimed", err)
	}
	if err := l.Release(ctx, id, ownr("runA")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Get(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a released claim left a record: %v", err)
	}
	if _, err := l.Claim(ctx, id, ownr("runB"), time.Hour); err != nil {
		t.Fatalf("claim after release: %v", err)
	}
	// Releasing keeps the object record.
	mustObserve(t, l, observed(id, keyA))
	if err := l.Release(ctx, id, ownr("runB")); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, l, id); got.WrapKey != keyA {
		t.Fatalf("record after release: %+v", got)
	}
	if _, err := l.Claim(ctx, id, ownr("runC"), time.Hour); err != nil {
		t.Fatalf("claim after release: %v", err)
	}
	if err := l.Release(ctx, oid("never-claimed"), ownr("runC")); err != nil {
		t.Fatalf("release of an unclaimed object: %v", err)
	}
}

// Renew extends a claim its owner still holds, expired or not, and never
// claims: after a Release, a Commit or an ObserveRelease it fails with
// ErrNotClaimed and leaves the object free; another owner's claim it
// leaves alone.
func testRenew(t *testing.T, open func(...Option) Ledger) {
	clk := newClock()
	l := open(WithClock(clk.Now))
	a, b := ownr("runA"), ownr("runB")
	id := oid("renewed")
	if _, err := l.Claim(ctx, id, a, time.Minute); err != nil {
		t.Fatal(err)
	}
	clk.Advance(50 * time.Second)
	if err := l.Renew(ctx, id, a, time.Minute); err != nil {
		t.Fatalf("renew: %v", err)
	}
	clk.Advance(50 * time.Second) // past the first lease, within the renewed one
	var ce *ClaimedError
	if _, err := l.Claim(ctx, id, b, time.Minute); !errors.As(err, &ce) || ce.Owner != a {
		t.Fatalf("claim by another run within the renewed lease: %v, want ErrClaimed", err)
	}
	if want := clk.Now().Add(10 * time.Second); !ce.Expires.Equal(want) {
		t.Errorf("renewed claim expires %v, want %v", ce.Expires, want)
	}
	if err := l.Renew(ctx, id, b, time.Minute); !errors.As(err, &ce) || ce.Owner != a {
		t.Fatalf("renewal by a non-holder: %v, want ErrClaimed naming %s", err, a)
	}
	// Expired, nobody took it over: still the owner's to renew.
	clk.Advance(time.Hour)
	if err := l.Renew(ctx, id, a, time.Minute); err != nil {
		t.Fatalf("renewal of an expired claim nobody took: %v", err)
	}
	if _, err := l.Claim(ctx, id, b, time.Minute); !errors.Is(err, ErrClaimed) {
		t.Fatalf("claim by another run after the renewal: %v, want ErrClaimed", err)
	}
	// Released: a renewal landing late claims nothing.
	if err := l.Release(ctx, id, a); err != nil {
		t.Fatal(err)
	}
	if err := l.Renew(ctx, id, a, time.Minute); !errors.Is(err, ErrNotClaimed) {
		t.Fatalf("renewal after the release: %v, want ErrNotClaimed", err)
	}
	if _, err := l.Get(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a renewal after the release left a record: %v", err)
	}
	if _, err := l.Claim(ctx, id, b, time.Minute); err != nil {
		t.Fatalf("claim after the release and a late renewal: %v", err)
	}
	// Taken over after expiry: the old owner's renewal is refused.
	clk.Advance(2 * time.Minute)
	if _, err := l.Claim(ctx, id, a, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := l.Renew(ctx, id, b, time.Minute); !errors.As(err, &ce) || ce.Owner != a {
		t.Fatalf("renewal of a claim taken over: %v, want ErrClaimed naming %s", err, a)
	}
	// Released by a Commit, and by an ObserveRelease.
	obj, ev := change(id, "runA", keyA, keyB)
	if err := l.Commit(ctx, a, obj, ev); err != nil {
		t.Fatal(err)
	}
	if err := l.Renew(ctx, id, a, time.Minute); !errors.Is(err, ErrNotClaimed) {
		t.Fatalf("renewal after the commit: %v, want ErrNotClaimed", err)
	}
	id2 := oid("observed")
	if _, err := l.Claim(ctx, id2, a, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := l.ObserveRelease(ctx, a, observed(id2, keyA)); err != nil {
		t.Fatal(err)
	}
	if err := l.Renew(ctx, id2, a, time.Minute); !errors.Is(err, ErrNotClaimed) {
		t.Fatalf("renewal after the observation: %v, want ErrNotClaimed", err)
	}
	for _, id := range []ObjectID{id, id2} {
		if _, err := l.Claim(ctx, id, b, time.Minute); err != nil {
			t.Fatalf("claim of %s by another run: %v", id, err)
		}
	}
	if err := l.Renew(ctx, oid("never-claimed"), a, time.Minute); !errors.Is(err, ErrNotClaimed) {
		t.Fatalf("renewal of an object never claimed: %v, want ErrNotClaimed", err)
	}
}

func testCommitWithoutClaim(t *testing.T, open func(...Option) Ledger) {
	l := open()
	id := oid("unclaimed")
	mustObserve(t, l, observed(id, keyA))
	obj, ev := change(id, "runA", keyA, keyB)
	if err := l.Commit(ctx, ownr(ev.RunID), obj, ev); !errors.Is(err, ErrNotClaimed) {
		t.Fatalf("commit without a claim: got %v, want ErrNotClaimed", err)
	}
	if _, err := l.Claim(ctx, id, ownr("runB"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := l.Commit(ctx, ownr(ev.RunID), obj, ev); !errors.Is(err, ErrNotClaimed) {
		t.Fatalf("commit under another run's claim: got %v, want ErrNotClaimed", err)
	}
	if err := l.Release(ctx, id, ownr("runB")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Claim(ctx, id, ownr("runA"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx, id, ownr("runA")); err != nil {
		t.Fatal(err)
	}
	if err := l.Commit(ctx, ownr(ev.RunID), obj, ev); !errors.Is(err, ErrNotClaimed) {
		t.Fatalf("commit after releasing: got %v, want ErrNotClaimed", err)
	}
	if evs := lineageOf(t, l, id); len(evs) != 0 {
		t.Fatalf("refused commits left events: %+v", evs)
	}
	if got := mustGet(t, l, id); got.WrapKey != keyA || got.State != StateCurrent {
		t.Fatalf("refused commits changed the record: %+v", got)
	}
}

func testCommitConcurrentDuplicates(t *testing.T, open func(...Option) Ledger) {
	l := open()
	id := oid("dup")
	mustObserve(t, l, observed(id, keyA))
	if _, err := l.Claim(ctx, id, ownr("runA"), time.Hour); err != nil {
		t.Fatal(err)
	}
	obj, ev := change(id, "runA", keyA, keyB)
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			e := ev
			e.At = time.Date(2026, 3, 1, 12, 0, i, 0, time.UTC) // At is not part of the identity
			errs[i] = l.Commit(ctx, ownr(e.RunID), obj, e)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("duplicate commit %d: %v", i, err)
		}
	}
	if evs := lineageOf(t, l, id); len(evs) != 1 {
		t.Fatalf("got %d events, want exactly 1: %+v", len(evs), evs)
	}
	if got := mustGet(t, l, id); got.WrapKey != keyB || got.State != StateRewrapped {
		t.Fatalf("record = %+v", got)
	}
	if c := counts(t, l); c[keyA] != 0 || c[keyB] != 1 {
		t.Fatalf("counts = %v", c)
	}
	// The claim is gone: another run may take the object now.
	if _, err := l.Claim(ctx, id, ownr("runB"), time.Hour); err != nil {
		t.Fatalf("claim after commit: %v", err)
	}
}

func testCommitRetried(t *testing.T, open func(...Option) Ledger) {
	l := open()
	id := oid("retried")
	rewrap(t, l, id, "runA", keyA, keyB)
	obj, ev := change(id, "runA", keyA, keyB)
	ev.At = time.Now().Add(time.Hour)
	for i := range 3 {
		if err := l.Commit(ctx, ownr(ev.RunID), obj, ev); err != nil {
			t.Fatalf("retry %d of a completed commit: %v", i, err)
		}
	}
	if evs := lineageOf(t, l, id); len(evs) != 1 {
		t.Fatalf("got %d events, want 1", len(evs))
	}
	// A resumed run re-claims an object it had committed and commits again:
	// still one event, and the claim is released.
	resumed := epochOwner("runA", 2, "p2")
	if _, err := l.Claim(ctx, id, resumed, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := l.Commit(ctx, resumed, obj, ev); err != nil {
		t.Fatalf("commit again after re-claiming: %v", err)
	}
	if _, err := l.Claim(ctx, id, ownr("runZ"), time.Hour); err != nil {
		t.Fatalf("claim not released by the repeated commit: %v", err)
	}
	if err := l.Release(ctx, id, ownr("runZ")); err != nil {
		t.Fatal(err)
	}
	// Same identity, different content: not a retry.
	other := ev
	other.ToKey = keyC
	if err := l.Commit(ctx, ownr(other.RunID), obj, other); !errors.Is(err, ErrConflict) {
		t.Fatalf("same event identity with another to key: got %v, want ErrConflict", err)
	}
	// Another op by the same run on the same version is another event.
	if _, err := l.Claim(ctx, id, ownr("runA"), time.Hour); err != nil {
		t.Fatal(err)
	}
	obj2, ev2 := change(id, "runA", keyB, keyC)
	ev2.Op, ev2.Method, obj2.State = OpReencrypt, "kms-decrypt+local-encrypt", StateReencrypted
	if err := l.Commit(ctx, ownr(ev2.RunID), obj2, ev2); err != nil {
		t.Fatal(err)
	}
	if evs := lineageOf(t, l, id); len(evs) != 2 {
		t.Fatalf("got %d events, want 2", len(evs))
	}
}

func testCommitCrashBetweenWrites(t *testing.T, open func(...Option) Ledger) {
	crash := errors.New("simulated crash")
	var crashes atomic.Int32
	crashes.Store(1)
	l := open(withHook(func(point string) error {
		if point == pointEvent && crashes.Add(-1) >= 0 {
			return crash
		}
		return nil
	}))
	id := oid("crashed")
	mustObserve(t, l, observed(id, keyA))
	if _, err := l.Claim(ctx, id, ownr("runA"), time.Hour); err != nil {
		t.Fatal(err)
	}
	obj, ev := change(id, "runA", keyA, keyB)
	if err := l.Commit(ctx, ownr(ev.RunID), obj, ev); !errors.Is(err, crash) {
		t.Fatalf("got %v, want the simulated crash", err)
	}
	// The claim survives the crash.
	if _, err := l.Claim(ctx, id, ownr("runB"), time.Hour); !errors.Is(err, ErrClaimed) {
		t.Fatalf("claim after the crash: got %v, want ErrClaimed", err)
	}
	// The resumed run re-claims and commits again: it converges.
	resumed := epochOwner("runA", 2, "p2")
	if _, err := l.Claim(ctx, id, resumed, time.Hour); err != nil {
		t.Fatal(err)
	}
	ev.At = time.Time{}
	if err := l.Commit(ctx, resumed, obj, ev); err != nil {
		t.Fatalf("retry after the crash: %v", err)
	}
	if evs := lineageOf(t, l, id); len(evs) != 1 {
		t.Fatalf("got %d events, want 1: %+v", len(evs), evs)
	}
	if got := mustGet(t, l, id); got.WrapKey != keyB || got.State != StateRewrapped {
		t.Fatalf("record after the retry: %+v", got)
	}
	if got := byKey(t, l, keyA); len(got) != 0 {
		t.Fatalf("still listed under the old key: %v", got)
	}
	if _, err := l.Claim(ctx, id, ownr("runB"), time.Hour); err != nil {
		t.Fatalf("claim released after the retry: %v", err)
	}
}

func testCommitNewVersion(t *testing.T, open func(...Option) Ledger) {
	l := open()
	v1 := ObjectID{Bucket: "versioned", Key: "doc.pdf", VersionID: "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"}
	v2 := ObjectID{Bucket: "versioned", Key: "doc.pdf", VersionID: "ThZ.Yo0wvE8Lk1eFi7o7vDNGDQA7YyBD"}
	mustObserve(t, l, observed(v1, keyA))
	if _, err := l.Claim(ctx, v1, ownr("runA"), time.Hour); err != nil {
		t.Fatal(err)
	}
	obj, ev := change(v2, "runA", keyA, keyB)
	ev.ID, ev.VersionBefore, ev.VersionAfter = v1, v1.VersionID, v2.VersionID
	if err := l.Commit(ctx, ownr(ev.RunID), obj, ev); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, l, v2); got.WrapKey != keyB || got.State != StateRewrapped {
		t.Fatalf("new version: %+v", got)
	}
	// The old version still exists under the old key until it is deleted.
	if got := mustGet(t, l, v1); got.WrapKey != keyA {
		t.Fatalf("old version: %+v", got)
	}
	if c := counts(t, l); c[keyA] != 1 || c[keyB] != 1 {
		t.Fatalf("counts = %v", c)
	}
	if _, err := l.Claim(ctx, v1, ownr("runB"), time.Hour); err != nil {
		t.Fatalf("claim on the old version not released: %v", err)
	}
	del := Event{ID: v1, RunID: "runB", Op: OpDeleteVersion, Method: "s3-delete-object-version", FromKey: keyA}
	if err := l.Commit(ctx, ownr(del.RunID), Object{ID: v1, State: StateDeleted}, del); err != nil {
		t.Fatal(err)
	}
	if c := counts(t, l); c[keyA] != 0 || c[keyB] != 1 {
		t.Fatalf("counts after delete-version = %v", c)
	}
	for _, id := range []ObjectID{v1, v2} {
		if evs := lineageOf(t, l, id); len(evs) != 2 {
			t.Errorf("lineage of %s: %d events, want 2", id, len(evs))
		}
	}
}

func testCommitValidation(t *testing.T, open func(...Option) Ledger) {
	l := open()
	id := oid("validated")
	if _, err := l.Claim(ctx, id, ownr("runA"), time.Hour); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Object, *Event){
		"plaintext key as fingerprint": func(_ *Object, e *Event) { e.OldWrappedKeySHA256 = "0123456789abcdef0123456789abcdef" },
		"uppercase fingerprint": func(_ *Object, e *Event) {
			e.OldWrappedKeySHA256 = strings.ToUpper(WrappedKeyFingerprint(nil))
		},
		"uppercase new fingerprint": func(_ *Object, e *Event) {
			e.NewWrappedKeySHA256 = strings.ToUpper(WrappedKeyFingerprint(nil))
		},
		"short new fingerprint": func(_ *Object, e *Event) { e.NewWrappedKeySHA256 = "abc" },
		"other object":          func(o *Object, _ *Event) { o.ID.Key = "elsewhere" },
		"other version":         func(o *Object, _ *Event) { o.ID.VersionID = "v9" },
		"no op":                 func(_ *Object, e *Event) { e.Op = "" },
		"op with separator":     func(_ *Object, e *Event) { e.Op = "re#wrap" },
		"run id with slash":     func(_ *Object, e *Event) { e.RunID = ownr("runA") },
		"object of another run": func(o *Object, _ *Event) { o.RunID = "runB" },
		"no state":              func(o *Object, _ *Event) { o.State = "" },
		"invalid utf-8 key":     func(o *Object, e *Event) { o.ID.Key, e.ID.Key = "\xff", "\xff" },
	} {
		obj, ev := change(id, "runA", keyA, keyB)
		mod(&obj, &ev)
		if err := l.Commit(ctx, ownr(ev.RunID), obj, ev); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
	for _, owner := range []string{"", "/w1", "run A/w1", "run#1/w1"} {
		if _, err := l.Claim(ctx, id, owner, time.Hour); !errors.Is(err, ErrInvalid) {
			t.Errorf("claim by %q: got %v, want ErrInvalid", owner, err)
		}
	}
	if _, err := l.Claim(ctx, id, ownr("runA"), 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("zero lease: got %v, want ErrInvalid", err)
	}
	if evs := lineageOf(t, l, id); len(evs) != 0 {
		t.Fatalf("invalid commits left events: %+v", evs)
	}
}

func testObserveLaterWins(t *testing.T, open func(...Option) Ledger) {
	l := open()
	id := oid("observed")
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	later, earlier := observed(id, keyB), observed(id, keyA)
	later.UpdatedAt, earlier.UpdatedAt = t0.Add(time.Second), t0
	mustObserve(t, l, later)
	mustObserve(t, l, earlier) // lands last, but is older
	got := mustGet(t, l, id)
	if got.WrapKey != keyB || !got.UpdatedAt.Equal(later.UpdatedAt) {
		t.Fatalf("an older observation overwrote a later one: %+v", got)
	}
	if got := byKey(t, l, keyA); len(got) != 0 {
		t.Fatalf("listed under the older observation's key: %v", got)
	}
	latest := observed(id, keyA)
	latest.UpdatedAt, latest.ETag, latest.Format = t0.Add(time.Minute), "", ""
	mustObserve(t, l, latest)
	got = mustGet(t, l, id)
	latest.UpdatedAt = latest.UpdatedAt.UTC()
	if !reflect.DeepEqual(got, latest) {
		t.Fatalf("Get = %+v, want %+v (cleared fields cleared)", got, latest)
	}
	// An observation keeps the claim.
	if _, err := l.Claim(ctx, id, ownr("runA"), time.Hour); err != nil {
		t.Fatal(err)
	}
	mustObserve(t, l, observed(id, keyA))
	if _, err := l.Claim(ctx, id, ownr("runB"), time.Hour); !errors.Is(err, ErrClaimed) {
		t.Fatalf("claim after an observation: got %v, want ErrClaimed", err)
	}
	obj, ev := change(id, "runA", keyA, keyB)
	if err := l.Commit(ctx, ownr(ev.RunID), obj, ev); err != nil {
		t.Fatalf("commit after an observation: %v", err)
	}
	// Observe fills UpdatedAt, and a zero time is not older than anything.
	o := observed(oid("fresh"), keyA)
	mustObserve(t, l, o)
	if got := mustGet(t, l, o.ID); got.UpdatedAt.IsZero() {
		t.Fatal("UpdatedAt not filled")
	}
}

// testObserveRelease: ObserveRelease is Observe then Release: the record
// is written by Observe's rules (never over a later one, the key kept when
// not told), and the claim dropped only when the owner holds it.
func testObserveRelease(t *testing.T, open func(...Option) Ledger) {
	l := open()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	claim := func(id ObjectID, run string) {
		t.Helper()
		if _, err := l.Claim(ctx, id, ownr(run), time.Hour); err != nil {
			t.Fatalf("claim %s by %s: %v", id, run, err)
		}
	}
	claimedBy := func(id ObjectID, run string) {
		t.Helper()
		if _, err := l.Claim(ctx, id, ownr("runZ"), time.Hour); !errors.Is(err, ErrClaimed) {
			t.Fatalf("%s: the claim of %s was dropped (a claim by another run: %v)", id, run, err)
		}
	}
	free := func(id ObjectID) {
		t.Helper()
		if _, err := l.Claim(ctx, id, ownr("runZ"), time.Hour); err != nil {
			t.Fatalf("%s: still claimed after ObserveRelease: %v", id, err)
		}
		if err := l.Release(ctx, id, ownr("runZ")); err != nil {
			t.Fatal(err)
		}
	}
	observeRelease := func(run string, o Object) {
		t.Helper()
		if err := l.ObserveRelease(ctx, ownr(run), o); err != nil {
			t.Fatalf("observe and release %s by %s: %v", o.ID, run, err)
		}
	}

	// Held: recorded and released.
	id := oid("observe-release")
	claim(id, "runA")
	o := observed(id, keyB)
	o.UpdatedAt, o.WrappedKeySHA256 = t0, "f1"
	observeRelease("runA", o)
	if got := mustGet(t, l, id); got.WrapKey != keyB || got.WrappedKeySHA256 != "f1" || got.State != StateCurrent {
		t.Fatalf("record %+v, want key B, fingerprint f1", got)
	}
	free(id)
	if c := counts(t, l)[keyB]; c != 1 {
		t.Fatalf("%d under B, want 1", c)
	}

	// Held by another run: recorded, and that claim stays.
	claim(id, "runB")
	o.UpdatedAt, o.WrapKey = t0.Add(time.Second), keyA
	observeRelease("runA", o)
	if got := mustGet(t, l, id); got.WrapKey != keyA {
		t.Fatalf("record %+v, want key A", got)
	}
	claimedBy(id, "runB")
	if err := l.Release(ctx, id, ownr("runB")); err != nil {
		t.Fatal(err)
	}

	// Not claimed at all: recorded.
	o.UpdatedAt, o.WrapKey = t0.Add(2*time.Second), keyB
	observeRelease("runA", o)
	if got := mustGet(t, l, id); got.WrapKey != keyB {
		t.Fatalf("record %+v, want key B", got)
	}

	// A later record stays; the claim is dropped all the same.
	claim(id, "runA")
	older := o
	older.UpdatedAt, older.WrapKey = t0.Add(time.Second), keyA
	observeRelease("runA", older)
	if got := mustGet(t, l, id); got.WrapKey != keyB || !got.UpdatedAt.Equal(o.UpdatedAt) {
		t.Fatalf("an older observation overwrote a later record: %+v", got)
	}
	free(id)

	// The key not told: kept for the same wrapped key, as Observe does.
	claim(id, "runA")
	unknown := o
	unknown.UpdatedAt, unknown.WrapKey, unknown.State = t0.Add(3*time.Second), "", StateFailed
	observeRelease("runA", unknown)
	if got := mustGet(t, l, id); got.WrapKey != keyB || got.State != StateFailed {
		t.Fatalf("record %+v, want key B kept, state failed", got)
	}
	free(id)

	// A fresh object, held: recorded (UpdatedAt filled) and released.
	fresh := observed(oid("observe-release-fresh"), keyA)
	claim(fresh.ID, "runA")
	observeRelease("runA", fresh)
	if got := mustGet(t, l, fresh.ID); got.WrapKey != keyA || got.UpdatedAt.IsZero() {
		t.Fatalf("record %+v, want key A with its time", got)
	}
	free(fresh.ID)
	if err := l.ObserveRelease(ctx, ownr("runA"), Object{ID: fresh.ID}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("an observation without a state: %v, want ErrInvalid", err)
	}
}

// testObserveUnknownKey: an observation that does not know the key (a
// failed read, a key that could not be told) keeps the key the record
// names for the same wrapped key; one that saw another wrapped key, or a
// change by someone else, does not.
func testObserveUnknownKey(t *testing.T, open func(...Option) Ledger) {
	l := open()
	id := oid("unknown-key")
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	at := func(o Object, d time.Duration, st ObjectState, fp string) Object {
		o.UpdatedAt, o.State, o.WrappedKeySHA256 = t0.Add(d), st, fp
		return o
	}
	check := func(what, wantKey, wantFP string, want ObjectState) {
		t.Helper()
		got := mustGet(t, l, id)
		if got.WrapKey != wantKey || got.WrappedKeySHA256 != wantFP || got.State != want {
			t.Fatalf("%s: record %+v, want key %q, fingerprint %q, state %s", what, got, wantKey, wantFP, want)
		}
		n := int64(0)
		if wantKey == keyA {
			n = 1
		}
		if c := counts(t, l)[keyA]; c != n {
			t.Fatalf("%s: %d under A, want %d", what, c, n)
		}
	}
	mustObserve(t, l, at(observed(id, keyA), 0, StateCurrent, "f1"))
	mustObserve(t, l, at(observed(id, ""), time.Second, StateFailed, ""))
	check("a failed read", keyA, "f1", StateFailed)
	mustObserve(t, l, at(observed(id, ""), 2*time.Second, StateCurrent, "f1"))
	check("the same wrapped key, its key not told", keyA, "f1", StateCurrent)
	mustObserve(t, l, at(observed(id, ""), 3*time.Second, StateCurrent, "f2"))
	check("another wrapped key", "", "f2", StateCurrent)
	mustObserve(t, l, at(observed(id, keyA), 4*time.Second, StateCurrent, "f1"))
	mustObserve(t, l, at(observed(id, ""), 5*time.Second, StateChanged, ""))
	check("changed by someone else", "", "", StateChanged)
	mustObserve(t, l, at(observed(id, keyA), 6*time.Second, StateCurrent, "f1"))
	mustObserve(t, l, at(observed(id, ""), 5500*time.Millisecond, StateFailed, ""))
	check("an older observation", keyA, "f1", StateCurrent)
	fresh := at(observed(oid("unknown-fresh"), ""), 0, StateFailed, "")
	mustObserve(t, l, fresh)
	if got := mustGet(t, l, fresh.ID); got.WrapKey != "" || got.State != StateFailed {
		t.Fatalf("a first observation that does not know the key: %+v", got)
	}
}

func testGetNotFound(t *testing.T, open func(...Option) Ledger) {
	l := open()
	if _, err := l.Get(ctx, oid("missing")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound", err)
	}
	id := oid("claimed-only")
	if _, err := l.Claim(ctx, id, ownr("runA"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Get(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("claimed but never recorded: got %v, want ErrNotFound", err)
	}
	if evs := lineageOf(t, l, oid("missing")); len(evs) != 0 {
		t.Fatalf("lineage of a missing object: %+v", evs)
	}
	if _, err := l.GetRun(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetRun: got %v, want ErrNotFound", err)
	}
	if c := counts(t, l); len(c) != 0 {
		t.Fatalf("counts of an empty ledger: %v", c)
	}
}

func testByKeyAndCounts(t *testing.T, open func(...Option) Ledger) {
	l := open()
	var want []string
	for i := range 10 {
		id := oid(fmt.Sprintf("obj-%02d", i))
		mustObserve(t, l, observed(id, keyA))
		want = append(want, id.Key+"@")
	}
	if got := byKey(t, l, keyA); !slices.Equal(got, want) {
		t.Fatalf("ByKey(A) = %v, want %v", got, want)
	}
	for i := range 4 {
		rewrap(t, l, oid(fmt.Sprintf("obj-%02d", i)), "runA", keyA, keyB)
	}
	if got := byKey(t, l, keyA); !slices.Equal(got, want[4:]) {
		t.Fatalf("ByKey(A) after rewraps = %v, want %v", got, want[4:])
	}
	if got := byKey(t, l, keyB); !slices.Equal(got, want[:4]) {
		t.Fatalf("ByKey(B) after rewraps = %v, want %v", got, want[:4])
	}
	rewrap(t, l, oid("obj-00"), "runB", keyB, keyC)
	if got, want := counts(t, l), map[string]int64{keyA: 6, keyB: 3, keyC: 1}; !reflect.DeepEqual(got, want) {
		t.Fatalf("counts = %v, want %v", got, want)
	}
	// A record without a wrap key is in no index.
	failed := observed(oid("unreadable"), "")
	failed.State = StateFailed
	mustObserve(t, l, failed)
	rewrap(t, l, oid("obj-00"), "runC", keyC, keyA)
	if got, want := counts(t, l), map[string]int64{keyA: 7, keyB: 3, keyC: 0}; !reflect.DeepEqual(got, want) {
		t.Fatalf("counts = %v, want %v (a key no object uses counts 0)", got, want)
	}
	stop := errors.New("stop")
	calls := 0
	err := l.ByKey(ctx, keyA, func(Object) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("ByKey with a failing fn: err %v after %d calls", err, calls)
	}
	// fn may write to the ledger (move every object as it is listed).
	err = l.ByKey(ctx, keyB, func(o Object) error {
		if _, err := l.Claim(ctx, o.ID, ownr("runD"), time.Hour); err != nil {
			return err
		}
		obj, ev := change(o.ID, "runD", keyB, keyC)
		return l.Commit(ctx, ownr(ev.RunID), obj, ev)
	})
	if err != nil {
		t.Fatalf("ByKey with a writing fn: %v", err)
	}
	if got := byKey(t, l, keyB); len(got) != 0 {
		t.Fatalf("ByKey(B) after moving all: %v", got)
	}
	if err := l.ByKey(ctx, "", func(Object) error { return nil }); !errors.Is(err, ErrInvalid) {
		t.Fatalf("ByKey(\"\"): got %v, want ErrInvalid", err)
	}
}

func testLineage(t *testing.T, open func(...Option) Ledger) {
	l := open()
	id := oid("history")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// Recorded out of time order.
	for _, step := range []struct {
		run      string
		at       int
		from, to string
	}{{"run3", 3, keyC, keyA}, {"run1", 1, keyA, keyB}, {"run2", 2, keyB, keyC}} {
		if _, err := l.Claim(ctx, id, ownr(step.run), time.Hour); err != nil {
			t.Fatal(err)
		}
		obj, ev := change(id, step.run, step.from, step.to)
		ev.At = t0.Add(time.Duration(step.at) * time.Hour)
		obj.UpdatedAt = ev.At
		if err := l.Commit(ctx, ownr(ev.RunID), obj, ev); err != nil {
			t.Fatal(err)
		}
	}
	evs := lineageOf(t, l, id)
	var runs []string
	for i, e := range evs {
		runs = append(runs, e.RunID)
		if i > 0 && e.At.Before(evs[i-1].At) {
			t.Errorf("event %d before event %d", i, i-1)
		}
	}
	if !slices.Equal(runs, []string{"run1", "run2", "run3"}) {
		t.Fatalf("lineage runs = %v, want time order", runs)
	}
	_, ev := change(id, "run1", keyA, keyB)
	ev.At = t0.Add(time.Hour)
	if !reflect.DeepEqual(evs[0], ev) {
		t.Fatalf("event round trip:\n got %+v\nwant %+v", evs[0], ev)
	}

	// Versions: v1 -> v2 -> v3 by rewraps, v1 deleted; v8 -> v9 is another
	// line of the same key.
	ver := func(v string) ObjectID { return ObjectID{Bucket: "data-bucket", Key: "multi", VersionID: v} }
	step := func(run, from, to string, at int) {
		t.Helper()
		if _, err := l.Claim(ctx, ver(from), ownr(run), time.Hour); err != nil {
			t.Fatal(err)
		}
		obj, ev := change(ver(to), run, keyA, keyB)
		ev.ID, ev.VersionBefore, ev.VersionAfter, ev.At = ver(from), from, to, t0.Add(time.Duration(at)*time.Minute)
		if err := l.Commit(ctx, ownr(ev.RunID), obj, ev); err != nil {
			t.Fatal(err)
		}
	}
	step("run1", "v1", "v2", 1)
	step("run2", "v2", "v3", 2)
	step("run1", "v8", "v9", 3)
	if _, err := l.Claim(ctx, ver("v1"), ownr("run4"), time.Hour); err != nil {
		t.Fatal(err)
	}
	del := Event{ID: ver("v1"), RunID: "run4", Op: OpDeleteVersion, At: t0.Add(4 * time.Minute)}
	if err := l.Commit(ctx, ownr(del.RunID), Object{ID: ver("v1"), State: StateDeleted}, del); err != nil {
		t.Fatal(err)
	}
	desc := func(evs []Event) []string {
		var out []string
		for _, e := range evs {
			out = append(out, e.Op+":"+e.ID.VersionID+">"+e.VersionAfter)
		}
		return out
	}
	want := []string{"rewrap:v1>v2", "rewrap:v2>v3", "delete-version:v1>"}
	for _, v := range []string{"v1", "v2", "v3"} {
		if got := desc(lineageOf(t, l, ver(v))); !slices.Equal(got, want) {
			t.Errorf("lineage of %s = %v, want %v", v, got, want)
		}
	}
	if got := desc(lineageOf(t, l, ver("v9"))); !slices.Equal(got, []string{"rewrap:v8>v9"}) {
		t.Errorf("lineage of v9 = %v", got)
	}
}

// oddIDs are object ids that a careless key encoding would confuse.
var oddIDs = []ObjectID{
	{Bucket: "b", Key: "a#b"},
	{Bucket: "b", Key: "a", VersionID: "b"},
	{Bucket: "b", Key: "a#", VersionID: "b"},
	{Bucket: "b", Key: "a", VersionID: "#b"},
	{Bucket: "b#a", Key: "b"},
	{Bucket: "b", Key: "a#b", VersionID: "null"},
	{Bucket: "b", Key: "%23"},
	{Bucket: "b", Key: "#"},
	{Bucket: "b", Key: "%", VersionID: "%23"},
	{Bucket: "b", Key: "%", VersionID: "#"},
	{Bucket: "b", Key: "dir/sub/../x"},
	{Bucket: "b", Key: "dir//x/"},
	{Bucket: "b", Key: "日本語/ключ/🔑 ñ"},
	{Bucket: "b", Key: " spaced key ", VersionID: "v 1"},
	{Bucket: "b", Key: "evt#x#runA#rewrap"},
	{Bucket: "b", Key: "ver#", VersionID: "ver#"},
	{Bucket: "b", Key: "3:b1:a"},
	{Bucket: "my.bucket-1", Key: "tab\tnew\nline"},
	{Bucket: "b", Key: strings.Repeat("#/ü", 200)},
}

func testOddKeys(t *testing.T, open func(...Option) Ledger) {
	l := open()
	for i, id := range oddIDs {
		o := observed(id, keyA)
		o.ETag = fmt.Sprintf(`"%d"`, i)
		mustObserve(t, l, o)
	}
	for i, id := range oddIDs {
		got := mustGet(t, l, id)
		if got.ID != id || got.ETag != fmt.Sprintf(`"%d"`, i) {
			t.Errorf("Get(%q) = %q etag %s: ids collide", id.String(), got.ID.String(), got.ETag)
		}
	}
	if got := byKey(t, l, keyA); len(got) != len(oddIDs) {
		t.Fatalf("ByKey found %d, want %d", len(got), len(oddIDs))
	}
	for _, id := range oddIDs {
		rewrap(t, l, id, "runA", keyA, keyB)
	}
	for _, id := range oddIDs {
		evs := lineageOf(t, l, id)
		if len(evs) != 1 || evs[0].ID != id {
			t.Errorf("lineage of %q: %+v", id.String(), evs)
		}
	}
	var n int
	if err := l.Events(ctx, func(Event) error { n++; return nil }); err != nil || n != len(oddIDs) {
		t.Fatalf("Events: %d events, err %v; want %d", n, err, len(oddIDs))
	}
	if got := counts(t, l); got[keyA] != 0 || got[keyB] != int64(len(oddIDs)) {
		t.Fatalf("counts = %v", got)
	}
}

func testRuns(t *testing.T, open func(...Option) Ledger) {
	clk := newClock()
	l := open(WithClock(clk.Now))
	r := Run{
		ID:         "2026-03-01T12:00:00Z-a1b2",
		Config:     json.RawMessage(`{"from":["kms:alias/old"],"to":"kms:alias/new"}`),
		State:      RunRunning,
		Checkpoint: []byte{0, 1, 2, 0xff},
	}
	if err := l.CreateRun(ctx, &r); err != nil {
		t.Fatal(err)
	}
	if r.Revision != 1 || !r.CreatedAt.Equal(clk.Now()) || !r.UpdatedAt.Equal(clk.Now()) {
		t.Fatalf("after CreateRun: %+v", r)
	}
	dup := Run{ID: r.ID, State: RunRunning}
	if err := l.CreateRun(ctx, &dup); !errors.Is(err, ErrRunExists) {
		t.Fatalf("CreateRun of an existing id: got %v, want ErrRunExists", err)
	}
	got, err := l.GetRun(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Fatalf("GetRun = %+v, want %+v", got, r)
	}
	stale := got
	clk.Advance(time.Minute)
	r.Counts = map[string]int64{"rewrapped": 10, "skipped": 3}
	r.Checkpoint = []byte(`{"after":"logs/2026/03/01/x#y"}`)
	if err := l.UpdateRun(ctx, &r); err != nil {
		t.Fatal(err)
	}
	if r.Revision != 2 || !r.UpdatedAt.Equal(clk.Now()) || r.CreatedAt.Equal(r.UpdatedAt) {
		t.Fatalf("after UpdateRun: %+v", r)
	}
	if got, _ := l.GetRun(ctx, r.ID); !reflect.DeepEqual(got, r) {
		t.Fatalf("GetRun after update = %+v, want %+v", got, r)
	}
	stale.State = RunFailed
	if err := l.UpdateRun(ctx, &stale); !errors.Is(err, ErrConflict) {
		t.Fatalf("update from a stale revision: got %v, want ErrConflict", err)
	}
	if stale.Revision != 1 {
		t.Fatalf("a failed update changed the caller's revision to %d", stale.Revision)
	}
	// Fields can be cleared.
	r.Counts, r.Checkpoint, r.Config, r.State = nil, nil, nil, RunDone
	if err := l.UpdateRun(ctx, &r); err != nil {
		t.Fatal(err)
	}
	if got, _ := l.GetRun(ctx, r.ID); !reflect.DeepEqual(got, r) {
		t.Fatalf("GetRun after clearing = %+v, want %+v", got, r)
	}
	missing := Run{ID: "missing", Revision: 1}
	if err := l.UpdateRun(ctx, &missing); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update of a missing run: got %v, want ErrNotFound", err)
	}
	clk.Advance(time.Minute)
	r2 := Run{ID: "0-earlier-id-later-run", State: RunInterrupted}
	if err := l.CreateRun(ctx, &r2); err != nil {
		t.Fatal(err)
	}
	runs, err := l.ListRuns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || runs[0].ID != r.ID || runs[1].ID != r2.ID {
		t.Fatalf("ListRuns = %+v, want oldest first", runs)
	}
	for _, bad := range []Run{
		{ID: "run/1"}, {ID: ""}, {ID: "-x"}, {ID: strings.Repeat("r", 129)},
		{ID: "ok", Config: json.RawMessage("{not json")},
		{ID: "ok", Checkpoint: make([]byte, MaxRunBytes+1)},
	} {
		if err := l.CreateRun(ctx, &bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("CreateRun(%.20q): got %v, want ErrInvalid", bad.ID, err)
		}
	}
}

func testRunsConcurrentUpdate(t *testing.T, open func(...Option) Ledger) {
	l := open()
	r := Run{ID: "contended", State: RunRunning}
	if err := l.CreateRun(ctx, &r); err != nil {
		t.Fatal(err)
	}
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			mine := r
			mine.Counts = map[string]int64{"worker": int64(i)}
			errs[i] = l.UpdateRun(ctx, &mine)
		})
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, ErrConflict):
			t.Fatalf("got %v, want ErrConflict", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d concurrent updates from one revision succeeded, want 1", ok)
	}
	if got, _ := l.GetRun(ctx, r.ID); got.Revision != 2 {
		t.Fatalf("revision %d, want 2", got.Revision)
	}
}

const wantCSVHeader = "bucket,object_key,version_id,run_id,op,method,from_key,to_key,at,etag_before,etag_after,version_before,version_after,old_wrapped_key_sha256,new_wrapped_key_sha256\n"

func testExport(t *testing.T, open func(...Option) Ledger) {
	l := open()
	at := time.Date(2026, 3, 1, 12, 30, 0, 123456789, time.UTC)
	ids := []ObjectID{
		{Bucket: "b", Key: "plain"},
		{Bucket: "b", Key: "quote\"comma,#\nline", VersionID: "v1"},
	}
	var want [][]string
	for _, id := range ids {
		if _, err := l.Claim(ctx, id, ownr("runX"), time.Hour); err != nil {
			t.Fatal(err)
		}
		obj, ev := change(id, "runX", keyA, keyB)
		ev.At = at
		if err := l.Commit(ctx, ownr(ev.RunID), obj, ev); err != nil {
			t.Fatal(err)
		}
		want = append(want, []string{id.Bucket, id.Key, id.VersionID, "runX", "rewrap", "kms-reencrypt", keyA, keyB,
			"2026-03-01T12:30:00.123456789Z", `"e0"`, `"e1"`, id.VersionID, id.VersionID, ev.OldWrappedKeySHA256,
			ev.NewWrappedKeySHA256})
	}

	var buf bytes.Buffer
	if err := ExportCSV(ctx, &buf, l); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(buf.String(), wantCSVHeader) {
		t.Fatalf("CSV header changed:\n got %q\nwant %q", strings.SplitN(buf.String(), "\n", 2)[0], wantCSVHeader)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	got := rows[1:]
	sort.Slice(got, func(i, j int) bool { return got[i][1] < got[j][1] })
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("CSV rows:\n got %q\nwant %q", got, want)
	}

	buf.Reset()
	if err := ExportJSONLines(ctx, &buf, l); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != len(ids) {
		t.Fatalf("%d JSON lines, want %d", len(lines), len(ids))
	}
	var gotJSON [][]string
	for _, line := range lines {
		// Every field, in column order, even when empty.
		dec := json.NewDecoder(strings.NewReader(line))
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
			t.Fatalf("line %q: %v", line, err)
		}
		var names, values []string
		for dec.More() {
			k, _ := dec.Token()
			v, _ := dec.Token()
			names, values = append(names, k.(string)), append(values, v.(string))
		}
		if !slices.Equal(names, ExportColumns) {
			t.Fatalf("JSON fields %v, want %v", names, ExportColumns)
		}
		gotJSON = append(gotJSON, values)
	}
	sort.Slice(gotJSON, func(i, j int) bool { return gotJSON[i][1] < gotJSON[j][1] })
	if !reflect.DeepEqual(gotJSON, want) {
		t.Fatalf("JSON values:\n got %q\nwant %q", gotJSON, want)
	}
	if !strings.Contains(buf.String(), `"from_key":"`+keyA+`"`) {
		t.Fatalf("JSON escapes changed the key id: %s", buf.String())
	}
}

// testPages writes a few hundred objects and reads them back through pages
// of 100 (DynamoDB Limit, bbolt read transactions).
func testPages(t *testing.T, open func(...Option) Ledger) {
	l := open(WithPageSize(100), WithScanSegments(3))
	const total, moved = 250, 110
	g := new(errgroup.Group)
	g.SetLimit(8)
	for i := range total {
		g.Go(func() error {
			id := oid(fmt.Sprintf("page/%04d", i))
			if err := l.Observe(ctx, observed(id, keyA)); err != nil {
				return err
			}
			if i >= moved {
				return nil
			}
			if _, err := l.Claim(ctx, id, ownr("runP"), time.Hour); err != nil {
				return err
			}
			obj, ev := change(id, "runP", keyA, keyB)
			return l.Commit(ctx, ownr(ev.RunID), obj, ev)
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := byKey(t, l, keyA); len(got) != total-moved {
		t.Errorf("ByKey(A): %d objects, want %d", len(got), total-moved)
	}
	if got := byKey(t, l, keyB); len(got) != moved || got[0] != "page/0000@" || got[moved-1] != fmt.Sprintf("page/%04d@", moved-1) {
		t.Errorf("ByKey(B): %d objects, want %d", len(got), moved)
	}
	if got, want := counts(t, l), map[string]int64{keyA: total - moved, keyB: moved}; !reflect.DeepEqual(got, want) {
		t.Errorf("counts = %v, want %v", got, want)
	}
	seen := map[string]bool{}
	err := l.Events(ctx, func(e Event) error {
		if seen[e.ID.Key] {
			t.Errorf("event on %s twice", e.ID.Key)
		}
		seen[e.ID.Key] = true
		return nil
	})
	if err != nil || len(seen) != moved {
		t.Fatalf("Events: %d events, err %v; want %d", len(seen), err, moved)
	}
	stop := errors.New("stop")
	calls := 0
	if err := l.Events(ctx, func(Event) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("Events with a failing fn: err %v after %d calls", err, calls)
	}
	for range 110 {
		r := Run{ID: fmt.Sprintf("run-%03d", len(seen)), State: RunDone}
		seen[r.ID] = true
		if err := l.CreateRun(ctx, &r); err != nil {
			t.Fatal(err)
		}
	}
	if runs, err := l.ListRuns(ctx); err != nil || len(runs) != 110 {
		t.Fatalf("ListRuns: %d runs, err %v", len(runs), err)
	}
}

// testLargeTable fills more than 1 MB (DynamoDB's page size) with default
// paging: 1,000 records with 900-byte keys (dynalite's scan returns about
// 850 of them in its first page).
func testLargeTable(t *testing.T, open func(...Option) Ledger) {
	l := open(WithScanSegments(1))
	const total, changed = 1000, 40
	pad := strings.Repeat("x/#", 300)
	g := new(errgroup.Group)
	g.SetLimit(8)
	for i := range total {
		g.Go(func() error {
			id := oid(fmt.Sprintf("%04d/%s", i, pad))
			if err := l.Observe(ctx, observed(id, keyA)); err != nil {
				return err
			}
			if i%(total/changed) != 0 {
				return nil
			}
			if _, err := l.Claim(ctx, id, ownr("runL"), time.Hour); err != nil {
				return err
			}
			obj, ev := change(id, "runL", keyA, keyA) // rewrapped in place
			return l.Commit(ctx, ownr(ev.RunID), obj, ev)
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := l.ByKey(ctx, keyA, func(Object) error { n++; return nil }); err != nil || n != total {
		t.Fatalf("ByKey: %d objects, err %v; want %d", n, err, total)
	}
	n = 0
	if err := l.Events(ctx, func(Event) error { n++; return nil }); err != nil || n != changed {
		t.Fatalf("Events: %d events, err %v; want %d", n, err, changed)
	}
	if got := counts(t, l); got[keyA] != total {
		t.Fatalf("counts = %v", got)
	}
}

// benchCommit measures Claim+Commit of distinct objects, from one goroutine
// and from many.
func benchCommit(b *testing.B, open func(...Option) Ledger) {
	l := open()
	var seq atomic.Int64
	one := func() error {
		id := oid(fmt.Sprintf("bench/%08d", seq.Add(1)))
		if _, err := l.Claim(ctx, id, ownr("runB"), time.Hour); err != nil {
			return err
		}
		obj, ev := change(id, "runB", keyA, keyB)
		return l.Commit(ctx, ownr(ev.RunID), obj, ev)
	}
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			if err := one(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
	})
	b.Run("parallel16", func(b *testing.B) {
		b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := one(); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
	})
}

// ownr is the claim owner the tests use for run: the first process of
// the run's lease "all" (epoch 1).
func ownr(run string) string { return epochOwner(run, 1, "p1") }

// epochOwner is an owner of run's lease "all" at epoch e.
func epochOwner(run string, e int64, holder string) string {
	return Owner{Run: run, Lease: "all", Epoch: e, Holder: holder}.String()
}
