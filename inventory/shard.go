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
			// Not Validate: it takes the zero value (no sharding), which
			// "0/0" would otherwise parse to, and --shard 0/0 would run
			// over the whole source.
			if count < 1 || index < 0 || index >= count {
				return Shard{}, fmt.Errorf("shard %d/%d: want 0 <= index < count", index, count)
			}
			return Shard{Index: index, Count: count}, nil
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

// Environment variables ResolveShard reads for --shard auto.
const (
	// EnvJobCompletionIndex is set by Kubernetes in every pod of an
	// Indexed Job (0 to .spec.completions-1).
	EnvJobCompletionIndex = "JOB_COMPLETION_INDEX"
	// EnvBatchArrayIndex and EnvBatchArraySize are set by AWS Batch in
	// every child of an array job.
	EnvBatchArrayIndex = "AWS_BATCH_JOB_ARRAY_INDEX"
	EnvBatchArraySize  = "AWS_BATCH_JOB_ARRAY_SIZE"
	// EnvShardCount gives the number of shards where the scheduler does
	// not (a Kubernetes Indexed Job: set it to .spec.completions).
	EnvShardCount = "ROTATOR_SHARD_COUNT"
)

// ShardAuto is the --shard value that takes the shard from the
// environment of an array job.
const ShardAuto = "auto"

// ResolveShard turns --shard (spec: "", "i/N" or "auto") and --shard-count
// (count, 0 when not given) into a Shard, reading the environment of a
// Kubernetes Indexed Job or an AWS Batch array job through getenv. With
// "auto" the index comes from exactly one of JOB_COMPLETION_INDEX and
// AWS_BATCH_JOB_ARRAY_INDEX, and the count from --shard-count,
// ROTATOR_SHARD_COUNT and AWS_BATCH_JOB_ARRAY_SIZE (Batch only), which
// must agree where several are given. An explicit "i/N" must agree with
// whatever of these is set. Anything ambiguous or inconsistent is an
// error that says which settings disagree; "" gives the zero Shard.
func ResolveShard(spec string, count int, getenv func(string) string) (Shard, error) {
	if count < 0 {
		return Shard{}, fmt.Errorf("--shard-count %d: want the number of shards (or leave it out)", count)
	}
	k8s, batchIdx, batchSize := getenv(EnvJobCompletionIndex), getenv(EnvBatchArrayIndex), getenv(EnvBatchArraySize)
	if spec == "" {
		if count != 0 {
			return Shard{}, fmt.Errorf("--shard-count %d needs --shard auto (the index from the job's environment) or --shard i/N", count)
		}
		return Shard{}, nil
	}
	if k8s != "" && (batchIdx != "" || batchSize != "") {
		return Shard{}, fmt.Errorf("ambiguous shard environment: both %s=%s (a Kubernetes Indexed Job) and %s (an AWS Batch array job) are set; "+
			"unset the one that does not apply, or give --shard i/N", EnvJobCompletionIndex, k8s, batchVars(batchIdx, batchSize))
	}
	// Every count given, by where it comes from.
	type setting struct{ name, value string }
	var counts []setting
	if count != 0 {
		counts = append(counts, setting{"--shard-count", strconv.Itoa(count)})
	}
	if v := getenv(EnvShardCount); v != "" {
		counts = append(counts, setting{EnvShardCount, v})
	}
	if batchSize != "" {
		counts = append(counts, setting{EnvBatchArraySize, batchSize})
	}
	n := 0
	for _, c := range counts {
		v, err := strconv.Atoi(c.value)
		if err != nil || v < 1 {
			return Shard{}, fmt.Errorf("%s=%q: want the number of shards, a positive integer", c.name, c.value)
		}
		if n != 0 && v != n {
			var all []string
			for _, c := range counts {
				all = append(all, c.name+"="+c.value)
			}
			return Shard{}, fmt.Errorf("inconsistent shard counts: %s; give the same count everywhere (the Job's completions, the array's size)", strings.Join(all, ", "))
		}
		n = v
	}
	idxName, idxValue := EnvJobCompletionIndex, k8s
	if batchIdx != "" {
		idxName, idxValue = EnvBatchArrayIndex, batchIdx
	}
	if spec != ShardAuto {
		sh, err := ParseShard(spec)
		if err != nil {
			return Shard{}, fmt.Errorf("%w (or auto, to read it from a Kubernetes Indexed Job or an AWS Batch array job)", err)
		}
		if n != 0 && n != sh.Count {
			return Shard{}, fmt.Errorf("--shard %s disagrees with %s=%d: give one shard count", spec, counts[0].name, n)
		}
		if idxValue != "" && idxValue != strconv.Itoa(sh.Index) {
			return Shard{}, fmt.Errorf("--shard %s disagrees with %s=%s: give --shard auto to take the index from the job", spec, idxName, idxValue)
		}
		return sh, nil
	}
	if idxValue == "" {
		return Shard{}, fmt.Errorf("--shard auto: no shard index in the environment: %s (a Kubernetes Indexed Job) or %s (an AWS Batch array job) is not set; "+
			"outside such a job give --shard i/N", EnvJobCompletionIndex, EnvBatchArrayIndex)
	}
	i, err := strconv.Atoi(idxValue)
	if err != nil || i < 0 {
		return Shard{}, fmt.Errorf("%s=%q: want a shard index, a non-negative integer", idxName, idxValue)
	}
	if n == 0 {
		return Shard{}, fmt.Errorf("--shard auto: %s=%d gives the shard's index but not the number of shards: give --shard-count N or set %s (the Job's .spec.completions)",
			idxName, i, EnvShardCount)
	}
	if i >= n {
		return Shard{}, fmt.Errorf("%s=%d is not below the shard count %d (%s): every setting must count the same shards", idxName, i, n, counts[0].name)
	}
	return Shard{Index: i, Count: n}, nil
}

func batchVars(idx, size string) string {
	var s []string
	if idx != "" {
		s = append(s, EnvBatchArrayIndex+"="+idx)
	}
	if size != "" {
		s = append(s, EnvBatchArraySize+"="+size)
	}
	return strings.Join(s, ", ")
}
