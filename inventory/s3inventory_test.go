package inventory

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/parquet-go/parquet-go"
)

// reportRow is one object version of a generated S3 Inventory report.
type reportRow struct {
	key, version string
	latest, dm   bool
	size         int64
	modified     time.Time
	etag, class  string
}

const reportSource = "inventoried-bucket"

// reportRows returns versions of keys that need URL-encoding, overwritten
// and deleted keys, and instruction files.
func reportRows() []reportRow {
	t0 := time.Date(2024, 5, 6, 7, 8, 9, 123e6, time.UTC)
	var rows []reportRow
	add := func(key, version string, latest, dm bool) {
		r := reportRow{key: key, version: version, latest: latest, dm: dm, modified: t0.Add(time.Duration(len(rows)) * time.Minute)}
		if !dm {
			r.size = int64(100 + len(rows))
			r.etag = fmt.Sprintf("%032x", len(rows))
			r.class = "STANDARD"
		}
		rows = append(rows, r)
	}
	for i := range 9 {
		add(fmt.Sprintf("data/obj-%02d", i), fmt.Sprintf("v%02d", i), true, false)
	}
	add("odd/sp ace+plus%pct,comma\"quote", "v1", true, false)
	add("odd/ünïcödé/☃", "v1", true, false)
	add("odd/x.instruction", "v1", true, false)
	add("over", "v3", true, false)
	add("over", "v2", false, false)
	add("over", "v1", false, false)
	add("gone", "d2", true, true)
	add("gone", "v1", false, false)
	// S3 Inventory writes each file in key order.
	slices.SortStableFunc(rows, func(a, b reportRow) int { return strings.Compare(a.key, b.key) })
	return rows
}

// want returns the ids of the rows a run delivers.
func wantRows(rows []reportRow, allVersions bool) []string {
	var out []string
	for _, r := range rows {
		if strings.HasSuffix(r.key, DefaultExcludeSuffix) || !allVersions && (!r.latest || r.dm) {
			continue
		}
		out = append(out, itemID(Item{Key: r.key, VersionID: r.version, DeleteMarker: r.dm}))
	}
	slices.Sort(out)
	return out
}

const csvSchemaString = "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass, IsMultipartUploaded, EncryptionStatus"

