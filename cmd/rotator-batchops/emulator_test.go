package main

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rotator-dev/rotator/internal/awsx"
	"github.com/rotator-dev/rotator/internal/lambdatest"
	"github.com/rotator-dev/rotator/internal/sample"
	"github.com/rotator-dev/rotator/internal/testenv"
	"github.com/rotator-dev/rotator/kmsserver"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/pipeline"
	"github.com/rotator-dev/rotator/rewrap"
)

// fixture: objects under key A in a bucket of the local S3 server, a
// DynamoDB ledger table, and a KMS test server of this process (its
// throttling is switched on and off mid-test, which the stack's shared
// server must not be).
type fixture struct {
	s3       *s3.Client
	kmsSrv   *kmsserver.Server
	kms      *kms.Client
	bucket   string
	table    string
	keys     map[string]string // name -> ARN
	plain    map[string][]byte // key -> plaintext
	manifest []byte
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	testenv.Need(t, testenv.S3, testenv.DynamoDB, testenv.LambdaRIE)
	ctx := context.Background()
	cfg := testenv.AWSConfig(t)
	f := &fixture{s3: awsx.S3(cfg), bucket: testenv.Name(t), table: testenv.Name(t), keys: map[string]string{}, plain: map[string][]byte{}}
	f.kmsSrv = kmsserver.NewTestServer(t, kmsserver.Options{Region: cfg.Region})
	f.kms = f.kmsSrv.Client(cfg.Region)
	for _, name := range []string{"A", "B", "C", "D"} {
		out, err := f.kms.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String(t.Name() + " " + name)})
		if err != nil {
			t.Fatal(err)
		}
		f.keys[name] = *out.KeyMetadata.Arn
	}
	if _, err := f.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &f.bucket}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testenv.EmptyBucket(f.s3, f.bucket) })
	// Every kind (V2, V3; envelope in metadata and in instruction files),
	// some under keys that URL-encoding changes.
	for _, prefix := range []string{"", "odd key+é,&%/"} {
		if _, err := sample.Seed(ctx, f.s3, f.kms, sample.Options{Bucket: f.bucket, Prefix: prefix, KMSKeyID: f.keys["A"], Count: 8, MaxSize: 3000}); err != nil {
			t.Fatal(err)
		}
	}
	// A corrupt envelope.
	if _, err := f.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(f.bucket), Key: aws.String("corrupt/object"), Body: strings.NewReader("x"),
		Metadata: map[string]string{"x-amz-key-v2": "AAAA", "x-amz-iv": "short", "x-amz-cek-alg": "AES/GCM/NoPadding",
			"x-amz-wrap-alg": "kms+context", "x-amz-matdesc": "{}"}}); err != nil {
		t.Fatal(err)
	}
	// The manifest: every key of the bucket, instruction files included, as
	// a manifest made from a listing or an S3 Inventory report holds them.
	var keys []string
	p := s3.NewListObjectsV2Paginator(f.s3, &s3.ListObjectsV2Input{Bucket: &f.bucket})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			keys = append(keys, *o.Key)
		}
	}
	sort.Strings(keys)
	var m bytes.Buffer
	for _, k := range keys {
		fmt.Fprintf(&m, "%s,%s\n", f.bucket, url.QueryEscape(k))
		if !strings.HasSuffix(k, ".instruction") && k != "corrupt/object" {
			f.plain[k] = f.open(t, k, "A")
		}
	}
	f.manifest = m.Bytes()
	if _, err := f.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(f.bucket), Key: aws.String("manifests/manifest.csv"), Body: bytes.NewReader(f.manifest)}); err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(ctx, "dynamodb://"+f.table+"?create=true")
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	return f
}

