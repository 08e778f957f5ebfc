// Command bigobject measures the re-encryption of one large object through
// the local stack: rotator (--mode reencrypt, a child process) against the
// official S3 Encryption Client for Go v3.2.0 (GetObject + PutObject, also a
// child process). For each it reports wall time, throughput and peak RSS
// (the child's maximum resident set size from the kernel), then checks with
// the official client that the re-encrypted object opens under the new key
// with the plaintext it was written with.
//
//	scripts/stack up; . .stack/env
//	cd bench && go run ./bigobject -size 4GiB
//
// The object is written by the official client itself (PutObject, whose
// time and RSS are reported too). The plaintext is a deterministic stream,
// so its SHA-256 is known without keeping it.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	s3ec "github.com/aws/amazon-s3-encryption-client-go/v3/client"
	"github.com/aws/amazon-s3-encryption-client-go/v3/materials"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rotator-dev/rotator/bench/internal/workload"
)

const (
	srcKey  = "obj/big"
	copyKey = "copy/big"
)

func main() {
	if len(os.Args) > 1 && strings.HasPrefix(os.Args[1], "child-") {
		if err := child(os.Args[1], os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "bigobject:", err)
			os.Exit(1)
		}
		return
	}
	size := flag.String("size", "4GiB", "object size (bytes, or with KiB, MiB, GiB)")
	bucket := flag.String("bucket", "bench-bigobject", "bucket (created if missing; its objects are replaced)")
	skipOfficial := flag.Bool("skip-official-copy", false, "do not run the official client's GetObject + PutObject copy")
	root := flag.String("root", "..", "the rotator repository (rotator is built from it)")
	rotatorArgs := flag.String("rotator-args", "", "extra flags for rotator run (e.g. \"--part-size 33554432 --parts-in-flight 8\")")
	flag.Parse()
	n, err := workload.ParseSize(*size, 0)
	if err != nil {
		err = fmt.Errorf("-size %w", err)
	} else {
		err = orchestrate(n, *root, *bucket, *skipOfficial, strings.Fields(*rotatorArgs))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bigobject:", err)
		os.Exit(1)
	}
}

// measurement is one child process's wall time and peak RSS.
type measurement struct {
	what  string
	took  time.Duration
	rssKB int64
	bytes int64
}

func (m measurement) String() string {
	return fmt.Sprintf("| %s | %.1f s | %.0f MB/s | %d MiB |", m.what, m.took.Seconds(),
		float64(m.bytes)/m.took.Seconds()/1e6, m.rssKB>>10)
}

// measure runs a child process and returns its wall time and peak RSS.
func measure(what string, bytes int64, name string, args ...string) (measurement, error) {
	c := exec.Command(name, args...)
	c.Stdout, c.Stderr = os.Stderr, os.Stderr
	start := time.Now()
	err := c.Run()
	m := measurement{what: what, took: time.Since(start), bytes: bytes}
	if ru, ok := c.ProcessState.SysUsage().(*syscall.Rusage); ok {
		m.rssKB = ru.Maxrss // KiB on Linux
	}
	if err != nil {
		return m, fmt.Errorf("%s: %w", what, err)
	}
	return m, nil
}

// clients are S3 and KMS clients from the environment (the local stack's).
func clients(ctx context.Context) (*s3.Client, *kms.Client, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, nil, err
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true }), kms.NewFromConfig(cfg), nil
}

