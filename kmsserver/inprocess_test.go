package kmsserver_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/rotator-dev/rotator/kmsserver"
)

// These tests need control over the server (rate, faults, clock, restarts,
// seeds), so they run against in-process servers only. They still talk to
// it only through the SDK client over HTTP.

func noRetries(o *kms.Options) { o.Retryer = aws.NopRetryer{} }

// fastRetries is the SDK's standard retryer without backoff delays.
func fastRetries(o *kms.Options) {
	o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
		so.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
	})
}

// TestThrottling is not parallel: it measures a burst.
func TestThrottling(t *testing.T) {
	const rps = 5
	s := kmsserver.NewTestServer(t, kmsserver.Options{RPS: rps})
	c := s.Client("", noRetries)
	ctx := t.Context()
	k := newKey(t, c, "throttle")

	// burst sends 50 Encrypt requests at once and returns how long it took
	// and one of the throttling errors.
	burst := func(c *kms.Client, keyID string) (ok, throttled int, took time.Duration, sample error) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 50 {
			wg.Go(func() {
				<-start
				_, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keyID), Plaintext: []byte("x")})
				mu.Lock()
				defer mu.Unlock()
				var ae smithy.APIError
				switch {
				case err == nil:
					ok++
				case errors.As(err, &ae) && ae.ErrorCode() == "ThrottlingException":
					throttled++
					sample = err
				default:
					t.Errorf("Encrypt: %v", err)
				}
			})
		}
		t0 := time.Now()
		close(start)
		wg.Wait()
		return ok, throttled, time.Since(t0), sample
	}
	ok, throttled, took, err := burst(c, *k.KeyId)
	// The bucket starts with rps tokens and refills at rps per second: on a
	// loaded machine the burst takes longer and more requests get through.
	maxOK := rps + int(rps*took.Seconds()) + 1
	t.Logf("burst of 50 at %d rps in %v: %d ok, %d throttled (at most %d ok expected)", rps, took, ok, throttled, maxOK)
	if ok < 1 || ok > maxOK || ok+throttled != 50 {
		t.Fatalf("burst of 50 at %d rps in %v: %d ok, %d throttled; want 1 to %d ok", rps, took, ok, throttled, maxOK)
	}
	if throttled == 0 {
		t.Fatalf("burst of 50 at %d rps in %v: nothing throttled (the machine is too slow for this test)", rps, took)
	}
	if msg := wantCode(t, err, "ThrottlingException").ErrorMessage(); msg != "Rate exceeded" {
		t.Errorf("ThrottlingException message %q", msg)
	}
	if retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err) != aws.TrueTernary {
		t.Error("the SDK does not classify ThrottlingException as a throttle")
	}
	if retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err) != aws.TrueTernary {
		t.Error("the SDK does not classify ThrottlingException as retryable")
	}

	// Management operations do not count against the cryptographic quota.
	for range 20 {
		if _, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: k.KeyId}); err != nil {
			t.Fatalf("DescribeKey while the crypto quota is spent: %v", err)
		}
	}
	// The quota is per account and region.
	away := s.Client("eu-west-1", noRetries)
	remote := newKey(t, away, "throttle remote")
	if _, err := away.Encrypt(ctx, &kms.EncryptInput{KeyId: remote.KeyId, Plaintext: []byte("x")}); err != nil {
		t.Errorf("Encrypt in another region while us-east-1 is throttled: %v", err)
	}
	// The standard retryer retries a throttled request.
	s.SetRateLimit(0)
	s.ResetCounts()
	s.FailNext("Encrypt", kmsserver.ErrThrottling, 1)
	if _, err := s.Client("", fastRetries).Encrypt(ctx, &kms.EncryptInput{KeyId: k.KeyId, Plaintext: []byte("x")}); err != nil {
		t.Fatalf("Encrypt with retries after one throttle: %v", err)
	}
	if n := s.Count("Encrypt"); n != 2 {
		t.Errorf("Encrypt requests = %d, want 2 (one throttled, one retry)", n)
	}
	// Without a cap nothing is throttled.
	if ok, throttled, _, _ := burst(c, *k.KeyId); ok != 50 || throttled != 0 {
		t.Errorf("uncapped burst: %d ok, %d throttled", ok, throttled)
	}
}

