package inventory

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"
)

// Listing is a source that lists a bucket under a prefix: ListObjectsV2
// (current versions; items have no version id), or with AllVersions
// ListObjectVersions (every version and delete marker).
//
// # Fan-out
//
// With Depth 0 the prefix is one partition, listed page by page in key
// order (UTF-8 binary; the versions of a key newest first).
//
// With Depth N > 0 a walk discovers common prefixes N levels deep (listing
// with Delimiter) and the prefixes found at level N are listed at once, up
// to Workers at a time. The walk's listings of levels 0..N-1 also deliver
// the keys directly under those prefixes (keys with no delimiter after the
// prefix): each such level prefix is a partition of its own. The walk runs
// in one goroutine beside the workers and never holds more than a page per
// level, so memory stays flat however many prefixes there are.
//
// Order: each partition's items are in key order, a page at a time; pages
// of different partitions interleave in no particular order, so the stream
// is not globally sorted.
//
// # Resume
//
// Positions are per partition (per prefix): the last key (and version id)
// delivered. A resumed run walks the levels again and lists each partition
// after its position (StartAfter; KeyMarker and VersionIdMarker), or from
// its start when the interrupted run had none; prefixes created since are
// listed from their start. A level partition with a position is read twice
// up to its position: once for its common prefixes, once after the
// position. Positions only fit a listing of the same bucket, prefix,
// AllVersions, Delimiter and Depth; others fail Stream with ErrPosition.
//
// With AllVersions, S3 returns versions and delete markers of a page in two
// lists; they are merged by key and, within a key, by IsLatest and
// LastModified. A delete marker's position is that of the version before
// it, so a resumed run may deliver a delete marker again or, when the merge
// ordered it differently from S3, not at all; never a version. The
// pipeline does not act on delete markers.
type Listing struct {
	Client S3
	Bucket string
	Prefix string
	// AllVersions lists every version and delete marker.
	AllVersions bool
	// Depth is the number of levels of common prefixes the fan-out walks (0:
	// no fan-out).
	Depth int
	// Delimiter of the fan-out (default "/").
	Delimiter string
	// MaxKeys per page (0: the server's default, 1,000 on AWS).
	MaxKeys int32
	Options

	excluded atomic.Int64
}

var _ Source = (*Listing)(nil)

// Excluded returns the keys skipped for Options.ExcludeSuffix so far.
func (l *Listing) Excluded() int64 { return l.excluded.Load() }

// cursor is a point in a partition: after key (and version).
type cursor struct{ key, version string }

// listRun is the state of one Stream call.
type listRun struct {
	l       *Listing
	delim   string
	base    []string // the partition id's fields but scope and prefix
	resume  map[string]cursor
	f       filter
	op      string
	perms   string
	workers int
}

// Stream lists the bucket.
func (l *Listing) Stream(ctx context.Context, fn func(Item) error) error {
	r, err := l.start()
	if err != nil {
		return err
	}
	return deliver(ctx, r.workers, fn, func(ctx context.Context, out emitter) error {
		if l.Depth == 0 {
			return r.list(ctx, l.Prefix, false, out, nil)
		}
		g, ctx := errgroup.WithContext(ctx)
		out = out.under(ctx)
		g.SetLimit(r.workers + 1) // the walk holds one slot
		g.Go(func() error {
			return r.walk(ctx, l.Prefix, 0, out, func(prefix string) {
				g.Go(func() error { return r.list(ctx, prefix, false, out, nil) })
			})
		})
		return g.Wait()
	})
}

