package main

import (
	"bytes"
	"crypto/sha256"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/internal/sample"
	"github.com/rotator-dev/rotator/ledger"
)

// uploads returns the parts uploaded to each multipart upload of the bucket,
// by upload id.
func (f *cliFixture) uploads(t *testing.T) map[string]int {
	t.Helper()
	ups, err := f.s3.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &f.bucket})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int{}
	for _, u := range ups.Uploads {
		ps, err := f.s3.ListParts(ctx, &s3.ListPartsInput{Bucket: &f.bucket, Key: u.Key, UploadId: u.UploadId})
		if err != nil {
			continue // completed or aborted meanwhile
		}
		m[aws.ToString(u.UploadId)] = len(ps.Parts)
	}
	return m
}

// TestCLIReencryptKilledMidObjectResumesFromItsLastPart: a re-encryption
// run over large objects (six 5 MiB parts each) and small ones is killed
// with SIGKILL while a multipart upload is part-way, twice, at random
// parts. Each resume takes up the upload after its last recorded part. At
// the end every object opens under the new key with its old plaintext, the
// ledger holds exactly one re-encryption per object and no checkpoint, and
// no multipart upload is left in the bucket.
func TestCLIReencryptKilledMidObjectResumesFromItsLastPart(t *testing.T) {
	f := newCLIFixture(t, 6)
	big, err := sample.Seed(ctx, f.s3, f.kms, sample.Options{Bucket: f.bucket, Prefix: "big/", KMSKeyID: f.arnA, Count: 2,
		MinSize: 26 << 20, MaxSize: 27 << 20,
		Kinds: []sample.Kind{{Format: envelope.V2, Placement: envelope.PlacementMetadata}, {Format: envelope.V3, Placement: envelope.PlacementInstructionFile}}})
	if err != nil {
		t.Fatal(err)
	}
	f.objs = append(f.objs, big...)
	sums := map[string][32]byte{}
	for _, o := range f.objs {
		sums[o.Key] = sha256.Sum256(f.plaintext(t, o.Key, f.arnA))
	}
	ledgerPath := filepath.Join(f.dir, "ledger.db")
	const runID = "kill-reencrypt"
	// --s3-rps and one part in flight keep each object slow enough to be
	// killed part-way.
	start := func(args ...string) *proc {
		t.Helper()
		c := f.cmd(args...)
		e := &proc{}
		c.Stdout, c.Stderr = &e.out, &e.out
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		e.c = c.Process
		e.wait = c.Wait
		return e
	}
	e := start("run", "--mode", "reencrypt", "--source", "s3://"+f.bucket, "--to", "kms:"+f.arnB, "--from", "kms:"+f.arnA,
		"--part-size", "5242880", "--parts-in-flight", "1", "--concurrency", "2", "--s3-rps", "8", "--s3-no-multipart-checksum",
		"--ledger", ledgerPath, "--run-id", runID, "--no-progress")
	// First kill: once an upload has 2 to 4 parts. Second kill (of the
	// resume): once it has made progress of its own.
	var before map[string]int
	for i := 0; i < 2; i++ {
		want := 2 + rand.IntN(3)
		deadline := time.Now().Add(2 * time.Minute)
		for {
			now := f.uploads(t)
			if i == 0 && slices.ContainsFunc(slices.Collect(maps.Values(now)), func(n int) bool { return n >= want }) {
				break
			}
			if i == 1 && len(now) > 0 && !maps.Equal(now, before) {
				break
			}
			if time.Now().After(deadline) {
				_ = e.c.Kill()
				_ = e.wait()
				t.Fatalf("kill %d: no upload progressed as wanted (%v):\n%s", i+1, now, e.out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		_ = e.c.Signal(syscall.SIGKILL)
		_ = e.wait()
		before = f.uploads(t)
		t.Logf("kill %d: uploads and their parts: %v", i+1, before)
		if i == 0 {
			e = start("resume", "--run-id", runID, "--ledger", ledgerPath, "--no-progress")
		}
	}
	code, out := f.rotator(t, "resume", "--run-id", runID, "--ledger", ledgerPath, "--no-progress")
	if code != exitOK {
		t.Fatalf("resume exit %d:\n%s", code, out)
	}
	report, err := os.ReadFile(filepath.Join(f.dir, "rotator-report-"+runID+".csv"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(report), "resumed after") && !strings.Contains(out, "finished from their checkpoints") {
		t.Errorf("no object was resumed from a checkpoint:\n%s\n%s", report, out)
	}
	for _, o := range f.objs {
		if got := sha256.Sum256(f.plaintext(t, o.Key, f.arnB)); got != sums[o.Key] {
			t.Errorf("%s: plaintext differs after re-encryption", o.Key)
		}
	}
	f.exactlyOnce(t, ledgerPath, runID)
	l, err := ledger.Open(ctx, ledgerPath)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Events(ctx, func(ev ledger.Event) error {
		if ev.ID.Bucket == f.bucket && ev.Op != ledger.OpReencrypt {
			t.Errorf("%s: %s event, want reencrypt", ev.ID, ev.Op)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := l.Uploads(ctx, runID, func(u ledger.Upload) error {
		t.Errorf("checkpoint left: %s", u.ID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ups, err := f.s3.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &f.bucket})
	if err != nil || len(ups.Uploads) != 0 {
		t.Errorf("multipart uploads left: %d (%v)", len(ups.Uploads), err)
	}
	for _, u := range ups.Uploads {
		t.Logf("left: %s %s", aws.ToString(u.Key), aws.ToString(u.UploadId))
	}
}

// proc is a started rotator process.
type proc struct {
	c    *os.Process
	wait func() error
	out  bytes.Buffer
}
