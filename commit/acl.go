package commit

import (
	"context"
	"errors"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// ErrACLWouldBeDropped: the object's ACL grants more than its owner's
// FULL_CONTROL. Every write this package makes (a self-copy, a multipart
// upload, a PutObject of an instruction file) gives the new object the
// bucket's default ACL, so those grants would be lost: the object is left
// untouched.
var ErrACLWouldBeDropped = errors.New("the object's ACL has grants a rewrite would drop")

// ErrNoACLs: the S3 server does not implement object ACLs (versitygw,
// some other S3-compatible servers).
var ErrNoACLs = errors.New("the S3 server does not implement object ACLs")

// Grant is one grant of an object's ACL.
type Grant struct {
	// Grantee as the x-amz-grant-* headers write it: id=CANONICAL-ID,
	// uri=GROUP-URI or emailAddress=ADDRESS.
	Grantee    string
	Permission types.Permission
}

func (g Grant) String() string { return string(g.Permission) + " to " + g.Grantee }

// ExtraGrants reads obj's ACL (s3:GetObjectAcl, of obj's version) and
// returns its grants other than the owner's FULL_CONTROL: the grants a
// rewrite would drop. A bucket with ACLs disabled (Object Ownership
// "bucket owner enforced", the default since 2023) has none. A server
// that does not implement object ACLs fails with ErrNoACLs; a
// missing object with ErrGone.
func (c *Committer) ExtraGrants(ctx context.Context, obj *Object) ([]Grant, error) {
	ref := obj.ref()
	ar, ok := c.s3.(aclReader)
	if !ok {
		return nil, ref.fail(opGetACL, ErrNoACLs, hintACLUnsupported, "the S3 client cannot read ACLs")
	}
	out, err := ar.GetObjectAcl(ctx, &s3.GetObjectAclInput{Bucket: aws.String(obj.Bucket), Key: aws.String(obj.Key), VersionId: optString(obj.VersionID)})
	if err != nil {
		e := ref.classify(opGetACL, err, "reading ACLs needs s3:GetObjectAcl (s3:GetObjectVersionAcl for a version)")
		if code, _ := apiCode(err); code == codeNotImplemented {
			e.Kind, e.Hint = ErrNoACLs, hintACLUnsupported
		}
		return nil, e
	}
	var owner string
	if out.Owner != nil {
		owner = aws.ToString(out.Owner.ID)
	}
	var extra []Grant
	for _, g := range out.Grants {
		gr := Grant{Permission: g.Permission, Grantee: grantee(g.Grantee)}
		if g.Grantee != nil && g.Grantee.Type == types.TypeCanonicalUser && owner != "" &&
			aws.ToString(g.Grantee.ID) == owner && g.Permission == types.PermissionFullControl {
			continue
		}
		extra = append(extra, gr)
	}
	return extra, nil
}

// GrantsError is the error of an object whose ACL has grants a rewrite
// would drop (ErrACLWouldBeDropped), naming them.
func GrantsError(obj *Object, grants []Grant) *Error {
	names := make([]string, len(grants))
	for i, g := range grants {
		names[i] = g.String()
	}
	return obj.ref().fail(opGetACL, ErrACLWouldBeDropped,
		"a rewrite gives the object the bucket's default ACL; grant that access with a bucket policy (or re-apply the grants after the run with PutObjectAcl), then run again",
		"%s", strings.Join(names, ", "))
}

func grantee(g *types.Grantee) string {
	switch {
	case g == nil:
		return "?"
	case g.ID != nil:
		return "id=" + aws.ToString(g.ID)
	case g.URI != nil:
		return "uri=" + aws.ToString(g.URI)
	case g.EmailAddress != nil:
		return "emailAddress=" + aws.ToString(g.EmailAddress)
	}
	return string(g.Type)
}

type aclReader interface {
	GetObjectAcl(context.Context, *s3.GetObjectAclInput, ...func(*s3.Options)) (*s3.GetObjectAclOutput, error)
}

const (
	opGetACL           = "get object acl"
	hintACLUnsupported = "run without --check-acl (where ACLs do not exist, none can be dropped)"
)
