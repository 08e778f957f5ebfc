package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/rotator-dev/rotator/internal/awsx"
	"github.com/rotator-dev/rotator/internal/sample"
	"github.com/rotator-dev/rotator/internal/testenv"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/rewrap"
)

// The test binary doubles as the rotator binary for the tests that kill it.
const envMain = "ROTATOR_TEST_RUN_MAIN"

// envProbe names a probe (probes) the test binary runs instead of the
// tests, in a fresh process.
const envProbe = "ROTATOR_TEST_PROBE"

// probes are what a test measures in a process of its own.
var probes = map[string]func(){}

func TestMain(m *testing.M) {
	if p := probes[os.Getenv(envProbe)]; p != nil {
		p()
		os.Exit(0)
	}
	if os.Getenv(envMain) == "1" {
		if v := os.Getenv(envFaults); v != "" {
			injectFaults(v)
		}
		setUp()
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

var ctx = context.Background()

type cliFixture struct {
	s3     *s3.Client
	kms    *kms.Client
	bucket string
	arnA   string
	arnB   string
	objs   []sample.Object
	dir    string
	// escrow, when set, is the KMS key of the run's --escrow: every
	// object has one escrow event, and its escrow file opens under it.
	escrow string
}

func newCLIFixture(t *testing.T, n int) *cliFixture {
	t.Helper()
	testenv.Need(t, testenv.S3, testenv.KMS)
	cfg := testenv.AWSConfig(t)
	f := &cliFixture{s3: awsx.S3(cfg), kms: kms.NewFromConfig(cfg), bucket: testenv.Name(t), dir: t.TempDir()}
	if _, err := f.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &f.bucket}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testenv.EmptyBucket(f.s3, f.bucket) })
	for _, p := range []*string{&f.arnA, &f.arnB} {
		out, err := f.kms.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("cli test " + t.Name())})
		if err != nil {
			t.Fatal(err)
		}
		*p = *out.KeyMetadata.Arn
	}
	objs, err := sample.Seed(ctx, f.s3, f.kms, sample.Options{Bucket: f.bucket, KMSKeyID: f.arnA, Count: n, MaxSize: 2000})
	if err != nil {
		t.Fatal(err)
	}
	f.objs = objs
	return f
}

// lineage logs the object's events, naming the fixture's keys.
func (f *cliFixture) lineage(t *testing.T, l ledger.Ledger, key string) {
	t.Helper()
	evs, err := l.Lineage(ctx, ledger.ObjectID{Bucket: f.bucket, Key: key})
	for _, ev := range evs {
		t.Logf("  lineage: %s %s %s %s -> %s, etag %s -> %s, wrapped %.8s -> %.8s", ev.RunID, ev.Op, ev.Method,
			f.keyName(ev.FromKey), f.keyName(ev.ToKey), ev.ETagBefore, ev.ETagAfter, ev.OldWrappedKeySHA256, ev.NewWrappedKeySHA256)
	}
	if err != nil {
		t.Log(err)
	}
}

// keyName names the fixture's keys A, B and the escrow key.
func (f *cliFixture) keyName(k string) string {
	switch k {
	case f.arnA:
		return "A"
	case f.arnB:
		return "B"
	case "":
		return "no key"
	}
	if k == f.escrow {
		return "the escrow key"
	}
	return k
}

// cmd returns the rotator command (the test binary in main mode).
func (f *cliFixture) cmd(args ...string) *exec.Cmd {
	c := exec.Command(os.Args[0], args...)
	c.Env = append(os.Environ(), envMain+"=1")
	c.Dir = f.dir
	return c
}

// rotator runs rotator to completion and returns its exit code and output.
func (f *cliFixture) rotator(t *testing.T, args ...string) (int, string) {
	t.Helper()
	c := f.cmd(args...)
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	err := c.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String()
}

// opensUnder checks that every sample opens under key arn, as a reader
// would (unwrap with the key, decrypt, check the tag).
func (f *cliFixture) opensUnder(t *testing.T, arn string) {
	t.Helper()
	for _, o := range f.objs {
		if pt := f.plaintext(t, o.Key, arn); len(pt) != o.Size {
			t.Fatalf("%s: %d bytes of plaintext, want %d", o.Key, len(pt), o.Size)
		}
	}
}