// open opens bucket object key under KMS key name, as a reader would
// (internal/sample.Open: unwrap, decrypt, check the tag; the official
// clients do the same in the interop module's test of this handler).
func (f *fixture) open(t *testing.T, key, name string) []byte {
	t.Helper()
	d := &rewrap.Deps{AWS: f.kmsSrv.AWSConfig("")}
	defer d.Close()
	spec, _ := rewrap.ParseSpec("kms:" + f.keys[name])
	k, err := rewrap.Open(context.Background(), spec, d)
	if err != nil {
		t.Fatal(err)
	}
	pt, _, err := sample.Open(context.Background(), f.s3, f.bucket, key, k)
	if err != nil {
		t.Fatalf("%s does not open under key %s: %v", key, name, err)
	}
	return pt
}

// env is the environment the emulator gives the function: the stack's S3
// and DynamoDB, this test's KMS server, the ledger table, and more.
func (f *fixture) env(more ...string) []string {
	return append([]string{
		"AWS_ENDPOINT_URL_KMS=" + f.kmsSrv.URL,
		"AWS_LAMBDA_FUNCTION_TIMEOUT=60",
		"AWS_LAMBDA_FUNCTION_NAME=rotator-batchops",
		"ROTATOR_LEDGER=dynamodb://" + f.table,
	}, more...)
}

// checkResponse checks the frame of a response to EventV1 or EventV2 of
// task i: the schema and ids echoed, one result.
func checkResponse(t *testing.T, resp events.S3BatchJobResponse, schema, jobID string, i int) events.S3BatchJobResult {
	t.Helper()
	if resp.InvocationSchemaVersion != schema || resp.InvocationID != fmt.Sprintf("%s-invocation-%d", jobID, i) ||
		resp.TreatMissingKeysAs != "PermanentFailure" || len(resp.Results) != 1 || resp.Results[0].TaskID != lambdatest.TaskID(jobID, i) {
		t.Fatalf("response %+v", resp)
	}
	return resp.Results[0]
}

