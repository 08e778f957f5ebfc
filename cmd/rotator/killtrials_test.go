package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/internal/awsx"
	"github.com/rotator-dev/rotator/internal/faults"
	"github.com/rotator-dev/rotator/internal/sample"
	"github.com/rotator-dev/rotator/internal/testenv"
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
func TestCLIKillTrials(t *testing.T) { killTrials(t, 0) }

// TestCLIFaultTrials are kill trials whose processes, besides being
// killed, run on a flaky network: every AWS request and every ledger and
// keyring call fails, or is carried out and its response lost, or is
// carried out and its response and those of all its retries lost, 1% of
// the time each, drawn per process from a printed seed. Half the
// processes are killed, the others run to their end; whenever one exits 0
// the rotation is checked to be complete at that moment (a process that
// says it is done while anything is unfinished fails the trial). Then a
// resume without faults finishes the run and the kill trial's checks
// apply. Kills alone leave a process no chance to go wrong while living;
// faults in living processes are what the reported failure (incident
// re-encryption with instruction files unreadable, resume exiting 0)
// needs.
func TestCLIFaultTrials(t *testing.T) { killTrials(t, 0.01) }

func killTrials(t *testing.T, rate float64) {
	trials := 1
	if s := os.Getenv("ROTATOR_KILL_TRIALS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("ROTATOR_KILL_TRIALS=%q: want a positive number", s)
		}
		trials = n
	}
	// +escrow: each object's data key is also wrapped under an escrow
	// key, into an escrow file written before a rewrap and after a
	// re-encryption.
	for _, mode := range []string{"rewrap", "reencrypt", "rewrap+escrow", "reencrypt+escrow"} {
		// Both ledgers: a killed process leaves its intents in a file
		// that is not synced yet (bbolt), or journaled in DynamoDB.
		for _, store := range []string{"embedded", "dynamodb"} {
			t.Run(mode+"-"+store, func(t *testing.T) {
				landed := 0
				for i := range trials {
					t.Run(strconv.Itoa(i), func(t *testing.T) { landed += killTrial(t, mode, store, rate) })
				}
				t.Logf("%s, %s ledger: %d trials, %d kills landed mid-run", mode, store, trials, landed)
			})
		}
	}
}

// killTrial runs one trial and returns how many kills landed mid-run.
// rate, when positive, is the rate of each kind of fault in every process
// but the last.
func killTrial(t *testing.T, mode, store string, rate float64) int {
	f := newCLIFixture(t, 0)
	label := mode
	mode, escrow := strings.CutSuffix(mode, "+escrow")
	if escrow {
		out, err := f.kms.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("escrow " + t.Name())})
		if err != nil {
			t.Fatal(err)
		}
		f.escrow = *out.KeyMetadata.Arn
	}
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
	if store == "dynamodb" {
		table := testenv.Name(t)
		ledgerPath = "dynamodb://" + table + "?create=true"
		t.Cleanup(func() {
			_, _ = dynamodb.NewFromConfig(testenv.AWSConfig(t)).DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: &table})
		})
	}
	runID := "kill-" + mode
	args := []string{"run", "--source", "s3://" + f.bucket, "--to", "kms:" + f.arnB, "--from", "kms:" + f.arnA,
		"--ledger", ledgerPath, "--run-id", runID, "--concurrency", "8", "--no-progress", "--s3-rps", "150"}
	if mode == "reencrypt" {
		args = append(args, "--mode", "reencrypt", "--part-size", "5242880", "--parts-in-flight", "2")
	}
	if escrow {
		args = append(args, "--escrow", "kms:"+f.escrow)
	}
	landed, stopped, finished := 0, 0, 0
	resume := []string{"resume", "--run-id", runID, "--ledger", ledgerPath, "--no-progress"}
	kill := func(args []string) {
		t.Helper()
		c := f.cmd(args...)
		var out bytes.Buffer
		c.Stdout, c.Stderr = &out, &out
		if rate > 0 {
			seed := rand.Uint64()
			c.Env = append(c.Env, fmt.Sprintf("%s=%d:%g", envFaults, seed, rate))
			t.Logf("%s=%d:%g rotator %s", envFaults, seed, rate, args[0])
		}
		repPath := filepath.Join(f.dir, "rotator-report-"+runID+".csv")
		before, _ := os.ReadFile(repPath)
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		var err error
		if rate > 0 && rand.IntN(2) == 0 {
			// Left to run to its end, which must come.
			select {
			case err = <-done:
			case <-time.After(2 * time.Minute):
				_ = c.Process.Signal(syscall.SIGQUIT) // its goroutines, to out
				<-done
				t.Fatalf("rotator %s hangs:\n%s", args[0], out.String())
			}
		} else {
			select {
			case err = <-done:
			case <-time.After(time.Duration(150+rand.IntN(1200)) * time.Millisecond):
				_ = c.Process.Signal(syscall.SIGKILL)
				err = <-done
			}
		}
		var ee *exec.ExitError
		if rate > 0 {
			t.Logf("  %v: %s", err, lastLine(out.String()))
			after, _ := os.ReadFile(repPath)
			if len(after) > len(before) {
				for _, l := range strings.Split(string(after[len(before):]), "\n") {
					if strings.Contains(l, ",failed,") || strings.Contains(l, ",unfinished,") {
						t.Logf("    row: %.300s", l)
					}
				}
			}
			if f.runExists(t, ledgerPath, runID) {
				if l, err := ledger.Open(ctx, ledgerPath); err == nil {
					if rec, err := l.GetRun(ctx, runID); err == nil {
						t.Logf("    run record: %s %v %.400s", rec.State, rec.Counts, rec.Checkpoint)
					}
					l.Close()
				}
			}
		}
		switch {
		case errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled():
			landed++ // killed while it was still working
		case err != nil:
			stopped++ // stopped by a fault
		case err == nil:
			// It says the run is done: it must be, now.
			finished++
			f.checkDone(t, ledgerPath, runID, sums, "after a process exited 0:\n"+out.String())
		}
	}
	kill(args)
	for range 5 {
		if rate > 0 && !f.runExists(t, ledgerPath, runID) {
			kill(args) // the run died before it was recorded
			continue
		}
		kill(resume)
	}
	if !f.runExists(t, ledgerPath, runID) {
		f.rotator(t, args...)
	}
	if landed+stopped+finished == 0 {
		t.Errorf("no kill landed while a process was working")
	}
	code, out := f.rotator(t, resume...)
	retried := 0
	if code == exitPartial && rate > 0 {
		// Objects whose calls failed in a faulty process were reported
		// failed and left as they were; the run is over for them (it
		// exits 3). An operator retries them from the report.
		retried = f.retryFailed(t, runID, args)
	} else if code != exitOK {
		rep, _ := os.ReadFile(filepath.Join(f.dir, "rotator-report-"+runID+".csv"))
		t.Fatalf("the last resume exits %d:\n%s\nreport (all but successes and skips):\n%s", code, out, failedRows(string(rep)))
	}
	f.checkDone(t, ledgerPath, runID, sums, "")
	code, out = f.rotator(t, "status", "--run-id", runID, "--ledger", ledgerPath)
	if code != 0 || !strings.Contains(out, ": done") {
		t.Errorf("status (%d):\n%s", code, out)
	}
	t.Logf("%s: of 6 processes %d killed mid-run, %d stopped by a fault, %d exited 0 under faults; %d objects failed and were retried; %s",
		label, landed, stopped, finished, retried, strings.TrimSpace(lastLine(out)))
	return landed
}

