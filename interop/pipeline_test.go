package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"testing"

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

func rotateOfficialObjects(t *testing.T, st *stack, ledgerURL string) {
	bucket := st.bucket(t)
	a, b := st.key(t), st.key(t)
	ec := map[string]string{"department": "interop"}
	objs := st.officialObjects(t, bucket, a, ec, []int{0, 1, 4096, 70000},
		envelope.PlacementMetadata, envelope.PlacementInstructionFile)

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
		if raw, _ := st.kept(t, bucket, o); !bytes.Equal(raw, o.raw) {
			t.Errorf("%s: stored ciphertext changed", o.key)
		}
		st.opensOnlyUnder(t, bucket, o, ec, b, a, o.writer == "v4.0.0")
	}
	if s := run("again"); s.Succeeded.Load() != 0 || s.Skipped.Load() != int64(len(objs)) {
		t.Errorf("second run: %v", s.Counts())
	}
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
