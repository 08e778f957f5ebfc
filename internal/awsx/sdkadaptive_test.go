package awsx

import (
	"math"
	"time"
)

// sdkAdaptive is what rotator's KMS clients ran before Pacer: the SDK's
// adaptive retry mode (aws-sdk-go-v2 v1.47.7, aws/retry/adaptive_ratelimit.go
// and adaptive_token_bucket.go, Apache License 2.0) with the standard
// retryer's legacy backoff, ported with the clock passed in so that the
// simulation can drive it. The arithmetic is the SDK's, line for line.
type sdkAdaptive struct {
	tokenBucketEnabled bool

	smooth, beta, scaleConstant, minFillRate float64

	fillRate         float64
	calculatedRate   float64
	lastRefilled     time.Time
	measuredTxRate   float64
	lastTxRateBucket float64
	requestCount     int64
	lastMaxRate      float64
	lastThrottleTime time.Time
	timeWindow       float64

	// token bucket
	remaining, capacity float64

	maxBackoff time.Duration
	attempts   int
}

func newSDKAdaptive(now time.Time) *sdkAdaptive {
	return &sdkAdaptive{
		smooth: 0.8, beta: 0.7, scaleConstant: 0.4, minFillRate: 0.5,
		lastTxRateBucket: math.Floor(secs(now)),
		lastThrottleTime: now,
		maxBackoff:       DefaultMaxBackoff,
		attempts:         DefaultMaxAttempts,
	}
}

func secs(t time.Time) float64 { return float64(t.UnixNano()) / float64(time.Second) }

// admit is AdaptiveMode.GetAttemptToken: take a token, or wait and try
// again.
func (a *sdkAdaptive) admit(now time.Time) (time.Duration, bool) {
	if !a.tokenBucketEnabled {
		return 0, true
	}
	a.refill(now)
	if 1 > a.remaining {
		// Real time moves on while the SDK sleeps even 0ns; simulated
		// time must be made to.
		return max(time.Microsecond, time.Duration((1-a.remaining)/a.fillRate*float64(time.Second))), false
	}
	a.remaining--
	return 0, true
}

// observe is adaptiveRateLimit.Update.
func (a *sdkAdaptive) observe(now time.Time, throttled bool) {
	// updateMeasuredRate
	bucket := math.Floor(secs(now)*2) / 2
	a.requestCount++
	if bucket > a.lastTxRateBucket {
		current := float64(a.requestCount) / (bucket - a.lastTxRateBucket)
		a.measuredTxRate = current*a.smooth + a.measuredTxRate*(1-a.smooth)
		a.requestCount = 0
		a.lastTxRateBucket = bucket
	}
	if throttled {
		rateToUse := a.measuredTxRate
		if a.tokenBucketEnabled {
			rateToUse = math.Min(a.measuredTxRate, a.fillRate)
		}
		a.lastMaxRate = rateToUse
		a.timeWindow = math.Pow(a.lastMaxRate*(1-a.beta)/a.scaleConstant, 1./3.)
		a.lastThrottleTime = now
		a.calculatedRate = rateToUse * a.beta
		a.tokenBucketEnabled = true
	} else {
		a.timeWindow = math.Pow(a.lastMaxRate*(1-a.beta)/a.scaleConstant, 1./3.)
		dt := now.Sub(a.lastThrottleTime).Seconds()
		a.calculatedRate = a.scaleConstant*math.Pow(dt-a.timeWindow, 3) + a.lastMaxRate
	}
	newRate := math.Min(a.calculatedRate, 2*a.measuredTxRate)
	// tokenBucketUpdateRate
	a.refill(now)
	a.fillRate = math.Max(newRate, a.minFillRate)
	a.capacity = math.Max(newRate, 1)
	a.remaining = math.Min(a.remaining, a.capacity)
}

func (a *sdkAdaptive) refill(now time.Time) {
	if a.lastRefilled.IsZero() {
		a.lastRefilled = now
		return
	}
	a.remaining = math.Min(a.remaining+now.Sub(a.lastRefilled).Seconds()*a.fillRate, a.capacity)
	a.lastRefilled = now
}

// retryDelay is ExponentialJitterBackoff's legacy formula: a random
// fraction of 2^attempt seconds, or MaxBackoff once that exceeds it.
func (a *sdkAdaptive) retryDelay(attempt int, u float64) time.Duration {
	if attempt > int(math.Log2(a.maxBackoff.Seconds())) {
		return a.maxBackoff
	}
	return time.Duration(u * float64(int64(1)<<attempt) * float64(time.Second))
}

func (a *sdkAdaptive) maxAttempts() int { return a.attempts }
