package kmsserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/rotator-dev/rotator/internal/testenv"
	"github.com/rotator-dev/rotator/kmsserver"
)

// target is a KMS endpoint the contract suite runs against.
type target struct {
	// newClient returns a client for region ("" for the target's region).
	newClient func(region string, optFns ...func(*kms.Options)) *kms.Client
	region    string
	// listLimit is the page size of the pagination tests over all keys: small
	// in process, larger on the stack, whose state file accumulates keys.
	listLimit int32
}

func (tg *target) client(optFns ...func(*kms.Options)) *kms.Client {
	return tg.newClient("", optFns...)
}

// otherRegion is a region different from the target's.
func (tg *target) otherRegion() string {
	if tg.region == "eu-west-1" {
		return "us-west-2"
	}
	return "eu-west-1"
}

// TestContract runs the contract suite against an in-process server and,
// when the local stack is up (AWS_ENDPOINT_URL_KMS), against the stack's
// kms-test-server, only ever through the aws-sdk-go-v2 KMS client over HTTP.
func TestContract(t *testing.T) {
	t.Run("inprocess", func(t *testing.T) {
		t.Parallel()
		h, err := kmsserver.New(kmsserver.Options{})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		runContract(t, &target{
			region:    kmsserver.DefaultRegion,
			listLimit: 2,
			newClient: func(region string, optFns ...func(*kms.Options)) *kms.Client {
				if region == "" {
					region = kmsserver.DefaultRegion
				}
				return kms.New(kms.Options{
					Region:       region,
					BaseEndpoint: aws.String(srv.URL),
					Credentials:  credentials.NewStaticCredentialsProvider("AKIDCONTRACT", "secret", ""),
				}, optFns...)
			},
		})
	})
	t.Run("stack", func(t *testing.T) {
		t.Parallel()
		testenv.Need(t, testenv.KMS)
		cfg := testenv.AWSConfig(t)
		if cfg.Region == "" {
			cfg.Region = kmsserver.DefaultRegion
		}
		runContract(t, &target{
			region:    cfg.Region,
			listLimit: 250,
			newClient: func(region string, optFns ...func(*kms.Options)) *kms.Client {
				fns := []func(*kms.Options){}
				if region != "" {
					fns = append(fns, func(o *kms.Options) { o.Region = region })
				}
				return kms.NewFromConfig(cfg, append(fns, optFns...)...)
			},
		})
	})
}

func runContract(t *testing.T, tg *target) {
	tests := []struct {
		name string
		fn   func(*testing.T, *target)
	}{
		{"CreateDescribe", testCreateDescribe},
		{"CreateKeyErrors", testCreateKeyErrors},
		{"KeyIdentifiers", testKeyIdentifiers},
		{"Aliases", testAliases},
		{"EncryptDecrypt", testEncryptDecrypt},
		{"GenerateDataKey", testGenerateDataKey},
		{"ReEncrypt", testReEncrypt},
		{"Rotation", testRotation},
		{"KeyStates", testKeyStates},
		{"Policy", testPolicy},
		{"Pagination", testPagination},
		{"CrossRegion", testCrossRegion},
		{"DryRun", testDryRun},
		{"Protocol", testProtocol},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, tg)
		})
	}
}

// --- helpers -----------------------------------------------------------------

// newKey creates a key and schedules its deletion when the test ends (the
// stack's server keeps its keys across runs).
func newKey(t *testing.T, c *kms.Client, desc string) *types.KeyMetadata {
	t.Helper()
	out, err := c.CreateKey(t.Context(), &kms.CreateKeyInput{Description: aws.String(desc)})
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	id := *out.KeyMetadata.KeyId
	t.Cleanup(func() {
		_, _ = c.ScheduleKeyDeletion(context.Background(), &kms.ScheduleKeyDeletionInput{KeyId: aws.String(id), PendingWindowInDays: aws.Int32(7)}, noRetries)
	})
	return out.KeyMetadata
}

// newAlias creates a uniquely named alias for keyID and deletes it when the
// test ends.
func newAlias(t *testing.T, c *kms.Client, keyID, suffix string) string {
	t.Helper()
	name := "alias/" + testenv.Name(t) + "-" + suffix
	if _, err := c.CreateAlias(t.Context(), &kms.CreateAliasInput{AliasName: aws.String(name), TargetKeyId: aws.String(keyID)}); err != nil {
		t.Fatalf("CreateAlias %s: %v", name, err)
	}
	t.Cleanup(func() {
		_, _ = c.DeleteAlias(context.Background(), &kms.DeleteAliasInput{AliasName: aws.String(name)}, noRetries)
	})
	return name
}

func aliasARN(keyARN, name string) string {
	return keyARN[:strings.Index(keyARN, ":key/")] + ":" + name
}

// wantErr fails unless err is (wraps) the typed SDK error T.
func wantErr[T error](t *testing.T, err error) T {
	t.Helper()
	var target T
	if !errors.As(err, &target) {
		t.Fatalf("want %T, got %v", target, err)
	}
	return target
}

