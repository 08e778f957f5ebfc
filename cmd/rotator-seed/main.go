// Command rotator-seed prepares a bucket for the demo and for benchmarks: it
// creates KMS keys with aliases and writes client-side encrypted sample
// objects exactly as the official S3 Encryption Clients lay them out.
//
//	rotator-seed key alias/NAME                 create a KMS key with this alias (or print the existing one)
//	rotator-seed objects -bucket B -key KEY [-prefix P] [-count N] [-max-size BYTES]
//
// It uses the standard AWS configuration chain (AWS_ENDPOINT_URL_S3 and
// AWS_ENDPOINT_URL_KMS for the local stack).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/rotator-dev/rotator/internal/awsx"
	"github.com/rotator-dev/rotator/internal/sample"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "rotator-seed: error: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: rotator-seed key alias/NAME | rotator-seed objects -bucket B -key KEY [-prefix P] [-count N]")
	}
	cfg, err := awsx.Load(ctx, awsx.Options{})
	if err != nil {
		return err
	}
	kmsc := awsx.KMS(cfg, awsx.NewPacer(awsx.PacerOptions{}))
	switch args[0] {
	case "key":
		if len(args) != 2 || !strings.HasPrefix(args[1], "alias/") {
			return errors.New("usage: rotator-seed key alias/NAME")
		}
		arn, err := ensureKey(ctx, kmsc, args[1])
		if err != nil {
			return err
		}
		fmt.Println(arn)
		return nil
	case "objects":
		fs := flag.NewFlagSet("objects", flag.ContinueOnError)
		bucket := fs.String("bucket", "", "bucket to write to (created if missing)")
		key := fs.String("key", "", "KMS key id, ARN or alias that wraps the data keys")
		prefix := fs.String("prefix", "", "key prefix")
		count := fs.Int("count", 1000, "number of objects")
		maxSize := fs.Int("max-size", 4096, "largest body in bytes")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *bucket == "" || *key == "" {
			return errors.New("objects: -bucket and -key are required")
		}
		s3c := awsx.S3(cfg)
		if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: bucket}); err != nil {
			var owned *s3types.BucketAlreadyOwnedByYou
			var exists *s3types.BucketAlreadyExists
			if !errors.As(err, &owned) && !errors.As(err, &exists) {
				return fmt.Errorf("create bucket %s: %w", *bucket, err)
			}
		}
		objs, err := sample.Seed(ctx, s3c, kmsc, sample.Options{Bucket: *bucket, Prefix: *prefix, KMSKeyID: *key, Count: *count, MaxSize: *maxSize})
		if err != nil {
			return err
		}
		byKind := map[string]int{}
		for _, o := range objs {
			byKind[o.Kind.String()]++
		}
		fmt.Printf("wrote %d objects to s3://%s/%s under %s: %v\n", len(objs), *bucket, *prefix, *key, byKind)
		return nil
	default:
		return fmt.Errorf("unknown command %q", args[0])
	}
}

// ensureKey returns the ARN of the key behind alias, creating both if needed.
func ensureKey(ctx context.Context, c *kms.Client, alias string) (string, error) {
	d, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &alias})
	if err == nil {
		return *d.KeyMetadata.Arn, nil
	}
	var nf *kmstypes.NotFoundException
	if !errors.As(err, &nf) {
		return "", fmt.Errorf("describe %s: %w", alias, err)
	}
	k, err := c.CreateKey(ctx, &kms.CreateKeyInput{Description: &alias})
	if err != nil {
		return "", fmt.Errorf("create key: %w", err)
	}
	if _, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: &alias, TargetKeyId: k.KeyMetadata.KeyId}); err != nil {
		return "", fmt.Errorf("create alias %s: %w", alias, err)
	}
	return *k.KeyMetadata.Arn, nil
}
