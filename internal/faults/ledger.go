package faults

import (
	"context"
	"time"

	"github.com/rotator-dev/rotator/ledger"
)

// Ledger returns l with every call made through p: the embedded ledger's
// calls are numbered and faulted like AWS requests (a DynamoDB ledger's
// requests are numbered by the middleware; do not wrap it too).
func (p *Process) Ledger(l ledger.Ledger) ledger.Ledger { return &faultyLedger{l: l, p: p} }

type faultyLedger struct {
	l ledger.Ledger
	p *Process
}

var _ ledger.Ledger = (*faultyLedger)(nil)

func (f *faultyLedger) Claim(ctx context.Context, id ledger.ObjectID, owner string, lease time.Duration) (got ledger.Claimed, err error) {
	err = f.p.do("ledger Claim", func() (err error) { got, err = f.l.Claim(ctx, id, owner, lease); return })
	return got, err
}

func (f *faultyLedger) Renew(ctx context.Context, id ledger.ObjectID, owner string, lease time.Duration) error {
	return f.p.do("ledger Renew", func() error { return f.l.Renew(ctx, id, owner, lease) })
}

func (f *faultyLedger) Begin(ctx context.Context, owner string, lease time.Duration, ev ledger.Event) (got ledger.Claimed, err error) {
	err = f.p.do("ledger Begin", func() (err error) { got, err = f.l.Begin(ctx, owner, lease, ev); return })
	return got, err
}

func (f *faultyLedger) Release(ctx context.Context, id ledger.ObjectID, owner string) error {
	return f.p.do("ledger Release", func() error { return f.l.Release(ctx, id, owner) })
}

func (f *faultyLedger) Prepare(ctx context.Context, owner string, ev ledger.Event) error {
	return f.p.do("ledger Prepare", func() error { return f.l.Prepare(ctx, owner, ev) })
}

func (f *faultyLedger) Commit(ctx context.Context, owner string, obj ledger.Object, ev ledger.Event) error {
	return f.p.do("ledger Commit", func() error { return f.l.Commit(ctx, owner, obj, ev) })
}

func (f *faultyLedger) Abandon(ctx context.Context, owner string, id ledger.ObjectID, runID, op string) error {
	return f.p.do("ledger Abandon", func() error { return f.l.Abandon(ctx, owner, id, runID, op) })
}

func (f *faultyLedger) Prepared(ctx context.Context, runID string, fn func(ledger.Event) error) error {
	return f.p.do("ledger Prepared", func() error { return f.l.Prepared(ctx, runID, fn) })
}

func (f *faultyLedger) ObserveRelease(ctx context.Context, owner string, obj ledger.Object) error {
	return f.p.do("ledger ObserveRelease", func() error { return f.l.ObserveRelease(ctx, owner, obj) })
}

func (f *faultyLedger) PreparedOn(ctx context.Context, runID string, id ledger.ObjectID) (evs []ledger.Event, err error) {
	err = f.p.do("ledger PreparedOn", func() (err error) { evs, err = f.l.PreparedOn(ctx, runID, id); return })
	return evs, err
}

func (f *faultyLedger) Observe(ctx context.Context, obj ledger.Object) error {
	return f.p.do("ledger Observe", func() error { return f.l.Observe(ctx, obj) })
}

func (f *faultyLedger) Get(ctx context.Context, id ledger.ObjectID) (obj ledger.Object, err error) {
	err = f.p.do("ledger Get", func() (err error) { obj, err = f.l.Get(ctx, id); return })
	return obj, err
}

func (f *faultyLedger) Lineage(ctx context.Context, id ledger.ObjectID) (evs []ledger.Event, err error) {
	err = f.p.do("ledger Lineage", func() (err error) { evs, err = f.l.Lineage(ctx, id); return })
	return evs, err
}

func (f *faultyLedger) ByKey(ctx context.Context, wrapKey string, fn func(ledger.Object) error) error {
	return f.p.do("ledger ByKey", func() error { return f.l.ByKey(ctx, wrapKey, fn) })
}

func (f *faultyLedger) CountsByKey(ctx context.Context) (m map[string]int64, err error) {
	err = f.p.do("ledger CountsByKey", func() (err error) { m, err = f.l.CountsByKey(ctx); return })
	return m, err
}

