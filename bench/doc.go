// Package bench holds the benchmarks that compare rotator with the official
// S3 Encryption Client and with baselines run in the same process. It is a
// module of its own (it needs the official client, like interop). Results
// are ratios or side-by-side figures from the same run, because these
// machines are noisy; nothing here is a timed test.
//
//   - suite: `make bench`, every figure of the performance issue from one
//     run (rotator against bare loops of the irreducible calls and against
//     the official client v4.0.0, KMS -> HSM, a KMS rate cap, latency-bound
//     concurrency, ledger writes and bytes, memory and throughput at 1k,
//     10k and 100k objects): a table of ratios, JSON and an SVG plot in
//     results/.
//   - bigobject: one large object (4 GiB by default) re-encrypted through
//     the local stack by rotator and copied by the official client: wall
//     time, throughput and peak RSS of each.
//
// The in-process benchmarks live with their packages (go test -bench in
// gcmstream, rewrap and ledger); README.md lists every figure.
package bench
