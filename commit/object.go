package commit

import (
	"context"
	"maps"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Object is the state of one object version as read at classify time: what
// guards a commit and what a copy onto itself must send again. String
// fields are empty when S3 reported nothing.
type Object struct {
	Bucket, Key string
	// VersionID is the version read; empty in an unversioned bucket.
	VersionID string
	// Noncurrent is true when VersionID was asked for and is not the key's
	// current version. Such a version cannot be changed in place.
	Noncurrent bool
	// DeleteMarker is true for a delete marker (never written).
	DeleteMarker bool

	ETag         string
	Size         int64
	LastModified time.Time
	// Metadata is the user metadata as S3 returned it (names lowercased,
	// without x-amz-meta-; non-ASCII values possibly RFC 2047-encoded, and
	// sent back the same way).
	Metadata map[string]string

	ContentType        string
	CacheControl       string
	ContentDisposition string
	ContentEncoding    string
	ContentLanguage    string
	// Expires is the Expires header verbatim (it need not be a valid date).
	Expires string

	// StorageClass is empty for STANDARD on AWS.
	StorageClass types.StorageClass
	// ServerSideEncryption is AES256 (SSE-S3), aws:kms or aws:kms:dsse.
	ServerSideEncryption types.ServerSideEncryption
	SSEKMSKeyID          string
	BucketKeyEnabled     bool
	// SSECustomerAlgorithm is set for SSE-C objects, which cannot be copied
	// without the customer key.
	SSECustomerAlgorithm string

	WebsiteRedirectLocation string
	// ChecksumAlgorithm is the algorithm of the object's stored checksum,
	// empty when the object has none or it could not be read (HEAD with
	// checksum mode needs kms:Decrypt for SSE-KMS objects).
	ChecksumAlgorithm types.ChecksumAlgorithm
	ChecksumType      types.ChecksumType
	// Checksum is the stored checksum (base64; "-N" suffixed for a
	// composite checksum of N parts).
	Checksum string

	ObjectLockMode        types.ObjectLockMode
	ObjectLockRetainUntil time.Time
	ObjectLockLegalHold   types.ObjectLockLegalHoldStatus

	// TagCount is the number of tags S3 reported (0 also when the caller
	// may not read tags).
	TagCount int
	// Restore is the x-amz-restore header of an archived object.
	Restore string
}

func (o *Object) ref() *objRef {
	return &objRef{bucket: o.Bucket, key: o.Key, versionID: o.VersionID}
}

// Head reads the state of an object version for a later commit. versionID
// "" reads the current version (recommended: one request, and the version
// id read is recorded). With a version id, a second HEAD finds out whether
// that version is current (Object.Noncurrent).
func (c *Committer) Head(ctx context.Context, bucket, key, versionID string) (*Object, error) {
	ref := &objRef{bucket: bucket, key: key, versionID: versionID}
	out, err := c.headObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key, VersionId: optString(versionID)})
	if err != nil {
		return nil, ref.classify(opHead, err, hintHeadPerms)
	}
	obj := objectFromHead(bucket, key, out)
	if obj.VersionID == "" {
		obj.VersionID = versionID
	}
	if versionID != "" && !obj.DeleteMarker {
		cur, err := c.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
		switch {
		case err == nil:
			obj.Noncurrent = nullVersion(aws.ToString(cur.VersionId)) != nullVersion(obj.VersionID)
		default:
			e := ref.classify(opHead, err, hintHeadPerms)
			if e.Kind != ErrGone {
				return nil, e
			}
			obj.Noncurrent = true // the key's current version is a delete marker
		}
	}
	return obj, nil
}

// nullVersion maps the version id of an object written while versioning was
// off ("" or "null") to one value.
func nullVersion(v string) string {
	if v == "" {
		return "null"
	}
	return v
}

// headObject is HEAD with checksum mode, falling back to a plain HEAD when
// that is refused (SSE-KMS objects need kms:Decrypt to show their checksum).
func (c *Committer) headObject(ctx context.Context, in *s3.HeadObjectInput) (*s3.HeadObjectOutput, error) {
	in.ChecksumMode = types.ChecksumModeEnabled
	out, err := c.s3.HeadObject(ctx, in)
	if code, _ := apiCode(err); code == codeForbidden || code == codeAccessDenied {
		in.ChecksumMode = ""
		out, err = c.s3.HeadObject(ctx, in)
	}
	return out, err
}

// Tags returns the tag set of an object version in S3's order.
func (c *Committer) Tags(ctx context.Context, bucket, key, versionID string) ([]types.Tag, error) {
	out, err := c.s3.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: &bucket, Key: &key, VersionId: optString(versionID)})
	if err != nil {
		ref := &objRef{bucket: bucket, key: key, versionID: versionID}
		return nil, ref.classify(opGetTagging, err,
			"copying an object's tags needs s3:GetObjectTagging (s3:GetObjectVersionTagging for a version id) and s3:PutObjectTagging")
	}
	return out.TagSet, nil
}

