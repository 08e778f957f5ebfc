package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/internal/sample"
	"github.com/rotator-dev/rotator/internal/testenv"
	"github.com/rotator-dev/rotator/pipeline"
)

// TestPlanShowsWriteCostsOnMinIO: plan reads a versioned bucket's lifecycle
// on MinIO (under the policy iam-policy --with plan derives, as temporary
// credentials) and counts the noncurrent copies a run keeps and for how
// long; without s3:GetLifecycleConfiguration it says what it could not
// read and what to grant. On versitygw, which implements neither
// replication nor lifecycle configuration, it says so.
func TestPlanShowsWriteCostsOnMinIO(t *testing.T) {
	testenv.Need(t, testenv.MinIO)
	f := newCLIFixture(t, 0)
	root := testenv.MinIOS3(t)
	b := testenv.Name(t)
	if _, err := root.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &b}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testenv.EmptyBucket(root, b) })
	if _, err := root.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: &b,
		VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled}}); err != nil {
		t.Fatal(err)
	}
	if _, err := root.PutBucketLifecycleConfiguration(ctx, &s3.PutBucketLifecycleConfigurationInput{Bucket: &b,
		LifecycleConfiguration: &s3types.BucketLifecycleConfiguration{Rules: []s3types.LifecycleRule{{
			ID: aws.String("noncurrent"), Status: s3types.ExpirationStatusEnabled, Filter: &s3types.LifecycleRuleFilter{Prefix: aws.String("p/")},
			NoncurrentVersionExpiration: &s3types.NoncurrentVersionExpiration{NoncurrentDays: aws.Int32(30)}}}}}); err != nil {
		t.Fatal(err)
	}
	objs, err := sample.Seed(ctx, root, f.kms, sample.Options{Bucket: b, Prefix: "p/", KMSKeyID: f.arnA, Count: 8, MaxSize: 3000})
	if err != nil {
		t.Fatal(err)
	}
	// What a rewrap rewrites: each object in metadata placement, the
	// instruction file of the others.
	var replaced, inMeta int64
	for _, o := range objs {
		key := o.Key
		if o.Kind.Placement == envelope.PlacementInstructionFile {
			key += ".instruction"
		} else {
			inMeta++
		}
		h, err := root.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &b, Key: &key})
		if err != nil {
			t.Fatal(err)
		}
		replaced += aws.ToInt64(h.ContentLength)
	}
	account := accountOf(f.arnA)
	args := []string{"--source", "s3://" + b + "/p/", "--from", "kms:" + f.arnA, "--to", "kms:" + f.arnB}
	p := f.policyFor(t, account, append(args, "--with", "plan")...)

	code, out, errs := f.rotatorEnv(t, minioSession(t, p), append([]string{"plan", "--json"}, args...)...)
	if code != exitOK {
		t.Fatalf("plan: exit %d\n%s\n%s", code, out, errs)
	}
	var plan pipeline.Plan
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	wc := plan.WriteCosts
	if wc == nil || len(wc.Buckets) != 1 {
		t.Fatalf("write_costs %+v\n%s", wc, out)
	}
	bc := wc.Buckets[0]
	if bc.Versioning != pipeline.VersioningEnabled || len(bc.Unread) > 0 || len(bc.Replication) > 0 ||
		len(bc.NoncurrentExpiration) != 1 || bc.NoncurrentExpiration[0].Days != 30 {
		t.Errorf("bucket configuration %+v", bc)
	}
	if wc.NoncurrentBytes != replaced || wc.NoncurrentExpiringBytes != replaced || wc.NoncurrentDaysMin != 30 || wc.NoncurrentDaysMax != 30 {
		t.Errorf("noncurrent %d (expiring %d after %d-%d days), want %d for 30 days", wc.NoncurrentBytes, wc.NoncurrentExpiringBytes,
			wc.NoncurrentDaysMin, wc.NoncurrentDaysMax, replaced)
	}
	wantStorage := float64(replaced) / (1 << 30) * 0.023
	if got := plan.CostUSD["noncurrent_storage"]; got < wantStorage*0.999 || got > wantStorage*1.001 {
		t.Errorf("noncurrent_storage $%g, want $%g (one month of %d bytes)", got, wantStorage, replaced)
	}
	if plan.CostUSD["noncurrent_storage_monthly"] != 0 || plan.CostUSD["replication"] != 0 {
		t.Errorf("costs %v: nothing is kept past its rule or replicated", plan.CostUSD)
	}
	// After the move a rotation reads and rewrites each instruction file
	// (its old version kept 30 days): for objects this small that costs
	// more than the copy, and plan must say so rather than advertise it.
	pr := pipeline.DefaultPrices
	if pc := plan.Placement; pc == nil || pc.Objects != inMeta {
		t.Errorf("placement %+v: want the %d objects in metadata", pc, inMeta)
	} else {
		moved := float64(inMeta)*(2*pr.S3Get+pr.S3Put) + float64(pc.InstructionBytes)/(1<<30)*pr.StorageGBMonth
		if d := pc.MovedRotationOnceUSD - moved; d > 1e-12 || d < -1e-12 {
			t.Errorf("a rotation after the move: $%g, want $%g", pc.MovedRotationOnceUSD, moved)
		}
		if pc.MoveOnceUSD <= pc.RotationOnceUSD || pc.MovedRotationOnceUSD <= pc.RotationOnceUSD {
			t.Errorf("placement %+v: the move costs a rotation and more; for small objects later rotations cost more too", pc)
		}
	}
	code, text, _ := f.rotatorEnv(t, minioSession(t, p), append([]string{"plan"}, args...)...)
	t.Logf("plan:\n%s", text)
	if code != exitOK || !strings.Contains(text, "the move does not pay") {
		t.Errorf("plan text: exit %d, want it to say the move does not pay for these objects\n%s", code, text)
	}

	// With --placement instruction-file: each object in metadata is moved
	// in its rewrap's copy, which adds a new instruction file.
	code, out, errs = f.rotatorEnv(t, minioSession(t, p), append([]string{"plan", "--json", "--placement", "instruction-file"}, args...)...)
	if code != exitOK {
		t.Fatalf("plan --placement: exit %d\n%s\n%s", code, out, errs)
	}
	var mp pipeline.Plan
	if err := json.Unmarshal([]byte(out), &mp); err != nil {
		t.Fatal(err)
	}
	if mp.ByAction["rewrap + move to instruction file"] != inMeta || mp.ByAction["rewrap"] != int64(len(objs))-inMeta {
		t.Errorf("by action %v: want %d moves", mp.ByAction, inMeta)
	}
	if mp.Requests["s3:PutObject"] != int64(len(objs)) || mp.Requests["s3:CopyObject"] != inMeta {
		t.Errorf("requests %v: want a copy and a new instruction file per move, a PutObject per instruction file rewritten", mp.Requests)
	}
	if mp.Placement == nil || mp.WriteCosts.WrittenBytes != wc.WrittenBytes+mp.Placement.InstructionBytes || mp.WriteCosts.NoncurrentBytes != wc.NoncurrentBytes {
		t.Errorf("write costs %+v: want the new instruction files written, nothing more kept", mp.WriteCosts)
	}

	// Without the lifecycle permission: said, with what to grant.
	code, out, errs = f.rotatorEnv(t, minioSession(t, p.Without("s3:GetLifecycleConfiguration")), append([]string{"plan"}, args...)...)
	if code != exitOK {
		t.Fatalf("plan: exit %d\n%s\n%s", code, out, errs)
	}
	if want := "lifecycle configuration: not read (AccessDenied): grant s3:GetLifecycleConfiguration on arn:aws:s3:::" + b; !strings.Contains(out, want) {
		t.Errorf("plan without s3:GetLifecycleConfiguration:\n%s\nwant %q", out, want)
	}
	if !strings.Contains(out, "until deleted") {
		t.Errorf("plan without the lifecycle: want the noncurrent copies counted as kept until deleted\n%s", out)
	}

	// versitygw implements neither.
	if _, err := sample.Seed(ctx, f.s3, f.kms, sample.Options{Bucket: f.bucket, Prefix: "p/", KMSKeyID: f.arnA, Count: 2}); err != nil {
		t.Fatal(err)
	}
	code, out = f.rotator(t, "plan", "--source", "s3://"+f.bucket+"/p/", "--to", "kms:"+f.arnB)
	if code != exitOK || !strings.Contains(out, "replication configuration: not read: the S3 server does not implement it") {
		t.Errorf("plan on versitygw: exit %d\n%s", code, out)
	}
}
