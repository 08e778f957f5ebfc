package inventory

import (
	"fmt"
	"hash/fnv"
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