func (f *fixture) ledger(t *testing.T) ledger.Ledger {
	t.Helper()
	l, err := ledger.Open(context.Background(), "dynamodb://"+f.table)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// TestBatchOperationsUnderEmulator runs the bootstrap under the AWS Lambda
// Runtime Interface Emulator and sends it the invocations S3 Batch
// Operations would send for a CSV manifest: schema 1.0 (settings from the
// environment) for one half, schema 2.0 (settings from userArguments) for
// the other, then the whole manifest again (nothing to do), then a
// destination key whose policy denies kms:ReEncryptTo (PermanentFailure)
// and a KMS that throttles every request (TemporaryFailure, then
// Succeeded when Batch Operations tries again).
func TestBatchOperationsUnderEmulator(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	bootstrap := lambdatest.Bootstrap(t)
	tasks, err := lambdatest.ReadManifest(bytes.NewReader(f.manifest))
	if err != nil {
		t.Fatal(err)
	}
	half := len(tasks) / 2

	// want checks one result against what its object is.
	want := func(t *testing.T, res events.S3BatchJobResult, task lambdatest.Task, to string) {
		t.Helper()
		key, _ := url.QueryUnescape(task.EncodedKey)
		switch {
		case key == "corrupt/object":
			if res.ResultCode != "PermanentFailure" || !strings.HasPrefix(res.ResultString, "BadEnvelope: ") {
				t.Errorf("%s: %s %q, want PermanentFailure BadEnvelope", key, res.ResultCode, res.ResultString)
			}
		case strings.HasSuffix(key, ".instruction"):
			if res.ResultCode != "Succeeded" || !strings.HasPrefix(res.ResultString, "skipped: InstructionFile") {
				t.Errorf("%s: %s %q, want Succeeded (instruction file)", key, res.ResultCode, res.ResultString)
			}
		case res.ResultCode != "Succeeded" || !strings.Contains(res.ResultString, f.keys[to]):
			t.Errorf("%s: %s %q, want Succeeded under %s", key, res.ResultCode, res.ResultString, to)
		}
	}

	// Schema 1.0: everything from the environment.
	v1 := lambdatest.Start(t, bootstrap, f.env("ROTATOR_TO=kms:"+f.keys["B"], "ROTATOR_FROM=kms:"+f.keys["A"])...)
	for i, task := range tasks[:half] {
		resp, err := v1.Invoke(ctx, lambdatest.EventV1("job-v1", i, task))
		if err != nil {
			t.Fatal(err)
		}
		want(t, checkResponse(t, resp, "1.0", "job-v1", i), task, "B")
	}

	// Schema 2.0: the job's userArguments; the environment names only the
	// ledger.
	v2 := lambdatest.Start(t, bootstrap, f.env()...)
	args := map[string]string{"to": "kms:" + f.keys["B"], "from": "kms:" + f.keys["A"], "runId": "rotation-2026",
		"manifest": "s3://" + f.bucket + "/manifests/manifest.csv"}
	for i, task := range tasks[half:] {
		resp, err := v2.Invoke(ctx, lambdatest.EventV2("job-v2", args, i, task))
		if err != nil {
			t.Fatal(err)
		}
		want(t, checkResponse(t, resp, "2.0", "job-v2", i), task, "B")
	}
	for k, pt := range f.plain {
		if got := f.open(t, k, "B"); !bytes.Equal(got, pt) {
			t.Errorf("%s: the plaintext under B differs from the original", k)
		}
	}

	// The whole manifest again: nothing to do.
	for i, task := range tasks {
		resp, err := v2.Invoke(ctx, lambdatest.EventV2("job-v2-again", args, i, task))
		if err != nil {
			t.Fatal(err)
		}
		res := checkResponse(t, resp, "2.0", "job-v2-again", i)
		key, _ := url.QueryUnescape(task.EncodedKey)
		if _, rotated := f.plain[key]; rotated && (res.ResultCode != "Succeeded" || !strings.HasPrefix(res.ResultString, "skipped: AlreadyUnderTargetKey")) {
			t.Errorf("%s again: %s %q", key, res.ResultCode, res.ResultString)
		}
	}

	// The ledger: each job is a run, with one lease per execution
	// environment, and nothing unfinished.
	l := f.ledger(t)
	for _, run := range []string{"batchops-job-v1", "rotation-2026"} {
		rec, err := l.GetRun(ctx, run)
		if err != nil {
			t.Fatalf("run %s: %v", run, err)
		}
		leases, err := l.Leases(ctx, run)
		if err != nil || len(leases) != 1 || !strings.HasPrefix(leases[0].Name, "lambda-") {
			t.Errorf("run %s: leases %+v, %v; want one lambda-* lease", run, leases, err)
		}
		if n, err := pipeline.Unfinished(ctx, l, run); err != nil || n != 0 {
			t.Errorf("run %s: %d unfinished, %v", run, n, err)
		}
		if run == "rotation-2026" && !strings.Contains(string(rec.Config), "manifests/manifest.csv") {
			t.Errorf("run %s records no manifest: %s", run, rec.Config)
		}
	}

	first := -1 // the first object that is not an instruction file
	for i, task := range tasks {
		if key, _ := url.QueryUnescape(task.EncodedKey); f.plain[key] != nil {
			first = i
			break
		}
	}
	firstKey, _ := url.QueryUnescape(tasks[first].EncodedKey)

	// Denied: D's key policy denies kms:ReEncryptTo. PermanentFailure,
	// with the permission to grant, and the object left under B.
	if _, err := f.kms.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: aws.String(f.keys["D"]), PolicyName: aws.String("default"),
		Policy: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","Action":"kms:ReEncryptTo","Resource":"*"}]}`)}); err != nil {
		t.Fatal(err)
	}
	denied := map[string]string{"to": "kms:" + f.keys["D"], "from": "kms:" + f.keys["B"]}
	resp, err := v2.Invoke(ctx, lambdatest.EventV2("job-denied", denied, first, tasks[first]))
	if err != nil {
		t.Fatal(err)
	}
	if res := checkResponse(t, resp, "2.0", "job-denied", first); res.ResultCode != "PermanentFailure" ||
		!strings.HasPrefix(res.ResultString, "AccessDeniedException: ") || !strings.Contains(res.ResultString, "kms:ReEncryptTo") {
		t.Errorf("denied: %s %q, want PermanentFailure AccessDeniedException naming kms:ReEncryptTo", res.ResultCode, res.ResultString)
	}
	if got := f.open(t, firstKey, "B"); !bytes.Equal(got, f.plain[firstKey]) {
		t.Errorf("%s changed after a denied rewrap", firstKey)
	}

	// Throttled: every KMS request is throttled. TemporaryFailure; once
	// KMS answers again, Batch Operations' retry of the task succeeds.
	toC := map[string]string{"to": "kms:" + f.keys["C"], "from": "kms:" + f.keys["B"]}
	f.kmsSrv.SetThrottleFraction(1)
	start := time.Now()
	resp, err = v2.Invoke(ctx, lambdatest.EventV2("job-throttled", toC, first, tasks[first]))
	if err != nil {
		t.Fatal(err)
	}
	if res := checkResponse(t, resp, "2.0", "job-throttled", first); res.ResultCode != "TemporaryFailure" || !strings.HasPrefix(res.ResultString, "ThrottlingException: ") {
		t.Errorf("throttled: %s %q, want TemporaryFailure ThrottlingException", res.ResultCode, res.ResultString)
	}
	t.Logf("a throttled task was answered in %v", time.Since(start).Round(time.Millisecond))
	f.kmsSrv.SetThrottleFraction(0)
	resp, err = v2.Invoke(ctx, lambdatest.EventV2("job-throttled", toC, first, tasks[first]))
	if err != nil {
		t.Fatal(err)
	}
	if res := checkResponse(t, resp, "2.0", "job-throttled", first); res.ResultCode != "Succeeded" || !strings.Contains(res.ResultString, f.keys["C"]) {
		t.Errorf("retried after throttling: %s %q", res.ResultCode, res.ResultString)
	}
	if got := f.open(t, firstKey, "C"); !bytes.Equal(got, f.plain[firstKey]) {
		t.Errorf("%s: the plaintext under C differs from the original", firstKey)
	}
}

