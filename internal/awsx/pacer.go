package awsx

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"golang.org/x/time/rate"
)

// PacerOptions configure a Pacer.
type PacerOptions struct {
	// RPS is a hard cap on attempts per second (retries included); zero or
	// less means none. The adaptive rate never exceeds it. Burst is its
	// bucket size (default: one second's worth, at least 1).
	RPS   float64
	Burst int
	// MaxAttempts per request, the first included (default 10).
	// Throttled attempts may go on up to MaxThrottleAttempts (default
	// twice MaxAttempts): their pauses start short (ThrottleBackoff), so it
	// takes more of them to wait as long.
	MaxAttempts         int
	MaxThrottleAttempts int
	// MaxBackoff caps the pause before a retry (default 20s).
	MaxBackoff time.Duration
	// ThrottleBackoff is the base of the pause before retrying a throttled
	// attempt: a random fraction of ThrottleBackoff * 2^(retry-1), up to
	// MaxBackoff (default 10ms). Other retryable errors pause as the SDK's
	// standard retryer does (a random fraction of 1s * 2^retry).
	ThrottleBackoff time.Duration
}

// Defaults of PacerOptions.
const (
	DefaultMaxAttempts     = 10
	DefaultMaxBackoff      = 20 * time.Second
	DefaultThrottleBackoff = 10 * time.Millisecond
)

// Pacer paces and retries the requests of the clients that share one quota
// (for KMS: one account and region), in one place: every attempt waits for
// the hard cap and the adaptive rate, and reports whether it was throttled;
// a throttled attempt is retried after a short jittered pause. See the
// package documentation for how the adaptive rate tells a rate cap from
// background throttling. A Pacer is safe for concurrent use.
type Pacer struct {
	opts PacerOptions
	hard *rate.Limiter // nil: no hard cap

	mu       sync.Mutex
	soft     *rate.Limiter // the adaptive rate
	ctl      controller
	lastSend time.Time // the latest time an attempt was allowed to go
}

// NewPacer returns a Pacer, not limited until the first throttle (or by
// o.RPS).
func NewPacer(o PacerOptions) *Pacer {
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.MaxThrottleAttempts <= 0 {
		o.MaxThrottleAttempts = 2 * o.MaxAttempts
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.ThrottleBackoff <= 0 {
		o.ThrottleBackoff = DefaultThrottleBackoff
	}
	p := &Pacer{opts: o, soft: rate.NewLimiter(rate.Inf, 1), ctl: newController()}
	if o.RPS > 0 {
		burst := o.Burst
		if burst <= 0 {
			burst = max(1, int(math.Ceil(o.RPS)))
		}
		p.hard = rate.NewLimiter(rate.Limit(o.RPS), burst)
	}
	return p
}

// Rate returns the adaptive rate in attempts per second: +Inf while not
// limited. The hard cap (PacerOptions.RPS) applies on top of it.
func (p *Pacer) Rate() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ctl.limit
}

// Wait blocks until an attempt may be sent: a token of the hard cap and one
// of the adaptive rate. It fails only when ctx ends first.
func (p *Pacer) Wait(ctx context.Context) error {
	now := time.Now()
	res := p.reserve(now)
	d := res.delay(now)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		res.cancel(time.Now())
		return ctx.Err()
	}
}

// reservation holds the tokens of one attempt.
type reservation struct{ hard, soft *rate.Reservation }

func (r reservation) delay(now time.Time) time.Duration {
	d := r.soft.DelayFrom(now)
	if r.hard != nil {
		d = max(d, r.hard.DelayFrom(now))
	}
	return d
}

func (r reservation) cancel(now time.Time) {
	r.soft.CancelAt(now)
	if r.hard != nil {
		r.hard.CancelAt(now)
	}
}

