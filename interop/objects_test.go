package interop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"testing"

	"github.com/aws/amazon-s3-encryption-client-go/v4/commitment"
	"github.com/aws/aws-sdk-go-v2/aws"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/rotator-dev/rotator/envelope"
)

// written is an object an official client wrote, as it was stored before
// a run: what a run must keep (or, re-encrypting, change) is compared
// against it.
type written struct {
	key    string
	body   []byte
	writer string // "v3.2.0", "v4.0.0" or "legacy"
	raw    []byte
	meta   map[string]string // user metadata, without the envelope
	ct     string
	tags   string
}

// officialObjects has the official clients v3.2.0 (V2) and v4.0.0 (V3)
// write an object under KMS key keyID with the encryption context ec for
// each size and placement, with user metadata, a content type and a tag a
// run must keep. The Go clients write no instruction files: for
// PlacementInstructionFile the envelope is moved into one, as the Java
// client would write it.
func (st *stack) officialObjects(t *testing.T, bucket, keyID string, ec map[string]string, sizes []int, placements ...envelope.Placement) []written {
	t.Helper()
	ctx := context.Background()
	writers := map[string]officialClient{
		"v3.2.0": st.v3(t, keyID),
		"v4.0.0": st.v4(t, keyID, commitment.REQUIRE_ENCRYPT_REQUIRE_DECRYPT),
	}
	var objs []written
	for wname, w := range writers {
		for _, size := range sizes {
			for _, p := range placements {
				key := fmt.Sprintf("%s/%v/%d bytes", wname, p, size)
				body := randomBytes(size)
				if _, err := w.PutObject(withEC(ctx, ec), &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(body),
					Metadata: map[string]string{"owner": "team-x"}, ContentType: aws.String("text/plain"),
					Tagging: aws.String("project=interop")}); err != nil {
					t.Fatalf("%s: official PutObject: %v", key, err)
				}
				if p == envelope.PlacementInstructionFile {
					st.intoInstructionFile(t, bucket, key)
					if _, err := st.s3.PutObjectTagging(ctx, &s3.PutObjectTaggingInput{Bucket: &bucket, Key: &key,
						Tagging: &s3types.Tagging{TagSet: []s3types.Tag{{Key: aws.String("project"), Value: aws.String("interop")}}}}); err != nil {
						t.Fatal(err)
					}
				}
				o, meta := st.record(t, bucket, key, body, wname)
				if p == envelope.PlacementMetadata && envelope.NeedsInstructionFile(meta) {
					t.Fatalf("%s: the official client wrote no envelope in metadata", key)
				}
				objs = append(objs, o)
			}
		}
	}
	return objs
}

// intoInstructionFile moves the envelope an official client wrote in the
// metadata of bucket/key into KEY.instruction, content and wrapped key as
// the client wrote them: the Go clients write no instruction files (see
// store for the metadata the object gets).
func (st *stack) intoInstructionFile(t *testing.T, bucket, key string) {
	t.Helper()
	ct, meta, _ := st.raw(t, bucket, key)
	env, err := envelope.Parse(meta, nil, envelope.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st.store(t, bucket, key, env, ct, envelope.PlacementInstructionFile)
}

// record reads bucket/key as stored: the written object writer wrote
// with plaintext body, and its whole metadata.
func (st *stack) record(t *testing.T, bucket, key string, body []byte, writer string) (written, map[string]string) {
	t.Helper()
	raw, meta, head := st.raw(t, bucket, key)
	return written{key: key, body: body, writer: writer, raw: raw, meta: userMeta(meta),
		ct: aws.ToString(head.ContentType), tags: tagString(t, st, bucket, key)}, meta
}

// kept checks that o's user metadata, content type and tags are as
// written, and returns its stored bytes and metadata now.
func (st *stack) kept(t *testing.T, bucket string, o written) ([]byte, map[string]string) {
	t.Helper()
	raw, meta, head := st.raw(t, bucket, o.key)
	if !maps.Equal(userMeta(meta), o.meta) || aws.ToString(head.ContentType) != o.ct || tagString(t, st, bucket, o.key) != o.tags {
		t.Errorf("%s: metadata, content type or tags changed: %v %q", o.key, userMeta(meta), aws.ToString(head.ContentType))
	}
	return raw, meta
}

// opensOnlyUnder checks that the official clients open o under KMS key
// newKey with its plaintext, with and without the encryption context ec
// (without only, when ec is nil); v4.0.0 with REQUIRE_ENCRYPT_REQUIRE_DECRYPT
// too when v3 (the object is V3). v3.2.0 must refuse it under oldKey with
// IncorrectKeyException.
func (st *stack) opensOnlyUnder(t *testing.T, bucket string, o written, ec map[string]string, newKey, oldKey string, v3 bool) {
	t.Helper()
	format := envelope.V2
	if v3 {
		format = envelope.V3
	}
	for rname, c := range st.readers(t, keys{kmsKey: newKey}, envelope.WrapKMSContext, format) {
		for _, withContext := range []bool{false, true} {
			if withContext && ec == nil {
				continue
			}
			var got []byte
			var err error
			if withContext {
				got, err = getEC(c, bucket, o.key, ec)
			} else {
				got, err = get(c, bucket, o.key)
			}
			if err != nil || !bytes.Equal(got, o.body) {
				t.Errorf("%s: official %s on the new key (context %v): %v", o.key, rname, withContext, err)
			}
		}
	}
	var ike *kmstypes.IncorrectKeyException
	if _, err := get(st.v3(t, oldKey), bucket, o.key); !errors.As(err, &ike) {
		t.Errorf("%s: official client on the old key: %v, want IncorrectKeyException", o.key, err)
	}
}

func userMeta(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if !envelope.IsEnvelopeField(k) {
			out[k] = v
		}
	}
	return out
}

func tagString(t *testing.T, st *stack, bucket, key string) string {
	t.Helper()
	out, err := st.s3.GetObjectTagging(context.Background(), &s3.GetObjectTaggingInput{Bucket: &bucket, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	s := ""
	for _, tg := range out.TagSet {
		s += aws.ToString(tg.Key) + "=" + aws.ToString(tg.Value) + ";"
	}
	return s
}
