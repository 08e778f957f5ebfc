package main

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rotator-dev/rotator/internal/hsmtest"
	"github.com/rotator-dev/rotator/internal/testenv"
)

// countingProxy forwards requests to a server of the stack and counts them
// by API operation: what the run sent, seen from outside the process.
type countingProxy struct {
	URL    string
	mu     sync.Mutex
	counts map[string]int
}

func newCountingProxy(t *testing.T, target string, op func(*http.Request) string) *countingProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &countingProxy{counts: map[string]int{}}
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(u)
		r.Out.Host = r.In.Host // signed by SigV4
	}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.counts[op(r)]++
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

func (p *countingProxy) snapshot() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.counts)
}

// targetOp names a KMS or DynamoDB request's operation (X-Amz-Target).
func targetOp(r *http.Request) string {
	t := r.Header.Get("X-Amz-Target")
	return t[strings.LastIndex(t, ".")+1:]
}

// s3Op names an S3 request's operation (path-style requests).
func s3Op(r *http.Request) string {
	q := r.URL.Query()
	object := strings.Count(strings.Trim(r.URL.Path, "/"), "/") > 0
	has := func(k string) bool { _, ok := q[k]; return ok }
	copySource := r.Header.Get("X-Amz-Copy-Source") != ""
	switch r.Method {
	case http.MethodHead:
		if object {
			return "HeadObject"
		}
		return "HeadBucket"
	case http.MethodGet:
		switch {
		case q.Get("list-type") == "2":
			return "ListObjectsV2"
		case has("versions"):
			return "ListObjectVersions"
		case has("uploads"):
			return "ListMultipartUploads"
		case has("acl"):
			return "GetObjectAcl"
		case has("tagging"):
			return "GetObjectTagging"
		case has("uploadId"):
			return "ListParts"
		case object:
			return "GetObject"
		}
	case http.MethodPut:
		switch {
		case has("partNumber") && copySource:
			return "UploadPartCopy"
		case has("partNumber"):
			return "UploadPart"
		case has("tagging"):
			return "PutObjectTagging"
		case copySource:
			return "CopyObject"
		case object:
			return "PutObject"
		}
	case http.MethodPost:
		switch {
		case has("uploads"):
			return "CreateMultipartUpload"
		case has("uploadId"):
			return "CompleteMultipartUpload"
		case has("delete"):
			return "DeleteObjects"
		}
	case http.MethodDelete:
		if has("uploadId") {
			return "AbortMultipartUpload"
		}
		return "DeleteObject"
	}
	return "unknown " + r.Method + " " + r.URL.RawQuery
}

// push is one request a fake Pushgateway received.
type push struct {
	method, path, contentType string
	families                  map[string]*dto.MetricFamily
	err                       error
}

// fakePushgateway answers pushes as a Pushgateway does (200 to a PUT of
// a group) and keeps them.
func fakePushgateway(t *testing.T) (string, func() []push) {
	t.Helper()
	var mu sync.Mutex
	var pushes []push
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fams, err := decodeFamilies(r.Body, r.Header)
		mu.Lock()
		pushes = append(pushes, push{method: r.Method, path: r.URL.EscapedPath(), contentType: r.Header.Get("Content-Type"), families: fams, err: err})
		mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() []push {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(pushes)
	}
}

// decodeFamilies reads metrics in the format h names (text or protobuf).
func decodeFamilies(r io.Reader, h http.Header) (map[string]*dto.MetricFamily, error) {
	dec := expfmt.NewDecoder(r, expfmt.ResponseFormat(h))
	fams := map[string]*dto.MetricFamily{}
	for {
		var mf dto.MetricFamily
		if err := dec.Decode(&mf); errors.Is(err, io.EOF) {
			return fams, nil
		} else if err != nil {
			return nil, err
		}
		fams[mf.GetName()] = &mf
	}
}

// scrape reads /metrics; it also returns the raw text.
func scrape(t *testing.T, addr string) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %d %v", resp.StatusCode, err)
	}
	fams, err := decodeFamilies(bytes.NewReader(body), resp.Header)
	if err != nil {
		t.Fatalf("scrape: %v\n%s", err, body)
	}
	return fams, string(body)
}

