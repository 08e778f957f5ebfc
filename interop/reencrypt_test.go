package interop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"testing"

	"github.com/aws/amazon-s3-encryption-client-go/v4/commitment"
	"github.com/aws/aws-sdk-go-v2/aws"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

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
	writers := map[string]officialClient{
		"v3.2.0": st.v3(t, a),
		"v4.0.0": st.v4(t, a, commitment.REQUIRE_ENCRYPT_REQUIRE_DECRYPT),
	}
	const mib = 1 << 20
	var objs []written
	for wname, w := range writers {
		for _, size := range []int{0, 1, 5*mib - 1, 5*mib + 1, 12*mib + 3} {
			for _, p := range []envelope.Placement{envelope.PlacementMetadata, envelope.PlacementInstructionFile} {
				key := fmt.Sprintf("%s/%v/%d bytes", wname, p, size)
				body := randomBytes(size)
				_, err := w.PutObject(withEC(ctx, ec), &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(body),
					Metadata: map[string]string{"owner": "team-x"}, ContentType: aws.String("text/plain"),
					Tagging: aws.String("project=interop")})
				if err != nil {
					t.Fatalf("%s: official PutObject: %v", key, err)
				}
				if p == envelope.PlacementInstructionFile {
					// The Go clients write no instruction files: move the
					// envelope into one, as the Java client would write it.
					ct, meta, _ := st.raw(t, bucket, key)
					env, err := envelope.Parse(meta, nil, envelope.ParseOptions{})
					if err != nil {
						t.Fatal(err)
					}
					st.store(t, bucket, key, env, ct, p)
					if _, err := st.s3.PutObjectTagging(ctx, &s3.PutObjectTaggingInput{Bucket: &bucket, Key: &key,
						Tagging: &s3types.Tagging{TagSet: []s3types.Tag{{Key: aws.String("project"), Value: aws.String("interop")}}}}); err != nil {
						t.Fatal(err)
					}
				}
				raw, meta, head := st.raw(t, bucket, key)
				objs = append(objs, written{key: key, body: body, writer: wname, raw: raw, meta: userMeta(meta),
					ct: aws.ToString(head.ContentType), tags: tagString(t, st, bucket, key)})
			}
		}
	}
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
		raw, meta, head := st.raw(t, bucket, key)
		objs = append(objs, written{key: key, body: body, writer: "legacy", raw: raw, meta: userMeta(meta),
			ct: aws.ToString(head.ContentType), tags: tagString(t, st, bucket, key)})
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
			raw, meta, head := st.raw(t, bucket, o.key)
			if len(o.raw) > 16 && bytes.Equal(raw[:16], o.raw[:16]) {
				t.Errorf("%s: ciphertext unchanged: not re-encrypted", o.key)
			}
			if !maps.Equal(userMeta(meta), o.meta) || aws.ToString(head.ContentType) != o.ct || tagString(t, st, bucket, o.key) != o.tags {
				t.Errorf("%s: metadata, content type or tags changed: %v %q", o.key, userMeta(meta), aws.ToString(head.ContentType))
			}
			objs[i].raw = raw
			readers := map[string]officialClient{
				"v3.2.0":               st.v3(t, newKey),
				"v4.0.0 allow-decrypt": st.v4(t, newKey, commitment.REQUIRE_ENCRYPT_ALLOW_DECRYPT),
			}
			if o.writer == "v4.0.0" || upgraded {
				readers["v4.0.0 require-decrypt"] = st.v4(t, newKey, commitment.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
			} else if _, err := get(st.v4(t, newKey, commitment.REQUIRE_ENCRYPT_REQUIRE_DECRYPT), bucket, o.key); err == nil {
				t.Errorf("%s: read as V3 by a require-decrypt client: its V2 format was not kept", o.key)
			}
			for rname, cl := range readers {
				for _, withContext := range []bool{false, true} {
					if withContext && o.writer == "legacy" {
						continue // written without an application context
					}
					var got []byte
					var err error
					if withContext {
						got, err = getEC(cl, bucket, o.key, ec)
					} else {
						got, err = get(cl, bucket, o.key)
					}
					if err != nil || !bytes.Equal(got, o.body) {
						t.Errorf("%s: official %s on the new key (context %v): %v", o.key, rname, withContext, err)
					}
				}
			}
			var ike *kmstypes.IncorrectKeyException
			if _, err := get(st.v3(t, oldKey), bucket, o.key); !errors.As(err, &ike) {
				t.Errorf("%s: official client on the old key: %v, want IncorrectKeyException", o.key, err)
			}
		}
	}

	run("reencrypt-keep", pipeline.Config{To: "kms:" + b, From: []string{"kms:" + a}})
	t.Run("keep", func(t *testing.T) { check(t, b, a, false) })
	run("reencrypt-v3", pipeline.Config{To: "kms:" + c, From: []string{"kms:" + b}, Format: "v3"})
	t.Run("upgrade", func(t *testing.T) { check(t, c, b, true) })
}
