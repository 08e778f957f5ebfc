package pipeline_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

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
