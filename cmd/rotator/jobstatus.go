package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/pipeline"
)

// shardStatus is what status knows of one shard of a sharded run.
type shardStatus struct {
	shard inventory.Shard
	rec   *ledger.Run // nil: not started
	cp    pipeline.Checkpoint
	// unfinished counts the intents the run holds on the shard's objects.
	unfinished int
	lease      *ledger.Lease // the shard's lease, if it was ever taken
	working    bool          // the lease is held now
	state      string
}

// Shard states status shows, beside the run states.
const (
	shardNotStarted = "not started"
	// shardStopped: the record says running, but no process holds the
	// shard's lease: the process died without a checkpoint (SIGKILL, a
	// lost node). Start the shard again.
	shardStopped = "stopped"
)

// jobStatus prints the status of a sharded run: every shard's state,
// holder and unfinished changes, and the counts of all shards added up.
// It exits 4 while changes are unfinished, as status does for a run.
func jobStatus(ctx context.Context, ledgerURL string, rec ledger.Run, cfg pipeline.Config, asJSON bool, stdout io.Writer) error {
	l, err := ledger.Open(ctx, ledgerURL)
	if err != nil {
		return err
	}
	defer l.Close()
	n := cfg.ShardCount
	shards := make([]shardStatus, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i := range shards {
		shards[i].shard = inventory.Shard{Index: i, Count: n}
		g.Go(func() error {
			r, err := l.GetRun(gctx, pipeline.ShardRecordID(rec.ID, shards[i].shard))
			if errors.Is(err, ledger.ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			shards[i].rec = &r
			shards[i].cp, err = pipeline.DecodeCheckpoint(r.Checkpoint)
			return err
		})
	}
	var unfinished []int
	g.Go(func() (err error) {
		unfinished, err = pipeline.UnfinishedByShard(gctx, l, rec.ID, n)
		return err
	})
	var leases []ledger.Lease
	g.Go(func() (err error) {
		leases, err = l.Leases(gctx, rec.ID)
		return err
	})
	if err := g.Wait(); err != nil {
		return err
	}
	now := time.Now()
	byName := map[string]ledger.Lease{}
	for _, ls := range leases {
		byName[ls.Name] = ls
	}
	total := map[string]int64{}
	totalUnfinished := 0
	updated := rec.UpdatedAt
	tally := map[string]int{}
	for i := range shards {
		s := &shards[i]
		s.unfinished = unfinished[i]
		if s.rec != nil {
			// Objects a recovery began with and did not finish count too.
			if cp, err := pipeline.DecodeCheckpoint(s.rec.Checkpoint); err == nil {
				s.unfinished += len(cp.Revisit)
			}
		}
		totalUnfinished += s.unfinished
		if ls, ok := byName[ledger.ShardLeaseName(i, n)]; ok {
			s.lease = &ls
			s.working = ls.Expires.After(now)
		}
		switch {
		case s.rec == nil && s.working:
			s.state = string(ledger.RunRunning)
		case s.rec == nil:
			s.state = shardNotStarted
		case s.working:
			s.state = string(ledger.RunRunning)
		case s.rec.State == ledger.RunRunning:
			s.state = shardStopped
		case s.rec.State == ledger.RunDone && s.unfinished > 0:
			s.state = string(ledger.RunUnfinished)
		default:
			s.state = string(s.rec.State)
		}
		tally[s.state]++
		if s.rec != nil {
			for k, v := range s.rec.Counts {
				total[k] += v
			}
			if s.rec.UpdatedAt.After(updated) {
				updated = s.rec.UpdatedAt
			}
		}
	}
	state := jobState(tally, n)
	if asJSON {
		var views []map[string]any
		for _, s := range shards {
			v := map[string]any{"shard": s.shard.String(), "index": s.shard.Index, "state": s.state, "unfinished": s.unfinished, "working": s.working}
			if s.rec != nil {
				v["counts"], v["positions"], v["error"], v["updated_at"] = s.rec.Counts, s.cp.Positions, s.cp.Error, s.rec.UpdatedAt
			}
			if s.lease != nil {
				v["holder"], v["host"], v["pid"], v["epoch"] = s.lease.Holder, s.lease.Host, s.lease.PID, s.lease.Epoch
				v["lease_expires"] = s.lease.Expires.UTC().Format(time.RFC3339)
			}
			views = append(views, v)
		}
		if err := json.NewEncoder(stdout).Encode(map[string]any{
			"message_type": "run_status", "run_id": rec.ID, "state": state, "counts": total, "config": cfg,
			"unfinished": totalUnfinished, "leases": leaseView(leases), "shard_count": n, "shards": views,
			"created_at": rec.CreatedAt, "updated_at": updated,
		}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "run %s: %s (%d shards: %s)\n", rec.ID, state, n, tallyLine(tally))
		fmt.Fprintf(stdout, "  job:      %s\n", cfg.Describe())
		fmt.Fprintf(stdout, "  started:  %s\n  updated:  %s\n", rec.CreatedAt.UTC().Format(time.RFC3339), updated.UTC().Format(time.RFC3339))
		printCounts(stdout, total, cfg)
		if totalUnfinished > 0 {
			fmt.Fprintf(stdout, "  unfinished: %d changes whose outcome is not known yet are kept in the ledger\n", totalUnfinished)
		}
		// Every shard, or with many, those not done.
		for _, s := range shards {
			if n > 64 && s.state == string(ledger.RunDone) {
				continue
			}
			fmt.Fprintf(stdout, "  shard %-*s %s\n", len(fmt.Sprint(n))*2+2, s.shard.String()+":", shardLine(s, cfg))
		}
		if state != string(ledger.RunDone) {
			fmt.Fprintf(stdout, "  resume:   start the job's shards that are not done again (the same command resumes them), or 'rotator resume --run-id %s --shard i/%d --ledger %s'\n",
				rec.ID, n, ledgerURL)
		}
	}
	if totalUnfinished > 0 {
		return exitError{exitUnfinished, ""}
	}
	return nil
}

// foldJobs gives the record of each sharded job in runs (whose own record
// no process updates once its shards work) the state and counts of its
// shards' records, as status does without the leases: done when every
// shard is, running while any shard's record says so, and so on
// (jobState). The shards' records stay in the list.
func foldJobs(runs []ledger.Run) []ledger.Run {
	shards := map[string][]ledger.Run{}
	for _, r := range runs {
		if parent, _, ok := pipeline.ParseShardRecordID(r.ID); ok {
			shards[parent] = append(shards[parent], r)
		}
	}
	for i, r := range runs {
		var cfg pipeline.Config
		if len(shards[r.ID]) == 0 || json.Unmarshal(r.Config, &cfg) != nil || cfg.ShardCount == 0 || cfg.Shard != "" {
			continue
		}
		tally := map[string]int{shardNotStarted: cfg.ShardCount}
		counts := map[string]int64{}
		for _, s := range shards[r.ID] {
			tally[shardNotStarted]--
			tally[string(s.State)]++
			for k, v := range s.Counts {
				counts[k] += v
			}
			if s.UpdatedAt.After(runs[i].UpdatedAt) {
				runs[i].UpdatedAt = s.UpdatedAt
			}
		}
		runs[i].State = ledger.RunState(jobState(tally, cfg.ShardCount))
		runs[i].Counts = counts
	}
	return runs
}

// jobState is a sharded run's state from its shards' (tally: shards by
// state): done when every shard is; unfinished when every shard went
// through its listing but changes are unfinished; running while any
// process works; failed when a shard failed; else interrupted (shards
// not started, interrupted or stopped, and nobody working).
func jobState(tally map[string]int, n int) string {
	done, unfinished := tally[string(ledger.RunDone)], tally[string(ledger.RunUnfinished)]
	switch {
	case done == n:
		return string(ledger.RunDone)
	case done+unfinished == n:
		return string(ledger.RunUnfinished)
	case tally[string(ledger.RunRunning)] > 0:
		return string(ledger.RunRunning)
	case tally[string(ledger.RunFailed)] > 0:
		return string(ledger.RunFailed)
	}
	return string(ledger.RunInterrupted)
}

// tallyLine is "2 done, 1 running, 1 not started".
func tallyLine(tally map[string]int) string {
	states := make([]string, 0, len(tally))
	for s := range tally {
		states = append(states, s)
	}
	sort.Slice(states, func(i, j int) bool {
		return tally[states[i]] > tally[states[j]] || tally[states[i]] == tally[states[j]] && states[i] < states[j]
	})
	parts := make([]string, len(states))
	for i, s := range states {
		parts[i] = fmt.Sprintf("%d %s", tally[s], s)
	}
	return strings.Join(parts, ", ")
}

// shardLine describes one shard.
func shardLine(s shardStatus, cfg pipeline.Config) string {
	var b strings.Builder
	b.WriteString(s.state)
	if s.rec != nil {
		fmt.Fprintf(&b, "; %s", countsLine(s.rec.Counts, cfg))
	}
	if s.unfinished > 0 {
		fmt.Fprintf(&b, "; %d unfinished", s.unfinished)
	}
	switch {
	case s.working:
		fmt.Fprintf(&b, "; held by %s (pid %d on %s) until %s", s.lease.Holder, s.lease.PID, s.lease.Host, s.lease.Expires.UTC().Format(time.RFC3339))
	case s.lease != nil && s.state != string(ledger.RunDone):
		fmt.Fprintf(&b, "; last held by %s (pid %d on %s)", s.lease.Holder, s.lease.PID, s.lease.Host)
	}
	if s.cp.Error != "" {
		fmt.Fprintf(&b, "; stopped: %s", s.cp.Error)
	}
	return b.String()
}
