package main

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/internal/awsx"
	"github.com/rotator-dev/rotator/internal/sample"
	"github.com/rotator-dev/rotator/internal/testenv"
)

const testAccount = "111122223333"

// versitygw enforces x-amz-expected-bucket-owner: its buckets belong to the
// root access key, so any 12-digit account is another account's, and the
// command fails rather than touch the bucket.
func TestCLIExpectedBucketOwnerRefusesAnotherAccount(t *testing.T) {
	f := newCLIFixture(t, 4)
	base := []string{"--source", "s3://" + f.bucket, "--to", "kms:" + f.arnB}
	if code, out := f.rotator(t, append([]string{"plan"}, base...)...); code != exitOK {
		t.Fatalf("plan without --expected-bucket-owner: exit %d:\n%s", code, out)
	}
	for _, args := range [][]string{
		append([]string{"plan", "--expected-bucket-owner", testAccount}, base...),
		append([]string{"run", "--expected-bucket-owner", testAccount, "--ledger", filepath.Join(f.dir, "l.db"), "--no-progress"}, base...),
		{"verify", "--expected-bucket-owner", testAccount, "--source", "s3://" + f.bucket, "--key", "kms:" + f.arnA, "--all"},
	} {
		code, out := f.rotator(t, args...)
		if code != exitFatal || !strings.Contains(out, "AccessDenied") || !strings.Contains(out, "does not belong to account "+testAccount) {
			t.Errorf("rotator %s with another account's bucket: exit %d, want %d and AccessDenied naming the expected owner:\n%s", args[0], code, exitFatal, out)
		}
	}
	f.opensUnder(t, f.arnA) // nothing was rotated
	for _, bad := range []string{"12345", "1111-2222-3333", "arn:aws:iam::111122223333:root"} {
		code, out := f.rotator(t, append([]string{"plan", "--expected-bucket-owner", bad}, base...)...)
		if code != exitUsage || !strings.Contains(out, "12 digits") {
			t.Errorf("--expected-bucket-owner %q: exit %d, want %d naming 12 digits:\n%s", bad, code, exitUsage, out)
		}
	}
}

// ownerProxy stands between rotator and versitygw. It records every
// request's bucket-owner headers, then, since versitygw's buckets belong to
// its access key rather than to an account id, replaces the account by the
// access key and signs the request again, so that versitygw (which
// enforces the header) accepts exactly the requests that carried it.
type ownerProxy struct {
	target *url.URL
	creds  aws.Credentials
	region string
	owner  string // what versitygw calls the buckets' owner

	mu   sync.Mutex
	reqs []ownerRequest
}

type ownerRequest struct {
	op            string // method, bucket-relative path kind and query names
	owner, source string
	copy          bool
}

