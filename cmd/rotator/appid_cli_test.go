package main

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/rotator-dev/rotator/internal/buildinfo"
	"github.com/rotator-dev/rotator/internal/testenv"
)

// agentRecorder is a reverse proxy in front of one server of the stack
// that records the User-Agent of every request.
type agentRecorder struct {
	srv    *httptest.Server
	mu     sync.Mutex
	agents []string
}

func newAgentRecorder(t *testing.T, target string) *agentRecorder {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	r := &agentRecorder{}
	proxy := httputil.NewSingleHostReverseProxy(u)
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.agents = append(r.agents, req.Method+" "+req.URL.Path+": "+req.Header.Get("User-Agent"))
		r.mu.Unlock()
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *agentRecorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.agents...)
}

// Every request rotator sends (S3, KMS, DynamoDB; plan, run, status,
// verify, ledger) names rotator and its version in its User-Agent, where
// CloudTrail shows it.
func TestCLIEveryAWSRequestCarriesTheAppID(t *testing.T) {
	testenv.Need(t, testenv.DynamoDB)
	f := newCLIFixture(t, 12)
	recs := map[string]*agentRecorder{}
	var env []string
	for _, v := range []string{testenv.EnvS3Endpoint, testenv.EnvKMSEndpoint, testenv.EnvDynamoDBEndpoint} {
		recs[v] = newAgentRecorder(t, os.Getenv(v))
		env = append(env, v+"="+recs[v].srv.URL)
	}
	table := "dynamodb://" + testenv.Name(t) + "?create=true"
	src, to, from := "s3://"+f.bucket, "kms:"+f.arnB, "kms:"+f.arnA
	for _, args := range [][]string{
		{"plan", "--source", src, "--to", to, "--from", from},
		{"run", "--source", src, "--to", to, "--from", from, "--ledger", table, "--run-id", "appid", "--no-progress"},
		{"status", "--run-id", "appid", "--ledger", table},
		{"ledger", "counts", "--ledger", table},
		{"verify", "--source", src, "--key", to, "--all"},
	} {
		c := f.cmd(args...)
		c.Env = append(c.Env, env...)
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("rotator %s: %v\n%s", args[0], err, out)
		}
	}
	f.opensUnder(t, f.arnB)
	app := "app/" + strings.ReplaceAll(buildinfo.AppID(), "/", "-")
	own := "rotator/" + buildinfo.Version()
	for v, r := range recs {
		agents := r.seen()
		if len(agents) == 0 {
			t.Errorf("%s: no request went through the recorder", v)
		}
		for _, a := range agents {
			if !strings.Contains(a, app) || !strings.Contains(a, own) {
				t.Errorf("%s: a request without %s and %s: %s", v, app, own, a)
				break
			}
		}
		t.Logf("%s: %d requests, e.g. %s", v, len(agents), agents[0])
	}
}
