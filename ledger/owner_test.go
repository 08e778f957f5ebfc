package ledger

import "testing"

func TestOwner(t *testing.T) {
	o := Owner{Run: "run-1", Lease: "shard-0-of-4", Epoch: 7, Holder: "host-12-ab"}
	got, err := ParseOwner(o.String())
	if err != nil || got != o {
		t.Fatalf("ParseOwner(%q) = %+v, %v", o.String(), got, err)
	}
	// Earlier versions' "run/worker": no lease, epoch 0.
	if got, err := ParseOwner("run-1/host-5"); err != nil || got != (Owner{Run: "run-1", Holder: "host-5"}) {
		t.Fatalf("legacy owner: %+v, %v", got, err)
	}
	if _, err := ParseOwner("not an owner"); err == nil {
		t.Fatal("ParseOwner accepted an owner without a run")
	}
	later, other := o, o
	later.Epoch, later.Holder = 8, "host-13-cd"
	other.Lease, other.Epoch = "shard-1-of-4", 9
	for _, tc := range []struct {
		cur, next string
		want      bool
	}{
		{o.String(), o.String(), true},                                       // renewal
		{o.String(), later.String(), true},                                   // next epoch of the lease
		{later.String(), o.String(), false},                                  // earlier epoch: fenced
		{o.String(), other.String(), false},                                  // another shard
		{"run-1/w1", later.String(), false},                                  // legacy: expiry only
		{o.String(), Owner{"run-2", "shard-0-of-4", 9, "h"}.String(), false}, // another run
	} {
		if got := mayTakeOver(tc.cur, tc.next); got != tc.want {
			t.Errorf("mayTakeOver(%q, %q) = %v, want %v", tc.cur, tc.next, got, tc.want)
		}
	}
}