// wantCode fails unless err is an API error with the given code (for codes
// the KMS model has no type for, such as ValidationException).
func wantCode(t *testing.T, err error, code string) smithy.APIError {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != code {
		t.Fatalf("want %s, got %v", code, err)
	}
	return ae
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// rawClient is an HTTP client for the SDK that records response bodies and
// can rewrite the request's target or body: a way to send what the SDK
// would refuse to, still through the SDK's signing and error handling.
type rawClient struct {
	target string
	body   []byte

	mu   sync.Mutex
	last []byte
}

func (c *rawClient) Do(r *http.Request) (*http.Response, error) {
	if c.target != "" {
		r.Header.Set("X-Amz-Target", c.target)
	}
	if c.body != nil {
		r.Body = io.NopCloser(bytes.NewReader(c.body))
		r.ContentLength = int64(len(c.body))
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	c.mu.Lock()
	c.last = b
	c.mu.Unlock()
	return resp, nil
}

func (c *rawClient) lastBody() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

func withHTTP(hc kms.HTTPClient) func(*kms.Options) {
	return func(o *kms.Options) { o.HTTPClient = hc }
}

func encrypt(t *testing.T, c *kms.Client, keyID string, pt []byte, ctx map[string]string) *kms.EncryptOutput {
	t.Helper()
	out, err := c.Encrypt(t.Context(), &kms.EncryptInput{KeyId: aws.String(keyID), Plaintext: pt, EncryptionContext: ctx})
	if err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	return out
}

func decrypt(t *testing.T, c *kms.Client, blob []byte, ctx map[string]string) *kms.DecryptOutput {
	t.Helper()
	out, err := c.Decrypt(t.Context(), &kms.DecryptInput{CiphertextBlob: blob, EncryptionContext: ctx})
	if err != nil {
		t.Fatalf("Decrypt: %v", err)
	}
	return out
}

// --- keys ------------------------------------------------------------------------

func testCreateDescribe(t *testing.T, tg *target) {
	c := tg.client()
	ctx := t.Context()
	before := time.Now().Add(-time.Minute)
	md := newKey(t, c, "contract create")
	if !strings.HasPrefix(*md.Arn, "arn:aws:kms:"+tg.region+":") || !strings.HasSuffix(*md.Arn, ":key/"+*md.KeyId) {
		t.Errorf("Arn = %s, want arn:aws:kms:%s:ACCOUNT:key/%s", *md.Arn, tg.region, *md.KeyId)
	}
	if len(*md.KeyId) != 36 || strings.Count(*md.KeyId, "-") != 4 {
		t.Errorf("KeyId %q is not a UUID", *md.KeyId)
	}
	if md.AWSAccountId == nil || !strings.Contains(*md.Arn, ":"+*md.AWSAccountId+":") {
		t.Errorf("AWSAccountId %v does not match Arn %s", md.AWSAccountId, *md.Arn)
	}
	if md.KeySpec != types.KeySpecSymmetricDefault || md.KeyUsage != types.KeyUsageTypeEncryptDecrypt ||
		md.KeyState != types.KeyStateEnabled || !md.Enabled || md.Origin != types.OriginTypeAwsKms ||
		md.KeyManager != types.KeyManagerTypeCustomer || *md.Description != "contract create" {
		t.Errorf("unexpected metadata %+v", md)
	}
	if !slices.Equal(md.EncryptionAlgorithms, []types.EncryptionAlgorithmSpec{types.EncryptionAlgorithmSpecSymmetricDefault}) {
		t.Errorf("EncryptionAlgorithms = %v", md.EncryptionAlgorithms)
	}
	if md.CreationDate == nil || md.CreationDate.Before(before) || md.CreationDate.After(time.Now().Add(time.Minute)) {
		t.Errorf("CreationDate = %v", md.CreationDate)
	}
	if md.CurrentKeyMaterialId == nil || len(*md.CurrentKeyMaterialId) != 64 {
		t.Errorf("CurrentKeyMaterialId = %v, want 64 hex digits", md.CurrentKeyMaterialId)
	}
	alias := newAlias(t, c, *md.KeyId, "describe")
	for _, id := range []string{*md.KeyId, *md.Arn, alias, aliasARN(*md.Arn, alias)} {
		out, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(id)})
		if err != nil {
			t.Fatalf("DescribeKey(%s): %v", id, err)
		}
		if *out.KeyMetadata.Arn != *md.Arn {
			t.Errorf("DescribeKey(%s).Arn = %s, want %s", id, *out.KeyMetadata.Arn, *md.Arn)
		}
	}
}

func testCreateKeyErrors(t *testing.T, tg *target) {
	c := tg.client()
	ctx := t.Context()
	_, err := c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecRsa2048})
	wantErr[*types.UnsupportedOperationException](t, err)
	_, err = c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: "NO_SUCH_SPEC"})
	wantCode(t, err, "ValidationException")
	_, err = c.CreateKey(ctx, &kms.CreateKeyInput{KeyUsage: types.KeyUsageTypeSignVerify})
	wantCode(t, err, "ValidationException")
	_, err = c.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternal})
	wantErr[*types.UnsupportedOperationException](t, err)
	_, err = c.CreateKey(ctx, &kms.CreateKeyInput{MultiRegion: aws.Bool(true)})
	wantErr[*types.UnsupportedOperationException](t, err)
	_, err = c.CreateKey(ctx, &kms.CreateKeyInput{Policy: aws.String(`{"Statement": [`)})
	wantErr[*types.MalformedPolicyDocumentException](t, err)
	_, err = c.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String(strings.Repeat("d", 8193))})
	wantCode(t, err, "ValidationException")
}

func testKeyIdentifiers(t *testing.T, tg *target) {
	c := tg.client()
	ctx := t.Context()
	md := newKey(t, c, "contract identifiers")
	account := *md.AWSAccountId
	missing := "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d"
	_, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(missing)})
	nf := wantErr[*types.NotFoundException](t, err)
	wantARN := fmt.Sprintf("arn:aws:kms:%s:%s:key/%s", tg.region, account, missing)
	if !strings.Contains(nf.ErrorMessage(), wantARN) {
		t.Errorf("NotFound message %q does not name %s", nf.ErrorMessage(), wantARN)
	}
	for _, id := range []string{
		"not-a-key",
		"alias/" + testenv.Name(t) + "-missing",
		wantARN,
		"arn:aws:kms:" + tg.region + ":" + account + ":alias/missing-" + testenv.Name(t),
		"arn:aws:kms:" + tg.region + ":" + account + ":bogus/x",
		"arn:aws:s3:::bucket",
	} {
		_, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(id)})
		wantErr[*types.NotFoundException](t, err)
		_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x")})
		wantErr[*types.NotFoundException](t, err)
	}
	// Management operations take a key ID or key ARN, not an alias.
	alias := newAlias(t, c, *md.KeyId, "mgmt")
	_, err = c.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: aws.String(alias)})
	wantErr[*types.NotFoundException](t, err)
	_, err = c.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(aliasARN(*md.Arn, alias))})
	wantErr[*types.NotFoundException](t, err)
	if _, err := c.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: md.Arn}); err != nil {
		t.Errorf("GetKeyRotationStatus by ARN: %v", err)
	}
}

