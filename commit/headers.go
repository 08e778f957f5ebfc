package commit

import (
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// headers are the system headers a write must send again, as the S3
// client's input fields want them.
type headers struct {
	contentType, cacheControl, contentDisposition *string
	contentEncoding, contentLanguage              *string
	// expires is set when the stored value is a date the SDK prints back
	// byte for byte; otherwise rawExpires is sent verbatim by optFns.
	expires    *time.Time
	rawExpires string

	storageClass types.StorageClass
	sse          types.ServerSideEncryption
	kmsKeyID     *string
	bucketKey    *bool
	redirect     *string
	checksum     types.ChecksumAlgorithm

	lockMode  types.ObjectLockMode
	lockUntil *time.Time
	legalHold types.ObjectLockLegalHoldStatus
}

func (c *Committer) headersOf(o *Object) headers {
	h := headers{
		contentType:        optString(o.ContentType),
		cacheControl:       optString(o.CacheControl),
		contentDisposition: optString(o.ContentDisposition),
		contentEncoding:    optString(o.ContentEncoding),
		contentLanguage:    optString(o.ContentLanguage),
		storageClass:       o.StorageClass,
		sse:                o.ServerSideEncryption,
		redirect:           optString(o.WebsiteRedirectLocation),
		checksum:           o.ChecksumAlgorithm,
	}
	if o.Expires != "" {
		if t, err := http.ParseTime(o.Expires); err == nil && t.UTC().Format(httpDate) == o.Expires {
			h.expires = aws.Time(t)
		} else {
			h.rawExpires = o.Expires
		}
	}
	if isKMS(o.ServerSideEncryption) {
		h.kmsKeyID = optString(o.SSEKMSKeyID)
		if o.BucketKeyEnabled {
			h.bucketKey = aws.Bool(true)
		}
	}
	if c.opts.CopyObjectLock {
		if o.ObjectLockMode != "" && !o.ObjectLockRetainUntil.IsZero() {
			h.lockMode = o.ObjectLockMode
			h.lockUntil = aws.Time(o.ObjectLockRetainUntil)
		}
		if o.ObjectLockLegalHold == types.ObjectLockLegalHoldStatusOn {
			h.legalHold = o.ObjectLockLegalHold
		}
	}
	return h
}

func isKMS(s types.ServerSideEncryption) bool {
	return strings.HasPrefix(string(s), string(types.ServerSideEncryptionAwsKms))
}

// optFns sends an Expires value the SDK's date type cannot reproduce.
func (h *headers) optFns() []func(*s3.Options) {
	if h.rawExpires == "" {
		return nil
	}
	raw := h.rawExpires
	return []func(*s3.Options){func(o *s3.Options) {
		o.APIOptions = append(o.APIOptions, smithyhttp.SetHeaderValue("Expires", raw))
	}}
}

func (h *headers) copyInput(in *s3.CopyObjectInput) {
	in.ContentType = h.contentType
	in.CacheControl = h.cacheControl
	in.ContentDisposition = h.contentDisposition
	in.ContentEncoding = h.contentEncoding
	in.ContentLanguage = h.contentLanguage
	in.Expires = h.expires
	in.StorageClass = h.storageClass
	in.ServerSideEncryption = h.sse
	in.SSEKMSKeyId = h.kmsKeyID
	in.BucketKeyEnabled = h.bucketKey
	in.WebsiteRedirectLocation = h.redirect
	in.ChecksumAlgorithm = h.checksum
	in.ObjectLockMode = h.lockMode
	in.ObjectLockRetainUntilDate = h.lockUntil
	in.ObjectLockLegalHoldStatus = h.legalHold
}

func (h *headers) createInput(in *s3.CreateMultipartUploadInput) {
	in.ContentType = h.contentType
	in.CacheControl = h.cacheControl
	in.ContentDisposition = h.contentDisposition
	in.ContentEncoding = h.contentEncoding
	in.ContentLanguage = h.contentLanguage
	in.Expires = h.expires
	in.StorageClass = h.storageClass
	in.ServerSideEncryption = h.sse
	in.SSEKMSKeyId = h.kmsKeyID
	in.BucketKeyEnabled = h.bucketKey
	in.WebsiteRedirectLocation = h.redirect
	in.ChecksumAlgorithm = h.checksum
	in.ObjectLockMode = h.lockMode
	in.ObjectLockRetainUntilDate = h.lockUntil
	in.ObjectLockLegalHoldStatus = h.legalHold
}

func (h *headers) putInput(in *s3.PutObjectInput) {
	in.ContentType = h.contentType
	in.CacheControl = h.cacheControl
	in.ContentDisposition = h.contentDisposition
	in.ContentEncoding = h.contentEncoding
	in.ContentLanguage = h.contentLanguage
	in.Expires = h.expires
	in.StorageClass = h.storageClass
	in.ServerSideEncryption = h.sse
	in.SSEKMSKeyId = h.kmsKeyID
	in.BucketKeyEnabled = h.bucketKey
	in.WebsiteRedirectLocation = h.redirect
	if sdkComputes(h.checksum) {
		in.ChecksumAlgorithm = h.checksum
	}
	in.ObjectLockMode = h.lockMode
	in.ObjectLockRetainUntilDate = h.lockUntil
	in.ObjectLockLegalHoldStatus = h.legalHold
}

// sdkComputes reports whether the S3 client can compute a checksum of alg
// for a PutObject body; for others the client's default applies.
func sdkComputes(alg types.ChecksumAlgorithm) bool {
	switch alg {
	case types.ChecksumAlgorithmCrc32, types.ChecksumAlgorithmCrc32c, types.ChecksumAlgorithmCrc64nvme,
		types.ChecksumAlgorithmSha1, types.ChecksumAlgorithmSha256, types.ChecksumAlgorithmSha512:
		return true
	}
	return false
}

// multipartChecksumType is the checksum type a multipart copy asks for:
// the object's own when the algorithm allows it, so a full-object CRC stays
// the same value.
func multipartChecksumType(alg types.ChecksumAlgorithm, had types.ChecksumType) types.ChecksumType {
	switch alg {
	case types.ChecksumAlgorithmCrc64nvme:
		return types.ChecksumTypeFullObject
	case types.ChecksumAlgorithmCrc32, types.ChecksumAlgorithmCrc32c:
		if had == types.ChecksumTypeComposite {
			return types.ChecksumTypeComposite
		}
		return types.ChecksumTypeFullObject
	case types.ChecksumAlgorithmSha1, types.ChecksumAlgorithmSha256:
		return types.ChecksumTypeComposite
	}
	return ""
}

// partChecksum copies the checksum of algorithm alg from an UploadPartCopy
// result into a completed part. Nothing is echoed for an upload created
// without a checksum algorithm (versitygw then fails the completion with
// InvalidPart).
func partChecksum(p *types.CompletedPart, r *types.CopyPartResult, alg types.ChecksumAlgorithm) {
	switch alg {
	case types.ChecksumAlgorithmCrc32:
		p.ChecksumCRC32 = r.ChecksumCRC32
	case types.ChecksumAlgorithmCrc32c:
		p.ChecksumCRC32C = r.ChecksumCRC32C
	case types.ChecksumAlgorithmCrc64nvme:
		p.ChecksumCRC64NVME = r.ChecksumCRC64NVME
	case types.ChecksumAlgorithmSha1:
		p.ChecksumSHA1 = r.ChecksumSHA1
	case types.ChecksumAlgorithmSha256:
		p.ChecksumSHA256 = r.ChecksumSHA256
	case types.ChecksumAlgorithmSha512:
		p.ChecksumSHA512 = r.ChecksumSHA512
	case types.ChecksumAlgorithmMd5:
		p.ChecksumMD5 = r.ChecksumMD5
	case types.ChecksumAlgorithmXxhash64:
		p.ChecksumXXHASH64 = r.ChecksumXXHASH64
	case types.ChecksumAlgorithmXxhash3:
		p.ChecksumXXHASH3 = r.ChecksumXXHASH3
	case types.ChecksumAlgorithmXxhash128:
		p.ChecksumXXHASH128 = r.ChecksumXXHASH128
	}
}

// escape percent-encodes every byte but the RFC 3986 unreserved characters
// (and '/' when keepSlash), as S3 wants copy sources and tag sets: a '+'
// left as is would be read as a space.
func escape(s string, keepSlash bool) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9',
			c == '-', c == '_', c == '.', c == '~', keepSlash && c == '/':
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xF])
		}
	}
	return b.String()
}

// copySource is the x-amz-copy-source value naming an object version.
func copySource(bucket, key, versionID string) string {
	s := bucket + "/" + escape(key, true)
	if versionID != "" {
		s += "?versionId=" + escape(versionID, false)
	}
	return s
}

// encodeTags is a tag set as the x-amz-tagging header wants it (a URL query
// string), or nil for no tags.
func encodeTags(tags []types.Tag) *string {
	if len(tags) == 0 {
		return nil
	}
	var b strings.Builder
	for i, t := range tags {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(escape(aws.ToString(t.Key), false))
		b.WriteByte('=')
		b.WriteString(escape(aws.ToString(t.Value), false))
	}
	return aws.String(b.String())
}
