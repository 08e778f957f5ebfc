package inventory

import (
	"fmt"
	"hash/fnv"
	"strings"
	"testing"
)

func TestShard(t *testing.T) {
	// The same hash as hash/fnv's FNV-1a.
	for _, k := range []string{"", "k", "dir/ünï/☃", "a/b/c"} {
		h := fnv.New64a()
		h.Write([]byte("bkt/" + k))
		if got, want := ShardOf("bkt", k, 7), int(h.Sum64()%7); got != want {
			t.Errorf("ShardOf(bkt, %q) = %d, want %d", k, got, want)
		}
	}
	// Every key in exactly one shard, versions together, roughly even.
	const n, count = 30000, 4
	sizes := make([]int, count)
	for i := range n {
		it := Item{Bucket: "bkt", Key: fmt.Sprintf("tenant-%d/object-%d", i%17, i), VersionID: "v1"}
		in := 0
		for s := range count {
			if (Shard{Index: s, Count: count}).Keeps(it) {
				in++
				sizes[s]++
				it2 := it
				it2.VersionID = "v2"
				if !(Shard{Index: s, Count: count}).Keeps(it2) {
					t.Fatalf("versions of %s in different shards", it.Key)
				}
			}
		}
		if in != 1 {
			t.Fatalf("%s is in %d shards", it, in)
		}
	}
	for s, size := range sizes {
		if size < n/count*9/10 || size > n/count*11/10 {
			t.Errorf("shard %d/%d has %d of %d items", s, count, size, n)
		}
	}
	if !(Shard{}).Keeps(Item{Key: "x"}) {
		t.Error("the zero shard drops items")
	}
}

func TestParseShard(t *testing.T) {
	for in, want := range map[string]Shard{"0/1": {0, 1}, "3/4": {3, 4}, "0/16": {0, 16}} {
		got, err := ParseShard(in)
		if err != nil || got != want || got.String() != in {
			t.Errorf("ParseShard(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "1", "4/4", "-1/4", "1/0", "a/b", "1/2/3", " 1/2"} {
		if _, err := ParseShard(in); err == nil {
			t.Errorf("ParseShard(%q): no error", in)
		}
	}
}

func TestResolveShard(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	ok := []struct {
		spec  string
		count int
		env   func(string) string
		want  Shard
	}{
		{"", 0, env(), Shard{}},
		{"", 0, env(EnvJobCompletionIndex, "2", EnvShardCount, "4"), Shard{}}, // --shard not asked for
		{"1/4", 0, env(), Shard{1, 4}},
		{"1/4", 4, env(EnvShardCount, "4", EnvJobCompletionIndex, "1"), Shard{1, 4}},
		{"auto", 0, env(EnvJobCompletionIndex, "2", EnvShardCount, "4"), Shard{2, 4}},
		{"auto", 4, env(EnvJobCompletionIndex, "0"), Shard{0, 4}},
		{"auto", 4, env(EnvJobCompletionIndex, "3", EnvShardCount, "4"), Shard{3, 4}},
		{"auto", 0, env(EnvBatchArrayIndex, "7", EnvBatchArraySize, "10"), Shard{7, 10}},
		{"auto", 10, env(EnvBatchArrayIndex, "0", EnvBatchArraySize, "10", EnvShardCount, "10"), Shard{0, 10}},
		{"auto", 3, env(EnvBatchArrayIndex, "2"), Shard{2, 3}},
		{"auto", 0, env(EnvJobCompletionIndex, "0", EnvShardCount, "1"), Shard{0, 1}},
	}
	for _, c := range ok {
		got, err := ResolveShard(c.spec, c.count, c.env)
		if err != nil || got != c.want {
			t.Errorf("ResolveShard(%q, %d) = %v, %v; want %v", c.spec, c.count, got, err, c.want)
		}
	}
	bad := []struct {
		spec  string
		count int
		env   func(string) string
		want  string // in the message
	}{
		{"", 4, env(), "--shard-count 4 needs --shard auto"},
		{"auto", 0, env(), "no shard index in the environment"},
		{"auto", 4, env(), "JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) or AWS_BATCH_JOB_ARRAY_INDEX"},
		{"auto", 0, env(EnvJobCompletionIndex, "2"), "give --shard-count N or set ROTATOR_SHARD_COUNT"},
		{"auto", 4, env(EnvJobCompletionIndex, "1", EnvBatchArrayIndex, "1"), "ambiguous shard environment"},
		{"auto", 4, env(EnvJobCompletionIndex, "1", EnvBatchArraySize, "4"), "ambiguous shard environment"},
		{"1/4", 0, env(EnvJobCompletionIndex, "1", EnvBatchArrayIndex, "1"), "ambiguous"},
		{"auto", 4, env(EnvJobCompletionIndex, "1", EnvShardCount, "8"), "inconsistent shard counts: --shard-count=4, ROTATOR_SHARD_COUNT=8"},
		{"auto", 0, env(EnvBatchArrayIndex, "1", EnvBatchArraySize, "4", EnvShardCount, "5"), "inconsistent shard counts"},
		{"auto", 4, env(EnvJobCompletionIndex, "4"), "JOB_COMPLETION_INDEX=4 is not below the shard count 4"},
		{"auto", 4, env(EnvJobCompletionIndex, "-1"), "want a shard index"},
		{"auto", 4, env(EnvJobCompletionIndex, "x"), "want a shard index"},
		{"auto", 0, env(EnvJobCompletionIndex, "1", EnvShardCount, "0"), "ROTATOR_SHARD_COUNT=\"0\": want the number of shards"},
		{"auto", -1, env(EnvJobCompletionIndex, "1"), "--shard-count -1"},
		{"1/4", 8, env(), "--shard 1/4 disagrees with --shard-count=8"},
		{"1/4", 0, env(EnvShardCount, "2"), "disagrees with ROTATOR_SHARD_COUNT=2"},
		{"1/4", 0, env(EnvJobCompletionIndex, "2"), "--shard 1/4 disagrees with JOB_COMPLETION_INDEX=2: give --shard auto"},
		{"1/4", 0, env(EnvBatchArrayIndex, "3", EnvBatchArraySize, "4"), "disagrees with AWS_BATCH_JOB_ARRAY_INDEX=3"},
		{"4/4", 0, env(), "want 0 <= index < count"},
		{"Auto", 0, env(EnvJobCompletionIndex, "1"), "or auto"},
	}
	for _, c := range bad {
		_, err := ResolveShard(c.spec, c.count, c.env)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ResolveShard(%q, %d): %v; want an error with %q", c.spec, c.count, err, c.want)
		}
	}
}
