package inventory

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/parquet-go/parquet-go"
)

// A row naming another bucket than the manifest's sourceBucket could aim
// a run's writes (or --delete-old-versions) at any bucket the role reaches:
// the report is refused at that row, naming both buckets, and nothing of
// the other bucket is delivered, whatever the filters would keep.
func TestS3InventoryRefusesRowsOfAnotherBucket(t *testing.T) {
	t.Parallel()
	c := stackS3(t)
	b := newBucket(t, c, false)
	const victim = "victim-bucket"
	// Row 3 names the victim; rows after it would be delivered too.
	buckets := []string{reportSource, "", victim, reportSource}
	keys := []string{"a", "b", "c", "d.instruction"}

	var csvData bytes.Buffer
	for i, k := range keys {
		fmt.Fprintf(&csvData, "%q,%q,\"v1\",\"true\",\"false\",\"10\",\"2024-05-06T07:08:09.000Z\",\"%032x\",\"STANDARD\",\"false\",\"SSE-S3\"\n", buckets[i], k, i)
	}
	var pq bytes.Buffer
	w := parquet.NewGenericWriter[parquetInventoryRow](&pq)
	for i, k := range keys {
		if _, err := w.Write([]parquetInventoryRow{{Bucket: buckets[i], Key: k, VersionID: aws.String("v1"), IsLatest: true,
			Size: aws.Int64(10), ETag: aws.String(fmt.Sprintf("%032x", i)), StorageClass: aws.String("STANDARD")}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	reports := map[string]string{
		FormatCSV:     uploadReport(t, c, b, "other/csv/", FormatCSV, csvSchemaString, []reportFileSpec{{name: "a.csv", data: csvData.Bytes()}}),
		FormatParquet: uploadReport(t, c, b, "other/parquet/", FormatParquet, "message s3.inventory { ... }", []reportFileSpec{{name: "a.parquet", data: pq.Bytes()}}),
	}
	for format, manifest := range reports {
		for _, o := range []Options{{}, {ExcludeSuffix: "c"}, {Shard: Shard{Index: 1, Count: 1 << 30}}} {
			t.Run(fmt.Sprintf("%s/%+v", format, o), func(t *testing.T) {
				var got []Item
				err := (&S3Inventory{Client: c, Manifest: manifest, AllVersions: true, Options: o}).Stream(context.Background(), func(it Item) error {
					got = append(got, it)
					return nil
				})
				var e *Error
				if !errors.Is(err, ErrForeignBucket) || !errors.As(err, &e) || e.Line != 3 {
					t.Fatalf("stream: %v, want ErrForeignBucket at row 3", err)
				}
				if msg := err.Error(); !strings.Contains(msg, `"`+victim+`"`) || !strings.Contains(msg, `"`+reportSource+`"`) || e.Hint == "" {
					t.Errorf("error %q should name the row's bucket, the manifest's source bucket, and what to do", msg)
				}
				for _, it := range got {
					if it.Bucket != reportSource {
						t.Errorf("delivered %s", it)
					}
				}
			})
		}
	}
}