func (f *faultyLedger) Events(ctx context.Context, fn func(ledger.Event) error) error {
	return f.p.do("ledger Events", func() error { return f.l.Events(ctx, fn) })
}

func (f *faultyLedger) CreateRun(ctx context.Context, r *ledger.Run) error {
	return f.p.do("ledger CreateRun", func() error { return f.l.CreateRun(ctx, r) })
}

func (f *faultyLedger) GetRun(ctx context.Context, id string) (r ledger.Run, err error) {
	err = f.p.do("ledger GetRun", func() (err error) { r, err = f.l.GetRun(ctx, id); return })
	return r, err
}

func (f *faultyLedger) UpdateRun(ctx context.Context, r *ledger.Run) error {
	return f.p.do("ledger UpdateRun", func() error { return f.l.UpdateRun(ctx, r) })
}

func (f *faultyLedger) ListRuns(ctx context.Context) (rs []ledger.Run, err error) {
	err = f.p.do("ledger ListRuns", func() (err error) { rs, err = f.l.ListRuns(ctx); return })
	return rs, err
}

func (f *faultyLedger) SaveUpload(ctx context.Context, owner string, u ledger.Upload) error {
	return f.p.do("ledger SaveUpload", func() error { return f.l.SaveUpload(ctx, owner, u) })
}

func (f *faultyLedger) GetUpload(ctx context.Context, runID string, id ledger.ObjectID) (u ledger.Upload, err error) {
	err = f.p.do("ledger GetUpload", func() (err error) { u, err = f.l.GetUpload(ctx, runID, id); return })
	return u, err
}

func (f *faultyLedger) DeleteUpload(ctx context.Context, owner, runID string, id ledger.ObjectID) error {
	return f.p.do("ledger DeleteUpload", func() error { return f.l.DeleteUpload(ctx, owner, runID, id) })
}

func (f *faultyLedger) Uploads(ctx context.Context, runID string, fn func(ledger.Upload) error) error {
	return f.p.do("ledger Uploads", func() error { return f.l.Uploads(ctx, runID, fn) })
}

func (f *faultyLedger) AcquireLease(ctx context.Context, want ledger.Lease, ttl time.Duration, takeOver func(ledger.Lease) bool) (l ledger.Lease, err error) {
	err = f.p.do("ledger AcquireLease", func() (err error) { l, err = f.l.AcquireLease(ctx, want, ttl, takeOver); return })
	return l, err
}

func (f *faultyLedger) RenewLease(ctx context.Context, l ledger.Lease, ttl time.Duration) (got ledger.Lease, err error) {
	err = f.p.do("ledger RenewLease", func() (err error) { got, err = f.l.RenewLease(ctx, l, ttl); return })
	return got, err
}

func (f *faultyLedger) ReleaseLease(ctx context.Context, l ledger.Lease) error {
	return f.p.do("ledger ReleaseLease", func() error { return f.l.ReleaseLease(ctx, l) })
}

func (f *faultyLedger) Leases(ctx context.Context, runID string) (ls []ledger.Lease, err error) {
	err = f.p.do("ledger Leases", func() (err error) { ls, err = f.l.Leases(ctx, runID); return })
	return ls, err
}

// Close is never faulted: a dead process's file is closed by the test.
func (f *faultyLedger) Close() error { return f.l.Close() }

// announcer is a ledger that journals listed objects ahead (DynamoDB).
type announcer interface {
	Announce(ctx context.Context, runID string, ids []ledger.ObjectID) error
	Done(runID string, id ledger.ObjectID)
}

// Announce passes an announcement through to a ledger that makes them,
// faulted like any call; to others it is no call at all.
func (f *faultyLedger) Announce(ctx context.Context, runID string, ids []ledger.ObjectID) error {
	a, ok := f.l.(announcer)
	if !ok {
		return nil
	}
	return f.p.do("ledger Announce", func() error { return a.Announce(ctx, runID, ids) })
}

// Done passes the end of an announcement through (in memory: no call).
func (f *faultyLedger) Done(runID string, id ledger.ObjectID) {
	if a, ok := f.l.(announcer); ok {
		a.Done(runID, id)
	}
}
