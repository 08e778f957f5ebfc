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
//   - Re-encrypt mode (ModeReencrypt): objects under the --from keys are
//     re-encrypted under fresh data keys by a Reencrypter (reencrypt.Engine,
//     one per run, so that the run's workers share its memory budget and
//     checkpoints are kept under the run id). Under --from == --to an object
//     is re-encrypted once per run (the ledger's record says which run did).
//   - Reconcile: on resume, each prepared ledger event (a write whose
//     outcome was not recorded) is settled from the object as it is now;
//     a re-encryption that had not landed is taken up again at once from its
//     checkpoint (ReconcileRun).
//   - Settle: at the end of a run, checkpoints the run still holds are given
//     up, their multipart uploads aborted (SettleUploads).
//   - Unpaired suffix key: a key ending in the instruction suffix although
//     no object KEY exists. It is no instruction file of a listed object:
//     the source delivers it, it is processed as an object, and its report
//     row says why it is there (NoteUnpairedSuffix).
//   - ACL check (--check-acl): a rewrite gives an object its bucket's
//     default ACL. ACLGuard and ACLGuardWriter read the ACL of what is about
//     to be overwritten and refuse when grants would be dropped
//     (CodeACLWouldBeDropped); MakePlan counts those objects.
//
// Stages are errgroup goroutines joined by channels with bounded workers;
// every send selects on the context. A failure of one object is reported and
// never stops the run; only systemic failures do.
package pipeline
