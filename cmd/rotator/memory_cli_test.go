//go:build linux

package main

import (
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/rotator-dev/rotator/internal/sample"
)

// envMemoryObjects sets the larger object count of TestCLIPeakRSSFlat
// (default 1,000): ROTATOR_TEST_MEMORY_OBJECTS=100000 measures issue 13's
// 100k figure (seeding takes a minute or two, each run ten minutes or more
// on 2 cores).
const envMemoryObjects = "ROTATOR_TEST_MEMORY_OBJECTS"

// Nothing is kept per object for a run's life: the peak RSS of a rotator
// process that rewraps many objects is within a bound of the peak RSS of
// one that rewraps few, in the same test, for each kind of source (a
// listing, a listing of all versions, an S3 Inventory report). Each run
// has a ledger of its own (the embedded one), so the larger run also
// records more: the ledger file's mapped pages count too.
func TestCLIPeakRSSFlat(t *testing.T) {
	small, large := 200, 1000
	limit := maxPeakRSSRatio
	if v := os.Getenv(envMemoryObjects); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 2*small {
			t.Fatalf("%s=%q: give a count of at least %d", envMemoryObjects, v, 2*small)
		}
		large, limit = n, maxPeakRSSRatioGoal
	}
	f := newCLIFixture(t, 0)
	if _, err := f.s3.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: &f.bucket,
		VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled}}); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{"small/": small, "large/": large}
	for prefix, n := range counts {
		if _, err := sample.Seed(ctx, f.s3, f.kms, sample.Options{Bucket: f.bucket, Prefix: prefix, KMSKeyID: f.arnA, Count: n, MaxSize: 256}); err != nil {
			t.Fatal(err)
		}
	}
	// Every pass rotates every object: A to B, back to A, to B again.
	passes := []struct {
		name     string
		from, to string
		source   func(prefix string) []string
	}{
		{"listing", f.arnA, f.arnB, func(p string) []string { return []string{"--source", "s3://" + f.bucket + "/" + p} }},
		{"all-versions", f.arnB, f.arnA, func(p string) []string {
			return []string{"--source", "s3://" + f.bucket + "/" + p, "--all-versions"}
		}},
		{"inventory", f.arnA, f.arnB, func(p string) []string {
			return []string{"--inventory", "s3://" + f.bucket + "/" + f.inventoryReport(t, p)}
		}},
	}
	for _, p := range passes {
		peak := map[string]int64{}
		for _, prefix := range []string{"small/", "large/"} {
			args := append([]string{"run", "--from", "kms:" + p.from, "--to", "kms:" + p.to, "--no-progress", "--log-level", "warn",
				"--ledger", filepath.Join(f.dir, p.name+"-"+prefix[:len(prefix)-1]+".db")}, p.source(prefix)...)
			c := f.cmd(args...)
			var out bytes.Buffer
			c.Stdout, c.Stderr = &out, &out
			if err := c.Run(); err != nil {
				t.Fatalf("%s %s: %v\n%s", p.name, prefix, err, out.String())
			}
			want := fmt.Sprintf("%d rewrapped", counts[prefix])
			if !bytes.Contains(out.Bytes(), []byte(want)) {
				t.Fatalf("%s %s: want %s:\n%s", p.name, prefix, want, out.String())
			}
			peak[prefix] = c.ProcessState.SysUsage().(*syscall.Rusage).Maxrss // KiB
		}
		ratio := float64(peak["large/"]) / float64(peak["small/"])
		t.Logf("%s: peak RSS %d objects %.1f MiB, %d objects %.1f MiB: ratio %.2f", p.name,
			small, float64(peak["small/"])/1024, large, float64(peak["large/"])/1024, ratio)
		if ratio > limit {
			t.Errorf("%s: peak RSS grows with the objects of a run: %d objects %d KiB, %d objects %d KiB (ratio %.2f, at most %.2f)",
				p.name, small, peak["small/"], large, peak["large/"], ratio, limit)
		}
	}
}

// maxPeakRSSRatio bounds peak RSS at the default counts (measured: 1.05
// to 1.09, 1.13 under the race detector): 800 more objects that kept 14 KiB
// each would show above it. With ROTATOR_TEST_MEMORY_OBJECTS the bound is
// issue 13's goal, maxPeakRSSRatioGoal (measured: 1.20 at 10,000 objects;
// a process that rewraps few objects never reaches the steady state of
// its heap and connections, so the ratio includes that step).
const (
	maxPeakRSSRatio     = 1.25
	maxPeakRSSRatioGoal = 1.5
)

// inventoryReport writes an S3 Inventory report (CSV, one data file) of
// the current objects under prefix and returns its manifest's key.
func (f *cliFixture) inventoryReport(t *testing.T, prefix string) string {
	t.Helper()
	var csv bytes.Buffer
	zw := gzip.NewWriter(&csv)
	p := s3.NewListObjectsV2Paginator(f.s3, &s3.ListObjectsV2Input{Bucket: &f.bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			fmt.Fprintf(zw, "%q,%q\n", f.bucket, url.QueryEscape(aws.ToString(o.Key)))
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	dir := "inventory/" + prefix
	data, manifest := dir+"data/a.csv.gz", dir+"manifest.json"
	sum := md5.Sum(csv.Bytes())
	for key, body := range map[string][]byte{
		data: csv.Bytes(),
		manifest: fmt.Appendf(nil, `{"sourceBucket":%q,"destinationBucket":"arn:aws:s3:::%s","fileFormat":"CSV","fileSchema":"Bucket, Key","files":[{"key":%q,"size":%d,"MD5checksum":%q}]}`,
			f.bucket, f.bucket, data, csv.Len(), hex.EncodeToString(sum[:])),
	} {
		if _, err := f.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &f.bucket, Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
			t.Fatal(err)
		}
	}
	return manifest
}
