package ledger

import (
	"fmt"
	"strconv"
	"strings"
)

// Owner names who holds a claim: one process working for one lease of a
// run. Its string form, "run/lease/epoch/holder", is what Claim, Prepare,
// Commit, Abandon, SaveUpload and DeleteUpload take as owner.
//
// The epoch fences processes: a run's lease (AcquireLease) is held by one
// process at a time, and every acquisition increments its epoch. A claim
// held by an earlier epoch of the same run and lease belongs to a process
// that lost the lease (it died, or stalled past its lease), so a process of
// a later epoch takes it over at once, without waiting for the claim to
// expire; the earlier process can then no longer record anything on the
// object. Claims of other runs, or of other leases of the same run (other
// shards), are only taken over once they expire.
type Owner struct {
	Run string
	// Lease is the name of the run's lease the process holds: "all" for a
	// run that is not sharded, "shard-I-of-N" for one shard.
	Lease string
	// Epoch is the lease's epoch when the process acquired it (>= 1).
	Epoch int64
	// Holder names the process: host, pid and a random nonce.
	Holder string
}

// String returns "run/lease/epoch/holder".
func (o Owner) String() string {
	return o.Run + "/" + o.Lease + "/" + strconv.FormatInt(o.Epoch, 10) + "/" + o.Holder
}

// group is the part of an owner that epochs order: run and lease.
func (o Owner) group() string { return o.Run + "/" + o.Lease }

// ParseOwner parses Owner.String. An owner of another form ("run/worker",
// as earlier versions wrote) parses with no lease and epoch 0: it is
// only ever taken over by expiry.
func ParseOwner(s string) (Owner, error) {
	if err := validOwner(s); err != nil {
		return Owner{}, err
	}
	p := strings.SplitN(s, "/", 4)
	if len(p) == 4 {
		if e, err := strconv.ParseInt(p[2], 10, 64); err == nil && e >= 1 && p[1] != "" && p[3] != "" {
			return Owner{Run: p[0], Lease: p[1], Epoch: e, Holder: p[3]}, nil
		}
	}
	return Owner{Run: runOf(s), Holder: strings.TrimPrefix(s, runOf(s)+"/")}, nil
}

// mayTakeOver reports whether owner next may take a claim held by cur that
// has not expired: the same owner (a renewal), or a later epoch of the
// same run and lease.
func mayTakeOver(cur, next string) bool {
	if cur == next {
		return true
	}
	c, err1 := ParseOwner(cur)
	n, err2 := ParseOwner(next)
	return err1 == nil && err2 == nil && c.Epoch > 0 && c.group() == n.group() && c.Epoch < n.Epoch
}

// ownerFence returns the claim group and epoch stored beside a claim so
// that DynamoDB can evaluate mayTakeOver in a condition expression. Owners
// without an epoch get group "" (never matched).
func ownerFence(owner string) (group string, epoch int64) {
	o, err := ParseOwner(owner)
	if err != nil || o.Epoch == 0 {
		return "", 0
	}
	return o.group(), o.Epoch
}

// notHeld is the error of a write fenced on a claim that owner does not
// hold.
func notHeld(verb string, id ObjectID, owner, holder string) error {
	if holder == "" {
		return fmt.Errorf("%w: %s %s by %s: no claim (hint: Claim before changing the object)", ErrNotClaimed, verb, id, owner)
	}
	return fmt.Errorf("%w: %s %s by %s: claimed by %s", ErrNotClaimed, verb, id, owner, holder)
}