// plaintext opens bucket object key under KMS key arn, as a reader would.
// keyring opens the KMS key arn.
func (f *cliFixture) keyring(t *testing.T, arn string) rewrap.Keyring {
	t.Helper()
	d := &rewrap.Deps{AWS: testenv.AWSConfig(t)}
	t.Cleanup(func() { d.Close() })
	spec, _ := rewrap.ParseSpec("kms:" + arn)
	k, err := rewrap.Open(ctx, spec, d)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (f *cliFixture) plaintext(t *testing.T, key, arn string) []byte {
	t.Helper()
	pt, _, err := sample.Open(ctx, f.s3, f.bucket, key, f.keyring(t, arn))
	if err != nil {
		t.Fatalf("%s does not open under %s: %v", key, arn, err)
	}
	return pt
}

// events counts the lineage events of the bucket in the ledger.
func (f *cliFixture) events(t *testing.T, ledgerURL string) int {
	t.Helper()
	l, err := ledger.Open(ctx, ledgerURL)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	n := 0
	if err := l.Events(ctx, func(ev ledger.Event) error {
		if ev.ID.Bucket == f.bucket {
			n++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// exactlyOnce checks that the ledger holds one rewrap event per sample and
// nothing prepared.
func (f *cliFixture) exactlyOnce(t *testing.T, ledgerURL, runID string) {
	t.Helper()
	l, err := ledger.Open(ctx, ledgerURL)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// Escrows: one per object and run (a run that retries objects the
	// first reported escrows them again).
	seen, escrowed, escrowedByRun := map[string]int{}, map[string]int{}, map[[2]string]int{}
	if err := l.Events(ctx, func(ev ledger.Event) error {
		switch {
		case ev.ID.Bucket != f.bucket:
		case ev.Op == ledger.OpEscrow:
			escrowed[ev.ID.Key]++
			escrowedByRun[[2]string{ev.ID.Key, ev.RunID}]++
		default:
			seen[ev.ID.Key]++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	wantEscrow := 0
	if f.escrow != "" {
		wantEscrow = 1
	}
	for _, o := range f.objs {
		if seen[o.Key] != 1 {
			t.Errorf("%s: %d rewrap events, want exactly 1", o.Key, seen[o.Key])
		}
		if escrowed[o.Key] < wantEscrow || (wantEscrow == 0 && escrowed[o.Key] > 0) || escrowedByRun[[2]string{o.Key, runID}] > 1 {
			t.Errorf("%s: %d escrow events (%d by run %s), want %d", o.Key, escrowed[o.Key], escrowedByRun[[2]string{o.Key, runID}], runID, wantEscrow)
			f.lineage(t, l, o.Key)
			f.history(t, runID, o.Key)
		}
	}
	if len(seen) != len(f.objs) {
		t.Errorf("%d objects with events, want %d", len(seen), len(f.objs))
	}
	if err := l.Prepared(ctx, runID, func(ev ledger.Event) error { return fmt.Errorf("left prepared: %s", ev.ID) }); err != nil {
		t.Error(err)
	}
	counts, err := l.CountsByKey(ctx)
	if err != nil || counts[f.arnB] != int64(len(f.objs)) {
		t.Errorf("counts by key %v (%v), want %d under B", counts, err, len(f.objs))
		for _, o := range f.objs {
			if rec, err := l.Get(ctx, ledger.ObjectID{Bucket: f.bucket, Key: o.Key}); err != nil || rec.WrapKey != f.arnB {
				t.Errorf("%s: the ledger's record %+v (%v) does not say B but %s", o.Key, rec, err, f.keyName(rec.WrapKey))
				f.lineage(t, l, o.Key)
				f.history(t, runID, o.Key)
			}
		}
	}
}

func TestCLIKilledAndResumedIsExactlyOnce(t *testing.T) {
	f := newCLIFixture(t, 240)
	ledgerPath := filepath.Join(f.dir, "ledger.db")
	const runID = "kill-test"
	args := []string{"--ledger", ledgerPath, "--run-id", runID, "--concurrency", "8", "--no-progress"}
	// --s3-rps keeps the run slow enough to be killed in the middle.
	c := f.cmd(append([]string{"run", "--source", "s3://" + f.bucket, "--to", "kms:" + f.arnB, "--from", "kms:" + f.arnA,
		"--s3-rps", "300"}, args...)...)
	var out testenv.Buffer
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	// Killed once the run is in the ledger (a process killed before
	// that leaves nothing to resume), at a random point of its work.
	waitStarted(t, c, &out)
	time.Sleep(time.Duration(100+rand.IntN(600)) * time.Millisecond)
	_ = c.Process.Signal(syscall.SIGKILL)
	werr := c.Wait()
	recorded := f.events(t, ledgerPath)
	t.Logf("killed the run after %d of %d objects were recorded", recorded, len(f.objs))
	// The kill landed while the run was working: killed by the signal,
	// with objects left to do.
	var ee *exec.ExitError
	if !errors.As(werr, &ee) || !ee.Sys().(syscall.WaitStatus).Signaled() || recorded >= len(f.objs) {
		t.Fatalf("the kill did not land mid-run (%v, %d of %d recorded):\n%s", werr, recorded, len(f.objs), out.String())
	}

	// Kill resumes twice more at random points, then let one finish.
	for i := 0; i < 2; i++ {
		r := f.cmd("resume", "--run-id", runID, "--ledger", ledgerPath, "--no-progress")
		var rout bytes.Buffer
		r.Stdout, r.Stderr = &rout, &rout
		if err := r.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(600+rand.IntN(1000)) * time.Millisecond)
		_ = r.Process.Signal(syscall.SIGKILL)
		_ = r.Wait()
		t.Logf("killed resume %d after %d objects were recorded", i+1, f.events(t, ledgerPath))
	}
	code, o := f.rotator(t, "resume", "--run-id", runID, "--ledger", ledgerPath, "--no-progress")
	if code != exitOK {
		rep, _ := os.ReadFile(filepath.Join(f.dir, "rotator-report-"+runID+".csv"))
		t.Fatalf("resume exit %d:\n%s\nreport:\n%s", code, o, failedRows(string(rep)))
	}
	code, o = f.rotator(t, "status", "--run-id", runID, "--ledger", ledgerPath)
	if code != 0 || !strings.Contains(o, ": done") {
		t.Errorf("status after resume (%d):\n%s", code, o)
	}
	f.opensUnder(t, f.arnB)
	f.exactlyOnce(t, ledgerPath, runID)

	// Running the same rotation again does nothing.
	code, o = f.rotator(t, "run", "--source", "s3://"+f.bucket, "--to", "kms:"+f.arnB, "--ledger", ledgerPath,
		"--run-id", "again", "--no-progress", "--report", "again.csv")
	if code != 0 || !strings.Contains(o, "0 rewrapped") {
		t.Errorf("second run (%d):\n%s", code, o)
	}
	f.exactlyOnce(t, ledgerPath, "again")
}

func TestCLIInterruptExits130AndResumes(t *testing.T) {
	f := newCLIFixture(t, 120)
	ledgerPath := filepath.Join(f.dir, "ledger.db")
	c := f.cmd("run", "--source", "s3://"+f.bucket, "--to", "kms:"+f.arnB, "--ledger", ledgerPath,
		"--run-id", "sigint", "--s3-rps", "150", "--no-progress")
	var out testenv.Buffer
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	// Interrupted once the run is under way: a signal sent before the
	// process has started its Go runtime (a fixed delay did so under the
	// race detector on a busy machine) takes the default action, which
	// tests nothing of rotator.
	waitStarted(t, c, &out)
	time.Sleep(150 * time.Millisecond)
	_ = c.Process.Signal(os.Interrupt)
	err := c.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitInterrupted {
		t.Fatalf("exit %v, want %d:\n%s", err, exitInterrupted, out.String())
	}
	if !strings.Contains(out.String(), "rotator resume --run-id sigint") {
		t.Errorf("no resume hint:\n%s", out.String())
	}
	code, o := f.rotator(t, "status", "--run-id", "sigint", "--ledger", ledgerPath)
	if !strings.Contains(o, ": interrupted") {
		t.Errorf("status (%d):\n%s", code, o)
	}
	if code, o := f.rotator(t, "resume", "--run-id", "sigint", "--ledger", ledgerPath, "--no-progress"); code != 0 {
		t.Fatalf("resume (%d):\n%s", code, o)
	}
	f.opensUnder(t, f.arnB)
	f.exactlyOnce(t, ledgerPath, "sigint")
}

func TestCLIPerObjectFailureExits3WithReport(t *testing.T) {
	f := newCLIFixture(t, 6)
	bad := "corrupt/object"
	if _, err := f.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &f.bucket, Key: &bad, Body: strings.NewReader("x"),
		Metadata: map[string]string{"x-amz-key-v2": "AAAA", "x-amz-iv": "short", "x-amz-cek-alg": "AES/GCM/NoPadding",
			"x-amz-wrap-alg": "kms+context", "x-amz-matdesc": "{}"}}); err != nil {
		t.Fatal(err)
	}
	before, _ := f.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &f.bucket, Key: &bad})
	ledgerURL := filepath.Join(f.dir, "l.db")
	code, out := f.rotator(t, "run", "--source", "s3://"+f.bucket, "--to", "kms:"+f.arnB, "--ledger", ledgerURL,
		"--run-id", "partial", "--report", "report.csv", "--json")
	if code != exitPartial {
		t.Fatalf("exit %d, want %d:\n%s", code, exitPartial, out)
	}
	for _, want := range []string{`"message_type":"object"`, `"message_type":"summary"`, `"code":"BadEnvelope"`, `"message_type":"exit_error"`} {
		if !strings.Contains(out, want) {
			t.Errorf("JSON output lacks %s:\n%s", want, out)
		}
	}
	rf, err := os.Open(filepath.Join(f.dir, "report.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	rows, err := csv.NewReader(rf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1+len(f.objs)+1 || strings.Join(rows[0], ",") != "Bucket,Key,VersionId,Status,ErrorCode,Message,Action,FromKey,ToKey" {
		t.Fatalf("report has %d rows: %v", len(rows), rows[0])
	}
	after, _ := f.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &f.bucket, Key: &bad})
	if aws.ToString(before.ETag) != aws.ToString(after.ETag) || !aws.ToTime(before.LastModified).Equal(aws.ToTime(after.LastModified)) {
		t.Error("the corrupt object was written")
	}
	f.opensUnder(t, f.arnB)
}

func TestCLIDynamoDBLedger(t *testing.T) {
	testenv.Need(t, testenv.DynamoDB)
	f := newCLIFixture(t, 20)
	table := "dynamodb://" + testenv.Name(t) + "?create=true"
	code, out := f.rotator(t, "run", "--source", "s3://"+f.bucket, "--to", "kms:"+f.arnB, "--ledger", table,
		"--run-id", "ddb", "--no-progress")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	f.opensUnder(t, f.arnB)
	f.exactlyOnce(t, table, "ddb")
	code, out = f.rotator(t, "ledger", "counts", "--ledger", table)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("%d  %s", len(f.objs), f.arnB)) {
		t.Errorf("ledger counts (%d):\n%s", code, out)
	}
}

func TestCLIUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--source", "s3://b"}, "--to"},
		{[]string{"run", "--to", "kms:alias/x"}, "exactly one of --source"},
		{[]string{"run", "--source", "s3://b", "--to", "gpg:whatever"}, "--to"},
		{[]string{"run", "--source", "s3://b", "--to", "pkcs11:token=t;object=k?pin-value=98765"}, "pin-value"},
		{[]string{"plan", "--source", "s3://b", "--to", "kms:alias/x", "--price", "kms"}, "NAME=USD"},
		{[]string{"resume"}, "--run-id"},
		{[]string{"status"}, "--run-id"},
		{[]string{"verify", "--source", "s3://b"}, "--key"},
		{[]string{"ledger"}, "no ledger query"},
		{[]string{"ledger", "frob", "--ledger", filepath.Join(t.TempDir(), "l.db")}, "unknown ledger query"},
	} {
		var out, errb bytes.Buffer
		if code := run(tc.args, &out, &errb); code != exitUsage {
			t.Errorf("rotator %v: exit %d, want %d (%s)", tc.args, code, exitUsage, errb.String())
		}
		if !strings.Contains(errb.String(), tc.want) {
			t.Errorf("rotator %v: %q lacks %q", tc.args, errb.String(), tc.want)
		}
		if strings.Contains(errb.String(), "98765") {
			t.Errorf("rotator %v: a PIN value was echoed: %s", tc.args, errb.String())
		}
	}
}

