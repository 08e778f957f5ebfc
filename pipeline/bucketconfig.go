package pipeline

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	smithy "github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// BucketConfigReader reads the bucket configuration that decides what a
// run's writes cost beyond their requests: versioning (a self-copy keeps
// the old version, with the whole body, as a noncurrent version),
// replication (every write is shipped again) and lifecycle (when
// noncurrent versions expire). *s3.Client implements it.
type BucketConfigReader interface {
	GetBucketVersioning(context.Context, *s3.GetBucketVersioningInput, ...func(*s3.Options)) (*s3.GetBucketVersioningOutput, error)
	GetBucketReplication(context.Context, *s3.GetBucketReplicationInput, ...func(*s3.Options)) (*s3.GetBucketReplicationOutput, error)
	GetBucketLifecycleConfiguration(context.Context, *s3.GetBucketLifecycleConfigurationInput, ...func(*s3.Options)) (*s3.GetBucketLifecycleConfigurationOutput, error)
}

var _ BucketConfigReader = (*s3.Client)(nil)

// Versioning states of BucketConfig.Versioning.
const (
	VersioningOff       = "off"
	VersioningEnabled   = "Enabled"
	VersioningSuspended = "Suspended"
	VersioningUnknown   = "unknown"
)

// BucketConfig is what plan read of one bucket's configuration. A part it
// could not read is named in Unread, with the reason and the permission
// to add; the plan then counts no bytes for it (and says so).
type BucketConfig struct {
	Bucket string `json:"bucket"`
	// Versioning is VersioningOff, VersioningEnabled, VersioningSuspended
	// or VersioningUnknown (not read).
	Versioning string `json:"versioning"`
	// Replication lists the enabled replication rules ("unknown" in
	// Unread when not read).
	Replication []ReplicationRule `json:"replication,omitempty"`
	// NoncurrentExpiration lists the enabled lifecycle rules that expire
	// noncurrent versions.
	NoncurrentExpiration []NoncurrentRule `json:"noncurrent_expiration,omitempty"`
	// Unread says what could not be read, why, and what to grant.
	Unread []string `json:"unread,omitempty"`
}

// ReplicationRule is one enabled replication rule: the prefix it applies
// to ("" every key), whether it filters by tags too (plan cannot see an
// object's tags without reading them, and counts such a rule as applying),
// and its destination bucket ARN.
type ReplicationRule struct {
	ID          string `json:"id,omitempty"`
	Prefix      string `json:"prefix"`
	Tags        bool   `json:"filters_tags,omitempty"`
	Destination string `json:"destination"`
}

// NoncurrentRule is one enabled lifecycle rule that expires noncurrent
// versions Days after they become noncurrent. A rule that also filters by
// tags is listed but never applied by plan (it cannot see tags): the
// versions it may expire are counted as kept. NewerVersions (AWS's
// NewerNoncurrentVersions) keeps that many newer noncurrent versions past
// Days.
type NoncurrentRule struct {
	ID            string `json:"id,omitempty"`
	Prefix        string `json:"prefix"`
	Tags          bool   `json:"filters_tags,omitempty"`
	Days          int    `json:"days"`
	NewerVersions int    `json:"newer_noncurrent_versions,omitempty"`
	// MinSize and MaxSize are the rule's object size filters (0: none).
	MinSize int64 `json:"object_size_greater_than,omitempty"`
	MaxSize int64 `json:"object_size_less_than,omitempty"`
}

