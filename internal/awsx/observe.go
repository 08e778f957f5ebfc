package awsx

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Call is one AWS API call as Observe saw it, retries included. It holds
// no request or response data: no bucket, key, key id or message.
type Call struct {
	// Service is the SDK's service id, lowercased: s3, kms, dynamodb.
	Service string
	// Operation is the API operation: HeadObject, ReEncrypt, PutItem, ...
	Operation string
	// Duration runs from the call to its result: retries, back-off and
	// pacing waits included.
	Duration time.Duration
	// Attempts is the number of attempts (1 + retries); Throttles the
	// attempts the service throttled.
	Attempts, Throttles int
	// Class is the call's error class (ErrorClass); "" for a success.
	Class string
}

// Observer receives every AWS call made with a context that carries it
// (WithObserver). ObserveCall is called from many goroutines at once.
type Observer interface {
	ObserveCall(Call)
}

type observerKey struct{}

// WithObserver returns a context whose AWS calls are reported to o, by
// every client rotator builds (they all carry Observe).
func WithObserver(ctx context.Context, o Observer) context.Context {
	return context.WithValue(ctx, observerKey{}, o)
}

// tally counts one call's attempts.
type tally struct{ attempts, throttles int }

type tallyKey struct{}

const observeID = "rotator/Observe"

// Observe is an API option that reports each call to the Observer of its
// context (WithObserver), and does nothing more when there is none. Load
// puts it in the configuration's APIOptions and S3, KMS and DynamoDB add
// it to their clients, so every AWS client of rotator carries it once
// (adding it twice is harmless).
func Observe(st *middleware.Stack) error {
	if _, ok := st.Initialize.Get(observeID); ok {
		return nil
	}
	call := middleware.InitializeMiddlewareFunc(observeID,
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			o, _ := ctx.Value(observerKey{}).(Observer)
			if o == nil {
				return next.HandleInitialize(ctx, in)
			}
			t := &tally{}
			start := time.Now()
			out, md, err := next.HandleInitialize(context.WithValue(ctx, tallyKey{}, t), in)
			o.ObserveCall(Call{
				Service:   strings.ToLower(awsmiddleware.GetServiceID(ctx)),
				Operation: awsmiddleware.GetOperationName(ctx),
				Duration:  time.Since(start),
				Attempts:  t.attempts,
				Throttles: t.throttles,
				Class:     ErrorClass(err),
			})
			return out, md, err
		})
	if err := st.Initialize.Add(call, middleware.After); err != nil {
		return err
	}
	// Each attempt passes once through the step after the SDK's retry.
	attempt := middleware.FinalizeMiddlewareFunc(observeID+"Attempt",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			out, md, err := next.HandleFinalize(ctx, in)
			if t, ok := ctx.Value(tallyKey{}).(*tally); ok {
				t.attempts++
				if isThrottle(err) {
					t.throttles++
				}
			}
			return out, md, err
		})
	if err := st.Finalize.Insert(attempt, "Retry", middleware.After); err != nil {
		return st.Finalize.Add(attempt, middleware.After) // no retry step
	}
	return nil
}

// DynamoDB returns a DynamoDB client of cfg that carries Observe.
func DynamoDB(cfg aws.Config, optFns ...func(*dynamodb.Options)) *dynamodb.Client {
	return dynamodb.NewFromConfig(cfg, append([]func(*dynamodb.Options){func(o *dynamodb.Options) {
		o.APIOptions = append(slices.Clip(o.APIOptions), Observe)
	}}, optFns...)...)
}

// Error classes (ErrorClass): a bounded set, for metrics labels.
const (
	ClassThrottling     = "throttling"
	ClassAccessDenied   = "access_denied"
	ClassNotFound       = "not_found"
	ClassPrecondition   = "precondition_failed" // a conditional write or read refused
	ClassKMSKey         = "kms_key"             // the key's state or the ciphertext's key (wrong, disabled, pending deletion)
	ClassInvalidRequest = "invalid_request"     // any other client error (4xx)
	ClassServer         = "server_error"        // 5xx
	ClassNetwork        = "network"             // no answer: connection refused, reset, timed out
	ClassCanceled       = "canceled"
	ClassOther          = "other"
)

// errorCodeClass classes the AWS error codes rotator meets; others are
// classed by their HTTP status.
var errorCodeClass = map[string]string{
	"AccessDenied": ClassAccessDenied, "AccessDeniedException": ClassAccessDenied, "AllAccessDisabled": ClassAccessDenied,
	"InvalidAccessKeyId": ClassAccessDenied, "SignatureDoesNotMatch": ClassAccessDenied, "InvalidSignatureException": ClassAccessDenied,
	"ExpiredToken": ClassAccessDenied, "ExpiredTokenException": ClassAccessDenied, "InvalidToken": ClassAccessDenied,
	"UnrecognizedClientException": ClassAccessDenied, "InvalidClientTokenId": ClassAccessDenied,
	"MissingAuthenticationToken": ClassAccessDenied, "UnauthorizedOperation": ClassAccessDenied, "Forbidden": ClassAccessDenied,

	"NoSuchKey": ClassNotFound, "NoSuchBucket": ClassNotFound, "NoSuchVersion": ClassNotFound, "NoSuchUpload": ClassNotFound,
	"NotFound": ClassNotFound, "NotFoundException": ClassNotFound, "ResourceNotFoundException": ClassNotFound,

	"PreconditionFailed": ClassPrecondition, "ConditionalRequestConflict": ClassPrecondition,
	"ConditionalCheckFailedException": ClassPrecondition, "TransactionCanceledException": ClassPrecondition,

	"DisabledException": ClassKMSKey, "KMSInvalidStateException": ClassKMSKey, "KeyUnavailableException": ClassKMSKey,
	"IncorrectKeyException": ClassKMSKey, "InvalidCiphertextException": ClassKMSKey, "InvalidKeyUsageException": ClassKMSKey,

	"InternalError": ClassServer, "InternalFailure": ClassServer, "InternalServerError": ClassServer,
	"ServiceUnavailable": ClassServer, "KMSInternalException": ClassServer, "DependencyTimeoutException": ClassServer,
}

// ErrorClass names the class of an AWS call's error: from its error code,
// or its HTTP status when the code is not one rotator knows, never from
// its message. It returns "" for nil.
func ErrorClass(err error) string {
	if err == nil {
		return ""
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return ClassCanceled
	}
	if isThrottle(err) {
		return ClassThrottling
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		if c, ok := errorCodeClass[ae.ErrorCode()]; ok {
			return c
		}
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() >= 400 {
		switch s := re.HTTPStatusCode(); {
		case s == 403:
			return ClassAccessDenied
		case s == 404:
			return ClassNotFound
		case s == 412:
			return ClassPrecondition
		case s >= 500:
			return ClassServer
		default:
			return ClassInvalidRequest
		}
	}
	if ae != nil {
		if ae.ErrorFault() == smithy.FaultServer {
			return ClassServer
		}
		return ClassInvalidRequest
	}
	var se *smithyhttp.RequestSendError
	var ne net.Error
	if errors.As(err, &se) || errors.As(err, &ne) {
		return ClassNetwork
	}
	return ClassOther
}
