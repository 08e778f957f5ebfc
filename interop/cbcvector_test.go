package interop

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"testing"

	s3ecv3 "github.com/aws/amazon-s3-encryption-client-go/v3/client"
	matv3 "github.com/aws/amazon-s3-encryption-client-go/v3/materials"
	s3ecv4 "github.com/aws/amazon-s3-encryption-client-go/v4/client"
	"github.com/aws/amazon-s3-encryption-client-go/v4/commitment"
	matv4 "github.com/aws/amazon-s3-encryption-client-go/v4/materials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rotator-dev/rotator/pipeline"
	"github.com/rotator-dev/rotator/reencrypt"
)

// The layout of a legacy AES-CBC object written under KMS by the Java
// client v1 (AmazonS3EncryptionClient with a KMS materials provider), as the
// official Go client's own test vector has it
// (TestDecryptionClientV4_GetMockV2Object_V1Interop_KMS_AESCBC in
// client/decryption_client_v4_test.go of
// github.com/aws/amazon-s3-encryption-client-go/v4 v4.0.0, and the same test
// in v3.2.0): exactly these five metadata entries, and nothing else, no
// x-amz-unencrypted-content-length, no x-amz-tag-len.
//
//	x-amz-key-v2     the KMS ciphertext blob of the data key (base64)
//	x-amz-iv         16 bytes (base64)
//	x-amz-matdesc    {"kms_cmk_id":"<key id>"}, also the KMS encryption context
//	x-amz-wrap-alg   kms
//	x-amz-cek-alg    AES/CBC/PKCS5Padding
//
// The content is AES-256-CBC with PKCS#5 padding (a full block of padding
// when the plaintext is a multiple of 16 bytes).
const (
	vectorCEKAlg  = "AES/CBC/PKCS5Padding"
	vectorWrapAlg = "kms" // materials.KMSKeyring
)

// The vector's data key, IV, content and plaintext (the mock KMS answers
// Decrypt with this data key).
const (
	vectorDataKey    = "7ItX9CTGNWWegC62RlaNu6EJ3+J9yGO7yAqDNU4CdeA="
	vectorIV         = "adO9U7pcEHxUTaguIkho9g=="
	vectorCiphertext = "6f4f413a357a3c3a12289442fb835c5e4ecc8db1d86d3d1eab906ce07e1ad772180b2e9ec49c3fc667d8aceea8c46da6bb9738251a8e36241a473ad820f99c701906bac1f48578d5392e928889bbb1d9"
	vectorPlaintext  = "a716e018ffecf4bb94d4352082af4662612d9c225efed6f389bf1f6f0447a9bce80cc712d7e66ee5e1c086af38e607ead351fd2c1a0247878e693ada73bd580b"
)

// cbcPKCS5 encrypts plain with AES-CBC and PKCS#5 padding, as the Java
// client v1 did.
func cbcPKCS5(t *testing.T, key, iv, plain []byte) []byte {
	t.Helper()
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	p := aes.BlockSize - len(plain)%aes.BlockSize
	ct := append(append([]byte(nil), plain...), bytes.Repeat([]byte{byte(p)}, p)...)
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(ct, ct)
	return ct
}

// TestCBCVectorEncryption: cbcPKCS5 reproduces the vector's content from
// its data key, IV and plaintext, byte for byte.
func TestCBCVectorEncryption(t *testing.T) {
	dk, _ := base64.StdEncoding.DecodeString(vectorDataKey)
	iv, _ := base64.StdEncoding.DecodeString(vectorIV)
	pt, _ := hex.DecodeString(vectorPlaintext)
	if got := hex.EncodeToString(cbcPKCS5(t, dk, iv, pt)); got != vectorCiphertext {
		t.Fatalf("content differs from the official vector:\n got %s\nwant %s", got, vectorCiphertext)
	}
}

