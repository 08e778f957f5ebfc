package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/ledger"
)

// A sharded job is one run whose objects N processes share, one per shard
// (--shard i/N, or --shard auto in a Kubernetes Indexed Job or an AWS
// Batch array job). Its processes share:
//
//   - the run id: intents, claims and lineage events carry it, so that
//     'rotator status' and 'rotator ledger' see one run;
//   - the run record (id RUN): the job's configuration, with ShardCount N
//     and no Shard, created once by whichever shard comes first;
//
// and each shard keeps its own:
//
//   - lease (ledger.ShardLeaseName): one process at a time per shard, and
//     the claim group of every object it changes;
//   - run record (id RUN:shard-I-of-N, ShardRecordID): its state, counts
//     and checkpoint (listing positions), updated by that shard's process
//     alone with the ledger's revision check. One small record per shard,
//     so that neither the 400 KB item limit nor one hot item bounds the
//     number of shards;
//   - intents: those of the objects in the shard (ShardIntents), which it
//     settles and counts, never another shard's.

// ErrJobConflict is returned by JoinJob when a shard cannot join its run:
// the run exists with another configuration, another shard count, or is
// not sharded.
var ErrJobConflict = errors.New("the run exists with another configuration")

// ResolveShard resolves Shard ("", "i/N" or "auto") and ShardCount (the
// --shard-count flag, 0 when not given) from the environment of an array
// job (see inventory.ResolveShard): afterwards Shard is "i/N" and
// ShardCount N, or both are empty.
func (c *Config) ResolveShard(getenv func(string) string) error {
	sh, err := inventory.ResolveShard(c.Shard, c.ShardCount, getenv)
	if err != nil {
		return err
	}
	if sh == (inventory.Shard{}) {
		c.Shard, c.ShardCount = "", 0
		return nil
	}
	c.Shard, c.ShardCount = sh.String(), sh.Count
	return nil
}

// JobShard returns the shard of a sharded job's process (ok false for a
// run that is not one: no ShardCount, or the job's own configuration).
func (c *Config) JobShard() (inventory.Shard, bool) {
	if c.ShardCount == 0 || c.Shard == "" {
		return inventory.Shard{}, false
	}
	sh, err := inventory.ParseShard(c.Shard)
	return sh, err == nil
}

// shardRecordSep separates a run id from its shard in ShardRecordID.
const shardRecordSep = ":shard-"

// ShardRecordID is the id of the run record that keeps shard sh's state
// in run runID: "RUN:shard-I-of-N".
func ShardRecordID(runID string, sh inventory.Shard) string {
	return runID + shardRecordSep + strconv.Itoa(sh.Index) + "-of-" + strconv.Itoa(sh.Count)
}

// ParseShardRecordID splits a ShardRecordID into the run id and the shard.
func ParseShardRecordID(id string) (runID string, sh inventory.Shard, ok bool) {
	i := strings.LastIndex(id, shardRecordSep)
	if i <= 0 {
		return "", sh, false
	}
	idx, count, found := strings.Cut(id[i+len(shardRecordSep):], "-of-")
	if !found {
		return "", sh, false
	}
	sh, err := inventory.ParseShard(idx + "/" + count)
	if err != nil || ShardRecordID(id[:i], sh) != id {
		return "", inventory.Shard{}, false
	}
	return id[:i], sh, true
}

// maxRunIDLen is the ledger's limit on run ids.
const maxRunIDLen = 128

// JobRuns is the part of the ledger the shards of a job meet in.
type JobRuns interface {
	CreateRun(ctx context.Context, r *ledger.Run) error
	GetRun(ctx context.Context, id string) (ledger.Run, error)
}

// JoinJob makes this process shard cfg.Shard of the sharded run runID
// (cfg.ShardCount > 0) and returns the shard's run record. The run
// record is created by the first shard to come (a conditional create);
// the others find it and join if its configuration is this one (but for
// the ledger's location and the settings that only tune speed: see
// jobIdentity), and fail with ErrJobConflict naming what differs
// otherwise. The shard's record is created the same way: created is
// false when it exists already, that is when the shard ran before (a
// retried pod, a resumed shard), and the caller resumes it from rec's
// checkpoint and counts. JoinJob takes no lease: call it before
// acquiring the shard's, and read the record again once the lease is
// held (another process of the same shard may have worked in between).
func JoinJob(ctx context.Context, runs JobRuns, runID string, cfg Config) (rec *ledger.Run, created bool, err error) {
	sh, ok := cfg.JobShard()
	if !ok {
		return nil, false, fmt.Errorf("run %s: not a shard of a job (no --shard)", runID)
	}
	shardID := ShardRecordID(runID, sh)
	if len(shardID) > maxRunIDLen {
		return nil, false, fmt.Errorf("%w: run id %s is too long for a sharded run: the shards' records add %d characters to it, and run ids are at most %d",
			ErrJobConflict, runID, len(shardID)-len(runID), maxRunIDLen)
	}
	job := cfg
	job.Shard = ""
	conf, err := json.Marshal(job)
	if err != nil {
		return nil, false, err
	}
	parent := &ledger.Run{ID: runID, Config: conf, State: ledger.RunRunning}
	switch err := runs.CreateRun(ctx, parent); {
	case errors.Is(err, ledger.ErrRunExists):
		cur, err := runs.GetRun(ctx, runID)
		if err != nil {
			return nil, false, err
		}
		var have Config
		if err := json.Unmarshal(cur.Config, &have); err != nil {
			return nil, false, fmt.Errorf("run %s: stored configuration is not readable: %w", runID, err)
		}
		if err := sameJob(runID, have, cfg); err != nil {
			return nil, false, err
		}
	case err != nil:
		return nil, false, err
	}
	conf, err = json.Marshal(cfg)
	if err != nil {
		return nil, false, err
	}
	rec = &ledger.Run{ID: shardID, Config: conf, State: ledger.RunRunning}
	switch err := runs.CreateRun(ctx, rec); {
	case err == nil:
		return rec, true, nil
	case !errors.Is(err, ledger.ErrRunExists):
		return nil, false, err
	}
	cur, err := runs.GetRun(ctx, shardID)
	if err != nil {
		return nil, false, err
	}
	var have Config
	if err := json.Unmarshal(cur.Config, &have); err != nil || have.Shard != cfg.Shard || have.ShardCount != cfg.ShardCount {
		return nil, false, fmt.Errorf("%w: run %s, which would keep shard %s of run %s, is another run: choose another --run-id", ErrJobConflict, shardID, sh, runID)
	}
	return &cur, false, nil
}

