package inventory

import (
	"fmt"
	"strconv"
	"strings"
)

// Shard selects one of Count disjoint parts of a run (--shard Index/Count),
// so that Count processes can share a bucket. An item belongs to shard
// FNV-1a-64(bucket + "/" + key) mod Count: every version of a key is in the
// same shard. The zero value (Count 0) keeps every item.
type Shard struct {
	Index, Count int
}

// ParseShard parses "i/N" with 0 <= i < N.
func ParseShard(s string) (Shard, error) {
	i, n, ok := strings.Cut(s, "/")
	if ok {
		index, err1 := strconv.Atoi(i)
		count, err2 := strconv.Atoi(n)
		if err1 == nil && err2 == nil {
			sh := Shard{Index: index, Count: count}
			if err := sh.Validate(); err != nil {
				return Shard{}, err
			}
			return sh, nil
		}
	}
	return Shard{}, fmt.Errorf("shard %q: want INDEX/COUNT, e.g. 0/4", s)
}

// Validate checks 0 <= Index < Count (or the zero value).
func (s Shard) Validate() error {
	if s == (Shard{}) {
		return nil
	}
	if s.Count < 1 || s.Index < 0 || s.Index >= s.Count {
		return fmt.Errorf("shard %d/%d: want 0 <= index < count", s.Index, s.Count)
	}
	return nil
}

// String returns "Index/Count".
func (s Shard) String() string { return fmt.Sprintf("%d/%d", s.Index, s.Count) }

// Keeps reports whether it belongs to the shard.
func (s Shard) Keeps(it Item) bool { return s.keeps(it.Bucket, it.Key) }

func (s Shard) keeps(bucket, key string) bool {
	if s.Count <= 1 {
		return true
	}
	return ShardOf(bucket, key, s.Count) == s.Index
}

// ShardOf returns the shard, among count, of bucket and key.
func ShardOf(bucket, key string, count int) int {
	h := uint64(fnvOffset64)
	h = fnv1a(h, bucket)
	h = fnv1a(h, "/")
	h = fnv1a(h, key)
	return int(h % uint64(count))
}

// FNV-1a, 64 bits (the same as hash/fnv.New64a, without allocating).
const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

func fnv1a(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime64
	}
	return h
}