// series sums the values of a family by the values of the labels named
// (a counter, gauge or histogram's sample count).
func series(fams map[string]*dto.MetricFamily, name string, by ...string) map[string]float64 {
	out := map[string]float64{}
	mf := fams[name]
	if mf == nil {
		return out
	}
	for _, m := range mf.GetMetric() {
		var key []string
		for _, b := range by {
			v := ""
			for _, lp := range m.GetLabel() {
				if lp.GetName() == b {
					v = lp.GetValue()
				}
			}
			key = append(key, v)
		}
		var v float64
		switch {
		case m.Counter != nil:
			v = m.GetCounter().GetValue()
		case m.Gauge != nil:
			v = m.GetGauge().GetValue()
		case m.Histogram != nil:
			v = float64(m.GetHistogram().GetSampleCount())
		case m.Untyped != nil:
			v = m.GetUntyped().GetValue()
		}
		out[strings.Join(key, " ")] += v
	}
	return out
}

func total(m map[string]float64) float64 {
	var s float64
	for _, v := range m {
		s += v
	}
	return s
}

// labelValues lists every label value of fams.
func labelValues(fams map[string]*dto.MetricFamily) []string {
	var vs []string
	for _, mf := range fams {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				vs = append(vs, lp.GetName()+"="+lp.GetValue())
			}
		}
	}
	return vs
}

// reportCounts counts a report's rows by "status code action", and
// returns the rows.
func reportCounts(t *testing.T, path string) (map[string]float64, [][]string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	c := map[string]float64{}
	for _, r := range rows[1:] { // Bucket,Key,VersionId,Status,ErrorCode,Message,Action,...
		c[r[3]+" "+r[4]+" "+r[6]]++
	}
	return c, rows[1:]
}

