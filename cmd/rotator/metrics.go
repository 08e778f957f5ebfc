package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/rotator-dev/rotator/internal/metrics"
	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/pipeline"
)

// runMetrics are the metrics of one run's process: served while it runs
// (--metrics-addr), pushed when it ends (--metrics-push). A nil
// *runMetrics (neither flag given) does nothing.
type runMetrics struct {
	m      *metrics.Metrics
	srv    *metrics.Server
	push   metrics.Target
	shard  string
	stderr io.Writer
}

// pushTimeout bounds the final push.
const pushTimeout = 30 * time.Second

// startMetrics starts serving the run's metrics when --metrics-addr is
// given; runID is the job's run id (a shard's too).
func startMetrics(f metricsFlags, env *pipeline.Env, runID string, stderr io.Writer) (*runMetrics, error) {
	if f.addr.v == "" && f.push.v == "" {
		return nil, nil
	}
	r := &runMetrics{m: metrics.New(), stderr: stderr}
	mode := env.Config.Mode
	if mode == "" {
		mode = pipeline.ModeRewrap
	}
	r.m.Run(runID, mode, env.Config.Shard, time.Now())
	r.m.WatchHSM(env.Deps)
	if env.Config.Shard != "" {
		if sh, err := inventory.ParseShard(env.Config.Shard); err == nil {
			r.shard = strconv.Itoa(sh.Index)
		}
	}
	if f.push.v != "" {
		r.push, _ = metrics.ParsePushURL(f.push.v) // checked by the flag
	}
	if f.addr.v != "" {
		srv, err := metrics.Serve(f.addr.v, r.m.Handler())
		if err != nil {
			return nil, fmt.Errorf("--metrics-addr %s: %w", f.addr.v, err)
		}
		r.srv = srv
		fmt.Fprintf(stderr, "rotator: metrics on http://%s/metrics\n", srv.Addr())
	}
	return r, nil
}

// context makes ctx's AWS calls count in the metrics.
func (r *runMetrics) context(ctx context.Context) context.Context {
	if r == nil {
		return ctx
	}
	return r.m.Context(ctx)
}

// watch instruments the runner (after its OnOutcome is set).
func (r *runMetrics) watch(runner *pipeline.Runner) {
	if r != nil {
		r.m.Watch(runner)
	}
}

// finish records the exit code err maps to, pushes the metrics
// (--metrics-push) and stops serving them. A failed push is reported and
// does not change the run's exit code: the run's work is done.
func (r *runMetrics) finish(ctx context.Context, err error) {
	if r == nil {
		return
	}
	code, _, _ := exitOf(err)
	r.m.End(code, time.Now())
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pushTimeout)
	defer cancel()
	if r.push.URL != "" {
		var extra map[string]string
		if r.shard != "" {
			extra = map[string]string{"shard": r.shard}
		}
		if perr := metrics.Push(ctx, r.push, r.m.Gatherer(), extra); perr != nil {
			fmt.Fprintf(r.stderr, "rotator: warning: %v (hint: check --metrics-push; the run itself is not affected)\n", perr)
		}
	}
	if r.srv != nil {
		_ = r.srv.Close(ctx)
	}
}
