package testenv

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// EmptyBucket removes a test bucket and everything in it: multipart
// uploads, every object version and delete marker. Errors are ignored
// (it runs in cleanups).
func EmptyBucket(c *s3.Client, bucket string) {
	ctx := context.Background()
	if ups, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &bucket}); err == nil {
		for _, u := range ups.Uploads {
			c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &bucket, Key: u.Key, UploadId: u.UploadId})
		}
	}
	out, err := c.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: &bucket})
	for err == nil {
		for _, v := range out.Versions {
			c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: v.Key, VersionId: v.VersionId})
		}
		for _, v := range out.DeleteMarkers {
			c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: v.Key, VersionId: v.VersionId})
		}
		if !aws.ToBool(out.IsTruncated) {
			break
		}
		out, err = c.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: &bucket, KeyMarker: out.NextKeyMarker, VersionIdMarker: out.NextVersionIdMarker})
	}
	c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: &bucket})
}