func (l *Listing) start() (*listRun, error) {
	fail := func(err error, hint string) error {
		return &Error{Op: "list", Bucket: l.Bucket, Prefix: l.Prefix, Err: err, Hint: hint}
	}
	if err := checkBucket(l.Bucket); err != nil {
		return nil, fail(err, "")
	}
	if l.Client == nil {
		return nil, fail(errors.New("no S3 client"), "")
	}
	if l.Depth < 0 {
		return nil, fail(fmt.Errorf("fan-out depth %d", l.Depth), "give a depth of 0 (no fan-out) or more")
	}
	if err := l.Shard.Validate(); err != nil {
		return nil, fail(err, "")
	}
	r := &listRun{l: l, f: l.filter(&l.excluded, l.Client), workers: l.workers(),
		op: "list", perms: "listing needs s3:ListBucket on arn:aws:s3:::" + l.Bucket}
	mode := "current"
	if l.AllVersions {
		mode = "versions"
		r.op = "list versions"
		r.perms = "listing versions needs s3:ListBucketVersions on arn:aws:s3:::" + l.Bucket
	}
	if l.Depth > 0 {
		r.delim = l.Delimiter
		if r.delim == "" {
			r.delim = "/"
		}
	}
	r.base = []string{positionVersion, kindListing, l.Bucket, l.Prefix, mode, r.delim, strconv.Itoa(l.Depth)}
	after, err := parsePositions(l.After, kindListing)
	if err != nil {
		return nil, &Error{Op: "resume", Bucket: l.Bucket, Prefix: l.Prefix, Err: err,
			Hint: "resume with the positions of a run over the same --source"}
	}
	r.resume = make(map[string]cursor, len(after))
	for id, p := range after {
		// fields: kind, bucket, prefix, mode, delimiter, depth, scope, prefix
		same := len(p.fields) == 8 && len(p.cursor) == 2
		for i := 1; same && i < 6; i++ {
			same = p.fields[i] == r.base[i+1]
		}
		if !same {
			return nil, &Error{Op: "resume", Bucket: l.Bucket, Prefix: l.Prefix, Kind: ErrPosition,
				Err:  fmt.Errorf("position %q is not one of this listing", p.part),
				Hint: "resume with the same --source, --all-versions and fan-out settings as the interrupted run"}
		}
		r.resume[id] = cursor{key: p.cursor[0], version: p.cursor[1]}
	}
	return r, nil
}

// partID returns the id of the partition of prefix: the keys directly
// under it (level) or all keys under it.
func (r *listRun) partID(prefix string, level bool) string {
	scope := "all"
	if level {
		scope = "level"
	}
	return joinFields(append(r.base[:len(r.base):len(r.base)], scope, prefix)...)
}

// walk lists the level partition of prefix (at level < Depth) and, for
// each common prefix, walks it or, at the last level, hands it to spawn.
func (r *listRun) walk(ctx context.Context, prefix string, level int, out emitter, spawn func(string)) error {
	return r.list(ctx, prefix, true, out, func(ctx context.Context, cp string) error {
		if level+1 < r.l.Depth {
			return r.walk(ctx, cp, level+1, out, spawn)
		}
		spawn(cp)
		return nil
	})
}

