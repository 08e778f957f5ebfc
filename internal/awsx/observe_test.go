package awsx_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/rotator-dev/rotator/internal/awsx"
	"github.com/rotator-dev/rotator/kmsserver"
)

// calls records what an Observer is told.
type calls struct {
	mu sync.Mutex
	c  []awsx.Call
}

func (c *calls) ObserveCall(call awsx.Call) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.c = append(c.c, call)
}

func (c *calls) take(t *testing.T, n int) []awsx.Call {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	got := c.c
	c.c = nil
	if len(got) != n {
		t.Fatalf("%d calls observed, want %d: %+v", len(got), n, got)
	}
	return got
}

func wantCall(t *testing.T, got awsx.Call, service, op string, attempts, throttles int, class string) {
	t.Helper()
	if got.Service != service || got.Operation != op || got.Attempts != attempts || got.Throttles != throttles || got.Class != class {
		t.Errorf("observed %+v, want %s %s with %d attempts, %d throttled, class %q", got, service, op, attempts, throttles, class)
	}
	if got.Duration <= 0 {
		t.Errorf("%s %s: duration %v", service, op, got.Duration)
	}
}

// staticConfig is an AWS configuration for a local fake server.
func staticConfig(endpoint string) aws.Config {
	return aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		BaseEndpoint: aws.String(endpoint),
		Retryer:      func() aws.Retryer { return awsx.NewRetryer(4, time.Millisecond) },
	}
}

// TestObserveS3: every S3 call is reported once, with its attempts, its
// throttled attempts and its error's class, and only when the context
// carries an Observer.
func TestObserveS3(t *testing.T) {
	t.Parallel()
	var n, heads atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch k := r.URL.Path; {
		case k == "/b/slow" && n.Add(1) == 1:
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`)
		case k == "/b/denied":
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `<Error><Code>AccessDenied</Code><Message>secret-bucket/secret-key is not yours</Message></Error>`)
		case k == "/b/slowhead" && heads.Add(1) == 1:
			w.WriteHeader(http.StatusServiceUnavailable) // S3's SlowDown to a HEAD: no body, no code
		case k == "/b/gone":
			w.WriteHeader(http.StatusNotFound) // a HEAD answer has no body
		default:
			w.Header().Set("ETag", `"e"`)
		}
	}))
	defer srv.Close()
	c := awsx.S3(staticConfig(srv.URL), func(o *s3.Options) { o.UsePathStyle = true })
	var obs calls
	ctx := awsx.WithObserver(t.Context(), &obs)
	head := func(ctx context.Context, key string) error {
		_, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("b"), Key: aws.String(key)})
		return err
	}

	if err := head(t.Context(), "k"); err != nil {
		t.Fatal(err)
	}
	obs.take(t, 0) // no Observer in the context

	if err := head(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	wantCall(t, obs.take(t, 1)[0], "s3", "HeadObject", 1, 0, "")

	_, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("b"), Key: aws.String("denied")})
	if err == nil {
		t.Fatal("GetObject of a denied object succeeded")
	}
	got := obs.take(t, 1)[0]
	wantCall(t, got, "s3", "GetObject", 1, 0, awsx.ClassAccessDenied)
	if s := fmt.Sprintf("%+v", got); strings.Contains(s, "secret") {
		t.Errorf("the observed call carries the error's message: %s", s)
	}

	if err := head(ctx, "gone"); err == nil {
		t.Fatal("HEAD of a missing object succeeded")
	}
	wantCall(t, obs.take(t, 1)[0], "s3", "HeadObject", 1, 0, awsx.ClassNotFound)

	// S3 answers a HEAD it throttles with a bare 503: still a throttle.
	if err := head(ctx, "slowhead"); err != nil {
		t.Fatal(err)
	}
	wantCall(t, obs.take(t, 1)[0], "s3", "HeadObject", 2, 1, "")

	// Last: after a throttle, the adaptive retryer slows the client down.
	// (A GET: the answer to a HEAD has no body, hence no error code.)
	if _, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("b"), Key: aws.String("slow")}); err != nil {
		t.Fatal(err)
	}
	wantCall(t, obs.take(t, 1)[0], "s3", "GetObject", 2, 1, "")
}

// TestObserveKMS: KMS clients (awsx.KMS, with their Pacer's middleware)
// report each call once, throttled attempts counted.
func TestObserveKMS(t *testing.T) {
	t.Parallel()
	s := kmsserver.NewTestServer(t, kmsserver.Options{})
	c := awsx.KMS(s.AWSConfig(""), awsx.NewPacer(awsx.PacerOptions{MaxBackoff: time.Millisecond}))
	var obs calls
	ctx := awsx.WithObserver(t.Context(), &obs)
	out, err := c.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	wantCall(t, obs.take(t, 1)[0], "kms", "CreateKey", 1, 0, "")

	s.FailNext("Encrypt", kmsserver.ErrThrottling, 2)
	if _, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: out.KeyMetadata.KeyId, Plaintext: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	wantCall(t, obs.take(t, 1)[0], "kms", "Encrypt", 3, 2, "")

	_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: []byte("not a ciphertext blob")})
	if err == nil {
		t.Fatal("Decrypt of garbage succeeded")
	}
	wantCall(t, obs.take(t, 1)[0], "kms", "Decrypt", 1, 0, awsx.ClassKMSKey)
}

// TestObserveDynamoDB: the ledger's client (awsx.DynamoDB) reports a
// refused condition as precondition_failed.
func TestObserveDynamoDB(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException","message":"The conditional request failed"}`)
	}))
	defer srv.Close()
	c := awsx.DynamoDB(staticConfig(srv.URL))
	var obs calls
	_, err := c.PutItem(awsx.WithObserver(t.Context(), &obs), &dynamodb.PutItemInput{TableName: aws.String("t"),
		Item: map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: "x"}}})
	var ccf *ddbtypes.ConditionalCheckFailedException
	if !errors.As(err, &ccf) {
		t.Fatalf("PutItem: %v, want ConditionalCheckFailedException", err)
	}
	wantCall(t, obs.take(t, 1)[0], "dynamodb", "PutItem", 1, 0, awsx.ClassPrecondition)
}