func orchestrate(n int64, root, bucket string, skipOfficial bool, extra []string) error {
	ctx := context.Background()
	s3c, kmsc, err := clients(ctx)
	if err != nil {
		return err
	}
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket}); err != nil && !strings.Contains(err.Error(), "BucketAlready") {
		return fmt.Errorf("create bucket %s: %w", bucket, err)
	}
	var keys [2]string
	for i := range keys {
		out, err := kmsc.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("bigobject bench")})
		if err != nil {
			return fmt.Errorf("create KMS key: %w", err)
		}
		keys[i] = aws.ToString(out.KeyMetadata.Arn)
	}
	a, b := keys[0], keys[1]
	dir, err := os.MkdirTemp("", "bigobject")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	rotator := filepath.Join(dir, "rotator")
	build := exec.Command("go", "build", "-o", rotator, "./cmd/rotator")
	build.Dir = root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build rotator: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	want, err := workload.PlaintextSum(n)
	if err != nil {
		return err
	}
	sz := strconv.FormatInt(n, 10)
	var rows []measurement
	fmt.Fprintf(os.Stderr, "bigobject: %d bytes (%s) in s3://%s\n", n, humanSize(n), bucket)

	m, err := measure("official v3.2.0 PutObject (write the source, key A)", n, self, "child-put", bucket, srcKey, a, sz)
	if err != nil {
		return err
	}
	rows = append(rows, m)
	if !skipOfficial {
		m, err = measure("official v3.2.0 GetObject + PutObject (A -> B, new object)", n, self, "child-copy", bucket, srcKey, a, copyKey, b)
		if err != nil {
			return err
		}
		rows = append(rows, m)
	}
	args := append([]string{"run", "--mode", "reencrypt", "--source", "s3://" + bucket + "/obj/", "--from", "kms:" + a, "--to", "kms:" + b,
		"--ledger", filepath.Join(dir, "ledger.db"), "--report", filepath.Join(dir, "report.csv"), "--no-progress", "--s3-no-multipart-checksum"}, extra...)
	m, err = measure("rotator run --mode reencrypt (A -> B, in place) "+strings.Join(extra, " "), n, rotator, args...)
	if err != nil {
		return err
	}
	rows = append(rows, m)
	m, err = measure("official v3.2.0 GetObject of the re-encrypted object (key B), SHA-256 checked", n, self, "child-sum", bucket, srcKey, b, want)
	if err != nil {
		return err
	}
	rows = append(rows, m)

	fmt.Printf("\n%s object, GOMAXPROCS=%s, %s\n\n| what | wall | throughput | peak RSS |\n| --- | --- | --- | --- |\n",
		humanSize(n), os.Getenv("GOMAXPROCS"), time.Now().UTC().Format("2006-01-02"))
	for _, r := range rows {
		fmt.Println(r)
	}
	if !skipOfficial {
		fmt.Printf("\nrotator / official copy: %.2fx the throughput, %.3fx the peak RSS\n",
			rows[1].took.Seconds()/rows[2].took.Seconds(), float64(rows[2].rssKB)/float64(rows[1].rssKB))
	}
	return nil
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d B", n)
}

// child runs one official-client step in its own process, so that its peak
// RSS is its own.
func child(mode string, args []string) error {
	ctx := context.Background()
	s3c, kmsc, err := clients(ctx)
	if err != nil {
		return err
	}
	client := func(keyID string) (*s3ec.S3EncryptionClientV3, error) {
		cmm, err := materials.NewCryptographicMaterialsManager(materials.NewKmsKeyring(kmsc, keyID))
		if err != nil {
			return nil, err
		}
		return s3ec.New(s3c, cmm)
	}
	switch mode {
	case "child-put": // bucket key keyID size
		n, _ := strconv.ParseInt(args[3], 10, 64)
		c, err := client(args[2])
		if err != nil {
			return err
		}
		return workload.Put(ctx, c, args[0], args[1], n)
	case "child-copy": // bucket key keyID toKey toKeyID
		from, err := client(args[2])
		if err != nil {
			return err
		}
		body, out, err := workload.Get(ctx, from, args[0], args[1])
		if err != nil {
			return err
		}
		to, err := client(args[4])
		if err != nil {
			return err
		}
		_, err = to.PutObject(ctx, &s3.PutObjectInput{Bucket: &args[0], Key: &args[3], Body: bytes.NewReader(body),
			Metadata: out.Metadata, ContentType: out.ContentType})
		return err
	case "child-sum": // bucket key keyID wantSHA256
		c, err := client(args[2])
		if err != nil {
			return err
		}
		return workload.Check(ctx, c, args[0], args[1], args[3])
	}
	return fmt.Errorf("unknown mode %s", mode)
}
