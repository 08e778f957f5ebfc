package pipeline_test

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/rotator-dev/rotator/internal/sample"
	"github.com/rotator-dev/rotator/internal/testenv"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/pipeline"
)

// TestReencryptDeletesOldVersionsRespectingRetention: in a versioned
// bucket with Object Lock, every key has an older version under the
// compromised key A. With --delete-old-versions, a version under
// GOVERNANCE retention and one under COMPLIANCE retention are reported
// ObjectLocked (naming the mode and date) and kept, their retention
// untouched (rotator never sends x-amz-bypass-governance-retention); a
// version whose retention has expired is deleted like one that never had
// any. (TestReencryptDeletesOldVersionsRespectingObjectLock covers a legal
// hold.)
func TestReencryptDeletesOldVersionsRespectingRetention(t *testing.T) {
	t.Parallel() // it waits for a COMPLIANCE retention to expire
	f := newFixture(t, 0, false)
	unused := f.bucket
	t.Cleanup(func() { testenv.EmptyBucket(f.s3, unused) })
	f.bucket += "-retention"
	if _, err := f.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &f.bucket, ObjectLockEnabledForBucket: aws.Bool(true)}); err != nil {
		t.Fatalf("create bucket with Object Lock: %v", err)
	}
	if _, err := f.s3.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: &f.bucket,
		VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled}}); err != nil {
		t.Fatal(err)
	}
	// Two generations of four keys, both under A: the first becomes the
	// older versions.
	for gen := 0; gen < 2; gen++ {
		objs, err := sample.Seed(ctx, f.s3, f.kms.Client(""), sample.Options{Bucket: f.bucket, KMSKeyID: f.kmsKeyA(t), Count: 4,
			Kinds: []sample.Kind{sample.AllKinds[0], sample.AllKinds[1]}})
		if err != nil {
			t.Fatal(err)
		}
		f.objs = objs
	}
	for _, o := range f.objs {
		f.plain[o.Key] = f.decrypt(t, o.Key, f.a)
	}
	before := f.versions(t)
	older := func(i int) (string, string) { k := f.objs[i].Key; return k, before[k][1] }

	// COMPLIANCE retention cannot be shortened or lifted by anyone: keep it
	// short, and let the cleanup wait for it.
	now := time.Now().UTC().Truncate(time.Second)
	locks := []struct {
		mode  types.ObjectLockRetentionMode
		until time.Time
	}{
		{types.ObjectLockRetentionModeGovernance, now.Add(time.Hour)},
		{types.ObjectLockRetentionModeCompliance, now.Add(20 * time.Second)},
		{types.ObjectLockRetentionModeCompliance, now.Add(2 * time.Second)}, // expires before the run
	}
	for i, l := range locks {
		key, vid := older(i)
		if _, err := f.s3.PutObjectRetention(ctx, &s3.PutObjectRetentionInput{Bucket: &f.bucket, Key: &key, VersionId: &vid,
			Retention: &types.ObjectLockRetention{Mode: l.mode, RetainUntilDate: aws.Time(l.until)}}); err != nil {
			t.Fatalf("retention %s on %s: %v", l.mode, key, err)
		}
	}
	t.Cleanup(func() {
		// Lift the GOVERNANCE retention (with the bypass rotator never
		// sends) and wait out the COMPLIANCE one, so the bucket can go.
		key, vid := older(0)
		f.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &f.bucket, Key: &key, VersionId: &vid, BypassGovernanceRetention: aws.Bool(true)})
		time.Sleep(time.Until(locks[1].until.Add(time.Second)))
		testenv.EmptyBucket(f.s3, f.bucket)
	})
	// The server enforces them: a plain delete of a locked version fails.
	for i := range 2 {
		key, vid := older(i)
		if _, err := f.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &f.bucket, Key: &key, VersionId: &vid}); err == nil {
			t.Fatalf("the server deleted a version under %s retention: the test cannot show anything", locks[i].mode)
		}
	}
	time.Sleep(time.Until(locks[2].until.Add(1100 * time.Millisecond)))

	// The run, twice: the first re-encrypts the current versions (whose old
	// state becomes an older version under A) and deletes the older
	// versions listed after their current one; the second deletes the rest.
	deleted := 0
	var report string
	for _, run := range []string{"run-ret-1", "run-ret-2"} {
		c, _ := f.reencryptCore(run, nil, f.a)
		c.Versions = f.commit
		var counts map[pipeline.Status]int64
		counts, report = f.runAllVersions(t, c)
		deleted += strings.Count(report, ",succeeded,,deleted this older version")
		if counts[pipeline.StatusFailed] != 0 {
			t.Fatalf("%s: failures:\n%s", run, report)
		}
	}
	// The second run meets both locked versions again and says why.
	for i, l := range locks[:2] {
		key, vid := older(i)
		line := ""
		for _, ln := range strings.Split(report, "\n") {
			if strings.Contains(ln, vid) {
				line = ln
			}
		}
		want := string(l.mode) + " retention until " + l.until.Format(time.RFC3339)
		if !strings.Contains(line, ",pending,"+pipeline.CodeObjectLocked+",") || !strings.Contains(line, want) {
			t.Errorf("%s@%s: report line %q, want %s naming %q", key, vid, line, pipeline.CodeObjectLocked, want)
		}
	}
	// Gen 1's older versions but the two locked ones, and gen 2's four,
	// older since the run re-encrypted them into new current versions.
	if deleted != 6 {
		t.Errorf("%d older versions deleted, want 6:\n%s", deleted, report)
	}
	after := f.versions(t)
	for i, o := range f.objs {
		want := 1
		if i < 2 {
			want = 2
		}
		if len(after[o.Key]) != want {
			t.Errorf("%s: %d versions left, want %d", o.Key, len(after[o.Key]), want)
		}
	}
	for i, l := range locks[:2] {
		key, vid := older(i)
		if !slices.Contains(after[key], vid) {
			t.Errorf("%s@%s under %s retention is gone", key, vid, l.mode)
			continue
		}
		r, err := f.s3.GetObjectRetention(ctx, &s3.GetObjectRetentionInput{Bucket: &f.bucket, Key: &key, VersionId: &vid})
		if err != nil || r.Retention == nil || r.Retention.Mode != l.mode || !aws.ToTime(r.Retention.RetainUntilDate).Equal(l.until) {
			t.Errorf("%s@%s: retention now %+v (%v), want %s until %s", key, vid, r, err, l.mode, l.until)
		}
	}
	if key, vid := older(2); slices.Contains(after[key], vid) {
		t.Errorf("%s@%s: its retention expired, yet it was kept", key, vid)
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
	}); err != nil || dels != 6 {
		t.Errorf("%d delete-version events (%v), want 6", dels, err)
	}
}
