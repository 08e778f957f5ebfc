// Package iamtrace records the IAM permissions the AWS requests of a
// process need, for tests that check a policy against what a run really
// does. A Proxy stands between the process and one local server (S3, KMS or
// DynamoDB): it forwards every request unchanged (the Host header too, so
// SigV4 signatures still verify) and records, per request, the operation
// and the actions it needs on which resources, as AWS authorizes it
// (iampolicy.Needs).
//
// Terms: a Need is one action on one resource, with the request context
// condition keys can test (s3:prefix for listings).
package iamtrace

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/rotator-dev/rotator/iampolicy"
)

// Proxy forwards to one server and records what each request needs.
type Proxy struct {
	URL     string
	service string
	arns    ARNs

	mu    sync.Mutex
	reqs  []Request
	srv   *httptest.Server
	fails []string
}

// ARNs say how to name resources that requests name without an ARN.
type ARNs struct {
	Partition, Region, Account string
}

// Request is one recorded request.
type Request struct {
	Operation string
	Status    int
	Needs     []iampolicy.Need
}

// Start starts a proxy for service ("s3", "kms" or "dynamodb") in front of
// target (an http:// base URL) and stops it when t ends.
func Start(t testing.TB, service, target string, arns ARNs) *Proxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatalf("iamtrace: target %q: %v", target, err)
	}
	p := &Proxy{service: service, arns: arns}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = r.In.Host // the signature covers it
		},
		ModifyResponse: p.record,
	}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if service != "s3" {
			// Keep the JSON request for record; S3 bodies are not needed.
			b, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(b))
			r = r.WithContext(context.WithValue(r.Context(), bodyKey{}, b))
		}
		rp.ServeHTTP(w, r)
	}))
	p.URL = p.srv.URL
	t.Cleanup(p.srv.Close)
	return p
}

// Requests returns what was recorded so far.
func (p *Proxy) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.reqs...)
}

// Unknown returns the requests the proxy could not map to IAM actions.
func (p *Proxy) Unknown() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.fails...)
}

// Reset forgets what was recorded.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reqs, p.fails = nil, nil
}

func (p *Proxy) record(resp *http.Response) error {
	r := resp.Request
	var reqBody, respBody []byte
	if p.service != "s3" {
		// KMS and DynamoDB: JSON requests and answers, small.
		reqBody = bodyOf(r)
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(b))
		respBody = b
	}
	var req Request
	var ok bool
	switch p.service {
	case "s3":
		req, ok = s3Request(r, p.arns)
	case "kms":
		req, ok = kmsRequest(r.Header.Get("X-Amz-Target"), reqBody, respBody, p.arns)
	case "dynamodb":
		req, ok = dynamoRequest(r.Header.Get("X-Amz-Target"), reqBody, p.arns)
	}
	req.Status = resp.StatusCode
	p.mu.Lock()
	defer p.mu.Unlock()
	if !ok {
		p.fails = append(p.fails, r.Method+" "+r.URL.String()+" "+r.Header.Get("X-Amz-Target"))
		return nil
	}
	p.reqs = append(p.reqs, req)
	return nil
}

type bodyKey struct{}

// bodyOf returns the request's body, which the proxy kept.
func bodyOf(r *http.Request) []byte {
	b, _ := r.Context().Value(bodyKey{}).([]byte)
	return b
}

func s3Request(r *http.Request, a ARNs) (Request, bool) {
	path := strings.TrimPrefix(r.URL.EscapedPath(), "/")
	bucket, key, _ := strings.Cut(path, "/")
	if k, err := url.PathUnescape(key); err == nil {
		key = k
	}
	q := r.URL.Query()
	copySource := r.Header.Get("X-Amz-Copy-Source")
	op := iampolicy.S3Request{
		Method: r.Method, Bucket: bucket, Key: key, Query: q, CopySource: copySource,
		TaggingDirective: r.Header.Get("X-Amz-Tagging-Directive"), Tagging: r.Header.Get("X-Amz-Tagging"),
		Retention: r.Header.Get("X-Amz-Object-Lock-Mode") != "", LegalHold: r.Header.Get("X-Amz-Object-Lock-Legal-Hold") != "",
	}
	name, needs := iampolicy.S3Needs(a.Partition, op)
	return Request{Operation: name, Needs: needs}, name != ""
}

func kmsRequest(target string, reqBody, respBody []byte, a ARNs) (Request, bool) {
	op, ok := strings.CutPrefix(target, "TrentService.")
	if !ok {
		return Request{}, false
	}
	var in, out struct {
		KeyId, SourceKeyId, DestinationKeyId string
		KeyMetadata                          struct{ Arn string }
	}
	_ = json.Unmarshal(reqBody, &in)
	_ = json.Unmarshal(respBody, &out)
	// The answer names the key by ARN; a refused request only by what the
	// caller sent.
	key := first(out.KeyMetadata.Arn, out.KeyId, in.KeyId)
	src := first(out.SourceKeyId, in.SourceKeyId)
	dst := first(out.KeyId, in.DestinationKeyId)
	needs := iampolicy.KMSNeeds(op, key, src, dst)
	return Request{Operation: op, Needs: needs}, needs != nil
}

func dynamoRequest(target string, reqBody []byte, a ARNs) (Request, bool) {
	op, ok := strings.CutPrefix(target, "DynamoDB_20120810.")
	if !ok {
		return Request{}, false
	}
	var in struct {
		TableName, IndexName string
		RequestItems         map[string]json.RawMessage
	}
	_ = json.Unmarshal(reqBody, &in)
	tables := []string{in.TableName}
	if in.TableName == "" {
		tables = nil
		for t := range in.RequestItems {
			tables = append(tables, t)
		}
	}
	var needs []iampolicy.Need
	for _, t := range tables {
		res := "arn:" + a.Partition + ":dynamodb:" + a.Region + ":" + a.Account + ":table/" + t
		if in.IndexName != "" {
			res += "/index/" + in.IndexName
		}
		needs = append(needs, iampolicy.Need{Action: "dynamodb:" + op, Resource: res})
	}
	return Request{Operation: op, Needs: needs}, len(needs) > 0
}

func first(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
