package inventory

import (
	"strconv"
	"strings"
	"testing"
)

// FuzzParseShard parses arbitrary strings as --shard i/N (never a panic)
// and checks its contract: a shard that parses has 0 <= Index < Count and
// validates, its String parses back to it and is the string parsed when
// that is written in plain decimal, and among its Count shards exactly
// one keeps a given object, this one when ShardOf says so. Shards built
// from the fuzzer's numbers round-trip through String and ParseShard
// exactly when they are valid.
//
// It found "0/0" (and "00/0", "-0/+0") parsing to the zero Shard, which
// keeps every object: --shard 0/0 ran over the whole source.
func FuzzParseShard(f *testing.F) {
	for _, s := range []string{"0/1", "3/4", "0/16", "255/256", "", "1", "4/4", "-1/4", "1/0", "a/b", "1/2/3", " 1/2",
		"+1/4", "01/4", "0/0", "00/0", "-0/+0", "1/9223372036854775807", "9223372036854775807/9223372036854775808"} {
		f.Add(s, 1, 4, "tenant-1/object-7")
	}
	f.Fuzz(func(t *testing.T, s string, index, count int, key string) {
		sh, err := ParseShard(s)
		if err == nil {
			if sh.Index < 0 || sh.Index >= sh.Count || sh.Validate() != nil {
				t.Fatalf("ParseShard(%q) = %+v: not 0 <= index < count", s, sh)
			}
			if again, err := ParseShard(sh.String()); err != nil || again != sh {
				t.Fatalf("ParseShard(%q) = %+v; its String %q parses to %+v, %v", s, sh, sh.String(), again, err)
			}
			i, n, _ := strings.Cut(s, "/")
			if i == strconv.Itoa(sh.Index) && n == strconv.Itoa(sh.Count) && sh.String() != s {
				t.Fatalf("ParseShard(%q) = %+v, whose String is %q", s, sh, sh.String())
			}
			if sh.Count <= 64 {
				it := Item{Bucket: "bkt", Key: key}
				keep := 0
				for j := range sh.Count {
					if (Shard{Index: j, Count: sh.Count}).Keeps(it) {
						keep++
					}
				}
				if keep != 1 || sh.Keeps(it) != (ShardOf(it.Bucket, it.Key, sh.Count) == sh.Index) {
					t.Fatalf("%q is kept by %d of %d shards", key, keep, sh.Count)
				}
			}
		}

		built := Shard{Index: index, Count: count}
		valid := 0 <= index && index < count
		got, err := ParseShard(built.String())
		if valid != (err == nil) || valid && got != built {
			t.Fatalf("ParseShard(%q) = %+v, %v (valid: %v)", built.String(), got, err, valid)
		}
	})
}
