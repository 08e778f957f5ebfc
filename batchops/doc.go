// Package batchops answers S3 Batch Operations' Lambda invocations
// (LambdaInvoke, invocation schemas 1.0 and 2.0): each task names one
// object, which goes through the same per-object core as a run
// (pipeline.Core.Process: claim, intent in the ledger, conditional
// writes, evidence, commit), and is answered Succeeded, TemporaryFailure
// or PermanentFailure (pipeline.TaskResultOf) with a result string that
// Batch Operations writes to its completion report.
//
// Terms:
//
//   - Settings: what a run needs (target key, --from keys, mode, ledger,
//     run id, ...), read from the deployment's environment variables
//     (ROTATOR_TO, ...) and, in schema 2.0, from the job's userArguments
//     (to, ...). Schema 1.0 has no userArguments: the environment says
//     everything. A job may set what the environment leaves unset; a job
//     that contradicts it fails every task (PermanentFailure), so that a
//     job cannot point a function at another ledger or key by mistake.
//   - Run: one Batch Operations job is one run of the ledger, by default
//     "batchops-JOBID". Every invocation records its changes under it,
//     so 'rotator status', 'rotator ledger intents' and 'rotator resume'
//     see the job as any run.
//   - Lease: Lambda runs one invocation at a time in an execution
//     environment, and an environment is the process that a run's lease
//     models: each environment holds its own lease of the run
//     ("lambda-ID", ID from its log stream), acquired at its first
//     invocation and kept (renewed) while an invocation runs. Its owner
//     is the claim owner of every object the environment changes. So
//     invocations never wait for each other, a run holds as many leases
//     as execution environments served it (not one per task), and an
//     object held by an environment that died (an invocation that timed
//     out) is taken by the next invocation that claims it once its claim
//     expires (ROTATOR_CLAIM_LEASE, default two minutes): that invocation
//     settles the change left on it from what S3 holds, as 'rotator
//     resume' would. Until then the task is answered TemporaryFailure
//     (ClaimedByAnotherRun) and Batch Operations tries it again.
//   - Ledger: DynamoDB only. The embedded ledger is a file on one
//     machine's disk; Lambda's execution environments share no disk and
//     lose theirs.
package batchops
