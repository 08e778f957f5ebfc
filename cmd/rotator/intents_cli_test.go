package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/internal/awsx"
	"github.com/rotator-dev/rotator/internal/faults"
	"github.com/rotator-dev/rotator/internal/sample"
	"github.com/rotator-dev/rotator/internal/testenv"
	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/pipeline"
)

// TestCLIInstructionFilePendingUntilResumed (issue 11, case 2): a
// re-encryption whose new content lands but whose instruction file cannot
// be written (every PutObject fails: throttled, denied, ...) leaves the
// object unfinished: the run says so (exit 4), status exits 4 and says how
// many, 'ledger intents' shows the kept instruction file, and every resume
// exits non-zero until one writes it; then status says done. Before, the
// second failure dropped the intent and every later resume exited 0.
func TestCLIInstructionFilePendingUntilResumed(t *testing.T) {
	f := newCLIFixture(t, 0)
	objs, err := sample.Seed(ctx, f.s3, f.kms, sample.Options{Bucket: f.bucket, KMSKeyID: f.arnA, Count: 2, MaxSize: 3000,
		Kinds: []sample.Kind{{Format: envelope.V2, Placement: envelope.PlacementInstructionFile}, {Format: envelope.V3, Placement: envelope.PlacementInstructionFile}}})
	if err != nil {
		t.Fatal(err)
	}
	f.objs = objs
	ledgerPath := filepath.Join(f.dir, "ledger.db")
	const runID = "pending"
	cfg := pipeline.Config{Source: "s3://" + f.bucket, To: "kms:" + f.arnB, From: []string{"kms:" + f.arnA}, Mode: pipeline.ModeReencrypt,
		Ledger: ledgerPath, Concurrency: 2}

	// The run, in process: every PutObject (here, only the instruction
	// files') fails.
	proc := faults.New().FailFrom("S3 PutObject", 1)
	base := testenv.AWSConfig(t)
	base.APIOptions = append(base.APIOptions, proc.Middleware())
	base.Retryer = func() aws.Retryer { return awsx.NewRetryer(2, time.Millisecond) }
	env, err := pipeline.Open(ctx, cfg, pipeline.OpenOptions{AWS: &base})
	if err != nil {
		t.Fatal(err)
	}
	conf, _ := json.Marshal(cfg)
	rec := &ledger.Run{ID: runID, Config: conf, State: ledger.RunRunning}
	if err := env.Ledger.CreateRun(ctx, rec); err != nil {
		t.Fatal(err)
	}
	lease, err := pipeline.AcquireRunLease(ctx, env.Ledger, runID, "all", pipeline.LeaseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	src, err := env.Source(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	stats := &pipeline.Stats{}
	r := &pipeline.Runner{Core: env.Core(runID, lease.Owner()), Source: src, Workers: 2, Runs: env.Ledger, Run: rec,
		Progress: inventory.NewProgress(nil), Stats: stats, Intents: env.Ledger}
	if err := r.Execute(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	env.Close()
	if n := stats.Unfinished.Load(); n != 2 {
		t.Fatalf("the run: %d unfinished, want 2 (%v)", n, stats.Counts())
	}

	code, out := f.rotator(t, "status", "--run-id", runID, "--ledger", ledgerPath)
	if code != exitUnfinished || !strings.Contains(out, "unfinished: 2 changes") {
		t.Errorf("status (exit %d, want %d):\n%s", code, exitUnfinished, out)
	}
	code, out = f.rotator(t, "ledger", "intents", "--run-id", runID, "--ledger", ledgerPath, "--json")
	if code != 0 || strings.Count(out, `"instruction_file":`) != 2 || !strings.Contains(out, "content landed, instruction file pending") {
		t.Errorf("ledger intents (exit %d):\n%s", code, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var row map[string]any
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		body, _ := row["instruction_file"].(string)
		if _, err := envelope.WrappedKeyOf(nil, []byte(body)); err != nil {
			t.Errorf("the kept instruction file holds no wrapped key: %v", err)
		}
	}

	code, out = f.rotator(t, "resume", "--run-id", runID, "--ledger", ledgerPath, "--no-progress")
	if code != exitOK {
		t.Fatalf("resume (exit %d):\n%s", code, out)
	}
	code, out = f.rotator(t, "status", "--run-id", runID, "--ledger", ledgerPath)
	if code != 0 || !strings.Contains(out, ": done") {
		t.Errorf("status after resume (exit %d):\n%s", code, out)
	}
	f.opensUnder(t, f.arnB)
}
