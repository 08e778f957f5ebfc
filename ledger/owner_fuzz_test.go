package ledger

import (
	"strconv"
	"strings"
	"testing"
)

// FuzzParseOwner parses arbitrary strings as claim owners (never a panic)
// and checks what the fencing relies on. An owner that parses is a valid
// owner of a valid run. An owner with an epoch has a lease and a holder,
// its claim group is run/lease (so no two runs and leases share one), its
// String parses back to it and, when its epoch is written the way String
// writes it, is the string parsed; ownerFence gives its group and epoch,
// and mayTakeOver lets the next epoch of its lease take it over but not
// the same epoch or an earlier one. An owner without an epoch (an earlier
// version's run/worker) has no lease, is run/holder, gets no fence and is
// only ever taken over by itself. Owners built from the fuzzer's strings
// round-trip through String and ParseOwner.
func FuzzParseOwner(f *testing.F) {
	for _, s := range []string{
		Owner{Run: "run-1", Lease: "all", Epoch: 1, Holder: "host-1-12345-0a1b2c3d"}.String(),
		Owner{Run: "job:7", Lease: "shard-3-of-8", Epoch: 9223372036854775807, Holder: "lambda-0123456789abcdef"}.String(),
		"run-1/host-5", "run-1", "run-1/", "run-1/all/0/h", "run-1/all/-1/h", "run-1//1/h", "run-1/all/1/", "run-1/all/x/h",
		"run-1/all/1/h/with/slashes", "-run/all/1/h", "", "/all/1/h", "run-1/all/+1/h", "run-1/all/01/h", "r\xff/all/1/h",
	} {
		f.Add(s, "run-1", "shard-0-of-2", "host", int64(3))
	}
	f.Fuzz(func(t *testing.T, s, run, lease, holder string, epoch int64) {
		o, err := ParseOwner(s)
		if err == nil {
			checkParsedOwner(t, s, o)
		} else if validOwner(s) == nil {
			t.Fatalf("ParseOwner(%q): %v, yet it is a valid owner", s, err)
		}

		// An owner as a process builds it from its lease.
		built := Owner{Run: run, Lease: lease, Epoch: epoch, Holder: holder}
		if validRunID(run) != nil || lease == "" || strings.Contains(lease, "/") || epoch < 1 || holder == "" || validOwner(built.String()) != nil {
			return
		}
		got, err := ParseOwner(built.String())
		if err != nil || got != built {
			t.Fatalf("ParseOwner(%q) = %+v, %v; want %+v", built.String(), got, err, built)
		}
	})
}

func checkParsedOwner(t *testing.T, s string, o Owner) {
	t.Helper()
	if validOwner(s) != nil || validRunID(o.Run) != nil || o.Run != runOf(s) || o.Epoch < 0 {
		t.Fatalf("ParseOwner(%q) = %+v: not a valid owner of a valid run", s, o)
	}
	group, epoch := ownerFence(s)
	if o.Epoch == 0 {
		if o.Lease != "" || (s != o.Run+"/"+o.Holder && !(s == o.Run && o.Holder == s)) {
			t.Fatalf("ParseOwner(%q) = %+v: not run/holder", s, o)
		}
		if group != "" || epoch != 0 {
			t.Fatalf("ownerFence(%q) = %q, %d for an owner without an epoch", s, group, epoch)
		}
		if !mayTakeOver(s, s) {
			t.Fatalf("%q may not renew its own claim", s)
		}
		next := Owner{Run: o.Run, Lease: "all", Epoch: 1, Holder: "h"}.String()
		if mayTakeOver(s, next) {
			t.Fatalf("%q may take over the claim of %q, which has no epoch", next, s)
		}
		return
	}
	if o.Lease == "" || strings.Contains(o.Lease, "/") || o.Holder == "" || strings.Count(o.group(), "/") != 1 {
		t.Fatalf("ParseOwner(%q) = %+v: an epoch without a lease or holder", s, o)
	}
	if again, err := ParseOwner(o.String()); err != nil || again != o {
		t.Fatalf("ParseOwner(%q) = %+v; its String %q parses to %+v, %v", s, o, o.String(), again, err)
	}
	if p := strings.SplitN(s, "/", 4); p[2] == strconv.FormatInt(o.Epoch, 10) && o.String() != s {
		t.Fatalf("ParseOwner(%q) = %+v, whose String is %q", s, o, o.String())
	}
	if group != o.group() || epoch != o.Epoch {
		t.Fatalf("ownerFence(%q) = %q, %d; want %q, %d", s, group, epoch, o.group(), o.Epoch)
	}
	same := o
	same.Holder += "-other"
	if mayTakeOver(s, same.String()) {
		t.Fatalf("%q may take over the claim of %q: the same epoch", same.String(), s)
	}
	if o.Epoch > 1 {
		earlier := o
		earlier.Epoch--
		if mayTakeOver(s, earlier.String()) {
			t.Fatalf("%q may take over the claim of %q: an earlier epoch", earlier.String(), s)
		}
	}
	if o.Epoch < 1<<63-1 {
		later := o
		later.Epoch++
		if validOwner(later.String()) == nil && !mayTakeOver(s, later.String()) {
			t.Fatalf("%q may not take over the claim of %q: the next epoch of its lease", later.String(), s)
		}
		other := later
		other.Lease += "x"
		if mayTakeOver(s, other.String()) {
			t.Fatalf("%q may take over the claim of %q: another lease", other.String(), s)
		}
	}
}
