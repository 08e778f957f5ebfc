package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/rotator-dev/rotator/internal/logs"
	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/pipeline"
)

// outputFlags are the output and lease options of run and resume.
type outputFlags struct {
	json       bool
	report     string
	noProgress bool
	// wait for the run's lease when another process holds it.
	wait bool
	// reportFormat (rotator or batch-ops) and reportFailedOnly shape the
	// completion report (pipeline.ReportOptions).
	reportFormat     string
	reportFailedOnly bool
	metrics          metricsFlags
	// jsonObjects: which outcomes get an object message (problems, all).
	jsonObjects string
	// plan is a 'rotator plan --json' output: its count of objects is
	// the total the progress shows before the listing ends.
	plan string
}

func (o *outputFlags) bind(fs interface {
	BoolVar(*bool, string, bool, string)
	StringVar(*string, string, string, string)
	Var(flag.Value, string, string)
}) {
	fs.BoolVar(&o.json, "json", false, "print JSON lines on stdout instead of text (message_type status, object, summary, exit_error; see docs/json.md)")
	fs.StringVar(&o.jsonObjects, "json-objects", "problems", "with --json: the outcomes that get an object message: problems (failed, changed, unfinished) or all")
	fs.StringVar(&o.plan, "plan", "", "a `FILE` holding 'rotator plan --json' of the same objects: its count is the total the progress and ETA go by while the listing runs")
	fs.StringVar(&o.report, "report", "", "completion report CSV `FILE` (default rotator-report-RUNID.csv; a resumed run appends), or s3://BUCKET/PREFIX/ for one object per run or shard, written at the end and on interruption")
	fs.BoolVar(&o.noProgress, "no-progress", false, "no progress bar on a terminal")
	fs.BoolVar(&o.wait, "wait", false, "when another process is working on the run, wait until it stops (default: exit with its name)")
	fs.StringVar(&o.reportFormat, "report-format", "rotator", "completion report `FORMAT`: rotator (header row, rotator's columns) or batch-ops (S3 Batch Operations' rows: no header; Bucket, Key, VersionId, TaskStatus, HTTPStatusCode, ErrorCode, ResultMessage)")
	fs.BoolVar(&o.reportFailedOnly, "report-failed-only", false, "write only the objects whose task failed to the report (as a Batch Operations report of failed tasks only)")
	o.metrics.bind(fs)
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg pipeline.Config
	var out outputFlags
	var runID string
	fs := newFlagSet("run", "--source s3://BUCKET[/PREFIX] --to KEYSPEC [--from KEYSPEC]... [flags]", stderr)
	sourceFlags(fs, &cfg)
	runFlags(fs, &cfg)
	ioTimeoutFlag(fs, &cfg)
	out.bind(fs)
	fs.StringVar(&cfg.Ledger, "ledger", DefaultLedger, "the ledger: a `FILE` for the embedded store, or dynamodb://TABLE[?create=true]")
	fs.StringVar(&runID, "run-id", "", "the run's id (default: generated); every shard of a sharded job gives the same one")
	fs.BoolVar(&cfg.DryRun, "dry-run", false, "classify and report what would change; change nothing")
	escrowFlags(fs, &cfg, "escrow")
	if help, err := parse(fs, args); help || err != nil {
		return err
	}
	if err := checkRunMode(cfg); err != nil {
		return err
	}
	return startRun(ctx, cfg, runID, out, stdout, stderr)
}

// startRun starts a new run of cfg (run, escrow, restore).
func startRun(ctx context.Context, cfg pipeline.Config, runID string, out outputFlags, stdout, stderr io.Writer) error {
	runSignals()
	if err := resolveShard(&cfg, stderr); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return usageError{err.Error()}
	}
	if err := out.check(); err != nil {
		return err
	}
	if cfg.ShardCount > 0 {
		return runShard(ctx, cfg, runID, out, stdout, stderr)
	}
	if runID == "" {
		runID = newRunID()
	}
	env, err := pipeline.Open(ctx, cfg, withTestOptions(pipeline.OpenOptions{}))
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
	return execute(ctx, env, rec, nil, false, out, stdout, stderr)
}