func testAliases(t *testing.T, tg *target) {
	c := tg.client()
	ctx := t.Context()
	md := newKey(t, c, "contract aliases")
	other := newKey(t, c, "contract aliases other")
	a1 := newAlias(t, c, *md.KeyId, "one")
	a2 := newAlias(t, c, *md.Arn, "two") // TargetKeyId may be a key ARN
	newAlias(t, c, *other.KeyId, "other")

	_, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String(a1), TargetKeyId: other.KeyId})
	wantErr[*types.AlreadyExistsException](t, err)
	for _, bad := range []string{"no-prefix-" + testenv.Name(t), "alias/aws/" + testenv.Name(t), "alias/"} {
		_, err = c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String(bad), TargetKeyId: md.KeyId})
		wantErr[*types.InvalidAliasNameException](t, err)
	}
	_, err = c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/bad name!"), TargetKeyId: md.KeyId})
	wantCode(t, err, "ValidationException")
	_, err = c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/" + testenv.Name(t) + "-x"), TargetKeyId: aws.String("0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d")})
	wantErr[*types.NotFoundException](t, err)
	_, err = c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/" + testenv.Name(t) + "-y"), TargetKeyId: aws.String(a1)})
	wantErr[*types.NotFoundException](t, err)

	out, err := c.ListAliases(ctx, &kms.ListAliasesInput{KeyId: md.KeyId})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range out.Aliases {
		names = append(names, *a.AliasName)
		if *a.TargetKeyId != *md.KeyId || *a.AliasArn != aliasARN(*md.Arn, *a.AliasName) || a.CreationDate == nil || a.LastUpdatedDate == nil {
			t.Errorf("alias entry %+v", a)
		}
	}
	if want := []string{a1, a2}; !slices.Equal(names, want) {
		t.Errorf("ListAliases(KeyId) = %v, want %v", names, want)
	}
	// Aliases resolve for cryptographic operations, by name and by ARN.
	blob := encrypt(t, c, a2, []byte("via alias"), nil).CiphertextBlob
	if got := decrypt(t, c, blob, nil); *got.KeyId != *md.Arn {
		t.Errorf("Decrypt KeyId = %s, want %s", *got.KeyId, *md.Arn)
	}
	if _, err := c.DeleteAlias(ctx, &kms.DeleteAliasInput{AliasName: aws.String(a1)}); err != nil {
		t.Fatal(err)
	}
	_, err = c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(a1)})
	wantErr[*types.NotFoundException](t, err)
	_, err = c.DeleteAlias(ctx, &kms.DeleteAliasInput{AliasName: aws.String(a1)})
	wantErr[*types.NotFoundException](t, err)
	// The name is free again.
	if _, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String(a1), TargetKeyId: other.KeyId}); err != nil {
		t.Fatalf("re-create alias: %v", err)
	}
}

// --- cryptographic operations ----------------------------------------------------

func testEncryptDecrypt(t *testing.T, tg *target) {
	c := tg.client()
	ctx := t.Context()
	k1 := newKey(t, c, "contract encrypt 1")
	k2 := newKey(t, c, "contract encrypt 2")
	ec := map[string]string{"bucket": "b", "key": "k/1", "aws:x-amz-cek-alg": "AES/GCM/NoPadding"}
	pt := []byte("the quick brown fox")
	enc := encrypt(t, c, *k1.KeyId, pt, ec)
	if *enc.KeyId != *k1.Arn || enc.EncryptionAlgorithm != types.EncryptionAlgorithmSpecSymmetricDefault {
		t.Errorf("Encrypt output KeyId=%s alg=%s", *enc.KeyId, enc.EncryptionAlgorithm)
	}
	if bytes.Contains(enc.CiphertextBlob, pt) {
		t.Fatal("ciphertext contains the plaintext")
	}
	dec := decrypt(t, c, enc.CiphertextBlob, ec)
	if !bytes.Equal(dec.Plaintext, pt) || *dec.KeyId != *k1.Arn || dec.EncryptionAlgorithm != types.EncryptionAlgorithmSpecSymmetricDefault ||
		dec.KeyMaterialId == nil || *dec.KeyMaterialId != *k1.CurrentKeyMaterialId {
		t.Errorf("Decrypt = %+v", dec)
	}
	// A map has no order: the same context in another literal still works.
	decrypt(t, c, enc.CiphertextBlob, map[string]string{"aws:x-amz-cek-alg": "AES/GCM/NoPadding", "key": "k/1", "bucket": "b"})

	// Context binding.
	for _, bad := range []map[string]string{
		nil,
		{"bucket": "b", "key": "k/2", "aws:x-amz-cek-alg": "AES/GCM/NoPadding"},
		{"bucket": "b", "key": "k/1"},
		{"bucket": "b", "key": "k/1", "aws:x-amz-cek-alg": "AES/GCM/NoPadding", "extra": ""},
	} {
		_, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: bad})
		wantErr[*types.InvalidCiphertextException](t, err)
	}
	// Tampering anywhere in the blob.
	for _, i := range []int{0, 3, 10, len(enc.CiphertextBlob) / 2, len(enc.CiphertextBlob) - 1} {
		b := bytes.Clone(enc.CiphertextBlob)
		b[i] ^= 0x01
		_, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: b, EncryptionContext: ec})
		if !errors.As(err, new(*types.InvalidCiphertextException)) && !errors.As(err, new(*types.NotFoundException)) {
			t.Errorf("tampered byte %d: want InvalidCiphertextException, got %v", i, err)
		}
	}
	for _, garbage := range [][]byte{[]byte("x"), bytes.Repeat([]byte{0xAA}, 200), enc.CiphertextBlob[:len(enc.CiphertextBlob)-1]} {
		_, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: garbage})
		wantErr[*types.InvalidCiphertextException](t, err)
	}
	// KeyId, if given, must name the key of the blob.
	_, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec, KeyId: k2.KeyId})
	wantErr[*types.IncorrectKeyException](t, err)
	alias := newAlias(t, c, *k1.KeyId, "dec")
	for _, id := range []string{*k1.KeyId, *k1.Arn, alias} {
		if _, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec, KeyId: aws.String(id)}); err != nil {
			t.Errorf("Decrypt with KeyId %s: %v", id, err)
		}
	}
	_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec, KeyId: aws.String("0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d")})
	wantErr[*types.NotFoundException](t, err)

	// Plaintext size limits.
	encrypt(t, c, *k1.KeyId, make([]byte, 4096), nil)
	encrypt(t, c, *k1.KeyId, []byte{0}, nil)
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: k1.KeyId, Plaintext: make([]byte, 4097)})
	wantCode(t, err, "ValidationException")
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: k1.KeyId, Plaintext: []byte{}})
	wantCode(t, err, "ValidationException")
	// Asymmetric algorithms on a symmetric key.
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: k1.KeyId, Plaintext: pt, EncryptionAlgorithm: types.EncryptionAlgorithmSpecRsaesOaepSha256})
	wantErr[*types.InvalidKeyUsageException](t, err)
	_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec, EncryptionAlgorithm: types.EncryptionAlgorithmSpecRsaesOaepSha1})
	wantErr[*types.InvalidKeyUsageException](t, err)
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: k1.KeyId, Plaintext: pt, EncryptionAlgorithm: "NOPE"})
	wantCode(t, err, "ValidationException")
	// Two encryptions of the same plaintext differ.
	if bytes.Equal(encrypt(t, c, *k1.KeyId, pt, nil).CiphertextBlob, encrypt(t, c, *k1.KeyId, pt, nil).CiphertextBlob) {
		t.Error("two encryptions gave the same blob")
	}
}

