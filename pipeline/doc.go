// Package pipeline runs a rotation: inventory -> classify -> rewrap or
// re-encrypt -> commit -> ledger.
//
// Terms:
//   - Run: one execution of a rotation plan, identified by a run id, resumable
//     after an interrupt or a crash from its checkpoint in the ledger.
//   - Classify: reading an object's envelope (HEAD, and GET of the instruction
//     file when the envelope is not in the metadata) to decide its action.
//     The GET is spared when a bucket listing saw no instruction file beside
//     the object (inventory.Item.NoInstructionFile) and HEAD finds the object
//     as listed and written an hour or more before (InstructionGrace): in any
//     other window (an object rewritten since, or written just before the
//     listing, its instruction file perhaps just after) the file is read.
//   - Action: skip, rewrap or re-encrypt.
//   - Commit protocol (protocol.go): the one sequence every change goes
//     through (rewrap, re-encryption, version deletion, move): claim the object
//     for this process (renewed while it works), settle what this run left
//     on it and read it again if it may have changed, record the intent in
//     the ledger (a prepared event, and a re-encryption's checkpoint),
//     make the conditional write(s), decide on evidence only, then commit
//     the lineage, drop the intent, or keep it. See docs/reliability.md.
//   - Evidence: what proves that a write landed or did not: a success
//     response, or the object read back (the wrapped key it holds, a V3
//     message id, an ETag computed from the parts uploaded, the source's
//     ETag and version after its upload was aborted, the content's tag
//     under the new key). An error, a timeout, a 412 on a retry is never
//     evidence.
//   - Intent: the ledger's record of a change in progress (prepared event,
//     checkpoint); the only copy of what is needed to finish or undo it.
//   - Settle: deciding an intent from the object as it is now: committed
//     (it landed), dropped (it did not), changed by someone else, kept (no
//     evidence), or resumable (a re-encryption that can go on).
//   - Unfinished: an object whose intent is kept (StatusUnfinished, exit
//     4): resume settles it; a run is done only when none is left.
//   - Recover: settling every intent of a run (Recover): before a resumed
//     run lists again, and at the end of every run (giving up
//     re-encryptions that did not land).
//   - Run lease (lease.go): one process at a time works for a run (or a
//     shard); its owner string (run/lease/epoch/holder) is the claim owner
//     of every object it changes, and a later epoch fences earlier ones.
//   - Sharded job (shard.go): one run id shared by N processes, one per
//     shard; the first creates the run record (the job's configuration),
//     each keeps its own record RUN:shard-I-of-N (JoinJob), lease and
//     intents (ShardIntents). A shard started again resumes its record.
//   - S3 report (s3report.go): a completion report streamed to one S3
//     object in bounded parts, written when the run ends or stops.
//   - Move (move.go, --placement instruction-file): a rewrap that also
//     moves the envelope from the object's metadata into a new
//     instruction file: the file first (If-None-Match; the metadata wins
//     while both exist, so the object opens under the old key), then the
//     guarded self-copy without the envelope. Settled on where the
//     envelope is; a file left by a copy that did not land is deleted.
//   - Write costs (plancost.go, bucketconfig.go): what a run's writes
//     store and ship beyond their requests, from each bucket's
//     versioning, replication and lifecycle configuration (noncurrent
//     copies, replicated bytes), and the move's cost against later
//     rotations' (Plan.WriteCosts, Plan.Placement).
//   - Dry run: the same core with its writers wrapped (DryRun): writes and
//     key backend calls fail with errDryRun before they are sent, and the
//     outcome says what would have been done.
//   - Outcome codes: all in outcome.go, with the one mapping from errors.
//   - Per-object core: classify, act and commit for one object, callable on
//     its own (the pipeline, a shard, or an S3 Batch Operations handler).
//   - Re-encrypt mode (ModeReencrypt): objects under the --from keys are
//     re-encrypted under fresh data keys by a Reencrypter (reencrypt.Engine,
//     one per process, so that all workers share its memory budget). Under
//     --from == --to an object is re-encrypted once per run (the ledger's
//     record says which run did). With --delete-old-versions, the worker of
//     a key's current version deletes its older versions under a --from
//     key once it is re-encrypted (versions.go), each with a row of its own
//     (Outcome.Also).
//
// Stages are errgroup goroutines joined by channels with bounded workers;
// every send selects on the context. A failure of one object is reported and
// never stops the run; only systemic failures do.
package pipeline
