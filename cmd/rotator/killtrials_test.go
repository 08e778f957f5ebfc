package main

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/internal/sample"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/pipeline"
)

// TestCLIKillTrials runs a rotation as a user would and kills it with
// SIGKILL at random moments: the run, then resumes, each killed in turn,
// then a resume left to finish. 200 objects written in the official
// clients' layout, a fifth of them with the envelope in an instruction
// file, some re-encrypted in parts. Every kill is checked to have landed
// while the process was still working. At the end the last resume exits
// 0, every object opens under the new key with its original plaintext,
// the ledger holds exactly one event per object for the run and nothing
// unfinished, no multipart upload is left, and status says done.
//
// ROTATOR_KILL_TRIALS sets the trials per mode (make kill-trials: 20; CI
// runs 1).
func TestCLIKillTrials(t *testing.T) {
	trials := 1
	if s := os.Getenv("ROTATOR_KILL_TRIALS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("ROTATOR_KILL_TRIALS=%q: want a positive number", s)
		}
		trials = n
	}
	for _, mode := range []string{"rewrap", "reencrypt"} {
		t.Run(mode, func(t *testing.T) {
			landed := 0
			for i := range trials {
				t.Run(strconv.Itoa(i), func(t *testing.T) { landed += killTrial(t, mode) })
			}
			t.Logf("%s: %d trials, %d kills landed mid-run", mode, trials, landed)
		})
	}
}

// killTrial runs one trial and returns how many kills landed mid-run.
func killTrial(t *testing.T, mode string) int {
	f := newCLIFixture(t, 0)
	meta := func(v envelope.Format) sample.Kind {
		return sample.Kind{Format: v, Placement: envelope.PlacementMetadata}
	}
	kinds := []sample.Kind{meta(envelope.V2), meta(envelope.V3), meta(envelope.V2), meta(envelope.V3), meta(envelope.V2),
		meta(envelope.V3), meta(envelope.V2), meta(envelope.V3),
		{Format: envelope.V2, Placement: envelope.PlacementInstructionFile}, {Format: envelope.V3, Placement: envelope.PlacementInstructionFile}}
	objs, err := sample.Seed(ctx, f.s3, f.kms, sample.Options{Bucket: f.bucket, KMSKeyID: f.arnA, Count: 196, MaxSize: 4000, Kinds: kinds})
	if err != nil {
		t.Fatal(err)
	}
	f.objs = objs
	if mode == "reencrypt" {
		// A few objects of two to three parts, in both placements.
		big, err := sample.Seed(ctx, f.s3, f.kms, sample.Options{Bucket: f.bucket, Prefix: "big/", KMSKeyID: f.arnA, Count: 4,
			MinSize: 5<<20 + 1, MaxSize: 11 << 20, Kinds: kinds[7:]})
		if err != nil {
			t.Fatal(err)
		}
		f.objs = append(f.objs, big...)
	}
	sums := map[string][32]byte{}
	for _, o := range f.objs {
		sums[o.Key] = sha256.Sum256(f.plaintext(t, o.Key, f.arnA))
	}
	ledgerPath := filepath.Join(f.dir, "ledger.db")
	runID := "kill-" + mode
	args := []string{"run", "--source", "s3://" + f.bucket, "--to", "kms:" + f.arnB, "--from", "kms:" + f.arnA,
		"--ledger", ledgerPath, "--run-id", runID, "--concurrency", "8", "--no-progress", "--s3-rps", "150"}
	if mode == "reencrypt" {
		args = append(args, "--mode", "reencrypt", "--part-size", "5242880", "--parts-in-flight", "2")
	}
	landed := 0
	kill := func(args []string) {
		t.Helper()
		c := f.cmd(args...)
		var out bytes.Buffer
		c.Stdout, c.Stderr = &out, &out
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(150+rand.IntN(1200)) * time.Millisecond)
		_ = c.Process.Signal(syscall.SIGKILL)
		err := c.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled() {
			landed++ // killed while it was still working
		}
	}
	kill(args)
	for range 5 {
		kill([]string{"resume", "--run-id", runID, "--ledger", ledgerPath, "--no-progress"})
	}
	if landed == 0 {
		t.Errorf("no kill landed while a process was working")
	}
	code, out := f.rotator(t, "resume", "--run-id", runID, "--ledger", ledgerPath, "--no-progress")
	if code != exitOK {
		rep, _ := os.ReadFile(filepath.Join(f.dir, "rotator-report-"+runID+".csv"))
		t.Fatalf("the last resume exits %d:\n%s\nreport (all but successes and skips):\n%s", code, out, failedRows(string(rep)))
	}
	for _, o := range f.objs {
		if got := sha256.Sum256(f.plaintext(t, o.Key, f.arnB)); got != sums[o.Key] {
			t.Errorf("%s: plaintext differs after the rotation", o.Key)
		}
	}
	f.exactlyOnce(t, ledgerPath, runID)
	l, err := ledger.Open(ctx, ledgerPath)
	if err != nil {
		t.Fatal(err)
	}
	n, err := pipeline.Unfinished(ctx, l, runID)
	l.Close()
	if err != nil || n != 0 {
		t.Errorf("%d changes unfinished in the ledger (%v)", n, err)
	}
	ups, err := f.s3.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &f.bucket})
	if err != nil || len(ups.Uploads) != 0 {
		t.Errorf("multipart uploads left: %d (%v)", len(ups.Uploads), err)
	}
	code, out = f.rotator(t, "status", "--run-id", runID, "--ledger", ledgerPath)
	if code != 0 || !strings.Contains(out, ": done") {
		t.Errorf("status (%d):\n%s", code, out)
	}
	t.Logf("%s: %d of 6 kills landed mid-run; %s", mode, landed, strings.TrimSpace(lastLine(out)))
	return landed
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return fmt.Sprint(s)
}