func (p *ownerProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	names := make([]string, 0, len(q))
	for n := range q {
		if n != "x-id" {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	kind := "object"
	if parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 2); len(parts) < 2 || parts[1] == "" {
		kind = "bucket"
	}
	rec := ownerRequest{
		op:    strings.TrimSpace(fmt.Sprintf("%s %s %s", r.Method, kind, strings.Join(names, "&"))),
		owner: r.Header.Get(awsx.HeaderExpectedBucketOwner), source: r.Header.Get(awsx.HeaderSourceExpectedBucketOwner),
		copy: r.Header.Get("X-Amz-Copy-Source") != "",
	}
	if rec.copy {
		rec.op += " (copy)"
	}
	p.mu.Lock()
	p.reqs = append(p.reqs, rec)
	p.mu.Unlock()

	out, err := http.NewRequestWithContext(r.Context(), r.Method, p.target.String(), r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	out.URL.Path, out.URL.RawPath, out.URL.RawQuery = r.URL.Path, r.URL.RawPath, r.URL.RawQuery
	out.ContentLength = r.ContentLength
	out.Header = r.Header.Clone()
	for _, h := range []string{"Authorization", "X-Amz-Date", "Expect", "Connection", "Keep-Alive", "Te", "Trailer", "Upgrade"} {
		out.Header.Del(h)
	}
	for _, h := range []string{awsx.HeaderExpectedBucketOwner, awsx.HeaderSourceExpectedBucketOwner} {
		if out.Header.Get(h) == testAccount {
			out.Header.Set(h, p.owner)
		}
	}
	if len(r.TransferEncoding) > 0 {
		out.TransferEncoding = r.TransferEncoding
	}
	err = v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true }).
		SignHTTP(r.Context(), p.creds, out, r.Header.Get("X-Amz-Content-Sha256"), "s3", p.region, time.Now())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	resp, err := http.DefaultTransport.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// Every S3 request of every command (plan, run in both modes with
// multipart copies and uploads and --delete-old-versions, resume, verify,
// --inventory and --list from S3) carries --expected-bucket-owner, and
// copies carry it as the source's owner too.
func TestCLIExpectedBucketOwnerOnEveryRequest(t *testing.T) {
	testenv.Need(t, testenv.S3, testenv.KMS)
	cfg := testenv.AWSConfig(t)
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		t.Fatal(err)
	}
	target, err := url.Parse(os.Getenv("AWS_ENDPOINT_URL_S3"))
	if err != nil {
		t.Fatal(err)
	}
	proxy := &ownerProxy{target: target, creds: creds, region: cfg.Region, owner: creds.AccessKeyID}
	srv := httptest.NewServer(proxy)
	defer srv.Close()

	// A versioned bucket: every sample twice under key A (older versions
	// to delete), one of them large enough for a multipart re-encryption.
	s3c, kmsc := awsx.S3(cfg), kms.NewFromConfig(cfg)
	bucket := testenv.Name(t)
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testenv.EmptyBucket(s3c, bucket) })
	if _, err := s3c.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: &bucket,
		VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled}}); err != nil {
		t.Fatal(err)
	}
	arn := map[string]string{}
	for _, k := range []string{"A", "B"} {
		out, err := kmsc.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String(t.Name() + " " + k)})
		if err != nil {
			t.Fatal(err)
		}
		arn[k] = *out.KeyMetadata.Arn
	}
	var objs []sample.Object
	for range 2 {
		small, err := sample.Seed(ctx, s3c, kmsc, sample.Options{Bucket: bucket, KMSKeyID: arn["A"], Count: 8, MinSize: 2000, MaxSize: 3000})
		if err != nil {
			t.Fatal(err)
		}
		big, err := sample.Seed(ctx, s3c, kmsc, sample.Options{Bucket: bucket, Prefix: "big/", KMSKeyID: arn["A"], Count: 1,
			MinSize: 6 << 20, MaxSize: 6 << 20, Kinds: []sample.Kind{{Format: envelope.V2, Placement: envelope.PlacementMetadata}}})
		if err != nil {
			t.Fatal(err)
		}
		objs = append(small, big...)
	}
	// A list and an S3 Inventory report of the current objects, in the
	// bucket itself.
	var list, report bytes.Buffer
	for _, o := range objs {
		fmt.Fprintf(&list, "%s,%s\n", bucket, url.QueryEscape(o.Key))
		fmt.Fprintf(&report, "%q,%q\n", bucket, url.QueryEscape(o.Key))
	}
	put := func(key string, body []byte) {
		if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
			t.Fatal(err)
		}
	}
	put("meta/list.csv", list.Bytes())
	put("meta/inv/data/a.csv", report.Bytes())
	sum := md5.Sum(report.Bytes())
	manifest := fmt.Sprintf(`{"sourceBucket":%q,"destinationBucket":"arn:aws:s3:::%s","version":"2016-11-30","fileFormat":"CSV","fileSchema":"Bucket, Key","files":[{"key":"meta/inv/data/a.csv","size":%d,"MD5checksum":%q}]}`,
		bucket, bucket, report.Len(), hex.EncodeToString(sum[:]))
	put("meta/inv/manifest.json", []byte(manifest))

	dir := t.TempDir()
	ledgerPath := filepath.Join(dir, "ledger.db")
	rotator := func(args ...string) string {
		t.Helper()
		c := exec.Command(os.Args[0], args...)
		c.Env = append(os.Environ(), envMain+"=1", "AWS_ENDPOINT_URL_S3="+srv.URL)
		c.Dir = dir
		var out bytes.Buffer
		c.Stdout, c.Stderr = &out, &out
		if err := c.Run(); err != nil {
			// Older versions of instruction-file objects are kept (which
			// key wraps them cannot be told): exit 3, as it should.
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != exitPartial || !strings.Contains(out.String(), "older versions under a --from key are left") {
				t.Fatalf("rotator %s: %v:\n%s", strings.Join(args, " "), err, out.String())
			}
		}
		return out.String()
	}
	own := []string{"--expected-bucket-owner", testAccount}
	src := []string{"--source", "s3://" + bucket + "/"}
	step := func(args ...string) { t.Logf("rotator %s:\n%s", args[0], rotator(append(args, own...)...)) }
	step(append([]string{"plan", "--to", "kms:" + arn["B"]}, src...)...)
	step(append([]string{"run", "--mode", "reencrypt", "--all-versions", "--delete-old-versions", "--from", "kms:" + arn["A"], "--to", "kms:" + arn["B"],
		"--part-size", "5242880", "--s3-no-multipart-checksum", "--ledger", ledgerPath, "--run-id", "re", "--no-progress"}, src...)...)
	// The older versions go once their key's current version is done.
	step(append([]string{"run", "--mode", "reencrypt", "--all-versions", "--delete-old-versions", "--from", "kms:" + arn["A"], "--to", "kms:" + arn["B"],
		"--ledger", ledgerPath, "--run-id", "re2", "--no-progress"}, src...)...)
	step(append([]string{"run", "--from", "kms:" + arn["B"], "--to", "kms:" + arn["A"], "--ledger", ledgerPath, "--run-id", "back", "--no-progress"}, src...)...)
	step(append([]string{"run", "--from", "kms:" + arn["A"], "--to", "kms:" + arn["B"], "--multipart-threshold", "1024",
		"--s3-no-multipart-checksum", "--ledger", ledgerPath, "--run-id", "forth", "--no-progress"}, src...)...)
	rotator("resume", "--run-id", "forth", "--ledger", ledgerPath, "--no-progress") // the owner comes from the run record
	step(append([]string{"verify", "--key", "kms:" + arn["B"], "--all"}, src...)...)
	step("plan", "--inventory", "s3://"+bucket+"/meta/inv/manifest.json", "--to", "kms:"+arn["B"])
	step("plan", "--list", "s3://"+bucket+"/meta/list.csv", "--to", "kms:"+arn["B"])

	proxy.mu.Lock()
	defer proxy.mu.Unlock()
	ops := map[string]int{}
	for _, r := range proxy.reqs {
		ops[r.op]++
		if r.owner != testAccount {
			t.Errorf("%s: %s = %q, want %q", r.op, awsx.HeaderExpectedBucketOwner, r.owner, testAccount)
		}
		if r.copy && r.source != testAccount {
			t.Errorf("%s: %s = %q, want %q", r.op, awsx.HeaderSourceExpectedBucketOwner, r.source, testAccount)
		}
	}
	names := make([]string, 0, len(ops))
	for op, n := range ops {
		names = append(names, fmt.Sprintf("%5d  %s", n, op))
	}
	slices.Sort(names)
	t.Logf("%d requests:\n%s", len(proxy.reqs), strings.Join(names, "\n"))
	for _, want := range []string{
		"HEAD object", "GET object", "PUT object", "PUT object (copy)", "DELETE object versionId",
		"POST object uploads", "PUT object partNumber uploadId", "PUT object partNumber uploadId (copy)", "POST object uploadId",
		"GET bucket list-type", "GET bucket versions", "GET object tagging", "GET object retention", "GET object legal-hold",
	} {
		if !slices.ContainsFunc(slices.Collect(maps.Keys(ops)), func(op string) bool { return sameOp(op, want) }) {
			t.Errorf("no %q request: the test does not cover it", want)
		}
	}
}

// sameOp reports whether op ("METHOD KIND q1&q2 [(copy)]") is the
// operation want names: its method, kind and some of its query names, and
// "(copy)" when it copies.
func sameOp(op, want string) bool {
	w := strings.Fields(want)
	copyOp := strings.HasSuffix(op, " (copy)")
	o := strings.Fields(strings.TrimSuffix(op, " (copy)"))
	if len(o) < 2 || o[0] != w[0] || o[1] != w[1] || copyOp != (w[len(w)-1] == "(copy)") {
		return false
	}
	var names []string
	if len(o) > 2 {
		names = strings.Split(o[2], "&")
	}
	for _, n := range w[2:] {
		if n != "(copy)" && !slices.Contains(names, n) {
			return false
		}
	}
	return true
}
