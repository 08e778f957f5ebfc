package awsx

import (
	"context"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
)

// recordingHTTP answers every request with an empty 200 and keeps the last
// request's headers.
type recordingHTTP struct {
	mu   sync.Mutex
	last http.Header
	n    int
}

func (r *recordingHTTP) Do(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.last, r.n = req.Header.Clone(), r.n+1
	r.mu.Unlock()
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
	}
	return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("")), Request: req}, nil
}

// fill sets every string-like field of v (a struct) to a plausible value,
// numbers to 1 and nested structs, so that client-side validation passes.
func fill(v reflect.Value, depth int) {
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		if !f.CanSet() || v.Type().Field(i).Name == "ChecksumAlgorithm" {
			continue
		}
		switch f.Kind() {
		case reflect.String:
			f.SetString("x")
		case reflect.Pointer:
			switch e := f.Type().Elem(); e.Kind() {
			case reflect.String:
				p := reflect.New(e)
				p.Elem().SetString("x")
				f.Set(p)
			case reflect.Int32, reflect.Int64:
				p := reflect.New(e)
				p.Elem().SetInt(1)
				f.Set(p)
			case reflect.Struct:
				if depth > 0 && e.PkgPath() != "time" {
					p := reflect.New(e)
					fill(p.Elem(), depth-1)
					f.Set(p)
				}
			}
		}
	}
	strp := reflect.TypeOf((*string)(nil))
	if b := v.FieldByName("Bucket"); b.IsValid() && b.Type() == strp {
		b.Set(reflect.ValueOf(aws.String("owned-bucket")))
	}
	if b := v.FieldByName("CopySource"); b.IsValid() && b.Type() == strp {
		b.Set(reflect.ValueOf(aws.String("owned-bucket/k")))
	}
	for _, name := range []string{"ExpectedBucketOwner", "ExpectedSourceBucketOwner"} {
		if b := v.FieldByName(name); b.IsValid() {
			b.Set(reflect.Zero(b.Type())) // left to the middleware
		}
	}
}

// Every S3 operation whose input takes ExpectedBucketOwner sends the
// header, and every one that takes ExpectedSourceBucketOwner (the copies)
// sends that one too, whichever operation rotator calls now or later.
func TestExpectedBucketOwnerOnEveryOperation(t *testing.T) {
	const account = "111122223333"
	rec := &recordingHTTP{}
	client := s3.New(s3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String("http://127.0.0.1:1"), UsePathStyle: true,
		Credentials: aws.AnonymousCredentials{}, HTTPClient: rec, Retryer: aws.NopRetryer{},
		APIOptions: []func(*middleware.Stack) error{ExpectedBucketOwner(account)},
	})
	ctxType := reflect.TypeOf((*context.Context)(nil)).Elem()
	cv := reflect.ValueOf(client)
	// The operations rotator calls (commit, reencrypt, inventory, pipeline)
	// must all be among those checked.
	rotatorOps := map[string]bool{
		"HeadObject": false, "GetObject": false, "PutObject": false, "CopyObject": false, "DeleteObject": false,
		"CreateMultipartUpload": false, "UploadPart": false, "UploadPartCopy": false, "CompleteMultipartUpload": false,
		"AbortMultipartUpload": false, "ListMultipartUploads": false, "ListParts": false, "ListObjectsV2": false,
		"ListObjectVersions": false, "GetObjectTagging": false, "GetObjectRetention": false, "GetObjectLegalHold": false,
		"PutObjectLegalHold": false, "GetObjectAcl": false,
	}
	checked, skipped := 0, 0
	for i := 0; i < cv.NumMethod(); i++ {
		m := cv.Type().Method(i)
		mt := m.Type // receiver included
		if mt.NumIn() != 4 || mt.In(1) != ctxType || mt.In(2).Kind() != reflect.Pointer || !strings.HasSuffix(mt.In(2).Elem().Name(), "Input") {
			continue
		}
		in := reflect.New(mt.In(2).Elem())
		fill(in.Elem(), 2)
		f := ownerFieldsOf(in.Interface())
		if !f.owner {
			if m.Name != "CreateBucket" && m.Name != "ListBuckets" && m.Name != "ListDirectoryBuckets" && m.Name != "WriteGetObjectResponse" {
				t.Logf("%s takes no expected bucket owner", m.Name)
			}
			continue
		}
		before := rec.n
		out := cv.Method(i).Call([]reflect.Value{reflect.ValueOf(context.Background()), in})
		if rec.n == before {
			skipped++ // refused before it was sent (client-side validation)
			t.Logf("%s not sent: %v", m.Name, out[1].Interface())
			if _, ok := rotatorOps[m.Name]; ok {
				t.Errorf("%s was not sent: the test cannot check it", m.Name)
			}
			continue
		}
		checked++
		if got := rec.last.Get(HeaderExpectedBucketOwner); got != account {
			t.Errorf("%s: %s = %q, want %q", m.Name, HeaderExpectedBucketOwner, got, account)
		}
		if got := rec.last.Get(HeaderSourceExpectedBucketOwner); f.source && got != account {
			t.Errorf("%s: %s = %q, want %q", m.Name, HeaderSourceExpectedBucketOwner, got, account)
		}
		if _, ok := rotatorOps[m.Name]; ok {
			rotatorOps[m.Name] = true
		}
	}
	for op, seen := range rotatorOps {
		if !seen {
			t.Errorf("%s was not checked", op)
		}
	}
	t.Logf("%d operations checked, %d refused by client-side validation before sending", checked, skipped)
	if checked < 50 {
		t.Errorf("only %d operations checked", checked)
	}
}