func testGenerateDataKey(t *testing.T, tg *target) {
	c := tg.client()
	ctx := t.Context()
	k := newKey(t, c, "contract gdk")
	ec := map[string]string{"purpose": "gdk"}
	for _, tc := range []struct {
		spec types.DataKeySpec
		n    *int32
		want int
	}{
		{types.DataKeySpecAes256, nil, 32},
		{types.DataKeySpecAes128, nil, 16},
		{"", aws.Int32(1), 1},
		{"", aws.Int32(64), 64},
		{"", aws.Int32(1024), 1024},
	} {
		out, err := c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: k.KeyId, KeySpec: tc.spec, NumberOfBytes: tc.n, EncryptionContext: ec})
		if err != nil {
			t.Fatalf("GenerateDataKey(%s, %v): %v", tc.spec, tc.n, err)
		}
		if len(out.Plaintext) != tc.want || *out.KeyId != *k.Arn || out.KeyMaterialId == nil {
			t.Fatalf("GenerateDataKey(%s, %v) = %d bytes, KeyId %s", tc.spec, tc.n, len(out.Plaintext), *out.KeyId)
		}
		if got := decrypt(t, c, out.CiphertextBlob, ec); !bytes.Equal(got.Plaintext, out.Plaintext) {
			t.Fatal("data key does not decrypt to its plaintext")
		}
	}
	for _, in := range []*kms.GenerateDataKeyInput{
		{KeyId: k.KeyId},
		{KeyId: k.KeyId, KeySpec: types.DataKeySpecAes256, NumberOfBytes: aws.Int32(32)},
		{KeyId: k.KeyId, NumberOfBytes: aws.Int32(0)},
		{KeyId: k.KeyId, NumberOfBytes: aws.Int32(1025)},
		{KeyId: k.KeyId, KeySpec: "AES_512"},
	} {
		_, err := c.GenerateDataKey(ctx, in)
		wantCode(t, err, "ValidationException")
	}
	wp, err := c.GenerateDataKeyWithoutPlaintext(ctx, &kms.GenerateDataKeyWithoutPlaintextInput{KeyId: k.KeyId, KeySpec: types.DataKeySpecAes256, EncryptionContext: ec})
	if err != nil {
		t.Fatal(err)
	}
	if *wp.KeyId != *k.Arn || wp.KeyMaterialId == nil {
		t.Errorf("GenerateDataKeyWithoutPlaintext = %+v", wp)
	}
	if got := decrypt(t, c, wp.CiphertextBlob, ec); len(got.Plaintext) != 32 {
		t.Errorf("data key without plaintext decrypts to %d bytes", len(got.Plaintext))
	}
	_, err = c.GenerateDataKeyWithoutPlaintext(ctx, &kms.GenerateDataKeyWithoutPlaintextInput{KeyId: k.KeyId})
	wantCode(t, err, "ValidationException")
}

func testReEncrypt(t *testing.T, tg *target) {
	raw := &rawClient{}
	c := tg.client(withHTTP(raw))
	ctx := t.Context()
	src := newKey(t, c, "contract reencrypt src")
	dst := newKey(t, c, "contract reencrypt dst")
	srcCtx := map[string]string{"object": "a"}
	dstCtx := map[string]string{"object": "a", "generation": "2"}
	gdk, err := c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: src.KeyId, KeySpec: types.DataKeySpecAes256, EncryptionContext: srcCtx})
	if err != nil {
		t.Fatal(err)
	}
	dstAlias := newAlias(t, c, *dst.KeyId, "dst")
	srcAlias := newAlias(t, c, *src.KeyId, "src")
	for _, dstID := range []string{*dst.KeyId, *dst.Arn, dstAlias, aliasARN(*dst.Arn, dstAlias)} {
		out, err := c.ReEncrypt(ctx, &kms.ReEncryptInput{
			CiphertextBlob: gdk.CiphertextBlob, SourceEncryptionContext: srcCtx,
			DestinationKeyId: aws.String(dstID), DestinationEncryptionContext: dstCtx,
		})
		if err != nil {
			t.Fatalf("ReEncrypt to %s: %v", dstID, err)
		}
		if *out.KeyId != *dst.Arn || *out.SourceKeyId != *src.Arn ||
			out.SourceEncryptionAlgorithm != types.EncryptionAlgorithmSpecSymmetricDefault ||
			out.DestinationEncryptionAlgorithm != types.EncryptionAlgorithmSpecSymmetricDefault ||
			*out.SourceKeyMaterialId != *src.CurrentKeyMaterialId || *out.DestinationKeyMaterialId != *dst.CurrentKeyMaterialId {
			t.Errorf("ReEncrypt output %+v", out)
		}
		var body map[string]any
		if err := json.Unmarshal(raw.lastBody(), &body); err != nil {
			t.Fatal(err)
		}
		if _, ok := body["Plaintext"]; ok {
			t.Fatal("ReEncrypt response carries a Plaintext field")
		}
		got := decrypt(t, c, out.CiphertextBlob, dstCtx)
		if !bytes.Equal(got.Plaintext, gdk.Plaintext) || *got.KeyId != *dst.Arn {
			t.Fatal("re-encrypted blob does not decrypt to the data key under the destination key")
		}
		_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: out.CiphertextBlob, EncryptionContext: srcCtx})
		wantErr[*types.InvalidCiphertextException](t, err)
	}
	in := func() *kms.ReEncryptInput {
		return &kms.ReEncryptInput{CiphertextBlob: gdk.CiphertextBlob, SourceEncryptionContext: srcCtx, DestinationKeyId: dst.KeyId}
	}
	// SourceKeyId is optional; when given it must name the blob's key.
	for _, id := range []string{*src.KeyId, *src.Arn, srcAlias} {
		r := in()
		r.SourceKeyId = aws.String(id)
		if _, err := c.ReEncrypt(ctx, r); err != nil {
			t.Errorf("ReEncrypt with SourceKeyId %s: %v", id, err)
		}
	}
	r := in()
	r.SourceKeyId = dst.KeyId
	_, err = c.ReEncrypt(ctx, r)
	wantErr[*types.IncorrectKeyException](t, err)
	r = in()
	r.SourceEncryptionContext = map[string]string{"object": "b"}
	_, err = c.ReEncrypt(ctx, r)
	wantErr[*types.InvalidCiphertextException](t, err)
	r = in()
	r.DestinationKeyId = aws.String("alias/" + testenv.Name(t) + "-missing")
	_, err = c.ReEncrypt(ctx, r)
	wantErr[*types.NotFoundException](t, err)
	r = in()
	r.CiphertextBlob = []byte("garbage")
	_, err = c.ReEncrypt(ctx, r)
	wantErr[*types.InvalidCiphertextException](t, err)
	r = in()
	r.DestinationEncryptionAlgorithm = types.EncryptionAlgorithmSpecRsaesOaepSha256
	_, err = c.ReEncrypt(ctx, r)
	wantErr[*types.InvalidKeyUsageException](t, err)

	// A disabled source or destination key.
	for _, k := range []*types.KeyMetadata{dst, src} {
		if _, err := c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: k.KeyId}); err != nil {
			t.Fatal(err)
		}
		_, err = c.ReEncrypt(ctx, in())
		wantErr[*types.DisabledException](t, err)
		if _, err := c.EnableKey(ctx, &kms.EnableKeyInput{KeyId: k.KeyId}); err != nil {
			t.Fatal(err)
		}
	}
	// Re-encrypting under the same key is allowed.
	r = in()
	r.DestinationKeyId = src.KeyId
	r.DestinationEncryptionContext = srcCtx
	if _, err := c.ReEncrypt(ctx, r); err != nil {
		t.Errorf("ReEncrypt to the same key: %v", err)
	}
}