// history logs what the run's report says of key.
func (f *cliFixture) history(t *testing.T, runID, key string) {
	t.Helper()
	rep, _ := os.ReadFile(filepath.Join(f.dir, "rotator-report-"+runID+".csv"))
	enc := strings.ReplaceAll(url.QueryEscape(key), "+", "%20")
	for _, l := range strings.Split(string(rep), "\n") {
		if strings.Contains(l, ","+enc+",") {
			t.Logf("  report: %s", l)
		}
	}
}

// dumpObject logs the object, its instruction file and its lineage.
func (f *cliFixture) dumpObject(t *testing.T, ledgerPath, key string) {
	t.Helper()
	for _, k := range []string{key, key + ".instruction"} {
		h, err := f.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &f.bucket, Key: &k})
		if err != nil {
			t.Logf("  head %s: %v", k, err)
			continue
		}
		t.Logf("  head %s: etag %s size %d modified %s meta %v", k, *h.ETag, *h.ContentLength, h.LastModified, h.Metadata)
		if strings.HasSuffix(k, ".instruction") {
			g, err := f.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &f.bucket, Key: &k})
			if err == nil {
				b, _ := io.ReadAll(g.Body)
				g.Body.Close()
				if w, err := envelope.WrappedKeyOf(nil, b); err == nil {
					t.Logf("  instruction file wraps %s", ledger.WrappedKeyFingerprint(w))
				}
			}
		}
	}
	l, err := ledger.Open(ctx, ledgerPath)
	if err != nil {
		t.Log(err)
		return
	}
	defer l.Close()
	evs, err := l.Lineage(ctx, ledger.ObjectID{Bucket: f.bucket, Key: key})
	for _, ev := range evs {
		t.Logf("  lineage: %+v", ev)
	}
	if err != nil {
		t.Log(err)
	}
	if rec, err := l.Get(ctx, ledger.ObjectID{Bucket: f.bucket, Key: key}); err == nil {
		t.Logf("  record: %+v", rec)
	}
	keep := filepath.Join(os.TempDir(), "rotator-fault-ledger-"+f.bucket+".db")
	if b, err := os.ReadFile(ledgerPath); err == nil && os.WriteFile(keep, b, 0o600) == nil {
		t.Logf("  ledger kept at %s", keep)
	}
}