// A value set on the input wins over the option's.
func TestExpectedBucketOwnerKeepsTheInputs(t *testing.T) {
	rec := &recordingHTTP{}
	client := s3.New(s3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String("http://127.0.0.1:1"), UsePathStyle: true,
		Credentials: aws.AnonymousCredentials{}, HTTPClient: rec, Retryer: aws.NopRetryer{},
		APIOptions: []func(*middleware.Stack) error{ExpectedBucketOwner("111122223333")},
	})
	_, _ = client.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String("b"), Key: aws.String("k"), ExpectedBucketOwner: aws.String("444455556666")})
	if got := rec.last.Get(HeaderExpectedBucketOwner); got != "444455556666" {
		t.Errorf("header %q, want the input's", got)
	}
	_, _ = client.ListBuckets(context.Background(), &s3.ListBucketsInput{})
	if got := rec.last.Get(HeaderExpectedBucketOwner); got != "" {
		t.Errorf("ListBuckets sent %s: %q", HeaderExpectedBucketOwner, got)
	}
}

func TestCheckAccountID(t *testing.T) {
	for _, ok := range []string{"111122223333", "000000000000"} {
		if err := CheckAccountID(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "11112222333", "1111222233334", "11112222333a", "arn:aws:iam::111122223333:root", "111122223333 "} {
		if err := CheckAccountID(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// denyingHTTP answers every request with S3's 403 AccessDenied.
type denyingHTTP struct{}

func (denyingHTTP) Do(req *http.Request) (*http.Response, error) {
	body := `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>`
	return &http.Response{StatusCode: 403, Header: http.Header{"Content-Type": {"application/xml"}},
		Body: io.NopCloser(strings.NewReader(body)), Request: req}, nil
}

// S3 answers AccessDenied both for a missing permission and for a bucket
// of another account: the error says the second is possible, and stays an
// AccessDenied API error for callers that branch on it.
func TestExpectedBucketOwnerExplainsAccessDenied(t *testing.T) {
	for _, owner := range []bool{true, false} {
		o := s3.Options{Region: "us-east-1", BaseEndpoint: aws.String("http://127.0.0.1:1"), UsePathStyle: true,
			Credentials: aws.AnonymousCredentials{}, HTTPClient: denyingHTTP{}, Retryer: aws.NopRetryer{}}
		if owner {
			o.APIOptions = []func(*middleware.Stack) error{ExpectedBucketOwner("111122223333")}
		}
		_, err := s3.New(o).HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String("b"), Key: aws.String("k")})
		var ae smithy.APIError
		if !errors.As(err, &ae) || ae.ErrorCode() != "AccessDenied" {
			t.Fatalf("error %v is not an AccessDenied API error", err)
		}
		if got := strings.Contains(err.Error(), "does not belong to account 111122223333"); got != owner {
			t.Errorf("with owner %v: error %q", owner, err)
		}
	}
}
