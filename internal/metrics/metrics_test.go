package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/rotator-dev/rotator/hsmpool"
	"github.com/rotator-dev/rotator/internal/awsx"
	"github.com/rotator-dev/rotator/pipeline"
	"github.com/rotator-dev/rotator/reencrypt"
)

// gather returns the text exposition of the named metrics of m.
func gather(t *testing.T, g prometheus.Gatherer, names ...string) string {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range fams {
		for _, n := range names {
			if mf.GetName() == n {
				if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return b.String()
}

func compare(t *testing.T, g prometheus.Gatherer, want string, names ...string) {
	t.Helper()
	if err := testutil.GatherAndCompare(g, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
}

// TestObjects: one count per outcome, by status, code and action; a code
// that is not shaped like one, or beyond maxCodes distinct ones, is
// "other", and so are unknown statuses and actions.
func TestObjects(t *testing.T) {
	m := New()
	out := func(s pipeline.Status, code, action string) {
		m.Outcome(pipeline.Outcome{Bucket: "secret-bucket", Key: "secret/key", Status: s, ErrorCode: code, Action: action,
			Message: "secret message", FromKey: "arn:aws:kms:secret"})
	}
	out(pipeline.StatusSucceeded, "", pipeline.ActionRewrap)
	out(pipeline.StatusSucceeded, "", pipeline.ActionRewrap)
	out(pipeline.StatusFailed, pipeline.CodeBadEnvelope, pipeline.ActionSkip)
	out(pipeline.StatusSkipped, pipeline.CodeAlreadyTarget, pipeline.ActionSkip)
	out(pipeline.StatusFailed, "could not read s3://secret-bucket/secret/key", pipeline.ActionRewrap)
	out(pipeline.Status("weird"), "", "frobnicate")
	compare(t, m.Gatherer(), `
# HELP rotator_objects_total Objects this process finished, by outcome: one per row of the completion report (status, code: its ErrorCode, action).
# TYPE rotator_objects_total counter
rotator_objects_total{action="rewrap",code="",status="succeeded"} 2
rotator_objects_total{action="skip",code="BadEnvelope",status="failed"} 1
rotator_objects_total{action="skip",code="AlreadyUnderTargetKey",status="skipped"} 1
rotator_objects_total{action="rewrap",code="other",status="failed"} 1
rotator_objects_total{action="other",code="",status="other"} 1
`, "rotator_objects_total")

	for i := range maxCodes + 10 {
		out(pipeline.StatusFailed, fmt.Sprintf("Code%d", i), pipeline.ActionRewrap)
	}
	if n := testutil.CollectAndCount(m.objects); n > maxCodes+5 {
		t.Errorf("%d series after %d distinct codes, want at most %d", n, maxCodes+10, maxCodes+5)
	}
	if text := gather(t, m.Gatherer(), "rotator_objects_total"); strings.Contains(text, "secret") {
		t.Errorf("a label carries the bucket, key, message or key id:\n%s", text)
	}
}

// TestAWSCalls: calls, attempts, throttles, errors by class and latency
// per service and operation.
func TestAWSCalls(t *testing.T) {
	m := New()
	m.ObserveCall(awsx.Call{Service: "s3", Operation: "HeadObject", Duration: 3 * time.Millisecond, Attempts: 1})
	m.ObserveCall(awsx.Call{Service: "s3", Operation: "HeadObject", Duration: 40 * time.Millisecond, Attempts: 3, Throttles: 2})
	m.ObserveCall(awsx.Call{Service: "kms", Operation: "ReEncrypt", Duration: 2 * time.Second, Attempts: 20, Throttles: 20, Class: awsx.ClassThrottling})
	m.ObserveCall(awsx.Call{Service: "dynamodb", Operation: "PutItem", Duration: time.Millisecond, Attempts: 1, Class: awsx.ClassPrecondition})
	compare(t, m.Gatherer(), `
# HELP rotator_aws_calls_total AWS API calls, retries counted once.
# TYPE rotator_aws_calls_total counter
rotator_aws_calls_total{operation="HeadObject",service="s3"} 2
rotator_aws_calls_total{operation="PutItem",service="dynamodb"} 1
rotator_aws_calls_total{operation="ReEncrypt",service="kms"} 1
# HELP rotator_aws_attempts_total Attempts of AWS API calls: calls plus retries.
# TYPE rotator_aws_attempts_total counter
rotator_aws_attempts_total{operation="HeadObject",service="s3"} 4
rotator_aws_attempts_total{operation="PutItem",service="dynamodb"} 1
rotator_aws_attempts_total{operation="ReEncrypt",service="kms"} 20
# HELP rotator_aws_throttles_total Attempts of AWS API calls the service throttled (each retried, or counted in an error of class throttling).
# TYPE rotator_aws_throttles_total counter
rotator_aws_throttles_total{operation="HeadObject",service="s3"} 2
rotator_aws_throttles_total{operation="PutItem",service="dynamodb"} 0
rotator_aws_throttles_total{operation="ReEncrypt",service="kms"} 20
# HELP rotator_aws_errors_total AWS API calls that failed after their retries, by error class (throttling, access_denied, not_found, precondition_failed, kms_key, invalid_request, server_error, network, canceled, other).
# TYPE rotator_aws_errors_total counter
rotator_aws_errors_total{class="precondition_failed",operation="PutItem",service="dynamodb"} 1
rotator_aws_errors_total{class="throttling",operation="ReEncrypt",service="kms"} 1
`, "rotator_aws_calls_total", "rotator_aws_attempts_total", "rotator_aws_throttles_total", "rotator_aws_errors_total")

	fams, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range fams {
		if mf.GetName() != "rotator_aws_call_duration_seconds" {
			continue
		}
		for _, s := range mf.GetMetric() {
			h := s.GetHistogram()
			if op := label(s, "operation"); op == "HeadObject" {
				if h.GetSampleCount() != 2 || h.GetSampleSum() < 0.042 || h.GetSampleSum() > 0.044 {
					t.Errorf("HeadObject latency: %d samples, sum %v", h.GetSampleCount(), h.GetSampleSum())
				}
				if b := h.GetBucket()[1]; b.GetUpperBound() != 0.0025 || b.GetCumulativeCount() != 0 {
					t.Errorf("bucket le=%v holds %d, want none", b.GetUpperBound(), b.GetCumulativeCount())
				}
				if b := h.GetBucket()[2]; b.GetUpperBound() != 0.005 || b.GetCumulativeCount() != 1 {
					t.Errorf("bucket le=%v holds %d, want 1", b.GetUpperBound(), b.GetCumulativeCount())
				}
			}
		}
	}

}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// TestRunStats: the run's live counters, read at each scrape.
func TestRunStats(t *testing.T) {
	m := New()
	var s pipeline.Stats
	m.WatchStats(&s)
	s.Listed.Store(10)
	s.Done.Store(4)
	s.Bytes.Store(4096)
	s.Unfinished.Store(1)
	names := []string{"rotator_run_objects_listed", "rotator_run_objects_done", "rotator_run_listed_bytes", "rotator_run_listing_done", "rotator_run_unfinished"}
	want := func(listed, done, listingDone, unfinished int) string {
		return fmt.Sprintf(`
# HELP rotator_run_objects_listed Objects the run's listing delivered so far.
# TYPE rotator_run_objects_listed gauge
rotator_run_objects_listed %d
# HELP rotator_run_objects_done Objects the run finished so far (report rows).
# TYPE rotator_run_objects_done gauge
rotator_run_objects_done %d
# HELP rotator_run_listed_bytes Size of the objects listed so far, where the source tells it.
# TYPE rotator_run_listed_bytes gauge
rotator_run_listed_bytes 4096
# HELP rotator_run_listing_done 1 once the listing has delivered every object, else 0.
# TYPE rotator_run_listing_done gauge
rotator_run_listing_done %d
# HELP rotator_run_unfinished Changes whose outcome is not known yet; at the end of the run, the intents still held in the ledger ('rotator resume' settles them).
# TYPE rotator_run_unfinished gauge
rotator_run_unfinished %d
`, listed, done, listingDone, unfinished)
	}
	compare(t, m.Gatherer(), want(10, 4, 0, 1), names...)
	s.Done.Store(10)
	s.ListingDone.Store(true)
	s.Unfinished.Store(0)
	compare(t, m.Gatherer(), want(10, 10, 1, 0), names...)
}

// TestWatch: a runner's outcomes are counted before its own OnOutcome
// sees them, its Stats are exported, and its re-encrypter counts bytes.
func TestWatch(t *testing.T) {
	m := New()
	var seen []pipeline.Outcome
	r := &pipeline.Runner{Core: &pipeline.Core{Reencrypter: fakeReencrypter{}}, OnOutcome: func(o pipeline.Outcome) { seen = append(seen, o) }}
	m.Watch(r)
	r.OnOutcome(pipeline.Outcome{Status: pipeline.StatusSucceeded, Action: pipeline.ActionReencrypt})
	if len(seen) != 1 || testutil.ToFloat64(m.objects.WithLabelValues("succeeded", "", "reencrypt")) != 1 {
		t.Errorf("outcome seen %d times by the runner's callback, counted %v", len(seen), testutil.ToFloat64(m.objects.WithLabelValues("succeeded", "", "reencrypt")))
	}
	if r.Stats == nil {
		t.Fatal("no Stats to watch")
	}
	if _, err := r.Core.Reencrypter.Write(context.Background(), reencrypt.Job{}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Core.Reencrypter.Write(context.Background(), reencrypt.Job{}, &reencrypt.Intent{}, nil); err == nil {
		t.Fatal("the failing write succeeded")
	}
	if got := testutil.ToFloat64(m.reencrypted); got != 1000 {
		t.Errorf("rotator_reencrypted_bytes_total %v, want 1000 (the failed write not counted)", got)
	}
	if r.Core.Reencrypter.PartSizeFor(1) != 42 {
		t.Error("the counting re-encrypter hides the engine's other methods")
	}

	// A rewrap core has no re-encrypter, and gets none.
	r2 := &pipeline.Runner{Core: &pipeline.Core{}, Stats: &pipeline.Stats{}}
	New().Watch(r2)
	if r2.Core.Reencrypter != nil || r2.OnOutcome == nil {
		t.Errorf("rewrap core: re-encrypter %v, OnOutcome set %v", r2.Core.Reencrypter, r2.OnOutcome != nil)
	}
}

// fakeReencrypter writes 1000 bytes, or fails when given an intent.
type fakeReencrypter struct{ pipeline.Reencrypter }

func (fakeReencrypter) Write(_ context.Context, _ reencrypt.Job, in *reencrypt.Intent, _ func(context.Context) error) (reencrypt.Result, error) {
	if in != nil {
		return reencrypt.Result{Bytes: 500}, errors.New("upload failed")
	}
	return reencrypt.Result{Bytes: 1000}, nil
}

func (fakeReencrypter) PartSizeFor(int64) int64 { return 42 }

// fakePool is an HSM pool's label and counters.
type fakePool struct {
	token string
	s     hsmpool.Stats
}

func (p fakePool) TokenLabel() string   { return p.token }
func (p fakePool) Stats() hsmpool.Stats { return p.s }

// TestHSM: pool state per token, pools of one token added up, read at
// each scrape.
func TestHSM(t *testing.T) {
	var mu sync.Mutex
	pools := []hsmPool{fakePool{"prod", hsmpool.Stats{Size: 16, Open: 4, InUse: 3, Waits: 7, WaitTime: 1500 * time.Millisecond, Timeouts: 1, Reopens: 2, Errors: 5}}}
	m := New()
	m.reg.MustRegister(&hsmCollector{pools: func() []hsmPool {
		mu.Lock()
		defer mu.Unlock()
		return pools
	}})
	names := []string{"rotator_hsm_sessions", "rotator_hsm_sessions_open", "rotator_hsm_sessions_in_use", "rotator_hsm_session_waits_total",
		"rotator_hsm_session_wait_seconds_total", "rotator_hsm_session_timeouts_total", "rotator_hsm_session_reopens_total", "rotator_hsm_errors_total"}
	text := func(size, open, inUse, waits int, waitSecs float64) string {
		return fmt.Sprintf(`
# HELP rotator_hsm_sessions HSM sessions the pool may hold (its budget, --hsm-sessions).
# TYPE rotator_hsm_sessions gauge
rotator_hsm_sessions{token="prod"} %d
# HELP rotator_hsm_sessions_open HSM sessions open now.
# TYPE rotator_hsm_sessions_open gauge
rotator_hsm_sessions_open{token="prod"} %d
# HELP rotator_hsm_sessions_in_use HSM sessions lent out to workers now.
# TYPE rotator_hsm_sessions_in_use gauge
rotator_hsm_sessions_in_use{token="prod"} %d
# HELP rotator_hsm_session_waits_total Session requests that found every session busy and waited.
# TYPE rotator_hsm_session_waits_total counter
rotator_hsm_session_waits_total{token="prod"} %d
# HELP rotator_hsm_session_wait_seconds_total Time session requests spent waiting for a free session.
# TYPE rotator_hsm_session_wait_seconds_total counter
rotator_hsm_session_wait_seconds_total{token="prod"} %v
# HELP rotator_hsm_session_timeouts_total Session requests that waited in vain (the pool was exhausted).
# TYPE rotator_hsm_session_timeouts_total counter
rotator_hsm_session_timeouts_total{token="prod"} 1
# HELP rotator_hsm_session_reopens_total Sessions opened to replace ones the HSM invalidated.
# TYPE rotator_hsm_session_reopens_total counter
rotator_hsm_session_reopens_total{token="prod"} 2
# HELP rotator_hsm_errors_total PKCS#11 calls that failed (recovered ones included; failed integrity checks not).
# TYPE rotator_hsm_errors_total counter
rotator_hsm_errors_total{token="prod"} 5
`, size, open, inUse, waits, waitSecs)
	}
	compare(t, m.Gatherer(), text(16, 4, 3, 7, 1.5), names...)

	// A second pool on the token opens during the run.
	mu.Lock()
	pools = append(pools, fakePool{"prod", hsmpool.Stats{Size: 4, Open: 1, InUse: 1, Waits: 1, WaitTime: 500 * time.Millisecond}})
	mu.Unlock()
	compare(t, m.Gatherer(), text(20, 5, 4, 8, 2), names...)

	// No pools (a KMS run): no series.
	if n := testutil.CollectAndCount(&hsmCollector{pools: func() []hsmPool { return nil }}); n != 0 {
		t.Errorf("%d HSM series without pools", n)
	}
}

// nilDeps stands for a run without HSM keys.
type nilDeps struct{}

func (nilDeps) HSMPools() []*hsmpool.Pool { return nil }

// TestRunInfoAndEnd: which run, when it started and how it ended; the end
// is recorded once.
func TestRunInfoAndEnd(t *testing.T) {
	m := New()
	m.WatchHSM(nilDeps{})
	start := time.Unix(1700000000, 0)
	m.Run("cmk-2026", pipeline.ModeRewrap, "2/4", start)
	m.End(3, start.Add(time.Minute))
	m.End(0, start.Add(time.Hour))
	compare(t, m.Gatherer(), `
# HELP rotator_run_info The run this process works for (always 1).
# TYPE rotator_run_info gauge
rotator_run_info{mode="rewrap",run_id="cmk-2026",shard="2/4"} 1
# HELP rotator_run_start_timestamp_seconds When this process started working for the run (Unix time).
# TYPE rotator_run_start_timestamp_seconds gauge
rotator_run_start_timestamp_seconds 1.7e+09
# HELP rotator_run_exit_code The exit code of the run's process (0 done, 3 per-object failures, 4 unfinished, 130 interrupted, ...), once it ended.
# TYPE rotator_run_exit_code gauge
rotator_run_exit_code 3
# HELP rotator_run_end_timestamp_seconds When the run's process ended (Unix time).
# TYPE rotator_run_end_timestamp_seconds gauge
rotator_run_end_timestamp_seconds 1.70000006e+09
`, "rotator_run_info", "rotator_run_start_timestamp_seconds", "rotator_run_exit_code", "rotator_run_end_timestamp_seconds")
}

// TestServe: /metrics answers in the text format with the run's and the
// runtime's metrics; a taken address fails at once with a hint; Close
// stops it.
func TestServe(t *testing.T) {
	m := New()
	m.ObserveCall(awsx.Call{Service: "s3", Operation: "HeadObject", Attempts: 1})
	s, err := Serve("127.0.0.1:0", m.Handler())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + s.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`rotator_aws_calls_total{operation="HeadObject",service="s3"} 1`, "go_goroutines", "process_start_time_seconds"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s:\n%s", want, body)
		}
	}
	if _, err := Serve(s.Addr(), m.Handler()); err == nil || !strings.Contains(err.Error(), "hint: choose a free port") {
		t.Errorf("second server on %s: %v", s.Addr(), err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + s.Addr() + "/metrics"); err == nil {
		t.Error("still serving after Close")
	}
	for _, bad := range []string{"9464", "localhost", "127.0.0.1:http", "127.0.0.1:70000"} {
		if err := CheckAddr(bad); err == nil {
			t.Errorf("CheckAddr(%q) accepted it", bad)
		}
	}
}

func TestParsePushURL(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Target
	}{
		{"http://pgw:9091", Target{URL: "http://pgw:9091", Job: "rotator"}},
		{"http://pgw:9091/", Target{URL: "http://pgw:9091", Job: "rotator"}},
		{"https://mon.example/pushgateway", Target{URL: "https://mon.example/pushgateway", Job: "rotator"}},
		{"http://pgw:9091/metrics/job/cmk-rotation", Target{URL: "http://pgw:9091", Job: "cmk-rotation"}},
		{"http://pgw:9091/prefix/metrics/job/j/team/storage/env/prod%2Feu/",
			Target{URL: "http://pgw:9091/prefix", Job: "j", Grouping: map[string]string{"team": "storage", "env": "prod/eu"}}},
	} {
		got, err := ParsePushURL(tc.in)
		if err != nil || got.URL != tc.want.URL || got.Job != tc.want.Job || fmt.Sprint(got.Grouping) != fmt.Sprint(tc.want.Grouping) {
			t.Errorf("ParsePushURL(%s) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"pgw:9091", "ftp://pgw", "http://", "http://pgw/metrics/job/", "http://pgw/metrics/job/j/l", "http://pgw?x=1",
		"http://pgw/metrics/job/j/status/x", "http://pgw/metrics/job/j/operation/x"} {
		if _, err := ParsePushURL(bad); err == nil {
			t.Errorf("ParsePushURL(%s) accepted it", bad)
		}
	}
}

// TestPush: a push replaces its group (PUT to /metrics/job/JOB/LABEL/VALUE)
// with the run's metrics in the protobuf format, without the runtime's;
// the URL's grouping wins over the extra labels; a refused push is an
// error.
func TestPush(t *testing.T) {
	type req struct {
		method, path, ctype string
		fams                []*dto.MetricFamily
	}
	var mu sync.Mutex
	var got []req
	fail := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dec := expfmt.NewDecoder(r.Body, expfmt.ResponseFormat(r.Header))
		var fams []*dto.MetricFamily
		for {
			var mf dto.MetricFamily
			if err := dec.Decode(&mf); err != nil {
				break
			}
			fams = append(fams, &mf)
		}
		mu.Lock()
		got = append(got, req{r.Method, r.URL.EscapedPath(), r.Header.Get("Content-Type"), fams})
		f := fail
		mu.Unlock()
		if f {
			http.Error(w, "push rejected: inconsistent labels", http.StatusBadRequest)
		}
	}))
	defer srv.Close()
	m := New()
	m.Outcome(pipeline.Outcome{Status: pipeline.StatusSucceeded, Action: pipeline.ActionRewrap})
	m.Run("r", pipeline.ModeRewrap, "9/10", time.Now())
	target, err := ParsePushURL(srv.URL + "/metrics/job/cmk/shard/9")
	if err != nil {
		t.Fatal(err)
	}
	if err := Push(context.Background(), target, m.Gatherer(), map[string]string{"shard": "1", "extra": "x"}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	r := got[0]
	fail = true
	mu.Unlock()
	if r.method != http.MethodPut || r.path != "/metrics/job/cmk/extra/x/shard/9" && r.path != "/metrics/job/cmk/shard/9/extra/x" {
		t.Errorf("push %s %s", r.method, r.path)
	}
	if !strings.HasPrefix(r.ctype, "application/vnd.google.protobuf") {
		t.Errorf("push content type %s", r.ctype)
	}
	names := map[string]bool{}
	for _, mf := range r.fams {
		names[mf.GetName()] = true
	}
	if !names["rotator_objects_total"] || names["go_goroutines"] {
		t.Errorf("pushed families %v: want the run's, not the runtime's", names)
	}
	for _, mf := range r.fams {
		for _, s := range mf.GetMetric() {
			if mf.GetName() == "rotator_run_info" && (label(s, "shard") != "" || label(s, "run_id") != "r") {
				t.Errorf("pushed rotator_run_info %v: the grouping's shard stands for its own", s.GetLabel())
			}
		}
	}
	if got := m.info.WithLabelValues("r", "rewrap", "9/10"); testutil.ToFloat64(got) != 1 {
		t.Error("the push changed the registry's rotator_run_info")
	}
	if err := Push(context.Background(), target, m.Gatherer(), nil); err == nil || !strings.Contains(err.Error(), "push metrics to "+srv.URL) {
		t.Errorf("refused push: %v", err)
	}
}

// BenchmarkObserveCall is the cost of counting one AWS call.
func BenchmarkObserveCall(b *testing.B) {
	m := New()
	c := awsx.Call{Service: "s3", Operation: "HeadObject", Duration: 12 * time.Millisecond, Attempts: 1}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.ObserveCall(c)
		}
	})
}
