package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// versitygw implements no object ACLs: plan --check-acl says it could not
// check, plan without it says it did not, and run --check-acl leaves every
// object untouched with a hint (it never rewrites an object whose ACL it
// could not read).
func TestCLICheckACL(t *testing.T) {
	f := newCLIFixture(t, 4)
	base := []string{"--source", "s3://" + f.bucket, "--to", "kms:" + f.arnB}
	code, out := f.rotator(t, append([]string{"plan"}, base...)...)
	if code != exitOK || !strings.Contains(out, "object ACLs: not checked (") {
		t.Errorf("plan: exit %d, want it to say ACLs were not checked:\n%s", code, out)
	}
	code, out = f.rotator(t, append([]string{"plan", "--check-acl"}, base...)...)
	if code != exitOK || !strings.Contains(out, "object ACLs: not checked: the S3 server does not implement object ACLs") {
		t.Errorf("plan --check-acl: exit %d, want it to say the server has no ACLs:\n%s", code, out)
	}
	code, out = f.rotator(t, append([]string{"plan", "--check-acl", "--json"}, base...)...)
	if code != exitOK || !strings.Contains(out, `"acl_checked":false`) || !strings.Contains(out, `"acl_not_checked"`) {
		t.Errorf("plan --check-acl --json: exit %d:\n%s", code, out)
	}
	code, out = f.rotator(t, append([]string{"run", "--check-acl", "--ledger", filepath.Join(f.dir, "l.db"), "--no-progress", "--report", "r.csv"}, base...)...)
	if code != exitPartial || !strings.Contains(out, "see r.csv") {
		t.Errorf("run --check-acl: exit %d, want %d:\n%s", code, exitPartial, out)
	}
	if b, err := os.ReadFile(filepath.Join(f.dir, "r.csv")); err != nil || !strings.Contains(string(b), "run without --check-acl") {
		t.Errorf("report (%v) lacks the hint:\n%s", err, b)
	}
	f.opensUnder(t, f.arnA)
}
