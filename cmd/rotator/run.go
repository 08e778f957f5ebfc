package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/pipeline"
)

// outputFlags are the output options of run and resume.
type outputFlags struct {
	json       bool
	report     string
	noProgress bool
}

func (o *outputFlags) bind(fs interface {
	BoolVar(*bool, string, bool, string)
	StringVar(*string, string, string, string)
}) {
	fs.BoolVar(&o.json, "json", false, "print JSON lines (message_type status, error, summary) on stdout instead of text")
	fs.StringVar(&o.report, "report", "", "completion report CSV `FILE` (default rotator-report-RUNID.csv; a resumed run appends)")
	fs.BoolVar(&o.noProgress, "no-progress", false, "no progress bar on a terminal")
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg pipeline.Config
	var out outputFlags
	var runID string
	fs := newFlagSet("run", "--source s3://BUCKET[/PREFIX] --to KEYSPEC [--from KEYSPEC]... [flags]", stderr)
	sourceFlags(fs, &cfg)
	runFlags(fs, &cfg)
	out.bind(fs)
	fs.StringVar(&cfg.Ledger, "ledger", DefaultLedger, "the ledger: a `FILE` for the embedded store, or dynamodb://TABLE[?create=true]")
	fs.StringVar(&runID, "run-id", "", "the run's id (default: generated); shards of one job use one id each")
	fs.BoolVar(&cfg.DryRun, "dry-run", false, "classify and report what would change; change nothing")
	if help, err := parse(fs, args); help || err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return usageError{err.Error()}
	}
	if runID == "" {
		runID = newRunID()
	}
	env, err := pipeline.Open(ctx, cfg, pipeline.OpenOptions{})
	if err != nil {
		return err
	}
	defer env.Close()
	conf, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	rec := &ledger.Run{ID: runID, Config: conf, State: ledger.RunRunning}
	if err := env.Ledger.CreateRun(ctx, rec); err != nil {
		if errors.Is(err, ledger.ErrRunExists) {
			return usageError{fmt.Sprintf("run %s exists already: resume it with 'rotator resume --run-id %s', or choose another --run-id", runID, runID)}
		}
		return err
	}
	return execute(ctx, env, rec, nil, out, stdout, stderr)
}

func cmdResume(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var out outputFlags
	var runID, ledgerURL string
	fs := newFlagSet("resume", "--run-id ID [--ledger URL]", stderr)
	fs.StringVar(&runID, "run-id", "", "the run to resume")
	fs.StringVar(&ledgerURL, "ledger", DefaultLedger, "the run's ledger")
	out.bind(fs)
	if help, err := parse(fs, args); help || err != nil {
		return err
	}
	if runID == "" {
		return usageError{"give the run to resume with --run-id (see 'rotator ledger runs')"}
	}
	rec, cfg, err := loadRun(ctx, ledgerURL, runID)
	if err != nil {
		return err
	}
	if rec.State == ledger.RunDone {
		fmt.Fprintf(stderr, "rotator: run %s is done already; resuming re-checks what it listed last\n", runID)
	}
	cfg.Ledger = ledgerURL
	cp, err := pipeline.DecodeCheckpoint(rec.Checkpoint)
	if err != nil {
		return err
	}
	env, err := pipeline.Open(ctx, cfg, pipeline.OpenOptions{})
	if err != nil {
		return err
	}
	defer env.Close()
	core := env.Core(runID, workerName())
	n, err := pipeline.ReconcileRun(ctx, core, env.Ledger, runID)
	if err != nil {
		return err
	}
	if n.Committed+n.Abandoned+n.Changed+n.Reencrypted > 0 && !out.json {
		fmt.Fprintf(stderr, "rotator: finished the interrupted writes: %d recorded as done, %d re-encryptions finished from their checkpoints, %d had not landed (processed again), %d changed by someone else\n",
			n.Committed, n.Reencrypted, n.Abandoned, n.Changed)
	}
	for _, o := range n.Failed {
		fmt.Fprintf(stderr, "rotator: %s/%s: %s: %s\n", o.Bucket, o.Key, o.ErrorCode, o.Message)
	}
	cur, err := env.Ledger.GetRun(ctx, runID)
	if err != nil {
		return err
	}
	cur.State = ledger.RunRunning
	return execute(ctx, env, &cur, cp.Positions, out, stdout, stderr)
}

// loadRun reads a run record and its configuration.
func loadRun(ctx context.Context, ledgerURL, runID string) (ledger.Run, pipeline.Config, error) {
	var cfg pipeline.Config
	l, err := ledger.Open(ctx, ledgerURL)
	if err != nil {
		return ledger.Run{}, cfg, err
	}
	defer l.Close()
	rec, err := l.GetRun(ctx, runID)
	if errors.Is(err, ledger.ErrNotFound) {
		return rec, cfg, usageError{fmt.Sprintf("no run %s in ledger %s (list runs with 'rotator ledger runs --ledger %s')", runID, ledgerURL, ledgerURL)}
	}
	if err != nil {
		return rec, cfg, err
	}
	if err := json.Unmarshal(rec.Config, &cfg); err != nil {
		return rec, cfg, fmt.Errorf("run %s: stored configuration is not readable: %w", runID, err)
	}
	return rec, cfg, nil
}

