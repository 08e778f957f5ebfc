package sample

import (
	"bytes"
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/internal/awsx"
	"github.com/rotator-dev/rotator/internal/testenv"
)

func TestSeedWritesDecryptableDecoratedObjects(t *testing.T) {
	testenv.Need(t, testenv.S3, testenv.KMS)
	ctx := context.Background()
	cfg := testenv.AWSConfig(t)
	s3c, kmsc := awsx.S3(cfg), kms.NewFromConfig(cfg)
	bucket := testenv.Name(t)
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatal(err)
	}
	key, err := kmsc.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Seed(ctx, s3c, kmsc, Options{Bucket: bucket, Prefix: "p/", KMSKeyID: *key.KeyMetadata.Arn, Count: 8, MaxSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[Kind]int{}
	for _, o := range objs {
		seen[o.Kind]++
		out, err := s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &o.Key})
		if err != nil {
			t.Fatal(err)
		}
		var ct bytes.Buffer
		ct.ReadFrom(out.Body)
		out.Body.Close()
		if out.Metadata[UserMetaKey] != UserMetaValue || aws.ToString(out.ContentType) != ContentType {
			t.Errorf("%s: decoration missing: %v %v", o.Key, out.Metadata, aws.ToString(out.ContentType))
		}
		var instr []byte
		if o.Kind.Placement == envelope.PlacementInstructionFile {
			ik := envelope.InstructionKey(o.Key, envelope.DefaultInstructionSuffix)
			io, err := s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &ik})
			if err != nil {
				t.Fatalf("%s: instruction file: %v", o.Key, err)
			}
			var b bytes.Buffer
			b.ReadFrom(io.Body)
			io.Body.Close()
			instr = b.Bytes()
		}
		env, err := envelope.Parse(out.Metadata, instr, envelope.ParseOptions{})
		if err != nil {
			t.Fatalf("%s: %v", o.Key, err)
		}
		if env.Format != o.Kind.Format || env.Placement != o.Kind.Placement {
			t.Errorf("%s: got %v/%v, want %v", o.Key, env.Format, env.Placement, o.Kind)
		}
		ec, err := env.KMSContext()
		if err != nil {
			t.Fatal(err)
		}
		d, err := kmsc.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: env.WrappedKey, EncryptionContext: ec})
		if err != nil {
			t.Fatal(err)
		}
		pt, err := envelope.DecryptContent(env, envelope.NewDataKey(d.Plaintext), ct.Bytes())
		if err != nil || len(pt) != o.Size {
			t.Errorf("%s: decrypt: %d bytes, %v; want %d bytes", o.Key, len(pt), err, o.Size)
		}
		tags, err := s3c.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: &bucket, Key: &o.Key})
		if err != nil {
			t.Fatal(err)
		}
		want := TagSet()
		if len(tags.TagSet) != len(want) {
			t.Errorf("%s: tags %v, want %v", o.Key, tags.TagSet, want)
		}
		for _, tg := range tags.TagSet {
			if want[aws.ToString(tg.Key)] != aws.ToString(tg.Value) {
				t.Errorf("%s: tag %s=%s unexpected", o.Key, aws.ToString(tg.Key), aws.ToString(tg.Value))
			}
		}
	}
	if len(seen) != len(AllKinds) {
		t.Errorf("kinds written: %v, want all of %v", seen, AllKinds)
	}
}
