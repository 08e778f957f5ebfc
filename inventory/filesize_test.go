package inventory

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// bodyCountingS3 counts GetObject calls and the bytes read from their
// bodies.
type bodyCountingS3 struct {
	S3
	gets, read atomic.Int64
}

type countedBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b countedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

func (c *bodyCountingS3) GetObject(ctx context.Context, in *s3.GetObjectInput, o ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	c.gets.Add(1)
	out, err := c.S3.GetObject(ctx, in, o...)
	if err == nil {
		out.Body = countedBody{out.Body, &c.read}
	}
	return out, err
}

// A Parquet data file is copied to disk before it is read: a file the
// manifest lists above MaxFileBytes is refused before it is fetched, with
// a hint, and a file larger than the manifest announces is not copied
// beyond the announced size. (A CSV file is streamed, but is not read
// beyond its announced size either.)
func TestS3InventoryDataFileSizeIsBounded(t *testing.T) {
	t.Parallel()
	c := stackS3(t)
	b := newBucket(t, c, false)
	rows := reportRows()
	pq, gz := parquetFile(t, rows), csvGz(t, rows)

	t.Run("above the limit", func(t *testing.T) {
		manifest := uploadReport(t, c, b, "big/", FormatParquet, "message s3.inventory { ... }", []reportFileSpec{{name: "a.parquet", data: pq}})
		cs := &bodyCountingS3{S3: c}
		limit := int64(len(pq) - 1)
		err := (&S3Inventory{Client: cs, Manifest: manifest, MaxFileBytes: limit}).Stream(context.Background(), func(Item) error { return nil })
		var e *Error
		if !errors.Is(err, ErrTooLarge) || !errors.As(err, &e) || !strings.HasSuffix(e.File, "a.parquet") {
			t.Fatalf("stream: %v, want ErrTooLarge naming the file", err)
		}
		for _, want := range []string{strconv.Itoa(len(pq)), strconv.FormatInt(limit, 10), "--inventory-max-file-bytes"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
		if n := cs.gets.Load(); n != 2 {
			t.Errorf("%d GETs, want 2 (manifest.json and manifest.checksum): the data file must not be fetched", n)
		}
		// At the limit it is read.
		items := collect(t, &S3Inventory{Client: c, Manifest: manifest, MaxFileBytes: int64(len(pq))})
		if len(items) == 0 {
			t.Error("no item from a file at the limit")
		}
	})

	for _, tc := range []struct {
		format, name string
		data         []byte
	}{{FormatParquet, "a.parquet", pq}, {FormatCSV, "a.csv.gz", gz}} {
		t.Run("larger than announced/"+tc.format, func(t *testing.T) {
			manifest := uploadReport(t, c, b, "grown/"+tc.format+"/", tc.format, csvSchemaString, []reportFileSpec{{name: tc.name, data: tc.data}})
			// The data file is replaced by one 8 MiB larger.
			_, key, _ := ParseS3URL(manifest)
			junk := make([]byte, 8<<20)
			_, _ = rand.Read(junk)
			putObject(t, c, b, strings.TrimSuffix(key, "manifest.json")+"data/"+tc.name, append(bytes.Clone(tc.data), junk...))
			cs := &bodyCountingS3{S3: c}
			err := (&S3Inventory{Client: cs, Manifest: manifest}).Stream(context.Background(), func(Item) error { return nil })
			if !errors.Is(err, ErrChecksum) {
				t.Fatalf("stream: %v, want ErrChecksum", err)
			}
			t.Log(err)
			// The manifest and its checksum are small; the data file is
			// read to one byte past its announced size at most.
			if n, max := cs.read.Load(), int64(len(tc.data))+1+4096; n > max {
				t.Errorf("read %d bytes of bodies, want at most %d: the file was copied beyond its announced size", n, max)
			}
		})
	}
}
