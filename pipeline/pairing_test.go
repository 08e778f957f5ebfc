package pipeline_test

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/internal/sample"
	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/pipeline"
)

// instrReads counts the instruction files classify reads, by key.
type instrReads struct {
	*commit.Committer
	mu    sync.Mutex
	reads map[string]int
}

func (r *instrReads) ReadInstruction(ctx context.Context, bucket, key, versionID string) (*commit.Object, []byte, error) {
	r.mu.Lock()
	r.reads[key]++
	r.mu.Unlock()
	return r.Committer.ReadInstruction(ctx, bucket, key, versionID)
}

// Classify takes the listing's word that an object without an envelope in
// its metadata has no instruction file (no GET) only for an object it
// finds as listed and written well before the listing; in every other
// window it reads the instruction file:
//   - plain: listed without one, unchanged: no GET, not encrypted;
//   - swapped: listed as a plain object, then replaced by an encrypted one
//     whose envelope is in an instruction file written after the listing:
//     the object changed (ETag), so the file is read and the object rewrapped;
//   - young: written just before the listing, its instruction file just
//     after (a writer between its two PUTs): read, and rewrapped;
//   - paired: its instruction file was listed: read, as always;
//   - gone: its instruction file was listed, then deleted: read, found
//     missing, not encrypted;
//   - v3: a V3 object (x-amz-c, x-amz-d and x-amz-i on it) whose instruction
//     file was written after the listing, the object unchanged and old:
//     its metadata says it needs one, so it is read, and rewrapped.
func TestClassifyTakesTheListingsWordOnInstructionFiles(t *testing.T) {
	f := newFixture(t, 0, false)
	kc := f.kms.Client("")
	arnA := f.a.ID()
	instrKind := []sample.Kind{{Format: envelope.V2, Placement: envelope.PlacementInstructionFile}}
	encrypted, err := sample.Seed(ctx, f.s3, kc, sample.Options{Bucket: f.bucket, Prefix: "src/", KMSKeyID: arnA, Count: 3, MinSize: 1, MaxSize: 100, Kinds: instrKind})
	if err != nil {
		t.Fatal(err)
	}
	get := func(key string) ([]byte, map[string]string) {
		t.Helper()
		out, err := f.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &f.bucket, Key: &key})
		if err != nil {
			t.Fatal(err)
		}
		defer out.Body.Close()
		b, _ := io.ReadAll(out.Body)
		return b, out.Metadata
	}
	// copyObject writes the object src (and its instruction file) as dst.
	copyObject := func(src, dst string, withInstr bool) {
		t.Helper()
		b, m := get(src)
		put(t, f, dst, b, m)
		if withInstr {
			b, m = get(src + ".instruction")
			put(t, f, dst+".instruction", b, m)
		}
	}
	put(t, f, "plain", []byte("plain text"), nil)
	put(t, f, "swapped", []byte("plain text"), nil)
	copyObject(encrypted[0].Key, "paired", true)
	copyObject(encrypted[1].Key, "gone", true)
	young, _ := get(encrypted[2].Key)
	put(t, f, "young", young, nil) // its instruction file comes after the listing
	v3, err := sample.Seed(ctx, f.s3, kc, sample.Options{Bucket: f.bucket, Prefix: "src3/", KMSKeyID: arnA, Count: 1, MinSize: 1, MaxSize: 100,
		Kinds: []sample.Kind{{Format: envelope.V3, Placement: envelope.PlacementInstructionFile}}})
	if err != nil {
		t.Fatal(err)
	}
	copyObject(v3[0].Key, "v3", false) // its instruction file comes after the listing

	src, err := inventory.Open(ctx, f.s3, inventory.Spec{Source: "s3://" + f.bucket,
		Options: inventory.Options{ExcludeSuffix: inventory.DefaultExcludeSuffix}})
	if err != nil {
		t.Fatal(err)
	}
	items := map[string]inventory.Item{}
	if err := src.Stream(ctx, func(it inventory.Item) error { items[it.Key] = it; return nil }); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"plain", "swapped", "young", "v3"} {
		if items[k].NoInstructionFile != inventory.DefaultExcludeSuffix {
			t.Fatalf("%s: the listing did not see that it has no instruction file: %+v", k, items[k])
		}
	}
	for _, k := range []string{"paired", "gone"} {
		if items[k].NoInstructionFile != "" {
			t.Fatalf("%s: the listing missed its instruction file: %+v", k, items[k])
		}
	}
	// After the listing.
	copyObject(encrypted[0].Key, "swapped", true)
	b, m := get(encrypted[2].Key + ".instruction")
	put(t, f, "young.instruction", b, m)
	b, m = get(v3[0].Key + ".instruction")
	put(t, f, "v3.instruction", b, m)
	if _, err := f.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &f.bucket, Key: aws.String("gone.instruction")}); err != nil {
		t.Fatal(err)
	}
	// The objects were written seconds ago; all but young are taken as
	// listed two hours after they were written.
	for k, it := range items {
		if k != "young" {
			it.ListedAt = it.ListedAt.Add(2 * time.Hour)
			items[k] = it
		}
	}

	reads := &instrReads{Committer: f.commit, reads: map[string]int{}}
	c := f.core("pairing")
	c.S3 = reads
	for _, tc := range []struct {
		key    string
		status pipeline.Status
		code   string
		read   bool
	}{
		{"plain", pipeline.StatusSkipped, pipeline.CodeNotEncrypted, false},
		{"swapped", pipeline.StatusSucceeded, "", true},
		{"young", pipeline.StatusSucceeded, "", true},
		{"paired", pipeline.StatusSucceeded, "", true},
		{"gone", pipeline.StatusSkipped, pipeline.CodeNotEncrypted, true},
		{"v3", pipeline.StatusSucceeded, "", true},
	} {
		o, err := c.Process(ctx, items[tc.key])
		if err != nil {
			t.Fatalf("%s: %v", tc.key, err)
		}
		if o.Status != tc.status || o.ErrorCode != tc.code {
			t.Errorf("%s: %s %s (%s), want %s %s", tc.key, o.Status, o.ErrorCode, o.Message, tc.status, tc.code)
		}
		if got := reads.reads[tc.key+".instruction"] > 0; got != tc.read {
			t.Errorf("%s: instruction file read: %v, want %v", tc.key, got, tc.read)
		}
	}
	// The rewrapped objects open under the new key (the seeds are at
	// least one byte long: an empty plaintext would pass for a failure).
	for _, k := range []string{"swapped", "young", "paired", "v3"} {
		if pt := f.decrypt(t, k, f.b); len(pt) == 0 || bytes.Equal(pt, []byte("plain text")) {
			t.Errorf("%s: %q after the rewrap", k, pt)
		}
	}
	if o, _ := c.Process(ctx, items["plain"]); !strings.Contains(o.Message, "none was listed") {
		t.Errorf("plain: the message does not say the listing told: %q", o.Message)
	}
}
