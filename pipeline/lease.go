package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/rotator-dev/rotator/ledger"
)

// LeaseLedger is the part of the ledger that keeps run leases.
type LeaseLedger interface {
	AcquireLease(ctx context.Context, want ledger.Lease, ttl time.Duration, takeOver func(ledger.Lease) bool) (ledger.Lease, error)
	RenewLease(ctx context.Context, l ledger.Lease, ttl time.Duration) (ledger.Lease, error)
	ReleaseLease(ctx context.Context, l ledger.Lease) error
}

// DefaultLeaseTTL is how long a run's lease lasts without a renewal; it is
// renewed every third of it. A process that dies holds its run for at
// most this long against processes on other hosts; a process on the same
// host takes the lease over at once when the holder no longer exists.
const DefaultLeaseTTL = 60 * time.Second

// LeaseOptions tune AcquireRunLease.
type LeaseOptions struct {
	// TTL is the lease's duration (default DefaultLeaseTTL).
	TTL time.Duration
	// Wait: when another process holds the lease, wait until it is free
	// (checking every TTL/4) instead of failing; OnWait is told who holds
	// it each time.
	Wait   bool
	OnWait func(ledger.LeaseHeldError)
	// TakeOver decides whether a lease held by another process may be
	// taken before it expires (default: the holder ran on this host and
	// no longer exists).
	TakeOver func(ledger.Lease) bool
	// Host and PID name this process (default: os.Hostname, os.Getpid).
	Host string
	PID  int
}

// RunLease is this process's hold on a run's lease: the only process
// allowed to work for the run (or one shard of it). Its owner string is
// the claim owner of every object the process changes.
type RunLease struct {
	l     LeaseLedger
	ttl   time.Duration
	mu    sync.Mutex
	lease ledger.Lease
	lost  error
}

// AcquireRunLease acquires the lease name ("all", or ledger.ShardLeaseName)
// of run runID. When another live process holds it, it fails with a
// *ledger.LeaseHeldError naming the holder, or with Wait waits for it.
func AcquireRunLease(ctx context.Context, l LeaseLedger, runID, name string, o LeaseOptions) (*RunLease, error) {
	if o.TTL <= 0 {
		o.TTL = DefaultLeaseTTL
	}
	if o.Host == "" {
		o.Host, _ = os.Hostname()
		if o.Host == "" {
			o.Host = "host"
		}
	}
	if o.PID == 0 {
		o.PID = os.Getpid()
	}
	if o.TakeOver == nil {
		host := o.Host
		o.TakeOver = func(cur ledger.Lease) bool { return cur.Host == host && cur.PID > 0 && !processAlive(cur.PID) }
	}
	var nonce [4]byte
	_, _ = rand.Read(nonce[:])
	want := ledger.Lease{Run: runID, Name: name, Host: o.Host, PID: o.PID,
		Holder: fmt.Sprintf("%s-%d-%s", o.Host, o.PID, hex.EncodeToString(nonce[:]))}
	for attempt := 1; ; attempt++ {
		got, err := l.AcquireLease(ctx, want, o.TTL, o.TakeOver)
		if err == nil {
			return &RunLease{l: l, ttl: o.TTL, lease: got}, nil
		}
		var held *ledger.LeaseHeldError
		switch {
		case errors.As(err, &held) && held.Lease.Holder == want.Holder, !errors.As(err, &held) && attempt < 4 && ctx.Err() == nil:
			// Our own acquisition whose response was lost (the retry found
			// the lease held by us), or the ledger failed: ask again, as
			// the same holder (which keeps the epoch).
			time.Sleep(time.Duration(attempt) * 50 * time.Millisecond)
			continue
		case !o.Wait || held == nil:
			return nil, err
		}
		if o.OnWait != nil {
			o.OnWait(*held)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(o.TTL / 4):
		}
	}
}

// processAlive reports whether a process with pid exists on this host.
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Owner is the claim owner of this process: "run/lease/epoch/holder".
func (r *RunLease) Owner() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lease.Owner().String()
}

// Lease returns the lease as last acquired or renewed.
func (r *RunLease) Lease() ledger.Lease {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lease
}

// Keep renews the lease every third of its TTL until stop is called, and
// returns a context that is canceled when the lease is lost (another
// process took it over, or it could not be renewed before it expired):
// from then on this process must change nothing.
func (r *RunLease) Keep(ctx context.Context) (context.Context, func()) {
	kctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(r.ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-kctx.Done():
				return
			case <-t.C:
			}
			cur := r.Lease()
			got, err := r.l.RenewLease(kctx, cur, r.ttl)
			switch {
			case err == nil:
				r.mu.Lock()
				r.lease = got
				r.mu.Unlock()
			case errors.Is(err, ledger.ErrLeaseLost) || time.Now().After(cur.Expires.Add(-r.ttl/6)):
				r.mu.Lock()
				r.lost = fmt.Errorf("the run's lease is lost, so this process stopped changing objects: %w", err)
				r.mu.Unlock()
				cancel(r.Lost())
				return
			}
		}
	}()
	return kctx, func() {
		close(done)
		wg.Wait()
		cancel(nil)
	}
}

// Lost returns why the lease was lost, or nil.
func (r *RunLease) Lost() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lost
}

// Release ends the lease now (the epoch stays, so the next holder's is
// higher).
func (r *RunLease) Release(ctx context.Context) error {
	return r.l.ReleaseLease(context.WithoutCancel(ctx), r.Lease())
}
