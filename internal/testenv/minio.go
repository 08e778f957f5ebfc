package testenv

import (
	"context"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// MinIOS3 returns an S3 client for the stack's MinIO server, with MinIO's
// own credentials and path-style addressing, or skips t (fails it when
// Required) if MinIO is not configured and reachable. The client is
// otherwise configured like the AWS SDK's default (checksums included).
func MinIOS3(t testing.TB, optFns ...func(*s3.Options)) *s3.Client {
	t.Helper()
	Need(t, MinIO)
	region := os.Getenv("AWS_REGION")
	if region == "" {
		region = "us-east-1"
	}
	cfg, err := config.LoadDefaultConfig(context.Background(),
		config.WithRegion(region),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(
			os.Getenv(EnvMinIOAccessKey), os.Getenv(EnvMinIOSecretKey), "")))
	if err != nil {
		t.Fatalf("load AWS config for MinIO: %v", err)
	}
	endpoint := os.Getenv(EnvMinIOEndpoint)
	return s3.NewFromConfig(cfg, append([]func(*s3.Options){func(o *s3.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.UsePathStyle = true
		o.DisableLogOutputChecksumValidationSkipped = true // as awsx.S3
	}}, optFns...)...)
}