// TestRandomThrottling: ThrottleFraction throttles about that fraction of
// the cryptographic requests, one after another (no rate to speak of), the
// same ones for the same seed, and leaves other operations alone.
func TestRandomThrottling(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	outcomes := func(seed uint64) []bool {
		s := kmsserver.NewTestServer(t, kmsserver.Options{ThrottleFraction: 0.3, ThrottleSeed: seed})
		c := s.Client("", noRetries)
		k := newKey(t, c, "random throttling")
		var got []bool
		for range 400 {
			_, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: k.KeyId, Plaintext: []byte("x")})
			if err != nil {
				if msg := wantCode(t, err, "ThrottlingException").ErrorMessage(); msg != "Rate exceeded" {
					t.Fatalf("ThrottlingException message %q", msg)
				}
			}
			got = append(got, err != nil)
			// Management operations are never throttled.
			if _, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: k.KeyId}); err != nil {
				t.Fatalf("DescribeKey under random throttling: %v", err)
			}
		}
		return got
	}
	a, b, other := outcomes(42), outcomes(42), outcomes(43)
	n := 0
	for _, th := range a {
		if th {
			n++
		}
	}
	// 400 draws at 0.3: 120 expected, standard deviation 9.2.
	if n < 90 || n > 150 {
		t.Errorf("%d of 400 requests throttled at fraction 0.3", n)
	}
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Error("the same seed throttled different requests")
	}
	if fmt.Sprint(a) == fmt.Sprint(other) {
		t.Error("another seed throttled the same requests")
	}

	// SetThrottleFraction: 1 throttles everything, 0 nothing.
	s := kmsserver.NewTestServer(t, kmsserver.Options{})
	c := s.Client("", noRetries)
	k := newKey(t, c, "random throttling on and off")
	s.SetThrottleFraction(1)
	_, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: k.KeyId, Plaintext: []byte("x")})
	wantCode(t, err, "ThrottlingException")
	s.SetThrottleFraction(0)
	if _, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: k.KeyId, Plaintext: []byte("x")}); err != nil {
		t.Fatalf("Encrypt after SetThrottleFraction(0): %v", err)
	}
	if _, err := kmsserver.New(kmsserver.Options{ThrottleFraction: 1.5}); err == nil {
		t.Error("New accepted a throttle fraction of 1.5")
	}
}

func TestFailNext(t *testing.T) {
	t.Parallel()
	s := kmsserver.NewTestServer(t, kmsserver.Options{})
	c := s.Client("", noRetries)
	ctx := t.Context()
	k := newKey(t, c, "faults")
	blob := encrypt(t, c, *k.KeyId, []byte("f"), nil).CiphertextBlob

	s.FailNext("Decrypt", kmsserver.ErrKMSInternal, 1)
	_, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob})
	wantErr[*types.KMSInternalException](t, err)
	decrypt(t, c, blob, nil)

	s.FailNext("*", kmsserver.ErrDependencyTimeout, 2)
	_, err = c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: k.KeyId})
	wantErr[*types.DependencyTimeoutException](t, err)
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: k.KeyId, Plaintext: []byte("x")})
	wantErr[*types.DependencyTimeoutException](t, err)
	encrypt(t, c, *k.KeyId, []byte("x"), nil)

	s.FailNext("ReEncrypt", kmsserver.ErrNotFound, 5)
	s.FailNext("ReEncrypt", "", 0) // cleared
	func() {
		defer func() {
			if recover() == nil {
				t.Error("FailNext with a misspelt operation did not panic")
			}
		}()
		s.FailNext("Decrpyt", kmsserver.ErrKMSInternal, 1)
	}()
	if _, err := c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: blob, DestinationKeyId: k.KeyId}); err != nil {
		t.Errorf("ReEncrypt after clearing the fault: %v", err)
	}

	// The SDK's standard retryer retries server faults.
	s.ResetCounts()
	s.FailNext("Encrypt", kmsserver.ErrKMSInternal, 2)
	if _, err := s.Client("", fastRetries).Encrypt(ctx, &kms.EncryptInput{KeyId: k.KeyId, Plaintext: []byte("x")}); err != nil {
		t.Fatalf("Encrypt with retries: %v", err)
	}
	if n := s.Count("Encrypt"); n != 3 {
		t.Errorf("Encrypt requests = %d, want 3", n)
	}
}