// list lists one partition and delivers its items. For a level partition
// it calls child for each common prefix.
func (r *listRun) list(ctx context.Context, prefix string, level bool, out emitter, child func(context.Context, string) error) error {
	id := r.partID(prefix, level)
	from := r.resume[id]
	delim := ""
	if level {
		delim = r.delim
	}
	if level && from.key != "" {
		// The common prefixes before the position: the listing after it
		// does not return them.
		pg := r.pager(prefix, delim, cursor{})
		for done := false; !done && pg.more(); {
			p, err := pg.next(ctx)
			if err != nil {
				return r.fail(prefix, err)
			}
			for _, cp := range p.prefixes {
				if cp >= from.key {
					done = true
					break
				}
				if err := child(ctx, cp); err != nil {
					return err
				}
			}
			if n := len(p.items); n > 0 && p.items[n-1].Key >= from.key {
				done = true
			}
		}
	}
	pg := r.pager(prefix, delim, from)
	last := from
	pf := r.f.partition()
	// The instruction files a page shows missing: not with a delimiter
	// that the suffix holds (KEY+suffix would then be a common prefix).
	suffix := r.l.ExcludeSuffix
	if level && strings.Contains(suffix, delim) {
		suffix = ""
	}
	for pg.more() {
		at := time.Now()
		p, err := pg.next(ctx)
		if err != nil {
			return r.fail(prefix, err)
		}
		markNoInstructionFile(p.items, suffix, !pg.more(), at)
		batch := make([]Item, 0, len(p.items))
		for _, it := range p.items {
			if !it.DeleteMarker {
				last = cursor{key: it.Key, version: it.VersionID}
			}
			keep, unpaired, err := pf.keep(ctx, it.Bucket, it.Key)
			if err != nil {
				return err
			}
			if !keep {
				continue
			}
			it.UnpairedSuffix = unpaired
			it.Position = id + "#" + joinFields(last.key, last.version)
			batch = append(batch, it)
		}
		if err := out.send(batch); err != nil {
			return err
		}
		for _, cp := range p.prefixes {
			if err := child(ctx, cp); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r *listRun) fail(prefix string, err error) error {
	return (&Error{Op: r.op, Bucket: r.l.Bucket, Prefix: prefix, Err: err}).classify(r.perms)
}

// page is one response of a listing: items in order, and common prefixes.
type page struct {
	items    []Item
	prefixes []string
}

type pager interface {
	more() bool
	next(context.Context) (page, error)
}

func (r *listRun) pager(prefix, delim string, from cursor) pager {
	var maxKeys *int32
	if r.l.MaxKeys > 0 {
		maxKeys = aws.Int32(r.l.MaxKeys)
	}
	if !r.l.AllVersions {
		in := &s3.ListObjectsV2Input{Bucket: aws.String(r.l.Bucket), Prefix: aws.String(prefix), MaxKeys: maxKeys,
			EncodingType: types.EncodingTypeUrl}
		if delim != "" {
			in.Delimiter = aws.String(delim)
		}
		if from.key != "" {
			in.StartAfter = aws.String(from.key)
		}
		return &v2Pager{bucket: r.l.Bucket, p: s3.NewListObjectsV2Paginator(r.l.Client, in)}
	}
	in := &s3.ListObjectVersionsInput{Bucket: aws.String(r.l.Bucket), Prefix: aws.String(prefix), MaxKeys: maxKeys,
		EncodingType: types.EncodingTypeUrl}
	if delim != "" {
		in.Delimiter = aws.String(delim)
	}
	if from.key != "" {
		in.KeyMarker = aws.String(from.key)
		if from.version != "" {
			in.VersionIdMarker = aws.String(from.version)
		}
	}
	return &versionPager{client: r.l.Client, bucket: r.l.Bucket, in: in}
}

// decoder undoes EncodingType=url when the server applied it (S3 does;
// some S3-compatible servers ignore the parameter and say so by leaving it
// out of the response).
type decoder struct {
	on  bool
	err error
}

func (d *decoder) s(p *string) string {
	v := aws.ToString(p)
	if !d.on || d.err != nil {
		return v
	}
	u, err := url.QueryUnescape(v)
	if err != nil {
		d.err = fmt.Errorf("listing returned a key that is not URL-encoded: %q", v)
	}
	return u
}

type v2Pager struct {
	bucket string
	p      *s3.ListObjectsV2Paginator
}

func (v *v2Pager) more() bool { return v.p.HasMorePages() }

func (v *v2Pager) next(ctx context.Context) (page, error) {
	out, err := v.p.NextPage(ctx)
	if err != nil {
		return page{}, err
	}
	d := decoder{on: out.EncodingType == types.EncodingTypeUrl}
	p := page{items: make([]Item, 0, len(out.Contents))}
	for _, o := range out.Contents {
		p.items = append(p.items, Item{
			Bucket:       v.bucket,
			Key:          d.s(o.Key),
			IsLatest:     true,
			Size:         aws.ToInt64(o.Size),
			ETag:         aws.ToString(o.ETag),
			LastModified: aws.ToTime(o.LastModified),
			StorageClass: string(o.StorageClass),
		})
	}
	for _, cp := range out.CommonPrefixes {
		p.prefixes = append(p.prefixes, d.s(cp.Prefix))
	}
	if aws.ToBool(out.IsTruncated) && aws.ToString(out.NextContinuationToken) == aws.ToString(out.ContinuationToken) {
		return page{}, errors.New("truncated listing without a new continuation token")
	}
	return p, d.err
}

type versionPager struct {
	client S3
	bucket string
	in     *s3.ListObjectVersionsInput
	done   bool
}

func (v *versionPager) more() bool { return !v.done }

func (v *versionPager) next(ctx context.Context) (page, error) {
	out, err := v.client.ListObjectVersions(ctx, v.in)
	if err != nil {
		return page{}, err
	}
	d := decoder{on: out.EncodingType == types.EncodingTypeUrl}
	vs := make([]Item, 0, len(out.Versions))
	for _, o := range out.Versions {
		vs = append(vs, Item{
			Bucket:       v.bucket,
			Key:          d.s(o.Key),
			VersionID:    aws.ToString(o.VersionId),
			IsLatest:     aws.ToBool(o.IsLatest),
			Size:         aws.ToInt64(o.Size),
			ETag:         aws.ToString(o.ETag),
			LastModified: aws.ToTime(o.LastModified),
			StorageClass: string(o.StorageClass),
		})
	}
	dms := make([]Item, 0, len(out.DeleteMarkers))
	for _, o := range out.DeleteMarkers {
		dms = append(dms, Item{
			Bucket:       v.bucket,
			Key:          d.s(o.Key),
			VersionID:    aws.ToString(o.VersionId),
			IsLatest:     aws.ToBool(o.IsLatest),
			DeleteMarker: true,
			LastModified: aws.ToTime(o.LastModified),
		})
	}
	p := page{items: mergeVersions(vs, dms)}
	// The version at the markers was delivered with the previous page (or
	// before the position resumed from). S3 does not return it again;
	// versitygw 1.8 does when it is a key's latest version.
	if km, vm := aws.ToString(v.in.KeyMarker), aws.ToString(v.in.VersionIdMarker); vm != "" {
		p.items = slices.DeleteFunc(p.items, func(it Item) bool { return it.Key == km && it.VersionID == vm })
	}
	for _, cp := range out.CommonPrefixes {
		p.prefixes = append(p.prefixes, d.s(cp.Prefix))
	}
	if !aws.ToBool(out.IsTruncated) {
		v.done = true
		return p, d.err
	}
	key, version := d.s(out.NextKeyMarker), aws.ToString(out.NextVersionIdMarker)
	if key == "" || key == aws.ToString(v.in.KeyMarker) && version == aws.ToString(v.in.VersionIdMarker) {
		return page{}, errors.New("truncated listing without a new NextKeyMarker")
	}
	v.in.KeyMarker, v.in.VersionIdMarker = aws.String(key), nil
	if version != "" {
		v.in.VersionIdMarker = aws.String(version)
	}
	return p, d.err
}

// mergeVersions merges the versions and the delete markers of a page into
// S3's order: by key, and within a key newest first (the current version
// first, then by LastModified; a tie puts the version first). Each list
// keeps its own order.
func mergeVersions(vs, dms []Item) []Item {
	if len(dms) == 0 {
		return vs
	}
	out := make([]Item, 0, len(vs)+len(dms))
	for len(vs) > 0 || len(dms) > 0 {
		if len(dms) == 0 || len(vs) > 0 && versionFirst(vs[0], dms[0]) {
			out = append(out, vs[0])
			vs = vs[1:]
		} else {
			out = append(out, dms[0])
			dms = dms[1:]
		}
	}
	return out
}

func versionFirst(v, dm Item) bool {
	switch {
	case v.Key != dm.Key:
		return v.Key < dm.Key
	case dm.IsLatest:
		return false
	case v.IsLatest:
		return true
	}
	return !dm.LastModified.After(v.LastModified)
}