// sameJob checks that a shard's configuration is its job's.
func sameJob(runID string, have, want Config) error {
	if have.ShardCount == 0 {
		return fmt.Errorf("%w: run %s exists and is not sharded: choose another --run-id for a sharded job", ErrJobConflict, runID)
	}
	if have.ShardCount != want.ShardCount {
		return fmt.Errorf("%w: run %s is split into %d shards, and this process is shard %s: every shard of a job gives the same count; choose another --run-id for a new job",
			ErrJobConflict, runID, have.ShardCount, want.Shard)
	}
	if diff := jobDiff(have, want); len(diff) > 0 {
		return fmt.Errorf("%w: run %s was started with other settings (%s differ): every shard of a job must be started with the same flags; choose another --run-id for a new job",
			ErrJobConflict, runID, strings.Join(diff, ", "))
	}
	return nil
}

// jobIdentity is the part of a configuration all shards of a job share:
// everything but the ledger's location (all found the run in the same
// ledger), the shard, and the settings that only tune speed or memory,
// which may differ from one process to the next.
func jobIdentity(c Config) Config {
	c.Ledger, c.Shard = "", ""
	c.Concurrency, c.KMSRPS, c.S3RPS, c.HSMSessions, c.ListWorkers = 0, 0, 0, 0, 0
	c.PartsInFlight, c.ReencryptMemory, c.InventoryMaxFileBytes, c.IOTimeout = 0, 0, 0, 0
	return c
}

// jobDiff names the settings (as in the configuration's JSON) in which
// two shards' configurations differ.
func jobDiff(a, b Config) []string {
	var ma, mb map[string]json.RawMessage
	ja, _ := json.Marshal(jobIdentity(a))
	jb, _ := json.Marshal(jobIdentity(b))
	_ = json.Unmarshal(ja, &ma)
	_ = json.Unmarshal(jb, &mb)
	var diff []string
	for k, v := range ma {
		if !bytes.Equal(v, mb[k]) {
			diff = append(diff, k)
		}
	}
	for k := range mb {
		if _, ok := ma[k]; !ok {
			diff = append(diff, k)
		}
	}
	slices.Sort(diff)
	return diff
}

// ShardIntents restricts l to the intents of the objects in shard sh, so
// that a shard settles and counts its own and never another's (the zero
// Shard keeps all).
func ShardIntents(l IntentLister, sh inventory.Shard) IntentLister {
	if sh.Count <= 1 {
		return l
	}
	return shardIntents{l: l, sh: sh}
}

type shardIntents struct {
	l  IntentLister
	sh inventory.Shard
}

func (s shardIntents) keeps(id ledger.ObjectID) bool {
	return s.sh.Keeps(inventory.Item{Bucket: id.Bucket, Key: id.Key})
}

func (s shardIntents) Prepared(ctx context.Context, runID string, fn func(ledger.Event) error) error {
	return s.l.Prepared(ctx, runID, func(ev ledger.Event) error {
		if !s.keeps(ev.ID) {
			return nil
		}
		return fn(ev)
	})
}

func (s shardIntents) Uploads(ctx context.Context, runID string, fn func(ledger.Upload) error) error {
	return s.l.Uploads(ctx, runID, func(u ledger.Upload) error {
		if !s.keeps(u.ID) {
			return nil
		}
		return fn(u)
	})
}

// UnfinishedByShard counts the intents run runID holds per shard of
// count, as Unfinished counts them for a whole run: out[i] is shard i's.
func UnfinishedByShard(ctx context.Context, l IntentLister, runID string, count int) ([]int, error) {
	out := make([]int, max(count, 1))
	shardOf := func(id ledger.ObjectID) int {
		if count <= 1 {
			return 0
		}
		return inventory.ShardOf(id.Bucket, id.Key, count)
	}
	prepared := map[ledger.ObjectID]bool{}
	err := l.Prepared(ctx, runID, func(ev ledger.Event) error {
		out[shardOf(ev.ID)]++
		prepared[ev.ID] = true
		return nil
	})
	if err != nil {
		return nil, err
	}
	// A checkpoint counts when no prepared event stands for it.
	err = l.Uploads(ctx, runID, func(u ledger.Upload) error {
		if !prepared[u.ID] {
			out[shardOf(u.ID)]++
		}
		return nil
	})
	return out, err
}
