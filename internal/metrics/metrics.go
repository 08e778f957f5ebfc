package metrics

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rotator-dev/rotator/internal/awsx"
	"github.com/rotator-dev/rotator/pipeline"
	"github.com/rotator-dev/rotator/reencrypt"
)

// Metrics are one run's metrics. Make them with New; they are safe for
// concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	objects *prometheus.CounterVec
	codes   labelSet

	calls, attempts, throttles *prometheus.CounterVec
	errors                     *prometheus.CounterVec
	latency                    *prometheus.HistogramVec

	ops sync.Map // opKey -> *opMetrics

	reencrypted prometheus.Counter

	info    *prometheus.GaugeVec
	started prometheus.Gauge

	endOnce sync.Once
}

var _ awsx.Observer = (*Metrics)(nil)

// LatencyBuckets are the upper bounds, in seconds, of the AWS call latency
// histogram: from a millisecond to a minute of retries.
var LatencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// New returns the metrics of a run, every counter at zero.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), codes: labelSet{max: maxCodes}}
	aws := []string{"service", "operation"}
	m.objects = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rotator_objects_total",
		Help: "Objects this process finished, by outcome: one per row of the completion report (status, code: its ErrorCode, action)."},
		[]string{"status", "code", "action"})
	m.calls = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rotator_aws_calls_total",
		Help: "AWS API calls, retries counted once."}, aws)
	m.attempts = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rotator_aws_attempts_total",
		Help: "Attempts of AWS API calls: calls plus retries."}, aws)
	m.throttles = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rotator_aws_throttles_total",
		Help: "Attempts of AWS API calls the service throttled (each retried, or counted in an error of class throttling)."}, aws)
	m.errors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rotator_aws_errors_total",
		Help: "AWS API calls that failed after their retries, by error class (throttling, access_denied, not_found, precondition_failed, kms_key, invalid_request, server_error, network, canceled, other)."},
		append(aws, "class"))
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "rotator_aws_call_duration_seconds",
		Help: "Latency of AWS API calls, from the call to its result: retries, back-off and pacing waits included.", Buckets: LatencyBuckets}, aws)
	m.reencrypted = prometheus.NewCounter(prometheus.CounterOpts{Name: "rotator_reencrypted_bytes_total",
		Help: "Bytes of re-encrypted content written (the size of the new objects whose content was written)."})
	m.info = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "rotator_run_info",
		Help: "The run this process works for (always 1)."}, []string{"run_id", "mode", "shard"})
	m.started = prometheus.NewGauge(prometheus.GaugeOpts{Name: "rotator_run_start_timestamp_seconds",
		Help: "When this process started working for the run (Unix time)."})
	m.reg.MustRegister(m.objects, m.calls, m.attempts, m.throttles, m.errors, m.latency, m.reencrypted, m.info, m.started)
	return m
}

// Gatherer returns the run's metrics, without the process and Go runtime
// metrics Handler adds: what a push sends.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// Handler serves the run's metrics and the process and Go runtime metrics
// in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	rt := prometheus.NewRegistry()
	rt.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(prometheus.Gatherers{m.reg, rt}, promhttp.HandlerOpts{})
}

// Run records which run the metrics are for (rotator_run_info) and when it
// started.
func (m *Metrics) Run(runID string, mode pipeline.Mode, shard string, start time.Time) {
	m.info.WithLabelValues(runID, string(mode), shard).Set(1)
	m.started.Set(float64(start.UnixNano()) / 1e9)
}

// End records how the run ended: its exit code (rotator_run_exit_code)
// and when (rotator_run_end_timestamp_seconds). Only the first call
// counts.
func (m *Metrics) End(exitCode int, at time.Time) {
	m.endOnce.Do(func() {
		code := prometheus.NewGauge(prometheus.GaugeOpts{Name: "rotator_run_exit_code",
			Help: "The exit code of the run's process (0 done, 3 per-object failures, 4 unfinished, 130 interrupted, ...), once it ended."})
		end := prometheus.NewGauge(prometheus.GaugeOpts{Name: "rotator_run_end_timestamp_seconds",
			Help: "When the run's process ended (Unix time)."})
		code.Set(float64(exitCode))
		end.Set(float64(at.UnixNano()) / 1e9)
		m.reg.MustRegister(code, end)
	})
}

// opMetrics are the series of one service and operation.
type opMetrics struct {
	calls, attempts, throttles prometheus.Counter
	latency                    prometheus.Observer
}

type opKey struct{ service, operation string }

// op returns the series of a service and operation, made once (every
// series present from the first call: a rate over a throttle count of 0
// is 0, not absent).
func (m *Metrics) op(service, operation string) *opMetrics {
	k := opKey{service, operation}
	if o, ok := m.ops.Load(k); ok {
		return o.(*opMetrics)
	}
	o, _ := m.ops.LoadOrStore(k, &opMetrics{
		calls:     m.calls.WithLabelValues(service, operation),
		attempts:  m.attempts.WithLabelValues(service, operation),
		throttles: m.throttles.WithLabelValues(service, operation),
		latency:   m.latency.WithLabelValues(service, operation),
	})
	return o.(*opMetrics)
}

// ObserveCall counts one AWS call (awsx.Observer).
func (m *Metrics) ObserveCall(c awsx.Call) {
	o := m.op(c.Service, c.Operation)
	o.calls.Inc()
	o.attempts.Add(float64(c.Attempts))
	o.throttles.Add(float64(c.Throttles))
	if c.Class != "" {
		m.errors.WithLabelValues(c.Service, c.Operation, c.Class).Inc()
	}
	o.latency.Observe(c.Duration.Seconds())
}

// Context returns ctx with the metrics as its AWS calls' Observer.
func (m *Metrics) Context(ctx context.Context) context.Context {
	return awsx.WithObserver(ctx, m)
}

// Outcome counts one report row. Chain it into pipeline.Runner.OnOutcome
// (Watch does).
func (m *Metrics) Outcome(o pipeline.Outcome) {
	m.objects.WithLabelValues(statusLabel(o.Status), m.codes.label(o.ErrorCode), actionLabel(o.Action)).Inc()
}

// Watch instruments a runner before it executes: its outcomes
// (rotator_objects_total), its live counters (rotator_run_*) and the bytes
// its re-encryptions write.
func (m *Metrics) Watch(r *pipeline.Runner) {
	next := r.OnOutcome
	r.OnOutcome = func(o pipeline.Outcome) {
		m.Outcome(o)
		if next != nil {
			next(o)
		}
	}
	if r.Stats == nil {
		r.Stats = &pipeline.Stats{}
	}
	m.WatchStats(r.Stats)
	if r.Core != nil && r.Core.Reencrypter != nil {
		r.Core.Reencrypter = m.Reencrypter(r.Core.Reencrypter)
	}
}

// Reencrypter returns r counting the bytes each re-encryption writes
// (rotator_reencrypted_bytes_total).
func (m *Metrics) Reencrypter(r pipeline.Reencrypter) pipeline.Reencrypter {
	return countingReencrypter{Reencrypter: r, bytes: m.reencrypted}
}

type countingReencrypter struct {
	pipeline.Reencrypter
	bytes prometheus.Counter
}

func (c countingReencrypter) Write(ctx context.Context, job reencrypt.Job, in *reencrypt.Intent, save func(context.Context) error) (reencrypt.Result, error) {
	res, err := c.Reencrypter.Write(ctx, job, in, save)
	if err == nil && res.Bytes > 0 {
		c.bytes.Add(float64(res.Bytes))
	}
	return res, err
}