func TestCounters(t *testing.T) {
	t.Parallel()
	s := kmsserver.NewTestServer(t, kmsserver.Options{})
	c := s.Client("")
	ctx := t.Context()
	src := newKey(t, c, "count src")
	dst := newKey(t, c, "count dst")
	gdk, err := c.GenerateDataKeyWithoutPlaintext(ctx, &kms.GenerateDataKeyWithoutPlaintextInput{KeyId: src.KeyId, KeySpec: types.DataKeySpecAes256})
	if err != nil {
		t.Fatal(err)
	}
	s.ResetCounts()
	if _, err := c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: gdk.CiphertextBlob, DestinationKeyId: dst.KeyId}); err != nil {
		t.Fatal(err)
	}
	_, _ = c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: []byte("bad"), DestinationKeyId: dst.KeyId})
	if s.Count("ReEncrypt") != 2 || s.Count("Decrypt") != 0 || s.Count("GenerateDataKey") != 0 {
		t.Errorf("counts %v: want 2 ReEncrypt (failed ones count too) and no Decrypt", s.Counts())
	}
	if got := s.Counts(); len(got) != 1 || got["ReEncrypt"] != 2 {
		t.Errorf("Counts() = %v", got)
	}
}

// TestLatency is not parallel: it measures requests.
func TestLatency(t *testing.T) {
	s := kmsserver.NewTestServer(t, kmsserver.Options{Latency: 30 * time.Millisecond, Jitter: 10 * time.Millisecond})
	c := s.Client("")
	ctx := t.Context()
	k := newKey(t, c, "latency")
	timed := func() time.Duration {
		t.Helper()
		start := time.Now()
		if _, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: k.KeyId}); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	if d := timed(); d < 30*time.Millisecond {
		t.Errorf("request took %v with 30ms latency", d)
	}
	s.SetLatency(80*time.Millisecond, 0)
	if d := timed(); d < 80*time.Millisecond {
		t.Errorf("request took %v after SetLatency(80ms)", d)
	}
	s.SetLatency(0, 0)
	timed() // no lower bound to check; an upper bound would be flaky on a loaded machine
}

const otherAccount = "444455556666"

