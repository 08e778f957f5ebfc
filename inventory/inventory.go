package inventory

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Item is one object version a run must consider. Sources fill in what they
// know: a ListObjectsV2 listing has no version ids, a CSV list only
// bucket, key and version.
type Item struct {
	Bucket string
	Key    string
	// VersionID is empty when the source does not name versions (a plain
	// listing, a list without a version column, a report of current
	// versions only).
	VersionID string
	// IsLatest: the version is the key's current version. Sources that list
	// current versions only set it to true; a CSV list sets it to true when
	// it names no version and false when it does (it cannot know).
	IsLatest bool
	// DeleteMarker: the version is a delete marker. Only --all-versions
	// sources emit delete markers; the pipeline never touches them.
	DeleteMarker bool
	// UnpairedSuffix: the key ends with Options.ExcludeSuffix, yet no
	// object KEY (the key without the suffix) exists: an object whose own
	// key ends in the suffix, or an instruction file its object outlived.
	// Only with Options.ReportUnpaired.
	UnpairedSuffix bool
	// NoInstructionFile, when not empty, is the suffix S (Options.ExcludeSuffix)
	// of which the listing proved there was no key KEY+S when it listed this
	// item's page (ListedAt): a bucket listing (not a report or a list),
	// whose pages come in key order, sees where KEY+S would be. A snapshot:
	// an instruction file may appear after it, so a reader trusts it only
	// for an object it finds unchanged since, and old enough (see
	// pipeline's Classify).
	NoInstructionFile string
	// ListedAt is when the page of a bucket listing holding the item was
	// requested (zero for other sources).
	ListedAt time.Time
	Size     int64
	// ETag in double quotes, as S3 returns it in headers and listings (S3
	// Inventory reports leave the quotes out; they are added back).
	ETag         string
	LastModified time.Time
	StorageClass string
	// Position is the opaque resume position after this item: see Progress.
	Position string
}

// String names the item as s3://bucket/key[@version].
func (it Item) String() string {
	s := "s3://" + it.Bucket + "/" + it.Key
	if it.VersionID != "" {
		s += "@" + it.VersionID
	}
	return s
}

// Source streams the items of a run.
type Source interface {
	// Stream calls fn for each item, from one goroutine at a time, in the
	// source's documented order. It returns when every item was delivered,
	// ctx is done or fn returns an error (which Stream returns as is). No
	// goroutine of the source outlives Stream.
	Stream(ctx context.Context, fn func(Item) error) error
}

// Excluder is implemented by the sources of this package: the number of
// keys skipped because of Options.ExcludeSuffix so far.
type Excluder interface {
	Excluded() int64
}

// S3 is the part of the S3 API the sources use. *s3.Client satisfies it;
// tests use fakes.
type S3 interface {
	ListObjectsV2(context.Context, *s3.ListObjectsV2Input, ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
	ListObjectVersions(context.Context, *s3.ListObjectVersionsInput, ...func(*s3.Options)) (*s3.ListObjectVersionsOutput, error)
	GetObject(context.Context, *s3.GetObjectInput, ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

var _ S3 = (*s3.Client)(nil)

// DefaultWorkers is the default of Options.Workers.
const DefaultWorkers = 8

// DefaultExcludeSuffix is the suffix of the S3 Encryption Client's
// instruction files (envelope.DefaultInstructionSuffix): the value the CLI
// gives Options.ExcludeSuffix unless told otherwise.
const DefaultExcludeSuffix = ".instruction"

// Options are the settings every source shares. The zero value lists
// everything from the start with DefaultWorkers.
type Options struct {
	// Workers bounds the partitions read at once: prefixes of a fanned-out
	// listing, data files of an S3 Inventory report (default
	// DefaultWorkers). A CSV list is read by one goroutine.
	Workers int
	// ExcludeSuffix drops keys that end with it (instruction files,
	// DefaultExcludeSuffix) before they reach the stream; Excluded counts
	// them. Empty keeps every key.
	ExcludeSuffix string
	// ReportUnpaired delivers the keys that end with ExcludeSuffix although
	// no object KEY (the key without it) exists, flagged
	// Item.UnpairedSuffix, instead of dropping them: an object whose own
	// key ends in the suffix is then reported rather than skipped in
	// silence. Telling them from instruction files takes bounded memory
	// and, for a key whose object was not listed before it in its
	// partition, one ranged GET (see partFilter).
	ReportUnpaired bool
	// Shard keeps only the items of one shard; the zero value keeps all.
	Shard Shard
	// After resumes an interrupted run: the positions Progress.Positions
	// returned, at most one per partition. Each partition is read after its
	// position, the others from their start. A position of another source
	// fails Stream with ErrPosition.
	After []string
}

func (o *Options) workers() int {
	if o.Workers > 0 {
		return o.Workers
	}
	return DefaultWorkers
}

// filter applies ExcludeSuffix and Shard and counts exclusions. Sources
// apply it through partFilter, one per partition.
type filter struct {
	suffix         string
	shard          Shard
	excluded       *atomic.Int64
	reportUnpaired bool
	client         S3 // looks up objects for ReportUnpaired; may be nil
}

func (o *Options) filter(excluded *atomic.Int64, client S3) filter {
	return filter{suffix: o.ExcludeSuffix, shard: o.Shard, excluded: excluded, reportUnpaired: o.ReportUnpaired, client: client}
}

// keep reports whether the item for bucket and key goes into the stream.
func (f filter) keep(bucket, key string) bool {
	if f.suffix != "" && strings.HasSuffix(key, f.suffix) {
		f.excluded.Add(1)
		return false
	}
	return f.shard.keeps(bucket, key)
}

// Send streams src onto out and closes out when done: the producer of a
// pipeline stage. Every send selects on ctx.
func Send(ctx context.Context, src Source, out chan<- Item) error {
	defer close(out)
	return src.Stream(ctx, func(it Item) error {
		select {
		case out <- it:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
}

// emitter delivers batches of items from the producers of a source to the
// goroutine that calls fn.
type emitter struct {
	ctx context.Context
	ch  chan<- []Item
}

// under returns e with sends that also give up when ctx is done.
func (e emitter) under(ctx context.Context) emitter { return emitter{ctx: ctx, ch: e.ch} }

func (e emitter) send(batch []Item) error {
	if len(batch) == 0 {
		return nil
	}
	select {
	case e.ch <- batch:
		return nil
	case <-e.ctx.Done():
		return e.ctx.Err()
	}
}

// deliver runs produce and calls fn for every item it emits, from the
// calling goroutine. Memory is bounded by the batches in flight: buffer
// batches queued plus one per producer. When fn fails, produce is cancelled
// and fn's error returned; deliver returns only after produce has.
func deliver(ctx context.Context, buffer int, fn func(Item) error, produce func(context.Context, emitter) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan []Item, buffer)
	perr := make(chan error, 1)
	go func() {
		defer close(ch)
		perr <- produce(ctx, emitter{ctx: ctx, ch: ch})
	}()
	var ferr error
	for batch := range ch {
		if ferr != nil {
			continue // drain until the producers have stopped
		}
		for _, it := range batch {
			if err := fn(it); err != nil {
				ferr = err
				cancel()
				break
			}
		}
	}
	err := <-perr
	if ferr != nil {
		return ferr
	}
	return err
}