// TestBatchOperationsSettingsErrors: settings a job gets wrong fail every
// task at once with a result string that says what to change.
func TestBatchOperationsSettingsErrors(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tasks, err := lambdatest.ReadManifest(bytes.NewReader(f.manifest))
	if err != nil {
		t.Fatal(err)
	}
	em := lambdatest.Start(t, lambdatest.Bootstrap(t), f.env("ROTATOR_TO=kms:"+f.keys["B"])...)
	for i, c := range []struct {
		args map[string]string
		want string
	}{
		{map[string]string{"to": "kms:" + f.keys["C"]}, "contradicts the function's ROTATOR_TO"},
		{map[string]string{"form": "kms:" + f.keys["A"]}, "unknown userArguments form"},
		{map[string]string{"mode": "shred"}, "--mode \"shred\""},
	} {
		resp, err := em.Invoke(ctx, lambdatest.EventV2("job-bad", c.args, i, tasks[0]))
		if err != nil {
			t.Fatal(err)
		}
		if res := checkResponse(t, resp, "2.0", "job-bad", i); res.ResultCode != "PermanentFailure" || !strings.Contains(res.ResultString, c.want) {
			t.Errorf("%v: %s %q, want PermanentFailure with %q", c.args, res.ResultCode, res.ResultString, c.want)
		}
	}
	ev := lambdatest.EventV1("job-schema", 9, tasks[0])
	ev.InvocationSchemaVersion = "3.0"
	resp, err := em.Invoke(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Results) != 1 || resp.Results[0].ResultCode != "PermanentFailure" || !strings.Contains(resp.Results[0].ResultString, `schema "3.0"`) {
		t.Errorf("schema 3.0: %+v", resp)
	}
	if _, err := em.Invoke(ctx, map[string]string{"hello": "world"}); err == nil {
		t.Error("an event that is no Batch Operations invocation: no function error")
	}
}