func TestCrossAccount(t *testing.T) {
	t.Parallel()
	s := kmsserver.NewTestServer(t, kmsserver.Options{})
	c := s.Client("")
	ctx := t.Context()
	remoteARN, err := s.AddKey(kmsserver.SeedKey{Account: otherAccount, Aliases: []string{"alias/xacct-dest"}, Description: "other account"})
	if err != nil {
		t.Fatal(err)
	}
	remoteID := remoteARN[strings.LastIndex(remoteARN, "/")+1:]
	if want := "arn:aws:kms:us-east-1:" + otherAccount + ":key/" + remoteID; remoteARN != want {
		t.Fatalf("AddKey ARN %s, want %s", remoteARN, want)
	}
	md, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(remoteARN)})
	if err != nil {
		t.Fatalf("DescribeKey by cross-account ARN: %v", err)
	}
	if *md.KeyMetadata.AWSAccountId != otherAccount {
		t.Errorf("AWSAccountId = %s", *md.KeyMetadata.AWSAccountId)
	}
	// Bare IDs and alias names resolve in the caller's own account only.
	_, err = c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(remoteID)})
	wantErr[*types.NotFoundException](t, err)
	_, err = c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/xacct-dest")})
	wantErr[*types.NotFoundException](t, err)
	aliasARN := "arn:aws:kms:us-east-1:" + otherAccount + ":alias/xacct-dest"
	enc := encrypt(t, c, aliasARN, []byte("cross"), nil)
	if *enc.KeyId != remoteARN {
		t.Errorf("Encrypt via alias ARN: KeyId %s", *enc.KeyId)
	}
	keys, err := c.ListKeys(ctx, &kms.ListKeysInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys.Keys {
		if *k.KeyId == remoteID {
			t.Error("ListKeys lists another account's key")
		}
	}

	// Re-encrypt from the caller's key into the other account's key.
	local := newKey(t, c, "local")
	gdk, err := c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: local.KeyId, KeySpec: types.DataKeySpecAes256})
	if err != nil {
		t.Fatal(err)
	}
	re, err := c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: gdk.CiphertextBlob, DestinationKeyId: aws.String(remoteARN)})
	if err != nil {
		t.Fatalf("ReEncrypt to a cross-account key: %v", err)
	}
	if *re.KeyId != remoteARN {
		t.Errorf("ReEncrypt KeyId %s", *re.KeyId)
	}
	if got := decrypt(t, c, re.CiphertextBlob, nil); !bytes.Equal(got.Plaintext, gdk.Plaintext) || *got.KeyId != remoteARN {
		t.Error("cross-account ciphertext does not decrypt")
	}

	// A policy on the other account's key denying ReEncryptTo.
	denyARN, err := s.AddKey(kmsserver.SeedKey{
		Account: otherAccount,
		Policy:  json.RawMessage(`{"Statement":[{"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:ReEncrypt*","Resource":"*"}]}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: gdk.CiphertextBlob, DestinationKeyId: aws.String(denyARN)})
	ae := wantCode(t, err, "AccessDeniedException")
	if !strings.Contains(ae.ErrorMessage(), "User: arn:aws:iam::111122223333:user/"+kmsserver.TestAccessKeyID+" is not authorized to perform: kms:ReEncryptTo on resource: "+denyARN) {
		t.Errorf("AccessDenied message %q", ae.ErrorMessage())
	}
	if _, err := s.AddKey(kmsserver.SeedKey{Account: otherAccount, Aliases: []string{"alias/xacct-dest"}}); err == nil {
		t.Error("AddKey with a taken alias succeeded")
	}
	if _, err := s.AddKey(kmsserver.SeedKey{Account: "12"}); err == nil {
		t.Error("AddKey with a bad account succeeded")
	}
}

func TestSeedFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	material := bytes.Repeat([]byte{7}, 32)
	seed := fmt.Sprintf(`{"keys": [
		{"account": %q, "region": "eu-west-1", "material": %q, "aliases": ["alias/seeded"], "description": "seeded"},
		{"id": "0b8c3f4e-1d2a-4c5b-9e6f-7a8b9c0d1e2f", "state": "Disabled"},
		{"aliases": ["alias/no-decrypt"], "policy": "{\"Statement\":{\"Effect\":\"Deny\",\"Principal\":\"*\",\"Action\":\"kms:Decrypt\"}}"},
		{"state": "PendingDeletion", "rotation_enabled": true}
	]}`, otherAccount, base64.StdEncoding.EncodeToString(material))
	path := filepath.Join(dir, "seed.json")
	if err := os.WriteFile(path, []byte(seed), 0o600); err != nil {
		t.Fatal(err)
	}
	a := kmsserver.NewTestServer(t, kmsserver.Options{SeedFile: path})
	ctx := t.Context()
	away := a.Client("eu-west-1")
	seededAlias := "arn:aws:kms:eu-west-1:" + otherAccount + ":alias/seeded"
	blob := encrypt(t, away, seededAlias, []byte("seeded"), nil).CiphertextBlob

	// A second server from the same seed has the same key (same derived ID,
	// same material): it decrypts the first server's ciphertext.
	b := kmsserver.NewTestServer(t, kmsserver.Options{SeedFile: path})
	if got := decrypt(t, b.Client("eu-west-1"), blob, nil); string(got.Plaintext) != "seeded" {
		t.Errorf("second server decrypts %q", got.Plaintext)
	}
	c := b.Client("")
	_, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String("0b8c3f4e-1d2a-4c5b-9e6f-7a8b9c0d1e2f"), Plaintext: []byte("x")})
	wantErr[*types.DisabledException](t, err)
	blob2 := encrypt(t, c, "alias/no-decrypt", []byte("x"), nil).CiphertextBlob
	_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob2})
	wantCode(t, err, "AccessDeniedException")
	keys, err := c.ListKeys(ctx, &kms.ListKeysInput{})
	if err != nil {
		t.Fatal(err)
	}
	pending := 0
	for _, k := range keys.Keys {
		md, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: k.KeyId})
		if err != nil {
			t.Fatal(err)
		}
		if md.KeyMetadata.KeyState == types.KeyStatePendingDeletion {
			pending++
			st, err := c.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: k.KeyId})
			if err != nil || !st.KeyRotationEnabled {
				t.Errorf("seeded rotation_enabled: %v %v", st, err)
			}
		}
	}
	if len(keys.Keys) != 3 || pending != 1 {
		t.Errorf("default account has %d keys (%d pending deletion), want 3 (1)", len(keys.Keys), pending)
	}

	for name, bad := range map[string]string{
		"unknown field": `{"keys": [{"acount": "444455556666"}]}`,
		"material size": `{"keys": [{"material": "AAAA"}]}`,
		"state":         `{"keys": [{"state": "Gone"}]}`,
		"alias":         `{"keys": [{"aliases": ["noprefix"]}]}`,
		"policy":        `{"keys": [{"policy": {"Statement": []}}]}`,
		"id":            `{"keys": [{"id": "not-a-uuid"}]}`,
		"json":          `{"keys": [`,
	} {
		p := filepath.Join(dir, "bad.json")
		if err := os.WriteFile(p, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := kmsserver.New(kmsserver.Options{SeedFile: p}); err == nil {
			t.Errorf("seed with bad %s accepted", name)
		}
	}
}

func TestPersistence(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	state := filepath.Join(dir, "state", "kms.json")
	if err := os.Mkdir(filepath.Dir(state), 0o700); err != nil {
		t.Fatal(err)
	}
	s1 := kmsserver.NewTestServer(t, kmsserver.Options{StateFile: state})
	c := s1.Client("")
	ctx := t.Context()
	k := newKey(t, c, "persisted")
	alias := newAlias(t, c, *k.KeyId, "persisted")
	ec := map[string]string{"persist": "yes"}
	before := encrypt(t, c, alias, []byte("before rotation"), ec).CiphertextBlob
	if _, err := c.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: k.KeyId}); err != nil {
		t.Fatal(err)
	}
	after := encrypt(t, c, alias, []byte("after rotation"), ec).CiphertextBlob
	if _, err := c.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: k.KeyId, RotationPeriodInDays: aws.Int32(100)}); err != nil {
		t.Fatal(err)
	}
	policy := `{"Statement":[{"Effect":"Deny","Principal":"*","Action":"kms:GenerateDataKey"}]}`
	if _, err := c.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: k.KeyId, Policy: aws.String(policy)}); err != nil {
		t.Fatal(err)
	}
	disabled := newKey(t, c, "disabled")
	if _, err := c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: disabled.KeyId}); err != nil {
		t.Fatal(err)
	}
	pending := newKey(t, c, "pending")
	if _, err := c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: pending.KeyId, PendingWindowInDays: aws.Int32(9)}); err != nil {
		t.Fatal(err)
	}
	md, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: k.KeyId})
	if err != nil {
		t.Fatal(err)
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}

	fi, err := os.Stat(state)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v, want 0600", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(filepath.Dir(state))
	if len(entries) != 1 {
		t.Errorf("state directory holds %d files, want only the state file (no temporary files left)", len(entries))
	}
	raw, _ := os.ReadFile(state)
	if !json.Valid(raw) {
		t.Fatal("state file is not valid JSON")
	}

	s2 := kmsserver.NewTestServer(t, kmsserver.Options{StateFile: state})
	c = s2.Client("")
	if got := decrypt(t, c, before, ec); string(got.Plaintext) != "before rotation" {
		t.Errorf("pre-rotation ciphertext after restart: %q", got.Plaintext)
	}
	if got := decrypt(t, c, after, ec); string(got.Plaintext) != "after rotation" {
		t.Errorf("post-rotation ciphertext after restart: %q", got.Plaintext)
	}
	md2, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(alias)})
	if err != nil {
		t.Fatalf("alias after restart: %v", err)
	}
	if *md2.KeyMetadata.CurrentKeyMaterialId != *md.KeyMetadata.CurrentKeyMaterialId || !md2.KeyMetadata.CreationDate.Equal(*md.KeyMetadata.CreationDate) {
		t.Errorf("metadata changed across restart: %+v vs %+v", md2.KeyMetadata, md.KeyMetadata)
	}
	st, err := c.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: k.KeyId})
	if err != nil || !st.KeyRotationEnabled || *st.RotationPeriodInDays != 100 {
		t.Errorf("rotation status after restart: %+v %v", st, err)
	}
	gp, err := c.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: k.KeyId})
	if err != nil || *gp.Policy != policy {
		t.Errorf("policy after restart: %v %v", gp, err)
	}
	_, err = c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: k.KeyId, KeySpec: types.DataKeySpecAes256})
	wantCode(t, err, "AccessDeniedException")
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: disabled.KeyId, Plaintext: []byte("x")})
	wantErr[*types.DisabledException](t, err)
	pmd, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: pending.KeyId})
	if err != nil || pmd.KeyMetadata.KeyState != types.KeyStatePendingDeletion || *pmd.KeyMetadata.PendingDeletionWindowInDays != 9 {
		t.Errorf("pending key after restart: %+v %v", pmd, err)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}

	// A seed next to an existing state adds its missing keys once.
	seed := &kmsserver.Seed{Keys: []kmsserver.SeedKey{{Aliases: []string{"alias/from-seed"}}}}
	for range 2 {
		s3, err := kmsserver.Start(kmsserver.Options{StateFile: state, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		keys, err := s3.Client("").ListKeys(ctx, &kms.ListKeysInput{})
		s3.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys.Keys) != 4 {
			t.Errorf("after seeding next to the state: %d keys, want 4", len(keys.Keys))
		}
	}

	if err := os.WriteFile(state, []byte(`{"format": 1, "keys": [{"id": "x"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := kmsserver.New(kmsserver.Options{StateFile: state}); err == nil {
		t.Error("a corrupt state file was accepted")
	}
}

func TestKeyDeletionExpires(t *testing.T) {
	t.Parallel()
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	s := kmsserver.NewTestServer(t, kmsserver.Options{Now: now})
	c := s.Client("")
	ctx := t.Context()
	k := newKey(t, c, "expiring")
	alias := newAlias(t, c, *k.KeyId, "expiring")
	blob := encrypt(t, c, *k.KeyId, []byte("gone soon"), nil).CiphertextBlob
	if _, err := c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: k.KeyId, PendingWindowInDays: aws.Int32(7)}); err != nil {
		t.Fatal(err)
	}
	offset.Store(int64(6 * 24 * time.Hour))
	if _, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: k.KeyId}); err != nil {
		t.Fatalf("key deleted before its window ended: %v", err)
	}
	offset.Store(int64(7*24*time.Hour + time.Second))
	_, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: k.KeyId})
	wantErr[*types.NotFoundException](t, err)
	_, err = c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(alias)})
	wantErr[*types.NotFoundException](t, err)
	_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob})
	wantErr[*types.NotFoundException](t, err)
}

