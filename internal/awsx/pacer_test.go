package awsx_test

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"

	"github.com/rotator-dev/rotator/internal/awsx"
	"github.com/rotator-dev/rotator/kmsserver"
)

// kmsClient returns a client of an in-process KMS test server built by
// awsx.KMS, and a key to encrypt with.
func kmsClient(t *testing.T, o awsx.PacerOptions) (*kmsserver.Server, *kms.Client, *awsx.Pacer, string) {
	t.Helper()
	s := kmsserver.NewTestServer(t, kmsserver.Options{})
	p := awsx.NewPacer(o)
	c := awsx.KMS(s.AWSConfig(""), p)
	out, err := c.CreateKey(t.Context(), &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	return s, c, p, *out.KeyMetadata.KeyId
}

func encrypt(t *testing.T, c *kms.Client, key string) error {
	t.Helper()
	_, err := c.Encrypt(t.Context(), &kms.EncryptInput{KeyId: aws.String(key), Plaintext: []byte("x")})
	return err
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != code {
		t.Fatalf("error %v, want %s", err, code)
	}
}

// TestKMSAttempts: a throttled request is retried up to MaxThrottleAttempts
// attempts, other retryable failures up to MaxAttempts, and the error that
// ends the retries is the service's, wrapped in retry.MaxAttemptsError.
func TestKMSAttempts(t *testing.T) {
	t.Parallel()
	s, c, _, key := kmsClient(t, awsx.PacerOptions{MaxAttempts: 3, MaxThrottleAttempts: 5, MaxBackoff: time.Millisecond})

	s.FailNext("Encrypt", kmsserver.ErrThrottling, 4)
	if err := encrypt(t, c, key); err != nil {
		t.Fatalf("4 throttles, 5 attempts allowed: %v", err)
	}
	if n := s.Count("Encrypt"); n != 5 {
		t.Errorf("%d Encrypt requests, want 5", n)
	}

	s.ResetCounts()
	s.FailNext("Encrypt", kmsserver.ErrThrottling, 5)
	err := encrypt(t, c, key)
	wantCode(t, err, kmsserver.ErrThrottling)
	var max *retry.MaxAttemptsError
	if !errors.As(err, &max) || max.Attempt != 5 {
		t.Errorf("error %v, want a MaxAttemptsError after 5 attempts", err)
	}
	if n := s.Count("Encrypt"); n != 5 {
		t.Errorf("%d Encrypt requests, want 5", n)
	}

	s.ResetCounts()
	s.FailNext("Encrypt", kmsserver.ErrKMSInternal, 3)
	wantCode(t, encrypt(t, c, key), kmsserver.ErrKMSInternal)
	if n := s.Count("Encrypt"); n != 3 {
		t.Errorf("%d Encrypt requests for an internal error, want 3 (MaxAttempts)", n)
	}

	// A failure that is not retryable ends the request at once.
	s.ResetCounts()
	s.FailNext("Encrypt", kmsserver.ErrNotFound, 1)
	wantCode(t, encrypt(t, c, key), kmsserver.ErrNotFound)
	if n := s.Count("Encrypt"); n != 1 {
		t.Errorf("%d Encrypt requests for NotFoundException, want 1", n)
	}
}

// TestKMSNotLimitedUntilThrottled: a Pacer does not slow anything down
// until the service throttles, and a few isolated throttles (fewer than a
// window's worth) do not cut its rate.
func TestKMSNotLimitedUntilThrottled(t *testing.T) {
	t.Parallel()
	s, c, p, key := kmsClient(t, awsx.PacerOptions{MaxBackoff: time.Millisecond})
	for range 20 {
		if err := encrypt(t, c, key); err != nil {
			t.Fatal(err)
		}
	}
	s.FailNext("Encrypt", kmsserver.ErrThrottling, 3)
	if err := encrypt(t, c, key); err != nil {
		t.Fatal(err)
	}
	if r := p.Rate(); !math.IsInf(r, 1) {
		t.Errorf("rate %g after 3 isolated throttles, want +Inf (not limited)", r)
	}
}