// metricsAddr starts c and returns the address its metrics are served on,
// read from its stderr, and its whole output so far.
func metricsAddr(t *testing.T, c *exec.Cmd) (string, func() string) {
	t.Helper()
	var mu sync.Mutex
	var out bytes.Buffer
	c.Stdout = &lockedWriter{mu: &mu, w: &out}
	stderr, err := c.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			mu.Lock()
			out.WriteString(line + "\n")
			mu.Unlock()
			if a, ok := strings.CutPrefix(line, "rotator: metrics on http://"); ok {
				addr <- strings.TrimSuffix(a, "/metrics")
			}
		}
	}()
	output := func() string {
		mu.Lock()
		defer mu.Unlock()
		return out.String()
	}
	select {
	case a := <-addr:
		return a, output
	case <-time.After(30 * time.Second):
		_ = c.Process.Kill()
		t.Fatalf("no metrics address printed:\n%s", output())
	}
	return "", nil
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestCLIMetricsAddUpToTheReport scrapes /metrics in the middle of a run
// slowed by --s3-rps, and takes the run's last values from its push to a
// (fake) Pushgateway: objects by status, code and action are the report's
// rows; AWS attempts per operation are the requests the servers got
// (counted by proxies in front of them); no label carries a bucket, key
// or key id.
func TestCLIMetricsAddUpToTheReport(t *testing.T) {
	testenv.Need(t, testenv.DynamoDB)
	f := newCLIFixture(t, 60)
	bad := "corrupt/object"
	if _, err := f.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &f.bucket, Key: &bad, Body: strings.NewReader("x"),
		Metadata: map[string]string{"x-amz-key-v2": "AAAA", "x-amz-iv": "short", "x-amz-cek-alg": "AES/GCM/NoPadding",
			"x-amz-wrap-alg": "kms+context", "x-amz-matdesc": "{}"}}); err != nil {
		t.Fatal(err)
	}
	listed := len(f.objs) + 1
	s3p := newCountingProxy(t, os.Getenv(testenv.EnvS3Endpoint), s3Op)
	kmsp := newCountingProxy(t, os.Getenv(testenv.EnvKMSEndpoint), targetOp)
	ddbp := newCountingProxy(t, os.Getenv(testenv.EnvDynamoDBEndpoint), targetOp)
	pgw, pushes := fakePushgateway(t)
	table := "dynamodb://" + testenv.Name(t) + "?create=true"

	c := f.cmd("run", "--source", "s3://"+f.bucket, "--to", "kms:"+f.arnB, "--ledger", table, "--run-id", "metrics",
		"--concurrency", "4", "--s3-rps", "60", "--report", "report.csv", "--no-progress",
		"--metrics-addr", "127.0.0.1:0", "--metrics-push", pgw+"/metrics/job/rotator-test/team/storage")
	c.Env = append(c.Env, testenv.EnvS3Endpoint+"="+s3p.URL, testenv.EnvKMSEndpoint+"="+kmsp.URL,
		testenv.EnvDynamoDBEndpoint+"="+ddbp.URL)
	addr, output := metricsAddr(t, c)
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("metrics served on %s, want 127.0.0.1", addr)
	}

	// Mid-run: some objects done, not all; the counts never go back.
	var mid map[string]*dto.MetricFamily
	var prevDone, prevCalls float64
	scrapes := 0
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		fams, text := scrape(t, addr)
		done := total(series(fams, "rotator_run_objects_done"))
		objects := total(series(fams, "rotator_objects_total"))
		calls := total(series(fams, "rotator_aws_calls_total"))
		if done < prevDone || calls < prevCalls {
			t.Errorf("mid-run counts went back: done %v -> %v, calls %v -> %v", prevDone, done, prevCalls, calls)
		}
		prevDone, prevCalls = done, calls
		if objects > total(series(fams, "rotator_run_objects_listed")) {
			t.Errorf("%v objects finished but %v listed", objects, total(series(fams, "rotator_run_objects_listed")))
		}
		if strings.Contains(text, f.bucket) {
			t.Errorf("a scrape names the bucket:\n%s", text)
		}
		scrapes++
		if done >= 10 && done < float64(listed)-10 {
			mid = fams
			break
		}
	}
	if mid == nil {
		t.Fatalf("no scrape in the middle of the run after %d scrapes:\n%s", scrapes, output())
	}
	if v := series(mid, "rotator_run_info", "run_id", "mode"); v["metrics rewrap"] != 1 {
		t.Errorf("mid-run rotator_run_info %v", v)
	}
	if v := series(mid, "rotator_aws_calls_total", "service", "operation"); v["s3 HeadObject"] == 0 || v["kms ReEncrypt"] == 0 || v["s3 ListObjectsV2"] == 0 {
		t.Errorf("mid-run calls %v: want HEADs, ReEncrypts and a listing", v)
	}
	if v := series(mid, "rotator_run_listing_done"); total(v) != 0 && total(v) != 1 {
		t.Errorf("rotator_run_listing_done %v", v)
	}
	if _, ok := mid["rotator_run_exit_code"]; ok {
		t.Error("an exit code before the run ended")
	}
	if _, ok := mid["go_goroutines"]; !ok {
		t.Error("/metrics lacks the Go runtime metrics")
	}

	err := c.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitPartial {
		t.Fatalf("exit %v, want %d (one corrupt object):\n%s", err, exitPartial, output())
	}

	// The end, as pushed.
	ps := pushes()
	if len(ps) != 1 {
		t.Fatalf("%d pushes, want 1: %+v", len(ps), ps)
	}
	p := ps[0]
	if p.err != nil || p.method != http.MethodPut || p.path != "/metrics/job/rotator-test/team/storage" ||
		!strings.HasPrefix(p.contentType, "application/vnd.google.protobuf") {
		t.Fatalf("push %s %s (%s): %v", p.method, p.path, p.contentType, p.err)
	}
	end := p.families
	if _, ok := end["go_goroutines"]; ok {
		t.Error("the push carries the process's Go runtime metrics")
	}
	report, rows := reportCounts(t, filepath.Join(f.dir, "report.csv"))
	if len(rows) != listed {
		t.Fatalf("report has %d rows, want %d", len(rows), listed)
	}
	objects := series(end, "rotator_objects_total", "status", "code", "action")
	if !maps.Equal(objects, report) {
		t.Errorf("rotator_objects_total by status, code and action:\n%v\nthe report's rows:\n%v", objects, report)
	}
	if objects["failed BadEnvelope skip"] != 1 || objects["succeeded  rewrap"] != float64(len(f.objs)) {
		t.Errorf("objects %v: want %d rewrapped and one BadEnvelope", objects, len(f.objs))
	}
	for name, want := range map[string]float64{
		"rotator_run_objects_done": float64(listed), "rotator_run_objects_listed": float64(listed), "rotator_run_listing_done": 1,
		"rotator_run_unfinished": 0, "rotator_run_exit_code": exitPartial, "rotator_reencrypted_bytes_total": 0,
	} {
		if got, ok := series(end, name)[""]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
		}
	}

	// AWS calls: S3 and KMS attempts are the requests the servers got (the
	// run sent none of these before its metrics started but DescribeKey);
	// the ledger's calls before the run (its table, the run record) are
	// not counted.
	attempts := series(end, "rotator_aws_attempts_total", "service", "operation")
	calls := series(end, "rotator_aws_calls_total", "service", "operation")
	latency := series(end, "rotator_aws_call_duration_seconds", "service", "operation")
	sent := map[string]float64{}
	for op, n := range s3p.snapshot() {
		sent["s3 "+op] = float64(n)
	}
	for op, n := range kmsp.snapshot() {
		if op != "DescribeKey" {
			sent["kms "+op] = float64(n)
		}
	}
	ddbSent := ddbp.snapshot()
	for k, n := range attempts {
		if strings.HasPrefix(k, "dynamodb ") {
			if op := strings.TrimPrefix(k, "dynamodb "); n > float64(ddbSent[op]) {
				t.Errorf("%s: %v attempts counted, %d requests sent", k, n, ddbSent[op])
			}
			delete(attempts, k)
		}
	}
	if !maps.Equal(attempts, sent) {
		t.Errorf("attempts per operation:\n%v\nrequests the servers got:\n%v", attempts, sent)
	}
	for k, n := range calls {
		if n == 0 || n > attempts[k] && !strings.HasPrefix(k, "dynamodb ") || latency[k] != n {
			t.Errorf("%s: %v calls, %v attempts, %v latency samples", k, n, attempts[k], latency[k])
		}
	}
	if calls["kms ReEncrypt"] != float64(len(f.objs)) {
		t.Errorf("%v ReEncrypt calls for %d rewraps", calls["kms ReEncrypt"], len(f.objs))
	}
	if calls["s3 HeadObject"] < float64(listed) {
		t.Errorf("%v HeadObject calls for %d objects", calls["s3 HeadObject"], listed)
	}
	writes := calls["s3 CopyObject"] + calls["s3 PutObject"]
	if writes != float64(len(f.objs)) {
		t.Errorf("%v writes (CopyObject %v, PutObject %v) for %d rewraps", writes, calls["s3 CopyObject"], calls["s3 PutObject"], len(f.objs))
	}
	if total(series(end, "rotator_aws_calls_total", "service")) == 0 || series(end, "rotator_aws_calls_total", "service")["dynamodb"] == 0 {
		t.Errorf("no DynamoDB calls counted: %v", series(end, "rotator_aws_calls_total", "service"))
	}
	if e := series(end, "rotator_aws_errors_total", "service", "class"); e["kms kms_key"]+e["kms access_denied"] != 0 {
		t.Errorf("KMS errors %v in a run without any", e)
	}

	// No label carries the bucket, a key or a key id.
	for _, v := range append(labelValues(end), labelValues(mid)...) {
		if strings.Contains(v, f.bucket) || strings.Contains(v, "obj-") || strings.Contains(v, "corrupt") || strings.Contains(v, "arn:") {
			t.Errorf("label %s names a bucket, key or key id", v)
		}
	}
	t.Logf("%d scrapes before the middle of the run; attempts %v", scrapes, attempts)
}

