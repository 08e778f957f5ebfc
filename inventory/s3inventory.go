package inventory

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/parquet-go/parquet-go"
	"github.com/rotator-dev/rotator/internal/awsx"
	"golang.org/x/sync/errgroup"
)

// S3Inventory is a source that reads an S3 Inventory report from its
// manifest.json: the data files it lists, in CSV (gzip-compressed, the
// columns of the manifest's fileSchema, keys URL-encoded) or Parquet.
// ORC reports fail with ErrORC.
//
// Each data file is a partition; up to Workers files are read at once and
// their items interleave, each file's in file order. Every data file is
// checked against the MD5 checksum and size in the manifest while it is
// read:
//   - CSV files are streamed (GET, MD5, gunzip, parse). A mismatch is
//     found at the end of the file and fails the stream with ErrChecksum;
//     the file's items before it have been delivered, its last one has
//     not.
//   - Parquet files need random access: each is first copied to a
//     temporary file in TempDir while its MD5 is computed, checked, then
//     read a page at a time. No item of a file that fails the check is
//     delivered. Disk use is up to Workers data files (S3 writes data
//     files of up to a few hundred MB) of at most MaxFileBytes each: a
//     file the manifest lists as larger fails with ErrTooLarge unread.
//
// No data file is read beyond the size its manifest announces.
//
// Every row must name the manifest's sourceBucket (or no bucket): a row
// naming another bucket fails the stream with ErrForeignBucket before it is
// delivered, so a tampered report cannot aim a run at another bucket.
// Items before it have been delivered (they are in the source bucket).
//
// Without AllVersions only current versions are delivered (rows with
// IsLatest true, when the report has that column, that are not delete
// markers). With AllVersions every row is, delete markers included, and a
// report of current versions only (no VersionId column) is an error.
//
// Positions are rows of a data file; a resumed run skips files whose last
// row was delivered, and skips the rows before the position of the others
// (a CSV file is read from its start again, a Parquet file seeks).
type S3Inventory struct {
	Client S3
	// Manifest is the s3:// URL of the report's manifest.json.
	Manifest    string
	AllVersions bool
	// TempDir holds Parquet files while they are read (default
	// os.TempDir()).
	TempDir string
	// MaxFileBytes bounds the size of a Parquet data file, which is copied
	// to TempDir before it is read (default DefaultMaxFileBytes): a file
	// the manifest lists as larger fails with ErrTooLarge before it is
	// fetched.
	MaxFileBytes int64
	Options

	excluded atomic.Int64
	mu       sync.Mutex
	m        *Manifest
	// readBytes of totalBytes, the data files' sizes: Fraction.
	readBytes, totalBytes atomic.Int64
}

var _ Source = (*S3Inventory)(nil)

// Excluded returns the keys skipped for Options.ExcludeSuffix so far.
func (s *S3Inventory) Excluded() int64 { return s.excluded.Load() }

// ReadManifest reads, checks and caches the manifest. When a
// manifest.checksum lies beside manifest.json, the manifest's MD5 must
// match it.
func (s *S3Inventory) ReadManifest(ctx context.Context) (*Manifest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m != nil {
		return s.m, nil
	}
	fail := func(kind, err error, hint string) error {
		return &Error{Op: "read manifest", File: s.Manifest, Kind: kind, Err: err, Hint: hint}
	}
	bucket, key, err := ParseS3URL(s.Manifest)
	if err == nil && key == "" {
		err = errors.New("no key")
	}
	if err != nil {
		return nil, fail(nil, err, "give --inventory as s3://BUCKET/PATH/manifest.json")
	}
	if s.Client == nil {
		return nil, fail(nil, errors.New("no S3 client"), "")
	}
	data, err := s.getSmall(ctx, bucket, key)
	if err != nil {
		return nil, err
	}
	if dir, ok := strings.CutSuffix(key, "manifest.json"); ok {
		sum, err := s.getSmall(ctx, bucket, dir+"manifest.checksum")
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return nil, err
		default:
			got := md5.Sum(data)
			if want := strings.ToLower(strings.TrimSpace(string(sum))); want != hex.EncodeToString(got[:]) {
				return nil, fail(ErrChecksum, fmt.Errorf("MD5 %x, manifest.checksum says %s", got, want),
					"the manifest was changed or is incomplete: use the manifest of a finished report")
			}
		}
	}
	m, err := ParseManifest(data)
	if err != nil {
		return nil, fail(nil, err, "give the manifest.json of an S3 Inventory report")
	}
	if m.DestinationBucket == "" {
		m.DestinationBucket = bucket
	}
	s.m = m
	return m, nil
}

