package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rotator-dev/rotator/internal/testenv"
)

// stallOnce is a reverse proxy in front of one server of the stack that
// holds the first request matching stall without forwarding or answering
// it: a stalled connection.
type stallOnce struct {
	srv     *httptest.Server
	stalled atomic.Int32
}

func newStallOnce(t *testing.T, target string, stall func(*http.Request) bool) *stallOnce {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	s := &stallOnce{}
	done := make(chan struct{})
	proxy := httputil.NewSingleHostReverseProxy(u)
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if stall(req) && s.stalled.CompareAndSwap(0, 1) {
			// Until the client drops the connection (which the server
			// does not notice while a request body is unread) or the
			// test ends.
			select {
			case <-req.Context().Done():
			case <-done:
			}
			return
		}
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(s.srv.Close)
	t.Cleanup(func() { close(done) }) // before Close, which waits for the handler
	return s
}

// TestCLIStalledConnectionsAreRetried: the first S3 write and the first
// KMS ReEncrypt of a run each meet a connection that takes the request
// and never answers. With --io-timeout 1s the run drops both connections,
// retries the requests and rotates every object; without the timeout it
// would wait for ever.
func TestCLIStalledConnectionsAreRetried(t *testing.T) {
	f := newCLIFixture(t, 6)
	s3p := newStallOnce(t, os.Getenv(testenv.EnvS3Endpoint), func(r *http.Request) bool { return r.Method == http.MethodPut })
	kmsp := newStallOnce(t, os.Getenv(testenv.EnvKMSEndpoint), func(r *http.Request) bool {
		return strings.HasSuffix(r.Header.Get("X-Amz-Target"), ".ReEncrypt")
	})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, os.Args[0], "run", "--source", "s3://"+f.bucket, "--from", "kms:"+f.arnA, "--to", "kms:"+f.arnB,
		"--io-timeout", "1s", "--no-progress", "--run-id", "stalled")
	c.Env = append(os.Environ(), envMain+"=1",
		testenv.EnvS3Endpoint+"="+s3p.srv.URL, testenv.EnvKMSEndpoint+"="+kmsp.srv.URL)
	c.Dir = f.dir
	start := time.Now()
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("rotator run: %v after %v\n%s", err, time.Since(start), out)
	}
	if s3p.stalled.Load() != 1 || kmsp.stalled.Load() != 1 {
		t.Fatalf("stalled %d S3 writes and %d ReEncrypts, want one of each", s3p.stalled.Load(), kmsp.stalled.Load())
	}
	f.opensUnder(t, f.arnB)
	t.Logf("the run took %v with two stalled connections", time.Since(start))
}

// TestCLIResumeTakesAnotherIOTimeout: a run made with --io-timeout 0
// (never) keeps it in its record; resume --io-timeout 1s replaces it, so
// the resume, whose first S3 request stalls, drops that connection and
// finishes instead of waiting for ever.
func TestCLIResumeTakesAnotherIOTimeout(t *testing.T) {
	f := newCLIFixture(t, 4)
	ledgerPath := f.dir + "/ledger.db"
	if code, out := f.rotator(t, "run", "--source", "s3://"+f.bucket, "--from", "kms:"+f.arnA, "--to", "kms:"+f.arnB,
		"--io-timeout", "0", "--no-progress", "--run-id", "never", "--ledger", ledgerPath); code != 0 {
		t.Fatalf("run: exit %d\n%s", code, out)
	}
	s3p := newStallOnce(t, os.Getenv(testenv.EnvS3Endpoint), func(*http.Request) bool { return true })
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, os.Args[0], "resume", "--run-id", "never", "--ledger", ledgerPath, "--io-timeout", "1s", "--no-progress")
	c.Env = append(os.Environ(), envMain+"=1", testenv.EnvS3Endpoint+"="+s3p.srv.URL)
	c.Dir = f.dir
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("resume: %v\n%s", err, out)
	}
	if s3p.stalled.Load() != 1 {
		t.Fatalf("stalled %d S3 requests, want 1", s3p.stalled.Load())
	}
	f.opensUnder(t, f.arnB)
}