func cmdResume(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var out outputFlags
	var runID, ledgerURL, shard string
	var shardCount int
	fs := newFlagSet("resume", "--run-id ID [--ledger URL] [--shard i/N|auto]", stderr)
	fs.StringVar(&runID, "run-id", "", "the run to resume")
	fs.StringVar(&ledgerURL, "ledger", DefaultLedger, "the run's ledger")
	fs.StringVar(&shard, "shard", "", "the shard `i/N` (or auto) of a sharded run to resume")
	fs.IntVar(&shardCount, "shard-count", 0, "with --shard auto: the number of shards (default: the run's)")
	var ioT time.Duration
	fs.Var(ioTimeout{&ioT}, "io-timeout", "replace the run's --io-timeout with this `DURATION` (0: never; default: the run's)")
	out.bind(fs)
	if help, err := parse(fs, args); help || err != nil {
		return err
	}
	if runID == "" {
		return usageError{"give the run to resume with --run-id (see 'rotator ledger runs')"}
	}
	runSignals()
	if err := out.check(); err != nil {
		return err
	}
	rec, cfg, err := loadRun(ctx, ledgerURL, runID)
	if err != nil {
		return err
	}
	if ioT != 0 {
		cfg.IOTimeout = ioT
	}
	if cfg.ShardCount > 0 || shard != "" {
		return resumeShard(ctx, rec, cfg, shard, shardCount, ledgerURL, out, stdout, stderr)
	}
	if rec.State == ledger.RunDone {
		zerolog.Ctx(ctx).Info().Str(logs.RunID, runID).Msg("the run is done already; resuming re-checks what it listed last")
	}
	cfg.Ledger = ledgerURL
	cp, err := pipeline.DecodeCheckpoint(rec.Checkpoint)
	if err != nil {
		return err
	}
	env, err := pipeline.Open(ctx, cfg, withTestOptions(pipeline.OpenOptions{}))
	if err != nil {
		return err
	}
	defer env.Close()
	cur, err := env.Ledger.GetRun(ctx, runID)
	if err != nil {
		return err
	}
	cur.State = ledger.RunRunning
	return execute(ctx, env, &cur, cp.Positions, true, out, stdout, stderr)
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

var (
	runSigsOnce sync.Once
	runSigs     chan os.Signal
)

// runSignals catches SIGINT and SIGTERM for the rest of the process from
// the moment a command that changes objects starts (run, resume, escrow,
// restore, a shard), before it opens its environment and records its run:
// a signal that comes while the environment opens waits in the channel,
// and execute takes it as one that came while the run was starting (it
// stops the start, releases the lease and exits 130 with the resume
// command). Without it a signal before execute killed the process with
// the default action, exit status "signal: interrupt" and no word.
func runSignals() chan os.Signal {
	runSigsOnce.Do(func() {
		runSigs = make(chan os.Signal, 2)
		signal.Notify(runSigs, os.Interrupt, syscall.SIGTERM)
	})
	return runSigs
}

// execute runs the pipeline for rec, resuming after positions (and, with
// resume, settling first what an interrupted process left), and maps the
// result to an exit code.
func execute(ctx context.Context, env *pipeline.Env, rec *ledger.Run, after []string, resume bool, out outputFlags, stdout, stderr io.Writer) (err error) {
	runID := jobRunID(env, rec) // a shard's record is RUN:shard-I-of-N
	mx, err := startMetrics(out.metrics, env, runID, stderr)
	if err != nil {
		return err
	}
	defer func() { mx.finish(ctx, err) }()
	ctx = mx.context(ctx)
	ctx, log := runLogger(ctx, runID, env.Config)

	// Signals are taken from the start: while the run starts (waiting for
	// its lease, settling what an earlier process left, opening the
	// source and the report), the first one stops the start and the lease
	// is released; once objects flow, the first finishes the objects in
	// flight and the second stops at once.
	sigs := runSignals()
	startCtx, stopStart := context.WithCancelCause(ctx)
	defer stopStart(nil)
	startWatch := make(chan struct{})
	startWatched := make(chan struct{})
	go func() {
		defer close(startWatched)
		select {
		case <-sigs:
			stopStart(pipeline.ErrInterrupted)
		case <-startWatch:
		}
	}()
	startErr := func(err error) error {
		if errors.Is(context.Cause(startCtx), pipeline.ErrInterrupted) {
			if !resume && rec.State == ledger.RunRunning && !env.Config.DryRun {
				// This process created the record and nothing ran: say
				// so (revision-guarded: a resume that took it over in
				// between keeps its own).
				r := *rec
				r.State = ledger.RunInterrupted
				_ = env.Ledger.UpdateRun(context.WithoutCancel(ctx), &r)
			}
			return exitError{exitInterrupted, "interrupted while the run was starting; resume with: " + resumeCommand(env, runID)}
		}
		return err
	}

	owner := ""
	runCtx := ctx
	if !env.Config.DryRun {
		lease, err := acquireLease(startCtx, env, runID, out, stderr)
		if err != nil {
			return startErr(err)
		}
		defer lease.Release(ctx)
		var stopKeeping func()
		runCtx, stopKeeping = lease.Keep(ctx)
		defer stopKeeping()
		owner = lease.Owner()
		if after, resume, err = reloadRun(startCtx, env.Ledger, rec, after, resume); err != nil {
			return startErr(err)
		}
	}
	src, err := env.Source(startCtx, after)
	if err != nil {
		return startErr(err)
	}
	rf, rep, reportPath, err := openRunReport(startCtx, env, out, runID)
	if err != nil {
		return startErr(err)
	}
	defer rf.Close()
	close(startWatch)
	<-startWatched
	if err := startErr(nil); err != nil {
		return err
	}

	stats := &pipeline.Stats{}
	runner := &pipeline.Runner{
		Core: env.Core(runID, owner), Source: src, Workers: env.Config.Workers(),
		Runs: env.Ledger, Run: rec, Progress: inventory.NewProgress(after), Report: rep, Stats: stats,
		Resume: resume,
	}
	if !env.Config.DryRun {
		runner.Intents = jobIntents(env)
	}
	ui := newProgressUI(sessionOf(ctx), log, out, stats)
	ui.runID, ui.total = rec.ID, expectedTotal(src, out.plan, stats)
	if resume {
		ui.command = "resume"
	}
	switch env.Config.Mode {
	case pipeline.ModeReencrypt:
		ui.verb = "re-encrypted"
	case pipeline.ModeEscrow:
		ui.verb = "escrowed"
	case pipeline.ModeRestore:
		ui.verb = "restored"
	}
	runner.OnOutcome = ui.outcome
	mx.watch(runner)

	interrupt := make(chan struct{})
	runCtx, cancel := context.WithCancel(runCtx)
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

	log.Info().Bool("resume", resume).Bool("dry_run", env.Config.DryRun).Msg("run started: " + env.Config.Describe())
	start := time.Now()
	stop := ui.start()
	err = runner.Execute(runCtx, interrupt)
	stop()
	if cerr := rf.Close(); cerr != nil && err == nil {
		err = cerr // the report could not be written (S3)
	} else if cerr != nil {
		fmt.Fprintf(stderr, "rotator: %v\n", cerr)
	}
	if cause := context.Cause(runCtx); err != nil && cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause // the lease was lost
	}
	ui.summary(string(rec.State), reportPath, env.Config.DryRun, time.Since(start), err)

	resumeHint := resumeCommand(env, runID)
	switch {
	case errors.Is(err, pipeline.ErrInterrupted), errors.Is(err, context.Canceled):
		return exitError{exitInterrupted, "interrupted; resume with: " + resumeHint}
	case err != nil:
		return fmt.Errorf("run %s stopped: %w (resume with: %s)", runID, err, resumeHint)
	case stats.Unfinished.Load() > 0:
		return exitError{exitUnfinished, fmt.Sprintf("%d changes are unfinished: their outcome is not known yet, and what they need is kept in the ledger; run '%s' (it exits 0 once none is left)",
			stats.Unfinished.Load(), resumeHint)}
	case stats.Failed.Load() > 0 || stats.Changed.Load() > 0:
		return exitError{exitPartial, leftMessage(stats.Failed.Load(), stats.Changed.Load(), reportPath)}
	case stats.Left.Load() > 0:
		return exitError{exitPartial, fmt.Sprintf("%d older versions under a --from key are left (not under Object Lock): the incident is not closed; see %s for why each was kept", stats.Left.Load(), reportPath)}
	}
	return nil
}