// putVectorCBC writes plain as a legacy object in the vector's layout,
// under KMS key kmsKey (its data key from GenerateDataKey with the material
// description as encryption context, as the Java client v1 did), and
// returns its envelope metadata. decorate, if not nil, adds what the
// application wrote beside it (user metadata, content type, tags).
func putVectorCBC(t *testing.T, st *stack, bucket, key, kmsKey string, plain []byte, decorate func(*s3.PutObjectInput)) map[string]string {
	t.Helper()
	ctx := context.Background()
	md := map[string]string{"kms_cmk_id": kmsKey}
	dk, err := st.kms.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: &kmsKey, KeySpec: "AES_256", EncryptionContext: md})
	if err != nil {
		t.Fatal(err)
	}
	iv := randomBytes(aes.BlockSize)
	ct := cbcPKCS5(t, dk.Plaintext, iv, plain)
	clear(dk.Plaintext)
	mdJSON, err := json.Marshal(md)
	if err != nil {
		t.Fatal(err)
	}
	meta := map[string]string{
		"x-amz-key-v2":   base64.StdEncoding.EncodeToString(dk.CiphertextBlob),
		"x-amz-iv":       base64.StdEncoding.EncodeToString(iv),
		"x-amz-matdesc":  string(mdJSON),
		"x-amz-wrap-alg": vectorWrapAlg,
		"x-amz-cek-alg":  vectorCEKAlg,
	}
	in := &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(ct), Metadata: maps.Clone(meta)}
	if decorate != nil {
		decorate(in)
	}
	if _, err := st.s3.PutObject(ctx, in); err != nil {
		t.Fatal(err)
	}
	return meta
}

// legacyReaders are the official clients configured to read legacy
// objects (legacy wrapping algorithms and unauthenticated modes on), with
// a KMS keyring on keyID.
func (st *stack) legacyReaders(t *testing.T, keyID string) map[string]officialClient {
	t.Helper()
	cmm3, err := matv3.NewCryptographicMaterialsManager(matv3.NewKmsKeyring(st.kms, keyID,
		func(o *matv3.KeyringOptions) { o.EnableLegacyWrappingAlgorithms = true }))
	if err != nil {
		t.Fatal(err)
	}
	c3, err := s3ecv3.New(st.s3, cmm3, func(o *s3ecv3.EncryptionClientOptions) { o.EnableLegacyUnauthenticatedModes = true })
	if err != nil {
		t.Fatal(err)
	}
	cmm4, err := matv4.NewCryptographicMaterialsManager(matv4.NewKmsKeyring(st.kms, keyID,
		func(o *matv4.KeyringOptions) { o.EnableLegacyWrappingAlgorithms = true }))
	if err != nil {
		t.Fatal(err)
	}
	c4, err := s3ecv4.New(st.s3, cmm4, func(o *s3ecv4.EncryptionClientOptions) {
		o.EnableLegacyUnauthenticatedModes = true
		o.CommitmentPolicy = commitment.FORBID_ENCRYPT_ALLOW_DECRYPT // as the vector's test
	})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]officialClient{"v3.2.0 legacy": c3, "v4.0.0 legacy": c4}
}

