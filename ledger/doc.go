// Package ledger records key lineage: for every object version, which key
// wraps its data key now, and every change rotator made to it.
//
// Terms:
//   - Object record: per object version, its current wrapping key, format,
//     placement and state.
//   - Lineage event: one change to an object: run id, operation, from key,
//     to key, time, ETag and version id before and after.
//   - Run record: a run's configuration, counts and checkpoint.
//   - Claim: a conditional write that makes one worker the only one allowed to
//     commit an object in a run, so that concurrent workers and resumed runs
//     never commit an object twice.
//
// Two backends share one interface: DynamoDB for production (many workers)
// and an embedded store (pure Go, no server) as the default. Writes are
// single-item conditional writes and batches, never transactions. No record
// ever holds a plaintext data key.
package ledger
