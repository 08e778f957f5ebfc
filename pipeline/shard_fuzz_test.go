package pipeline_test

import (
	"strings"
	"testing"

	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/pipeline"
)

// FuzzParseShardRecordID parses arbitrary strings as shard record ids
// (never a panic). An id that parses is exactly the ShardRecordID of the
// run and shard it parses to: a run id that is not empty and a shard with
// 0 <= Index < Count. Ids built with ShardRecordID from the fuzzer's run
// id and a valid shard parse back to them, whatever the run id holds
// (even ":shard-").
//
// It found "RUN:shard-0-of-0" accepted (through ParseShard, which took
// "0/0").
func FuzzParseShardRecordID(f *testing.F) {
	for _, s := range []string{
		"job:shard-0-of-4", "a:shard-1-of-2:shard-11-of-12", "job", ":shard-0-of-2", "job:shard-2-of-2", "job:shard-01-of-2",
		"job:shard-0-of-2x", "job:shard-a-of-b", "job:shard--1-of-2", "job:shard-+1-of-2", "job:shard-1-of-2-of-3", "job:shard-", "job:shard-0-of-0",
	} {
		f.Add(s, "run-1", 1, 4)
	}
	f.Fuzz(func(t *testing.T, id, run string, index, count int) {
		r, sh, ok := pipeline.ParseShardRecordID(id)
		if ok {
			if r == "" || sh.Index < 0 || sh.Index >= sh.Count {
				t.Fatalf("ParseShardRecordID(%q) = %q, %+v: no run or not 0 <= index < count", id, r, sh)
			}
			if pipeline.ShardRecordID(r, sh) != id {
				t.Fatalf("ParseShardRecordID(%q) = %q, %+v, whose ShardRecordID is %q", id, r, sh, pipeline.ShardRecordID(r, sh))
			}
		} else if r != "" || sh != (inventory.Shard{}) {
			t.Fatalf("ParseShardRecordID(%q) refused, with %q, %+v", id, r, sh)
		}

		built := inventory.Shard{Index: index, Count: count}
		if run == "" || index < 0 || index >= count {
			return
		}
		id = pipeline.ShardRecordID(run, built)
		if !strings.HasPrefix(id, run+":shard-") {
			t.Fatalf("ShardRecordID(%q, %+v) = %q", run, built, id)
		}
		if r, sh, ok := pipeline.ParseShardRecordID(id); !ok || r != run || sh != built {
			t.Fatalf("ParseShardRecordID(%q) = %q, %+v, %v; want %q, %+v", id, r, sh, ok, run, built)
		}
	})
}
