package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/pipeline"
)

// Sharded jobs (see pipeline.JoinJob): every process of a Kubernetes
// Indexed Job or an AWS Batch array job runs the same command,
//
//	rotator run --shard auto --run-id JOB ... --ledger dynamodb://TABLE
//
// and works on its shard of the objects. A shard started again (a
// restarted pod, a retried array child, an operator's second try) finds
// its record and resumes it: 'run' on a shard that ran before is
// 'resume' of that shard, so that a Job's restart policy needs no other
// command. 'rotator resume --run-id JOB --shard i/N' does the same by
// hand.

// resolveShard resolves --shard and --shard-count from the environment
// (--shard auto), as a usage error when they are ambiguous or
// inconsistent.
func resolveShard(cfg *pipeline.Config, stderr io.Writer) error {
	if err := cfg.ResolveShard(os.Getenv); err != nil {
		return usageError{err.Error()}
	}
	if cfg.Shard == "" {
		for _, name := range []string{inventory.EnvJobCompletionIndex, inventory.EnvBatchArrayIndex} {
			if v := os.Getenv(name); v != "" {
				fmt.Fprintf(stderr, "rotator: note: %s=%s is set but --shard is not: this process works on every object (give --shard auto to work on this index's shard)\n", name, v)
			}
		}
	}
	return nil
}

// runShard runs one shard of the sharded job runID: it joins the run
// (the first shard creates it), then runs the shard, or resumes it when
// it ran before.
func runShard(ctx context.Context, cfg pipeline.Config, runID string, out outputFlags, stdout, stderr io.Writer) error {
	runSignals()
	if runID == "" {
		return usageError{"a sharded run needs --run-id: every shard of the job gives the same one (the Job's or the array job's name, say)"}
	}
	if err := checkReportDest(out.report, true); err != nil {
		return err
	}
	env, err := pipeline.Open(ctx, cfg, withTestOptions(pipeline.OpenOptions{}))
	if err != nil {
		return err
	}
	defer env.Close()
	rec, created, err := pipeline.JoinJob(ctx, env.Ledger, runID, cfg)
	if errors.Is(err, pipeline.ErrJobConflict) {
		return usageError{err.Error()}
	}
	if err != nil {
		return err
	}
	var after []string
	if !created {
		cp, err := pipeline.DecodeCheckpoint(rec.Checkpoint)
		if err != nil {
			return err
		}
		after = cp.Positions
		fmt.Fprintf(stderr, "rotator: run %s shard %s ran before (%s): resuming it from its checkpoint\n", runID, cfg.Shard, rec.State)
		rec.State = ledger.RunRunning
	}
	return execute(ctx, env, rec, after, !created, out, stdout, stderr)
}

// resumeShard resumes one shard of a sharded run: rec and cfg are the
// run's record and configuration (or a shard's own record, RUN:shard-I-of-N,
// and its configuration); spec and count are resume's --shard and
// --shard-count.
func resumeShard(ctx context.Context, rec ledger.Run, cfg pipeline.Config, spec string, count int, ledgerURL string, out outputFlags, stdout, stderr io.Writer) error {
	runID := rec.ID
	if parent, sh, ok := pipeline.ParseShardRecordID(rec.ID); ok && cfg.Shard == sh.String() {
		// The shard's own record: resume that shard.
		if spec != "" && spec != inventory.ShardAuto && spec != sh.String() {
			return usageError{fmt.Sprintf("run %s is shard %s of run %s, not --shard %s", rec.ID, sh, parent, spec)}
		}
		runID, spec = parent, sh.String()
	}
	if cfg.ShardCount == 0 {
		return usageError{fmt.Sprintf("run %s is not sharded: resume it without --shard", runID)}
	}
	if spec == "" {
		return usageError{fmt.Sprintf("run %s is split into %d shards: resume one with --shard i/%d (or --shard auto in the job's environment); "+
			"'rotator status --run-id %s' shows each shard's state", runID, cfg.ShardCount, cfg.ShardCount, runID)}
	}
	c := cfg
	c.Shard, c.ShardCount = spec, count
	if count == 0 && spec == inventory.ShardAuto {
		c.ShardCount = cfg.ShardCount // unless the environment says otherwise
	}
	if err := resolveShard(&c, stderr); err != nil {
		return err
	}
	if c.ShardCount != cfg.ShardCount {
		return usageError{fmt.Sprintf("run %s is split into %d shards, not %d (--shard %s)", runID, cfg.ShardCount, c.ShardCount, c.Shard)}
	}
	c.Ledger = ledgerURL
	return runShard(ctx, c, runID, out, stdout, stderr)
}

// jobRunID is the run id of rec: rec's id, or for a shard of a sharded
// job (whose record is RUN:shard-I-of-N), RUN.
func jobRunID(env *pipeline.Env, rec *ledger.Run) string {
	if sh, ok := env.Config.JobShard(); ok {
		if runID, got, ok := pipeline.ParseShardRecordID(rec.ID); ok && got == sh {
			return runID
		}
	}
	return rec.ID
}

// jobIntents is what a process settles and counts at the start and end
// of its run: the run's intents, or its shard's.
func jobIntents(env *pipeline.Env) pipeline.IntentLister {
	if env.Config.Shard != "" {
		if sh, err := inventory.ParseShard(env.Config.Shard); err == nil {
			return pipeline.ShardIntents(env.Ledger, sh)
		}
	}
	return env.Ledger
}

// resumeCommand is the command that resumes what a process worked on.
func resumeCommand(env *pipeline.Env, runID string) string {
	if sh, ok := env.Config.JobShard(); ok {
		return fmt.Sprintf("rotator resume --run-id %s --shard %s --ledger %s", runID, sh, env.Config.Ledger)
	}
	return fmt.Sprintf("rotator resume --run-id %s --ledger %s", runID, env.Config.Ledger)
}

// reloadRun reads rec again once this process holds its lease: when
// another process worked for the run (or shard) since rec was read (this
// one waited for the lease, or lost a race for it), this one goes on
// from where that one stopped, with its positions and counts, instead of
// overwriting them with what it read before.
func reloadRun(ctx context.Context, runs pipeline.Runs, rec *ledger.Run, after []string, resume bool) ([]string, bool, error) {
	cur, err := runs.GetRun(ctx, rec.ID)
	if err != nil {
		return nil, false, err
	}
	if cur.Revision == rec.Revision {
		return after, resume, nil
	}
	cp, err := pipeline.DecodeCheckpoint(cur.Checkpoint)
	if err != nil {
		return nil, false, err
	}
	cur.State = ledger.RunRunning
	*rec = cur
	return cp.Positions, true, nil
}
