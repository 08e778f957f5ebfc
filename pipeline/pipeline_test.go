package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/internal/awsx"
	"github.com/rotator-dev/rotator/internal/sample"
	"github.com/rotator-dev/rotator/internal/testenv"
	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/kmsserver"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/pipeline"
	"github.com/rotator-dev/rotator/rewrap"
)

var ctx = context.Background()

// fixture is a bucket of samples under KMS key A, an in-process KMS test
// server (so that calls can be counted) and keyrings for A and B.
type fixture struct {
	s3      *s3.Client
	bucket  string
	kms     *kmsserver.Server
	deps    *rewrap.Deps
	a, b    rewrap.Keyring
	objs    []sample.Object
	plain   map[string][]byte // plaintext of each sample, read before the run
	ledger  ledger.Ledger
	commit  *commit.Committer
	version bool
}

func newFixture(t *testing.T, n int, versioned bool) *fixture {
	t.Helper()
	testenv.Need(t, testenv.S3)
	f := &fixture{s3: awsx.S3(testenv.AWSConfig(t)), version: versioned}
	f.bucket = testenv.Name(t)
	if _, err := f.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &f.bucket}); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	if versioned {
		if _, err := f.s3.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: &f.bucket,
			VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled}}); err != nil {
			t.Fatalf("versioning: %v", err)
		}
	}
	t.Cleanup(func() { testenv.EmptyBucket(f.s3, f.bucket) })
	f.kms = kmsserver.NewTestServer(t, kmsserver.Options{})
	kc := f.kms.Client("")
	arnA := createKey(t, kc, "A")
	arnB := createKey(t, kc, "B")
	f.deps = &rewrap.Deps{AWS: f.kms.AWSConfig("")}
	t.Cleanup(func() { f.deps.Close() })
	f.a = openKey(t, f.deps, "kms:"+arnA)
	f.b = openKey(t, f.deps, "kms:"+arnB)
	objs, err := sample.Seed(ctx, f.s3, kc, sample.Options{Bucket: f.bucket, KMSKeyID: arnA, Count: n, MaxSize: 3000})
	if err != nil {
		t.Fatalf("seed: %v", err)
	}
	f.objs = objs
	f.plain = map[string][]byte{}
	for _, o := range objs {
		f.plain[o.Key] = f.decrypt(t, o.Key, f.a)
	}
	l, err := ledger.Open(ctx, filepath.Join(t.TempDir(), "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	f.ledger = l
	f.commit = commit.New(f.s3, commit.Options{})
	return f
}

func createKey(t *testing.T, c *kms.Client, desc string) string {
	t.Helper()
	out, err := c.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String(desc)})
	if err != nil {
		t.Fatal(err)
	}
	return *out.KeyMetadata.Arn
}

func openKey(t *testing.T, d *rewrap.Deps, spec string) rewrap.Keyring {
	t.Helper()
	s, err := rewrap.ParseSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	k, err := rewrap.Open(ctx, s, d)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// decrypt opens an object with key k, as a reader of the bucket would.
func (f *fixture) decrypt(t *testing.T, key string, k rewrap.Keyring) []byte {
	t.Helper()
	b, err := f.tryDecrypt(key, k)
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	return b
}

func (f *fixture) tryDecrypt(key string, k rewrap.Keyring) ([]byte, error) {
	pt, _, err := sample.Open(ctx, f.s3, f.bucket, key, k)
	return pt, err
}

func (f *fixture) core(runID string) *pipeline.Core {
	return &pipeline.Core{S3: f.commit, Ledger: f.ledger, To: f.b, Mode: pipeline.ModeRewrap, RunID: runID,
		Parse: envelope.ParseOptions{AllowLegacy: true}}
}

func (f *fixture) source(t *testing.T) inventory.Source {
	t.Helper()
	src, err := inventory.Open(ctx, f.s3, inventory.Spec{Source: "s3://" + f.bucket,
		Options: inventory.Options{ExcludeSuffix: inventory.DefaultExcludeSuffix}})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func (f *fixture) run(t *testing.T, c *pipeline.Core) (*pipeline.Report, *bytes.Buffer) {
	t.Helper()
	return f.runWant(t, c, ledger.RunDone, false)
}

// runWant runs c over the bucket (resuming the run: settling its intents
// first) and checks the run record's final state.
func (f *fixture) runWant(t *testing.T, c *pipeline.Core, want ledger.RunState, resume bool) (*pipeline.Report, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	rep, err := pipeline.NewReport(&buf)
	if err != nil {
		t.Fatal(err)
	}
	run := &ledger.Run{ID: c.RunID, Config: []byte(`{}`), State: ledger.RunRunning}
	if err := f.ledger.CreateRun(ctx, run); errors.Is(err, ledger.ErrRunExists) {
		if *run, err = f.ledger.GetRun(ctx, c.RunID); err != nil {
			t.Fatal(err)
		}
	} else if err != nil {
		t.Fatal(err)
	}
	r := &pipeline.Runner{Core: c, Source: f.source(t), Workers: 8, Runs: f.ledger, Run: run, Report: rep, Intents: f.ledger, Resume: resume}
	if err := r.Execute(ctx, nil); err != nil {
		t.Fatalf("run: %v\n%s", err, buf.String())
	}
	got, err := f.ledger.GetRun(ctx, c.RunID)
	if err != nil || got.State != want {
		t.Fatalf("run record: %+v %v, want state %s\n%s", got, err, want, buf.String())
	}
	return rep, &buf
}

func put(t *testing.T, f *fixture, key string, body []byte, meta map[string]string) {
	t.Helper()
	if _, err := f.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &f.bucket, Key: &key, Body: bytes.NewReader(body), Metadata: meta}); err != nil {
		t.Fatal(err)
	}
}

