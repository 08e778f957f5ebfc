package commit

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

const (
	opDeleteVersion   = "delete version"
	hintDeletePerms   = "deleting an older version needs s3:DeleteObjectVersion; a version under Object Lock retention or a legal hold cannot be deleted (rotator never bypasses governance mode)"
	errNoVersionToDel = "a version id is required: rotator deletes older versions only, never a key's current state"
)

// DeleteVersion permanently deletes one older version of an object (the
// S3 DeleteObject call with its version id). Object Lock is never bypassed
// (no x-amz-bypass-governance-retention): S3 refuses a locked version, and
// the refusal is an *Error of kind ErrAccessDenied. A version that no longer
// exists is not an error.
func (c *Committer) DeleteVersion(ctx context.Context, obj *Object) error {
	ref := obj.ref()
	if obj.VersionID == "" || obj.VersionID == "null" {
		return ref.fail(opDeleteVersion, ErrUnsupported, "", errNoVersionToDel)
	}
	_, err := c.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(obj.Bucket), Key: aws.String(obj.Key),
		VersionId: aws.String(obj.VersionID)})
	if err != nil {
		e := ref.classify(opDeleteVersion, err, hintDeletePerms)
		if errors.Is(e, ErrGone) {
			return nil
		}
		return e
	}
	return nil
}

// Lock is the Object Lock state of one object version.
type Lock struct {
	Mode        types.ObjectLockRetentionMode // "" when none
	RetainUntil time.Time
	LegalHold   bool
}

// Lock reads the Object Lock retention and legal hold of obj's version
// (s3:GetObjectRetention, s3:GetObjectLegalHold). A bucket without Object
// Lock has neither: the zero Lock.
func (c *Committer) Lock(ctx context.Context, obj *Object) (Lock, error) {
	var l Lock
	lc, ok := c.s3.(lockReader)
	if !ok {
		return l, nil
	}
	ref := obj.ref()
	vid := optString(obj.VersionID)
	r, err := lc.GetObjectRetention(ctx, &s3.GetObjectRetentionInput{Bucket: aws.String(obj.Bucket), Key: aws.String(obj.Key), VersionId: vid})
	switch {
	case err == nil && r.Retention != nil:
		l.Mode, l.RetainUntil = r.Retention.Mode, aws.ToTime(r.Retention.RetainUntilDate)
	case err != nil && !noLockConfig(err):
		return l, ref.classify(opGetLock, err, hintLockPerms)
	}
	h, err := lc.GetObjectLegalHold(ctx, &s3.GetObjectLegalHoldInput{Bucket: aws.String(obj.Bucket), Key: aws.String(obj.Key), VersionId: vid})
	switch {
	case err == nil && h.LegalHold != nil:
		l.LegalHold = h.LegalHold.Status == types.ObjectLockLegalHoldStatusOn
	case err != nil && !noLockConfig(err):
		return l, ref.classify(opGetLock, err, hintLockPerms)
	}
	return l, nil
}

type lockReader interface {
	GetObjectRetention(context.Context, *s3.GetObjectRetentionInput, ...func(*s3.Options)) (*s3.GetObjectRetentionOutput, error)
	GetObjectLegalHold(context.Context, *s3.GetObjectLegalHoldInput, ...func(*s3.Options)) (*s3.GetObjectLegalHoldOutput, error)
}

const (
	opGetLock     = "get object lock"
	hintLockPerms = "reading Object Lock state needs s3:GetObjectRetention and s3:GetObjectLegalHold"
)

// noLockConfig reports whether err says the bucket or version has no Object
// Lock setting to read.
func noLockConfig(err error) bool {
	code, status := apiCode(err)
	switch code {
	case "ObjectLockConfigurationNotFoundError", "NoSuchObjectLockConfiguration", "InvalidRequest":
		return true
	}
	return status == http.StatusNotFound && code != codeNoSuchKey && code != codeNoSuchVersion
}

// Version is one version of a key as a version listing shows it.
type Version struct {
	VersionID    string
	ETag         string
	Size         int64
	IsLatest     bool
	DeleteMarker bool
}

// Versions lists the versions and delete markers of exactly key
// (s3:ListBucketVersions): the evidence of whether a version was deleted.
func (c *Committer) Versions(ctx context.Context, bucket, key string) ([]Version, error) {
	ref := &objRef{bucket: bucket, key: key}
	in := &s3.ListObjectVersionsInput{Bucket: aws.String(bucket), Prefix: aws.String(key)}
	var out []Version
	for {
		page, err := c.s3.ListObjectVersions(ctx, in)
		if err != nil {
			return nil, ref.classify(opListVersions, err, "listing a key's versions needs s3:ListBucketVersions on the bucket")
		}
		past := false
		for _, v := range page.Versions {
			switch k := aws.ToString(v.Key); {
			case k == key:
				out = append(out, Version{VersionID: aws.ToString(v.VersionId), ETag: aws.ToString(v.ETag), Size: aws.ToInt64(v.Size), IsLatest: aws.ToBool(v.IsLatest)})
			case k > key:
				past = true
			}
		}
		for _, m := range page.DeleteMarkers {
			switch k := aws.ToString(m.Key); {
			case k == key:
				out = append(out, Version{VersionID: aws.ToString(m.VersionId), IsLatest: aws.ToBool(m.IsLatest), DeleteMarker: true})
			case k > key:
				past = true
			}
		}
		if past || !aws.ToBool(page.IsTruncated) {
			return out, nil
		}
		in.KeyMarker, in.VersionIdMarker = page.NextKeyMarker, page.NextVersionIdMarker
	}
}

const opListVersions = "list versions"
