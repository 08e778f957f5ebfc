package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rotator-dev/rotator/internal/testenv"
	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/pipeline"
)

// shardProc is one rotator process of a sharded job.
type shardProc struct {
	index int
	c     *exec.Cmd
	out   testenv.Buffer
}

// exit waits for p and returns its exit code (-1 when a signal killed it).
func (p *shardProc) exit(t *testing.T) int {
	t.Helper()
	err := p.c.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled():
		return -1
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("shard %d: %v", p.index, err)
	return 0
}

// TestCLIShardedJob is issue 12's test of sharded jobs: four rotator
// processes with the environment of a Kubernetes Indexed Job
// (JOB_COMPLETION_INDEX, and ROTATOR_SHARD_COUNT for the count), one
// command, one run id and one DynamoDB ledger, rotate every object of a
// bucket exactly once, and 'rotator status' adds them up. Meanwhile, as a
// Job's life goes:
//
//   - shard 2 is killed with SIGKILL mid-run and started again with the
//     same environment: it resumes its own shard;
//   - shard 1 is interrupted (SIGTERM, as Kubernetes stops a pod): it
//     exits 130 after writing its report to S3, and started again, it
//     resumes and continues that report;
//   - a second process of shard 3 starts while shard 3 works (the same
//     index twice: a misconfiguration): it exits 5 naming the holder; a
//     third, with --wait, waits for the shard, then finds nothing left,
//     and the shard's counts stay exact;
//   - a shard started with another target key is refused (exit 2).
//
// Every shard writes its report to s3://BUCKET/reports/ (--report
// s3://): one object per shard, each row of its shard only.
func TestCLIShardedJob(t *testing.T) {
	testenv.Need(t, testenv.DynamoDB)
	const n, objects = 4, 240
	f := newCLIFixture(t, objects)
	reports := testenv.Name(t) + "-r"
	if _, err := f.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &reports}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testenv.EmptyBucket(f.s3, reports) })
	ledgerURL := "dynamodb://" + strings.ReplaceAll(testenv.Name(t), "/", "-")
	const runID = "job"
	shardOf := map[string]int{}
	size := make([]int, n)
	for _, o := range f.objs {
		shardOf[o.Key] = inventory.ShardOf(f.bucket, o.Key, n)
		size[shardOf[o.Key]]++
	}
	// One command for every pod; --s3-rps keeps each shard busy for
	// several seconds (two S3 requests an object: some 60 objects at 10
	// objects/s), so that kills land mid-run even when the processes
	// started before them are slow to start.
	command := []string{"run", "--shard", "auto", "--run-id", runID, "--source", "s3://" + f.bucket,
		"--from", "kms:" + f.arnA, "--to", "kms:" + f.arnB, "--ledger", ledgerURL + "?create=true",
		"--report", "s3://" + reports + "/reports/", "--concurrency", "4", "--s3-rps", "20", "--no-progress"}
	start := func(index int, extra ...string) *shardProc {
		t.Helper()
		p := &shardProc{index: index, c: f.cmd(append(append([]string{}, command...), extra...)...)}
		p.c.Env = append(p.c.Env, fmt.Sprintf("%s=%d", inventory.EnvJobCompletionIndex, index), inventory.EnvShardCount+"=4")
		p.c.Stdout, p.c.Stderr = &p.out, &p.out
		if err := p.c.Start(); err != nil {
			t.Fatal(err)
		}
		return p
	}
	procs := make([]*shardProc, n)
	for i := range n {
		procs[i] = start(i)
	}
	for _, p := range procs {
		waitStarted(t, p.c, &p.out)
	}

	// The same index twice: the second process says who holds the shard.
	if code := start(3).exit(t); code != exitBusy {
		t.Errorf("a second process of shard 3: exit %d, want %d", code, exitBusy)
	}
	waiter := start(3, "--wait")
	// Another configuration under the same run id is refused.
	other := start(0, "--to", "kms:"+f.arnA)
	if code := other.exit(t); code != exitUsage || !strings.Contains(other.out.String(), "(to differ)") {
		t.Errorf("a shard with another --to: exit %d, want %d:\n%s", code, exitUsage, other.out.String())
	}

	// Shard 2 dies (SIGKILL); shard 1 is stopped (SIGTERM).
	_ = procs[2].c.Process.Signal(syscall.SIGKILL)
	_ = procs[1].c.Process.Signal(syscall.SIGTERM)
	if code := procs[2].exit(t); code != -1 {
		t.Fatalf("shard 2 was not killed mid-run (exit %d):\n%s", code, procs[2].out.String())
	}
	if code := procs[1].exit(t); code != exitInterrupted {
		t.Fatalf("shard 1 after SIGTERM: exit %d, want %d:\n%s", code, exitInterrupted, procs[1].out.String())
	}
	interrupted := f.reportRows(t, reports, 1)
	if len(interrupted) == 0 || len(interrupted) >= size[1] {
		t.Errorf("shard 1's report after SIGTERM holds %d rows of %d: want those it did", len(interrupted), size[1])
	}
	procs[1], procs[2] = start(1), start(2)
	for _, p := range append(procs, waiter) {
		if code := p.exit(t); code != 0 {
			t.Errorf("shard %d: exit %d:\n%s", p.index, code, p.out.String())
		}
	}
	if !strings.Contains(procs[2].out.String(), "ran before") || !strings.Contains(waiter.out.String(), "waiting") {
		t.Errorf("the retried shard 2 did not resume, or shard 3's second process did not wait:\n%s\n%s", procs[2].out.String(), waiter.out.String())
	}
	if t.Failed() {
		t.FailNow()
	}

	// Every object rotated exactly once, nothing unfinished, no upload left.
	f.opensUnder(t, f.arnB)
	f.exactlyOnce(t, ledgerURL, runID)
	for _, b := range []string{f.bucket, reports} {
		if ups, err := f.s3.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &b}); err != nil || len(ups.Uploads) != 0 {
			t.Errorf("%s: multipart uploads left (%v)", b, err)
		}
	}

	// status adds the shards up.
	code, out := f.rotator(t, "status", "--run-id", runID, "--ledger", ledgerURL)
	if code != 0 || !strings.Contains(out, "run job: done (4 shards: 4 done)") || strings.Count(out, "done; ") != n {
		t.Errorf("status (%d):\n%s", code, out)
	}
	t.Logf("status:\n%s", out)
	code, out = f.rotator(t, "status", "--run-id", runID, "--ledger", ledgerURL, "--json")
	var st struct {
		State  string           `json:"state"`
		Counts map[string]int64 `json:"counts"`
		Shards []struct {
			Index      int              `json:"index"`
			State      string           `json:"state"`
			Counts     map[string]int64 `json:"counts"`
			Unfinished int              `json:"unfinished"`
			Holder     string           `json:"holder"`
		} `json:"shards"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != 0 || st.State != "done" || len(st.Shards) != n {
		t.Fatalf("status --json (%d, %v):\n%s", code, err, out)
	}
	sum := map[string]int64{}
	for _, s := range st.Shards {
		for k, v := range s.Counts {
			sum[k] += v
		}
		if s.State != "done" || s.Unfinished != 0 || s.Holder == "" {
			t.Errorf("shard %d: %+v", s.Index, s)
		}
		switch s.Index {
		case 0, 1, 3:
			// Not killed (shard 1 stopped cleanly, shard 3 was joined by a
			// process that waited): exact counts.
			if s.Counts["listed"] != int64(size[s.Index]) || s.Counts["succeeded"] != int64(size[s.Index]) || s.Counts["done"] != int64(size[s.Index]) {
				t.Errorf("shard %d has %d objects; counts %v", s.Index, size[s.Index], s.Counts)
			}
		case 2:
			// Killed: what it did after its last checkpoint is listed and
			// done again (found rotated: skipped).
			if c := s.Counts; c["succeeded"] > int64(size[2]) || c["succeeded"]+c["skipped"] < int64(size[2]) || c["failed"] != 0 {
				t.Errorf("shard 2 has %d objects; counts %v", size[2], c)
			}
		}
	}
	for k, v := range st.Counts {
		if sum[k] != v {
			t.Errorf("status counts %s = %d, the shards' add up to %d", k, v, sum[k])
		}
	}
	if st.Counts["succeeded"]+st.Counts["skipped"] < objects || st.Counts["failed"] != 0 {
		t.Errorf("status counts %v for %d objects", st.Counts, objects)
	}

	// ledger runs shows the job's record as its shards left it (done, their
	// counts added up), not as the first process wrote it (running).
	code, out = f.rotator(t, "ledger", "runs", "--ledger", ledgerURL, "--json")
	found := false
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r struct {
			RunID  string           `json:"run_id"`
			State  string           `json:"state"`
			Counts map[string]int64 `json:"counts"`
		}
		if json.Unmarshal([]byte(line), &r) != nil || r.RunID != runID {
			continue
		}
		found = true
		if r.State != "done" || r.Counts["succeeded"] != st.Counts["succeeded"] || r.Counts["done"] != st.Counts["done"] {
			t.Errorf("ledger runs: job %s is %s with counts %v; status says done with %v", runID, r.State, r.Counts, st.Counts)
		}
	}
	if code != 0 || !found {
		t.Errorf("ledger runs --json (%d) has no line for the job:\n%s", code, out)
	}

	// One report per shard in S3, with its shard's objects only; the
	// interrupted shard's report was continued.
	for i := range n {
		rows := f.reportRows(t, reports, i)
		succeeded := map[string]int{}
		for _, r := range rows {
			if shardOf[r.key] != i {
				t.Errorf("shard %d's report has %s, of shard %d", i, r.key, shardOf[r.key])
			}
			if r.status == "succeeded" {
				succeeded[r.key]++
			}
		}
		if i == 2 {
			continue // what the killed process did is in the ledger, not in a report
		}
		for k, c := range succeeded {
			if c != 1 {
				t.Errorf("shard %d's report: %s succeeded %d times", i, k, c)
			}
		}
		if len(succeeded) != size[i] {
			t.Errorf("shard %d's report: %d objects succeeded, the shard has %d", i, len(succeeded), size[i])
		}
		if i == 1 && len(rows) < len(interrupted) {
			t.Errorf("shard 1's report lost the rows written before SIGTERM: %d rows, %d before", len(rows), len(interrupted))
		}
	}
}

type reportRow struct{ key, status string }

// reportRows reads shard i's report from the reports bucket: every row
// (after the single header) as key and status.
func (f *cliFixture) reportRows(t *testing.T, bucket string, i int) []reportRow {
	t.Helper()
	key := fmt.Sprintf("reports/rotator-report-job-shard-%d-of-4.csv", i)
	out, err := f.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		t.Fatalf("shard %d's report: %v", i, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil || len(rows) == 0 || strings.Join(rows[0], ",") != strings.Join(pipeline.ReportHeader, ",") {
		t.Fatalf("shard %d's report (%v): %.200s", i, err, b)
	}
	var res []reportRow
	for _, r := range rows[1:] {
		if r[0] == "Bucket" {
			t.Errorf("shard %d's report has a second header", i)
			continue
		}
		k, err := url.QueryUnescape(r[1])
		if err != nil {
			t.Fatal(err)
		}
		res = append(res, reportRow{key: k, status: r[3]})
	}
	return res
}

// TestCLIShardSettings: --shard auto and --shard-count refuse what is
// ambiguous or inconsistent, before anything is opened; a sharded run
// needs its run id; a sharded run is resumed one shard at a time.
func TestCLIShardSettings(t *testing.T) {
	for _, v := range []string{inventory.EnvJobCompletionIndex, inventory.EnvBatchArrayIndex, inventory.EnvBatchArraySize, inventory.EnvShardCount} {
		t.Setenv(v, "")
	}
	base := []string{"run", "--source", "s3://b", "--to", "kms:alias/x"}
	for _, tc := range []struct {
		env  []string
		args []string
		want string
	}{
		{nil, []string{"--shard", "auto"}, "no shard index in the environment"},
		{[]string{inventory.EnvJobCompletionIndex, "1"}, []string{"--shard", "auto"}, "give --shard-count N or set ROTATOR_SHARD_COUNT"},
		{[]string{inventory.EnvJobCompletionIndex, "1", inventory.EnvBatchArrayIndex, "1"}, []string{"--shard", "auto", "--shard-count", "4"}, "ambiguous shard environment"},
		{[]string{inventory.EnvJobCompletionIndex, "1", inventory.EnvShardCount, "8"}, []string{"--shard", "auto", "--shard-count", "4"}, "inconsistent shard counts"},
		{[]string{inventory.EnvBatchArrayIndex, "4", inventory.EnvBatchArraySize, "4"}, []string{"--shard", "auto"}, "not below the shard count 4"},
		{nil, []string{"--shard", "1/4", "--shard-count", "8"}, "disagrees with --shard-count=8"},
		{[]string{inventory.EnvJobCompletionIndex, "2"}, []string{"--shard", "1/4"}, "give --shard auto"},
		{nil, []string{"--shard-count", "4"}, "needs --shard auto"},
		{[]string{inventory.EnvJobCompletionIndex, "1", inventory.EnvShardCount, "4"}, []string{"--shard", "auto"}, "a sharded run needs --run-id"},
		{nil, []string{"--shard", "0/2", "--run-id", "job", "--report", "s3://bucket/one.csv"}, "the shards of a job write one report each: give a prefix ending in /, such as s3://bucket/"},
	} {
		for i := 0; i < len(tc.env); i += 2 {
			t.Setenv(tc.env[i], tc.env[i+1])
		}
		var out, errb bytes.Buffer
		code := run(append(append([]string{}, base...), tc.args...), &out, &errb)
		for i := 0; i < len(tc.env); i += 2 {
			t.Setenv(tc.env[i], "")
		}
		if code != exitUsage || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("rotator %v with %v: exit %d, want %d with %q:\n%s", tc.args, tc.env, code, exitUsage, tc.want, errb.String())
		}
	}

	// resume of a sharded run names the shard.
	dir := t.TempDir()
	l, err := ledger.Open(ctx, filepath.Join(dir, "l.db"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := pipeline.Config{Source: "s3://b", To: "kms:alias/x", Shard: "1/3", ShardCount: 3}
	if _, _, err := pipeline.JoinJob(ctx, l, "job", cfg); err != nil {
		t.Fatal(err)
	}
	l.Close()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "run job is split into 3 shards: resume one with --shard i/3"},
		{[]string{"--shard", "1/4"}, "split into 3 shards, not 4"},
		{[]string{"--shard", "1/4", "--shard-count", "3"}, "disagrees with --shard-count=3"},
		{[]string{"--shard", "auto", "--shard-count", "3"}, "no shard index in the environment"},
	} {
		var out, errb bytes.Buffer
		args := append([]string{"resume", "--run-id", "job", "--ledger", filepath.Join(dir, "l.db")}, tc.args...)
		if code := run(args, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("rotator %v: exit %d, want %d with %q:\n%s", args, code, exitUsage, tc.want, errb.String())
		}
	}
}

// TestCLIShardedBatchArrayJob: the children of an AWS Batch array job
// (AWS_BATCH_JOB_ARRAY_INDEX, AWS_BATCH_JOB_ARRAY_SIZE: nothing else to
// set) share a run; each writes its local report under its shard's
// default name.
func TestCLIShardedBatchArrayJob(t *testing.T) {
	testenv.Need(t, testenv.DynamoDB)
	f := newCLIFixture(t, 40)
	ledgerURL := "dynamodb://" + strings.ReplaceAll(testenv.Name(t), "/", "-") + "?create=true"
	var procs []*shardProc
	for i := range 2 {
		p := &shardProc{index: i, c: f.cmd("run", "--shard", "auto", "--run-id", "batch-job", "--source", "s3://"+f.bucket,
			"--to", "kms:"+f.arnB, "--ledger", ledgerURL, "--no-progress")}
		p.c.Env = append(p.c.Env, fmt.Sprintf("%s=%d", inventory.EnvBatchArrayIndex, i), inventory.EnvBatchArraySize+"=2")
		p.c.Stdout, p.c.Stderr = &p.out, &p.out
		if err := p.c.Start(); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
	}
	for _, p := range procs {
		if code := p.exit(t); code != 0 {
			t.Fatalf("child %d: exit %d:\n%s", p.index, code, p.out.String())
		}
	}
	f.opensUnder(t, f.arnB)
	f.exactlyOnce(t, ledgerURL, "batch-job")
	rows := 0
	for i := range 2 {
		b, err := os.ReadFile(filepath.Join(f.dir, fmt.Sprintf("rotator-report-batch-job-shard-%d-of-2.csv", i)))
		if err != nil {
			t.Fatal(err)
		}
		rows += strings.Count(string(b), ",succeeded,")
	}
	if rows != len(f.objs) {
		t.Errorf("the children's reports hold %d successes, want %d", rows, len(f.objs))
	}
	if code, out := f.rotator(t, "status", "--run-id", "batch-job", "--ledger", ledgerURL); code != 0 ||
		!strings.Contains(out, "done (2 shards: 2 done)") || !strings.Contains(out, "40 done: 40 rewrapped") {
		t.Errorf("status (%d):\n%s", code, out)
	}
}

// TestCLIReportToS3: a run that is not sharded writes its report to the
// S3 key it is given, or under a prefix as rotator-report-RUN.csv.
func TestCLIReportToS3(t *testing.T) {
	f := newCLIFixture(t, 12)
	reports := testenv.Name(t) + "-r"
	if _, err := f.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &reports}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testenv.EmptyBucket(f.s3, reports) })
	ledgerPath := filepath.Join(f.dir, "l.db")
	for _, c := range []struct{ runID, dest, key, status string }{
		{"first", "s3://" + reports + "/audit/first.csv", "audit/first.csv", ",succeeded,"},
		{"second", "s3://" + reports + "/audit/", "audit/rotator-report-second.csv", ",skipped,"},
	} {
		code, out := f.rotator(t, "run", "--source", "s3://"+f.bucket, "--to", "kms:"+f.arnB, "--ledger", ledgerPath,
			"--run-id", c.runID, "--report", c.dest, "--no-progress")
		if code != 0 || !strings.Contains(out, "s3://"+reports+"/"+c.key) {
			t.Fatalf("run %s (%d):\n%s", c.runID, code, out)
		}
		got, err := f.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &reports, Key: &c.key})
		if err != nil {
			t.Fatalf("report of run %s: %v", c.runID, err)
		}
		b, _ := io.ReadAll(got.Body)
		got.Body.Close()
		if !strings.HasPrefix(string(b), strings.Join(pipeline.ReportHeader, ",")+"\n") || strings.Count(string(b), c.status) != len(f.objs) {
			t.Errorf("report of run %s: %d rows %s, want %d:\n%.500s", c.runID, strings.Count(string(b), c.status), c.status, len(f.objs), b)
		}
	}
}
