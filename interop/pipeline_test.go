package interop

import (
	"bytes"
	"context"
	"encoding/json"
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
	"github.com/rotator-dev/rotator/internal/testenv"
	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/pipeline"
)

// TestPipelineRotatesOfficialObjects is the pipeline's contract: objects
// written by the official Go clients v3.2.0 (V2) and v4.0.0 (V3), with an
// encryption context, in metadata and (moved there, since the Go clients
// write none) in instruction files, are rotated from key A to key B by a
// run of the pipeline, on the embedded ledger and on DynamoDB. Afterwards
// the official clients open every object under key B (with and without the
// encryption context) with byte-identical plaintext, refuse key A, and
// the stored ciphertext, other metadata, content type and tags are
// unchanged. A second run changes nothing.
func TestPipelineRotatesOfficialObjects(t *testing.T) {
	ledgers := map[string]func(t *testing.T) string{
		"embedded": func(t *testing.T) string { return filepath.Join(t.TempDir(), "ledger.db") },
		"dynamodb": func(t *testing.T) string {
			testenv.Need(t, testenv.DynamoDB)
			return "dynamodb://" + testenv.Name(t) + "?create=true"
		},
	}
	for name, mk := range ledgers {
		t.Run(name, func(t *testing.T) {
			st := newStack(t)
			ledgerURL := mk(t)
			rotateOfficialObjects(t, st, ledgerURL)
		})
	}
}

type written struct {
	key    string
	body   []byte
	writer string
	raw    []byte
	meta   map[string]string
	ct     string
	tags   string
}

func rotateOfficialObjects(t *testing.T, st *stack, ledgerURL string) {
	ctx := context.Background()
	bucket := st.bucket(t)
	a, b := st.key(t), st.key(t)
	ec := map[string]string{"department": "interop"}
	writers := map[string]officialClient{
		"v3.2.0": st.v3(t, a),
		"v4.0.0": st.v4(t, a, commitment.REQUIRE_ENCRYPT_REQUIRE_DECRYPT),
	}
	var objs []written
	for wname, w := range writers {
		for _, size := range []int{0, 1, 4096, 70000} {
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
					_, meta, _ := st.raw(t, bucket, key)
					env, err := envelope.Parse(meta, nil, envelope.ParseOptions{})
					if err != nil {
						t.Fatal(err)
					}
					ct, _, _ := st.raw(t, bucket, key)
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

	cfg := pipeline.Config{Source: "s3://" + bucket, To: "kms:" + b, From: []string{"kms:" + a}, Ledger: ledgerURL,
		Concurrency: 8}
	run := func(runID string) *pipeline.Stats {
		t.Helper()
		stats, report := runPipeline(t, cfg, runID, nil)
		if stats.Failed.Load() > 0 {
			t.Fatalf("run %s: failures:\n%s", runID, report)
		}
		return stats
	}
	s := run("rotate")
	if s.Succeeded.Load() != int64(len(objs)) {
		t.Fatalf("rewrapped %d of %d", s.Succeeded.Load(), len(objs))
	}
	for _, o := range objs {
		raw, meta, head := st.raw(t, bucket, o.key)
		if !bytes.Equal(raw, o.raw) {
			t.Errorf("%s: stored ciphertext changed", o.key)
		}
		if !maps.Equal(userMeta(meta), o.meta) || aws.ToString(head.ContentType) != o.ct || tagString(t, st, bucket, o.key) != o.tags {
			t.Errorf("%s: metadata, content type or tags changed", o.key)
		}
		readers := map[string]officialClient{
			"v3.2.0":               st.v3(t, b),
			"v4.0.0 allow-decrypt": st.v4(t, b, commitment.REQUIRE_ENCRYPT_ALLOW_DECRYPT),
		}
		if o.writer == "v4.0.0" {
			readers["v4.0.0 require-decrypt"] = st.v4(t, b, commitment.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
		}
		for rname, c := range readers {
			for _, withContext := range []bool{false, true} {
				var got []byte
				var err error
				if withContext {
					got, err = getEC(c, bucket, o.key, ec)
				} else {
					got, err = get(c, bucket, o.key)
				}
				if err != nil || !bytes.Equal(got, o.body) {
					t.Errorf("%s: official %s on key B (context %v): %v", o.key, rname, withContext, err)
				}
			}
		}
		var ike *kmstypes.IncorrectKeyException
		if _, err := get(st.v3(t, a), bucket, o.key); !errors.As(err, &ike) {
			t.Errorf("%s: official client on key A: %v, want IncorrectKeyException", o.key, err)
		}
	}
	if s := run("again"); s.Succeeded.Load() != 0 || s.Skipped.Load() != int64(len(objs)) {
		t.Errorf("second run: %v", s.Counts())
	}
}

func userMeta(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if !envelope.IsEnvelopeField(k) {
			out[k] = v
		}
	}
	return out
}

func tagString(t *testing.T, st *stack, bucket, key string) string {
	t.Helper()
	out, err := st.s3.GetObjectTagging(context.Background(), &s3.GetObjectTaggingInput{Bucket: &bucket, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	s := ""
	for _, tg := range out.TagSet {
		s += aws.ToString(tg.Key) + "=" + aws.ToString(tg.Value) + ";"
	}
	return s
}

// runPipeline runs the pipeline over cfg as 'rotator run' does (a run
// record, a report, the run's core); after, when set, is called with the
// open environment and core when the run ended. It returns the run's stats
// and report.
func runPipeline(t *testing.T, cfg pipeline.Config, runID string, after func(env *pipeline.Env, core *pipeline.Core)) (*pipeline.Stats, string) {
	t.Helper()
	ctx := context.Background()
	env, err := pipeline.Open(ctx, cfg, pipeline.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	src, err := env.Source(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	conf, _ := json.Marshal(cfg)
	rec := &ledger.Run{ID: runID, Config: conf, State: ledger.RunRunning}
	if err := env.Ledger.CreateRun(ctx, rec); err != nil {
		t.Fatal(err)
	}
	var rep bytes.Buffer
	report, _ := pipeline.NewReport(&rep)
	stats := &pipeline.Stats{}
	lease, err := pipeline.AcquireRunLease(ctx, env.Ledger, runID, "all", pipeline.LeaseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release(ctx)
	core := env.Core(runID, lease.Owner())
	r := &pipeline.Runner{Core: core, Source: src, Workers: cfg.Concurrency, Runs: env.Ledger, Run: rec,
		Progress: inventory.NewProgress(nil), Report: report, Stats: stats, Intents: env.Ledger}
	if err := r.Execute(ctx, nil); err != nil {
		t.Fatalf("run %s: %v\n%s", runID, err, rep.String())
	}
	if after != nil {
		after(env, core)
	}
	return stats, rep.String()
}