// ReadBucketConfig reads bucket's versioning, replication and lifecycle
// configuration. A configuration that does not exist is an empty one; a
// read that is refused or not implemented is named in Unread, and an
// error is returned only when ctx ends.
func ReadBucketConfig(ctx context.Context, c BucketConfigReader, bucket string) (BucketConfig, error) {
	bc := BucketConfig{Bucket: bucket, Versioning: VersioningUnknown}
	arn := "arn:aws:s3:::" + bucket
	unread := func(what, action string, err error) {
		bc.Unread = append(bc.Unread, unreadReason(what, action, arn, err))
	}
	v, err := c.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: &bucket})
	switch {
	case ctx.Err() != nil:
		return bc, ctx.Err()
	case err != nil:
		unread("versioning", "s3:GetBucketVersioning", err)
	case v.Status == types.BucketVersioningStatusEnabled:
		bc.Versioning = VersioningEnabled
	case v.Status == types.BucketVersioningStatusSuspended:
		bc.Versioning = VersioningSuspended
	default:
		bc.Versioning = VersioningOff
	}
	r, err := c.GetBucketReplication(ctx, &s3.GetBucketReplicationInput{Bucket: &bucket})
	switch {
	case ctx.Err() != nil:
		return bc, ctx.Err()
	case isAPICode(err, "ReplicationConfigurationNotFoundError"):
	case err != nil:
		unread("replication configuration", "s3:GetReplicationConfiguration", err)
	case r.ReplicationConfiguration != nil:
		for _, rule := range r.ReplicationConfiguration.Rules {
			if rule.Status != types.ReplicationRuleStatusEnabled || rule.Destination == nil {
				continue
			}
			//lint:ignore SA1019 rules written before filters (replication configuration V1) still carry their prefix here
			rr := ReplicationRule{ID: aws.ToString(rule.ID), Prefix: aws.ToString(rule.Prefix), Destination: aws.ToString(rule.Destination.Bucket)}
			if f := rule.Filter; f != nil {
				switch {
				case f.And != nil:
					rr.Prefix, rr.Tags = aws.ToString(f.And.Prefix), len(f.And.Tags) > 0
				case f.Tag != nil:
					rr.Tags = true
				case f.Prefix != nil:
					rr.Prefix = aws.ToString(f.Prefix)
				}
			}
			bc.Replication = append(bc.Replication, rr)
		}
	}
	l, err := c.GetBucketLifecycleConfiguration(ctx, &s3.GetBucketLifecycleConfigurationInput{Bucket: &bucket})
	switch {
	case ctx.Err() != nil:
		return bc, ctx.Err()
	case isAPICode(err, "NoSuchLifecycleConfiguration"):
	case err != nil:
		unread("lifecycle configuration", "s3:GetLifecycleConfiguration", err)
	default:
		for _, rule := range l.Rules {
			e := rule.NoncurrentVersionExpiration
			if rule.Status != types.ExpirationStatusEnabled || e == nil || aws.ToInt32(e.NoncurrentDays) <= 0 {
				continue
			}
			//lint:ignore SA1019 rules written before filters still carry their prefix here
			nr := NoncurrentRule{ID: aws.ToString(rule.ID), Prefix: aws.ToString(rule.Prefix), Days: int(aws.ToInt32(e.NoncurrentDays)),
				NewerVersions: int(aws.ToInt32(e.NewerNoncurrentVersions))}
			if f := rule.Filter; f != nil {
				switch {
				case f.And != nil:
					nr.Prefix, nr.Tags = aws.ToString(f.And.Prefix), len(f.And.Tags) > 0
					nr.MinSize, nr.MaxSize = aws.ToInt64(f.And.ObjectSizeGreaterThan), aws.ToInt64(f.And.ObjectSizeLessThan)
				case f.Tag != nil:
					nr.Tags = true
				case f.Prefix != nil:
					nr.Prefix = aws.ToString(f.Prefix)
				}
				if f.ObjectSizeGreaterThan != nil {
					nr.MinSize = aws.ToInt64(f.ObjectSizeGreaterThan)
				}
				if f.ObjectSizeLessThan != nil {
					nr.MaxSize = aws.ToInt64(f.ObjectSizeLessThan)
				}
			}
			bc.NoncurrentExpiration = append(bc.NoncurrentExpiration, nr)
		}
	}
	return bc, nil
}

// unreadReason says why a part of a bucket's configuration was not read
// and what to do about it.
func unreadReason(what, action, arn string, err error) string {
	var ae smithy.APIError
	code := ""
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	status := 0
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	switch {
	case code == "AccessDenied" || status == http.StatusForbidden:
		return fmt.Sprintf("%s: not read (AccessDenied): grant %s on %s (rotator iam-policy --with plan includes it)", what, action, arn)
	case code == "NotImplemented" || status == http.StatusNotImplemented:
		return fmt.Sprintf("%s: not read: the S3 server does not implement it (%s)", what, strings.TrimPrefix(action, "s3:"))
	case code != "":
		return fmt.Sprintf("%s: not read (%s): check %s on %s", what, code, action, arn)
	}
	return fmt.Sprintf("%s: not read: %v", what, err)
}

func isAPICode(err error, code string) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == code
}

// noncurrentDays returns the days after which a version of key (size
// bytes) that becomes noncurrent is expired: the shortest of the rules
// that apply, 0 when none does (it is kept until someone deletes it).
func (bc *BucketConfig) noncurrentDays(key string, size int64) int {
	days := 0
	for _, r := range bc.NoncurrentExpiration {
		if r.Tags || !strings.HasPrefix(key, r.Prefix) || r.MinSize > 0 && size <= r.MinSize || r.MaxSize > 0 && size >= r.MaxSize {
			continue
		}
		if days == 0 || r.Days < days {
			days = r.Days
		}
	}
	return days
}

// replicas returns how many destinations a write of key is replicated to.
func (bc *BucketConfig) replicas(key string) int {
	dests := map[string]bool{}
	for _, r := range bc.Replication {
		if strings.HasPrefix(key, r.Prefix) {
			dests[r.Destination] = true
		}
	}
	return len(dests)
}

// keepsNoncurrent reports whether a write over the current version
// versionID keeps that version as a noncurrent one: always with
// versioning enabled; when it is suspended, unless the current version is
// the null version (which the write replaces).
func (bc *BucketConfig) keepsNoncurrent(versionID string) bool {
	switch bc.Versioning {
	case VersioningEnabled:
		return true
	case VersioningSuspended:
		return versionID != "" && versionID != "null"
	}
	return false
}
