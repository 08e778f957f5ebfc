package pipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rotator-dev/rotator/internal/testenv"
	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/pipeline"
)

// shardLedgers returns the ledgers a job's shards can meet in: the
// embedded one (shards in one process) and DynamoDB.
func shardLedgers(t *testing.T) map[string]func(t *testing.T) ledger.Ledger {
	return map[string]func(t *testing.T) ledger.Ledger{
		"bolt": func(t *testing.T) ledger.Ledger {
			l, err := ledger.Open(ctx, filepath.Join(t.TempDir(), "ledger.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			return l
		},
		"dynamodb": func(t *testing.T) ledger.Ledger {
			testenv.Need(t, testenv.DynamoDB)
			l, err := ledger.Open(ctx, "dynamodb://"+testenv.Name(t)+"?create=true", ledger.WithAWSConfig(testenv.AWSConfig(t)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			return l
		},
	}
}

func jobConfig(shard string) pipeline.Config {
	c := pipeline.Config{Source: "s3://bucket/prefix", To: "kms:alias/b", From: []string{"kms:alias/a"}, Ledger: "x"}
	if shard != "" {
		c.Shard = shard
		sh, _ := inventory.ParseShard(shard)
		c.ShardCount = sh.Count
	}
	return c
}

// TestJoinJobRace: the shards of a job start at once; the run is created
// exactly once, every shard joins it with a record of its own, and a
// shard started again finds its record (to resume it). A shard with
// other settings, another count, or on a run that is not sharded, is
// refused, naming what differs.
func TestJoinJobRace(t *testing.T) {
	for name, open := range shardLedgers(t) {
		t.Run(name, func(t *testing.T) {
			l := open(t)
			const runID, n = "job-1", 8
			var wg sync.WaitGroup
			created := make([]bool, n)
			errs := make([]error, n)
			for i := range n {
				wg.Go(func() {
					var rec *ledger.Run
					rec, created[i], errs[i] = pipeline.JoinJob(ctx, l, runID, jobConfig(fmt.Sprintf("%d/%d", i, n)))
					if errs[i] == nil && rec.ID != fmt.Sprintf("job-1:shard-%d-of-%d", i, n) {
						errs[i] = fmt.Errorf("shard record %s", rec.ID)
					}
				})
			}
			wg.Wait()
			for i := range n {
				if errs[i] != nil || !created[i] {
					t.Errorf("shard %d: created %v, %v", i, created[i], errs[i])
				}
			}
			parent, err := l.GetRun(ctx, runID)
			if err != nil {
				t.Fatal(err)
			}
			var pc pipeline.Config
			if err := json.Unmarshal(parent.Config, &pc); err != nil || pc.ShardCount != n || pc.Shard != "" || parent.Revision != 1 {
				t.Errorf("run record: %+v (%v), revision %d", pc, err, parent.Revision)
			}
			// A retried shard finds its record, with what it checkpointed.
			rec, _, _ := pipeline.JoinJob(ctx, l, runID, jobConfig("3/8"))
			rec.Counts = map[string]int64{"done": 5}
			rec.Checkpoint = []byte(`{"positions":["p"]}`)
			if err := l.UpdateRun(ctx, rec); err != nil {
				t.Fatal(err)
			}
			faster := jobConfig("3/8")
			faster.Concurrency, faster.KMSRPS, faster.IOTimeout, faster.Ledger = 64, 100, time.Minute, "y" // tuning may differ
			rec, made, err := pipeline.JoinJob(ctx, l, runID, faster)
			if err != nil || made || rec.Counts["done"] != 5 || string(rec.Checkpoint) != `{"positions":["p"]}` {
				t.Errorf("retried shard: created %v, %+v, %v", made, rec, err)
			}
			other := jobConfig("1/8")
			other.To, other.AllVersions = "kms:alias/c", true
			for _, c := range []struct {
				cfg  pipeline.Config
				want string
			}{
				{other, "(all_versions, to differ)"},
				{jobConfig("1/4"), "split into 8 shards, and this process is shard 1/4"},
			} {
				if _, _, err := pipeline.JoinJob(ctx, l, runID, c.cfg); !errors.Is(err, pipeline.ErrJobConflict) || !strings.Contains(err.Error(), c.want) {
					t.Errorf("JoinJob(%+v): %v, want ErrJobConflict with %q", c.cfg, err, c.want)
				}
			}
			plain, _ := json.Marshal(jobConfig(""))
			if err := l.CreateRun(ctx, &ledger.Run{ID: "plain", Config: plain, State: ledger.RunDone}); err != nil {
				t.Fatal(err)
			}
			if _, _, err := pipeline.JoinJob(ctx, l, "plain", jobConfig("0/2")); !errors.Is(err, pipeline.ErrJobConflict) || !strings.Contains(err.Error(), "not sharded") {
				t.Errorf("joining a run that is not sharded: %v", err)
			}
			if _, _, err := pipeline.JoinJob(ctx, l, strings.Repeat("r", 120), jobConfig("0/2")); !errors.Is(err, pipeline.ErrJobConflict) || !strings.Contains(err.Error(), "too long") {
				t.Errorf("a run id too long for its shards' records: %v", err)
			}
		})
	}
}

func TestShardRecordID(t *testing.T) {
	for _, c := range []struct {
		run string
		sh  inventory.Shard
	}{{"job", inventory.Shard{Index: 0, Count: 4}}, {"a:shard-1-of-2", inventory.Shard{Index: 11, Count: 12}}} {
		id := pipeline.ShardRecordID(c.run, c.sh)
		run, sh, ok := pipeline.ParseShardRecordID(id)
		if !ok || run != c.run || sh != c.sh {
			t.Errorf("ParseShardRecordID(%q) = %q, %v, %v", id, run, sh, ok)
		}
	}
	for _, id := range []string{"job", ":shard-0-of-2", "job:shard-2-of-2", "job:shard-01-of-2", "job:shard-0-of-2x", "job:shard-a-of-b"} {
		if run, sh, ok := pipeline.ParseShardRecordID(id); ok {
			t.Errorf("ParseShardRecordID(%q) = %q, %v", id, run, sh)
		}
	}
}

// fakeIntents holds intents in memory.
type fakeIntents struct {
	prepared []ledger.Event
	uploads  []ledger.Upload
}

func (f fakeIntents) Prepared(_ context.Context, runID string, fn func(ledger.Event) error) error {
	for _, ev := range f.prepared {
		if ev.RunID == runID {
			if err := fn(ev); err != nil {
				return err
			}
		}
	}
	return nil
}

func (f fakeIntents) Uploads(_ context.Context, runID string, fn func(ledger.Upload) error) error {
	for _, u := range f.uploads {
		if u.RunID == runID {
			if err := fn(u); err != nil {
				return err
			}
		}
	}
	return nil
}

// TestShardIntents: a shard settles and counts the intents of its own
// objects only, and the counts per shard add up to the run's.
func TestShardIntents(t *testing.T) {
	const n = 4
	var f fakeIntents
	for i := range 200 {
		id := ledger.ObjectID{Bucket: "b", Key: fmt.Sprintf("k%d", i)}
		switch {
		case i%3 == 0:
			f.prepared = append(f.prepared, ledger.Event{ID: id, RunID: "job"})
		case i%3 == 1:
			// A re-encryption's intent and its checkpoint count once.
			f.prepared = append(f.prepared, ledger.Event{ID: id, RunID: "job"})
			f.uploads = append(f.uploads, ledger.Upload{ID: id, RunID: "job"})
		default:
			f.uploads = append(f.uploads, ledger.Upload{ID: id, RunID: "job"}) // a checkpoint alone
		}
	}
	f.prepared = append(f.prepared, ledger.Event{ID: ledger.ObjectID{Bucket: "b", Key: "k0"}, RunID: "other"})
	total, err := pipeline.Unfinished(ctx, f, "job")
	if err != nil || total != 200 {
		t.Fatalf("Unfinished = %d, %v", total, err)
	}
	by, err := pipeline.UnfinishedByShard(ctx, f, "job", n)
	if err != nil {
		t.Fatal(err)
	}
	sum := 0
	for i := range n {
		sh := inventory.Shard{Index: i, Count: n}
		got, err := pipeline.Unfinished(ctx, pipeline.ShardIntents(f, sh), "job")
		if err != nil || got != by[i] || got == 0 {
			t.Errorf("shard %s: %d unfinished (%v), by shard %d", sh, got, err, by[i])
		}
		_ = pipeline.ShardIntents(f, sh).Prepared(ctx, "job", func(ev ledger.Event) error {
			if !sh.Keeps(inventory.Item{Bucket: ev.ID.Bucket, Key: ev.ID.Key}) {
				t.Errorf("shard %s lists %s", sh, ev.ID)
			}
			return nil
		})
		sum += got
	}
	if sum != total {
		t.Errorf("shards count %d unfinished, the run %d", sum, total)
	}
}
