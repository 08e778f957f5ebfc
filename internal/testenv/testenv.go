// Package testenv connects integration tests to the local stack (versitygw,
// dynalite, the KMS test server, SoftHSM and MinIO) that scripts/stack
// starts, and to the Pushgateway it installs (StartPushgateway).
//
// versitygw is the S3 server of every test (the AWS_* variables point at
// it). MinIO is a second S3 server for what versitygw gets wrong (it
// computes UploadPartCopy checksums over the whole object, so every
// multipart copy that asks for checksums fails with BadDigest): tests reach
// it only on purpose, with MinIOS3 and its own credentials.
//
// A test calls Need with the services it uses. When the stack's variables are
// missing the test is skipped with a message naming the command that starts
// the stack, unless ROTATOR_INTEGRATION=require (set by `make test` and CI), in
// which case a missing or unreachable service fails the test: integration
// tests never skip silently in CI.
package testenv

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
)

// Service names accepted by Need.
const (
	S3       = "s3"
	KMS      = "kms"
	DynamoDB = "dynamodb"
	PKCS11   = "pkcs11"
	// MinIO is the second S3 server (see MinIOS3).
	MinIO = "minio"
	// LambdaRIE is the AWS Lambda Runtime Interface Emulator, a binary
	// scripts/stack installs (not a server: tests start it).
	LambdaRIE = "lambda-rie"
)

// Variables the stack's env file (.stack/env) exports.
const (
	EnvS3Endpoint       = "AWS_ENDPOINT_URL_S3"
	EnvKMSEndpoint      = "AWS_ENDPOINT_URL_KMS"
	EnvDynamoDBEndpoint = "AWS_ENDPOINT_URL_DYNAMODB"
	EnvPKCS11Module     = "ROTATOR_PKCS11_MODULE"
	EnvPKCS11Token      = "ROTATOR_PKCS11_TOKEN"
	EnvPKCS11PinFile    = "ROTATOR_PKCS11_PIN_FILE"
	EnvSoftHSMConf      = "SOFTHSM2_CONF"
	EnvMinIOEndpoint    = "ROTATOR_MINIO_ENDPOINT"
	EnvMinIOAccessKey   = "ROTATOR_MINIO_ACCESS_KEY"
	EnvMinIOSecretKey   = "ROTATOR_MINIO_SECRET_KEY"
	// EnvLambdaRIE is the path of the aws-lambda-rie binary.
	EnvLambdaRIE = "ROTATOR_LAMBDA_RIE"
	// EnvRequire set to "require" turns every skip into a failure.
	EnvRequire = "ROTATOR_INTEGRATION"
)

const hint = "start the local stack with `make stack` and `. .stack/env`, or run everything with `make test`"

// Required reports whether integration tests must run (CI and `make test`).
func Required() bool { return os.Getenv(EnvRequire) == "require" }

// Need skips (or, when Required, fails) t unless every named service of the
// local stack is configured and reachable.
func Need(t testing.TB, services ...string) {
	t.Helper()
	for _, s := range services {
		if err := check(s); err != nil {
			if Required() {
				t.Fatalf("integration test needs %s: %v (%s)", s, err, hint)
			}
			t.Skipf("integration test needs %s: %v (%s)", s, err, hint)
		}
	}
}

var (
	probeMu sync.Mutex
	probed  = map[string]error{}
)

func check(service string) error {
	switch service {
	case S3:
		return reachable(EnvS3Endpoint)
	case KMS:
		return reachable(EnvKMSEndpoint)
	case DynamoDB:
		return reachable(EnvDynamoDBEndpoint)
	case MinIO:
		for _, v := range []string{EnvMinIOAccessKey, EnvMinIOSecretKey} {
			if os.Getenv(v) == "" {
				return fmt.Errorf("%s is not set", v)
			}
		}
		return reachable(EnvMinIOEndpoint)
	case LambdaRIE:
		p := os.Getenv(EnvLambdaRIE)
		if p == "" {
			return fmt.Errorf("%s is not set", EnvLambdaRIE)
		}
		if st, err := os.Stat(p); err != nil || st.Mode()&0o111 == 0 {
			return fmt.Errorf("%s=%s is not an executable (%v): scripts/stack install builds it", EnvLambdaRIE, p, err)
		}
		return nil
	case PKCS11:
		for _, v := range []string{EnvPKCS11Module, EnvPKCS11Token, EnvPKCS11PinFile, EnvSoftHSMConf} {
			if os.Getenv(v) == "" {
				return fmt.Errorf("%s is not set", v)
			}
		}
		for _, v := range []string{EnvPKCS11Module, EnvPKCS11PinFile, EnvSoftHSMConf} {
			if _, err := os.Stat(os.Getenv(v)); err != nil {
				return fmt.Errorf("%s: %w", v, err)
			}
		}
		return nil
	case Pushgateway:
		return checkPushgateway()
	default:
		return fmt.Errorf("unknown service %q", service)
	}
}

// reachable checks once per process that the endpoint in variable v accepts
// TCP connections.
func reachable(v string) error {
	endpoint := os.Getenv(v)
	if endpoint == "" {
		return fmt.Errorf("%s is not set", v)
	}
	probeMu.Lock()
	defer probeMu.Unlock()
	if err, ok := probed[endpoint]; ok {
		return err
	}
	u, err := url.Parse(endpoint)
	if err == nil {
		var c net.Conn
		c, err = net.DialTimeout("tcp", u.Host, 2*time.Second)
		if err == nil {
			c.Close()
		}
	}
	if err != nil {
		err = fmt.Errorf("%s=%s is not reachable: %w", v, endpoint, err)
	}
	probed[endpoint] = err
	return err
}

// AWSConfig loads the standard AWS configuration chain, which picks up the
// stack's endpoints, region and static credentials from the environment.
func AWSConfig(t testing.TB) aws.Config {
	t.Helper()
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		t.Fatalf("load AWS config: %v", err)
	}
	return cfg
}

// Name returns a unique, lowercase name usable as a bucket name or key prefix
// for the calling test.
func Name(t testing.TB) string {
	n := strings.ToLower(t.Name())
	n = strings.Map(func(r rune) rune {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			return r
		}
		return '-'
	}, n)
	if len(n) > 40 {
		n = n[:40]
	}
	return strings.Trim(fmt.Sprintf("%s-%x", n, time.Now().UnixNano()&0xffffffffff), "-")
}