func TestCLIDryRunChangesNothingAndShardsCoverAll(t *testing.T) {
	f := newCLIFixture(t, 30)
	ledgerPath := filepath.Join(f.dir, "ledger.db")
	// Versioning on, so that any write of the dry run would also show as a
	// new version (versitygw keeps ETag, Last-Modified and version id on a
	// metadata self-copy: the metadata comparison catches that one).
	if _, err := f.s3.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: &f.bucket,
		VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled}}); err != nil {
		t.Fatal(err)
	}
	before := f.state(t)
	instr := 0
	for id := range before {
		if strings.Contains(id, ".instruction@") {
			instr++
		}
	}
	if len(before) != len(f.objs)+instr || instr == 0 {
		t.Fatalf("%d versions with %d instruction files for %d samples: the fixture should hold both kinds", len(before), instr, len(f.objs))
	}
	code, out := f.rotator(t, "run", "--source", "s3://"+f.bucket, "--to", "kms:"+f.arnB, "--ledger", ledgerPath,
		"--run-id", "dry", "--dry-run", "--no-progress")
	if code != 0 || !strings.Contains(out, "30 pending") {
		t.Fatalf("dry run (%d):\n%s", code, out)
	}
	f.opensUnder(t, f.arnA)
	if n := f.events(t, ledgerPath); n != 0 {
		t.Errorf("dry run recorded %d events", n)
	}
	if d := diffState(before, f.state(t)); len(d) != 0 {
		t.Errorf("the dry run changed the bucket:\n%s", strings.Join(d, "\n"))
	}
	// Two shards of one job, run one after the other on one ledger, cover
	// every object exactly once.
	for i := 0; i < 2; i++ {
		code, out := f.rotator(t, "run", "--source", "s3://"+f.bucket, "--to", "kms:"+f.arnB, "--ledger", ledgerPath,
			"--run-id", "job", "--shard", fmt.Sprintf("%d/2", i), "--no-progress")
		if code != 0 || strings.Contains(out, " 0 rewrapped") {
			t.Fatalf("shard %d (%d):\n%s", i, code, out)
		}
	}
	f.opensUnder(t, f.arnB)
	f.exactlyOnce(t, ledgerPath, "job")
	if code, out := f.rotator(t, "status", "--run-id", "job", "--ledger", ledgerPath); code != 0 ||
		!strings.Contains(out, "done (2 shards: 2 done)") || !strings.Contains(out, "30 done: 30 rewrapped") {
		t.Errorf("status (%d):\n%s", code, out)
	}
	// The comparison sees real writes: each sample's envelope changed, in
	// its metadata or in its instruction file.
	changed := map[string]bool{}
	for _, d := range diffState(before, f.state(t)) {
		key, _, _ := strings.Cut(d, "@")
		changed[strings.TrimSuffix(key, ".instruction")] = true
	}
	for _, o := range f.objs {
		if !changed[o.Key] {
			t.Errorf("%s: the rotation changed nothing the state comparison sees", o.Key)
		}
	}
}