// getSmall reads a whole object of at most MaxManifestBytes.
func (s *S3Inventory) getSmall(ctx context.Context, bucket, key string) ([]byte, error) {
	where := "s3://" + bucket + "/" + key
	obj, err := s.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, (&Error{Op: "read manifest", File: where, Err: err}).classify("reading a report needs s3:GetObject on its manifest and data files")
	}
	defer obj.Body.Close()
	data, err := io.ReadAll(io.LimitReader(obj.Body, MaxManifestBytes+1))
	if err != nil {
		return nil, &Error{Op: "read manifest", File: where, Err: err}
	}
	if len(data) > MaxManifestBytes {
		return nil, &Error{Op: "read manifest", File: where, Kind: ErrMalformed, Err: fmt.Errorf("larger than %d bytes", MaxManifestBytes)}
	}
	return data, nil
}

// invCursor is where a data file is resumed: after row (1-based), or not
// at all when last.
type invCursor struct {
	row  int64
	last bool
}

// Stream reads the report's data files.
func (s *S3Inventory) Stream(ctx context.Context, fn func(Item) error) error {
	if err := s.Shard.Validate(); err != nil {
		return &Error{Op: "read report", File: s.Manifest, Err: err}
	}
	m, err := s.ReadManifest(ctx)
	if err != nil {
		return err
	}
	var schema csvSchema
	switch m.FileFormat {
	case FormatORC:
		return &Error{Op: "read report", File: s.Manifest, Kind: ErrORC,
			Hint: "edit the inventory configuration (Output format) and wait for the next report, or list the bucket with --source"}
	case FormatCSV:
		schema, _ = parseCSVSchema(m.FileSchema) // checked by ParseManifest
		if s.AllVersions && schema.version < 0 {
			return s.currentOnly()
		}
	}
	parts := make([]string, len(m.Files))
	byPart := make(map[string]int, len(m.Files))
	for i, f := range m.Files {
		parts[i] = joinFields(positionVersion, kindInventory, s.Manifest, f.Key)
		byPart[parts[i]] = i
	}
	cursors := make([]invCursor, len(m.Files))
	after, err := parsePositions(s.After, kindInventory)
	if err != nil {
		return &Error{Op: "resume", File: s.Manifest, Err: err, Hint: "resume with the positions of a run over the same --inventory"}
	}
	for id, p := range after {
		i, ok := byPart[id]
		var row int64
		var err error
		if ok && len(p.cursor) == 2 {
			row, err = strconv.ParseInt(p.cursor[0], 10, 64)
		}
		if !ok || len(p.cursor) != 2 || err != nil || row < 0 {
			return &Error{Op: "resume", File: s.Manifest, Kind: ErrPosition, Err: fmt.Errorf("position %q is not one of this report", p.part),
				Hint: "resume with the positions of a run over the same --inventory"}
		}
		cursors[i] = invCursor{row: row, last: p.cursor[1] == "last"}
	}
	var total, skipped int64
	for i, file := range m.Files {
		total += file.Size
		if cursors[i].last {
			skipped += file.Size
		}
	}
	s.readBytes.Store(skipped)
	s.totalBytes.Store(total)
	f := s.filter(&s.excluded, s.Client)
	workers := s.workers()
	return deliver(ctx, workers, fn, func(ctx context.Context, out emitter) error {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(workers)
		for i, file := range m.Files {
			if cursors[i].last {
				continue
			}
			if gctx.Err() != nil {
				break
			}
			g.Go(func() error {
				rf := &reportFile{s: s, m: m, file: file, part: parts[i], from: cursors[i].row, f: f.partition(), out: out.under(gctx)}
				if m.FileFormat == FormatCSV {
					return rf.readCSV(gctx, schema)
				}
				err := rf.readParquet(gctx)
				if err == nil {
					s.readBytes.Add(file.Size)
				}
				return err
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
		return ctx.Err()
	})
}

func (s *S3Inventory) currentOnly() error {
	return &Error{Op: "read report", File: s.Manifest, Kind: ErrMalformed, Err: errors.New("the report lists current versions only"),
		Hint: "configure the report with all object versions (IncludedObjectVersions: All), or run without --all-versions"}
}

// reportFile reads one data file.
type reportFile struct {
	s    *S3Inventory
	m    *Manifest
	file ManifestFile
	part string
	from int64 // rows to skip
	f    *partFilter
	out  emitter

	batch      []Item
	pending    Item // the last item, held back until the file is known to be complete
	pendingRow int64
	held       bool
}

func (r *reportFile) url() string { return "s3://" + r.m.DestinationBucket + "/" + r.file.Key }

func (r *reportFile) fail(line int64, kind, err error, hint string) error {
	return &Error{Op: "read report file", File: r.url(), Line: line, Kind: kind, Err: err, Hint: hint}
}

func (r *reportFile) get(ctx context.Context) (io.ReadCloser, error) {
	// A body that stops is read on from where it stopped: a report file
	// can be gigabytes.
	obj, err := awsx.GetObject(ctx, r.s.Client, &s3.GetObjectInput{Bucket: aws.String(r.m.DestinationBucket), Key: aws.String(r.file.Key)})
	if err != nil {
		return nil, (&Error{Op: "read report file", File: r.url(), Err: err}).classify("reading a report needs s3:GetObject on its manifest and data files")
	}
	return obj.Body, nil
}

// verify compares what was read with the manifest's size and MD5.
// Reads stop one byte past the announced size: n above it says no more
// than that the file is larger.
func (r *reportFile) verify(h hash.Hash, n int64) error {
	if n > r.file.Size {
		return r.fail(0, ErrChecksum, fmt.Errorf("larger than the %d bytes the manifest says (read no further)", r.file.Size),
			"the data file is corrupt or was replaced: use a complete report, or list the bucket with --source")
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if n != r.file.Size || sum != r.file.MD5 {
		return r.fail(0, ErrChecksum, fmt.Errorf("read %d bytes with MD5 %s, the manifest says %d bytes with MD5 %s", n, sum, r.file.Size, r.file.MD5),
			"the data file is corrupt or was replaced: use a complete report, or list the bucket with --source")
	}
	return nil
}

// add queues an item (row is its 1-based row), sending full batches: the
// previous item is released, the new one held back.
func (r *reportFile) add(it Item, row int64) error {
	if r.held {
		r.release(false)
		if len(r.batch) >= listBatch {
			if err := r.out.send(r.batch); err != nil {
				return err
			}
			r.batch = make([]Item, 0, listBatch)
		}
	}
	r.pending, r.pendingRow, r.held = it, row, true
	return nil
}

func (r *reportFile) release(last bool) {
	it := r.pending
	it.Position = r.part + "#" + strconv.FormatInt(r.pendingRow, 10)
	if last {
		it.Position += " last"
	} else {
		it.Position += " -"
	}
	r.batch = append(r.batch, it)
	r.held = false
}

// finish releases the held-back item, marked as the file's last when
// lastRow is its row, and sends what is queued. Call it only after the
// file passed its check.
func (r *reportFile) finish(lastRow int64) error {
	if r.held {
		r.release(r.pendingRow == lastRow)
	}
	return r.out.send(r.batch)
}

// sameBucket refuses a row (line is its 1-based row) that names another
// bucket than the manifest's source bucket: S3 writes none, and following
// one would aim the run's writes at a bucket the operator never named.
// Every row is checked, those the filters drop too.
func (r *reportFile) sameBucket(line int64, bucket string) error {
	if bucket == r.m.SourceBucket {
		return nil
	}
	return r.fail(line, ErrForeignBucket, fmt.Errorf("row names bucket %q, the manifest's sourceBucket is %q", bucket, r.m.SourceBucket),
		"the report was altered or mixed up with another bucket's: use the report S3 Inventory wrote for the bucket you mean to rotate, or list it with --source")
}

// wants applies the version selection and the filter to a row, and flags
// it (Item.UnpairedSuffix).
func (r *reportFile) wants(ctx context.Context, it *Item, hasLatest bool) (bool, error) {
	if !r.s.AllVersions && (it.DeleteMarker || hasLatest && !it.IsLatest) {
		return false, nil
	}
	keep, unpaired, err := r.f.keep(ctx, it.Bucket, it.Key)
	it.UnpairedSuffix = unpaired
	return keep, err
}

type hashingReader struct {
	r    io.Reader
	h    hash.Hash
	n    int64
	read *atomic.Int64 // counts the bytes read too, if set
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	if h.read != nil {
		h.read.Add(int64(n))
	}
	return n, err
}

func (r *reportFile) readCSV(ctx context.Context, sc csvSchema) error {
	body, err := r.get(ctx)
	if err != nil {
		return err
	}
	defer body.Close()
	// One byte more than announced tells a larger file (verify fails);
	// nothing beyond is read.
	hr := &hashingReader{r: io.LimitReader(body, r.file.Size+1), h: md5.New(), read: &r.s.readBytes}
	br := bufio.NewReaderSize(hr, 64<<10)
	var text io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return r.fail(0, ErrMalformed, err, "")
		}
		text = zr
	}
	lr := newLineReader(text)
	var fields []string
	for {
		line, err := lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// A corrupt file is better reported as such than as bad gzip.
			if _, rerr := io.Copy(io.Discard, hr); rerr == nil {
				if verr := r.verify(hr.h, hr.n); verr != nil {
					return verr
				}
			}
			return r.fail(lr.line, ErrMalformed, err, "")
		}
		if lr.line <= r.from || line == "" {
			continue
		}
		fields, err = splitLine(fields, line)
		if err == nil && len(fields) != sc.n {
			err = fmt.Errorf("%d fields, the manifest's fileSchema has %d", len(fields), sc.n)
		}
		var it Item
		var hasLatest bool
		if err == nil {
			it, hasLatest, err = csvItem(fields, sc, r.m.SourceBucket)
		}
		if err != nil {
			return r.fail(lr.line, ErrMalformed, err, "")
		}
		if err := r.sameBucket(lr.line, it.Bucket); err != nil {
			return err
		}
		if keep, err := r.wants(ctx, &it, hasLatest); err != nil {
			return err
		} else if !keep {
			continue
		}
		if err := r.add(it, lr.line); err != nil {
			return err
		}
	}
	// Hash what follows the compressed stream too, then check.
	if _, err := io.Copy(io.Discard, br); err != nil {
		return r.fail(0, nil, err, "")
	}
	if err := r.verify(hr.h, hr.n); err != nil {
		return err
	}
	return r.finish(lr.line)
}

// csvItem turns a row of an S3 Inventory CSV file into an item.
func csvItem(fields []string, sc csvSchema, sourceBucket string) (it Item, hasLatest bool, err error) {
	it.Bucket = fields[sc.bucket]
	if it.Bucket == "" {
		it.Bucket = sourceBucket
	}
	if it.Key, err = decodeKey(fields[sc.key]); err != nil {
		return Item{}, false, err
	}
	if err := checkKey(it.Key); err != nil {
		return Item{}, false, err
	}
	it.IsLatest = true
	if sc.version >= 0 {
		it.VersionID = fields[sc.version]
	}
	if sc.latest >= 0 {
		hasLatest = true
		if it.IsLatest, err = parseBool(colIsLatest, fields[sc.latest]); err != nil {
			return Item{}, false, err
		}
	}
	if sc.deleteMarker >= 0 {
		if it.DeleteMarker, err = parseBool(colDeleteMarker, fields[sc.deleteMarker]); err != nil {
			return Item{}, false, err
		}
	}
	if sc.size >= 0 && fields[sc.size] != "" {
		if it.Size, err = strconv.ParseInt(fields[sc.size], 10, 64); err != nil || it.Size < 0 {
			return Item{}, false, fmt.Errorf("column %s: %q is not a size", colSize, fields[sc.size])
		}
	}
	if sc.lastMod >= 0 && fields[sc.lastMod] != "" {
		if it.LastModified, err = time.Parse(time.RFC3339Nano, fields[sc.lastMod]); err != nil {
			return Item{}, false, fmt.Errorf("column %s: %q is not a time", colLastModified, fields[sc.lastMod])
		}
	}
	if sc.etag >= 0 {
		it.ETag = quoteETag(fields[sc.etag])
	}
	if sc.class >= 0 {
		it.StorageClass = fields[sc.class]
	}
	return it, hasLatest, nil
}

// decodeKey decodes a key of an S3 Inventory CSV file (URL-encoded, "+"
// for a space).
func decodeKey(s string) (string, error) {
	k, err := url.QueryUnescape(s)
	if err != nil {
		return "", fmt.Errorf("key %q is not URL-encoded: %v", s, err)
	}
	return k, nil
}

func parseBool(col, s string) (bool, error) {
	switch strings.ToLower(s) {
	case "true":
		return true, nil
	case "false", "":
		return false, nil
	}
	return false, fmt.Errorf("column %s: %q is neither true nor false", col, s)
}

func quoteETag(s string) string {
	if s == "" || strings.HasPrefix(s, `"`) {
		return s
	}
	return `"` + s + `"`
}

// parquetRow holds the columns of an S3 Inventory Parquet file rotator
// reads; the others are skipped, missing ones stay nil.
type parquetRow struct {
	Bucket         *string    `parquet:"bucket,optional"`
	Key            *string    `parquet:"key,optional"`
	VersionID      *string    `parquet:"version_id,optional"`
	IsLatest       *bool      `parquet:"is_latest,optional"`
	IsDeleteMarker *bool      `parquet:"is_delete_marker,optional"`
	Size           *int64     `parquet:"size,optional"`
	LastModified   *time.Time `parquet:"last_modified_date,optional,timestamp(millisecond)"`
	ETag           *string    `parquet:"e_tag,optional"`
	StorageClass   *string    `parquet:"storage_class,optional"`
}

// parquetBatch is the number of rows read from a Parquet file at once.
const parquetBatch = 256

// DefaultMaxFileBytes is the default of S3Inventory.MaxFileBytes. S3
// writes Parquet data files of up to a few hundred MB.
const DefaultMaxFileBytes = 1 << 30

func (s *S3Inventory) maxFileBytes() int64 {
	if s.MaxFileBytes > 0 {
		return s.MaxFileBytes
	}
	return DefaultMaxFileBytes
}

func (r *reportFile) readParquet(ctx context.Context) (err error) {
	if limit := r.s.maxFileBytes(); r.file.Size > limit {
		return r.fail(0, ErrTooLarge, fmt.Errorf("the manifest lists it at %d bytes, above the %d bytes a Parquet file may take on disk while it is read", r.file.Size, limit),
			"raise --inventory-max-file-bytes (each of --list-workers files needs that much room in TMPDIR), or configure the report as CSV, which is streamed")
	}
	body, err := r.get(ctx)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(r.s.TempDir, "rotator-inventory-*.parquet")
	if err != nil {
		body.Close()
		return r.fail(0, nil, err, "set a writable TempDir with room for the report's data files")
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := md5.New()
	// One byte more than announced tells a larger file; nothing beyond is
	// copied.
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(body, r.file.Size+1))
	body.Close()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return r.fail(0, nil, err, "")
	}
	if err := r.verify(h, n); err != nil {
		return err
	}
	// The Parquet library may panic on a malformed file.
	defer func() {
		if p := recover(); p != nil {
			err = r.fail(0, ErrMalformed, fmt.Errorf("parquet: %v", p), "")
		}
	}()
	pf, err := parquet.OpenFile(tmp, n, parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true), parquet.ReadBufferSize(256<<10))
	if err != nil {
		return r.fail(0, ErrMalformed, err, "")
	}
	schema := pf.Schema()
	for _, col := range []string{"bucket", "key"} {
		if _, ok := schema.Lookup(col); !ok {
			return r.fail(0, ErrMalformed, fmt.Errorf("no %s column", col), "")
		}
	}
	if r.s.AllVersions {
		if _, ok := schema.Lookup("version_id"); !ok {
			return r.s.currentOnly()
		}
	}
	_, hasLatest := schema.Lookup("is_latest")
	total := pf.NumRows()
	pr := parquet.NewGenericReader[parquetRow](pf)
	defer pr.Close()
	row := r.from
	if row >= total {
		return r.finish(total)
	}
	if row > 0 {
		if err := pr.SeekToRow(row); err != nil {
			return r.fail(row, nil, err, "")
		}
	}
	rows := make([]parquetRow, parquetBatch)
	for {
		clear(rows) // null columns must read as nil, not as the previous row's
		k, rerr := pr.Read(rows)
		for _, p := range rows[:k] {
			row++
			it := parquetItem(p, r.m.SourceBucket)
			if err := checkKey(it.Key); err != nil {
				return r.fail(row, ErrMalformed, err, "")
			}
			if err := r.sameBucket(row, it.Bucket); err != nil {
				return err
			}
			if keep, err := r.wants(ctx, &it, hasLatest); err != nil {
				return err
			} else if !keep {
				continue
			}
			if err := r.add(it, row); err != nil {
				return err
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return r.fail(row+1, ErrMalformed, rerr, "")
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return r.finish(total)
}

func parquetItem(p parquetRow, sourceBucket string) Item {
	it := Item{Bucket: deref(p.Bucket), Key: deref(p.Key), VersionID: deref(p.VersionID), IsLatest: true,
		ETag: quoteETag(deref(p.ETag)), StorageClass: deref(p.StorageClass)}
	if it.Bucket == "" {
		it.Bucket = sourceBucket
	}
	if p.IsLatest != nil {
		it.IsLatest = *p.IsLatest
	}
	if p.IsDeleteMarker != nil {
		it.DeleteMarker = *p.IsDeleteMarker
	}
	if p.Size != nil {
		it.Size = *p.Size
	}
	if p.LastModified != nil {
		it.LastModified = p.LastModified.UTC()
	}
	return it
}

func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}
