package awsx

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"
	"golang.org/x/time/rate"
)

// Options tune the retryer.
type Options struct {
	// MaxAttempts per request, the first included (default 10).
	MaxAttempts int
	// MaxBackoff between attempts (default 20s).
	MaxBackoff time.Duration
	// Region overrides the configured region.
	Region string
	// IdleConnsPerHost is how many idle connections the HTTP client keeps
	// per host (default DefaultIdleConnsPerHost). Give at least the
	// requests a process has in flight to one host: each connection
	// beyond it is closed after its request, and the next request dials
	// again (at 512 objects in flight and 256 kept, a third of the workers
	// were found dialling).
	IdleConnsPerHost int
	// IOTimeout: a connection on which nothing is read or written for
	// this long is dropped and its request retried (0:
	// DefaultIOTimeout; negative: never).
	IOTimeout time.Duration
}

// DefaultIdleConnsPerHost is Options.IdleConnsPerHost's default.
const DefaultIdleConnsPerHost = 256

// IdleConnsFor is the Options.IdleConnsPerHost of a process with n
// objects in flight: each may have a request in flight to S3 and one to
// KMS, and a re-encryption more than one to S3.
func IdleConnsFor(n int) int {
	return max(DefaultIdleConnsPerHost, 2*n)
}

// Load returns the shared AWS configuration with adaptive retries, no
// retry quota, rotator's application id on every request (WithAppID), and
// failed attempts logged at debug level (LogAttempts).
func Load(ctx context.Context, o Options) (aws.Config, error) {
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 10
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 20 * time.Second
	}
	if o.IdleConnsPerHost <= 0 {
		o.IdleConnsPerHost = DefaultIdleConnsPerHost
	}
	if o.IOTimeout == 0 {
		o.IOTimeout = DefaultIOTimeout
	}
	opts := []func(*config.LoadOptions) error{
		config.WithRetryer(func() aws.Retryer { return NewRetryer(o.MaxAttempts, o.MaxBackoff) }),
		// The defaults of 10 idle connections per host and 100 in all
		// make a busy pool of workers dial again and again: every
		// connection beyond them is closed after its request.
		config.WithHTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
			t.MaxIdleConnsPerHost = o.IdleConnsPerHost
			t.MaxIdleConns = 0 // no cap but the hosts': S3, KMS, DynamoDB
			t.DialContext = withIOTimeout(t.DialContext, o.IOTimeout)
		})),
	}
	if o.Region != "" {
		opts = append(opts, config.WithRegion(o.Region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load AWS configuration: %w (hint: set AWS_REGION and credentials, or AWS_PROFILE)", err)
	}
	if cfg.Region == "" {
		return aws.Config{}, fmt.Errorf("no AWS region configured (hint: set AWS_REGION or a region in the profile)")
	}
	// Frozen once loading has applied what it builds into the client (a
	// CA bundle): with an SDK defaults mode set (AWS_DEFAULTS_MODE, or
	// defaults_mode in the profile), each service client would otherwise
	// rebuild the transport's dialer with the mode's connect timeout, and
	// drop the I/O timeout with it.
	if b, ok := cfg.HTTPClient.(*awshttp.BuildableClient); ok {
		cfg.HTTPClient = b.Freeze()
	}
	// Every client built from cfg reports its calls to the Observer of
	// their context, if any (WithObserver).
	cfg.APIOptions = append(cfg.APIOptions, Observe)
	cfg = WithAppID(cfg)
	cfg.APIOptions = append(cfg.APIOptions, LogAttempts)
	return cfg, nil
}

// NewRetryer returns the SDK's adaptive retry mode with maxAttempts, a
// backoff cap, and no retry quota: the retryer of the S3 and DynamoDB
// clients. KMS clients use a Pacer instead (KMS).
func NewRetryer(maxAttempts int, maxBackoff time.Duration) aws.Retryer {
	return retry.NewAdaptiveMode(func(o *retry.AdaptiveModeOptions) {
		o.StandardOptions = append(o.StandardOptions, func(so *retry.StandardOptions) {
			so.MaxAttempts = maxAttempts
			so.MaxBackoff = maxBackoff
			so.RateLimiter = ratelimit.None
		})
	})
}

// S3 returns an S3 client. With a custom endpoint (AWS_ENDPOINT_URL_S3 or
// AWS_ENDPOINT_URL) it uses path-style addressing, which S3-compatible
// servers need.
func S3(cfg aws.Config, optFns ...func(*s3.Options)) *s3.Client {
	custom := os.Getenv("AWS_ENDPOINT_URL_S3") != "" || os.Getenv("AWS_ENDPOINT_URL") != ""
	return s3.NewFromConfig(cfg, append([]func(*s3.Options){func(o *s3.Options) {
		if custom {
			o.UsePathStyle = true
		}
		// Ranged GETs carry no whole-object checksum; the SDK would log
		// that it skipped validation for every one of them. (Content is
		// authenticated by its AES-GCM tag.)
		o.DisableLogOutputChecksumValidationSkipped = true
		o.APIOptions = append(slices.Clip(o.APIOptions), Observe, NoBodyCheckOnHead)
	}}, optFns...)...)
}

// s3Check200Error is the S3 client's middleware that reads the body of
// every 2xx response to find an error S3 answered with status 200.
const s3Check200Error = "S3:ProcessResponseFor200Error"

// NoBodyCheckOnHead takes the check for errors sent with status 200 out of
// HeadObject (an API option of the S3 client; S3 sets it): a response to
// HEAD has no body, so the check only costs an XML decoder and its 4 KiB
// buffer on each of the one or more HEADs of every object. Every other
// operation keeps it.
func NoBodyCheckOnHead(st *middleware.Stack) error {
	if st.ID() != "HeadObject" {
		return nil
	}
	if _, ok := st.Deserialize.Get(s3Check200Error); ok {
		_, err := st.Deserialize.Remove(s3Check200Error)
		return err
	}
	return nil
}

// RateLimit returns an API option that makes every attempt of every
// request of a client wait for lim first (after the SDK's retry step, so a
// retried attempt also spends budget). Use it as
// s3.Options.APIOptions = append(..., awsx.RateLimit(lim)).
func RateLimit(lim *rate.Limiter) func(*middleware.Stack) error {
	return func(st *middleware.Stack) error {
		return st.Finalize.Add(middleware.FinalizeMiddlewareFunc("rotator/RateLimit",
			func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
				if err := lim.Wait(ctx); err != nil {
					return middleware.FinalizeOutput{}, middleware.Metadata{}, err
				}
				return next.HandleFinalize(ctx, in)
			}), middleware.After)
	}
}