func testRotation(t *testing.T, tg *target) {
	c := tg.client()
	ctx := t.Context()
	k := newKey(t, c, "contract rotation")
	st := must[*kms.GetKeyRotationStatusOutput](t)(c.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: k.KeyId}))
	if st.KeyRotationEnabled || *st.KeyId != *k.Arn || st.RotationPeriodInDays != nil {
		t.Errorf("initial rotation status %+v", st)
	}
	if _, err := c.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: k.KeyId, RotationPeriodInDays: aws.Int32(180)}); err != nil {
		t.Fatal(err)
	}
	st = must[*kms.GetKeyRotationStatusOutput](t)(c.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: k.Arn}))
	if !st.KeyRotationEnabled || st.RotationPeriodInDays == nil || *st.RotationPeriodInDays != 180 ||
		st.NextRotationDate == nil || st.NextRotationDate.Before(time.Now().AddDate(0, 0, 179)) {
		t.Errorf("rotation status after EnableKeyRotation(180) %+v", st)
	}
	for _, days := range []int32{89, 2561} {
		_, err := c.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: k.KeyId, RotationPeriodInDays: aws.Int32(days)})
		wantCode(t, err, "ValidationException")
	}

	ec := map[string]string{"v": "1"}
	old := encrypt(t, c, *k.KeyId, []byte("before rotation"), ec)
	oldMaterial := *k.CurrentKeyMaterialId
	rot := must[*kms.RotateKeyOnDemandOutput](t)(c.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: k.KeyId}))
	if *rot.KeyId != *k.Arn {
		t.Errorf("RotateKeyOnDemand KeyId = %s", *rot.KeyId)
	}
	md := must[*kms.DescribeKeyOutput](t)(c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: k.KeyId})).KeyMetadata
	newMaterial := *md.CurrentKeyMaterialId
	if newMaterial == oldMaterial {
		t.Fatal("CurrentKeyMaterialId did not change after RotateKeyOnDemand")
	}
	fresh := encrypt(t, c, *k.KeyId, []byte("after rotation"), ec)
	if got := decrypt(t, c, old.CiphertextBlob, ec); string(got.Plaintext) != "before rotation" || *got.KeyMaterialId != oldMaterial {
		t.Errorf("old ciphertext after rotation: %q, material %s", got.Plaintext, *got.KeyMaterialId)
	}
	if got := decrypt(t, c, fresh.CiphertextBlob, ec); string(got.Plaintext) != "after rotation" || *got.KeyMaterialId != newMaterial {
		t.Errorf("new ciphertext: %q, material %s", got.Plaintext, *got.KeyMaterialId)
	}
	// ReEncrypt under the same key moves a ciphertext to the newest material.
	re := must[*kms.ReEncryptOutput](t)(c.ReEncrypt(ctx, &kms.ReEncryptInput{
		CiphertextBlob: old.CiphertextBlob, SourceEncryptionContext: ec, DestinationKeyId: k.KeyId, DestinationEncryptionContext: ec,
	}))
	if *re.SourceKeyMaterialId != oldMaterial || *re.DestinationKeyMaterialId != newMaterial {
		t.Errorf("ReEncrypt materials %s -> %s, want %s -> %s", *re.SourceKeyMaterialId, *re.DestinationKeyMaterialId, oldMaterial, newMaterial)
	}
	if _, err := c.DisableKeyRotation(ctx, &kms.DisableKeyRotationInput{KeyId: k.KeyId}); err != nil {
		t.Fatal(err)
	}
	st = must[*kms.GetKeyRotationStatusOutput](t)(c.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: k.KeyId}))
	if st.KeyRotationEnabled {
		t.Error("rotation still enabled after DisableKeyRotation")
	}
	// Rotation needs an enabled key.
	if _, err := c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: k.KeyId}); err != nil {
		t.Fatal(err)
	}
	_, err := c.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: k.KeyId})
	wantErr[*types.DisabledException](t, err)
	_, err = c.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: k.KeyId})
	wantErr[*types.DisabledException](t, err)
	if _, err := c.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: k.KeyId}); err != nil {
		t.Errorf("GetKeyRotationStatus on a disabled key: %v", err)
	}
}

