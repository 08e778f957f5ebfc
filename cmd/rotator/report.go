package main

import (
	"context"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/pipeline"
)

// openRunReport opens a run's completion report at dest: a local file
// (default rotator-report-RUN.csv, or rotator-report-RUN-shard-I-of-N.csv
// for a shard of a sharded job), or s3://BUCKET/PREFIX/ (one object per
// run or shard under the prefix, named as the default file; or
// s3://BUCKET/KEY for a run that is not sharded). A report that exists
// is continued. It returns the report, what closes it (writing it, for
// S3) and its name for messages. Open it while holding the run's lease.
func openRunReport(ctx context.Context, env *pipeline.Env, out outputFlags, runID string) (io.Closer, *pipeline.Report, string, error) {
	dest := out.report
	name := "rotator-report-" + runID + ".csv"
	sh, sharded := env.Config.JobShard()
	if sharded {
		name = "rotator-report-" + runID + "-shard-" + fmt.Sprint(sh.Index) + "-of-" + fmt.Sprint(sh.Count) + ".csv"
	}
	if !strings.HasPrefix(dest, "s3://") {
		if dest == "" {
			dest = name
		}
		f, rep, err := openReport(dest, out)
		return f, rep, dest, err
	}
	format, err := pipeline.ParseReportFormat(out.reportFormat)
	if err != nil {
		return nil, nil, "", usageError{"--report-format: " + err.Error()}
	}
	opts := pipeline.ReportOptions{Format: format, FailedOnly: out.reportFailedOnly}
	if err := checkReportDest(dest, sharded); err != nil {
		return nil, nil, "", err
	}
	bucket, key, _ := inventory.ParseS3URL(dest)
	if key == "" || strings.HasSuffix(key, "/") {
		key += name
	}
	w, existed, err := pipeline.OpenS3Report(ctx, env.S3, bucket, key, pipeline.S3ReportOptions{})
	if err != nil {
		return nil, nil, "", err
	}
	var rep *pipeline.Report
	if existed {
		rep = pipeline.ContinueReportWith(w, opts)
	} else if rep, err = pipeline.NewReportWith(w, opts); err != nil {
		w.Close()
		return nil, nil, "", err
	}
	return w, rep, w.URL(), nil
}

// checkReportDest checks an s3:// --report: s3://BUCKET/PREFIX/, or
// s3://BUCKET/KEY for a run that is not sharded.
func checkReportDest(dest string, sharded bool) error {
	if !strings.HasPrefix(dest, "s3://") {
		return nil
	}
	bucket, key, err := inventory.ParseS3URL(dest)
	switch {
	case err != nil || bucket == "":
		return usageError{fmt.Sprintf("--report %s: want s3://BUCKET/PREFIX/ (or a local file)", dest)}
	case sharded && key != "" && !strings.HasSuffix(key, "/"):
		prefix := strings.TrimPrefix(path.Dir(key)+"/", "./")
		return usageError{fmt.Sprintf("--report %s: the shards of a job write one report each: give a prefix ending in /, such as s3://%s/%s", dest, bucket, prefix)}
	}
	return nil
}
