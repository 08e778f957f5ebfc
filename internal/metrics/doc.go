// Package metrics holds the Prometheus metrics of one rotator run: what
// `rotator run --metrics-addr` serves on /metrics while the run lasts, and
// what `--metrics-push` pushes to a Pushgateway when it ends.
//
// Terms:
//   - Metrics: one run's registry (never the global one, so that runs and
//     tests of one process do not mix) and the collectors below. Every
//     metric is named rotator_*.
//   - Objects: one count per row of the completion report, by its status,
//     code and action (rotator_objects_total). A resumed run's process
//     counts its own rows; the rotator_run_* gauges are the run's totals
//     (they start from the run record's counts, as `rotator status` shows).
//   - AWS calls: every call of every AWS client, reported by
//     internal/awsx's Observe middleware to the Observer in the run's
//     context: calls, attempts, throttled attempts, errors by class (an
//     error code class such as throttling or precondition_failed, never a
//     message) and a latency histogram, per service and operation.
//   - HSM pools: sessions budgeted, open and in use, waits for a free
//     session and their time, per token, read from hsmpool.Pool.Stats when
//     scraped.
//   - Grouping (Pushgateway): the job and labels a push replaces; by
//     default job="rotator", plus shard="i" for a sharded run, so that a
//     scheduled run replaces the previous run's metrics rather than piling
//     up one group per run id.
//
// Labels never carry a bucket, a key, a key id or anything secret: only
// bounded sets (statuses, codes, actions, services, operations, error
// classes, token labels). Codes outside the known shape or beyond
// maxCodes distinct ones are counted as "other".
package metrics
