package awsx

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"
)

// HeadObject loses the check for errors sent with status 200 (it has no
// body to check); CopyObject keeps it, and still reports such an error.
func TestNoBodyCheckOnHead(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodHead:
			w.Header().Set("ETag", `"e"`)
			w.Header().Set("Content-Length", "3")
		case http.MethodPut:
			w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>x</Message></Error>`))
		}
	}))
	defer srv.Close()
	cfg := aws.Config{Region: "us-east-1", Credentials: aws.AnonymousCredentials{}, BaseEndpoint: aws.String(srv.URL),
		Retryer: func() aws.Retryer { return aws.NopRetryer{} }}
	t.Setenv("AWS_ENDPOINT_URL_S3", srv.URL)
	var stacks = map[string]bool{}
	spy := func(st *middleware.Stack) error {
		_, ok := st.Deserialize.Get(s3Check200Error)
		stacks[st.ID()] = ok
		return nil
	}
	c := S3(cfg, func(o *s3.Options) { o.APIOptions = append(o.APIOptions, spy) })
	ctx := context.Background()
	h, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("b"), Key: aws.String("k")})
	if err != nil || aws.ToString(h.ETag) != `"e"` {
		t.Fatalf("HEAD: %v %+v", err, h)
	}
	_, err = c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("b"), Key: aws.String("k"), CopySource: aws.String("b/k")})
	if err == nil {
		t.Error("CopyObject: an error sent with status 200 was taken for a success")
	}
	if has, ok := stacks["HeadObject"]; !ok || has {
		t.Errorf("HeadObject's stack: seen %v, has the 200-error check %v", ok, has)
	}
	if has := stacks["CopyObject"]; !has {
		t.Error("CopyObject's stack lost the 200-error check")
	}
}
