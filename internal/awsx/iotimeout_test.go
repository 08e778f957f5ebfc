package awsx_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rotator-dev/rotator/internal/awsx"
)

// ioTimeoutClient is an S3 client from awsx.Load with an I/O timeout of d,
// for the S3 stand-in at url.
func ioTimeoutClient(t *testing.T, url string, d time.Duration) *s3.Client {
	t.Helper()
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKID")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "SECRET")
	t.Setenv("AWS_ENDPOINT_URL_S3", url)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	cfg, err := awsx.Load(t.Context(), awsx.Options{MaxAttempts: 3, MaxBackoff: time.Millisecond, IOTimeout: d})
	if err != nil {
		t.Fatal(err)
	}
	return awsx.S3(cfg)
}

// stall holds a request without answering until the test ends.
func stall(w http.ResponseWriter, r *http.Request, done <-chan struct{}) {
	select {
	case <-r.Context().Done():
	case <-done:
	}
}

// TestIOTimeoutRetriesAStalledRequest: a server that takes a request and
// never answers it (a stalled connection) no longer holds the call for
// ever: after the I/O timeout the connection is dropped and the SDK
// retries; the retry is answered and the call succeeds. So too with an
// SDK defaults mode set, under which the SDK rebuilds a buildable
// client's dialer.
func TestIOTimeoutRetriesAStalledRequest(t *testing.T) {
	for _, mode := range []string{"legacy", "standard", "in-region"} {
		t.Run(mode, func(t *testing.T) {
			t.Setenv("AWS_DEFAULTS_MODE", mode)
			retriesAStalledRequest(t)
		})
	}
}

func retriesAStalledRequest(t *testing.T) {
	done := make(chan struct{})
	defer close(done)
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			stall(w, r, done)
			return
		}
		w.Header().Set("Content-Length", "5")
		w.Header().Set("ETag", `"x"`)
		io.WriteString(w, "hello")
	}))
	defer srv.Close()
	c := ioTimeoutClient(t, srv.URL, 300*time.Millisecond)
	// Without the timeout the call would wait for ever: the test fails
	// at 20 s instead.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	start := time.Now()
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("b"), Key: aws.String("k")})
	if err != nil {
		t.Fatalf("GetObject: %v, want the retry to succeed", err)
	}
	body, err := io.ReadAll(out.Body)
	out.Body.Close()
	if err != nil || string(body) != "hello" {
		t.Fatalf("body %q, %v", body, err)
	}
	if took := time.Since(start); took < 300*time.Millisecond || took > 5*time.Second {
		t.Errorf("took %v: want the timeout (300ms) and then the retry", took)
	}
	if got := n.Load(); got != 2 {
		t.Errorf("%d requests reached the server, want 2 (the stalled one, its retry)", got)
	}
}

// TestIOTimeoutFailsAStalledBody: a response whose body stops coming
// fails the reader's Read after the I/O timeout, instead of blocking it
// for ever.
func TestIOTimeoutFailsAStalledBody(t *testing.T) {
	done := make(chan struct{})
	defer close(done)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		io.WriteString(w, "hello")
		w.(http.Flusher).Flush()
		stall(w, r, done) // the other 5 bytes never come
	}))
	defer srv.Close()
	c := ioTimeoutClient(t, srv.URL, 300*time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second) // as above
	defer cancel()
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("b"), Key: aws.String("k")})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Body.Close()
	start := time.Now()
	body, err := io.ReadAll(out.Body)
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("read %q, %v: want a timeout", body, err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the read failed after %v, want about 300ms", took)
	}
}

// TestIOTimeoutIsIdleNotTotal: a response that keeps coming, slowly (a
// byte every 100ms for 1.5s, as S3 keeps a long copy's connection alive),
// is never cut by an I/O timeout of 400ms: the timeout bounds silence,
// not work.
func TestIOTimeoutIsIdleNotTotal(t *testing.T) {
	const size = 15
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "15")
		for range size {
			io.WriteString(w, " ")
			w.(http.Flusher).Flush()
			select {
			case <-time.After(100 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
	}))
	defer srv.Close()
	c := ioTimeoutClient(t, srv.URL, 400*time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("b"), Key: aws.String("k")})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Body.Close()
	body, err := io.ReadAll(out.Body)
	if err != nil || len(body) != size {
		t.Fatalf("read %d bytes, %v: want all %d", len(body), err, size)
	}
}

// TestIOTimeoutReusedConnection: a pooled connection idle for most of the
// timeout, then reused for a request the server answers after half of it,
// is not cut: the request written pushes back the deadline of the read
// net/http left pending on the idle connection. One request each, no
// retry.
func TestIOTimeoutReusedConnection(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 2 {
			time.Sleep(600 * time.Millisecond)
		}
		w.Header().Set("Content-Length", "5")
		io.WriteString(w, "hello")
	}))
	defer srv.Close()
	c := ioTimeoutClient(t, srv.URL, time.Second)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for i := range 2 {
		if i == 1 {
			time.Sleep(700 * time.Millisecond) // idle, in the pool
		}
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("b"), Key: aws.String("k")})
		if err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		if _, err := io.ReadAll(out.Body); err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		out.Body.Close()
	}
	if got := n.Load(); got != 2 {
		t.Errorf("%d requests reached the server, want 2: a retry means the reused connection was cut", got)
	}
}