func TestAllowCrossRegion(t *testing.T) {
	t.Parallel()
	s := kmsserver.NewTestServer(t, kmsserver.Options{AllowCrossRegion: true})
	home, away := s.Client(""), s.Client("eu-west-1")
	ctx := t.Context()
	remote := newKey(t, away, "remote")
	local := newKey(t, home, "local")
	blob := encrypt(t, home, *local.KeyId, []byte("x"), nil).CiphertextBlob
	re, err := home.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: blob, DestinationKeyId: remote.Arn})
	if err != nil {
		t.Fatalf("ReEncrypt to another region's key with AllowCrossRegion: %v", err)
	}
	decrypt(t, home, re.CiphertextBlob, nil)
}

func TestLogNeverHoldsSecrets(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var log strings.Builder
	logf := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(&log, format+"\n", args...)
	}
	s := kmsserver.NewTestServer(t, kmsserver.Options{Logf: logf})
	c := s.Client("")
	k := newKey(t, c, "logging")
	secret := []byte("TOP-SECRET-PLAINTEXT")
	blob := encrypt(t, c, *k.KeyId, secret, nil).CiphertextBlob
	decrypt(t, c, blob, nil)
	gdk, err := c.GenerateDataKey(t.Context(), &kms.GenerateDataKeyInput{KeyId: k.KeyId, KeySpec: types.DataKeySpecAes256})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	out := log.String()
	for _, op := range []string{"CreateKey", "Encrypt", "Decrypt", "GenerateDataKey"} {
		if !strings.Contains(out, "kms "+op+" 200") {
			t.Errorf("log lacks a line for %s:\n%s", op, out)
		}
	}
	for _, s := range [][]byte{secret, []byte(base64.StdEncoding.EncodeToString(secret)), []byte(base64.StdEncoding.EncodeToString(gdk.Plaintext))} {
		if strings.Contains(out, string(s)) {
			t.Fatal("the log contains plaintext")
		}
	}
}

