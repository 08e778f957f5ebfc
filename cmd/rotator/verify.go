package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/rs/zerolog"

	"github.com/rotator-dev/rotator/internal/logs"
	"github.com/rotator-dev/rotator/pipeline"
)

func cmdVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg pipeline.Config
	var sample int
	var all bool
	var reportPath string
	var out outputFlags
	fs := newFlagSet("verify", "--source s3://BUCKET[/PREFIX] --key KEYSPEC [--sample N | --all]", stderr)
	sourceFlags(fs, &cfg)
	ioTimeoutFlag(fs, &cfg)
	fs.StringVar(&cfg.To, "key", "", "the key `SPEC` the objects must open under")
	fs.IntVar(&sample, "sample", 100, "verify `N` objects chosen at random")
	fs.BoolVar(&all, "all", false, "verify every object")
	fs.BoolVar(&out.json, "json", false, "print JSON lines on stdout (message_type object for each object that failed, summary; see docs/json.md)")
	fs.StringVar(&out.jsonObjects, "json-objects", "problems", "with --json: the outcomes that get an object message: problems (failed) or all")
	fs.StringVar(&reportPath, "report", "", "write every outcome to this CSV `FILE`")
	var viaEscrow bool
	fs.BoolVar(&viaEscrow, "escrow", false, "open each object through its escrow file alone (--key is then the escrow key; for rsa: the private key file)")
	fs.StringVar(&cfg.EscrowSuffix, "escrow-suffix", "", "with --escrow: suffix of escrow files (default .escrow.instruction)")
	if help, err := parse(fs, args); help || err != nil {
		return err
	}
	if cfg.To == "" {
		return usageError{"give the key the objects must open under with --key (for example --key kms:alias/data-2026)"}
	}
	if err := resolveShard(&cfg, stderr); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return usageError{err.Error()}
	}
	if err := out.check(); err != nil {
		return err
	}
	if all {
		sample = 0
	} else if sample <= 0 {
		return usageError{"--sample must be positive (or use --all)"}
	}
	env, err := pipeline.Open(ctx, cfg, withTestOptions(pipeline.OpenOptions{NoLedger: true}))
	if err != nil {
		return err
	}
	defer env.Close()
	src, err := env.Source(ctx, nil)
	if err != nil {
		return err
	}
	var rep *pipeline.Report
	if reportPath != "" {
		f, r, err := openReport(reportPath, outputFlags{})
		if err != nil {
			return err
		}
		defer f.Close()
		rep = r
	} else {
		rep, _ = pipeline.NewReport(nil)
	}
	stats := &pipeline.Stats{}
	out.noProgress = true
	sess := sessionOf(ctx)
	ui := newProgressUI(sess, *zerolog.Ctx(ctx), out, stats)
	ui.command = "verify"
	start := time.Now()
	v := &pipeline.Verifier{Core: env.Core("verify", ""), Bodies: env.S3, Key: env.To, Escrow: viaEscrow}
	err = v.Verify(ctx, src, sample, cfg.Concurrency, func(o pipeline.Outcome) {
		_ = rep.Add(o)
		stats.Done.Add(1)
		switch o.Status {
		case pipeline.StatusSucceeded:
			stats.Succeeded.Add(1)
		case pipeline.StatusFailed:
			stats.Failed.Add(1)
		default:
			stats.Skipped.Add(1)
		}
		ui.outcome(o)
	})
	if ferr := rep.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return err
	}
	ok, failed, skipped := stats.Succeeded.Load(), stats.Failed.Load(), stats.Skipped.Load()
	took := time.Since(start)
	logs.Duration(ui.log.Info().Str(logs.ToKey, env.To.ID()).Int64("verified", ok).Int64("failed", failed).Int64("skipped", skipped), took).
		Msg("verify finished")
	if out.json {
		_ = sess.out.emit(summaryMsg{MessageType: msgSummary, Command: "verify", Key: env.To.ID(), Report: reportPath,
			SecondsElapsed: math.Round(took.Seconds()*1000) / 1000, ObjectsListed: stats.Done.Load(), ObjectsDone: stats.Done.Load(), Counts: countsOf(stats)})
	} else {
		through := ""
		if viaEscrow {
			through = " through their escrow files"
		}
		fmt.Fprintf(stdout, "verify: %d objects open%s under %s with valid tags, %d failed, %d skipped (not encrypted)\n", ok, through, env.To.ID(), failed, skipped)
	}
	if failed > 0 {
		return exitError{exitPartial, fmt.Sprintf("%d objects do not open under %s: keep the old key", failed, env.To.ID())}
	}
	if ok == 0 {
		return exitError{exitPartial, "no encrypted object was verified"}
	}
	return nil
}