type snapshot struct {
	meta map[string]string
	tags map[string]string
	ct   string
	body []byte
}

func snap(t *testing.T, f *fixture, key string) snapshot {
	t.Helper()
	out, err := f.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &f.bucket, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(out.Body)
	out.Body.Close()
	tg, err := f.s3.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: &f.bucket, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	tags := map[string]string{}
	for _, x := range tg.TagSet {
		tags[*x.Key] = *x.Value
	}
	s := snapshot{meta: map[string]string{}, tags: tags, ct: aws.ToString(out.ContentType), body: body}
	for k, v := range out.Metadata {
		if !envelope.IsEnvelopeField(k) {
			s.meta[k] = v
		}
	}
	return s
}

func TestRunRewrapsEverySampleAndSecondRunIsNoop(t *testing.T) {
	f := newFixture(t, 24, false)
	put(t, f, "plain/not-encrypted", []byte("hello"), nil)
	put(t, f, "bad/corrupt-envelope", []byte("x"), map[string]string{"x-amz-key-v2": "!!!", "x-amz-iv": "AAAA", "x-amz-cek-alg": "AES/GCM/NoPadding", "x-amz-wrap-alg": "kms+context", "x-amz-matdesc": "{}"})
	before := map[string]snapshot{}
	for _, o := range f.objs {
		before[o.Key] = snap(t, f, o.Key)
	}
	f.kms.ResetCounts()
	rep, buf := f.run(t, f.core("run-1"))
	c := rep.Counts()
	if c[pipeline.StatusSucceeded] != int64(len(f.objs)) || c[pipeline.StatusSkipped] != 1 || c[pipeline.StatusFailed] != 1 {
		t.Fatalf("counts %v\n%s", c, buf)
	}
	if !strings.Contains(buf.String(), ",bad%2Fcorrupt-envelope,,failed,BadEnvelope,") {
		t.Errorf("report lacks the corrupt object:\n%s", buf)
	}
	if n := f.kms.Count("Decrypt"); n != 0 {
		t.Errorf("KMS Decrypt called %d times: the data key must stay in KMS", n)
	}
	if n := f.kms.Count("ReEncrypt"); n != int64(len(f.objs)) {
		t.Errorf("ReEncrypt calls %d, want %d", n, len(f.objs))
	}
	for _, o := range f.objs {
		if got := f.decrypt(t, o.Key, f.b); !bytes.Equal(got, f.plain[o.Key]) {
			t.Errorf("%s: plaintext differs after the run", o.Key)
		}
		if _, err := f.tryDecrypt(o.Key, f.a); err == nil {
			t.Errorf("%s still opens under key A", o.Key)
		}
		after := snap(t, f, o.Key)
		b := before[o.Key]
		if !maps.Equal(after.meta, b.meta) || !maps.Equal(after.tags, b.tags) || after.ct != b.ct {
			t.Errorf("%s: metadata, tags or content type changed:\n%+v\n%+v", o.Key, b, after)
		}
	}
	counts, err := f.ledger.CountsByKey(ctx)
	if err != nil || counts[f.b.ID()] != int64(len(f.objs)) || counts[f.a.ID()] != 0 {
		t.Errorf("ledger counts %v %v", counts, err)
	}

	// A second run changes nothing and asks KMS nothing.
	f.kms.ResetCounts()
	rep2, buf2 := f.run(t, f.core("run-2"))
	c2 := rep2.Counts()
	if c2[pipeline.StatusSucceeded] != 0 || c2[pipeline.StatusSkipped] != int64(len(f.objs))+1 {
		t.Errorf("second run: %v\n%s", c2, buf2)
	}
	if n := f.kms.Count("ReEncrypt"); n != 0 {
		t.Errorf("second run called ReEncrypt %d times", n)
	}
}

