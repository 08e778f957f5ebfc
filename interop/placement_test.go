package interop

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/aws/amazon-s3-encryption-client-go/v4/commitment"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/pipeline"
)

// TestPlacementMoveOfficialObjects: objects the official Go clients wrote
// with the envelope in metadata (v3.2.0: V2, v4.0.0: V3, with an
// encryption context) are rewrapped from key A to key B by a run with
// --placement instruction-file, which moves each envelope into
// KEY.instruction in the same copy. Afterwards the official clients open
// every object under key B (with and without the context), refuse key A,
// and the stored ciphertext, other metadata, content type and tags are
// unchanged; the metadata holds no envelope (a V3 object keeps x-amz-c,
// x-amz-d and x-amz-i). A later rotation to key C rewrites the
// instruction files only, and the official clients open every object
// under C.
func TestPlacementMoveOfficialObjects(t *testing.T) {
	st := newStack(t)
	bucket := st.bucket(t)
	a, b, c := st.key(t), st.key(t), st.key(t)
	ec := map[string]string{"department": "interop"}
	objs := st.officialObjects(t, bucket, a, ec, []int{0, 1, 4096, 70000}, envelope.PlacementMetadata)
	ledgerURL := filepath.Join(t.TempDir(), "ledger.db")
	rotate := func(runID, from, to string) {
		t.Helper()
		cfg := pipeline.Config{Source: "s3://" + bucket, To: "kms:" + to, From: []string{"kms:" + from}, Ledger: ledgerURL,
			Concurrency: 8, Placement: pipeline.PlacementInstructionFile}
		stats, report := runPipeline(t, cfg, runID, nil)
		if stats.Failed.Load() > 0 || stats.Succeeded.Load() != int64(len(objs)) {
			t.Fatalf("run %s: %v\n%s", runID, stats.Counts(), report)
		}
	}
	check := func(under, not string) {
		t.Helper()
		for _, o := range objs {
			raw, meta := st.kept(t, bucket, o)
			if !bytes.Equal(raw, o.raw) {
				t.Errorf("%s: stored ciphertext changed", o.key)
			}
			if !envelope.NeedsInstructionFile(meta) {
				t.Errorf("%s: the metadata still holds the envelope", o.key)
			}
			if o.writer == "v4.0.0" {
				for _, f := range []string{"x-amz-c", "x-amz-d", "x-amz-i"} {
					if meta[f] == "" {
						t.Errorf("%s: V3 object without %s", o.key, f)
					}
				}
			}
			st.opensOnlyUnder(t, bucket, o, ec, under, not, o.writer == "v4.0.0")
		}
	}
	rotate("move", a, b)
	check(b, a)
	// The instruction files the move wrote are the official format: the
	// Java client's marker, a JSON body the envelope parser reads back.
	for _, o := range objs {
		ik := o.key + envelope.DefaultInstructionSuffix
		body, meta, _ := st.raw(t, bucket, ik)
		if !envelope.IsInstructionFile(meta) {
			t.Errorf("%s: no x-amz-crypto-instr-file marker: %v", ik, meta)
		}
		_, objMeta, _ := st.raw(t, bucket, o.key)
		if _, err := envelope.Parse(objMeta, body, envelope.ParseOptions{}); err != nil {
			t.Errorf("%s: %v", ik, err)
		}
	}
	rotate("after-move", b, c)
	check(c, b)
}

// TestPlacementMoveEveryInstantOpens walks a move's two writes by hand
// with the official clients reading between them: once the instruction
// file (rewrapped under key B) exists beside the object, the metadata
// (key A) still wins, so the object opens under A exactly as before; once
// the guarded copy drops the envelope from the metadata, it opens under
// B from the instruction file. V2 (v3.2.0) and V3 (v4.0.0).
func TestPlacementMoveEveryInstantOpens(t *testing.T) {
	ctx := context.Background()
	st := newStack(t)
	bucket := st.bucket(t)
	a, b := st.key(t), st.key(t)
	body := randomBytes(5000)
	cm := commit.New(st.s3, commit.Options{})
	for wname, w := range map[string]officialClient{
		"v3.2.0": st.v3(t, a),
		"v4.0.0": st.v4(t, a, commitment.REQUIRE_ENCRYPT_REQUIRE_DECRYPT),
	} {
		key := wname + "/move me"
		put(t, w, bucket, key, body, nil)
		_, meta, _ := st.raw(t, bucket, key)
		env, err := envelope.Parse(meta, nil, envelope.ParseOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ec, err := env.KMSContext()
		if err != nil {
			t.Fatal(err)
		}
		re, err := st.kms.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: env.WrappedKey, SourceKeyId: &a,
			SourceEncryptionContext: ec, DestinationKeyId: &b, DestinationEncryptionContext: ec})
		if err != nil {
			t.Fatal(err)
		}
		nenv, err := env.WithWrappedKey(re.CiphertextBlob, env.WrapAlg, ec)
		if err != nil {
			t.Fatal(err)
		}
		side, ibody, err := nenv.InstructionFile()
		if err != nil {
			t.Fatal(err)
		}
		opens := func(step, keyID string, want bool) {
			t.Helper()
			readers := map[string]officialClient{"v3.2.0": st.v3(t, keyID), "v4.0.0 allow-decrypt": st.v4(t, keyID, commitment.REQUIRE_ENCRYPT_ALLOW_DECRYPT)}
			for rname, c := range readers {
				got, err := get(c, bucket, key)
				switch {
				case want && (err != nil || !bytes.Equal(got, body)):
					t.Errorf("%s %s: official %s cannot open it: %v", key, step, rname, err)
				case !want && err == nil:
					t.Errorf("%s %s: official %s opened it with the other key", key, step, rname)
				}
			}
		}
		if _, err := cm.NewInstruction(ctx, bucket, key+envelope.DefaultInstructionSuffix, ibody); err != nil {
			t.Fatal(err)
		}
		opens("with both envelopes", a, true)
		opens("with both envelopes", b, false)
		obj, err := cm.Head(ctx, bucket, key, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cm.DropEnvelope(ctx, obj, side); err != nil {
			t.Fatal(err)
		}
		opens("moved", b, true)
		opens("moved", a, false)
	}
}