// TestPipelineReencryptsV1InteropCBCObjects: legacy AES-CBC objects in the
// official vector's layout, of 0, 15, 16, 17, 64 and 5 MiB + 1 bytes (two
// parts), open with the official clients (legacy modes on), are
// re-encrypted by a pipeline run (--mode reencrypt) from key A to key B,
// upgraded to V2 AES-GCM, then from B to C with --format v3. After each
// run the official v3.2.0 and v4.0.0 clients, legacy modes off, open every
// object under the new key with the original plaintext, and the old key
// no longer opens it.
func TestPipelineReencryptsV1InteropCBCObjects(t *testing.T) {
	ctx := context.Background()
	st := newStack(t)
	bucket := st.bucket(t)
	a, b, c := st.key(t), st.key(t), st.key(t)
	type object struct {
		key  string
		body []byte
	}
	var objs []object
	for _, size := range []int{0, 15, 16, 17, 64, 5<<20 + 1} {
		o := object{key: fmt.Sprintf("v1-interop-kms-aescbc/%d bytes", size), body: randomBytes(size)}
		meta := putVectorCBC(t, st, bucket, o.key, a, o.body, nil)
		ct, stored, _ := st.raw(t, bucket, o.key)
		if !maps.Equal(stored, meta) {
			t.Fatalf("%s: stored metadata %v, want exactly %v", o.key, stored, meta)
		}
		if want := (size/aes.BlockSize + 1) * aes.BlockSize; len(ct) != want {
			t.Fatalf("%s: %d bytes of content, want %d", o.key, len(ct), want)
		}
		for name, r := range st.legacyReaders(t, a) {
			if got, err := get(r, bucket, o.key); err != nil || !bytes.Equal(got, o.body) {
				t.Fatalf("%s: official %s does not open the legacy object: %v", o.key, name, err)
			}
		}
		objs = append(objs, o)
	}
	ledgerURL := filepath.Join(t.TempDir(), "ledger.db")
	run := func(runID string, cfg pipeline.Config) {
		t.Helper()
		cfg.Source, cfg.Ledger, cfg.Mode = "s3://"+bucket, ledgerURL, pipeline.ModeReencrypt
		cfg.Concurrency, cfg.PartSize = 4, reencrypt.MinPartSize
		stats, report := runPipeline(t, cfg, runID, nil)
		if stats.Failed.Load() > 0 || stats.Succeeded.Load() != int64(len(objs)) {
			t.Fatalf("run %s: %v\n%s", runID, stats.Counts(), report)
		}
		ups, err := st.s3.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &bucket})
		if err != nil || len(ups.Uploads) != 0 {
			t.Errorf("run %s left multipart uploads: %v %v", runID, ups, err)
		}
	}
	check := func(t *testing.T, newKey, oldKey, cekAlg string, v3 bool) {
		readers := map[string]officialClient{
			"v3.2.0":               st.v3(t, newKey),
			"v4.0.0 allow-decrypt": st.v4(t, newKey, commitment.REQUIRE_ENCRYPT_ALLOW_DECRYPT),
		}
		if v3 {
			readers["v4.0.0 require-decrypt"] = st.v4(t, newKey, commitment.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
		}
		for _, o := range objs {
			_, meta, _ := st.raw(t, bucket, o.key)
			alg := meta["x-amz-cek-alg"]
			if v3 {
				alg = meta["x-amz-c"]
			}
			if alg != cekAlg {
				t.Errorf("%s: content algorithm %q, want %q (metadata %v)", o.key, alg, cekAlg, meta)
			}
			for name, r := range readers {
				if got, err := get(r, bucket, o.key); err != nil || !bytes.Equal(got, o.body) {
					t.Errorf("%s: official %s under the new key: %v", o.key, name, err)
				}
			}
			for name, r := range st.legacyReaders(t, oldKey) {
				var ike *kmstypes.IncorrectKeyException
				if _, err := get(r, bucket, o.key); !errors.As(err, &ike) {
					t.Errorf("%s: official %s under the old key: %v, want IncorrectKeyException", o.key, name, err)
				}
			}
			t.Logf("%s: %v", o.key, meta)
		}
	}
	run("cbc-vector-keep", pipeline.Config{To: "kms:" + b, From: []string{"kms:" + a}})
	t.Run("upgraded to V2 AES-GCM", func(t *testing.T) { check(t, b, a, "AES/GCM/NoPadding", false) })
	run("cbc-vector-v3", pipeline.Config{To: "kms:" + c, From: []string{"kms:" + b}, Format: "v3"})
	t.Run("upgraded to V3", func(t *testing.T) { check(t, c, b, "115", true) })
}
