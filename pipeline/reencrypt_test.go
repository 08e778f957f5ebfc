package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/internal/sample"
	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/kmsserver"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/pipeline"
	"github.com/rotator-dev/rotator/reencrypt"
	"github.com/rotator-dev/rotator/rewrap"
)

// reencryptCore is f.core in re-encrypt mode from the given keys, with an
// engine of 5 MiB parts.
func (f *fixture) reencryptCore(runID string, w reencrypt.Writer, from ...rewrap.Keyring) (*pipeline.Core, *reencrypt.Engine) {
	if w == nil {
		w = f.commit
	}
	e := &reencrypt.Engine{Reader: f.s3, Writer: w, PartSize: reencrypt.MinPartSize}
	c := f.core(runID)
	c.Mode, c.From, c.Reencrypter = pipeline.ModeReencrypt, from, e
	return c, e
}

// seedBig adds n objects of 5 MiB + 1 to 6 MiB (two parts each) under A.
func (f *fixture) seedBig(t *testing.T, n, minSize, maxSize int) {
	t.Helper()
	objs, err := sample.Seed(ctx, f.s3, f.kms.Client(""), sample.Options{Bucket: f.bucket, Prefix: "big/", KMSKeyID: f.kmsKeyA(t),
		Count: n, MinSize: minSize, MaxSize: maxSize})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		f.plain[o.Key] = f.decrypt(t, o.Key, f.a)
	}
	f.objs = append(f.objs, objs...)
}

func (f *fixture) kmsKeyA(t *testing.T) string {
	t.Helper()
	return strings.TrimPrefix(f.a.ID(), "kms:")
}

func (f *fixture) multipartUploads(t *testing.T) int {
	t.Helper()
	out, err := f.s3.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &f.bucket})
	if err != nil {
		t.Fatal(err)
	}
	return len(out.Uploads)
}

