package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/internal/sample"
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

// breakOnce is a reverse proxy in front of S3 that cuts the body of the
// first GET matching cut half-way (of the first times GETs: newBreaks):
// the headers announce the whole length, half of it comes, and the
// connection is dropped.
type breakOnce struct {
	srv   *httptest.Server
	broke atomic.Int32
}

func newBreakOnce(t *testing.T, target string, cut func(*http.Request) bool) *breakOnce {
	return newBreaks(t, target, cut, 1)
}

func newBreaks(t *testing.T, target string, cut func(*http.Request) bool, times int32) *breakOnce {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	b := &breakOnce{}
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.FlushInterval = -1 // the headers and the half go out before the cut
	proxy.ModifyResponse = func(resp *http.Response) error {
		req := resp.Request
		if req.Method != http.MethodGet || resp.StatusCode/100 != 2 || resp.ContentLength < 2 || !cut(req) {
			return nil
		}
		for n := b.broke.Load(); ; n = b.broke.Load() {
			if n >= times {
				return nil
			}
			if b.broke.CompareAndSwap(n, n+1) {
				break
			}
		}
		half := resp.ContentLength / 2
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(io.LimitReader(resp.Body, half), errReader{}), resp.Body}
		return nil
	}
	// The copy's error aborts the response (ReverseProxy panics with
	// http.ErrAbortHandler): the client sees a body that ends before its
	// Content-Length.
	b.srv = httptest.NewServer(proxy)
	t.Cleanup(b.srv.Close)
	return b
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("cut by the test") }

// TestCLIBrokenBodiesAreReadOn: the body of the first GET of a
// re-encryption, and of a verify, stops half-way (a dropped connection).
// The rest is read from where it stopped (If-Match on the ETag read), so
// the run re-encrypts every object and verify finds every tag good;
// before, the first object was reported failed and verify called a
// sound object's body one that does not authenticate.
func TestCLIBrokenBodiesAreReadOn(t *testing.T) {
	f := newCLIFixture(t, 4)
	isBody := func(r *http.Request) bool {
		return !strings.HasSuffix(r.URL.Path, ".instruction") && r.URL.Query().Get("list-type") == "" && r.URL.Path != "/"+f.bucket && r.URL.Path != "/"+f.bucket+"/"
	}
	run := newBreakOnce(t, os.Getenv(testenv.EnvS3Endpoint), func(r *http.Request) bool { return isBody(r) && r.Header.Get("Range") != "" })
	c := exec.Command(os.Args[0], "run", "--mode", "reencrypt", "--source", "s3://"+f.bucket, "--from", "kms:"+f.arnA, "--to", "kms:"+f.arnB,
		"--no-progress", "--run-id", "broken-body", "--ledger", f.dir+"/ledger.db")
	c.Env = append(os.Environ(), envMain+"=1", testenv.EnvS3Endpoint+"="+run.srv.URL)
	c.Dir = f.dir
	if out, err := c.CombinedOutput(); err != nil || run.broke.Load() != 1 {
		t.Fatalf("rotator run --mode reencrypt: %v, %d bodies cut\n%s", err, run.broke.Load(), out)
	}
	f.opensUnder(t, f.arnB)

	ver := newBreakOnce(t, os.Getenv(testenv.EnvS3Endpoint), isBody)
	c = exec.Command(os.Args[0], "verify", "--source", "s3://"+f.bucket, "--key", "kms:"+f.arnB, "--all")
	c.Env = append(os.Environ(), envMain+"=1", testenv.EnvS3Endpoint+"="+ver.srv.URL)
	c.Dir = f.dir
	if out, err := c.CombinedOutput(); err != nil || ver.broke.Load() != 1 {
		t.Fatalf("rotator verify: %v, %d bodies cut\n%s", err, ver.broke.Load(), out)
	}

	// A body that stops every time is a read that failed, not a body that
	// does not authenticate.
	key := f.objs[0].Key
	always := newBreaks(t, os.Getenv(testenv.EnvS3Endpoint), func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, "/"+key) }, 1000)
	c = exec.Command(os.Args[0], "verify", "--source", "s3://"+f.bucket, "--key", "kms:"+f.arnB, "--all", "--json")
	c.Env = append(os.Environ(), envMain+"=1", testenv.EnvS3Endpoint+"="+always.srv.URL)
	c.Dir = f.dir
	out, err := c.Output()
	if err == nil || !strings.Contains(string(out), `"code":"S3Error"`) || strings.Contains(string(out), "AuthenticationFailed") {
		t.Fatalf("rotator verify, %s's body cut %d times: %v, want the object failed as S3Error\n%s", key, always.broke.Load(), err, out)
	}
	if n := always.broke.Load(); n != 4 {
		t.Errorf("%s's body was read %d times, want 4 (awsx.BodyReads)", key, n)
	}
}

