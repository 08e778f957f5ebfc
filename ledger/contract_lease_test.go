package ledger

import (
	"errors"
	"testing"
	"time"
)

// testLease checks run leases: one holder at a time, epochs that only grow,
// renewal fenced on holder and epoch, takeover of a dead holder.
func testLease(t *testing.T, open func(...Option) Ledger) {
	clk := newClock()
	l := open(WithClock(clk.Now))
	want := Lease{Run: "runL", Name: "all", Holder: "host-a-101-x", Host: "host-a", PID: 101}
	a, err := l.AcquireLease(ctx, want, time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.Epoch != 1 || !a.Expires.Equal(clk.Now().Add(time.Minute)) || a.Holder != want.Holder {
		t.Fatalf("first acquisition: %+v", a)
	}
	// Acquiring again as the same holder keeps the epoch.
	if again, err := l.AcquireLease(ctx, want, time.Minute, nil); err != nil || again.Epoch != 1 {
		t.Fatalf("re-acquisition by the holder: %+v, %v", again, err)
	}
	// Another process is told who holds it.
	other := Lease{Run: "runL", Name: "all", Holder: "host-b-202-y", Host: "host-b", PID: 202}
	_, err = l.AcquireLease(ctx, other, time.Minute, nil)
	var held *LeaseHeldError
	if !errors.As(err, &held) || !errors.Is(err, ErrLeaseHeld) || held.Lease.Holder != want.Holder || held.Lease.PID != 101 {
		t.Fatalf("acquisition of a held lease: got %v", err)
	}
	// Another shard of the run is another lease.
	shard := other
	shard.Name = ShardLeaseName(1, 2)
	if s, err := l.AcquireLease(ctx, shard, time.Minute, nil); err != nil || s.Epoch != 1 {
		t.Fatalf("another shard's lease: %+v, %v", s, err)
	}
	// Renewal extends it; the lease outlives a reopened store.
	clk.Advance(30 * time.Second)
	if a, err = l.RenewLease(ctx, a, time.Minute); err != nil || !a.Expires.Equal(clk.Now().Add(time.Minute)) {
		t.Fatalf("renewal: %+v, %v", a, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = open(WithClock(clk.Now))
	// A takeover predicate (the holder is a dead process on this host)
	// takes it before expiry, with the next epoch.
	var seen Lease
	b, err := l.AcquireLease(ctx, other, time.Minute, func(cur Lease) bool { seen = cur; return cur.PID == 101 })
	if err != nil || b.Epoch != 2 || seen.Holder != want.Holder {
		t.Fatalf("takeover: %+v, %v (predicate saw %+v)", b, err, seen)
	}
	// The earlier holder has lost it: renewal says so and who has it.
	if _, err := l.RenewLease(ctx, a, time.Minute); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("renewal by the earlier holder: got %v, want ErrLeaseLost", err)
	}
	if err := l.ReleaseLease(ctx, a); err != nil {
		t.Fatalf("release by a holder that lost it is a no-op: %v", err)
	}
	// Expiry: anyone may acquire it, with the next epoch.
	clk.Advance(2 * time.Minute)
	c, err := l.AcquireLease(ctx, want, time.Minute, nil)
	if err != nil || c.Epoch != 3 {
		t.Fatalf("acquisition after expiry: %+v, %v", c, err)
	}
	// Release ends it now but keeps the epoch, so the next one is higher.
	if err := l.ReleaseLease(ctx, c); err != nil {
		t.Fatal(err)
	}
	d, err := l.AcquireLease(ctx, other, time.Minute, nil)
	if err != nil || d.Epoch != 4 {
		t.Fatalf("acquisition after release: %+v, %v", d, err)
	}
	if _, err := l.RenewLease(ctx, c, time.Minute); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("renewal after release: got %v, want ErrLeaseLost", err)
	}
	ls, err := l.Leases(ctx, "runL")
	if err != nil || len(ls) != 2 || ls[0].Name != "all" || ls[0].Epoch != 4 || ls[1].Name != "shard-1-of-2" {
		t.Fatalf("Leases: %+v, %v", ls, err)
	}
	if ls, err := l.Leases(ctx, "runM"); err != nil || len(ls) != 0 {
		t.Fatalf("Leases of another run: %+v, %v", ls, err)
	}
	// The owner of a claim names lease and epoch; bad arguments are refused.
	if o := d.Owner().String(); o != "runL/all/4/host-b-202-y" {
		t.Fatalf("Owner = %q", o)
	}
	for _, bad := range []Lease{{Run: "run/x", Name: "all", Holder: "h"}, {Run: "r", Name: "A#", Holder: "h"}, {Run: "r", Name: "all", Holder: "a/b"}, {Run: "r", Name: "all"}} {
		if _, err := l.AcquireLease(ctx, bad, time.Minute, nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("AcquireLease(%+v): got %v, want ErrInvalid", bad, err)
		}
	}
}

// testPreparedOn checks the lookup of a run's prepared events on one
// version: exactly that version's, of that run.
// testClaimNoIntents: a claim that says the version holds no intent
// (Claimed.NoIntents, which lets the caller skip PreparedOn) says so only
// when PreparedOn would find none of any run; DynamoDB says it whenever
// it holds none (the claim's answer is the item as it was).
func testClaimNoIntents(t *testing.T, open func(...Option) Ledger) {
	l := open()
	_, reports := l.(*dynamoLedger)
	id := oid("no-intents")
	claim := func(owner string, wantNone bool) Claimed {
		t.Helper()
		got, err := l.Claim(ctx, id, owner, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		for _, run := range []string{"runA", "runB"} {
			evs, err := l.PreparedOn(ctx, run, id)
			if err != nil {
				t.Fatal(err)
			}
			n += len(evs)
		}
		if got.NoIntents && n != 0 {
			t.Fatalf("the claim says no intent; PreparedOn finds %d", n)
		}
		if reports && got.NoIntents != wantNone {
			t.Fatalf("NoIntents = %v, want %v (%d intents)", got.NoIntents, wantNone, n)
		}
		return got
	}
	claim(ownr("runA"), true) // a new item
	claim(ownr("runA"), true) // renewed
	obj, ev := change(id, "runA", keyA, keyB)
	if err := l.Prepare(ctx, ownr("runA"), ev); err != nil {
		t.Fatal(err)
	}
	claim(ownr("runA"), false) // renewed over its own intent
	// A later epoch of the run takes the claim over, intent and all.
	later := epochOwner("runA", 2, "p2")
	if got := claim(later, false); got.Prev != ownr("runA") {
		t.Fatalf("Prev = %q, want the earlier epoch", got.Prev)
	}
	if err := l.Commit(ctx, later, obj, ev); err != nil {
		t.Fatal(err)
	}
	claim(ownr("runB"), true) // committed: the intent is gone, the record stays
	if err := l.Release(ctx, id, ownr("runB")); err != nil {
		t.Fatal(err)
	}
	// An intent of another run on a claim that expired.
	other := oid("no-intents-other")
	if _, err := l.Claim(ctx, other, ownr("runB"), time.Millisecond); err != nil {
		t.Fatal(err)
	}
	_, evB := change(other, "runB", keyA, keyB)
	if err := l.Prepare(ctx, ownr("runB"), evB); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	got, err := l.Claim(ctx, other, ownr("runA"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got.NoIntents || got.Prev != ownr("runB") {
		t.Fatalf("a claim over another run's intent: %+v", got)
	}
}

func testPreparedOn(t *testing.T, open func(...Option) Ledger) {
	l := open()
	v1 := ObjectID{Bucket: "b", Key: "doc", VersionID: "v1"}
	v2 := ObjectID{Bucket: "b", Key: "doc", VersionID: "v2"}
	longer := ObjectID{Bucket: "b", Key: "doc/x", VersionID: "v1"}
	for _, id := range []ObjectID{v1, v2, longer} {
		if _, err := l.Claim(ctx, id, ownr("runA"), time.Hour); err != nil {
			t.Fatal(err)
		}
		_, ev := change(id, "runA", keyA, keyB)
		if err := l.Prepare(ctx, ownr("runA"), ev); err != nil {
			t.Fatal(err)
		}
	}
	del := Event{ID: v1, RunID: "runA", Op: OpDeleteVersion, Method: "delete-version", FromKey: keyA, ETagBefore: `"e0"`}
	if err := l.Prepare(ctx, ownr("runA"), del); err != nil {
		t.Fatal(err)
	}
	got, err := l.PreparedOn(ctx, "runA", v1)
	if err != nil || len(got) != 2 {
		t.Fatalf("PreparedOn(runA, v1) = %+v, %v; want 2 events", got, err)
	}
	for _, ev := range got {
		if ev.ID != v1 || ev.RunID != "runA" {
			t.Fatalf("PreparedOn listed %+v", ev)
		}
	}
	if got, err := l.PreparedOn(ctx, "runB", v1); err != nil || len(got) != 0 {
		t.Fatalf("PreparedOn(runB, v1) = %+v, %v; want none", got, err)
	}
}
