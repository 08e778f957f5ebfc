// Package sample writes client-side encrypted sample objects, exactly as the
// official S3 Encryption Clients lay them out, for the demo, benchmarks and
// pipeline tests.
//
// Terms:
//   - Mix: which formats and placements to write, in turn: V2 and V3, each
//     with the envelope in the object's metadata or in an instruction file.
//   - Decoration: the user metadata, content type and tags every sample
//     carries, so that a rotation can be checked to keep them.
package sample

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"math/big"
	"net/url"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/sync/errgroup"

	"github.com/rotator-dev/rotator/envelope"
)

// S3 is what Seed needs of an S3 client.
type S3 interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
}

// KMS is what Seed needs of a KMS client.
type KMS interface {
	GenerateDataKey(ctx context.Context, in *kms.GenerateDataKeyInput, optFns ...func(*kms.Options)) (*kms.GenerateDataKeyOutput, error)
}

// Kind is one format and placement.
type Kind struct {
	Format    envelope.Format
	Placement envelope.Placement
}

func (k Kind) String() string {
	p := "meta"
	if k.Placement == envelope.PlacementInstructionFile {
		p = "instr"
	}
	return fmt.Sprintf("%v-%s", k.Format, p)
}

// AllKinds is the default mix.
var AllKinds = []Kind{
	{envelope.V2, envelope.PlacementMetadata},
	{envelope.V3, envelope.PlacementMetadata},
	{envelope.V2, envelope.PlacementInstructionFile},
	{envelope.V3, envelope.PlacementInstructionFile},
}

// Options describe a batch of samples.
type Options struct {
	Bucket string
	Prefix string
	// KMSKeyID wraps every data key (kms+context), as the official clients'
	// KMS keyring does.
	KMSKeyID string
	// Count objects, written Concurrency at a time (default 16).
	Count       int
	Concurrency int
	// MinSize and MaxSize of a body in bytes; sizes are uniform in
	// [MinSize, MaxSize] (default MaxSize 4096).
	MinSize, MaxSize int
	// Kinds to cycle through (default AllKinds).
	Kinds []Kind
}

// Object is one written sample.
type Object struct {
	Key  string
	Kind Kind
	Size int
}

// Decoration every sample carries.
const (
	UserMetaKey   = "owner"
	UserMetaValue = "sample-team"
	ContentType   = "application/octet-stream"
	Tagging       = "project=rotator&kind=sample"
)

// Seed writes opts.Count objects and returns them in key order. Each data
// key comes from KMS GenerateDataKey and is cleared after use.
func Seed(ctx context.Context, s3c S3, kmsc KMS, opts Options) ([]Object, error) {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 16
	}
	if opts.MaxSize <= 0 {
		opts.MaxSize = 4096
	}
	if opts.MinSize < 0 || opts.MinSize > opts.MaxSize {
		return nil, fmt.Errorf("sample: MinSize %d not in [0, MaxSize %d]", opts.MinSize, opts.MaxSize)
	}
	if len(opts.Kinds) == 0 {
		opts.Kinds = AllKinds
	}
	objs := make([]Object, opts.Count)
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Concurrency)
	for i := range objs {
		g.Go(func() error {
			kind := opts.Kinds[i%len(opts.Kinds)]
			n, err := rand.Int(rand.Reader, big.NewInt(int64(opts.MaxSize-opts.MinSize)+1))
			if err != nil {
				return err
			}
			o := Object{Key: fmt.Sprintf("%s%s/obj-%06d", opts.Prefix, kind, i), Kind: kind, Size: opts.MinSize + int(n.Int64())}
			if err := put(ctx, s3c, kmsc, opts, o); err != nil {
				return fmt.Errorf("sample %s: %w", o.Key, err)
			}
			objs[i] = o
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return objs, nil
}

func put(ctx context.Context, s3c S3, kmsc KMS, opts Options, o Object) error {
	body := make([]byte, o.Size)
	if _, err := rand.Read(body); err != nil {
		return err
	}
	cek := envelope.ContentAESGCM
	if o.Kind.Format == envelope.V3 {
		cek = envelope.ContentCommitKey
	}
	ec, err := envelope.NewKMSContext(cek, map[string]string{"sample": "rotator"})
	if err != nil {
		return err
	}
	gen, err := kmsc.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{
		KeyId: &opts.KMSKeyID, KeySpec: "AES_256", EncryptionContext: ec,
	})
	if err != nil {
		return fmt.Errorf("kms GenerateDataKey: %w", err)
	}
	dek := envelope.NewDataKey(gen.Plaintext)
	clear(gen.Plaintext)
	defer dek.Clear()
	env, ct, err := envelope.EncryptContent(o.Kind.Format, dek, body, rand.Reader)
	if err != nil {
		return err
	}
	if env, err = env.WithWrappedKey(gen.CiphertextBlob, envelope.WrapKMSContext, ec); err != nil {
		return err
	}
	var meta map[string]string
	if o.Kind.Placement == envelope.PlacementMetadata {
		if meta, err = env.Metadata(); err != nil {
			return err
		}
	} else {
		var instr []byte
		if meta, instr, err = env.InstructionFile(); err != nil {
			return err
		}
		ik := envelope.InstructionKey(o.Key, envelope.DefaultInstructionSuffix)
		if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{
			Bucket: &opts.Bucket, Key: &ik, Body: bytes.NewReader(instr),
			Metadata: envelope.InstructionObjectMetadata(),
		}); err != nil {
			return fmt.Errorf("put instruction file: %w", err)
		}
	}
	meta[UserMetaKey] = UserMetaValue
	_, err = s3c.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &opts.Bucket, Key: &o.Key, Body: bytes.NewReader(ct), Metadata: meta,
		ContentType: aws.String(ContentType), Tagging: aws.String(Tagging),
	})
	return err
}

// TagSet is Tagging as a map, for checks.
func TagSet() map[string]string {
	v, _ := url.ParseQuery(Tagging)
	m := map[string]string{}
	for k := range v {
		m[k] = v.Get(k)
	}
	return m
}
