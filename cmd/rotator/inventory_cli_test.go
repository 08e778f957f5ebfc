package main

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/parquet-go/parquet-go"

	"github.com/rotator-dev/rotator/internal/testenv"
	"github.com/rotator-dev/rotator/pipeline"
)

// --inventory-max-file-bytes reaches the report reader: a Parquet data file
// above it is refused, unread, with a hint naming the flag; at its size it
// is read.
func TestCLIInventoryMaxFileBytes(t *testing.T) {
	f := newCLIFixture(t, 2)
	type row struct {
		Bucket string `parquet:"bucket"`
		Key    string `parquet:"key"`
	}
	var pq bytes.Buffer
	w := parquet.NewGenericWriter[row](&pq)
	for _, o := range f.objs {
		if _, err := w.Write([]row{{f.bucket, o.Key}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	put := func(key string, body []byte) {
		if _, err := f.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &f.bucket, Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
			t.Fatal(err)
		}
	}
	put("inv/data/a.parquet", pq.Bytes())
	sum := md5.Sum(pq.Bytes())
	put("inv/manifest.json", fmt.Appendf(nil, `{"sourceBucket":%q,"destinationBucket":"arn:aws:s3:::%s","fileFormat":"Parquet","fileSchema":"message s3.inventory { }","files":[{"key":"inv/data/a.parquet","size":%d,"MD5checksum":%q}]}`,
		f.bucket, f.bucket, pq.Len(), hex.EncodeToString(sum[:])))
	args := []string{"plan", "--inventory", "s3://" + f.bucket + "/inv/manifest.json", "--to", "kms:" + f.arnB, "--inventory-max-file-bytes"}
	code, out := f.rotator(t, append(args, strconv.Itoa(pq.Len()-1))...)
	if code != exitFatal || !strings.Contains(out, "data file too large") || !strings.Contains(out, "--inventory-max-file-bytes") {
		t.Errorf("a file above the bound: exit %d, want %d, data file too large and a hint:\n%s", code, exitFatal, out)
	}
	code, out = f.rotator(t, append(args, strconv.Itoa(pq.Len()))...)
	if code != exitOK || !strings.Contains(out, fmt.Sprintf("%d objects", len(f.objs))) {
		t.Errorf("a file at the bound: exit %d, want %d and %d objects:\n%s", code, exitOK, len(f.objs), out)
	}
}

// A list whose keys are not URL-encoded fails with a hint naming
// --list-raw-keys, and that flag exists and reads the keys as they are.
func TestCLIListRawKeys(t *testing.T) {
	f := newCLIFixture(t, 1)
	key := "raw %zz, key" // not valid URL-encoding
	if _, err := f.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &f.bucket, Key: aws.String(key), Body: strings.NewReader("x")}); err != nil {
		t.Fatal(err)
	}
	list := filepath.Join(f.dir, "list.csv")
	if err := os.WriteFile(list, []byte(f.bucket+",\""+key+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"plan", "--list", list, "--to", "kms:" + f.arnB}
	code, out := f.rotator(t, args...)
	if code == exitOK || !strings.Contains(out, "--list-raw-keys") {
		t.Fatalf("an unencoded key: exit %d, want a failure with a hint naming --list-raw-keys:\n%s", code, out)
	}
	code, out = f.rotator(t, append(args, "--list-raw-keys")...)
	if code != exitOK || !strings.Contains(out, "1 objects") || !strings.Contains(out, pipeline.CodeNotEncrypted) {
		t.Errorf("with --list-raw-keys: exit %d, want 0 and the object counted as not encrypted:\n%s", code, out)
	}
}

// TestCLIResumeOverAChangedList: a run over a --list is interrupted; the
// list then loses its first line, which moves every later line to a lower
// byte offset. resume stops, naming the change, with a non-zero exit and
// the run left unfinished, rather than read on from its offset past
// objects it never did. Resumed over the list it began with, the run
// finishes, every object rotated once.
func TestCLIResumeOverAChangedList(t *testing.T) {
	f := newCLIFixture(t, 120)
	list := listOf(t, f, f.bucket, false)
	orig, err := os.ReadFile(list)
	if err != nil {
		t.Fatal(err)
	}
	ledgerPath := filepath.Join(f.dir, "ledger.db")
	c := f.cmd("run", "--list", list, "--to", "kms:"+f.arnB, "--ledger", ledgerPath,
		"--run-id", "edited", "--s3-rps", "30", "--concurrency", "4", "--no-progress")
	var out testenv.Buffer
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	waitStarted(t, c, &out)
	// Interrupted once some objects are done (their log lines), so that
	// the run's checkpoint holds a position in the list.
	for deadline := time.Now().Add(time.Minute); strings.Count(out.String(), `"outcome":"succeeded"`) < 8; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			_ = c.Process.Kill()
			t.Fatalf("no 8 objects done in a minute:\n%s", out.String())
		}
	}
	_ = c.Process.Signal(os.Interrupt)
	if err := c.Wait(); err == nil {
		t.Fatalf("the run finished before the interrupt:\n%s", out.String())
	}
	if done := f.events(t, ledgerPath); done == 0 || done >= len(f.objs) {
		t.Fatalf("interrupted after %d of %d objects: want some done and some not:\n%s", done, len(f.objs), out.String())
	}
	if err := os.WriteFile(list, orig[bytes.IndexByte(orig, '\n')+1:], 0o644); err != nil {
		t.Fatal(err)
	}
	code, o := f.rotator(t, "resume", "--run-id", "edited", "--ledger", ledgerPath, "--no-progress")
	if code != exitFatal || !strings.Contains(o, "the list changed since the run read it") {
		t.Fatalf("resume over an edited list: exit %d, want a failure naming the change:\n%s", code, o)
	}
	t.Logf("resume over an edited list: exit %d:\n%s", code, o)
	if code, o := f.rotator(t, "status", "--run-id", "edited", "--ledger", ledgerPath); strings.Contains(o, ": done") {
		t.Errorf("status after the refused resume (%d):\n%s", code, o)
	}
	if err := os.WriteFile(list, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, o := f.rotator(t, "resume", "--run-id", "edited", "--ledger", ledgerPath, "--no-progress"); code != exitOK {
		t.Fatalf("resume over the list the run began with: exit %d:\n%s", code, o)
	}
	f.opensUnder(t, f.arnB)
	f.exactlyOnce(t, ledgerPath, "edited")
}
