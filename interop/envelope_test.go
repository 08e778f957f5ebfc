package interop

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/url"
	"testing"

	"github.com/aws/amazon-s3-encryption-client-go/v4/commitment"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/rotator-dev/rotator/envelope"
)

// bodies covers empty, one byte, a block boundary and a multi-block size.
var bodies = map[string][]byte{
	"empty": {},
	"1B":    {0x42},
	"16B":   bytes.Repeat([]byte{7}, 16),
	"100K":  randomBytes(100_000),
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}

// keys is the wrapping material for one test.
type keys struct {
	kmsKey string
	aes    []byte
	rsa    *rsa.PrivateKey
}

func newKeys(t *testing.T, st *stack) keys {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return keys{kmsKey: st.key(t), aes: randomBytes(32), rsa: k}
}

// wrap wraps dek with the chosen algorithm as rotator does.
func (st *stack) wrap(t *testing.T, k keys, alg envelope.WrapAlg, cek envelope.ContentAlg, dek *envelope.DataKey) ([]byte, map[string]string) {
	t.Helper()
	switch alg {
	case envelope.WrapKMSContext:
		ec, err := envelope.NewKMSContext(cek, map[string]string{"department": "interop"})
		if err != nil {
			t.Fatal(err)
		}
		out, err := st.kms.Encrypt(context.Background(), &kms.EncryptInput{KeyId: &k.kmsKey, Plaintext: dek.Bytes(), EncryptionContext: ec})
		if err != nil {
			t.Fatalf("kms Encrypt: %v", err)
		}
		return out.CiphertextBlob, ec
	case envelope.WrapAESGCM:
		w, err := envelope.WrapKeyAESGCM(k.aes, dek, cek, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return w, map[string]string{"kek": "interop-aes"}
	case envelope.WrapRSAOAEPSHA1:
		w, err := envelope.WrapKeyRSAOAEP(&k.rsa.PublicKey, dek, cek, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return w, map[string]string{}
	}
	t.Fatalf("unexpected wrap alg %s", alg)
	return nil, nil
}

// store writes env and ciphertext with the given placement using plain S3
// calls, as rotator would, plus some user metadata that must survive.
func (st *stack) store(t *testing.T, bucket, key string, env *envelope.Envelope, ct []byte, p envelope.Placement) {
	t.Helper()
	ctx := context.Background()
	var meta map[string]string
	var err error
	if p == envelope.PlacementMetadata {
		meta, err = env.Metadata()
	} else {
		var instr []byte
		meta, instr, err = env.InstructionFile()
		if err == nil {
			ik := envelope.InstructionKey(key, envelope.DefaultInstructionSuffix)
			_, err = st.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &ik, Body: bytes.NewReader(instr),
				Metadata: envelope.InstructionObjectMetadata()})
		}
	}
	if err != nil {
		t.Fatalf("store %s: %v", key, err)
	}
	meta["owner"] = "team-interop"
	if _, err := st.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(ct),
		Metadata: meta, ContentType: aws.String("application/x-test")}); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

