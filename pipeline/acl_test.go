package pipeline_test

import (
	"context"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/pipeline"
	"github.com/rotator-dev/rotator/rewrap"
)

// fakeACL stands for S3's object ACLs (versitygw implements none): the
// keys in grants have extra grants; it records the keys it was asked for.
type fakeACL struct {
	grants map[string][]commit.Grant
	mu     sync.Mutex
	asked  map[string]int
}

func (a *fakeACL) ExtraGrants(_ context.Context, obj *commit.Object) ([]commit.Grant, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.asked == nil {
		a.asked = map[string]int{}
	}
	a.asked[obj.Key]++
	return a.grants[obj.Key], nil
}

// aclSamples picks a sample with its envelope in its metadata and one with
// an instruction file, and gives the first object and the second's
// instruction file an extra grant.
func aclSamples(f *fixture) (meta, instr string, acl *fakeACL) {
	for _, o := range f.objs {
		switch {
		case o.Kind.Placement == envelope.PlacementMetadata && meta == "":
			meta = o.Key
		case o.Kind.Placement == envelope.PlacementInstructionFile && instr == "":
			instr = o.Key
		}
	}
	g := []commit.Grant{{Grantee: "id=other-account", Permission: types.PermissionRead}}
	return meta, instr, &fakeACL{grants: map[string][]commit.Grant{meta: g, instr + envelope.DefaultInstructionSuffix: g}}
}

// With --check-acl, an object whose ACL (or whose instruction file's ACL,
// when that is what the run writes) grants more than its owner's
// FULL_CONTROL is reported and left untouched, in both modes; the others
// are rotated. The plan counts them.
func TestCheckACLLeavesObjectsWithGrantsUntouched(t *testing.T) {
	for _, mode := range []pipeline.Mode{pipeline.ModeRewrap, pipeline.ModeReencrypt} {
		t.Run(string(mode), func(t *testing.T) {
			f := newFixture(t, 8, false)
			meta, instr, acl := aclSamples(f)

			// The plan reads the ACLs of what the run would write.
			plan := f.core("plan")
			plan.Ledger, plan.Mode = nil, mode
			if mode == pipeline.ModeReencrypt {
				_, e := f.reencryptCore("plan", nil, f.a)
				plan.From, plan.Reencrypter = []rewrap.Keyring{f.a}, e
			}
			plan = pipeline.DryRun(plan)
			p, err := pipeline.MakePlan(ctx, plan, f.source(t), pipeline.PlanOptions{ACL: acl})
			if err != nil {
				t.Fatal(err)
			}
			if !p.ACLChecked || p.ACLGrants != 2 || p.ByAction["failed: "+pipeline.CodeACLWouldBeDropped] != 2 || p.Requests["s3:GetObjectAcl"] == 0 {
				t.Errorf("plan: checked %v, %d objects with grants, by action %v, %d ACL reads; want 2 left untouched",
					p.ACLChecked, p.ACLGrants, p.ByAction, p.Requests["s3:GetObjectAcl"])
			}

			var c *pipeline.Core
			if mode == pipeline.ModeRewrap {
				c = f.core("acl")
				c.S3 = pipeline.ACLGuard(f.commit, acl)
			} else {
				c, _ = f.reencryptCore("acl", pipeline.ACLGuardWriter(f.commit, acl, ""), f.a)
			}
			_, buf := f.run(t, c)
			rows := map[string]map[string]string{}
			for _, r := range reportRows(t, buf) {
				k, err := url.QueryUnescape(r["Key"])
				if err != nil {
					t.Fatal(err)
				}
				rows[k] = r
			}
			for _, o := range f.objs {
				r := rows[o.Key]
				if o.Key == meta || o.Key == instr {
					if r["Status"] != "failed" || !strings.Contains(r["Message"], "READ to id=other-account") ||
						!strings.Contains(r["Message"], "grants a rewrite would drop") {
						t.Errorf("%s: %v, want failed naming the grant", o.Key, r)
					}
					if got := f.decrypt(t, o.Key, f.a); string(got) != string(f.plain[o.Key]) {
						t.Errorf("%s was changed", o.Key)
					}
					continue
				}
				if r["Status"] != "succeeded" {
					t.Errorf("%s: %v, want succeeded", o.Key, r)
				}
				f.decrypt(t, o.Key, f.b)
			}
			// A rewrap reads the ACL of what it writes: of an object whose
			// envelope is in its instruction file, only the instruction
			// file's (once by the plan, once by the run). A re-encryption
			// writes both.
			if mode == pipeline.ModeRewrap && (acl.asked[instr] != 0 || acl.asked[instr+envelope.DefaultInstructionSuffix] != 2) {
				t.Errorf("ACL reads of %s and its instruction file: %d and %d, want 0 and 2", instr, acl.asked[instr], acl.asked[instr+envelope.DefaultInstructionSuffix])
			}
			if mode == pipeline.ModeReencrypt && (acl.asked[instr] != 2 || acl.asked[instr+envelope.DefaultInstructionSuffix] != 2) {
				t.Errorf("ACL reads of %s and its instruction file: %d and %d, want 2 and 2", instr, acl.asked[instr], acl.asked[instr+envelope.DefaultInstructionSuffix])
			}
			if mode == pipeline.ModeReencrypt && f.multipartUploads(t) != 0 {
				t.Error("multipart uploads left")
			}
		})
	}
}