func testKeyStates(t *testing.T, tg *target) {
	c := tg.client()
	ctx := t.Context()
	k := newKey(t, c, "contract states")
	ec := map[string]string{"s": "1"}
	blob := encrypt(t, c, *k.KeyId, []byte("state"), ec).CiphertextBlob
	other := newKey(t, c, "contract states other")
	otherBlob := encrypt(t, c, *other.KeyId, []byte("other"), ec).CiphertextBlob

	cryptoOps := func(check func(error)) {
		t.Helper()
		_, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: k.KeyId, Plaintext: []byte("x")})
		check(err)
		_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, EncryptionContext: ec})
		check(err)
		_, err = c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: k.KeyId, KeySpec: types.DataKeySpecAes256})
		check(err)
		_, err = c.GenerateDataKeyWithoutPlaintext(ctx, &kms.GenerateDataKeyWithoutPlaintextInput{KeyId: k.KeyId, NumberOfBytes: aws.Int32(32)})
		check(err)
		_, err = c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: blob, SourceEncryptionContext: ec, DestinationKeyId: other.KeyId})
		check(err)
		_, err = c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: otherBlob, SourceEncryptionContext: ec, DestinationKeyId: k.KeyId})
		check(err)
	}

	if _, err := c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: k.KeyId}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: k.Arn}); err != nil {
		t.Fatalf("DisableKey twice: %v", err)
	}
	md := must[*kms.DescribeKeyOutput](t)(c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: k.KeyId})).KeyMetadata
	if md.Enabled || md.KeyState != types.KeyStateDisabled {
		t.Errorf("disabled key metadata: Enabled=%v state=%s", md.Enabled, md.KeyState)
	}
	cryptoOps(func(err error) {
		t.Helper()
		de := wantErr[*types.DisabledException](t, err)
		if !strings.Contains(de.ErrorMessage(), *k.Arn) || !strings.Contains(de.ErrorMessage(), "disabled") {
			t.Errorf("DisabledException message %q", de.ErrorMessage())
		}
	})
	if _, err := c.EnableKey(ctx, &kms.EnableKeyInput{KeyId: k.KeyId}); err != nil {
		t.Fatal(err)
	}
	cryptoOps(func(err error) {
		t.Helper()
		if err != nil {
			t.Errorf("after EnableKey: %v", err)
		}
	})

	// Scheduled deletion.
	for _, days := range []int32{6, 31} {
		_, err := c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: k.KeyId, PendingWindowInDays: aws.Int32(days)})
		wantCode(t, err, "ValidationException")
	}
	sd := must[*kms.ScheduleKeyDeletionOutput](t)(c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: k.KeyId}))
	if *sd.KeyId != *k.Arn || sd.KeyState != types.KeyStatePendingDeletion || *sd.PendingWindowInDays != 30 ||
		sd.DeletionDate == nil || sd.DeletionDate.Before(time.Now().AddDate(0, 0, 29)) {
		t.Errorf("ScheduleKeyDeletion output %+v", sd)
	}
	md = must[*kms.DescribeKeyOutput](t)(c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: k.KeyId})).KeyMetadata
	if md.KeyState != types.KeyStatePendingDeletion || md.DeletionDate == nil || *md.PendingDeletionWindowInDays != 30 {
		t.Errorf("pending key metadata %+v", md)
	}
	cryptoOps(func(err error) {
		t.Helper()
		e := wantErr[*types.KMSInvalidStateException](t, err)
		if !strings.Contains(e.ErrorMessage(), "pending deletion") {
			t.Errorf("KMSInvalidStateException message %q", e.ErrorMessage())
		}
	})
	_, err := c.EnableKey(ctx, &kms.EnableKeyInput{KeyId: k.KeyId})
	wantErr[*types.KMSInvalidStateException](t, err)
	_, err = c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: k.KeyId})
	wantErr[*types.KMSInvalidStateException](t, err)
	_, err = c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: k.KeyId})
	wantErr[*types.KMSInvalidStateException](t, err)
	_, err = c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/" + testenv.Name(t) + "-pending"), TargetKeyId: k.KeyId})
	wantErr[*types.KMSInvalidStateException](t, err)
	_, err = c.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: k.KeyId})
	wantErr[*types.KMSInvalidStateException](t, err)

	cd := must[*kms.CancelKeyDeletionOutput](t)(c.CancelKeyDeletion(ctx, &kms.CancelKeyDeletionInput{KeyId: k.KeyId}))
	if *cd.KeyId != *k.Arn {
		t.Errorf("CancelKeyDeletion KeyId = %s", *cd.KeyId)
	}
	md = must[*kms.DescribeKeyOutput](t)(c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: k.KeyId})).KeyMetadata
	if md.KeyState != types.KeyStateDisabled || md.DeletionDate != nil {
		t.Errorf("after CancelKeyDeletion: state %s, deletion date %v; want Disabled and none", md.KeyState, md.DeletionDate)
	}
	_, err = c.CancelKeyDeletion(ctx, &kms.CancelKeyDeletionInput{KeyId: k.KeyId})
	wantErr[*types.KMSInvalidStateException](t, err)
	if _, err := c.EnableKey(ctx, &kms.EnableKeyInput{KeyId: k.KeyId}); err != nil {
		t.Fatal(err)
	}
	decrypt(t, c, blob, ec)

	_, err = c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String("0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d")})
	wantErr[*types.NotFoundException](t, err)
}

// --- key policy ----------------------------------------------------------------------