// readers returns the official clients able to read format f with keys k and
// wrapping alg.
func (st *stack) readers(t *testing.T, k keys, alg envelope.WrapAlg, f envelope.Format) map[string]officialClient {
	r := map[string]officialClient{}
	if alg == envelope.WrapKMSContext {
		r["v3.2.0"] = st.v3(t, k.kmsKey)
		r["v4.0.0 allow-decrypt"] = st.v4(t, k.kmsKey, commitment.REQUIRE_ENCRYPT_ALLOW_DECRYPT)
		if f == envelope.V3 {
			r["v4.0.0 require-decrypt"] = st.v4(t, k.kmsKey, commitment.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
		}
	} else {
		r["v3.2.0"] = st.v3With(t, localKeyringV3{aes: k.aes, rsa: k.rsa})
		r["v4.0.0 allow-decrypt"] = st.v4With(t, localKeyringV4{aes: k.aes, rsa: k.rsa}, commitment.REQUIRE_ENCRYPT_ALLOW_DECRYPT)
		if f == envelope.V3 {
			r["v4.0.0 require-decrypt"] = st.v4With(t, localKeyringV4{aes: k.aes, rsa: k.rsa}, commitment.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
		}
	}
	return r
}

// TestEnvelopeWritesOfficialReads: objects written by package envelope, in
// both formats and placements and every wrapping it writes, are decrypted by
// the official clients.
func TestEnvelopeWritesOfficialReads(t *testing.T) {
	st := newStack(t)
	bucket := st.bucket(t)
	k := newKeys(t, st)
	for _, f := range []envelope.Format{envelope.V2, envelope.V3} {
		for _, p := range []envelope.Placement{envelope.PlacementMetadata, envelope.PlacementInstructionFile} {
			for _, alg := range []envelope.WrapAlg{envelope.WrapKMSContext, envelope.WrapAESGCM, envelope.WrapRSAOAEPSHA1} {
				for name, body := range bodies {
					key := fmt.Sprintf("%v/%v/%s/%s", f, p, url.PathEscape(string(alg)), name)
					dek, err := envelope.GenerateDataKey(rand.Reader)
					if err != nil {
						t.Fatal(err)
					}
					env, ct, err := envelope.EncryptContent(f, dek, body, rand.Reader)
					if err != nil {
						t.Fatal(err)
					}
					w, md := st.wrap(t, k, alg, env.CEKAlg, dek)
					dek.Clear()
					if env, err = env.WithWrappedKey(w, alg, md); err != nil {
						t.Fatal(err)
					}
					st.store(t, bucket, key, env, ct, p)
					for rname, c := range st.readers(t, k, alg, f) {
						got, err := get(c, bucket, key)
						if err != nil {
							t.Errorf("%s: official %s: %v", key, rname, err)
						} else if !bytes.Equal(got, body) {
							t.Errorf("%s: official %s: plaintext differs", key, rname)
						}
					}
				}
			}
		}
	}
}

// decryptWithEnvelope opens an object with package envelope alone (KMS
// Decrypt for the data key).
func (st *stack) decryptWithEnvelope(bucket, key, kmsKey string, k keys) ([]byte, error) {
	ctx := context.Background()
	out, err := st.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return nil, err
	}
	ct := new(bytes.Buffer)
	_, err = ct.ReadFrom(out.Body)
	out.Body.Close()
	if err != nil {
		return nil, err
	}
	var instr []byte
	if envelope.NeedsInstructionFile(out.Metadata) {
		ik := envelope.InstructionKey(key, envelope.DefaultInstructionSuffix)
		io, err := st.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &ik})
		if err != nil {
			return nil, err
		}
		b := new(bytes.Buffer)
		_, err = b.ReadFrom(io.Body)
		io.Body.Close()
		if err != nil {
			return nil, err
		}
		instr = b.Bytes()
	}
	env, err := envelope.Parse(out.Metadata, instr, envelope.ParseOptions{})
	if err != nil {
		return nil, err
	}
	var dek *envelope.DataKey
	switch env.WrapAlg {
	case envelope.WrapKMSContext:
		ec, err := env.KMSContext()
		if err != nil {
			return nil, err
		}
		d, err := st.kms.Decrypt(ctx, &kms.DecryptInput{KeyId: &kmsKey, CiphertextBlob: env.WrappedKey, EncryptionContext: ec})
		if err != nil {
			return nil, err
		}
		dek = envelope.NewDataKey(d.Plaintext)
	case envelope.WrapAESGCM:
		if dek, err = envelope.UnwrapKeyAESGCM(k.aes, env.WrappedKey, env.CEKAlg); err != nil {
			return nil, err
		}
	case envelope.WrapRSAOAEPSHA1:
		if dek, err = envelope.UnwrapKeyRSAOAEP(k.rsa, env.WrappedKey, env.CEKAlg); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unexpected wrap alg %s", env.WrapAlg)
	}
	defer dek.Clear()
	return envelope.DecryptContent(env, dek, ct.Bytes())
}