func objectFromHead(bucket, key string, h *s3.HeadObjectOutput) *Object {
	o := &Object{
		Bucket:                  bucket,
		Key:                     key,
		VersionID:               aws.ToString(h.VersionId),
		DeleteMarker:            aws.ToBool(h.DeleteMarker),
		ETag:                    aws.ToString(h.ETag),
		Size:                    aws.ToInt64(h.ContentLength),
		LastModified:            aws.ToTime(h.LastModified),
		Metadata:                maps.Clone(h.Metadata),
		ContentType:             aws.ToString(h.ContentType),
		CacheControl:            aws.ToString(h.CacheControl),
		ContentDisposition:      aws.ToString(h.ContentDisposition),
		ContentEncoding:         aws.ToString(h.ContentEncoding),
		ContentLanguage:         aws.ToString(h.ContentLanguage),
		Expires:                 aws.ToString(h.ExpiresString),
		StorageClass:            h.StorageClass,
		ServerSideEncryption:    h.ServerSideEncryption,
		SSEKMSKeyID:             aws.ToString(h.SSEKMSKeyId),
		BucketKeyEnabled:        aws.ToBool(h.BucketKeyEnabled),
		SSECustomerAlgorithm:    aws.ToString(h.SSECustomerAlgorithm),
		WebsiteRedirectLocation: aws.ToString(h.WebsiteRedirectLocation),
		ChecksumType:            h.ChecksumType,
		ObjectLockMode:          h.ObjectLockMode,
		ObjectLockRetainUntil:   aws.ToTime(h.ObjectLockRetainUntilDate),
		ObjectLockLegalHold:     h.ObjectLockLegalHoldStatus,
		TagCount:                int(aws.ToInt32(h.TagCount)),
		Restore:                 aws.ToString(h.Restore),
	}
	if o.Metadata == nil {
		o.Metadata = map[string]string{}
	}
	for _, cs := range []struct {
		v   *string
		alg types.ChecksumAlgorithm
	}{
		{h.ChecksumCRC64NVME, types.ChecksumAlgorithmCrc64nvme},
		{h.ChecksumCRC32, types.ChecksumAlgorithmCrc32},
		{h.ChecksumCRC32C, types.ChecksumAlgorithmCrc32c},
		{h.ChecksumSHA1, types.ChecksumAlgorithmSha1},
		{h.ChecksumSHA256, types.ChecksumAlgorithmSha256},
		{h.ChecksumSHA512, types.ChecksumAlgorithmSha512},
		{h.ChecksumMD5, types.ChecksumAlgorithmMd5},
		{h.ChecksumXXHASH64, types.ChecksumAlgorithmXxhash64},
		{h.ChecksumXXHASH3, types.ChecksumAlgorithmXxhash3},
		{h.ChecksumXXHASH128, types.ChecksumAlgorithmXxhash128},
	} {
		if cs.v != nil && *cs.v != "" {
			o.ChecksumAlgorithm = cs.alg
			o.Checksum = *cs.v
			break
		}
	}
	return o
}

// headFromGet keeps the headers of a GET response that Object records.
func headFromGet(g *s3.GetObjectOutput) *s3.HeadObjectOutput {
	return &s3.HeadObjectOutput{
		VersionId:                 g.VersionId,
		DeleteMarker:              g.DeleteMarker,
		ETag:                      g.ETag,
		ContentLength:             g.ContentLength,
		LastModified:              g.LastModified,
		Metadata:                  g.Metadata,
		ContentType:               g.ContentType,
		CacheControl:              g.CacheControl,
		ContentDisposition:        g.ContentDisposition,
		ContentEncoding:           g.ContentEncoding,
		ContentLanguage:           g.ContentLanguage,
		ExpiresString:             g.ExpiresString,
		StorageClass:              g.StorageClass,
		ServerSideEncryption:      g.ServerSideEncryption,
		SSEKMSKeyId:               g.SSEKMSKeyId,
		BucketKeyEnabled:          g.BucketKeyEnabled,
		SSECustomerAlgorithm:      g.SSECustomerAlgorithm,
		WebsiteRedirectLocation:   g.WebsiteRedirectLocation,
		ChecksumType:              g.ChecksumType,
		ChecksumCRC32:             g.ChecksumCRC32,
		ChecksumCRC32C:            g.ChecksumCRC32C,
		ChecksumCRC64NVME:         g.ChecksumCRC64NVME,
		ChecksumSHA1:              g.ChecksumSHA1,
		ChecksumSHA256:            g.ChecksumSHA256,
		ChecksumSHA512:            g.ChecksumSHA512,
		ChecksumMD5:               g.ChecksumMD5,
		ChecksumXXHASH64:          g.ChecksumXXHASH64,
		ChecksumXXHASH3:           g.ChecksumXXHASH3,
		ChecksumXXHASH128:         g.ChecksumXXHASH128,
		ObjectLockMode:            g.ObjectLockMode,
		ObjectLockRetainUntilDate: g.ObjectLockRetainUntilDate,
		ObjectLockLegalHoldStatus: g.ObjectLockLegalHoldStatus,
		TagCount:                  g.TagCount,
		Restore:                   g.Restore,
	}
}

// httpDate is the IMF-fixdate layout of HTTP date headers.
const httpDate = "Mon, 02 Jan 2006 15:04:05 GMT"

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