func testPolicy(t *testing.T, tg *target) {
	c := tg.client()
	ctx := t.Context()
	src := newKey(t, c, "contract policy src")
	dst := newKey(t, c, "contract policy dst")
	ec := map[string]string{"p": "1"}
	blob := encrypt(t, c, *src.KeyId, []byte("policy"), ec).CiphertextBlob
	reEncrypt := func() error {
		_, err := c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: blob, SourceEncryptionContext: ec, DestinationKeyId: dst.KeyId})
		return err
	}

	gp := must[*kms.GetKeyPolicyOutput](t)(c.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: src.KeyId}))
	if *gp.PolicyName != "default" || !strings.Contains(*gp.Policy, `"kms:*"`) || !strings.Contains(*gp.Policy, ":root") {
		t.Errorf("default policy %s %s", *gp.PolicyName, *gp.Policy)
	}
	if err := reEncrypt(); err != nil {
		t.Fatalf("ReEncrypt under default policies: %v", err)
	}

	put := func(k *types.KeyMetadata, policy string) {
		t.Helper()
		if _, err := c.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: k.KeyId, PolicyName: aws.String("default"), Policy: aws.String(policy)}); err != nil {
			t.Fatalf("PutKeyPolicy: %v", err)
		}
	}
	deny := func(actions string) string {
		return `{"Version":"2012-10-17","Statement":[` +
			`{"Sid":"root","Effect":"Allow","Principal":{"AWS":"*"},"Action":"kms:*","Resource":"*"},` +
			`{"Sid":"deny","Effect":"Deny","Principal":"*","Action":` + actions + `,"Resource":"*"}]}`
	}
	wantDenied := func(err error, action, arn string) {
		t.Helper()
		ae := wantCode(t, err, "AccessDeniedException")
		msg := ae.ErrorMessage()
		if !strings.Contains(msg, "is not authorized to perform: "+action+" on resource: "+arn) || !strings.Contains(msg, "explicit deny") {
			t.Errorf("AccessDenied message %q: want action %s and resource %s", msg, action, arn)
		}
	}

	put(src, deny(`"kms:ReEncryptFrom"`))
	got := must[*kms.GetKeyPolicyOutput](t)(c.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: src.Arn, PolicyName: aws.String("default")}))
	if *got.Policy != deny(`"kms:ReEncryptFrom"`) {
		t.Errorf("GetKeyPolicy = %s", *got.Policy)
	}
	wantDenied(reEncrypt(), "kms:ReEncryptFrom", *src.Arn)
	decrypt(t, c, blob, ec) // Decrypt is not denied

	put(src, deny(`"kms:Describe*"`))
	_, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: src.KeyId})
	wantDenied(err, "kms:DescribeKey", *src.Arn)

	src2 := newKey(t, c, "contract policy src2")
	blob = encrypt(t, c, *src2.KeyId, []byte("policy"), ec).CiphertextBlob
	put(dst, deny(`["kms:Encrypt","kms:ReEncryptTo"]`))
	wantDenied(reEncrypt(), "kms:ReEncryptTo", *dst.Arn)
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: dst.KeyId, Plaintext: []byte("x")})
	wantDenied(err, "kms:Encrypt", *dst.Arn)
	if _, err := c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: dst.KeyId, NumberOfBytes: aws.Int32(32)}); err != nil {
		t.Errorf("GenerateDataKey is not denied: %v", err)
	}

	put(dst, deny(`"kms:ReEncrypt*"`))
	wantDenied(reEncrypt(), "kms:ReEncryptTo", *dst.Arn)
	put(src2, deny(`"KMS:decrypt"`)) // actions match case-insensitively
	_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, EncryptionContext: ec})
	wantDenied(err, "kms:Decrypt", *src2.Arn)
	_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, EncryptionContext: ec, DryRun: aws.Bool(true)})
	wantDenied(err, "kms:Decrypt", *src2.Arn) // DryRun checks permissions first
	put(dst, deny(`"kms:Sign"`))
	put(src2, `{"Statement":{"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::000000000000:root"},"Action":"kms:*"}}`)
	if err := func() error {
		_, err := c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: blob, SourceEncryptionContext: ec, DestinationKeyId: dst.KeyId})
		return err
	}(); err != nil {
		t.Errorf("a Deny for another principal or action applied: %v", err)
	}

	// NotAction: deny everything but Decrypt, the policy operations and the
	// test's cleanup.
	put(src2, `{"Statement":[{"Effect":"Deny","Principal":"*","NotAction":["kms:Decrypt","kms:*KeyPolicy","kms:ScheduleKeyDeletion"]}]}`)
	decrypt(t, c, blob, ec)
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: src2.KeyId, Plaintext: []byte("x")})
	wantDenied(err, "kms:Encrypt", *src2.Arn)

	// Malformed policies, the policy name and the lockout safety check.
	for _, bad := range []string{`not json`, `{"Statement":[]}`, `{"Statement":[{"Effect":"Maybe","Action":"kms:*"}]}`, `{"Statement":[{"Effect":"Deny"}]}`} {
		_, err := c.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: dst.KeyId, Policy: aws.String(bad)})
		wantErr[*types.MalformedPolicyDocumentException](t, err)
	}
	_, err = c.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: dst.KeyId, PolicyName: aws.String("other"), Policy: aws.String(deny(`"kms:Sign"`))})
	wantCode(t, err, "ValidationException")
	_, err = c.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: dst.KeyId, Policy: aws.String(deny(`"kms:PutKeyPolicy"`))})
	wantErr[*types.MalformedPolicyDocumentException](t, err)
	if _, err := c.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: dst.KeyId, Policy: aws.String(deny(`"kms:PutKeyPolicy"`)), BypassPolicyLockoutSafetyCheck: true}); err != nil {
		t.Errorf("PutKeyPolicy with BypassPolicyLockoutSafetyCheck: %v", err)
	}
	_, err = c.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: dst.KeyId, Policy: aws.String(deny(`"kms:Sign"`))})
	wantDenied(err, "kms:PutKeyPolicy", *dst.Arn)
	_, err = c.CreateKey(ctx, &kms.CreateKeyInput{Policy: aws.String(deny(`"kms:*"`))})
	wantErr[*types.MalformedPolicyDocumentException](t, err)
}

// --- listing ---------------------------------------------------------------------------

func testPagination(t *testing.T, tg *target) {
	c := tg.client()
	ctx := t.Context()
	want := map[string]bool{}
	var first *types.KeyMetadata
	for i := range 5 {
		md := newKey(t, c, fmt.Sprintf("contract pagination %d", i))
		want[*md.KeyId] = true
		if first == nil {
			first = md
		}
	}
	seen := map[string]int{}
	pages := 0
	p := kms.NewListKeysPaginator(c, &kms.ListKeysInput{Limit: aws.Int32(tg.listLimit)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(out.Keys) > int(tg.listLimit) {
			t.Fatalf("page of %d keys, limit %d", len(out.Keys), tg.listLimit)
		}
		if out.Truncated != (out.NextMarker != nil) {
			t.Fatalf("Truncated=%v with NextMarker %v", out.Truncated, out.NextMarker)
		}
		for _, k := range out.Keys {
			seen[*k.KeyId]++
			if !strings.HasSuffix(*k.KeyArn, ":key/"+*k.KeyId) {
				t.Errorf("KeyArn %s for KeyId %s", *k.KeyArn, *k.KeyId)
			}
		}
	}
	for id := range want {
		if seen[id] != 1 {
			t.Errorf("key %s listed %d times", id, seen[id])
		}
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("key %s listed %d times", id, n)
		}
	}
	if tg.listLimit <= 2 && pages < 3 {
		t.Errorf("ListKeys gave %d pages for at least 5 keys with limit %d", pages, tg.listLimit)
	}

	var aliases []string
	for i := range 5 {
		aliases = append(aliases, newAlias(t, c, *first.KeyId, fmt.Sprint(i)))
	}
	var listed []string
	pages = 0
	ap := kms.NewListAliasesPaginator(c, &kms.ListAliasesInput{KeyId: first.KeyId, Limit: aws.Int32(2)})
	for ap.HasMorePages() {
		out, err := ap.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, a := range out.Aliases {
			listed = append(listed, *a.AliasName)
		}
	}
	slices.Sort(aliases)
	if !slices.Equal(listed, aliases) || pages != 3 {
		t.Errorf("ListAliases pages=%d listed %v, want 3 pages of %v", pages, listed, aliases)
	}

	_, err := c.ListKeys(ctx, &kms.ListKeysInput{Marker: aws.String("!!not a marker!!")})
	wantErr[*types.InvalidMarkerException](t, err)
	for _, limit := range []int32{0, 1001} {
		_, err = c.ListKeys(ctx, &kms.ListKeysInput{Limit: aws.Int32(limit)})
		wantCode(t, err, "ValidationException")
	}
	_, err = c.ListAliases(ctx, &kms.ListAliasesInput{Limit: aws.Int32(101)})
	wantCode(t, err, "ValidationException")
	_, err = c.ListAliases(ctx, &kms.ListAliasesInput{KeyId: aws.String("0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d")})
	wantErr[*types.NotFoundException](t, err)
}

