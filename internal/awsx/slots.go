package awsx

import (
	"context"

	"github.com/aws/smithy-go/middleware"
)

// Slots bounds the requests in flight to S3 and KMS, whatever the number
// of objects in progress. A worker that waits for something else (the
// ledger's group commit, an HSM session) holds no slot, so that the
// requests in flight stay at --concurrency while the ledger makes some
// objects wait: with a slot per object instead, every object waiting for
// the ledger's fsync kept a request from being sent (a third to a half of
// 32 workers did, in goroutine dumps of a rewrap run).
type Slots struct{ c chan struct{} }

// NewSlots returns n slots; nil (no bound) when n <= 0.
func NewSlots(n int) *Slots {
	if n <= 0 {
		return nil
	}
	return &Slots{c: make(chan struct{}, n)}
}

// Middleware is the API option that makes every attempt of a request
// hold a slot from just before it is signed until its response (for a
// streamed body, its headers) is back. Waiting for a slot ends with the
// request's context. A nil Slots adds nothing.
func (s *Slots) Middleware(st *middleware.Stack) error {
	if s == nil {
		return nil
	}
	m := middleware.FinalizeMiddlewareFunc("rotator/RequestSlot",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			select {
			case s.c <- struct{}{}:
			case <-ctx.Done():
				return middleware.FinalizeOutput{}, middleware.Metadata{}, ctx.Err()
			}
			defer func() { <-s.c }()
			return next.HandleFinalize(ctx, in)
		})
	if err := st.Finalize.Insert(m, "Signing", middleware.Before); err != nil {
		return st.Finalize.Add(m, middleware.After) // no signing step
	}
	return nil
}