// overwriter changes an object just before the pipeline's write, as a
// concurrent application would.
type overwriter struct {
	*commit.Committer
	f      *fixture
	t      *testing.T
	target string
}

func (w *overwriter) MetadataEnvelope(ctx context.Context, obj *commit.Object, meta map[string]string) (commit.Result, error) {
	if obj.Key == w.target {
		put(w.t, w.f, obj.Key, []byte("someone else's data"), map[string]string{"owner": "other"})
	}
	return w.Committer.MetadataEnvelope(ctx, obj, meta)
}

func TestRunLeavesObjectChangedMidRun(t *testing.T) {
	f := newFixture(t, 4, false)
	target := ""
	for _, o := range f.objs {
		if o.Kind.Placement == envelope.PlacementMetadata {
			target = o.Key
			break
		}
	}
	c := f.core("run-changed")
	c.S3 = &overwriter{Committer: f.commit, f: f, t: t, target: target}
	rep, buf := f.run(t, c)
	if rep.Counts()[pipeline.StatusChanged] != 1 || rep.Counts()[pipeline.StatusSucceeded] != 3 {
		t.Fatalf("counts %v\n%s", rep.Counts(), buf)
	}
	if s := snap(t, f, target); string(s.body) != "someone else's data" || s.meta["owner"] != "other" {
		t.Errorf("the other writer's object was not left as it was: %+v", s)
	}
	if err := f.ledger.Prepared(ctx, "run-changed", func(ev ledger.Event) error { return fmt.Errorf("left prepared: %v", ev.ID) }); err != nil {
		t.Error(err)
	}
}

// lostResponse performs the write and then reports a network failure, as
// when a response is lost: the core must find out that the write landed.
type lostResponse struct {
	*commit.Committer
	n atomic.Int64
}

var errLost = errors.New("connection reset by peer")

func (w *lostResponse) MetadataEnvelope(ctx context.Context, obj *commit.Object, meta map[string]string) (commit.Result, error) {
	if _, err := w.Committer.MetadataEnvelope(ctx, obj, meta); err != nil {
		return commit.Result{}, err
	}
	w.n.Add(1)
	return commit.Result{}, errLost
}

func (w *lostResponse) WriteInstruction(ctx context.Context, instr *commit.Object, body []byte) (commit.Result, error) {
	if _, err := w.Committer.WriteInstruction(ctx, instr, body); err != nil {
		return commit.Result{}, err
	}
	w.n.Add(1)
	return commit.Result{}, errLost
}

func TestLostResponseIsReconciled(t *testing.T) {
	f := newFixture(t, 8, false)
	lr := &lostResponse{Committer: f.commit}
	c := f.core("run-lost")
	c.S3 = lr
	rep, buf := f.run(t, c)
	if rep.Counts()[pipeline.StatusSucceeded] != 8 || lr.n.Load() != 8 {
		t.Fatalf("counts %v, writes %d\n%s", rep.Counts(), lr.n.Load(), buf)
	}
	n := 0
	if err := f.ledger.Events(ctx, func(ledger.Event) error { n++; return nil }); err != nil || n != 8 {
		t.Errorf("lineage events %d (%v), want 8", n, err)
	}
	for _, o := range f.objs {
		f.decrypt(t, o.Key, f.b)
	}
}

// crashingLedger fails every Commit and Abandon, as a process killed right
// after its S3 write would never make them.
type crashingLedger struct{ ledger.Ledger }

var errCrash = errors.New("process killed")

func (crashingLedger) Commit(context.Context, string, ledger.Object, ledger.Event) error {
	return errCrash
}
func (crashingLedger) Abandon(context.Context, string, ledger.ObjectID, string, string) error {
	return errCrash
}