// TestCLIBrokenBodiesAreReadOnInParts: a re-encryption in parts (8 MiB of
// plaintext, --part-size 5MiB: two parts) whose second part's GET (the
// last part, which carries the old tag) stops half-way. The rest of that
// part is read from where it stopped, with a ranged GET guarded by
// If-Match on the source's ETag, so the run exits 0, the object is written
// as a two-part upload, and it opens under the new key with its old
// plaintext; before, the object was reported failed (S3Error).
func TestCLIBrokenBodiesAreReadOnInParts(t *testing.T) {
	const partSize, size = 5 << 20, 8 << 20
	f := newCLIFixture(t, 0)
	big, err := sample.Seed(ctx, f.s3, f.kms, sample.Options{Bucket: f.bucket, Prefix: "big/", KMSKeyID: f.arnA, Count: 1,
		MinSize: size, MaxSize: size, Kinds: []sample.Kind{{Format: envelope.V2, Placement: envelope.PlacementMetadata}}})
	if err != nil {
		t.Fatal(err)
	}
	f.objs = big
	key := big[0].Key
	before := f.plaintext(t, key, f.arnA)
	head, err := f.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &f.bucket, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	etag := aws.ToString(head.ETag)
	// The second part is bytes partSize to the end (the ciphertext, then
	// the tag); a GET of its rest starts past partSize, ends there too and
	// is guarded by the ETag.
	last := aws.ToInt64(head.ContentLength) - 1
	var rest atomic.Int32
	brk := newBreakOnce(t, os.Getenv(testenv.EnvS3Endpoint), func(r *http.Request) bool {
		if r.URL.Path != "/"+f.bucket+"/"+key {
			return false
		}
		first, end, _ := strings.Cut(strings.TrimPrefix(r.Header.Get("Range"), "bytes="), "-")
		start, err1 := strconv.ParseInt(first, 10, 64)
		stop, err2 := strconv.ParseInt(end, 10, 64)
		if err1 != nil || err2 != nil || stop != last {
			return false
		}
		if start > partSize && r.Header.Get("If-Match") == etag {
			rest.Add(1)
		}
		return start == partSize
	})
	c := exec.Command(os.Args[0], "run", "--mode", "reencrypt", "--source", "s3://"+f.bucket, "--from", "kms:"+f.arnA, "--to", "kms:"+f.arnB,
		"--part-size", "5MiB", "--no-progress", "--run-id", "broken-part", "--ledger", f.dir+"/ledger.db")
	c.Env = append(os.Environ(), envMain+"=1", testenv.EnvS3Endpoint+"="+brk.srv.URL)
	c.Dir = f.dir
	if out, err := c.CombinedOutput(); err != nil || brk.broke.Load() != 1 || rest.Load() != 1 {
		t.Fatalf("rotator run --mode reencrypt: %v, %d bodies cut (the GET of %s from byte %d), %d GETs of the rest with If-Match %s, want 1 and 1\n%s",
			err, brk.broke.Load(), key, partSize, rest.Load(), etag, out)
	}
	head, err = f.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &f.bucket, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	if got := aws.ToString(head.ETag); !strings.HasSuffix(got, `-2"`) {
		t.Errorf("%s's ETag after the run is %s, want that of a two-part upload", key, got)
	}
	f.opensUnder(t, f.arnB)
	if !bytes.Equal(f.plaintext(t, key, f.arnB), before) {
		t.Errorf("%s: plaintext differs after re-encryption", key)
	}
}