// reserve takes the tokens of one attempt at now.
func (p *Pacer) reserve(now time.Time) reservation {
	var r reservation
	if p.hard != nil {
		r.hard = p.hard.ReserveN(now, 1)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	r.soft = p.soft.ReserveN(now, 1)
	if t := now.Add(r.delay(now)); t.After(p.lastSend) {
		p.lastSend = t
	}
	return r
}

// observe feeds the outcome of one attempt, at now, to the adaptive rate,
// and returns the rate when it changed it.
func (p *Pacer) observe(now time.Time, throttled bool) (limit float64, changed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.ctl.observe(now, throttled) {
		return 0, false
	}
	// Attempts already granted go at the old rate: the next window starts
	// after the last of them.
	p.ctl.restart(later(now, p.lastSend))
	l := p.ctl.limit
	if math.IsInf(l, 1) {
		p.soft.SetLimitAt(now, rate.Inf)
		return l, true
	}
	// A bucket of 50ms worth absorbs the scheduling noise of the
	// goroutines that wait for it, and is too small to matter to a quota.
	p.soft.SetLimitAt(now, rate.Limit(l))
	p.soft.SetBurstAt(now, max(1, int(l/20)))
	return l, true
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

var (
	throttles  = retry.IsErrorThrottles(retry.DefaultThrottles)
	retryables = retry.IsErrorRetryables(retry.DefaultRetryables)
)

// isThrottle reports whether err is a throttling answer (ThrottlingException
// and the SDK's other throttle codes), or a 503 without an error code: an
// answer to a HEAD has no body, so S3's 503 SlowDown reaches the SDK as
// the status alone, which it names ServiceUnavailable.
func isThrottle(err error) bool {
	if err == nil {
		return false
	}
	if throttles.IsErrorThrottle(err) == aws.TrueTernary {
		return true
	}
	var re *smithyhttp.ResponseError
	var ae smithy.APIError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusServiceUnavailable &&
		errors.As(err, &ae) && ae.ErrorCode() == "ServiceUnavailable"
}

// outcome tells how an attempt's error counts: throttled, or answered
// (anything the service said, success included, that is not a throttle).
// Transport failures and cancellations count as neither.
func outcome(err error) (throttled, answered bool) {
	if err == nil {
		return false, true
	}
	if isThrottle(err) {
		return true, true
	}
	var ae smithy.APIError
	return false, errors.As(err, &ae)
}

// Middleware is an API option (for Options.APIOptions of an SDK client)
// that makes every attempt of every request wait for p, right after the
// SDK's retry step (so retries are paced too), report its outcome, and stop
// the retries once a request has made MaxAttempts attempts
// (MaxThrottleAttempts if the last one was throttled).
func (p *Pacer) Middleware(st *middleware.Stack) error {
	perRequest := middleware.FinalizeMiddlewareFunc("rotator/PacerRequest",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			return next.HandleFinalize(context.WithValue(ctx, attemptsKey{}, new(int)), in)
		})
	perAttempt := middleware.FinalizeMiddlewareFunc("rotator/Pacer",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			if err := p.Wait(ctx); err != nil {
				return middleware.FinalizeOutput{}, middleware.Metadata{}, err
			}
			out, md, err := next.HandleFinalize(ctx, in)
			throttled, answered := outcome(err)
			if answered {
				if l, changed := p.observe(time.Now(), throttled); changed {
					logPacing(ctx, l)
				}
			}
			if n, ok := ctx.Value(attemptsKey{}).(*int); ok && err != nil {
				*n++
				limit := p.opts.MaxAttempts
				if throttled {
					limit = p.opts.MaxThrottleAttempts
				}
				if *n >= limit && retryables.IsErrorRetryable(err) == aws.TrueTernary {
					err = finalError{&retry.MaxAttemptsError{Attempt: *n, Err: err}}
				}
			}
			return out, md, err
		})
	if err := st.Finalize.Insert(perRequest, "Retry", middleware.Before); err != nil {
		return st.Finalize.Add(perAttempt, middleware.After) // no retry step: pacing only
	}
	return st.Finalize.Insert(perAttempt, "Retry", middleware.After)
}

// attemptsKey keys the attempt count of a request in its context.
type attemptsKey struct{}

// finalError stops the SDK's retries: it is not retryable, whatever it
// wraps.
type finalError struct{ err error }

func (e finalError) Error() string        { return e.err.Error() }
func (e finalError) Unwrap() error        { return e.err }
func (e finalError) RetryableError() bool { return false }

// Retryer returns the retryer for the clients of p: the SDK's standard
// retryer with p's backoff, without retry quota or client side rate
// limiting (pacing and the count of attempts are the Middleware's job).
func (p *Pacer) Retryer() aws.Retryer {
	sdk := retry.NewExponentialJitterBackoff(p.opts.MaxBackoff)
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = max(p.opts.MaxAttempts, p.opts.MaxThrottleAttempts) // Middleware stops sooner
		o.MaxBackoff = p.opts.MaxBackoff
		o.RateLimiter = ratelimit.None
		o.Backoff = retry.BackoffDelayerFunc(func(attempt int, err error) (time.Duration, error) {
			if isThrottle(err) {
				return p.throttleDelay(attempt, rand.Float64()), nil
			}
			return sdk.BackoffDelay(attempt, err)
		})
	})
}

// throttleDelay is the pause before retry number attempt (1 for the first
// retry) of a throttled request, for a uniform draw u in [0, 1): full
// jitter over ThrottleBackoff * 2^(attempt-1), capped at MaxBackoff.
func (p *Pacer) throttleDelay(attempt int, u float64) time.Duration {
	attempt = min(max(attempt, 1), 30)
	ceiling := min(float64(p.opts.ThrottleBackoff)*math.Exp2(float64(attempt-1)), float64(p.opts.MaxBackoff))
	return time.Duration(u * ceiling)
}

// KMS returns a KMS client of cfg whose retries and pacing are p's. Every
// KMS client of rotator is made here, so that all follow the same rules.
func KMS(cfg aws.Config, p *Pacer, optFns ...func(*kms.Options)) *kms.Client {
	return kms.NewFromConfig(cfg, append([]func(*kms.Options){func(o *kms.Options) {
		o.Retryer = p.Retryer()
		o.APIOptions = append(slices.Clip(o.APIOptions), p.Middleware, Observe)
	}}, optFns...)...)
}
