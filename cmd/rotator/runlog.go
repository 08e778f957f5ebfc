package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/rs/zerolog"

	"github.com/rotator-dev/rotator/internal/logs"
	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/pipeline"
)

// runLogger returns ctx carrying the run's logger (the session's, with
// run_id and shard on every line), and that logger.
func runLogger(ctx context.Context, runID string, cfg pipeline.Config) (context.Context, zerolog.Logger) {
	lc := zerolog.Ctx(ctx).With().Str(logs.RunID, runID)
	if cfg.Shard != "" {
		lc = lc.Str(logs.Shard, cfg.Shard)
	}
	log := lc.Logger()
	return log.WithContext(ctx), log
}

// check checks the output flags that need checking.
func (o *outputFlags) check() error {
	switch o.jsonObjects {
	case "", "problems", "all":
	default:
		return usageError{fmt.Sprintf("--json-objects %q: want problems or all", o.jsonObjects)}
	}
	if o.plan != "" {
		if _, err := readPlanTotal(o.plan); err != nil {
			return err
		}
	}
	return nil
}

// readPlanTotal reads the object count of a 'rotator plan --json' output.
func readPlanTotal(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, usageError{fmt.Sprintf("--plan: %v", err)}
	}
	var p struct {
		MessageType string `json:"message_type"`
		Objects     *int64 `json:"objects"`
	}
	if err := json.Unmarshal(b, &p); err != nil || p.MessageType != msgPlan || p.Objects == nil {
		return 0, usageError{fmt.Sprintf("--plan %s: not the output of 'rotator plan --json' (want one JSON object with message_type plan)", path)}
	}
	return *p.Objects, nil
}

// fractionReader is a source that knows how much of itself it has read
// (an S3 Inventory report, by the sizes of its data files).
type fractionReader interface{ Fraction() float64 }

// expectedTotal returns how the progress learns the run's total before
// its listing ends: from a plan, or, for an S3 Inventory report or a
// list, by extrapolating the objects listed (stats) over the part of the
// report or list read, once a twentieth of it is. nil when there is no
// way (a bucket listing).
func expectedTotal(src inventory.Source, plan string, stats *pipeline.Stats) func() (int64, string, bool) {
	if plan != "" {
		n, err := readPlanTotal(plan)
		if err != nil {
			return nil
		}
		return func() (int64, string, bool) { return n, "plan", true }
	}
	fr, ok := src.(fractionReader)
	if !ok {
		return nil
	}
	name := "inventory"
	if _, isList := src.(*inventory.CSVList); isList {
		name = "list"
	}
	return func() (int64, string, bool) {
		f := fr.Fraction()
		if f < 0.05 {
			return 0, "", false
		}
		return int64(float64(stats.Listed.Load()) / f), name, true
	}
}
