package pipeline

import (
	"context"
	"sort"
	"sync"
)

// gb is the byte count AWS bills storage and transfer by (a GB is 2^30
// bytes in AWS's storage pricing).
const gb = 1 << 30

// daysPerMonth turns days kept into the GB-months storage is billed in.
const daysPerMonth = 30

// WriteCosts are what a run's writes store and ship beyond their requests,
// from the buckets' versioning, replication and lifecycle configuration:
// in a versioned bucket every write keeps the version it replaces (a
// self-copy keeps the whole body once more) until a lifecycle rule expires
// it, and with replication every write is shipped to each destination.
type WriteCosts struct {
	// Buckets is what plan read of each bucket's configuration.
	Buckets []BucketConfig `json:"buckets"`
	// WrittenBytes are the bytes the run's writes store (self-copies,
	// new content, instruction files).
	WrittenBytes int64 `json:"written_bytes"`
	// NoncurrentBytes are the bytes of the versions the writes replace
	// that stay as noncurrent versions; NoncurrentExpiringBytes of them
	// are expired by a NoncurrentVersionExpiration rule, after
	// NoncurrentDaysMin to NoncurrentDaysMax days (NoncurrentGBMonths is
	// what they are billed for until then); the rest are kept until
	// someone deletes them.
	NoncurrentBytes         int64   `json:"noncurrent_bytes"`
	NoncurrentExpiringBytes int64   `json:"noncurrent_expiring_bytes"`
	NoncurrentDaysMin       int     `json:"noncurrent_days_min,omitempty"`
	NoncurrentDaysMax       int     `json:"noncurrent_days_max,omitempty"`
	NoncurrentGBMonths      float64 `json:"noncurrent_gb_months"`
	// ReplicatedBytes are the bytes replication ships (summed over the
	// destinations), in ReplicatedWrites writes at the destinations.
	ReplicatedBytes  int64 `json:"replicated_bytes"`
	ReplicatedWrites int64 `json:"replicated_writes"`
}

// byteCost is what one write stores and ships beyond its request.
type byteCost struct {
	written, noncurrent, expiring int64
	gbMonths                      float64
	days                          int
	replicated, replicas          int64
}

// costOfWrite is what a write of size bytes over key's current version
// (versionID, replaced bytes) costs beyond its request in bucket bc (nil:
// not read).
func costOfWrite(bc *BucketConfig, key, versionID string, size, replaced int64) byteCost {
	c := byteCost{written: size}
	if bc == nil {
		return c
	}
	if replaced > 0 && bc.keepsNoncurrent(versionID) {
		c.noncurrent = replaced
		if d := bc.noncurrentDays(key, replaced); d > 0 {
			c.expiring, c.days = replaced, d
			c.gbMonths = float64(replaced) / gb * float64(d) / daysPerMonth
		}
	}
	if n := int64(bc.replicas(key)); n > 0 {
		c.replicas, c.replicated = n, n*size
	}
	return c
}

// usd prices c: once (replication, and the noncurrent bytes a rule
// expires, for as long as they are kept) and per month (the noncurrent
// bytes no rule expires).
func (c byteCost) usd(p Prices) (once, monthly float64) {
	once = c.gbMonths*p.StorageGBMonth + float64(c.replicated)/gb*p.ReplicationGB + float64(c.replicas)*p.S3Put
	monthly = float64(c.noncurrent-c.expiring) / gb * p.StorageGBMonth
	return once, monthly
}

func (w *WriteCosts) add(c byteCost) {
	w.WrittenBytes += c.written
	w.NoncurrentBytes += c.noncurrent
	w.NoncurrentExpiringBytes += c.expiring
	w.NoncurrentGBMonths += c.gbMonths
	if c.days > 0 {
		if w.NoncurrentDaysMin == 0 || c.days < w.NoncurrentDaysMin {
			w.NoncurrentDaysMin = c.days
		}
		w.NoncurrentDaysMax = max(w.NoncurrentDaysMax, c.days)
	}
	w.ReplicatedBytes += c.replicated
	w.ReplicatedWrites += c.replicas
}

// PlacementCosts compare, for the objects whose envelope is in their
// metadata, a rotation as it is (a self-copy of every object) with a
// rotation after --placement instruction-file moved their envelopes into
// instruction files (one small PutObject per object, the body never
// copied again), and the one-time cost of the move. Costs are in USD:
// *Once what a rotation costs when it runs (requests, replication,
// noncurrent copies until a lifecycle rule expires them), *Monthly what
// it adds per month for noncurrent copies no rule expires.
type PlacementCosts struct {
	// Objects in metadata placement, their bytes, and the bytes of the
	// instruction files they would get.
	Objects          int64 `json:"objects"`
	ObjectBytes      int64 `json:"object_bytes"`
	InstructionBytes int64 `json:"instruction_bytes"`
	// A rotation with the envelopes in metadata (each object copied).
	RotationOnceUSD    float64 `json:"rotation_usd"`
	RotationMonthlyUSD float64 `json:"rotation_monthly_usd"`
	// The move (one self-copy and one new instruction file per object;
	// with a rewrap in the same run it is that run's copy).
	MoveOnceUSD    float64 `json:"move_usd"`
	MoveMonthlyUSD float64 `json:"move_monthly_usd"`
	// Each rotation after the move (one instruction file rewritten).
	MovedRotationOnceUSD    float64 `json:"moved_rotation_usd"`
	MovedRotationMonthlyUSD float64 `json:"moved_rotation_monthly_usd"`
}

// bucketConfigs reads each bucket's configuration once.
type bucketConfigs struct {
	r  BucketConfigReader
	mu sync.Mutex
	m  map[string]*bucketEntry
}

type bucketEntry struct {
	once sync.Once
	bc   BucketConfig
	err  error
}

// get returns bucket's configuration (nil when no reader is configured);
// err is set only when ctx ended.
func (b *bucketConfigs) get(ctx context.Context, bucket string) (*BucketConfig, error) {
	if b == nil || b.r == nil {
		return nil, nil
	}
	b.mu.Lock()
	e := b.m[bucket]
	if e == nil {
		e = &bucketEntry{}
		b.m[bucket] = e
	}
	b.mu.Unlock()
	e.once.Do(func() { e.bc, e.err = ReadBucketConfig(ctx, b.r, bucket) })
	if e.err != nil {
		return nil, e.err
	}
	return &e.bc, nil
}

func (b *bucketConfigs) all() []BucketConfig {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]BucketConfig, 0, len(b.m))
	for _, e := range b.m {
		if e.err == nil {
			out = append(out, e.bc)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Bucket < out[j].Bucket })
	return out
}
