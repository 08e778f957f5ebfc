// Package bench holds the benchmarks that compare rotator with a baseline run
// in the same process: rewraps per second against a bare loop, re-encryption
// throughput against the standard library's one-shot AES-GCM and against the
// official S3 Encryption Client. Results are ratios, because these machines
// are noisy; nothing here is a timed test.
package bench