// leftMessage says why a run that went through its listing exits 3 for
// the objects it left as they were: failures, and objects someone else
// changed while the run worked on them (not rekeyed either: a new run reads
// them afresh).
func leftMessage(failed, changed int64, reportPath string) string {
	var parts []string
	if failed > 0 {
		parts = append(parts, fmt.Sprintf("%d objects failed and were left untouched", failed))
	}
	if changed > 0 {
		parts = append(parts, fmt.Sprintf("%d objects were changed by someone else while the run worked on them and were left as they made it (start a new run to rekey them if they are still under a --from key)", changed))
	}
	return strings.Join(parts, "; ") + ": see " + reportPath
}

// acquireLease takes the run's lease for this process (the shard's, for
// a sharded run): one process at a time works for a run.
func acquireLease(ctx context.Context, env *pipeline.Env, runID string, out outputFlags, stderr io.Writer) (*pipeline.RunLease, error) {
	name := "all"
	if env.Config.Shard != "" {
		if sh, err := inventory.ParseShard(env.Config.Shard); err == nil {
			name = ledger.ShardLeaseName(sh.Index, sh.Count)
		}
	}
	lease, err := pipeline.AcquireRunLease(ctx, env.Ledger, runID, name, pipeline.LeaseOptions{
		Wait: out.wait,
		OnWait: func(h ledger.LeaseHeldError) {
			zerolog.Ctx(ctx).Info().Str("holder", h.Lease.Holder).Str("host", h.Lease.Host).Int("pid", h.Lease.PID).
				Msgf("waiting: %v", &h)
		},
	})
	var held *ledger.LeaseHeldError
	if errors.As(err, &held) {
		return nil, exitError{exitBusy, fmt.Sprintf("another process is working on run %s: %s (pid %d on %s), its lease ends %s unless it renews it; "+
			"wait for it to finish, stop it, or run again with --wait", runID, held.Lease.Holder, held.Lease.PID, held.Lease.Host,
			held.Lease.Expires.UTC().Format(time.RFC3339))}
	}
	return lease, err
}

