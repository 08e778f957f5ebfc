// Package pipeline runs a rotation: inventory -> classify -> rewrap or
// re-encrypt -> commit -> ledger.
//
// Terms:
//   - Run: one execution of a rotation plan, identified by a run id, resumable
//     after an interrupt or a crash from its checkpoint in the ledger.
//   - Classify: reading an object's envelope (HEAD, and GET of the instruction
//     file when the envelope is not in the metadata) to decide its action.
//   - Action: skip, rewrap or re-encrypt.
//   - Commit: the conditional write that stores the new envelope: a self-copy
//     guarded by the ETag read at classify time, or a conditional PutObject of
//     the instruction file. A failed precondition means someone else changed
//     the object: it is reported as changed and left alone.
//   - Per-object core: classify, act and commit for one object, callable on
//     its own (the pipeline, a shard, or an S3 Batch Operations handler).
//
// Stages are errgroup goroutines joined by channels with bounded workers;
// every send selects on the context. A failure of one object is reported and
// never stops the run; only systemic failures do.
package pipeline
