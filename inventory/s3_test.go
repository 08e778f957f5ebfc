package inventory

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

	"github.com/rotator-dev/rotator/internal/awsx"
	"github.com/rotator-dev/rotator/internal/testenv"
)

// stackS3 returns a client of the local stack's S3 (versitygw), or skips
// (fails under ROTATOR_INTEGRATION=require).
func stackS3(t *testing.T) *s3.Client {
	t.Helper()
	testenv.Need(t, testenv.S3)
	return awsx.S3(testenv.AWSConfig(t))
}

// newBucket creates a bucket named after the test, versioned if asked, and
// removes it with everything in it when the test ends.
func newBucket(t *testing.T, c *s3.Client, versioned bool) string {
	t.Helper()
	ctx := context.Background()
	b := testenv.Name(t)
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
		t.Fatalf("create bucket %s: %v", b, err)
	}
	t.Cleanup(func() { emptyAndDelete(t, c, b) })
	if versioned {
		if _, err := c.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: aws.String(b),
			VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled}}); err != nil {
			t.Fatalf("enable versioning on %s: %v", b, err)
		}
	}
	return b
}

func emptyAndDelete(t *testing.T, c *s3.Client, b string) {
	ctx := context.Background()
	in := &s3.ListObjectVersionsInput{Bucket: aws.String(b)}
	for {
		out, err := c.ListObjectVersions(ctx, in)
		if err != nil {
			t.Logf("cleanup %s: %v", b, err)
			return
		}
		var ids []types.ObjectIdentifier
		for _, v := range out.Versions {
			ids = append(ids, types.ObjectIdentifier{Key: v.Key, VersionId: v.VersionId})
		}
		for _, d := range out.DeleteMarkers {
			ids = append(ids, types.ObjectIdentifier{Key: d.Key, VersionId: d.VersionId})
		}
		for _, id := range ids {
			if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b), Key: id.Key, VersionId: id.VersionId}); err != nil {
				t.Logf("cleanup %s: %v", b, err)
			}
		}
		if !aws.ToBool(out.IsTruncated) {
			break
		}
		in.KeyMarker, in.VersionIdMarker = out.NextKeyMarker, out.NextVersionIdMarker
	}
	if _, err := c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(b)}); err != nil {
		t.Logf("cleanup %s: %v", b, err)
	}
}

// putObject writes key with body and returns its version id (empty in an
// unversioned bucket).
func putObject(t *testing.T, c *s3.Client, b, key string, body []byte) string {
	t.Helper()
	out, err := c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(b), Key: aws.String(key), Body: bytes.NewReader(body)})
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	return aws.ToString(out.VersionId)
}

// putKeys writes keys concurrently with a small body each.
func putKeys(t *testing.T, c *s3.Client, b string, keys []string) {
	t.Helper()
	var g errgroup.Group
	g.SetLimit(16)
	for _, k := range keys {
		g.Go(func() error {
			_, err := c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(b), Key: aws.String(k), Body: bytes.NewReader([]byte(k))})
			if err != nil {
				return fmt.Errorf("put %s: %w", k, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}

// wideKeys returns 300 keys in 10 prefixes, some one level deeper, plus a
// few at the root, sorted.
func wideKeys() []string {
	var keys []string
	for p := range 10 {
		for i := range 30 {
			if i%5 == 0 {
				keys = append(keys, fmt.Sprintf("tenant-%02d/sub/obj-%03d", p, i))
			} else {
				keys = append(keys, fmt.Sprintf("tenant-%02d/obj-%03d", p, i))
			}
		}
	}
	keys = append(keys, "root-a", "root-b", "tenant-zz")
	slices.Sort(keys)
	return keys
}