// openReport opens the completion report, appending to an existing one.
func openReport(path string, out outputFlags) (*os.File, *pipeline.Report, error) {
	format, err := pipeline.ParseReportFormat(out.reportFormat)
	if err != nil {
		return nil, nil, usageError{"--report-format: " + err.Error()}
	}
	opts := pipeline.ReportOptions{Format: format, FailedOnly: out.reportFailedOnly}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("open report: %w", err)
	}
	size, err := dropTornRow(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("open report %s: %w", path, err)
	}
	var rep *pipeline.Report
	if size > 0 {
		rep = pipeline.ContinueReportWith(f, opts)
	} else if rep, err = pipeline.NewReportWith(f, opts); err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, rep, nil
}

// dropTornRow cuts a report's last line when it is not whole (a process
// killed while writing it; rows never hold a newline: keys are escaped,
// messages made one line), so that the rows a resumed run appends stay
// rows. It returns the report's size.
func dropTornRow(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return 0, err
	}
	size := st.Size()
	buf := make([]byte, 4096)
	for end := size; end > 0; {
		start := max(end-int64(len(buf)), 0)
		n, err := f.ReadAt(buf[:end-start], start)
		if err != nil && n < int(end-start) {
			return 0, err
		}
		if end == size && buf[n-1] == '\n' {
			return size, nil // whole
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return start + int64(i) + 1, f.Truncate(start + int64(i) + 1)
		}
		end = start
	}
	return 0, f.Truncate(0) // not even the header is whole: start again
}

// newRunID returns run-YYYYMMDD-HHMMSS-XXXX (UTC).
func newRunID() string {
	var b [2]byte
	_, _ = rand.Read(b[:])
	return "run-" + time.Now().UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
}

// withTestOptions lets the tests of this package add to the options every
// command opens its environment with (the kill trials inject faults into
// the processes they start); it returns o unchanged in the binary.
var withTestOptions = func(o pipeline.OpenOptions) pipeline.OpenOptions { return o }
