package reencrypt_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/reencrypt"
)

// putCBC writes a legacy object as the Java client v1 wrote them under KMS:
// x-amz-key (the KMS blob, context = the material description), x-amz-iv,
// x-amz-matdesc {"kms_cmk_id": ...}, x-amz-wrap-alg "kms", AES-256-CBC
// content with PKCS#5 padding. v2 writes the V2 layout with AES/CBC content
// instead (x-amz-key-v2, x-amz-cek-alg AES/CBC/PKCS5Padding).
func (f *fixture) putCBC(t *testing.T, key string, v2 bool, plain []byte) {
	t.Helper()
	md := map[string]string{"kms_cmk_id": f.arnA, "app": "billing"}
	if v2 {
		md = map[string]string{"app": "billing", envelope.ReservedContextKey: string(envelope.ContentAESCBC)}
	}
	dk, err := f.kms.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: &f.arnA, KeySpec: "AES_256", EncryptionContext: md})
	if err != nil {
		t.Fatal(err)
	}
	iv := make([]byte, aes.BlockSize)
	rand.Read(iv)
	b, _ := aes.NewCipher(dk.Plaintext)
	clear(dk.Plaintext)
	p := aes.BlockSize - len(plain)%aes.BlockSize
	ct := append(append([]byte(nil), plain...), bytes.Repeat([]byte{byte(p)}, p)...)
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(ct, ct)
	mdJSON, _ := json.Marshal(md)
	meta := map[string]string{
		"x-amz-iv":                         base64.StdEncoding.EncodeToString(iv),
		"x-amz-matdesc":                    string(mdJSON),
		"owner":                            "team-x",
		"x-amz-unencrypted-content-length": strconv.Itoa(len(plain)),
	}
	if v2 {
		meta["x-amz-key-v2"] = base64.StdEncoding.EncodeToString(dk.CiphertextBlob)
		meta["x-amz-wrap-alg"] = string(envelope.WrapKMSContext)
		meta["x-amz-cek-alg"] = string(envelope.ContentAESCBC)
	} else {
		meta["x-amz-key"] = base64.StdEncoding.EncodeToString(dk.CiphertextBlob)
		meta["x-amz-wrap-alg"] = string(envelope.WrapKMS)
	}
	if _, err := f.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &f.bucket, Key: &key, Body: bytes.NewReader(ct),
		Metadata: meta, ContentType: aws.String("text/x-test"), Tagging: aws.String("team=x&tier=1")}); err != nil {
		t.Fatal(err)
	}
}

// TestReencryptUpgradesCBC: legacy AES-CBC objects (V1, and V2 with CBC
// content) of every size around the block and part boundaries become V2
// AES-GCM objects (or V3 with Format) under a fresh data key, with the
// same plaintext, user metadata and tags; CBC content is always upgraded.
func TestReencryptUpgradesCBC(t *testing.T) {
	f := newFixture(t)
	e := f.engine()
	for _, size := range []int{0, 1, 15, 16, 17, 5*mib - 1, 5 * mib, 5*mib + 1, 11*mib + 5} {
		for _, v2 := range []bool{false, true} {
			for _, want := range []envelope.Format{0, envelope.V3} {
				key := fmt.Sprintf("cbc/v2=%v/%v/%d", v2, want, size)
				t.Run(key, func(t *testing.T) {
					plain := make([]byte, size)
					rand.Read(plain)
					f.putCBC(t, key, v2, plain)
					j := f.legacyJob(t, key)
					j.Format = want
					res, _, err := f.reencryptWith(ctx, e, j, nil)
					if err != nil {
						t.Fatal(err)
					}
					got, env, err := f.open(t, key, f.b)
					if err != nil || !bytes.Equal(got, plain) {
						t.Fatalf("after the upgrade: %v (%d bytes, want %d)", err, len(got), size)
					}
					wantFormat, wantCEK := envelope.V2, envelope.ContentAESGCM
					if want == envelope.V3 {
						wantFormat, wantCEK = envelope.V3, envelope.ContentCommitKey
					}
					if env.Format != wantFormat || env.CEKAlg != wantCEK || res.Bytes != int64(size)+16 {
						t.Errorf("upgraded to %v %s, %d bytes; want %v %s, %d", env.Format, env.CEKAlg, res.Bytes, wantFormat, wantCEK, size+16)
					}
					f.checkKept(t, key)
				})
			}
		}
	}
	if n := f.uploads(t); n != 0 {
		t.Errorf("%d uploads left", n)
	}
}

