// Package workload is what the suite and bigobject both write and check:
// the deterministic plaintext, object sizes as flags give them, and an
// official S3 Encryption Client's (v3.2.0 or v4.0.0) write of such an
// object and read with its SHA-256 checked. Each command runs these in a
// child process of its own, so that its peak RSS is its own.
package workload

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Client is what the benchmarks use of an official client.
type Client interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

// Plaintext is the deterministic plaintext stream of n bytes: its
// SHA-256 is known without keeping it.
func Plaintext(n int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8([32]byte{'r', 'o', 't', 'a', 't', 'o', 'r'}), n)
}

// PlaintextSum is the hex SHA-256 of the plaintext of n bytes.
func PlaintextSum(n int64) (string, error) {
	return SHA256(Plaintext(n))
}

// SHA256 is the hex SHA-256 of what r reads.
func SHA256(r io.Reader) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ParseSize reads a size in bytes, or with the suffix KiB, MiB or GiB, of
// at least least bytes.
func ParseSize(s string, least int64) (int64, error) {
	mult := int64(1)
	for suffix, m := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if strings.HasSuffix(s, suffix) {
			s, mult = strings.TrimSuffix(s, suffix), m
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < least {
		return 0, fmt.Errorf("%q: want bytes, KiB, MiB or GiB", s)
	}
	return n * mult, nil
}

// Put writes the plaintext of n bytes to bucket/key with c (read whole
// first, as an application holding it would), with user metadata and a
// content type.
func Put(ctx context.Context, c Client, bucket, key string, n int64) error {
	body, err := io.ReadAll(Plaintext(n))
	if err != nil {
		return err
	}
	_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(body),
		Metadata: map[string]string{"owner": "bench"}, ContentType: aws.String("application/octet-stream")})
	return err
}

// Get reads bucket/key whole with c: its plaintext and the response (its
// metadata and content type).
func Get(ctx context.Context, c Client, bucket, key string) ([]byte, *s3.GetObjectOutput, error) {
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return nil, nil, err
	}
	body, err := io.ReadAll(out.Body)
	out.Body.Close()
	if err != nil {
		return nil, nil, err
	}
	return body, out, nil
}

// Check reads bucket/key with c, streaming, and fails unless the
// plaintext's SHA-256 is want.
func Check(ctx context.Context, c Client, bucket, key, want string) error {
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return err
	}
	defer out.Body.Close()
	got, err := SHA256(out.Body)
	if err != nil {
		return err
	}
	if got != want {
		return errors.New("the re-encrypted object's plaintext differs from what was written")
	}
	return nil
}
