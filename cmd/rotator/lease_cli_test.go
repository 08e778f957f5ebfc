package main

import (
	"bufio"
	"bytes"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rotator-dev/rotator/internal/testenv"
)

// TestCLIOneProcessPerRun: while a run works, a second process of the
// same run (a resume started by mistake, or from another pod) does not
// work on it: it exits 5 naming the holder; with --wait it waits for the
// first to finish and then finds nothing left to do. The run's objects
// are changed exactly once, and the run's counts stay its own (the
// waiting process used to overwrite them with a second pass that found
// every object rotated: "0 rewrapped, 60 skipped"). (On DynamoDB, the
// ledger several processes share; the embedded ledger's file lock
// already keeps a second process out.)
func TestCLIOneProcessPerRun(t *testing.T) {
	testenv.Need(t, testenv.DynamoDB)
	f := newCLIFixture(t, 60)
	ledgerURL := "dynamodb://" + strings.ReplaceAll(testenv.Name(t), "/", "-")
	const runID = "one-process"
	first := f.cmd("run", "--source", "s3://"+f.bucket, "--to", "kms:"+f.arnB, "--from", "kms:"+f.arnA,
		"--ledger", ledgerURL+"?create=true", "--run-id", runID, "--concurrency", "2", "--s3-rps", "30", "--no-progress")
	var out1 testenv.Buffer
	first.Stdout, first.Stderr = &out1, &out1
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	waitStarted(t, first, &out1)
	code, out := f.rotator(t, "resume", "--run-id", runID, "--ledger", ledgerURL, "--no-progress")
	if code != exitBusy || !strings.Contains(out, "another process is working on run "+runID) || !strings.Contains(out, "--wait") {
		t.Errorf("second process (exit %d, want %d):\n%s", code, exitBusy, out)
	}
	second := f.cmd("resume", "--run-id", runID, "--ledger", ledgerURL, "--no-progress", "--wait")
	var out2 bytes.Buffer
	second.Stdout, second.Stderr = &out2, &out2
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	if err := first.Wait(); err != nil {
		t.Fatalf("first process: %v\n%s", err, out1.String())
	}
	if err := second.Wait(); err != nil || !strings.Contains(out2.String(), "waiting") {
		t.Fatalf("second process with --wait: %v\n%s", err, out2.String())
	}
	f.exactlyOnce(t, ledgerURL, runID)
	// The waiting process read the run before it waited, and goes on from
	// where the first one ended, not from what it read: the counts are
	// the run's, not overwritten by a second pass that skips everything.
	code, out = f.rotator(t, "status", "--run-id", runID, "--ledger", ledgerURL)
	if code != 0 || !strings.Contains(out, "60 listed, 60 done: 60 rewrapped, 0 skipped") {
		t.Errorf("status (%d):\n%s", code, out)
	}
}

// TestCLISignalWhileStarting: a signal that arrives while a run is still
// starting (here: waiting with --wait for the lease another process
// holds) stops the start with exit 130 and a resume hint, instead of
// killing the process outright; the run of the first process is not
// disturbed.
func TestCLISignalWhileStarting(t *testing.T) {
	testenv.Need(t, testenv.DynamoDB)
	f := newCLIFixture(t, 40)
	ledgerURL := "dynamodb://" + strings.ReplaceAll(testenv.Name(t), "/", "-")
	const runID = "signal-starting"
	first := f.cmd("run", "--source", "s3://"+f.bucket, "--to", "kms:"+f.arnB, "--from", "kms:"+f.arnA,
		"--ledger", ledgerURL+"?create=true", "--run-id", runID, "--concurrency", "2", "--s3-rps", "20", "--no-progress")
	var out1 testenv.Buffer
	first.Stdout, first.Stderr = &out1, &out1
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	waitStarted(t, first, &out1)
	second := f.cmd("resume", "--run-id", runID, "--ledger", ledgerURL, "--no-progress", "--wait")
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	second.Stdout, second.Stderr = pw, pw
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var out2 strings.Builder
	for waiting := false; !waiting; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the second process ended before it waited:\n%s", out2.String())
			}
			out2.WriteString(l + "\n")
			waiting = strings.Contains(l, "waiting")
		case <-time.After(20 * time.Second):
			t.Fatalf("the second process does not say it waits:\n%s", out2.String())
		}
	}
	if err := second.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for l := range lines {
		out2.WriteString(l + "\n")
	}
	err = second.Wait()
	if code := second.ProcessState.ExitCode(); code != exitInterrupted || !strings.Contains(out2.String(), "interrupted while the run was starting") ||
		!strings.Contains(out2.String(), "rotator resume --run-id "+runID) {
		t.Errorf("SIGTERM while waiting for the lease: exit %d (%v), want %d with a resume hint:\n%s", code, err, exitInterrupted, out2.String())
	}
	if first.ProcessState != nil {
		t.Fatal("the first process ended before the signal: the test proves nothing; slow it down")
	}
	if err := first.Wait(); err != nil {
		t.Fatalf("first process: %v\n%s", err, out1.String())
	}
	f.exactlyOnce(t, ledgerURL, runID)
}