// TestReencryptCBCBadPaddingIsLeftUntouched: CBC content whose last block
// does not decrypt to valid padding (altered, or another data key) is
// refused before anything is written.
func TestReencryptCBCBadPaddingIsLeftUntouched(t *testing.T) {
	f := newFixture(t)
	e := f.engine()
	for _, size := range []int{100, 6 * mib} {
		key := fmt.Sprintf("cbc/bad/%d", size)
		plain := make([]byte, size)
		rand.Read(plain)
		f.putCBC(t, key, false, plain)
		f.corrupt(t, key, -17) // the padding byte, through the block before it
		before := f.rawBody(t, key)
		j := f.legacyJob(t, key)
		_, err := e.Begin(ctx, j)
		if !errors.Is(err, reencrypt.ErrAuthentication) {
			t.Fatalf("%s: %v, want ErrAuthentication (from the padding check, before anything is written)", key, err)
		}
		if after := f.rawBody(t, key); !bytes.Equal(after, before) {
			t.Errorf("%s: changed", key)
		}
	}
	if n := f.uploads(t); n != 0 {
		t.Errorf("%d uploads left", n)
	}
}

// legacyJob is f.job for legacy envelopes.
func (f *fixture) legacyJob(t *testing.T, key string) reencrypt.Job {
	t.Helper()
	obj, err := f.commit.Head(ctx, f.bucket, key, "")
	if err != nil {
		t.Fatal(err)
	}
	j := reencrypt.Job{Obj: obj, From: f.a, To: f.b}
	if j.Env, err = envelope.Parse(obj.Metadata, nil, envelope.ParseOptions{AllowLegacy: true}); err != nil {
		t.Fatal(err)
	}
	return j
}

// rawBody returns an object's stored bytes.
func (f *fixture) rawBody(t *testing.T, key string) []byte {
	t.Helper()
	out, err := f.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &f.bucket, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReencryptCBCResumesFromLastPart: an upgrade of CBC content
// interrupted after its second part resumes with the remaining parts only.
func TestReencryptCBCResumesFromLastPart(t *testing.T) {
	f := newFixture(t)
	plain := make([]byte, 21*mib+3) // 5 parts of 5 MiB
	rand.Read(plain)
	f.putCBC(t, "old", false, plain)
	j := f.legacyJob(t, "old")
	e := f.engine()
	e.PartsInFlight = 1
	cctx, cancel := context.WithCancel(ctx)
	e.AfterPart = func(n int) {
		if n == 2 {
			cancel()
		}
	}
	st := &saved{}
	if _, _, err := f.reencryptWith(cctx, e, j, st); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted call: %v", err)
	}
	f.gets.Store(0)
	res, _, err := f.resumeWith(ctx, f.engine(), f.legacyJob(t, "old"), st)
	if err != nil {
		t.Fatal(err)
	}
	if res.Resumed != 2 || res.Parts != 5 {
		t.Errorf("resumed %d of %d parts, want 2 of 5", res.Resumed, res.Parts)
	}
	// Parts 3 to 5 with their padding, the block before each part, and
	// the last two blocks (the padding check).
	if read, want := f.gets.Load(), int64(len(plain)+13-2*5*mib+3*16+32); read != want {
		t.Errorf("resume read %d bytes, want %d", read, want)
	}
	if got, env, err := f.open(t, "old", f.b); err != nil || !bytes.Equal(got, plain) || env.Format != envelope.V2 {
		t.Fatalf("after resume: %v", err)
	}
	if n := f.uploads(t); n != 0 {
		t.Errorf("%d uploads left", n)
	}
}
