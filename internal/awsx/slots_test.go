package awsx

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// S3 and KMS requests sharing Slots are never more than its size in
// flight, together; they do reach it (the slots bound, they do not
// serialize); a request waiting for a slot ends with its context.
func TestSlotsBoundRequestsInFlight(t *testing.T) {
	const n = 3
	var now, peak atomic.Int32
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := now.Add(1)
		defer now.Add(-1)
		for {
			p := peak.Load()
			if c <= p || peak.CompareAndSwap(p, c) {
				break
			}
		}
		<-release
		if r.Method == http.MethodHead {
			w.Header().Set("ETag", `"e"`)
			return
		}
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.Write([]byte(`{"KeyMetadata":{"KeyId":"k","Arn":"arn:aws:kms:us-east-1:111122223333:key/k"}}`))
	}))
	defer srv.Close()
	cfg := aws.Config{Region: "us-east-1", Credentials: aws.AnonymousCredentials{}, BaseEndpoint: aws.String(srv.URL),
		Retryer: func() aws.Retryer { return aws.NopRetryer{} }}
	t.Setenv("AWS_ENDPOINT_URL_S3", srv.URL)
	slots := NewSlots(n)
	s3c := S3(cfg, func(o *s3.Options) { o.APIOptions = append(o.APIOptions, slots.Middleware) })
	kmsc := KMS(cfg, NewPacer(PacerOptions{}), func(o *kms.Options) { o.APIOptions = append(o.APIOptions, slots.Middleware) })
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 4*n)
	for i := range 4 * n {
		wg.Go(func() {
			var err error
			if i%2 == 0 {
				_, err = s3c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("b"), Key: aws.String("k")})
			} else {
				_, err = kmsc.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("k")})
			}
			errs <- err
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for now.Load() < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // room for a request beyond the slots to arrive
	if got := now.Load(); got != n {
		t.Errorf("%d requests in flight with %d slots and %d callers", got, n, 4*n)
	}
	// A caller waiting for a slot gives up with its context.
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	_, err := s3c.HeadObject(cctx, &s3.HeadObjectInput{Bucket: aws.String("b"), Key: aws.String("k")})
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a request waiting for a slot past its deadline: %v, want context.DeadlineExceeded", err)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if p := peak.Load(); p != n {
		t.Errorf("at most %d requests were in flight at once, want %d", p, n)
	}
	// No slots: no bound, and nothing added to the stack.
	if NewSlots(0) != nil {
		t.Error("NewSlots(0) is not nil")
	}
	if err := (*Slots)(nil).Middleware(nil); err != nil {
		t.Error(err)
	}
}
