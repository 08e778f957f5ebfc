package pipeline_test

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/rotator-dev/rotator/internal/sample"
	"github.com/rotator-dev/rotator/internal/testenv"
	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/pipeline"
)

// versions lists every version id of the bucket by key, newest first.
func (f *fixture) versions(t *testing.T) map[string][]string {
	t.Helper()
	out, err := f.s3.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: &f.bucket})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]string{}
	for _, v := range out.Versions {
		m[aws.ToString(v.Key)] = append(m[aws.ToString(v.Key)], aws.ToString(v.VersionId))
	}
	return m
}

func (f *fixture) runAllVersions(t *testing.T, c *pipeline.Core) (map[pipeline.Status]int64, string) {
	t.Helper()
	src, err := inventory.Open(ctx, f.s3, inventory.Spec{Source: "s3://" + f.bucket, AllVersions: true,
		Options: inventory.Options{ExcludeSuffix: inventory.DefaultExcludeSuffix}})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	rep, _ := pipeline.NewReport(&buf)
	r := &pipeline.Runner{Core: c, Source: src, Workers: 4, Report: rep}
	if err := r.Execute(ctx, nil); err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	return rep.Counts(), buf.String()
}

// TestReencryptDeletesOldVersionsRespectingObjectLock: in a versioned
// bucket with Object Lock, every key has an older version under the
// compromised key A. Without --delete-old-versions they are reported
// pending; a dry run with it says what would be deleted and deletes
// nothing; the run re-encrypts the current versions and deletes the older
// ones (a second run finishes any whose current version was not done
// first), except the one under a legal hold, which is reported
// ObjectLocked and kept. The ledger records each deletion.
func TestReencryptDeletesOldVersionsRespectingObjectLock(t *testing.T) {
	f := newFixture(t, 0, false)
	f.bucket += "-lock"
	if _, err := f.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &f.bucket, ObjectLockEnabledForBucket: aws.Bool(true)}); err != nil {
		t.Fatalf("create bucket with Object Lock: %v", err)
	}
	t.Cleanup(func() { testenv.EmptyBucket(f.s3, f.bucket) })
	if _, err := f.s3.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: &f.bucket,
		VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled}}); err != nil {
		t.Fatal(err)
	}
	// Two generations of four keys, both under A: the first becomes the
	// older versions.
	for gen := 0; gen < 2; gen++ {
		objs, err := sample.Seed(ctx, f.s3, f.kms.Client(""), sample.Options{Bucket: f.bucket, KMSKeyID: f.kmsKeyA(t), Count: 4})
		if err != nil {
			t.Fatal(err)
		}
		f.objs = objs
	}
	for _, o := range f.objs {
		f.plain[o.Key] = f.decrypt(t, o.Key, f.a)
	}
	before := f.versions(t)
	held := f.objs[0].Key
	heldVersion := before[held][1]
	if _, err := f.s3.PutObjectLegalHold(ctx, &s3.PutObjectLegalHoldInput{Bucket: &f.bucket, Key: &held, VersionId: &heldVersion,
		LegalHold: &types.ObjectLockLegalHold{Status: types.ObjectLockLegalHoldStatusOn}}); err != nil {
		t.Fatalf("legal hold: %v", err)
	}
	t.Cleanup(func() {
		f.s3.PutObjectLegalHold(ctx, &s3.PutObjectLegalHoldInput{Bucket: &f.bucket, Key: &held, VersionId: &heldVersion,
			LegalHold: &types.ObjectLockLegalHold{Status: types.ObjectLockLegalHoldStatusOff}})
	})

	// Without the flag: older versions are pending.
	c, _ := f.reencryptCore("run-report", nil, f.a)
	_, report := f.runAllVersions(t, pipeline.DryRun(c))
	if n := strings.Count(report, ",pending,"+pipeline.CodeNoncurrent+","); n != 4 {
		t.Errorf("%d older versions reported pending, want 4:\n%s", n, report)
	}
	// Dry run with the flag: what would be deleted; nothing is.
	c.Versions = f.commit
	src, err := inventory.Open(ctx, f.s3, inventory.Spec{Source: "s3://" + f.bucket, AllVersions: true,
		Options: inventory.Options{ExcludeSuffix: inventory.DefaultExcludeSuffix}})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := pipeline.MakePlan(ctx, c, src, pipeline.PlanOptions{})
	// Four re-encryptions, each deleting the version it replaces; of the
	// four older versions, the two with the envelope in metadata deleted
	// (the plan reads no Object Lock state), the two with an instruction
	// file kept.
	if err != nil || plan.ByAction["reencrypt"] != 4 || plan.ByAction["delete older version"] != 2 ||
		plan.ByAction["pending: "+pipeline.CodeInstructionVersion] != 2 || plan.Requests["s3:DeleteObject"] != 6 {
		t.Errorf("plan: %v %v (%v)", plan.ByAction, plan.Requests, err)
	}
	_, report = f.runAllVersions(t, pipeline.DryRun(c))
	// The current versions (which the run re-encrypts, making them older
	// versions) and the metadata object's older version; the held one is
	// reported locked, the instruction-file objects' older versions kept.
	if n := strings.Count(report, "would delete"); n != 5 {
		t.Errorf("dry run: %d would be deleted, want 5 (one is held):\n%s", n, report)
	}
	if !strings.Contains(report, pipeline.CodeObjectLocked) {
		t.Errorf("dry run does not report the held version:\n%s", report)
	}
	if got := f.versions(t); len(got) != len(before) || len(got[held]) != 2 {
		t.Fatalf("dry run changed versions: %v", got)
	}

	// The run closes the incident in one pass: it re-encrypts the current
	// versions (whose old state becomes an older version under A) and
	// deletes every older version under A, those the re-encryption made
	// noncurrent included, except the held one. A second run has nothing
	// left to delete and reports the held version again.
	for i, run := range []string{"run-del-1", "run-del-2"} {
		c, _ := f.reencryptCore(run, nil, f.a)
		c.Versions = f.commit
		counts, report := f.runAllVersions(t, c)
		deleted := strings.Count(report, ",succeeded,,deleted this older version")
		if counts[pipeline.StatusFailed] != 0 || counts[pipeline.StatusUnfinished] != 0 {
			t.Fatalf("%s: failures:\n%s", run, report)
		}
		// Gen 2's four, older since the run re-encrypted them into new
		// current versions, and gen 1's older version of the metadata
		// object that is not held. Gen 1's versions of the two objects
		// whose envelope lives in an instruction file are kept and
		// reported: which key wraps them cannot be told.
		if want := []int{5, 0}[i]; deleted != want {
			t.Errorf("%s: %d older versions deleted, want %d:\n%s", run, deleted, want, report)
		}
		if n := strings.Count(report, ",succeeded,,reencrypt "); n != []int{4, 0}[i] {
			t.Errorf("%s: %d re-encrypted, want %d", run, n, []int{4, 0}[i])
		}
		if !strings.Contains(report, pipeline.CodeObjectLocked) {
			t.Errorf("%s: the held version is not reported:\n%s", run, report)
		}
		if n := strings.Count(report, pipeline.CodeInstructionVersion); n != 2 {
			t.Errorf("%s: %d instruction-file versions reported, want 2:\n%s", run, n, report)
		}
	}
	after := f.versions(t)
	for key, vs := range after {
		if strings.HasSuffix(key, ".instruction") {
			continue // older instruction files are left (see oldVersion)
		}
		want := 1
		if key == held || strings.Contains(key, "-instr/") {
			want = 2
		}
		if len(vs) != want {
			t.Errorf("%s: %d versions left, want %d", key, len(vs), want)
		}
	}
	if !slices.Contains(after[held], heldVersion) {
		t.Errorf("the held version is gone")
	}
	for _, o := range f.objs {
		if got := f.decrypt(t, o.Key, f.b); !bytes.Equal(got, f.plain[o.Key]) {
			t.Errorf("%s: current version does not open under B", o.Key)
		}
	}
	dels := 0
	if err := f.ledger.Events(ctx, func(ev ledger.Event) error {
		if ev.Op == ledger.OpDeleteVersion {
			dels++
		}
		return nil
	}); err != nil || dels != 5 {
		t.Errorf("%d delete-version events (%v), want 5", dels, err)
	}
}
