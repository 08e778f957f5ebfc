package pipeline_test

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/internal/sample"
	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/pipeline"
)

// A key that ends in .instruction although no object of that name without
// it exists is no instruction file of a listed object: the run's source
// delivers it (it was dropped in silence, so an encrypted object named so
// was never rotated), the core rotates it if it is an encrypted object, and
// the report says why such a key is there; an instruction file its object
// outlived is reported and left as it is. Instruction files of listed
// objects get no row, as before.
func TestKeysEndingInTheInstructionSuffixAreReported(t *testing.T) {
	f := newFixture(t, 8, false)
	copyTo := func(src, dst string) {
		t.Helper()
		if _, err := f.s3.CopyObject(ctx, &s3.CopyObjectInput{Bucket: &f.bucket, Key: aws.String(dst),
			CopySource: aws.String(f.bucket + "/" + src)}); err != nil {
			t.Fatal(err)
		}
	}
	var meta, instr sample.Object
	for _, o := range f.objs {
		switch o.Kind.Placement {
		case envelope.PlacementMetadata:
			meta = o
		case envelope.PlacementInstructionFile:
			instr = o
		}
	}
	const encrypted, orphan = "photos/enc.instruction", "photos/orphan.instruction"
	copyTo(meta.Key, encrypted)                                 // an encrypted object, its envelope in its metadata
	copyTo(instr.Key+envelope.DefaultInstructionSuffix, orphan) // an instruction file whose object is gone
	plain := f.decrypt(t, encrypted, f.a)

	env, err := pipeline.Open(ctx, pipeline.Config{Source: "s3://" + f.bucket, To: "kms:alias/unused"}, pipeline.OpenOptions{NoKeys: true, NoLedger: true})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	src, err := env.Source(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	core := f.core("suffix")
	rows := map[string]pipeline.Outcome{}
	if err := src.Stream(ctx, func(it inventory.Item) error {
		o, err := core.Process(ctx, it)
		if err != nil {
			return err
		}
		// The hook the core calls on every outcome.
		rows[it.Key] = core.NoteUnpairedSuffix(it, o)
		if want := it.Key == encrypted || it.Key == orphan; it.UnpairedSuffix != want {
			t.Errorf("%s: flagged %v, want %v", it.Key, it.UnpairedSuffix, want)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(f.objs)+2 {
		t.Errorf("%d rows, want %d (the samples, and the two keys ending in the suffix)", len(rows), len(f.objs)+2)
	}
	if o := rows[encrypted]; o.Status != pipeline.StatusSucceeded || !strings.Contains(o.Message, "no object photos/enc exists") {
		t.Errorf("%s: %+v, want rewrapped with a note", encrypted, o)
	}
	if got := f.decrypt(t, encrypted, f.b); string(got) != string(plain) {
		t.Errorf("%s does not open under B with its plaintext", encrypted)
	}
	if o := rows[orphan]; o.Status != pipeline.StatusSkipped || o.ErrorCode != pipeline.CodeUnpairedInstructionFile || !strings.Contains(o.Message, "left as it is") {
		t.Errorf("%s: %+v, want skipped %s", orphan, o, pipeline.CodeUnpairedInstructionFile)
	}

	// The plan counts them.
	src, err = env.Source(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	dry := f.core("plan")
	dry.Ledger = nil
	dry = pipeline.DryRun(dry)
	p, err := pipeline.MakePlan(ctx, dry, src, pipeline.PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.UnpairedSuffix != 2 || p.ByAction["skipped: "+pipeline.CodeUnpairedInstructionFile] != 1 {
		t.Errorf("plan: %d keys ending in the suffix, by action %v; want 2, one of them %s", p.UnpairedSuffix, p.ByAction, pipeline.CodeUnpairedInstructionFile)
	}
}