func TestReconcileRunFinishesWritesLeftByACrash(t *testing.T) {
	f := newFixture(t, 6, false)
	c := f.core("run-crash")
	c.Ledger = crashingLedger{f.ledger}
	src := f.source(t)
	var landed int
	err := src.Stream(ctx, func(it inventory.Item) error {
		o, err := c.Process(ctx, it)
		if err == nil || o.Status != pipeline.StatusUnfinished {
			return fmt.Errorf("%s: want an unfinished object and a ledger failure after the write, got %+v %v", it, o, err)
		}
		landed++
		return nil
	})
	if err != nil || landed != 6 {
		t.Fatalf("%d processed: %v", landed, err)
	}
	// Every write landed, nothing is recorded yet: all six are prepared.
	prepared := 0
	if err := f.ledger.Prepared(ctx, "run-crash", func(ledger.Event) error { prepared++; return nil }); err != nil || prepared != 6 {
		t.Fatalf("%d prepared (%v)", prepared, err)
	}
	// One object is changed by someone else before the resume: reconcile
	// must not record it as rewrapped.
	other := f.objs[0].Key
	put(t, f, other, []byte("new data"), nil)
	n, err := pipeline.Recover(ctx, f.core("run-crash"), f.ledger, "run-crash", false)
	if err != nil {
		t.Fatal(err)
	}
	if n.Committed != 5 || n.Changed != 1 || n.Dropped != 0 || n.Kept != 0 {
		t.Errorf("recovered %+v, want 5 committed and 1 changed", n)
	}
	events := 0
	if err := f.ledger.Events(ctx, func(ledger.Event) error { events++; return nil }); err != nil || events != 5 {
		t.Errorf("%d events (%v), want 5", events, err)
	}
	// Resuming again finds nothing to do.
	if n, err := pipeline.Recover(ctx, f.core("run-crash"), f.ledger, "run-crash", false); err != nil || len(n.Outcomes) != 0 {
		t.Errorf("second recovery: %+v %v", n, err)
	}
}

func TestVersionedBucketAllVersions(t *testing.T) {
	f := newFixture(t, 4, true)
	// An older version of one sample, and a deleted key (delete marker on
	// top of an encrypted version).
	first := f.objs[0].Key
	old := snap(t, f, first)
	put(t, f, first+"-v", []byte("x"), nil)
	gone := f.objs[1].Key
	if _, err := f.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &f.bucket, Key: &gone}); err != nil {
		t.Fatal(err)
	}
	// Re-put the first sample's bytes so that its first version becomes
	// noncurrent and its current version is the same encrypted object.
	out, _ := f.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &f.bucket, Key: &first})
	meta := out.Metadata
	if _, err := f.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &f.bucket, Key: &first, Body: bytes.NewReader(old.body), Metadata: meta}); err != nil {
		t.Fatal(err)
	}
	src, err := inventory.Open(ctx, f.s3, inventory.Spec{Source: "s3://" + f.bucket, AllVersions: true,
		Options: inventory.Options{ExcludeSuffix: inventory.DefaultExcludeSuffix}})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	rep, _ := pipeline.NewReport(&buf)
	r := &pipeline.Runner{Core: f.core("run-versions"), Source: src, Workers: 4, Report: rep}
	if err := r.Execute(ctx, nil); err != nil {
		t.Fatal(err)
	}
	report := buf.String()
	c := rep.Counts()
	// Current versions: samples 0, 2, 3 rewrapped (sample 1 is deleted);
	// the unencrypted helper object skipped; the older version of sample 0
	// and the version under sample 1's delete marker pending; the delete
	// marker skipped.
	if c[pipeline.StatusSucceeded] != 3 || c[pipeline.StatusPending] != 2 {
		t.Errorf("counts %v\n%s", c, report)
	}
	for _, want := range []string{",skipped,DeleteMarker,", ",pending,NoncurrentVersion,"} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	for _, o := range f.objs {
		if o.Key == gone {
			continue
		}
		if got := f.decrypt(t, o.Key, f.b); !bytes.Equal(got, f.plain[o.Key]) {
			t.Errorf("%s: plaintext differs", o.Key)
		}
	}
}

func headMeta(t *testing.T, f *fixture, key string) map[string]string {
	t.Helper()
	out, err := f.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &f.bucket, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	return out.Metadata
}

func freshLedger(t *testing.T) ledger.Ledger {
	t.Helper()
	l, err := ledger.Open(ctx, filepath.Join(t.TempDir(), "fresh.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}