// TestCLIMetricsReencryptedBytes: a re-encryption run counts the bytes it
// wrote, and a push that fails leaves the run's exit code alone.
func TestCLIMetricsReencryptedBytes(t *testing.T) {
	f := newCLIFixture(t, 8)
	pgw, pushes := fakePushgateway(t)
	code, out := f.rotator(t, "run", "--mode", "reencrypt", "--source", "s3://"+f.bucket, "--from", "kms:"+f.arnA,
		"--to", "kms:"+f.arnB, "--ledger", filepath.Join(f.dir, "l.db"), "--run-id", "bytes", "--no-progress",
		"--metrics-push", pgw)
	if code != exitOK {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	ps := pushes()
	if len(ps) != 1 || ps[0].path != "/metrics/job/rotator" {
		t.Fatalf("pushes %+v, want one to /metrics/job/rotator", ps)
	}
	var want float64
	for _, o := range f.objs {
		want += float64(o.Size + 16) // the content and its GCM tag
	}
	if got := series(ps[0].families, "rotator_reencrypted_bytes_total")[""]; got != want {
		t.Errorf("rotator_reencrypted_bytes_total %v, want %v", got, want)
	}
	if got := series(ps[0].families, "rotator_objects_total", "status", "action")["succeeded reencrypt"]; got != float64(len(f.objs)) {
		t.Errorf("%v objects re-encrypted, want %d", got, len(f.objs))
	}

	// A Pushgateway that is down: a warning, and the run's exit code.
	code, out = f.rotator(t, "run", "--source", "s3://"+f.bucket, "--to", "kms:"+f.arnB, "--ledger", filepath.Join(f.dir, "l.db"),
		"--run-id", "nopush", "--no-progress", "--metrics-push", "http://127.0.0.1:1")
	if code != exitOK || !strings.Contains(out, "warning: push metrics to http://127.0.0.1:1") {
		t.Errorf("run with an unreachable Pushgateway: exit %d:\n%s", code, out)
	}
}

// TestCLIMetricsFlags: bad values are usage errors before anything runs,
// and a taken port stops the run before it starts.
func TestCLIMetricsFlags(t *testing.T) {
	for _, tc := range []struct{ flag, value, want string }{
		{"--metrics-addr", "9464", "not HOST:PORT"},
		{"--metrics-addr", "127.0.0.1:http", "not a number"},
		{"--metrics-push", "pushgateway:9091", "not a Pushgateway URL"},
		{"--metrics-push", "http://pgw:9091/metrics/job/", "the group is"},
		{"--metrics-push", "http://pgw:9091/metrics/job/j/label", "the group is"},
	} {
		var out, errb bytes.Buffer
		args := []string{"run", "--source", "s3://b", "--to", "kms:alias/x", tc.flag, tc.value}
		if code := run(args, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%s %s: exit %d, want %d with %q:\n%s", tc.flag, tc.value, code, exitUsage, tc.want, errb.String())
		}
	}
	f := newCLIFixture(t, 1)
	ln := httptest.NewServer(http.NotFoundHandler())
	defer ln.Close()
	taken := strings.TrimPrefix(ln.URL, "http://")
	code, out := f.rotator(t, "run", "--source", "s3://"+f.bucket, "--to", "kms:"+f.arnB, "--ledger", filepath.Join(f.dir, "l.db"),
		"--run-id", "taken", "--no-progress", "--metrics-addr", taken)
	if code != exitFatal || !strings.Contains(out, "--metrics-addr "+taken) || !strings.Contains(out, "hint: choose a free port") {
		t.Errorf("metrics port taken: exit %d:\n%s", code, out)
	}
	if n := f.events(t, filepath.Join(f.dir, "l.db")); n != 0 {
		t.Errorf("the run changed %d objects without its metrics", n)
	}
}

// TestCLIMetricsRealPushgateway: the Prometheus Pushgateway itself takes
// the pushes of two shards of a run as two groups (shard="0", shard="1")
// that add up to the reports, and a later run of one shard replaces its
// group only.
func TestCLIMetricsRealPushgateway(t *testing.T) {
	pgw := testenv.StartPushgateway(t)
	f := newCLIFixture(t, 24)
	ledgerPath := filepath.Join(f.dir, "l.db")
	target := pgw + "/metrics/job/rotator-it"
	shard := func(i int, runID string) {
		t.Helper()
		code, out := f.rotator(t, "run", "--source", "s3://"+f.bucket, "--to", "kms:"+f.arnB, "--ledger", ledgerPath,
			"--run-id", runID, "--shard", fmt.Sprintf("%d/2", i), "--report", runID+".csv", "--no-progress", "--metrics-push", target)
		if code != exitOK || strings.Contains(out, "warning") {
			t.Fatalf("shard %d: exit %d:\n%s", i, code, out)
		}
	}
	gateway := func() map[string]*dto.MetricFamily {
		t.Helper()
		fams, _ := scrape(t, strings.TrimPrefix(pgw, "http://"))
		return fams
	}
	shard(0, "s0")
	shard(1, "s1")
	fams := gateway()
	r0, _ := reportCounts(t, filepath.Join(f.dir, "s0.csv"))
	r1, _ := reportCounts(t, filepath.Join(f.dir, "s1.csv"))
	byShard := series(fams, "rotator_objects_total", "job", "shard", "status", "code", "action")
	for i, r := range []map[string]float64{r0, r1} {
		for k, n := range r {
			if got := byShard[fmt.Sprintf("rotator-it %d %s", i, k)]; got != n {
				t.Errorf("shard %d: %s: %v in the Pushgateway, %v in the report", i, k, got, n)
			}
		}
	}
	if got := total(series(fams, "rotator_objects_total")); got != float64(len(f.objs)) {
		t.Errorf("the shards' groups hold %v objects, want %d", got, len(f.objs))
	}
	if pt := series(fams, "push_time_seconds", "job", "shard"); pt["rotator-it 0"] == 0 || pt["rotator-it 1"] == 0 {
		t.Errorf("push times %v, want one per shard", pt)
	}
	if ec := series(fams, "rotator_run_exit_code", "shard"); len(ec) != 2 || ec["0"] != 0 || ec["1"] != 0 {
		t.Errorf("exit codes %v", ec)
	}

	// Shard 0 again: nothing left to do. Its group is replaced, shard 1's
	// kept.
	shard(0, "s0-again")
	fams = gateway()
	after := series(fams, "rotator_objects_total", "shard", "status")
	if after["0 succeeded"] != 0 || after["0 skipped"] != r0["succeeded  rewrap"] || after["1 succeeded"] != r1["succeeded  rewrap"] {
		t.Errorf("after shard 0 ran again: %v (shard 0 rewrapped %v, shard 1 %v)", after, r0["succeeded  rewrap"], r1["succeeded  rewrap"])
	}
	if info := series(fams, "rotator_run_info", "shard", "run_id"); info["0 s0-again"] != 1 || info["1 s1"] != 1 || len(info) != 2 {
		t.Errorf("rotator_run_info %v", info)
	}
}

// TestCLIMetricsHSM: a migration to an HSM key exports its session pool
// (budget, sessions open and in use, waits) under the token's label, and
// counts the KMS unwraps it made.
func TestCLIMetricsHSM(t *testing.T) {
	testenv.Need(t, testenv.PKCS11)
	f := newCLIFixture(t, 20)
	to := newCLIHSMKey(t)
	pgw, pushes := fakePushgateway(t)
	code, out := f.rotator(t, "run", "--source", "s3://"+f.bucket, "--from", "kms:"+f.arnA, "--to", to,
		"--ledger", filepath.Join(f.dir, "l.db"), "--run-id", "hsm", "--no-progress", "--hsm-sessions", "2", "--concurrency", "8",
		"--metrics-push", pgw)
	if code != exitOK {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	ps := pushes()
	if len(ps) != 1 {
		t.Fatalf("%d pushes", len(ps))
	}
	end := ps[0].families
	token := os.Getenv(testenv.EnvPKCS11Token)
	for name, want := range map[string]float64{"rotator_hsm_sessions": 2, "rotator_hsm_sessions_in_use": 0, "rotator_hsm_session_timeouts_total": 0} {
		if got, ok := series(end, name, "token")[token]; !ok || got != want {
			t.Errorf("%s{token=%q} = %v (present %v), want %v", name, token, got, ok, want)
		}
	}
	if open := series(end, "rotator_hsm_sessions_open", "token")[token]; open < 1 || open > 2 {
		t.Errorf("%v sessions open, want 1 or 2", open)
	}
	if _, ok := series(end, "rotator_hsm_session_waits_total", "token")[token]; !ok {
		t.Error("no rotator_hsm_session_waits_total")
	}
	if got := series(end, "rotator_aws_calls_total", "service", "operation")["kms Decrypt"]; got != float64(len(f.objs)) {
		t.Errorf("%v KMS Decrypt calls for %d objects moved to the HSM", got, len(f.objs))
	}
	t.Logf("HSM session waits: %v, waited %vs", series(end, "rotator_hsm_session_waits_total", "token")[token],
		series(end, "rotator_hsm_session_wait_seconds_total", "token")[token])
}

// newCLIHSMKey creates an AES key on the stack's SoftHSM token and returns
// its spec (module and PIN come from the environment).
func newCLIHSMKey(t *testing.T) string {
	t.Helper()
	spec, _ := hsmtest.Key(t, "cli-")
	return spec
}

// TestCLIMetricsInterruptedAndResumed: an interrupted run pushes exit code
// 130; its resume counts its own rows in rotator_objects_total while the
// rotator_run_* gauges carry the whole run's totals.
func TestCLIMetricsInterruptedAndResumed(t *testing.T) {
	f := newCLIFixture(t, 80)
	pgw, pushes := fakePushgateway(t)
	ledgerPath := filepath.Join(f.dir, "l.db")
	c := f.cmd("run", "--source", "s3://"+f.bucket, "--to", "kms:"+f.arnB, "--ledger", ledgerPath, "--run-id", "int",
		"--s3-rps", "80", "--concurrency", "4", "--report", "int.csv", "--no-progress", "--metrics-addr", "127.0.0.1:0", "--metrics-push", pgw)
	addr, output := metricsAddr(t, c)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		fams, _ := scrape(t, addr)
		if total(series(fams, "rotator_run_objects_done")) >= 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the run did not get going:\n%s", output())
		}
	}
	_ = c.Process.Signal(os.Interrupt)
	var ee *exec.ExitError
	if err := c.Wait(); !errors.As(err, &ee) || ee.ExitCode() != exitInterrupted {
		t.Fatalf("exit %v, want %d:\n%s", err, exitInterrupted, output())
	}
	_, first := reportCounts(t, filepath.Join(f.dir, "int.csv"))
	if len(first) == 0 || len(first) >= len(f.objs) {
		t.Fatalf("the interrupt left %d of %d objects done", len(first), len(f.objs))
	}
	ps := pushes()
	if len(ps) != 1 || series(ps[0].families, "rotator_run_exit_code")[""] != exitInterrupted {
		t.Fatalf("pushes after the interrupt: %d, exit code %v", len(ps), series(ps[0].families, "rotator_run_exit_code"))
	}
	if got := total(series(ps[0].families, "rotator_objects_total")); got != float64(len(first)) {
		t.Errorf("interrupted run: %v objects counted, %d report rows", got, len(first))
	}

	code, out := f.rotator(t, "resume", "--run-id", "int", "--ledger", ledgerPath, "--report", "int.csv", "--no-progress", "--metrics-push", pgw)
	if code != exitOK {
		t.Fatalf("resume: exit %d:\n%s", code, out)
	}
	_, all := reportCounts(t, filepath.Join(f.dir, "int.csv"))
	ps = pushes()
	end := ps[len(ps)-1].families
	if got := total(series(end, "rotator_objects_total")); got != float64(len(all)-len(first)) {
		t.Errorf("resume: %v objects counted, %d rows appended", got, len(all)-len(first))
	}
	for name, want := range map[string]float64{"rotator_run_objects_done": float64(len(f.objs)), "rotator_run_exit_code": 0, "rotator_run_unfinished": 0} {
		if got := series(end, name)[""]; got != want {
			t.Errorf("resume: %s = %v, want %v", name, got, want)
		}
	}
	f.exactlyOnce(t, ledgerPath, "int")
}