// TestOfficialWritesEnvelopeReads: objects written by the official clients
// (v3.2.0 writes V2, v4.0.0 writes V3) are parsed and decrypted by package
// envelope.
func TestOfficialWritesEnvelopeReads(t *testing.T) {
	st := newStack(t)
	bucket := st.bucket(t)
	k := newKeys(t, st)
	writers := map[string]officialClient{
		"v3.2.0": st.v3(t, k.kmsKey),
		"v4.0.0": st.v4(t, k.kmsKey, commitment.REQUIRE_ENCRYPT_REQUIRE_DECRYPT),
	}
	for wname, w := range writers {
		for name, body := range bodies {
			key := wname + "/" + name
			put(t, w, bucket, key, body, nil)
			got, err := st.decryptWithEnvelope(bucket, key, k.kmsKey, k)
			if err != nil {
				t.Errorf("%s: envelope: %v", key, err)
			} else if !bytes.Equal(got, body) {
				t.Errorf("%s: envelope: plaintext differs", key)
			}
		}
	}
}

// selfCopy replaces an object's metadata with a self-copy guarded by its
// ETag, as the commit stage does (the full header handling lives in package
// commit; here the objects carry only user metadata and a content type).
func (st *stack) selfCopy(t *testing.T, bucket, key string, meta map[string]string, etag, contentType *string) {
	t.Helper()
	src := bucket + "/" + url.PathEscape(key)
	if _, err := st.s3.CopyObject(context.Background(), &s3.CopyObjectInput{
		Bucket: &bucket, Key: &key, CopySource: &src, CopySourceIfMatch: etag,
		MetadataDirective: s3types.MetadataDirectiveReplace, Metadata: meta, ContentType: contentType,
	}); err != nil {
		t.Fatalf("self-copy %s: %v", key, err)
	}
}

// TestRewrapByReEncryptOpensWithNewKey: an object written by each official
// client under key A, rewrapped to key B with KMS ReEncrypt and envelope's
// WithWrappedKey, opens with the official client on key B and no longer on A;
// body and other metadata are unchanged.
func TestRewrapByReEncryptOpensWithNewKey(t *testing.T) {
	st := newStack(t)
	bucket := st.bucket(t)
	ctx := context.Background()
	a, b := st.key(t), st.key(t)
	body := randomBytes(4096)
	writers := map[string]officialClient{
		"v3.2.0": st.v3(t, a),
		"v4.0.0": st.v4(t, a, commitment.REQUIRE_ENCRYPT_REQUIRE_DECRYPT),
	}
	for wname, w := range writers {
		key := wname + "/rewrap me"
		put(t, w, bucket, key, body, func(in *s3.PutObjectInput) {
			in.Metadata = map[string]string{"owner": "team-x"}
			in.ContentType = aws.String("text/plain")
		})
		ctBefore, meta, head := st.raw(t, bucket, key)
		env, err := envelope.Parse(meta, nil, envelope.ParseOptions{})
		if err != nil {
			t.Fatalf("%s: parse: %v", key, err)
		}
		ec, err := env.KMSContext()
		if err != nil {
			t.Fatal(err)
		}
		re, err := st.kms.ReEncrypt(ctx, &kms.ReEncryptInput{
			CiphertextBlob: env.WrappedKey, SourceKeyId: &a, SourceEncryptionContext: ec,
			DestinationKeyId: &b, DestinationEncryptionContext: ec,
		})
		if err != nil {
			t.Fatalf("%s: ReEncrypt: %v", key, err)
		}
		nenv, err := env.WithWrappedKey(re.CiphertextBlob, env.WrapAlg, ec)
		if err != nil {
			t.Fatal(err)
		}
		nmeta, err := nenv.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		nmeta["owner"] = meta["owner"]
		st.selfCopy(t, bucket, key, nmeta, head.ETag, head.ContentType)

		ctAfter, after, head2 := st.raw(t, bucket, key)
		if !bytes.Equal(ctBefore, ctAfter) {
			t.Errorf("%s: stored ciphertext changed", key)
		}
		if after["owner"] != "team-x" || aws.ToString(head2.ContentType) != "text/plain" {
			t.Errorf("%s: other metadata changed: %v %v", key, after, aws.ToString(head2.ContentType))
		}
		for _, f := range []string{"x-amz-iv", "x-amz-i", "x-amz-d", "x-amz-c", "x-amz-cek-alg"} {
			if meta[f] != after[f] {
				t.Errorf("%s: %s changed by a rewrap: %q -> %q", key, f, meta[f], after[f])
			}
		}
		for rname, c := range map[string]officialClient{
			"v3.2.0":               st.v3(t, b),
			"v4.0.0 allow-decrypt": st.v4(t, b, commitment.REQUIRE_ENCRYPT_ALLOW_DECRYPT),
		} {
			got, err := get(c, bucket, key)
			if err != nil {
				t.Errorf("%s: official %s on key B: %v", key, rname, err)
			} else if !bytes.Equal(got, body) {
				t.Errorf("%s: official %s on key B: plaintext differs", key, rname)
			}
		}
		var ike *kmstypes.IncorrectKeyException
		if _, err := get(st.v3(t, a), bucket, key); !errors.As(err, &ike) {
			t.Errorf("%s: official client on old key A: got %v, want IncorrectKeyException", key, err)
		}
	}
}

