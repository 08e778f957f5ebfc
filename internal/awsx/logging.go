package awsx

import (
	"context"
	"errors"
	"math"
	"time"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	"github.com/rs/zerolog"

	"github.com/rotator-dev/rotator/internal/logs"
)

// LogAttempts is an API option (Load adds it to every client) that logs,
// at debug level through the logger of the request's context
// (zerolog.Ctx), every attempt of a request that failed: service,
// operation, attempt number, error code, HTTP status, whether it was a
// throttle, and how long it took. The SDK's retry step then retries it or
// gives up; the request's caller sees only the final error. Without a
// logger in the context, or above debug level, it costs one context
// lookup per attempt.
func LogAttempts(st *middleware.Stack) error {
	perRequest := middleware.FinalizeMiddlewareFunc("rotator/LogAttemptsRequest",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			if zerolog.Ctx(ctx).GetLevel() > zerolog.DebugLevel {
				return next.HandleFinalize(ctx, in)
			}
			return next.HandleFinalize(context.WithValue(ctx, logAttemptKey{}, new(int)), in)
		})
	perAttempt := middleware.FinalizeMiddlewareFunc("rotator/LogAttempts",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			n, ok := ctx.Value(logAttemptKey{}).(*int)
			if !ok {
				return next.HandleFinalize(ctx, in)
			}
			*n++
			start := time.Now()
			out, md, err := next.HandleFinalize(ctx, in)
			if err != nil {
				logAttempt(ctx, *n, time.Since(start), err)
			}
			return out, md, err
		})
	if err := st.Finalize.Insert(perRequest, "Retry", middleware.Before); err != nil {
		return nil // no retry step: nothing is retried, the caller sees every error
	}
	return st.Finalize.Insert(perAttempt, "Retry", middleware.After)
}

type logAttemptKey struct{}

func logAttempt(ctx context.Context, attempt int, took time.Duration, err error) {
	e := zerolog.Ctx(ctx).Debug()
	if !e.Enabled() {
		return
	}
	e.Str(logs.Service, awsmiddleware.GetServiceID(ctx)).Str(logs.Operation, awsmiddleware.GetOperationName(ctx)).
		Int(logs.Attempt, attempt).Bool(logs.Throttled, isThrottle(err))
	var ae smithy.APIError
	if errors.As(err, &ae) {
		e.Str(logs.Code, ae.ErrorCode())
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		e.Int("http_status", re.HTTPStatusCode())
	}
	logs.Duration(e, took).Err(err).Msg("AWS request attempt failed")
}

// logPacing logs a change of a Pacer's adaptive rate at debug level.
func logPacing(ctx context.Context, limit float64) {
	e := zerolog.Ctx(ctx).Debug()
	if !e.Enabled() {
		return
	}
	e = e.Str(logs.Service, awsmiddleware.GetServiceID(ctx))
	if math.IsInf(limit, 1) {
		e.Str("rate", "unlimited").Msg("request pacing: no throttling left, rate unlimited")
		return
	}
	e.Float64("rate", limit).Msg("request pacing: rate changed after throttling")
}