// execute runs the pipeline for rec, resuming after positions, and maps the
// result to an exit code.
func execute(ctx context.Context, env *pipeline.Env, rec *ledger.Run, after []string, out outputFlags, stdout, stderr io.Writer) error {
	src, err := env.Source(ctx, after)
	if err != nil {
		return err
	}
	reportPath := out.report
	if reportPath == "" {
		reportPath = "rotator-report-" + rec.ID + ".csv"
	}
	rf, rep, err := openReport(reportPath)
	if err != nil {
		return err
	}
	defer rf.Close()

	stats := &pipeline.Stats{}
	runner := &pipeline.Runner{
		Core: env.Core(rec.ID, workerName()), Source: src, Workers: env.Config.Concurrency,
		Runs: env.Ledger, Run: rec, Progress: inventory.NewProgress(after), Report: rep, Stats: stats,
	}
	ui := newProgressUI(out, stdout, stderr, stats)
	if env.Config.Mode == pipeline.ModeReencrypt {
		ui.verb = "re-encrypted"
	}
	runner.OnOutcome = ui.outcome

	interrupt := make(chan struct{})
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-sigs:
			ui.note("interrupted: finishing the objects in flight (interrupt again to stop at once)")
			close(interrupt)
		case <-runCtx.Done():
			return
		}
		select {
		case <-sigs:
			cancel()
		case <-runCtx.Done():
		}
	}()

	if !out.json {
		fmt.Fprintf(stderr, "rotator: run %s: %s\n", rec.ID, env.Config.Describe())
	}
	start := time.Now()
	stop := ui.start()
	err = runner.Execute(runCtx, interrupt)
	stop()
	if err == nil {
		err = settleUploads(ctx, env, runner.Core, out, stderr)
	}
	ui.summary(rec.ID, reportPath, time.Since(start), err)

	switch {
	case errors.Is(err, pipeline.ErrInterrupted), errors.Is(err, context.Canceled):
		return exitError{exitInterrupted, fmt.Sprintf("interrupted; resume with: rotator resume --run-id %s --ledger %s", rec.ID, env.Config.Ledger)}
	case err != nil:
		return fmt.Errorf("run %s stopped: %w (resume with: rotator resume --run-id %s --ledger %s)", rec.ID, err, rec.ID, env.Config.Ledger)
	case stats.Failed.Load() > 0:
		return exitError{exitPartial, fmt.Sprintf("%d objects failed and were left untouched: see %s", stats.Failed.Load(), reportPath)}
	}
	return nil
}

// openReport opens the completion report, appending to an existing one.
func openReport(path string) (*os.File, *pipeline.Report, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("open report: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	var rep *pipeline.Report
	if st.Size() > 0 {
		rep = pipeline.ContinueReport(f)
	} else if rep, err = pipeline.NewReport(f); err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, rep, nil
}

// newRunID returns run-YYYYMMDD-HHMMSS-XXXX (UTC).
func newRunID() string {
	var b [2]byte
	_, _ = rand.Read(b[:])
	return "run-" + time.Now().UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
}

// workerName names this process in claims: host and pid.
func workerName() string {
	h, _ := os.Hostname()
	if h == "" {
		h = "host"
	}
	return fmt.Sprintf("%s-%d", h, os.Getpid())
}

// settleUploads gives up the re-encryption checkpoints a finished run
// still holds (aborting their multipart uploads), keeping those whose
// instruction file is left to write.
func settleUploads(ctx context.Context, env *pipeline.Env, core *pipeline.Core, out outputFlags, stderr io.Writer) error {
	if core.Reencrypter == nil || env.Ledger == nil || env.Config.DryRun {
		return nil
	}
	n, err := pipeline.SettleUploads(ctx, core, env.Ledger, env.Engine(core.RunID))
	if err != nil {
		return err
	}
	if out.json {
		return nil
	}
	if n.Finished+n.Aborted > 0 {
		fmt.Fprintf(stderr, "rotator: settled %d leftover re-encryption checkpoints: %d uploads aborted (objects untouched), %d already finished\n",
			n.Finished+n.Aborted, n.Aborted, n.Finished)
	}
	for _, id := range n.Kept {
		fmt.Fprintf(stderr, "rotator: %s: re-encrypted content landed but its instruction file is not written yet: run 'rotator resume --run-id %s --ledger %s'\n",
			id, core.RunID, env.Config.Ledger)
	}
	return nil
}