// csvGz writes rows as S3 Inventory does: every field quoted, keys
// URL-encoded, gzip-compressed.
func csvGz(t testing.TB, rows []reportRow) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	for _, r := range rows {
		size := ""
		if !r.dm {
			size = strconv.FormatInt(r.size, 10)
		}
		fields := []string{reportSource, url.QueryEscape(r.key), r.version, strconv.FormatBool(r.latest), strconv.FormatBool(r.dm),
			size, r.modified.Format("2006-01-02T15:04:05.000Z"), r.etag, r.class, "false", "SSE-S3"}
		for i, f := range fields {
			fields[i] = `"` + f + `"`
		}
		fmt.Fprintf(zw, "%s\n", strings.Join(fields, ","))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// parquetInventoryRow is the schema S3 Inventory writes (the columns rotator
// reads and one it skips).
type parquetInventoryRow struct {
	Bucket           string  `parquet:"bucket"`
	Key              string  `parquet:"key"`
	VersionID        *string `parquet:"version_id,optional"`
	IsLatest         bool    `parquet:"is_latest"`
	IsDeleteMarker   bool    `parquet:"is_delete_marker"`
	Size             *int64  `parquet:"size,optional"`
	LastModified     int64   `parquet:"last_modified_date,timestamp(millisecond)"`
	ETag             *string `parquet:"e_tag,optional"`
	StorageClass     *string `parquet:"storage_class,optional"`
	EncryptionStatus string  `parquet:"encryption_status"`
}

func parquetFile(t testing.TB, rows []reportRow) []byte {
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[parquetInventoryRow](&buf, parquet.MaxRowsPerRowGroup(3), parquet.Compression(&parquet.Snappy))
	for _, r := range rows {
		p := parquetInventoryRow{Bucket: reportSource, Key: r.key, VersionID: aws.String(r.version), IsLatest: r.latest,
			IsDeleteMarker: r.dm, LastModified: r.modified.UnixMilli(), EncryptionStatus: "SSE-S3"}
		if !r.dm {
			p.Size, p.ETag, p.StorageClass = aws.Int64(r.size), aws.String(r.etag), aws.String(r.class)
		}
		if _, err := w.Write([]parquetInventoryRow{p}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type reportFileSpec struct {
	name string
	data []byte
	md5  string // the manifest's; default the data's
}

// uploadReport writes data files and a manifest.json (with
// manifest.checksum) under prefix, as S3 Inventory lays them out, and
// returns the manifest's URL.
func uploadReport(t *testing.T, c *s3.Client, bucket, prefix, format, schema string, files []reportFileSpec) string {
	t.Helper()
	type file struct {
		Key         string `json:"key"`
		Size        int    `json:"size"`
		MD5checksum string `json:"MD5checksum"`
	}
	m := map[string]any{
		"sourceBucket":      reportSource,
		"destinationBucket": "arn:aws:s3:::" + bucket,
		"version":           "2016-11-30",
		"creationTimestamp": "1714979289000",
		"fileFormat":        format,
		"fileSchema":        schema,
	}
	var fs []file
	for _, f := range files {
		key := prefix + "data/" + f.name
		putObject(t, c, bucket, key, f.data)
		sum := md5.Sum(f.data)
		if f.md5 == "" {
			f.md5 = hex.EncodeToString(sum[:])
		}
		fs = append(fs, file{Key: key, Size: len(f.data), MD5checksum: f.md5})
	}
	m["files"] = fs
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	putObject(t, c, bucket, prefix+"manifest.json", data)
	sum := md5.Sum(data)
	putObject(t, c, bucket, prefix+"manifest.checksum", []byte(hex.EncodeToString(sum[:])+"\n"))
	return "s3://" + bucket + "/" + prefix + "manifest.json"
}

// reportOf uploads rows as a report of format in two data files (and an
// empty third one).
func reportOf(t *testing.T, c *s3.Client, bucket, prefix, format string, rows []reportRow) string {
	t.Helper()
	half := len(rows) / 2
	switch format {
	case FormatCSV:
		return uploadReport(t, c, bucket, prefix, format, csvSchemaString, []reportFileSpec{
			{name: "a.csv.gz", data: csvGz(t, rows[:half])}, {name: "b.csv.gz", data: csvGz(t, rows[half:])}, {name: "c.csv.gz", data: csvGz(t, nil)}})
	default:
		return uploadReport(t, c, bucket, prefix, format, "message s3.inventory { required binary bucket (STRING); required binary key (STRING); ... }", []reportFileSpec{
			{name: "a.parquet", data: parquetFile(t, rows[:half])}, {name: "b.parquet", data: parquetFile(t, rows[half:])}, {name: "c.parquet", data: parquetFile(t, nil)}})
	}
}

func TestS3Inventory(t *testing.T) {
	t.Parallel()
	c := stackS3(t)
	b := newBucket(t, c, false)
	rows := reportRows()
	byID := map[string]reportRow{}
	for _, r := range rows {
		byID[itemID(Item{Key: r.key, VersionID: r.version, DeleteMarker: r.dm})] = r
	}
	for _, format := range []string{FormatCSV, FormatParquet} {
		manifest := reportOf(t, c, b, "inv/"+format+"/", format, rows)
		for _, all := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/all-versions=%v", format, all), func(t *testing.T) {
				src, err := Open(context.Background(), c, Spec{Inventory: manifest, AllVersions: all,
					Options: Options{ExcludeSuffix: DefaultExcludeSuffix, Workers: 2}})
				if err != nil {
					t.Fatal(err)
				}
				items := collect(t, src)
				sameIDs(t, ids(items), wantRows(rows, all))
				checkPartitionOrder(t, items)
				if n := src.(Excluder).Excluded(); n != 1 {
					t.Errorf("excluded %d, want 1", n)
				}
				for _, it := range items {
					r := byID[itemID(it)]
					wantETag := ""
					if r.etag != "" {
						wantETag = `"` + r.etag + `"`
					}
					if it.Bucket != reportSource || it.IsLatest != r.latest || it.Size != r.size || it.ETag != wantETag ||
						it.StorageClass != r.class || !it.LastModified.Equal(r.modified) {
						t.Errorf("item %+v\nfrom row %+v", it, r)
					}
				}
			})
		}
	}
}

func TestS3InventoryChecksum(t *testing.T) {
	t.Parallel()
	c := stackS3(t)
	b := newBucket(t, c, false)
	rows := reportRows()
	wrong := strings.Repeat("ab", 16)
	for _, format := range []string{FormatCSV, FormatParquet} {
		t.Run(format, func(t *testing.T) {
			data := csvGz(t, rows)
			name := "x.csv.gz"
			if format == FormatParquet {
				data, name = parquetFile(t, rows), "x.parquet"
			}
			manifest := uploadReport(t, c, b, "bad/"+format+"/", format, csvSchemaString, []reportFileSpec{{name: name, data: data, md5: wrong}})
			var got []Item
			err := (&S3Inventory{Client: c, Manifest: manifest}).Stream(context.Background(), func(it Item) error {
				got = append(got, it)
				return nil
			})
			var e *Error
			if !errors.Is(err, ErrChecksum) || !errors.As(err, &e) || !strings.HasSuffix(e.File, name) || e.Hint == "" {
				t.Fatalf("stream: %v, want ErrChecksum naming the file", err)
			}
			t.Log(err)
			if format == FormatParquet && len(got) > 0 {
				t.Errorf("%d items of a Parquet file that failed its check", len(got))
			}
			for _, it := range got {
				if strings.HasSuffix(it.Position, " last") {
					t.Errorf("the last item of a file that failed its check was delivered: %s", it.Position)
				}
			}
		})
	}
	t.Run("replaced file", func(t *testing.T) {
		manifest := reportOf(t, c, b, "replaced/", FormatCSV, rows)
		_, key, _ := ParseS3URL(manifest)
		putObject(t, c, b, strings.TrimSuffix(key, "manifest.json")+"data/b.csv.gz", csvGz(t, rows[:3]))
		err := (&S3Inventory{Client: c, Manifest: manifest}).Stream(context.Background(), func(Item) error { return nil })
		if !errors.Is(err, ErrChecksum) {
			t.Fatalf("stream: %v, want ErrChecksum", err)
		}
	})
	t.Run("manifest.checksum", func(t *testing.T) {
		manifest := reportOf(t, c, b, "sum/", FormatCSV, rows)
		_, key, _ := ParseS3URL(manifest)
		putObject(t, c, b, strings.TrimSuffix(key, "manifest.json")+"manifest.checksum", []byte(wrong))
		_, err := Open(context.Background(), c, Spec{Inventory: manifest})
		if !errors.Is(err, ErrChecksum) {
			t.Fatalf("open: %v, want ErrChecksum", err)
		}
	})
}

// countingS3 counts GetObject calls.
type countingS3 struct {
	S3
	gets atomic.Int64
}

func (c *countingS3) GetObject(ctx context.Context, in *s3.GetObjectInput, o ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	c.gets.Add(1)
	return c.S3.GetObject(ctx, in, o...)
}

func TestS3InventoryResume(t *testing.T) {
	t.Parallel()
	c := stackS3(t)
	b := newBucket(t, c, false)
	rows := reportRows()
	for _, format := range []string{FormatCSV, FormatParquet} {
		manifest := reportOf(t, c, b, "resume/"+format+"/", format, rows)
		for _, stop := range []int{1, 5, 12} {
			t.Run(fmt.Sprintf("%s/stop=%d", format, stop), func(t *testing.T) {
				cs := &countingS3{S3: c}
				mk := func(after []string) Source {
					if after != nil {
						cs = &countingS3{S3: c} // count the second run's GETs
					}
					return &S3Inventory{Client: cs, Manifest: manifest, AllVersions: true,
						Options: Options{Workers: 1, After: after, ExcludeSuffix: DefaultExcludeSuffix}}
				}
				run1, run2 := interruptAndResume(t, mk(nil), stop, mk)
				if len(run1)+len(run2) != len(wantRows(rows, true)) {
					t.Errorf("%d + %d items, want %d in all", len(run1), len(run2), len(wantRows(rows, true)))
				}
				all := append(ids(run1), ids(run2)...)
				slices.Sort(all)
				sameIDs(t, all, wantRows(rows, true))
				// The first file has 8 rows: once its last one was done, a
				// resumed run does not read it again (manifest and
				// checksum, two data files).
				if want := map[bool]int64{true: 4, false: 5}[stop > 8]; cs.gets.Load() != want {
					t.Errorf("%d GETs in the resumed run, want %d", cs.gets.Load(), want)
				}
			})
		}
	}
}

func TestS3InventoryErrors(t *testing.T) {
	t.Parallel()
	c := stackS3(t)
	b := newBucket(t, c, false)
	ctx := context.Background()
	rows := reportRows()

	orc := uploadReport(t, c, b, "orc/", "ORC", "struct<bucket:string,key:string>", nil)
	_, err := Open(ctx, c, Spec{Inventory: orc})
	if !errors.Is(err, ErrORC) || !strings.Contains(err.Error(), "ORC inventory reports are not supported; configure the report as CSV or Parquet") {
		t.Errorf("open ORC: %v", err)
	}
	if err := (&S3Inventory{Client: c, Manifest: orc}).Stream(ctx, func(Item) error { return nil }); !errors.Is(err, ErrORC) {
		t.Errorf("stream ORC: %v", err)
	}

	current := uploadReport(t, c, b, "current/", FormatCSV, "Bucket, Key, Size", []reportFileSpec{
		{name: "a.csv", data: []byte("\"" + reportSource + "\",\"k\",\"1\"\n")}})
	items := collect(t, &S3Inventory{Client: c, Manifest: current})
	sameIDs(t, ids(items), []string{"k"})
	if err := (&S3Inventory{Client: c, Manifest: current, AllVersions: true}).Stream(ctx, func(Item) error { return nil }); err == nil ||
		!strings.Contains(err.Error(), "current versions only") {
		t.Errorf("all versions of a current-only report: %v", err)
	}

	bad := csvGz(t, rows[:2])
	zr, _ := gzip.NewReader(bytes.NewReader(bad))
	var plain bytes.Buffer
	_, _ = plain.ReadFrom(zr)
	plain.WriteString("\"b\",\"only-two-fields\"\n")
	malformed := uploadReport(t, c, b, "malformed/", FormatCSV, csvSchemaString, []reportFileSpec{{name: "m.csv", data: plain.Bytes()}})
	err = (&S3Inventory{Client: c, Manifest: malformed, AllVersions: true}).Stream(ctx, func(Item) error { return nil })
	var e *Error
	if !errors.Is(err, ErrMalformed) || !errors.As(err, &e) || e.Line != 3 {
		t.Errorf("malformed row: %v, want ErrMalformed at line 3", err)
	}

	_, err = Open(ctx, c, Spec{Inventory: "s3://" + b + "/nothing/manifest.json"})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("missing manifest: %v", err)
	}
	putObject(t, c, b, "junk/manifest.json", []byte("{not json"))
	if _, err = Open(ctx, c, Spec{Inventory: "s3://" + b + "/junk/manifest.json"}); !errors.Is(err, ErrMalformed) {
		t.Errorf("junk manifest: %v", err)
	}
}
