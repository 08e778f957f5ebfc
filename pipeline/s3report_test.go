package pipeline_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rotator-dev/rotator/internal/awsx"
	"github.com/rotator-dev/rotator/internal/testenv"
	"github.com/rotator-dev/rotator/pipeline"
)

// TestS3Report writes reports to S3 the way a run does, on both local S3
// servers: small ones (one PutObject), large ones (a multipart upload, in
// bounded parts), continued by a later process (small: read back; large:
// copied inside S3), left as they are when nothing is added, never
// overwritten when someone else wrote them meanwhile, and no upload left
// behind, even by a process that died before it completed its own.
func TestS3Report(t *testing.T) {
	servers := map[string]func(t *testing.T) *s3.Client{
		"versitygw": func(t *testing.T) *s3.Client {
			testenv.Need(t, testenv.S3)
			return awsx.S3(testenv.AWSConfig(t))
		},
		"minio": func(t *testing.T) *s3.Client { return testenv.MinIOS3(t) },
	}
	for name, client := range servers {
		t.Run(name, func(t *testing.T) {
			c := client(t)
			bucket := testenv.Name(t)
			if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { testenv.EmptyBucket(c, bucket) })
			const part = 5 << 20
			read := func(key string) []byte {
				t.Helper()
				out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
				if err != nil {
					t.Fatalf("read %s: %v", key, err)
				}
				defer out.Body.Close()
				b, err := io.ReadAll(out.Body)
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			write := func(key string, chunks ...[]byte) (existed bool) {
				t.Helper()
				w, existed, err := pipeline.OpenS3Report(ctx, c, bucket, key, pipeline.S3ReportOptions{PartSize: part})
				if err != nil {
					t.Fatalf("open %s: %v", key, err)
				}
				for _, b := range chunks {
					if _, err := w.Write(b); err != nil {
						t.Fatalf("write %s: %v", key, err)
					}
				}
				if err := w.Close(); err != nil {
					t.Fatalf("close %s: %v", key, err)
				}
				return existed
			}
			random := func(n int) []byte {
				b := make([]byte, n)
				_, _ = rand.Read(b)
				return b
			}

			// Small, then continued (read back), then left alone.
			key := "reports/run 1/rotator-report-run:shard-0-of-2.csv" // a key that needs escaping
			if write(key, []byte("Bucket,Key\n"), []byte("b,k1\n")) {
				t.Error("a new report said it existed")
			}
			if !write(key, []byte("b,k2\n")) {
				t.Error("an existing report said it was new")
			}
			write(key)
			if got := string(read(key)); got != "Bucket,Key\nb,k1\nb,k2\n" {
				t.Errorf("small report: %q", got)
			}

			// Large: several parts; continued by copying it inside S3; then
			// a small existing report that grows past a part.
			big := "reports/big.csv"
			first, second := random(2*part+123), random(part/2)
			write(big, first[:1000], first[1000:])
			write(big, second)
			if got := read(big); !bytes.Equal(got, append(append([]byte{}, first...), second...)) {
				t.Errorf("large report: %d bytes, want %d, or different bytes", len(got), len(first)+len(second))
			}
			grow := "reports/grow.csv"
			third := random(part + 7)
			write(grow, []byte("head\n"))
			write(grow, third)
			if got := read(grow); !bytes.Equal(got, append([]byte("head\n"), third...)) {
				t.Errorf("grown report: %d bytes", len(got))
			}

			// Someone else writes the report while it is open: it is not
			// overwritten, and the error says so; no upload is left.
			for i, size := range []int{10, 2*part + 1} {
				theirs := fmt.Sprintf("theirs %d", i)
				w, _, err := pipeline.OpenS3Report(ctx, c, bucket, key, pipeline.S3ReportOptions{PartSize: part})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := w.Write(random(size)); err != nil {
					t.Fatal(err)
				}
				if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: strings.NewReader(theirs)}); err != nil {
					t.Fatal(err)
				}
				if err := w.Close(); err == nil || !strings.Contains(err.Error(), "another process wrote the report meanwhile") {
					t.Errorf("%d bytes over a report written meanwhile: %v", size, err)
				}
				if got := read(key); string(got) != theirs {
					t.Errorf("the report written meanwhile was overwritten: %d bytes", len(got))
				}
			}

			// A process that died mid-upload: the next one aborts its upload.
			dead, _, err := pipeline.OpenS3Report(ctx, c, bucket, "reports/dead.csv", pipeline.S3ReportOptions{PartSize: part})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := dead.Write(random(part + 1)); err != nil {
				t.Fatal(err)
			}
			if n := uploads(t, c, bucket); n != 1 {
				t.Fatalf("%d uploads in progress, want the dead process's", n)
			}
			write("reports/dead.csv", []byte("x\n"))
			if n := uploads(t, c, bucket); n != 0 {
				t.Errorf("%d uploads left", n)
			}
			if got := string(read("reports/dead.csv")); got != "x\n" {
				t.Errorf("report after a dead process: %q", got)
			}
		})
	}
}

func uploads(t *testing.T, c *s3.Client, bucket string) int {
	t.Helper()
	out, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatal(err)
	}
	return len(out.Uploads)
}