func (f *fixture) checkpoints(t *testing.T, runID string) int {
	t.Helper()
	n := 0
	if err := f.ledger.Uploads(ctx, runID, func(ledger.Upload) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRunReencryptsUnderFreshDataKeys(t *testing.T) {
	f := newFixture(t, 8, false)
	f.seedBig(t, 4, 5<<20+1, 6<<20)
	before := map[string]snapshot{}
	for _, o := range f.objs {
		before[o.Key] = snap(t, f, o.Key)
	}

	// A dry run reports every object and changes none.
	dry, _ := f.reencryptCore("run-dry", nil, f.a)
	rep, buf := f.run(t, pipeline.DryRun(dry))
	if c := rep.Counts(); c[pipeline.StatusPending] != int64(len(f.objs)) {
		t.Fatalf("dry run counts %v\n%s", c, buf)
	}
	if !strings.Contains(buf.String(), "would re-encrypt") {
		t.Errorf("dry run report:\n%s", buf)
	}
	for _, o := range f.objs {
		if got := snap(t, f, o.Key); !bytes.Equal(got.body, before[o.Key].body) {
			t.Errorf("%s: changed by a dry run", o.Key)
		}
	}

	// The run: fresh data keys under B, same plaintext, same decoration.
	f.kms.ResetCounts()
	c, _ := f.reencryptCore("run-1", nil, f.a)
	rep, buf = f.run(t, c)
	if got := rep.Counts(); got[pipeline.StatusSucceeded] != int64(len(f.objs)) {
		t.Fatalf("counts %v\n%s", got, buf)
	}
	if !strings.Contains(buf.String(), ",reencrypt,") || !strings.Contains(buf.String(), "reencrypt V3->V3 kms-decrypt+kms-encrypt") {
		t.Errorf("report:\n%s", buf)
	}
	if n := f.kms.Count("GenerateDataKey") + f.kms.Count("Encrypt"); n != int64(len(f.objs)) {
		t.Errorf("%d new data keys wrapped by KMS, want %d", n, len(f.objs))
	}
	for _, o := range f.objs {
		if got := f.decrypt(t, o.Key, f.b); !bytes.Equal(got, f.plain[o.Key]) {
			t.Errorf("%s: plaintext differs after re-encryption", o.Key)
		}
		if _, err := f.tryDecrypt(o.Key, f.a); err == nil {
			t.Errorf("%s still opens under key A", o.Key)
		}
		after, b := snap(t, f, o.Key), before[o.Key]
		if len(b.body) > 32 && bytes.Equal(after.body[:32], b.body[:32]) {
			t.Errorf("%s: same ciphertext: not re-encrypted under a fresh data key", o.Key)
		}
		if !maps.Equal(after.meta, b.meta) || !maps.Equal(after.tags, b.tags) || after.ct != b.ct {
			t.Errorf("%s: metadata, tags or content type changed:\n%+v\n%+v", o.Key, b.meta, after.meta)
		}
	}
	counts, err := f.ledger.CountsByKey(ctx)
	if err != nil || counts[f.b.ID()] != int64(len(f.objs)) || counts[f.a.ID()] != 0 {
		t.Errorf("ledger counts %v %v", counts, err)
	}
	reenc := 0
	if err := f.ledger.Events(ctx, func(ev ledger.Event) error {
		if ev.Op == ledger.OpReencrypt && ev.RunID == "run-1" && ev.OldWrappedKeySHA256 != ev.NewWrappedKeySHA256 && ev.FromKey == f.a.ID() {
			reenc++
		}
		return nil
	}); err != nil || reenc != len(f.objs) {
		t.Errorf("%d re-encryption events (%v), want %d", reenc, err, len(f.objs))
	}
	if n := f.multipartUploads(t); n != 0 {
		t.Errorf("%d multipart uploads left", n)
	}
	if n := f.checkpoints(t, "run-1"); n != 0 {
		t.Errorf("%d checkpoints left", n)
	}

	// A second run from A finds nothing under A.
	c2, _ := f.reencryptCore("run-2", nil, f.a)
	rep, buf = f.run(t, c2)
	if got := rep.Counts(); got[pipeline.StatusSucceeded] != 0 || got[pipeline.StatusSkipped] != int64(len(f.objs)) {
		t.Errorf("second run: %v\n%s", got, buf)
	}

	// Data keys exposed under B itself: --from B --to B re-encrypts again,
	// once per run.
	c3, _ := f.reencryptCore("run-3", nil, f.b)
	rep, buf = f.run(t, c3)
	if got := rep.Counts(); got[pipeline.StatusSucceeded] != int64(len(f.objs)) {
		t.Fatalf("--from B --to B: %v\n%s", got, buf)
	}
	for _, o := range f.objs {
		if got := f.decrypt(t, o.Key, f.b); !bytes.Equal(got, f.plain[o.Key]) {
			t.Errorf("%s: plaintext differs after the second re-encryption", o.Key)
		}
		o2, err := c3.Process(ctx, inventory.Item{Bucket: f.bucket, Key: o.Key})
		if err != nil || o2.Status != pipeline.StatusSkipped || !strings.Contains(o2.Message, "already re-encrypted by this run") {
			t.Errorf("%s processed again by the same run: %+v %v", o.Key, o2, err)
		}
	}
}

// failInstruction fails the first n instruction-file writes, as a process
// killed between the object's write and its instruction file's would.
type failInstruction struct {
	*commit.Committer
	n atomic.Int32
}

func (w *failInstruction) WriteInstruction(ctx context.Context, instr *commit.Object, body []byte) (commit.Result, error) {
	if w.n.Add(-1) >= 0 {
		return commit.Result{}, errors.New("connection reset")
	}
	return w.Committer.WriteInstruction(ctx, instr, body)
}

// TestReencryptInstructionFilePendingIsKeptAndResumed: the content of two
// instruction-file objects lands and their instruction files cannot be
// written (the in-line retry and the end-of-run settling fail too): the
// run ends unfinished, keeping both intents (the only copies of the new
// envelopes), and a resume writes the instruction files from them.
func TestReencryptInstructionFilePendingIsKeptAndResumed(t *testing.T) {
	f := newFixture(t, 4, false) // V2/V3 x metadata/instruction file
	w := &failInstruction{Committer: f.commit}
	w.n.Store(1000)
	c, _ := f.reencryptCore("run-i", w, f.a)
	rep, buf := f.runWant(t, c, ledger.RunUnfinished, false)
	if got := rep.Counts(); got[pipeline.StatusSucceeded] != 2 || got[pipeline.StatusUnfinished] < 2 {
		t.Fatalf("counts %v\n%s", got, buf)
	}
	if n := f.checkpoints(t, "run-i"); n != 2 {
		t.Fatalf("%d checkpoints kept, want 2", n)
	}
	if n, err := pipeline.Unfinished(ctx, f.ledger, "run-i"); err != nil || n != 2 {
		t.Fatalf("unfinished %d %v, want 2", n, err)
	}
	// Resume finishes them from their intents.
	c2, _ := f.reencryptCore("run-i", nil, f.a)
	rep, buf = f.runWant(t, c2, ledger.RunDone, true)
	if got := rep.Counts(); got[pipeline.StatusSucceeded] != 2 {
		t.Fatalf("resume counts %v\n%s", got, buf)
	}
	for _, o := range f.objs {
		if got := f.decrypt(t, o.Key, f.b); !bytes.Equal(got, f.plain[o.Key]) {
			t.Errorf("%s: plaintext differs", o.Key)
		}
	}
	if k := f.checkpoints(t, "run-i"); k != 0 {
		t.Errorf("%d checkpoints left", k)
	}
	events := 0
	if err := f.ledger.Events(ctx, func(ev ledger.Event) error { events++; return nil }); err != nil || events != 4 {
		t.Errorf("%d lineage events (%v), want 4", events, err)
	}
}

func TestReencryptInterruptedMidObjectResumesAndSettles(t *testing.T) {
	f := newFixture(t, 0, false)
	f.seedBig(t, 2, 11<<20, 12<<20) // three parts each
	keys := []string{f.objs[0].Key, f.objs[1].Key}
	c, e := f.reencryptCore("run-k", nil, f.a)

	// Interrupt both objects after their first part.
	for _, key := range keys {
		cctx, cancel := context.WithCancel(ctx)
		e.AfterPart = func(n int) { cancel() }
		e.PartsInFlight = 1
		o, _ := c.Process(cctx, inventory.Item{Bucket: f.bucket, Key: key})
		cancel()
		if o.Status != pipeline.StatusUnfinished {
			t.Fatalf("%s: not kept for resume: %+v", key, o)
		}
	}
	e.AfterPart, e.PartsInFlight = nil, 0
	if k := f.checkpoints(t, "run-k"); k != 2 {
		t.Fatalf("%d checkpoints, want 2", k)
	}
	if n := f.multipartUploads(t); n != 2 {
		t.Fatalf("%d uploads, want 2", n)
	}
	// The first resumes after its recorded part.
	o, err := c.Process(ctx, inventory.Item{Bucket: f.bucket, Key: keys[0]})
	if err != nil || o.Status != pipeline.StatusSucceeded || !strings.Contains(o.Message, "resumed after") {
		t.Fatalf("resume: %+v %v", o, err)
	}
	if got := f.decrypt(t, keys[0], f.b); !bytes.Equal(got, f.plain[keys[0]]) {
		t.Errorf("%s: plaintext differs after resume", keys[0])
	}
	// The second is given up at the end of the run: its upload is aborted,
	// and the object (as it was) is re-encrypted once more from scratch.
	n, err := pipeline.Recover(ctx, c, f.ledger, "run-k", true)
	if err != nil || n.Dropped != 1 || n.Kept != 0 || len(n.Outcomes) != 1 ||
		n.Outcomes[0].Status != pipeline.StatusSucceeded || strings.Contains(n.Outcomes[0].Message, "resumed") {
		t.Fatalf("settled %+v %v", n, err)
	}
	if got := f.decrypt(t, keys[1], f.b); !bytes.Equal(got, f.plain[keys[1]]) {
		t.Errorf("%s: plaintext differs after it was given up and re-encrypted again", keys[1])
	}
	if n := f.multipartUploads(t); n != 0 {
		t.Errorf("%d multipart uploads left", n)
	}
	if k := f.checkpoints(t, "run-k"); k != 0 {
		t.Errorf("%d checkpoints left", k)
	}
}

// TestReencryptBadInputIsReportedAndLeftUntouched: an object whose content
// was altered, one whose data key KMS refuses to decrypt, and one whose
// Decrypt is throttled twice: the first two are reported with their reason
// and left byte for byte as they were, the third succeeds after retries,
// and the others go on.
func TestReencryptBadInputIsReportedAndLeftUntouched(t *testing.T) {
	f := newFixture(t, 4, false)
	c, _ := f.reencryptCore("run-bad", nil, f.a)
	keys := make([]string, len(f.objs))
	for i, o := range f.objs {
		keys[i] = o.Key
	}
	// Alter the last byte (the tag) of the first object, keeping its
	// metadata: it no longer authenticates.
	altered := snap(t, f, keys[0])
	altered.body[len(altered.body)-1] ^= 1
	out, err := f.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &f.bucket, Key: &keys[0]})
	if err != nil {
		t.Fatal(err)
	}
	put(t, f, keys[0], altered.body, out.Metadata)
	before := map[string][]byte{}
	for _, k := range keys {
		before[k] = snap(t, f, k).body
	}
	process := func(key string) pipeline.Outcome {
		t.Helper()
		o, err := c.Process(ctx, inventory.Item{Bucket: f.bucket, Key: key})
		if err != nil {
			t.Fatalf("%s: the run would stop: %v", key, err)
		}
		return o
	}
	if o := process(keys[0]); o.Status != pipeline.StatusFailed || o.ErrorCode != pipeline.CodeContentAuth {
		t.Errorf("altered content: %+v", o)
	}
	f.kms.FailNext("Decrypt", kmsserver.ErrAccessDenied, 1)
	if o := process(keys[1]); o.Status != pipeline.StatusFailed || o.ErrorCode != kmsserver.ErrAccessDenied {
		t.Errorf("denied Decrypt: %+v", o)
	}
	f.kms.FailNext("Decrypt", kmsserver.ErrThrottling, 2)
	if o := process(keys[2]); o.Status != pipeline.StatusSucceeded {
		t.Errorf("throttled Decrypt: %+v", o)
	}
	if o := process(keys[3]); o.Status != pipeline.StatusSucceeded {
		t.Errorf("the next object: %+v", o)
	}
	for _, k := range keys[:2] {
		if got := snap(t, f, k).body; !bytes.Equal(got, before[k]) {
			t.Errorf("%s: changed although it failed", k)
		}
	}
	if got := f.decrypt(t, keys[1], f.a); !bytes.Equal(got, f.plain[keys[1]]) {
		t.Errorf("%s: no longer opens under A", keys[1])
	}
	for _, k := range keys[2:] {
		if got := f.decrypt(t, k, f.b); !bytes.Equal(got, f.plain[k]) {
			t.Errorf("%s: plaintext differs", k)
		}
	}
	if n := f.multipartUploads(t); n != 0 {
		t.Errorf("%d uploads left", n)
	}
	if n := f.checkpoints(t, "run-bad"); n != 0 {
		t.Errorf("%d checkpoints left", n)
	}
}
