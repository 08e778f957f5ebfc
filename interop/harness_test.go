package interop

import (
	"bytes"
	"context"
	"io"
	"testing"

	s3ecv3 "github.com/aws/amazon-s3-encryption-client-go/v3/client"
	matv3 "github.com/aws/amazon-s3-encryption-client-go/v3/materials"
	s3ecv4 "github.com/aws/amazon-s3-encryption-client-go/v4/client"
	"github.com/aws/amazon-s3-encryption-client-go/v4/commitment"
	matv4 "github.com/aws/amazon-s3-encryption-client-go/v4/materials"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rotator-dev/rotator/internal/testenv"
)

// stack holds clients for the local stack. The official clients fetch
// instruction files through an S3 client built from the environment, so the
// stack's variables must be exported (make test does it).
type stack struct {
	cfg aws.Config
	s3  *s3.Client
	kms *kms.Client
}

func newStack(t *testing.T) *stack {
	t.Helper()
	testenv.Need(t, testenv.S3, testenv.KMS)
	cfg := testenv.AWSConfig(t)
	return &stack{
		cfg: cfg,
		s3:  s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true }),
		kms: kms.NewFromConfig(cfg),
	}
}

// bucket creates a fresh bucket and removes it (and everything in it) when
// the test ends.
func (st *stack) bucket(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	name := testenv.Name(t)
	if _, err := st.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &name}); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
	t.Cleanup(func() {
		p := s3.NewListObjectsV2Paginator(st.s3, &s3.ListObjectsV2Input{Bucket: &name})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return
			}
			for _, o := range page.Contents {
				st.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &name, Key: o.Key})
			}
		}
		st.s3.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: &name})
	})
	return name
}

// key creates a KMS key and returns its ARN.
func (st *stack) key(t *testing.T) string {
	t.Helper()
	out, err := st.kms.CreateKey(context.Background(), &kms.CreateKeyInput{Description: aws.String(t.Name())})
	if err != nil {
		t.Fatalf("create KMS key: %v", err)
	}
	return *out.KeyMetadata.Arn
}

// officialClient is what the tests need of either official client.
type officialClient interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

// v3 returns the official Go client v3.2.0 (writes V2, reads V2 and V3) with a
// KMS keyring on keyID.
func (st *stack) v3(t *testing.T, keyID string) officialClient {
	t.Helper()
	return st.v3With(t, matv3.NewKmsKeyring(st.kms, keyID))
}

func (st *stack) v3With(t *testing.T, kr matv3.Keyring) officialClient {
	t.Helper()
	cmm, err := matv3.NewCryptographicMaterialsManager(kr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s3ecv3.New(st.s3, cmm)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// v4 returns the official Go client v4.0.0 with a KMS keyring on keyID.
// REQUIRE_ENCRYPT_REQUIRE_DECRYPT (its default) writes and reads V3 only;
// REQUIRE_ENCRYPT_ALLOW_DECRYPT also reads V2.
func (st *stack) v4(t *testing.T, keyID string, policy commitment.CommitmentPolicy) officialClient {
	t.Helper()
	return st.v4With(t, matv4.NewKmsKeyring(st.kms, keyID), policy)
}

func (st *stack) v4With(t *testing.T, kr matv4.Keyring, policy commitment.CommitmentPolicy) officialClient {
	t.Helper()
	cmm, err := matv4.NewCryptographicMaterialsManager(kr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s3ecv4.New(st.s3, cmm, func(o *s3ecv4.EncryptionClientOptions) { o.CommitmentPolicy = policy })
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func put(t *testing.T, c officialClient, bucket, key string, body []byte, extra func(*s3.PutObjectInput)) {
	t.Helper()
	in := &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(body)}
	if extra != nil {
		extra(in)
	}
	if _, err := c.PutObject(context.Background(), in); err != nil {
		t.Fatalf("official client PutObject %s: %v", key, err)
	}
}

// get decrypts bucket/key with an official client.
func get(c officialClient, bucket, key string) ([]byte, error) {
	out, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}

// raw reads an object without decryption: its stored bytes and metadata.
func (st *stack) raw(t *testing.T, bucket, key string) ([]byte, map[string]string, *s3.GetObjectOutput) {
	t.Helper()
	out, err := st.s3.GetObject(context.Background(), &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		t.Fatalf("GetObject %s: %v", key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b, out.Metadata, out
}
