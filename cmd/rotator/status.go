package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/pipeline"
)

func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var runID, ledgerURL string
	var asJSON bool
	fs := newFlagSet("status", "--run-id ID [--ledger URL] [--json]", stderr)
	fs.StringVar(&runID, "run-id", "", "the run")
	fs.StringVar(&ledgerURL, "ledger", DefaultLedger, "the run's ledger")
	fs.BoolVar(&asJSON, "json", false, "print one JSON line (message_type run_status, see docs/json.md)")
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
	if parent, _, ok := pipeline.ParseShardRecordID(rec.ID); ok && cfg.ShardCount > 0 && cfg.Shard != "" {
		// A shard's own record: show its whole run.
		if rec, cfg, err = loadRun(ctx, ledgerURL, parent); err != nil {
			return err
		}
	}
	if cfg.ShardCount > 0 {
		return jobStatus(ctx, ledgerURL, rec, cfg, asJSON, stdout)
	}
	cp, err := pipeline.DecodeCheckpoint(rec.Checkpoint)
	if err != nil {
		return err
	}
	// What the ledger holds now: changes whose outcome is not known yet,
	// and who works for the run.
	l, err := ledger.Open(ctx, ledgerURL)
	if err != nil {
		return err
	}
	defer l.Close()
	unfinished, err := pipeline.Unfinished(ctx, l, runID)
	if err != nil {
		return err
	}
	leases, err := l.Leases(ctx, runID)
	if err != nil {
		return err
	}
	// Objects a recovery began with and did not finish count too.
	unfinished += len(cp.Revisit)
	state := string(rec.State)
	if unfinished > 0 && rec.State == ledger.RunDone {
		state = string(ledger.RunUnfinished)
	}
	if asJSON {
		if err := sessionOf(ctx).out.emit(runStatusMsg{MessageType: msgRunStatus, RunID: rec.ID, State: state, Counts: rec.Counts,
			Config: cfg, Positions: cp.Positions, Error: cp.Error, Unfinished: unfinished, Leases: leaseView(leases),
			CreatedAt: rec.CreatedAt.UTC(), UpdatedAt: rec.UpdatedAt.UTC()}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "run %s: %s\n", rec.ID, state)
		fmt.Fprintf(stdout, "  job:      %s\n", cfg.Describe())
		fmt.Fprintf(stdout, "  started:  %s\n  updated:  %s\n", rec.CreatedAt.UTC().Format(time.RFC3339), rec.UpdatedAt.UTC().Format(time.RFC3339))
		printCounts(stdout, rec.Counts, cfg)
		if unfinished > 0 {
			fmt.Fprintf(stdout, "  unfinished: %d changes whose outcome is not known yet are kept in the ledger (or objects to process again)\n", unfinished)
		}
		now := time.Now()
		for _, ls := range leases {
			if ls.Expires.After(now) {
				fmt.Fprintf(stdout, "  working:  %s (pid %d on %s), lease %s until %s\n", ls.Holder, ls.PID, ls.Host, ls.Name, ls.Expires.UTC().Format(time.RFC3339))
			}
		}
		if cp.Error != "" {
			fmt.Fprintf(stdout, "  stopped:  %s\n", cp.Error)
		}
		if state != string(ledger.RunDone) {
			fmt.Fprintf(stdout, "  resume:   rotator resume --run-id %s --ledger %s\n", rec.ID, ledgerURL)
		}
	}
	if unfinished > 0 {
		return exitError{exitUnfinished, ""}
	}
	return nil
}

// leaseView is a run's leases as status --json shows them.
func leaseView(ls []ledger.Lease) []leaseMsg {
	var out []leaseMsg
	for _, l := range ls {
		out = append(out, leaseMsg{Name: l.Name, Holder: l.Holder, Host: l.Host, PID: l.PID, Epoch: l.Epoch,
			Expires: l.Expires.UTC().Format(time.RFC3339)})
	}
	return out
}

// printCounts prints a run's counts.
func printCounts(w io.Writer, c map[string]int64, cfg pipeline.Config) {
	fmt.Fprintf(w, "  objects:  %s\n", countsLine(c, cfg))
	if c["deleted"]+c["left"] > 0 {
		fmt.Fprintf(w, "  versions: %d older versions deleted, %d under a --from key left\n", c["deleted"], c["left"])
	}
}

// countsLine summarises a run's (or a shard's) counts on one line.
func countsLine(c map[string]int64, cfg pipeline.Config) string {
	verb := "rewrapped"
	if cfg.Mode == pipeline.ModeReencrypt {
		verb = "re-encrypted"
	}
	return fmt.Sprintf("%d listed, %d done: %d %s, %d skipped, %d pending, %d failed, %d changed by others",
		c["listed"], c["done"], c["succeeded"]-c["deleted"], verb, c["skipped"], c["pending"], c["failed"], c["changed"])
}
