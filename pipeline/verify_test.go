package pipeline_test

import (
	"io"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/internal/sample"
	"github.com/rotator-dev/rotator/pipeline"
)

func TestVerifyChecksEveryTag(t *testing.T) {
	f := newFixture(t, 8, false)
	// A larger object read in several chunks, V2 and V3.
	big, err := sample.Seed(ctx, f.s3, f.kms.Client(""), sample.Options{Bucket: f.bucket, Prefix: "big/",
		KMSKeyID: f.a.ID(), Count: 2, MaxSize: 3 << 20, Kinds: []sample.Kind{
			{Format: envelope.V2, Placement: envelope.PlacementMetadata}, {Format: envelope.V3, Placement: envelope.PlacementMetadata}}})
	if err != nil {
		t.Fatal(err)
	}
	verify := func(key string) map[pipeline.Status]int {
		v := &pipeline.Verifier{Core: f.core("verify"), Bodies: f.s3, Key: openKey(t, f.deps, "kms:"+key)}
		got := map[pipeline.Status]int{}
		if err := v.Verify(ctx, f.source(t), 0, 4, func(o pipeline.Outcome) { got[o.Status]++ }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	n := len(f.objs) + len(big)
	if got := verify(f.a.ID()); got[pipeline.StatusSucceeded] != n {
		t.Fatalf("under A: %v, want %d verified", got, n)
	}
	if got := verify(f.b.ID()); got[pipeline.StatusFailed] != n {
		t.Errorf("under B: %v, want %d failed", got, n)
	}
	// Flip one byte of a stored tag: that object, and only it, fails.
	key := big[1].Key
	out, err := f.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &f.bucket, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(out.Body)
	out.Body.Close()
	body[len(body)-1] ^= 0x01
	put(t, f, key, body, out.Metadata)
	got := verify(f.a.ID())
	if got[pipeline.StatusSucceeded] != n-1 || got[pipeline.StatusFailed] != 1 {
		t.Errorf("after a flipped tag byte: %v", got)
	}
	// Sampling verifies exactly N.
	v := &pipeline.Verifier{Core: f.core("verify"), Bodies: f.s3, Key: f.a}
	count := 0
	if err := v.Verify(ctx, f.source(t), 3, 2, func(pipeline.Outcome) { count++ }); err != nil || count != 3 {
		t.Errorf("sample 3: %d outcomes, %v", count, err)
	}
}