// objectState is everything a dry run must not change about one object
// version, instruction files included.
type objectState struct {
	ETag, ContentType string
	LastModified      time.Time
	Metadata          map[string]string
	Body              []byte
}

// state reads every version in the bucket: "key@version-id" -> its state.
func (f *cliFixture) state(t *testing.T) map[string]objectState {
	t.Helper()
	st := map[string]objectState{}
	p := s3.NewListObjectVersionsPaginator(f.s3, &s3.ListObjectVersionsInput{Bucket: &f.bucket})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.DeleteMarkers) != 0 {
			t.Errorf("%d delete markers in the bucket", len(page.DeleteMarkers))
		}
		for _, v := range page.Versions {
			g, err := f.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &f.bucket, Key: v.Key, VersionId: v.VersionId})
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(g.Body)
			g.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			st[aws.ToString(v.Key)+"@"+aws.ToString(v.VersionId)] = objectState{
				ETag: aws.ToString(g.ETag), ContentType: aws.ToString(g.ContentType), LastModified: aws.ToTime(g.LastModified),
				Metadata: g.Metadata, Body: body,
			}
		}
	}
	return st
}

// diffState lists every difference between two states of the bucket.
func diffState(before, after map[string]objectState) []string {
	var d []string
	for id, b := range before {
		a, ok := after[id]
		switch {
		case !ok:
			d = append(d, id+": gone")
		case !bytes.Equal(a.Body, b.Body):
			d = append(d, fmt.Sprintf("%s: body changed (%d -> %d bytes)", id, len(b.Body), len(a.Body)))
		case !maps.Equal(a.Metadata, b.Metadata):
			d = append(d, fmt.Sprintf("%s: metadata changed:\n%v\n%v", id, b.Metadata, a.Metadata))
		case a.ETag != b.ETag || a.ContentType != b.ContentType || !a.LastModified.Equal(b.LastModified):
			d = append(d, fmt.Sprintf("%s: ETag, content type or Last-Modified changed: %s %s %v -> %s %s %v", id,
				b.ETag, b.ContentType, b.LastModified, a.ETag, a.ContentType, a.LastModified))
		}
	}
	for id := range after {
		if _, ok := before[id]; !ok {
			d = append(d, id+": a new version")
		}
	}
	slices.Sort(d)
	return d
}

// failedRows returns the report rows that are not successes or skips.
func failedRows(report string) string {
	var out []string
	for _, l := range strings.Split(report, "\n") {
		if !strings.Contains(l, ",succeeded,") && !strings.Contains(l, ",skipped,") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// waitStarted waits until the process c, writing to out, has taken its
// run's lease and started working ("run started"), rather than for a
// time that a loaded machine can outlast.
func waitStarted(t *testing.T, c *exec.Cmd, out *testenv.Buffer) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !strings.Contains(out.String(), "run started"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			_ = c.Process.Kill()
			_ = c.Wait()
			t.Fatalf("rotator %s did not start within a minute:\n%s", c.Args[1], out.String())
		}
	}
}