// TestRewrapInstructionFile: an envelope in an instruction file is rewrapped
// (KMS A -> KMS B, then KMS B -> local AES) by rewriting only the instruction
// file with If-Match; the official clients follow.
func TestRewrapInstructionFile(t *testing.T) {
	st := newStack(t)
	bucket := st.bucket(t)
	ctx := context.Background()
	k := newKeys(t, st)
	b := st.key(t)
	for _, f := range []envelope.Format{envelope.V2, envelope.V3} {
		key := fmt.Sprintf("instr/%v", f)
		body := randomBytes(1000)
		dek, _ := envelope.GenerateDataKey(rand.Reader)
		env, ct, err := envelope.EncryptContent(f, dek, body, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		w, md := st.wrap(t, k, envelope.WrapKMSContext, env.CEKAlg, dek)
		if env, err = env.WithWrappedKey(w, envelope.WrapKMSContext, md); err != nil {
			t.Fatal(err)
		}
		st.store(t, bucket, key, env, ct, envelope.PlacementInstructionFile)
		objBefore, objMetaBefore, _ := st.raw(t, bucket, key)

		// KMS A -> KMS B by ReEncrypt.
		ik := envelope.InstructionKey(key, envelope.DefaultInstructionSuffix)
		rewrite := func(wrapped []byte, alg envelope.WrapAlg, md map[string]string) {
			t.Helper()
			_, imeta, ihead := st.raw(t, bucket, ik)
			nenv, err := env.WithWrappedKey(wrapped, alg, md)
			if err != nil {
				t.Fatal(err)
			}
			_, instr, err := nenv.InstructionFile()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &ik, Body: bytes.NewReader(instr),
				Metadata: imeta, IfMatch: ihead.ETag}); err != nil {
				t.Fatalf("conditional put of %s: %v", ik, err)
			}
			env = nenv
		}
		ec, _ := env.KMSContext()
		re, err := st.kms.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: env.WrappedKey, SourceEncryptionContext: ec,
			DestinationKeyId: &b, DestinationEncryptionContext: ec})
		if err != nil {
			t.Fatal(err)
		}
		rewrite(re.CiphertextBlob, envelope.WrapKMSContext, ec)
		if got, err := get(st.v3(t, b), bucket, key); err != nil || !bytes.Equal(got, body) {
			t.Errorf("%s: official v3 on key B after instruction-file rewrap: %v", key, err)
		}

		// KMS B -> local AES key.
		aesWrapped, aesMD := st.wrap(t, k, envelope.WrapAESGCM, env.CEKAlg, dek)
		rewrite(aesWrapped, envelope.WrapAESGCM, aesMD)
		for rname, c := range st.readers(t, k, envelope.WrapAESGCM, f) {
			if got, err := get(c, bucket, key); err != nil || !bytes.Equal(got, body) {
				t.Errorf("%s: official %s with the AES key after rewrap: %v", key, rname, err)
			}
		}
		dek.Clear()

		objAfter, objMetaAfter, _ := st.raw(t, bucket, key)
		if !bytes.Equal(objBefore, objAfter) || fmt.Sprint(objMetaBefore) != fmt.Sprint(objMetaAfter) {
			t.Errorf("%s: the object itself changed during an instruction-file rewrap", key)
		}
	}
}

