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
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
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
	n, err := parseSize(*size)
	if err == nil {
		err = orchestrate(n, *root, *bucket, *skipOfficial, strings.Fields(*rotatorArgs))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bigobject:", err)
		os.Exit(1)
	}
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	for suffix, m := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if strings.HasSuffix(s, suffix) {
			s, mult = strings.TrimSuffix(s, suffix), m
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("-size %q: want bytes, KiB, MiB or GiB", s)
	}
	return n * mult, nil
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

func orchestrate(n int64, root, bucket string, skipOfficial bool, extra []string) error {
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return err
	}
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	kmsc := kms.NewFromConfig(cfg)
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
	want, err := plaintextSum(n)
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

// plaintext is the deterministic plaintext stream of n bytes.
func plaintext(n int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8([32]byte{'r', 'o', 't', 'a', 't', 'o', 'r'}), n)
}

func plaintextSum(n int64) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, plaintext(n)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// child runs one official-client step in its own process, so that its peak
// RSS is its own.
func child(mode string, args []string) error {
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return err
	}
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	kmsc := kms.NewFromConfig(cfg)
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
		body, err := io.ReadAll(plaintext(n))
		if err != nil {
			return err
		}
		c, err := client(args[2])
		if err != nil {
			return err
		}
		_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: &args[0], Key: &args[1], Body: bytes.NewReader(body),
			Metadata: map[string]string{"owner": "bench"}, ContentType: aws.String("application/octet-stream")})
		return err
	case "child-copy": // bucket key keyID toKey toKeyID
		from, err := client(args[2])
		if err != nil {
			return err
		}
		out, err := from.GetObject(ctx, &s3.GetObjectInput{Bucket: &args[0], Key: &args[1]})
		if err != nil {
			return err
		}
		body, err := io.ReadAll(out.Body)
		out.Body.Close()
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
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &args[0], Key: &args[1]})
		if err != nil {
			return err
		}
		defer out.Body.Close()
		h := sha256.New()
		if _, err := io.Copy(h, out.Body); err != nil {
			return err
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != args[3] {
			return errors.New("the re-encrypted object's plaintext differs from what was written")
		}
		return nil
	}
	return fmt.Errorf("unknown mode %s", mode)
}
