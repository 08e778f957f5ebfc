package commit

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// aclS3 answers GetObjectAcl with a fixed ACL or error.
type aclS3 struct {
	S3
	out *s3.GetObjectAclOutput
	err error
	in  *s3.GetObjectAclInput
}

func (a *aclS3) GetObjectAcl(_ context.Context, in *s3.GetObjectAclInput, _ ...func(*s3.Options)) (*s3.GetObjectAclOutput, error) {
	a.in = in
	return a.out, a.err
}

func TestExtraGrants(t *testing.T) {
	owner := &types.Owner{ID: aws.String("owner-id")}
	user := func(id string, p types.Permission) types.Grant {
		return types.Grant{Grantee: &types.Grantee{Type: types.TypeCanonicalUser, ID: aws.String(id)}, Permission: p}
	}
	allUsers := types.Grant{Grantee: &types.Grantee{Type: types.TypeGroup, URI: aws.String("http://acs.amazonaws.com/groups/global/AllUsers")}, Permission: types.PermissionRead}
	obj := &Object{Bucket: "b", Key: "k", VersionID: "v1"}
	for _, tc := range []struct {
		name   string
		grants []types.Grant
		want   []string
	}{
		{"private", []types.Grant{user("owner-id", types.PermissionFullControl)}, nil},
		{"public read", []types.Grant{user("owner-id", types.PermissionFullControl), allUsers},
			[]string{"READ to uri=http://acs.amazonaws.com/groups/global/AllUsers"}},
		{"another account", []types.Grant{user("owner-id", types.PermissionFullControl), user("other-id", types.PermissionRead)},
			[]string{"READ to id=other-id"}},
		{"the owner's READ_ACP", []types.Grant{user("owner-id", types.PermissionReadAcp)}, []string{"READ_ACP to id=owner-id"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := &aclS3{out: &s3.GetObjectAclOutput{Owner: owner, Grants: tc.grants}}
			got, err := New(fs, Options{}).ExtraGrants(context.Background(), obj)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, g := range got {
				names = append(names, g.String())
			}
			if strings.Join(names, "|") != strings.Join(tc.want, "|") {
				t.Errorf("extra grants %q, want %q", names, tc.want)
			}
			if aws.ToString(fs.in.VersionId) != "v1" {
				t.Errorf("read the ACL of version %q, want v1", aws.ToString(fs.in.VersionId))
			}
			if len(got) > 0 {
				e := GrantsError(obj, got)
				if !errors.Is(e, ErrACLWouldBeDropped) || !strings.Contains(e.Error(), tc.want[0]) || e.Hint == "" {
					t.Errorf("GrantsError = %v", e)
				}
			}
		})
	}
	for _, tc := range []struct {
		err  error
		kind error
	}{
		{apiErr(http.StatusNotImplemented, "NotImplemented"), ErrNoACLs},
		{apiErr(http.StatusForbidden, "AccessDenied"), ErrAccessDenied},
		{apiErr(http.StatusNotFound, "NoSuchKey"), ErrGone},
	} {
		_, err := New(&aclS3{err: tc.err}, Options{}).ExtraGrants(context.Background(), obj)
		var e *Error
		if !errors.Is(err, tc.kind) || !errors.As(err, &e) || e.Hint == "" && tc.kind != ErrGone {
			t.Errorf("%v: got %v, want %v with a hint", tc.err, err, tc.kind)
		}
	}
}