// runExists reports whether the run is recorded in the ledger.
func (f *cliFixture) runExists(t *testing.T, ledgerPath, runID string) bool {
	t.Helper()
	if _, err := os.Stat(ledgerPath); err != nil && !strings.HasPrefix(ledgerPath, "dynamodb://") {
		return false
	}
	l, err := ledger.Open(ctx, ledgerPath)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = l.GetRun(ctx, runID)
	if err != nil && !errors.Is(err, ledger.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

// retryFailed retries the objects the run's report says failed (or were
// changed by someone else) last as an operator would: a run of their own over a --list of them. It returns
// how many.
func (f *cliFixture) retryFailed(t *testing.T, runID string, runArgs []string) int {
	t.Helper()
	rep, err := os.ReadFile(filepath.Join(f.dir, "rotator-report-"+runID+".csv"))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(bytes.NewReader(rep)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	last := map[string][]string{} // the last row of each object
	for _, r := range rows[1:] {
		last[r[1]] = r
	}
	var list strings.Builder
	n := 0
	for key, r := range last {
		if r[3] != string(pipeline.StatusFailed) && r[3] != string(pipeline.StatusChanged) {
			continue
		}
		if _, err := url.QueryUnescape(key); err != nil {
			t.Fatalf("report key %q: %v", key, err)
		}
		fmt.Fprintf(&list, "%s,%s\n", f.bucket, key)
		n++
	}
	if n == 0 {
		var all []string
		for _, r := range rows[1:] {
			if strings.Contains(failedRows(string(rep)), ","+r[1]+",") {
				all = append(all, strings.Join(r, ","))
			}
		}
		t.Fatalf("the run exits 3 and its report names no object that failed last; the rows of the objects that failed:\n%s", strings.Join(all, "\n"))
	}
	listFile := filepath.Join(f.dir, "failed.csv")
	if err := os.WriteFile(listFile, []byte(list.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"run", "--list", listFile, "--run-id", runID + "-retry"}
	for i := 1; i < len(runArgs); i++ {
		switch runArgs[i] {
		case "--source":
			i++
		case "--run-id":
			i++
		default:
			args = append(args, runArgs[i])
		}
	}
	if code, out := f.rotator(t, args...); code != exitOK {
		t.Fatalf("retrying the %d objects that failed exits %d:\n%s", n, code, out)
	}
	return n
}

// checkDone checks that the run is complete: every object opens under B
// with its original plaintext, one event per object, nothing unfinished in
// the ledger, no multipart upload left.
func (f *cliFixture) checkDone(t *testing.T, ledgerPath, runID string, sums map[string][32]byte, context string) {
	t.Helper()
	defer func() {
		if t.Failed() && context != "" {
			t.Log(context)
		}
	}()
	k := f.keyring(t, f.arnB)
	for _, o := range f.objs {
		pt, _, err := sample.Open(ctx, f.s3, f.bucket, o.Key, k)
		switch {
		case err != nil:
			t.Errorf("%s does not open under B: %v %s", o.Key, err, context)
			f.history(t, runID, o.Key)
			f.dumpObject(t, ledgerPath, o.Key)
		case sha256.Sum256(pt) != sums[o.Key]:
			t.Errorf("%s: plaintext differs after the rotation %s", o.Key, context)
		}
	}
	if t.Failed() {
		t.FailNow()
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
		t.Errorf("multipart uploads left: %d (%v) %s", len(ups.Uploads), err, context)
	}
	if f.escrow != "" {
		// Every object opens through its escrow file alone, under the
		// escrow key, to the same plaintext (verify --escrow decrypts
		// each body with the data key the escrow file holds).
		if code, out := f.rotator(t, "verify", "--source", "s3://"+f.bucket, "--escrow", "--key", "kms:"+f.escrow, "--all"); code != exitOK {
			t.Errorf("verify --escrow exits %d:\n%s\n%s", code, out, context)
		}
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return fmt.Sprint(s)
}

// envFaults, set to SEED:RATE in the environment of a rotator process the
// tests start, makes every AWS request and every ledger and keyring call
// of the process fail, lose its response, or lose its response and those
// of its retries, each with probability RATE, drawn from SEED.
const envFaults = "ROTATOR_TEST_FAULTS"

func injectFaults(v string) {
	seedS, rateS, ok := strings.Cut(v, ":")
	seed, err1 := strconv.ParseUint(seedS, 10, 64)
	rate, err2 := strconv.ParseFloat(rateS, 64)
	if !ok || err1 != nil || err2 != nil {
		fmt.Fprintf(os.Stderr, "%s=%q: want SEED:RATE\n", envFaults, v)
		os.Exit(exitUsage)
	}
	p := faults.Random(seed, map[faults.Kind]float64{faults.Fail: rate, faults.Lost: rate, faults.LostAll: rate})
	// The SDK's patience (ten attempts, pauses up to 20 s) would make a
	// LostAll last a minute and a trial an hour: the trials are about what
	// a process does once it has given up, so it gives up sooner.
	aws, err := awsx.Load(context.Background(), awsx.Options{MaxAttempts: 4, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(exitFatal)
	}
	withTestOptions = func(o pipeline.OpenOptions) pipeline.OpenOptions {
		o.AWS = &aws
		o.KMSMaxAttempts, o.KMSMaxBackoff = 4, 100*time.Millisecond
		o.APIOptions = append(o.APIOptions, p.Middleware())
		o.WrapLedger = p.Ledger
		o.WrapKeyring = p.Keyring
		return o
	}
}