// TestMalleability mirrors the official clients' own cases: an object whose
// cek-alg or wrap-alg was altered must not decrypt, with the official client
// or with envelope.
func TestMalleability(t *testing.T) {
	st := newStack(t)
	bucket := st.bucket(t)
	k := newKeys(t, st)
	body := randomBytes(333)
	cases := []struct {
		name   string
		writer officialClient
		field  string
		value  string // "" removes the field
	}{
		{"V2 cek-alg to CBC", st.v3(t, k.kmsKey), "x-amz-cek-alg", "AES/CBC/PKCS5Padding"},
		{"V2 cek-alg removed", st.v3(t, k.kmsKey), "x-amz-cek-alg", ""},
		{"V2 wrap-alg to kms", st.v3(t, k.kmsKey), "x-amz-wrap-alg", "kms"},
		{"V2 wrap-alg to AES/GCM", st.v3(t, k.kmsKey), "x-amz-wrap-alg", "AES/GCM"},
		{"V2 wrap-alg removed", st.v3(t, k.kmsKey), "x-amz-wrap-alg", ""},
		{"V3 w to 02", st.v4(t, k.kmsKey, commitment.REQUIRE_ENCRYPT_REQUIRE_DECRYPT), "x-amz-w", "02"},
		{"V3 c to 114", st.v4(t, k.kmsKey, commitment.REQUIRE_ENCRYPT_REQUIRE_DECRYPT), "x-amz-c", "114"},
		{"V3 commitment altered", st.v4(t, k.kmsKey, commitment.REQUIRE_ENCRYPT_REQUIRE_DECRYPT), "x-amz-d", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="},
	}
	for i, tc := range cases {
		key := fmt.Sprintf("malleable/%d", i)
		put(t, tc.writer, bucket, key, body, nil)
		_, meta, head := st.raw(t, bucket, key)
		if tc.value == "" {
			delete(meta, tc.field)
		} else {
			meta[tc.field] = tc.value
		}
		st.selfCopy(t, bucket, key, meta, head.ETag, nil)

		for rname, c := range map[string]officialClient{
			"v3.2.0":               st.v3(t, k.kmsKey),
			"v4.0.0 allow-decrypt": st.v4(t, k.kmsKey, commitment.REQUIRE_ENCRYPT_ALLOW_DECRYPT),
		} {
			if got, err := get(c, bucket, key); err == nil {
				t.Errorf("%s: official %s decrypted an altered object (%d bytes)", tc.name, rname, len(got))
			}
		}
		if _, err := st.decryptWithEnvelope(bucket, key, k.kmsKey, k); err == nil {
			t.Errorf("%s: envelope decrypted an altered object", tc.name)
		} else {
			t.Logf("%s: envelope: %v", tc.name, err)
		}
	}
}
