package interop

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/aws/amazon-s3-encryption-client-go/v4/commitment"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/pipeline"
	"github.com/rotator-dev/rotator/reencrypt"
)

// TestPipelineReencryptsOfficialObjects is the re-encryption contract:
// objects written by the official Go clients v3.2.0 (V2) and v4.0.0 (V3),
// with an encryption context, in metadata and in instruction files, of 0
// B, 1 B, 5 MiB - 1, 5 MiB + 1 and 12 MiB + 3 (three 5 MiB parts), are
// re-encrypted by a pipeline run (--mode reencrypt) from key A to key B
// under fresh data keys, keeping their formats; then from B to C with
// --format v3. After each run the official clients open every object under
// the new key, with and without the encryption context, with identical
// plaintext; the old key no longer opens it; the ciphertext is new; user
// metadata, content type and tags are kept. After the upgrade, v4.0.0
// reads everything with REQUIRE_ENCRYPT_REQUIRE_DECRYPT. Legacy AES-CBC
// objects of the same sizes (the Java client v1's KMS layout) in the bucket
// are upgraded to V2 AES-GCM by the first run (V3 by the second).
func TestPipelineReencryptsOfficialObjects(t *testing.T) {
	ctx := context.Background()
	st := newStack(t)
	bucket := st.bucket(t)
	a, b, c := st.key(t), st.key(t), st.key(t)
	ec := map[string]string{"department": "interop"}
	const mib = 1 << 20
	objs := st.officialObjects(t, bucket, a, ec, []int{0, 1, 5*mib - 1, 5*mib + 1, 12*mib + 3},
		envelope.PlacementMetadata, envelope.PlacementInstructionFile)
	// Legacy objects (AES-CBC, written by the Java client v1 under KMS, in
	// the layout of the official vector: see putVectorCBC): always
	// upgraded, to V2 AES-GCM (or V3).
	for _, size := range []int{0, 1, 5*mib - 1, 5*mib + 1, 12*mib + 3} {
		key := fmt.Sprintf("legacy-kms-cbc/%d bytes", size)
		body := randomBytes(size)
		putVectorCBC(t, st, bucket, key, a, body, func(in *s3.PutObjectInput) {
			in.Metadata["owner"] = "team-x"
			in.ContentType, in.Tagging = aws.String("text/plain"), aws.String("project=interop")
		})
		o, _ := st.record(t, bucket, key, body, "legacy")
		objs = append(objs, o)
	}
	ledgerURL := filepath.Join(t.TempDir(), "ledger.db")

	run := func(runID string, cfg pipeline.Config) {
		t.Helper()
		cfg.Source, cfg.Ledger, cfg.Mode = "s3://"+bucket, ledgerURL, pipeline.ModeReencrypt
		cfg.Concurrency, cfg.PartSize = 4, reencrypt.MinPartSize // the default checksum path
		stats, report := runPipeline(t, cfg, runID, func(env *pipeline.Env, core *pipeline.Core) {
			if n, err := pipeline.Unfinished(ctx, env.Ledger, runID); err != nil || n != 0 {
				t.Errorf("run %s left %d intents in the ledger (%v)", runID, n, err)
			}
		})
		if stats.Failed.Load() > 0 || stats.Succeeded.Load() != int64(len(objs)) {
			t.Fatalf("run %s: %v\n%s", runID, stats.Counts(), report)
		}
		ups, err := st.s3.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &bucket})
		if err != nil || len(ups.Uploads) != 0 {
			t.Errorf("run %s left multipart uploads: %v %v", runID, ups, err)
		}
	}
	check := func(t *testing.T, newKey, oldKey string, upgraded bool) {
		for i, o := range objs {
			raw, _ := st.kept(t, bucket, o)
			if len(o.raw) > 16 && bytes.Equal(raw[:16], o.raw[:16]) {
				t.Errorf("%s: ciphertext unchanged: not re-encrypted", o.key)
			}
			objs[i].raw = raw
			v3 := o.writer == "v4.0.0" || upgraded
			if !v3 {
				if _, err := get(st.v4(t, newKey, commitment.REQUIRE_ENCRYPT_REQUIRE_DECRYPT), bucket, o.key); err == nil {
					t.Errorf("%s: read as V3 by a require-decrypt client: its V2 format was not kept", o.key)
				}
			}
			withContext := ec
			if o.writer == "legacy" {
				withContext = nil // written without an application context
			}
			st.opensOnlyUnder(t, bucket, o, withContext, newKey, oldKey, v3)
		}
	}

	run("reencrypt-keep", pipeline.Config{To: "kms:" + b, From: []string{"kms:" + a}})
	t.Run("keep", func(t *testing.T) { check(t, b, a, false) })
	run("reencrypt-v3", pipeline.Config{To: "kms:" + c, From: []string{"kms:" + b}, Format: "v3"})
	t.Run("upgrade", func(t *testing.T) { check(t, c, b, true) })
}