func TestStartLoopbackOnly(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.1:0", "example.com:0", "nonsense"} {
		if s, err := kmsserver.Start(kmsserver.Options{Addr: addr}); err == nil {
			s.Close()
			t.Errorf("Start(%q) succeeded: only loopback addresses are allowed", addr)
		}
	}
	s, err := kmsserver.Start(kmsserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") {
		t.Errorf("default URL %s", s.URL)
	}
	for _, opts := range []kmsserver.Options{{Region: "moon"}, {Account: "1"}, {Latency: -1}} {
		if _, err := kmsserver.New(opts); err == nil {
			t.Errorf("New(%+v) succeeded", opts)
		}
	}
}

// TestConcurrency hammers one server (with a state file) from many
// goroutines; run it with -race.
func TestConcurrency(t *testing.T) {
	t.Parallel()
	s := kmsserver.NewTestServer(t, kmsserver.Options{StateFile: filepath.Join(t.TempDir(), "state.json")})
	c := s.Client("")
	ctx := t.Context()
	shared := newKey(t, c, "shared")
	dest := newKey(t, c, "dest")
	ec := map[string]string{"race": "1"}
	old := encrypt(t, c, *shared.KeyId, []byte("before the storm"), ec).CiphertextBlob
	s.ResetCounts()

	const workers, rounds = 12, 15
	own := make([]*types.KeyMetadata, workers)
	for w := range own {
		own[w] = newKey(t, c, fmt.Sprintf("worker %d", w))
	}
	var wg sync.WaitGroup
	var stop atomic.Bool
	// Rotate the shared key and poke the controls while the workers run.
	wg.Go(func() {
		for i := 0; i < 10 && !stop.Load(); i++ {
			if _, err := c.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: shared.KeyId}); err != nil {
				t.Errorf("RotateKeyOnDemand: %v", err)
			}
			s.SetLatency(0, time.Duration(i)*time.Microsecond)
			s.SetRateLimit(0)
			s.FailNext("GetKeyPolicy", kmsserver.ErrKMSInternal, 1)
			_ = s.Counts()
			time.Sleep(time.Millisecond)
		}
	})
	for w := range workers {
		wg.Go(func() {
			own := own[w]
			for r := range rounds {
				gdk, err := c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: shared.KeyId, KeySpec: types.DataKeySpecAes256, EncryptionContext: ec})
				if err != nil {
					t.Errorf("GenerateDataKey: %v", err)
					return
				}
				re, err := c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: gdk.CiphertextBlob, SourceEncryptionContext: ec, DestinationKeyId: dest.KeyId})
				if err != nil {
					t.Errorf("ReEncrypt: %v", err)
					return
				}
				dec, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: re.CiphertextBlob})
				if err != nil || !bytes.Equal(dec.Plaintext, gdk.Plaintext) {
					t.Errorf("Decrypt: %v", err)
					return
				}
				if _, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: old, EncryptionContext: ec}); err != nil {
					t.Errorf("Decrypt of a pre-rotation ciphertext during rotation: %v", err)
					return
				}
				switch r % 5 {
				case 0:
					if _, err := c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: own.KeyId}); err != nil {
						t.Errorf("DisableKey: %v", err)
					}
					if _, err := c.EnableKey(ctx, &kms.EnableKeyInput{KeyId: own.KeyId}); err != nil {
						t.Errorf("EnableKey: %v", err)
					}
				case 1:
					name := fmt.Sprintf("alias/race-%d-%d", w, r)
					if _, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String(name), TargetKeyId: own.KeyId}); err != nil {
						t.Errorf("CreateAlias: %v", err)
					}
				case 2:
					if _, err := c.ListKeys(ctx, &kms.ListKeysInput{Limit: aws.Int32(5)}); err != nil {
						t.Errorf("ListKeys: %v", err)
					}
					if _, err := c.ListAliases(ctx, &kms.ListAliasesInput{}); err != nil {
						t.Errorf("ListAliases: %v", err)
					}
				case 3:
					if _, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: own.KeyId, Plaintext: []byte("x")}); err != nil {
						t.Errorf("Encrypt: %v", err)
					}
				}
			}
		})
	}
	wg.Wait()
	stop.Store(true)
	if n := s.Count("ReEncrypt"); n != workers*rounds {
		t.Errorf("ReEncrypt count %d, want %d", n, workers*rounds)
	}
}

