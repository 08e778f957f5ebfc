package pipeline_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/pipeline"
)

// countingLedger counts the writes a run makes on one object's behalf.
type countingLedger struct {
	ledger.Ledger
	writes atomic.Int64
}

func (l *countingLedger) Claim(ctx context.Context, id ledger.ObjectID, owner string, lease time.Duration) (ledger.Claimed, error) {
	l.writes.Add(1)
	return l.Ledger.Claim(ctx, id, owner, lease)
}

func (l *countingLedger) Begin(ctx context.Context, owner string, lease time.Duration, ev ledger.Event) (ledger.Claimed, error) {
	l.writes.Add(1)
	return l.Ledger.Begin(ctx, owner, lease, ev)
}

func (l *countingLedger) Release(ctx context.Context, id ledger.ObjectID, owner string) error {
	l.writes.Add(1)
	return l.Ledger.Release(ctx, id, owner)
}

func (l *countingLedger) Prepare(ctx context.Context, owner string, ev ledger.Event) error {
	l.writes.Add(1)
	return l.Ledger.Prepare(ctx, owner, ev)
}

func (l *countingLedger) Commit(ctx context.Context, owner string, obj ledger.Object, ev ledger.Event) error {
	l.writes.Add(1)
	return l.Ledger.Commit(ctx, owner, obj, ev)
}

func (l *countingLedger) Abandon(ctx context.Context, owner string, id ledger.ObjectID, runID, op string) error {
	l.writes.Add(1)
	return l.Ledger.Abandon(ctx, owner, id, runID, op)
}

func (l *countingLedger) SaveUpload(ctx context.Context, owner string, u ledger.Upload) error {
	l.writes.Add(1)
	return l.Ledger.SaveUpload(ctx, owner, u)
}

func (l *countingLedger) DeleteUpload(ctx context.Context, owner, runID string, id ledger.ObjectID) error {
	l.writes.Add(1)
	return l.Ledger.DeleteUpload(ctx, owner, runID, id)
}

func (l *countingLedger) Observe(ctx context.Context, obj ledger.Object) error {
	l.writes.Add(1)
	return l.Ledger.Observe(ctx, obj)
}

// TestPlanCountsTheLedgerWritesOfARun: the plan's estimate of embedded
// ledger writes is what a rewrap run makes (two per rewrapped object: the
// claim with the intent, the commit), and a second run (nothing to do)
// makes one observation per object, as planned.
func TestPlanCountsTheLedgerWritesOfARun(t *testing.T) {
	f := newFixture(t, 12, false)
	for i, run := range []string{"run-cost", "run-cost-again"} {
		c := f.core(run)
		plan, err := pipeline.MakePlan(ctx, pipeline.DryRun(c), f.source(t), pipeline.PlanOptions{DynamoDBLedger: true})
		if err != nil {
			t.Fatal(err)
		}
		cl := &countingLedger{Ledger: f.ledger}
		c.Ledger = cl
		f.run(t, c)
		want := plan.Requests["ledger:embedded-write"]
		if got := cl.writes.Load(); got != want {
			t.Errorf("%s: %d ledger writes, the plan says %d (%v)", run, got, want, plan.Requests)
		}
		if per := float64(want) / float64(plan.Objects); i == 0 && per > 2 {
			t.Errorf("%s: %.2f ledger writes per object, want at most 2", run, per)
		}
		if w, obj := plan.Requests["dynamodb:write"], plan.Objects; w != 2*obj && i == 0 {
			t.Errorf("%s: %d DynamoDB writes planned for %d rewraps, want 2 each", run, w, obj)
		}
	}
}

// TestPlanCountsTheRequestsOfAnEscrowRun: for run --escrow the plan counts
// what the run sends: each object's escrow file read and written, the
// escrow's KMS ReEncrypt beside the rewrap's, and the escrow's ledger
// writes (a change of its own through the protocol).
func TestPlanCountsTheRequestsOfAnEscrowRun(t *testing.T) {
	const n = 8 // two of each format and placement
	f := newFixture(t, n, false)
	escrowKey := openKey(t, f.deps, "kms:"+createKey(t, f.kms.Client(""), "escrow C"))
	cs := &countingS3{S3: f.s3}
	cm := commit.New(cs, commit.Options{})
	c := f.core("escrow-cost")
	c.S3, c.Escrow, c.Creator = cm, escrowKey, cm
	plan, err := pipeline.MakePlan(ctx, pipeline.DryRun(c), f.source(t), pipeline.PlanOptions{DynamoDBLedger: true})
	if err != nil {
		t.Fatal(err)
	}
	if cs.puts.Load() != 0 || cs.copies.Load() != 0 {
		t.Fatalf("the plan wrote: %d puts, %d copies", cs.puts.Load(), cs.copies.Load())
	}
	runAndCompare := func(c *pipeline.Core, plan *pipeline.Plan) {
		t.Helper()
		cl := &countingLedger{Ledger: f.ledger}
		c.Ledger = cl
		f.kms.ResetCounts()
		for _, n := range []*atomic.Int64{&cs.puts, &cs.copies, &cs.creates, &cs.parts, &cs.completes} {
			n.Store(0)
		}
		rep, buf := f.run(t, c)
		if got := rep.Counts()[pipeline.StatusSucceeded]; got != n {
			t.Fatalf("%s: succeeded %d of %d\n%s", c.RunID, got, n, buf)
		}
		if plan.EscrowFiles != n {
			t.Errorf("%s: the plan counts %d escrow files, want %d", c.RunID, plan.EscrowFiles, n)
		}
		for _, m := range []struct {
			what      string
			got, want int64
		}{
			{"embedded ledger writes", cl.writes.Load(), plan.Requests["ledger:embedded-write"]},
			{"KMS ReEncrypt requests", f.kms.Count("ReEncrypt"), plan.Requests["kms:ReEncrypt"]},
			{"KMS Decrypt requests", f.kms.Count("Decrypt"), plan.Requests["kms:Decrypt"]},
			{"KMS Encrypt requests", f.kms.Count("Encrypt"), plan.Requests["kms:Encrypt"]},
			{"S3 PutObject requests", cs.puts.Load(), plan.Requests["s3:PutObject"]},
			{"S3 CopyObject requests", cs.copies.Load(), plan.Requests["s3:CopyObject"]},
			{"S3 CreateMultipartUpload requests", cs.creates.Load(), plan.Requests["s3:CreateMultipartUpload"]},
			{"S3 UploadPart requests", cs.parts.Load(), plan.Requests["s3:UploadPart"]},
			{"S3 CompleteMultipartUpload requests", cs.completes.Load(), plan.Requests["s3:CompleteMultipartUpload"]},
		} {
			if m.got != m.want {
				t.Errorf("%s: %s: the run sent %d, the plan says %d (%v)", c.RunID, m.what, m.got, m.want, plan.Requests)
			}
			t.Logf("%s: %s: %d", c.RunID, m.what, m.got)
		}
	}
	runAndCompare(c, plan)

	// A re-encryption B -> A with --escrow: each escrow file is rewritten
	// after the object's re-encryption, from its new data key.
	re, _ := f.reencryptCore("escrow-cost-reencrypt", cm, f.b)
	re.S3, re.To, re.Escrow, re.Creator = cm, f.a, escrowKey, cm
	plan, err = pipeline.MakePlan(ctx, pipeline.DryRun(re), f.source(t), pipeline.PlanOptions{DynamoDBLedger: true})
	if err != nil {
		t.Fatal(err)
	}
	runAndCompare(re, plan)
}
