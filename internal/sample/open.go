package sample

import (
	"context"
	"io"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/rewrap"
)

// Getter is what Open needs of an S3 client.
type Getter interface {
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

// Open decrypts bucket/key in memory as a reader of the bucket would: it
// reads the object and, when its metadata says so, its instruction file
// (default suffix), unwraps the data key with k, and decrypts the content,
// checking its tag. It returns the plaintext and the envelope; on an
// unwrap or decryption failure, the envelope and the error.
func Open(ctx context.Context, s3c Getter, bucket, key string, k rewrap.Unwrapper) ([]byte, *envelope.Envelope, error) {
	body, meta, err := get(ctx, s3c, bucket, key)
	if err != nil {
		return nil, nil, err
	}
	var instr []byte
	if envelope.NeedsInstructionFile(meta) {
		if instr, _, err = get(ctx, s3c, bucket, envelope.InstructionKey(key, envelope.DefaultInstructionSuffix)); err != nil {
			return nil, nil, err
		}
	}
	env, err := envelope.Parse(meta, instr, envelope.ParseOptions{})
	if err != nil {
		return nil, nil, err
	}
	w, cek := rewrap.FromEnvelope(env)
	dek, err := k.Unwrap(ctx, w, cek)
	if err != nil {
		return nil, env, err
	}
	defer dek.Clear()
	pt, err := envelope.DecryptContent(env, dek, body)
	return pt, env, err
}

func get(ctx context.Context, s3c Getter, bucket, key string) ([]byte, map[string]string, error) {
	out, err := s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return nil, nil, err
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	return b, out.Metadata, err
}