// TestImplicitDeny: under a key policy with Allow statements, a caller
// (named by its access key) may do only what they grant it, and the
// AccessDeniedException says which action no policy allows.
func TestImplicitDeny(t *testing.T) {
	s := kmsserver.NewTestServer(t, kmsserver.Options{})
	admin := s.Client("", noRetries)
	ctx := t.Context()
	k := newKey(t, admin, "implicit deny")
	md := must[*kms.DescribeKeyOutput](t)(admin.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: k.KeyId}))
	account := strings.Split(*md.KeyMetadata.Arn, ":")[4]
	user := func(name string) string { return "arn:aws:iam::" + account + ":user/" + name }
	policy := `{"Version":"2012-10-17","Statement":[` +
		`{"Sid":"admin","Effect":"Allow","Principal":{"AWS":"` + user(kmsserver.TestAccessKeyID) + `"},"Action":"kms:*","Resource":"*"},` +
		`{"Sid":"worker","Effect":"Allow","Principal":{"AWS":"` + user("worker") + `"},"Action":["kms:Encrypt","kms:DescribeKey"],"Resource":"*"}]}`
	if _, err := admin.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: k.KeyId, Policy: aws.String(policy)}); err != nil {
		t.Fatalf("PutKeyPolicy: %v", err)
	}
	cfg := s.AWSConfig("")
	cfg.Credentials = credentials.NewStaticCredentialsProvider("worker", "worker-secret", "")
	worker := kms.NewFromConfig(cfg, noRetries)
	out, err := worker.Encrypt(ctx, &kms.EncryptInput{KeyId: k.KeyId, Plaintext: []byte("x")})
	if err != nil {
		t.Fatalf("Encrypt, which the policy grants: %v", err)
	}
	_, err = worker.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: out.CiphertextBlob})
	ae := wantCode(t, err, "AccessDeniedException")
	if want := "User: " + user("worker") + " is not authorized to perform: kms:Decrypt on resource: " + *md.KeyMetadata.Arn +
		" because no resource-based policy allows the kms:Decrypt action"; ae.ErrorMessage() != want {
		t.Errorf("message %q, want %q", ae.ErrorMessage(), want)
	}
	if _, err := admin.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: out.CiphertextBlob}); err != nil {
		t.Errorf("Decrypt by the admin: %v", err)
	}
	// The lockout check: a policy that grants the caller no PutKeyPolicy is
	// refused.
	_, err = admin.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: k.KeyId, Policy: aws.String(
		`{"Statement":{"Effect":"Allow","Principal":{"AWS":"` + user("worker") + `"},"Action":"kms:*","Resource":"*"}}`)})
	wantCode(t, err, "MalformedPolicyDocumentException")
}