// TestObserveOnceFromLoad: a client built by awsx.S3 from Load's
// configuration carries Observe twice over (the configuration's and its
// own) and reports each call once; an unreachable endpoint is a network
// error.
func TestObserveOnceFromLoad(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKID")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "SECRET")
	t.Setenv("AWS_ENDPOINT_URL_S3", "http://"+addr)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	cfg, err := awsx.Load(t.Context(), awsx.Options{MaxAttempts: 2, MaxBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var obs calls
	_, err = awsx.S3(cfg).HeadBucket(awsx.WithObserver(t.Context(), &obs), &s3.HeadBucketInput{Bucket: aws.String("b")})
	if err == nil {
		t.Fatal("HeadBucket against a closed port succeeded")
	}
	wantCall(t, obs.take(t, 1)[0], "s3", "HeadBucket", 2, 0, awsx.ClassNetwork)
}

// TestErrorClass: classes come from error codes and HTTP statuses, never
// from messages.
func TestErrorClass(t *testing.T) {
	t.Parallel()
	resp := func(status int, err error) error {
		return &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}}, Err: err}
	}
	api := func(code string, fault smithy.ErrorFault) error {
		return &smithy.GenericAPIError{Code: code, Message: "AccessDenied NotFound Throttling", Fault: fault}
	}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{context.Canceled, awsx.ClassCanceled},
		{fmt.Errorf("op: %w", context.DeadlineExceeded), awsx.ClassCanceled},
		{resp(400, api("ThrottlingException", smithy.FaultClient)), awsx.ClassThrottling},
		{resp(503, api("SlowDown", smithy.FaultServer)), awsx.ClassThrottling},
		{resp(503, api("ServiceUnavailable", smithy.FaultServer)), awsx.ClassThrottling}, // S3's SlowDown to a HEAD (no body)
		{resp(500, api("ServiceUnavailable", smithy.FaultServer)), awsx.ClassServer},
		{resp(400, api("ProvisionedThroughputExceededException", smithy.FaultClient)), awsx.ClassThrottling},
		{resp(403, api("AccessDenied", smithy.FaultClient)), awsx.ClassAccessDenied},
		{resp(400, api("AccessDeniedException", smithy.FaultClient)), awsx.ClassAccessDenied},
		{resp(403, nil), awsx.ClassAccessDenied},
		{resp(404, api("NoSuchKey", smithy.FaultClient)), awsx.ClassNotFound},
		{resp(404, nil), awsx.ClassNotFound},
		{resp(412, api("PreconditionFailed", smithy.FaultClient)), awsx.ClassPrecondition},
		{resp(409, api("ConditionalRequestConflict", smithy.FaultClient)), awsx.ClassPrecondition},
		{resp(400, api("ConditionalCheckFailedException", smithy.FaultClient)), awsx.ClassPrecondition},
		{resp(400, api("IncorrectKeyException", smithy.FaultClient)), awsx.ClassKMSKey},
		{resp(400, api("KMSInvalidStateException", smithy.FaultClient)), awsx.ClassKMSKey},
		{resp(400, api("ValidationException", smithy.FaultClient)), awsx.ClassInvalidRequest},
		{resp(500, api("InternalError", smithy.FaultServer)), awsx.ClassServer},
		{resp(502, nil), awsx.ClassServer},
		{api("SomethingNew", smithy.FaultServer), awsx.ClassServer},
		{api("SomethingNew", smithy.FaultClient), awsx.ClassInvalidRequest},
		{&smithyhttp.RequestSendError{Err: errors.New("dial tcp: connection refused")}, awsx.ClassNetwork},
		{errors.New("AccessDenied: NotFound"), awsx.ClassOther},
	} {
		if got := awsx.ErrorClass(tc.err); got != tc.want {
			t.Errorf("ErrorClass(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

type nopObserver struct{}

func (nopObserver) ObserveCall(awsx.Call) {}

// BenchmarkObserve measures what Observe adds to an S3 call against a
// local server: compare "observed" with "none" (no Observer in the
// context).
func BenchmarkObserve(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Header().Set("ETag", `"e"`) }))
	defer srv.Close()
	c := awsx.S3(staticConfig(srv.URL), func(o *s3.Options) { o.UsePathStyle = true })
	in := &s3.HeadObjectInput{Bucket: aws.String("b"), Key: aws.String("k")}
	for _, bc := range []struct {
		name string
		ctx  context.Context
	}{{"none", context.Background()}, {"observed", awsx.WithObserver(context.Background(), nopObserver{})}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := c.HeadObject(bc.ctx, in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
