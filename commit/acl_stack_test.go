package commit_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/rotator-dev/rotator/commit"
)

// On the stack: versitygw (v1.8.0) does not implement GetObjectAcl, and
// ExtraGrants says so with what to do. A server that implements it
// reports no extra grant on a new private object.
func TestExtraGrantsOnTheStack(t *testing.T) {
	c := client(t)
	b := newBucket(t, c, false)
	putObject(t, c, b, "k", []byte("x"), map[string]string{})
	grants, err := commit.New(c, commit.Options{}).ExtraGrants(context.Background(), &commit.Object{Bucket: b, Key: "k"})
	switch {
	case err == nil:
		if len(grants) != 0 {
			t.Errorf("a new private object has extra grants %v", grants)
		}
	case !errors.Is(err, commit.ErrNoACLs) || !strings.Contains(err.Error(), "--check-acl"):
		t.Errorf("ExtraGrants on the stack: %v, want ErrNoACLs with a hint", err)
	default:
		t.Logf("not implemented here: %v", err)
	}
}