// --- regions, dry run, protocol ------------------------------------------------------------

func testCrossRegion(t *testing.T, tg *target) {
	home := tg.client()
	away := tg.newClient(tg.otherRegion())
	ctx := t.Context()
	remote := newKey(t, away, "contract other region")
	if !strings.HasPrefix(*remote.Arn, "arn:aws:kms:"+tg.otherRegion()+":") {
		t.Fatalf("key created by a %s client has ARN %s", tg.otherRegion(), *remote.Arn)
	}
	local := newKey(t, home, "contract home region")
	blob := encrypt(t, away, *remote.Arn, []byte("regional"), nil).CiphertextBlob

	// KMS keys are regional: an ARN of another region does not reach them.
	_, err := home.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: remote.Arn})
	wantErr[*types.NotFoundException](t, err)
	_, err = home.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: remote.KeyId})
	wantErr[*types.NotFoundException](t, err)
	_, err = home.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob})
	wantErr[*types.InvalidCiphertextException](t, err)
	_, err = away.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: blob, DestinationKeyId: local.Arn})
	wantErr[*types.NotFoundException](t, err)
	decrypt(t, away, blob, nil)

	keys := must[*kms.ListKeysOutput](t)(away.ListKeys(ctx, &kms.ListKeysInput{Limit: aws.Int32(1000)}))
	for _, k := range keys.Keys {
		if !strings.HasPrefix(*k.KeyArn, "arn:aws:kms:"+tg.otherRegion()+":") {
			t.Errorf("ListKeys in %s lists %s", tg.otherRegion(), *k.KeyArn)
		}
	}
}

func testDryRun(t *testing.T, tg *target) {
	c := tg.client()
	ctx := t.Context()
	k := newKey(t, c, "contract dry run")
	dst := newKey(t, c, "contract dry run dst")
	blob := encrypt(t, c, *k.KeyId, []byte("dry"), nil).CiphertextBlob
	dry := aws.Bool(true)
	_, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: k.KeyId, Plaintext: []byte("x"), DryRun: dry})
	wantErr[*types.DryRunOperationException](t, err)
	_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, DryRun: dry})
	wantErr[*types.DryRunOperationException](t, err)
	_, err = c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: k.KeyId, KeySpec: types.DataKeySpecAes256, DryRun: dry})
	wantErr[*types.DryRunOperationException](t, err)
	_, err = c.GenerateDataKeyWithoutPlaintext(ctx, &kms.GenerateDataKeyWithoutPlaintextInput{KeyId: k.KeyId, KeySpec: types.DataKeySpecAes256, DryRun: dry})
	wantErr[*types.DryRunOperationException](t, err)
	_, err = c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: blob, DestinationKeyId: dst.KeyId, DryRun: dry})
	wantErr[*types.DryRunOperationException](t, err)
	ignore := []types.DryRunModifierType{types.DryRunModifierTypeIgnoreCiphertext}
	_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: []byte("garbage"), KeyId: k.KeyId, DryRun: dry, DryRunModifiers: ignore})
	wantErr[*types.DryRunOperationException](t, err)
	_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: []byte("garbage"), DryRun: dry})
	wantErr[*types.InvalidCiphertextException](t, err)
	// DryRun still checks the key state.
	if _, err := c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: k.KeyId}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: k.KeyId, Plaintext: []byte("x"), DryRun: dry})
	wantErr[*types.DisabledException](t, err)
}

func testProtocol(t *testing.T, tg *target) {
	ctx := t.Context()
	k := newKey(t, tg.client(), "contract protocol")

	unknown := tg.client(withHTTP(&rawClient{target: "TrentService.NoSuchOperation"}))
	_, err := unknown.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: k.KeyId})
	wantCode(t, err, "UnknownOperationException")
	bad := tg.client(withHTTP(&rawClient{target: "Bogus.DescribeKey"}))
	_, err = bad.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: k.KeyId})
	wantCode(t, err, "UnknownOperationException")
	unimplemented := tg.client(withHTTP(&rawClient{target: "TrentService.Sign"}))
	_, err = unimplemented.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: k.KeyId})
	wantErr[*types.UnsupportedOperationException](t, err)

	// Missing required parameters (the SDK refuses to send them, so the body
	// is replaced on the wire).
	empty := tg.client(withHTTP(&rawClient{body: []byte(`{}`)}))
	_, err = empty.Encrypt(ctx, &kms.EncryptInput{KeyId: k.KeyId, Plaintext: []byte("x")})
	ae := wantCode(t, err, "ValidationException")
	if msg := ae.ErrorMessage(); !strings.Contains(msg, "2 validation errors") || !strings.Contains(msg, "'keyId'") || !strings.Contains(msg, "'plaintext'") {
		t.Errorf("ValidationException message %q", msg)
	}
	for name, call := range map[string]func() error{
		"Decrypt": func() error { _, err := empty.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: []byte("x")}); return err },
		"ReEncrypt": func() error {
			_, err := empty.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: []byte("x"), DestinationKeyId: k.KeyId})
			return err
		},
		"GenerateDataKey": func() error {
			_, err := empty.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: k.KeyId})
			return err
		},
		"DescribeKey": func() error { _, err := empty.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: k.KeyId}); return err },
		"CreateAlias": func() error {
			_, err := empty.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/x"), TargetKeyId: k.KeyId})
			return err
		},
		"PutKeyPolicy": func() error {
			_, err := empty.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: k.KeyId, Policy: aws.String("{}")})
			return err
		},
	} {
		var ae smithy.APIError
		if err := call(); !errors.As(err, &ae) || ae.ErrorCode() != "ValidationException" || !strings.Contains(ae.ErrorMessage(), "must not be null") {
			t.Errorf("%s with an empty body: want ValidationException (must not be null), got %v", name, err)
		}
	}
	malformed := tg.client(withHTTP(&rawClient{body: []byte(`{"KeyId": 12`)}))
	_, err = malformed.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: k.KeyId})
	wantCode(t, err, "SerializationException")
}
