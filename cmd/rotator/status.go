package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/rotator-dev/rotator/pipeline"
)

func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var runID, ledgerURL string
	var asJSON bool
	fs := newFlagSet("status", "--run-id ID [--ledger URL] [--json]", stderr)
	fs.StringVar(&runID, "run-id", "", "the run")
	fs.StringVar(&ledgerURL, "ledger", DefaultLedger, "the run's ledger")
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	if help, err := parse(fs, args); help || err != nil {
		return err
	}
	if runID == "" {
		return usageError{"give the run with --run-id (see 'rotator ledger runs')"}
	}
	rec, cfg, err := loadRun(ctx, ledgerURL, runID)
	if err != nil {
		return err
	}
	cp, err := pipeline.DecodeCheckpoint(rec.Checkpoint)
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(map[string]any{
			"message_type": "run_status", "run_id": rec.ID, "state": rec.State, "counts": rec.Counts,
			"config": cfg, "positions": cp.Positions, "error": cp.Error,
			"created_at": rec.CreatedAt, "updated_at": rec.UpdatedAt,
		})
	}
	fmt.Fprintf(stdout, "run %s: %s\n", rec.ID, rec.State)
	fmt.Fprintf(stdout, "  job:      %s\n", cfg.Describe())
	fmt.Fprintf(stdout, "  started:  %s\n  updated:  %s\n", rec.CreatedAt.UTC().Format(time.RFC3339), rec.UpdatedAt.UTC().Format(time.RFC3339))
	c := rec.Counts
	fmt.Fprintf(stdout, "  objects:  %d listed, %d done: %d rewrapped, %d skipped, %d pending, %d failed, %d changed by others\n",
		c["listed"], c["done"], c["succeeded"], c["skipped"], c["pending"], c["failed"], c["changed"])
	if cp.Error != "" {
		fmt.Fprintf(stdout, "  stopped:  %s\n", cp.Error)
	}
	if rec.State != "done" {
		fmt.Fprintf(stdout, "  resume:   rotator resume --run-id %s --ledger %s\n", rec.ID, ledgerURL)
	}
	return nil
}
