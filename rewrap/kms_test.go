package rewrap

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/kmsserver"
)

// kmsFixture is an in-process KMS server with keys A and B, their keyrings,
// and a data key wrapped under A (V2 content algorithm, with a user context
// entry). The server's counters start at zero.
type kmsFixture struct {
	env  *kmsEnv
	d    *Deps
	a, b Keyring
	arnA string
	arnB string
	dek  *envelope.DataKey
	w    Wrapped
}

func newKMSFixture(t *testing.T, opts kmsserver.Options, edit func(*Deps)) *kmsFixture {
	t.Helper()
	env := inProcessKMS(t, opts)
	f := &kmsFixture{env: env, d: newDeps(t, env.cfg, edit)}
	f.arnA = env.createKey(t, nil, "A")
	f.arnB = env.createKey(t, nil, "B")
	f.a = mustOpen(t, f.d, "kms:"+f.arnA)
	f.b = mustOpen(t, f.d, "kms:"+f.arnB)
	f.dek = newDEK(t)
	var err error
	f.w, err = f.a.Wrap(t.Context(), f.dek, envelope.ContentAESGCM, map[string]string{"tenant": "t-1"})
	if err != nil {
		t.Fatal(err)
	}
	env.srv.ResetCounts()
	return f
}

// wantError checks that err is an *Error with code, systemic-ness and a
// message in the house style.
func wantError(t *testing.T, err error, op, code string, systemic bool, hintPart string) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("got %v (%T), want *Error %s", err, err, code)
	}
	if e.Code != code || e.Systemic != systemic {
		t.Fatalf("got code %s systemic %v (%v), want %s systemic %v", e.Code, e.Systemic, err, code, systemic)
	}
	t.Logf("%v", err)
	prefix := "rewrap: " + op + ": " + code
	if !strings.HasPrefix(err.Error(), prefix) {
		t.Errorf("message %q does not start with %q", err, prefix)
	}
	if hintPart != "" && !strings.Contains(e.Hint, hintPart) {
		t.Errorf("hint %q lacks %q", e.Hint, hintPart)
	}
	if hintPart != "" && !strings.Contains(err.Error(), "(hint: ") {
		t.Errorf("message %q has no hint", err)
	}
	return e
}

func TestKMSToKMSUsesReEncrypt(t *testing.T) {
	t.Parallel()
	f := newKMSFixture(t, kmsserver.Options{}, nil)
	for _, from := range []Keyring{f.a, nil} { // with --from and without
		res, err := Rewrap(t.Context(), from, f.b, f.w, envelope.ContentAESGCM)
		if err != nil {
			t.Fatal(err)
		}
		if res.Method != MethodKMSReEncrypt || res.FromKey != f.arnA || res.ToKey != f.arnB {
			t.Errorf("lineage %+v", res.Lineage)
		}
		dk := f.env.decrypt(t, nil, f.arnB, res.Wrapped)
		if !dk.Equal(f.dek) {
			t.Error("B holds another data key")
		}
		dk.Clear()
	}
	c := f.env.srv.Counts()
	if c["ReEncrypt"] != 2 || c["Decrypt"] != 2 || c["Encrypt"] != 0 || c["GenerateDataKey"] != 0 {
		// The two Decrypts are the test's own checks above.
		t.Errorf("operations %v: want 2 ReEncrypt and no Decrypt by Rewrap", c)
	}
}

func TestKMSToKMSNeverDecrypts(t *testing.T) {
	t.Parallel()
	f := newKMSFixture(t, kmsserver.Options{}, nil)
	// Decrypt fails if called: Rewrap must not need it.
	f.env.srv.FailNext("Decrypt", kmsserver.ErrAccessDenied, 1000)
	if _, err := Rewrap(t.Context(), f.a, f.b, f.w, envelope.ContentAESGCM); err != nil {
		t.Fatal(err)
	}
	if n := f.env.srv.Count("Decrypt"); n != 0 {
		t.Errorf("Rewrap called Decrypt %d times", n)
	}
	f.env.srv.FailNext("Decrypt", "", 0)
}

func TestKMSOpen(t *testing.T) {
	t.Parallel()
	env := inProcessKMS(t, kmsserver.Options{})
	d := newDeps(t, env.cfg, nil)
	ctx := t.Context()
	arn := env.createKey(t, nil, "open")
	if _, err := env.client.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/rewrap-open"), TargetKeyId: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
	keyID := arn[strings.LastIndex(arn, "/")+1:]
	for _, spec := range []string{"kms:" + arn, "kms:alias/rewrap-open", "kms:" + keyID,
		"kms:arn:aws:kms:us-east-1:" + env.srv.Account() + ":alias/rewrap-open"} {
		k := mustOpen(t, d, spec)
		if k.ID() != arn || k.Kind() != KindKMS {
			t.Errorf("Open(%s).ID() = %s, want the key ARN %s", spec, k.ID(), arn)
		}
	}

	t.Run("disabled", func(t *testing.T) {
		arn := env.createKey(t, nil, "disabled")
		if _, err := env.client.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(arn)}); err != nil {
			t.Fatal(err)
		}
		_, err := Open(ctx, mustSpec(t, "kms:"+arn), d)
		e := wantError(t, err, "open", "DisabledException", true, "aws kms enable-key --key-id "+arn)
		if e.Key != arn {
			t.Errorf("Key = %q", e.Key)
		}
	})
	t.Run("pending deletion", func(t *testing.T) {
		arn := env.createKey(t, nil, "pending")
		if _, err := env.client.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(arn), PendingWindowInDays: aws.Int32(7)}); err != nil {
			t.Fatal(err)
		}
		_, err := Open(ctx, mustSpec(t, "kms:"+arn), d)
		wantError(t, err, "open", "KMSInvalidStateException", true, "cancel-key-deletion")
	})
	t.Run("not found", func(t *testing.T) {
		_, err := Open(ctx, mustSpec(t, "kms:alias/no-such-key"), d)
		wantError(t, err, "kms DescribeKey", "NotFoundException", true, "does not exist")
	})
	t.Run("no region", func(t *testing.T) {
		cfg := env.cfg.Copy()
		cfg.Region = ""
		_, err := Open(ctx, mustSpec(t, "kms:alias/x"), newDeps(t, cfg, nil))
		wantError(t, err, "open", CodeConfig, true, "AWS_REGION")
	})
	t.Run("closed", func(t *testing.T) {
		d2 := &Deps{AWS: env.cfg}
		_ = d2.Close()
		_, err := Open(ctx, mustSpec(t, "kms:"+arn), d2)
		wantError(t, err, "open", CodeClosed, true, "")
	})
}

func TestKMSErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("not wrapped under --from", func(t *testing.T) {
		t.Parallel()
		f := newKMSFixture(t, kmsserver.Options{}, nil)
		c := mustOpen(t, f.d, "kms:"+f.env.createKey(t, nil, "C"))
		_, err := Rewrap(ctx, c, f.b, f.w, envelope.ContentAESGCM)
		wantError(t, err, "kms ReEncrypt", "IncorrectKeyException", false, "not wrapped under --from key "+c.ID())
		// Decrypt names the key too (KMS to local).
		pa, _ := writeAESKey(t)
		_, err = Rewrap(ctx, c, mustOpen(t, f.d, "aes:"+pa), f.w, envelope.ContentAESGCM)
		wantError(t, err, "kms Decrypt", "IncorrectKeyException", false, "--from")
	})
	t.Run("ReEncryptTo denied", func(t *testing.T) {
		t.Parallel()
		f := newKMSFixture(t, kmsserver.Options{}, nil)
		denyOn(t, f.env.client, f.arnB, "kms:ReEncryptTo")
		_, err := Rewrap(ctx, f.a, f.b, f.w, envelope.ContentAESGCM)
		wantError(t, err, "kms ReEncrypt", "AccessDeniedException", false, "kms:ReEncryptTo on the destination key "+f.arnB)
		// The hint names the one permission KMS refused, not both.
		if e := wantError(t, err, "kms ReEncrypt", "AccessDeniedException", false, "grant kms:ReEncryptTo on the destination key "+f.arnB); strings.Contains(e.Hint, "ReEncryptFrom") {
			t.Errorf("hint %q names kms:ReEncryptFrom, which was not refused", e.Hint)
		}
		if IsSystemic(err) || IsRetryable(err) { // per object: the pipeline's breaker stops a run where all fail
			t.Error("IsSystemic/IsRetryable disagree")
		}
	})
	t.Run("ReEncryptFrom denied", func(t *testing.T) {
		t.Parallel()
		f := newKMSFixture(t, kmsserver.Options{}, nil)
		denyOn(t, f.env.client, f.arnA, "kms:ReEncrypt*")
		_, err := Rewrap(ctx, f.a, f.b, f.w, envelope.ContentAESGCM)
		if e := wantError(t, err, "kms ReEncrypt", "AccessDeniedException", false, "grant kms:ReEncryptFrom on the source key "+f.arnA); strings.Contains(e.Hint, "ReEncryptTo") {
			t.Errorf("hint %q names kms:ReEncryptTo, which was not refused", e.Hint)
		}
	})
	t.Run("Encrypt denied on the destination", func(t *testing.T) {
		t.Parallel()
		f := newKMSFixture(t, kmsserver.Options{}, nil)
		denyOn(t, f.env.client, f.arnB, "kms:Encrypt")
		pa, _ := writeAESKey(t)
		a := mustOpen(t, f.d, "aes:"+pa)
		w, err := a.Wrap(ctx, f.dek, envelope.ContentAESGCM, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Rewrap(ctx, a, f.b, w, envelope.ContentAESGCM)
		wantError(t, err, "kms Encrypt", "AccessDeniedException", true, "kms:Encrypt on the destination key")
	})
	t.Run("Decrypt denied on the source", func(t *testing.T) {
		t.Parallel()
		f := newKMSFixture(t, kmsserver.Options{}, nil)
		denyOn(t, f.env.client, f.arnA, "kms:Decrypt")
		pa, _ := writeAESKey(t)
		_, err := Rewrap(ctx, f.a, mustOpen(t, f.d, "aes:"+pa), f.w, envelope.ContentAESGCM)
		wantError(t, err, "kms Decrypt", "AccessDeniedException", false, "kms:Decrypt on the source key")
	})
	t.Run("destination disabled after open", func(t *testing.T) {
		t.Parallel()
		f := newKMSFixture(t, kmsserver.Options{}, nil)
		disable(t, f.env.client, f.arnB)
		_, err := Rewrap(ctx, f.a, f.b, f.w, envelope.ContentAESGCM)
		e := wantError(t, err, "kms ReEncrypt", "DisabledException", true, "enable-key")
		if e.Key != f.arnB {
			t.Errorf("Key = %q, want the destination", e.Key)
		}
		pa, _ := writeAESKey(t)
		a := mustOpen(t, f.d, "aes:"+pa)
		w, _ := a.Wrap(ctx, f.dek, envelope.ContentAESGCM, nil)
		_, err = Rewrap(ctx, a, f.b, w, envelope.ContentAESGCM)
		wantError(t, err, "kms Encrypt", "DisabledException", true, "enable-key")
	})
	t.Run("source disabled after open", func(t *testing.T) {
		t.Parallel()
		f := newKMSFixture(t, kmsserver.Options{}, nil)
		disable(t, f.env.client, f.arnA)
		_, err := Rewrap(ctx, f.a, f.b, f.w, envelope.ContentAESGCM)
		e := wantError(t, err, "kms ReEncrypt", "DisabledException", false, "")
		if e.Key != f.arnA {
			t.Errorf("Key = %q, want the source", e.Key)
		}
		pa, _ := writeAESKey(t)
		_, err = Rewrap(ctx, f.a, mustOpen(t, f.d, "aes:"+pa), f.w, envelope.ContentAESGCM)
		wantError(t, err, "kms Decrypt", "DisabledException", false, "")
	})
	t.Run("destination pending deletion after open", func(t *testing.T) {
		t.Parallel()
		f := newKMSFixture(t, kmsserver.Options{}, nil)
		if _, err := f.env.client.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(f.arnB), PendingWindowInDays: aws.Int32(7)}); err != nil {
			t.Fatal(err)
		}
		_, err := Rewrap(ctx, f.a, f.b, f.w, envelope.ContentAESGCM)
		wantError(t, err, "kms ReEncrypt", "KMSInvalidStateException", true, "cancel")
	})
	t.Run("wrong encryption context", func(t *testing.T) {
		t.Parallel()
		f := newKMSFixture(t, kmsserver.Options{}, nil)
		w := f.w
		w.MatDesc = UserEntries(f.w.MatDesc)
		w.MatDesc["tenant"] = "t-2"
		w.MatDesc[envelope.ReservedContextKey] = string(envelope.ContentAESGCM)
		_, err := Rewrap(ctx, f.a, f.b, w, envelope.ContentAESGCM)
		wantError(t, err, "kms ReEncrypt", "InvalidCiphertextException", false, "encryption context")
		pa, _ := writeAESKey(t)
		_, err = Rewrap(ctx, f.a, mustOpen(t, f.d, "aes:"+pa), w, envelope.ContentAESGCM)
		wantError(t, err, "kms Decrypt", "InvalidCiphertextException", false, "encryption context")
	})
	t.Run("altered blob", func(t *testing.T) {
		t.Parallel()
		f := newKMSFixture(t, kmsserver.Options{}, nil)
		w := f.w
		w.Key = append([]byte(nil), f.w.Key...)
		w.Key[len(w.Key)-1] ^= 1
		_, err := Rewrap(ctx, f.a, f.b, w, envelope.ContentAESGCM)
		wantError(t, err, "kms ReEncrypt", "InvalidCiphertextException", false, "altered")
	})
	t.Run("content algorithm differs from the context", func(t *testing.T) {
		t.Parallel()
		f := newKMSFixture(t, kmsserver.Options{}, nil)
		_, err := Rewrap(ctx, f.a, f.b, f.w, envelope.ContentCommitKey)
		wantError(t, err, "kms ReEncrypt", CodeAlgorithmMismatch, false, "altered")
		if n := f.env.srv.Count("ReEncrypt"); n != 0 {
			t.Errorf("a KMS call was made (%d) for a context that cannot match", n)
		}
	})
	t.Run("throttled beyond the retries", func(t *testing.T) {
		t.Parallel()
		f := newKMSFixture(t, kmsserver.Options{}, func(d *Deps) { d.KMSMaxAttempts = 3; d.KMSMaxBackoff = time.Millisecond })
		// Throttled attempts may go on to twice KMSMaxAttempts.
		f.env.srv.FailNext("ReEncrypt", kmsserver.ErrThrottling, 6)
		_, err := Rewrap(ctx, f.a, f.b, f.w, envelope.ContentAESGCM)
		e := wantError(t, err, "kms ReEncrypt", "ThrottlingException", false, "Limits.KMSRPS")
		if !e.Retryable {
			t.Error("throttling is not retryable")
		}
		if n := f.env.srv.Count("ReEncrypt"); n != 6 {
			t.Errorf("%d attempts, want 6 (twice KMSMaxAttempts for throttles)", n)
		}
		// The next call goes through.
		if _, err := Rewrap(ctx, f.a, f.b, f.w, envelope.ContentAESGCM); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("KMS internal error is retried then retryable", func(t *testing.T) {
		t.Parallel()
		f := newKMSFixture(t, kmsserver.Options{}, func(d *Deps) { d.KMSMaxAttempts = 2; d.KMSMaxBackoff = time.Millisecond })
		f.env.srv.FailNext("ReEncrypt", kmsserver.ErrKMSInternal, 1)
		if _, err := Rewrap(ctx, f.a, f.b, f.w, envelope.ContentAESGCM); err != nil {
			t.Fatalf("one internal error was not retried: %v", err)
		}
		f.env.srv.FailNext("ReEncrypt", kmsserver.ErrKMSInternal, 2)
		_, err := Rewrap(ctx, f.a, f.b, f.w, envelope.ContentAESGCM)
		if e := wantError(t, err, "kms ReEncrypt", "KMSInternalException", false, ""); !e.Retryable {
			t.Error("not retryable")
		}
	})
	t.Run("bad credentials", func(t *testing.T) {
		t.Parallel()
		f := newKMSFixture(t, kmsserver.Options{}, nil)
		f.env.srv.FailNext("ReEncrypt", "UnrecognizedClientException", 1)
		_, err := Rewrap(ctx, f.a, f.b, f.w, envelope.ContentAESGCM)
		wantError(t, err, "kms ReEncrypt", "UnrecognizedClientException", true, "credentials")
	})
	t.Run("canceled", func(t *testing.T) {
		t.Parallel()
		f := newKMSFixture(t, kmsserver.Options{}, nil)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := Rewrap(cctx, f.a, f.b, f.w, envelope.ContentAESGCM)
		wantError(t, err, "kms ReEncrypt", CodeCanceled, false, "")
	})
	t.Run("no source key for a local destination", func(t *testing.T) {
		t.Parallel()
		f := newKMSFixture(t, kmsserver.Options{}, nil)
		pa, _ := writeAESKey(t)
		_, err := Rewrap(ctx, nil, mustOpen(t, f.d, "aes:"+pa), f.w, envelope.ContentAESGCM)
		wantError(t, err, "unwrap", CodeNeedFromKey, false, "--from")
	})
}

func TestKMSLegacyWrapping(t *testing.T) {
	t.Parallel()
	f := newKMSFixture(t, kmsserver.Options{}, nil)
	// The legacy "kms" wrapping: the context is the material description,
	// here the Java v1 client's {"kms_cmk_id": KEY}, without cek-alg.
	md := map[string]string{"kms_cmk_id": f.arnA, "tenant": "t-1"}
	out, err := f.env.client.Encrypt(t.Context(), &kms.EncryptInput{KeyId: aws.String(f.arnA), Plaintext: f.dek.Bytes(), EncryptionContext: md})
	if err != nil {
		t.Fatal(err)
	}
	w := Wrapped{Alg: envelope.WrapKMS, Key: out.CiphertextBlob, MatDesc: md}
	res, err := Rewrap(t.Context(), f.a, f.b, w, envelope.ContentAESGCM)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"tenant": "t-1", envelope.ReservedContextKey: string(envelope.ContentAESGCM)}
	if res.Alg != envelope.WrapKMSContext || jsonString(res.MatDesc) != jsonString(want) {
		t.Errorf("got %s %v, want kms+context %v", res.Alg, res.MatDesc, want)
	}
	dk := f.env.decrypt(t, nil, f.arnB, res.Wrapped)
	defer dk.Clear()
	if !dk.Equal(f.dek) {
		t.Error("data key changed")
	}
}

func TestKMSCrossAccount(t *testing.T) {
	t.Parallel()
	f := newKMSFixture(t, kmsserver.Options{}, nil)
	other, err := f.env.srv.AddKey(kmsserver.SeedKey{Account: "444455556666", Description: "cross-account destination"})
	if err != nil {
		t.Fatal(err)
	}
	x := mustOpen(t, f.d, "kms:"+other)
	res, err := Rewrap(t.Context(), f.a, x, f.w, envelope.ContentAESGCM)
	if err != nil {
		t.Fatal(err)
	}
	if res.Method != MethodKMSReEncrypt || res.ToKey != other {
		t.Errorf("lineage %+v", res.Lineage)
	}
	dk := f.env.decrypt(t, nil, other, res.Wrapped)
	defer dk.Clear()
	if !dk.Equal(f.dek) {
		t.Error("data key changed")
	}
	if n := f.env.srv.Count("Decrypt"); n != 1 { // the check above
		t.Errorf("Decrypt called %d times", n)
	}
}

func TestKMSCrossRegion(t *testing.T) {
	t.Parallel()
	f := newKMSFixture(t, kmsserver.Options{}, nil)
	west, err := f.env.srv.AddKey(kmsserver.SeedKey{Region: "us-west-2", Description: "other region"})
	if err != nil {
		t.Fatal(err)
	}
	crossRegion(t, f.env, f.d, f.a, f.w, f.dek, west)
	c := f.env.srv.Counts()
	if c["ReEncrypt"] != 1 || c["Decrypt"] != 3 || c["Encrypt"] != 2 { // ReEncrypt: the probe that KMS refuses
		t.Errorf("operations %v: want Decrypt + Encrypt, no ReEncrypt", c)
	}
}

// crossRegion moves w from a (us-east-1) to the key westARN in us-west-2 and
// back, checking that KMS itself refuses ReEncrypt across regions and that
// Rewrap falls back to Decrypt + Encrypt.
func crossRegion(t *testing.T, env *kmsEnv, d *Deps, a Keyring, w Wrapped, dek *envelope.DataKey, westARN string) {
	t.Helper()
	ctx := t.Context()
	west := mustOpen(t, d, "kms:"+westARN)
	if west.(*kmsKeyring).Region() != "us-west-2" {
		t.Fatalf("region %s", west.(*kmsKeyring).Region())
	}
	// KMS refuses ReEncrypt to a key of another region, as AWS does.
	_, err := env.client.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: w.Key, SourceEncryptionContext: w.MatDesc,
		DestinationKeyId: aws.String(westARN), DestinationEncryptionContext: w.MatDesc})
	if err == nil {
		t.Fatal("the KMS server allowed ReEncrypt across regions")
	}
	res, err := Rewrap(ctx, a, west, w, envelope.ContentAESGCM)
	if err != nil {
		t.Fatal(err)
	}
	if res.Method != MethodKMSDecryptEncrypt || res.FromKey != a.ID() || res.ToKey != westARN {
		t.Errorf("lineage %+v", res.Lineage)
	}
	if jsonString(res.MatDesc) != jsonString(w.MatDesc) {
		t.Errorf("context %v, want %v", res.MatDesc, w.MatDesc)
	}
	dk := env.decrypt(t, env.clientFor("us-west-2"), westARN, res.Wrapped)
	defer dk.Clear()
	if !dk.Equal(dek) {
		t.Fatal("data key changed")
	}
	back, err := Rewrap(ctx, west, a, res.Wrapped, envelope.ContentAESGCM)
	if err != nil {
		t.Fatal(err)
	}
	if back.Method != MethodKMSDecryptEncrypt {
		t.Errorf("method back %s", back.Method)
	}
}

func TestKMSThrottlingRecovers(t *testing.T) {
	t.Parallel()
	// The server allows 20 requests per second; the client sends as fast as
	// it can (no budget of its own): the region's pacer finds the rate,
	// retries the ThrottlingExceptions and every rewrap succeeds. (Pauses
	// of up to a second, not fastKMS's 50ms: a request must be patient
	// while the pacer measures, as it is with the default 20s.)
	f := newKMSFixture(t, kmsserver.Options{RPS: 20, Burst: 5}, func(d *Deps) { d.KMSMaxBackoff = time.Second })
	const n, workers = 60, 12
	var wg sync.WaitGroup
	errs := make(chan error, n)
	jobs := make(chan int)
	for range workers {
		wg.Go(func() {
			for range jobs {
				res, err := Rewrap(t.Context(), f.a, f.b, f.w, envelope.ContentAESGCM)
				if err == nil && res.Method != MethodKMSReEncrypt {
					t.Errorf("method %s", res.Method)
				}
				errs <- err
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a rewrap failed under throttling: %v", err)
		}
	}
	if got := f.env.srv.Count("ReEncrypt"); got <= n {
		t.Errorf("the server saw %d ReEncrypt requests for %d rewraps: no throttling happened", got, n)
	} else {
		t.Logf("%d rewraps took %d requests (%d throttled and retried)", n, got, got-n)
	}
}

func TestKMSRequestBudget(t *testing.T) {
	t.Parallel()
	// Our own budget (40 rps, burst 1) stays under the server's quota (45
	// rps): no request is throttled.
	f := newKMSFixture(t, kmsserver.Options{RPS: 45, Burst: 45}, func(d *Deps) { d.Limits = Limits{KMSRPS: 40, KMSBurst: 1} })
	// Opening the keys took tokens too; start from a full bucket.
	time.Sleep(50 * time.Millisecond)
	const n = 30
	start := time.Now()
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			for range n / 6 {
				if _, err := Rewrap(t.Context(), f.a, f.b, f.w, envelope.ContentAESGCM); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	if min := time.Duration(n-1) * time.Second / 40; took < min*9/10 {
		t.Errorf("%d requests at 40 rps took %v, want at least %v", n, took, min)
	}
	if got := f.env.srv.Count("ReEncrypt"); got != n {
		t.Errorf("%d ReEncrypt requests for %d rewraps: some were throttled", got, n)
	}
}

func denyOn(t *testing.T, c *kms.Client, arn, action string) {
	t.Helper()
	policy := `{"Version":"2012-10-17","Statement":[` +
		`{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"kms:*","Resource":"*"},` +
		`{"Effect":"Deny","Principal":"*","Action":"` + action + `","Resource":"*"}]}`
	if _, err := c.PutKeyPolicy(context.Background(), &kms.PutKeyPolicyInput{KeyId: aws.String(arn), PolicyName: aws.String("default"), Policy: aws.String(policy)}); err != nil {
		t.Fatalf("PutKeyPolicy: %v", err)
	}
}

func disable(t *testing.T, c *kms.Client, arn string) {
	t.Helper()
	if _, err := c.DisableKey(context.Background(), &kms.DisableKeyInput{KeyId: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
}

// --- against the local stack's KMS server -------------------------------------

func TestStackKMS(t *testing.T) {
	env := stackKMS(t)
	d := newDeps(t, env.cfg, nil)
	ctx := t.Context()
	arnA, arnB := env.createKey(t, nil, "A"), env.createKey(t, nil, "B")
	a, b := mustOpen(t, d, "kms:"+arnA), mustOpen(t, d, "kms:"+arnB)
	dek := newDEK(t)
	w, err := a.Wrap(ctx, dek, envelope.ContentCommitKey, map[string]string{"tenant": "t-1"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := Rewrap(ctx, a, b, w, envelope.ContentCommitKey)
	if err != nil {
		t.Fatal(err)
	}
	if res.Method != MethodKMSReEncrypt || res.FromKey != arnA {
		t.Errorf("lineage %+v", res.Lineage)
	}
	got := env.decrypt(t, nil, arnB, res.Wrapped)
	if !got.Equal(dek) {
		t.Error("data key changed")
	}
	got.Clear()

	t.Run("IncorrectKey", func(t *testing.T) {
		c := mustOpen(t, d, "kms:"+env.createKey(t, nil, "C"))
		_, err := Rewrap(ctx, c, b, w, envelope.ContentCommitKey)
		wantError(t, err, "kms ReEncrypt", "IncorrectKeyException", false, "--from")
	})
	t.Run("wrong context", func(t *testing.T) {
		w2 := w
		w2.MatDesc = map[string]string{"tenant": "t-2", envelope.ReservedContextKey: string(envelope.ContentCommitKey)}
		_, err := Rewrap(ctx, a, b, w2, envelope.ContentCommitKey)
		wantError(t, err, "kms ReEncrypt", "InvalidCiphertextException", false, "context")
	})
	t.Run("ReEncryptTo denied", func(t *testing.T) {
		denied := env.createKey(t, nil, "denied")
		k := mustOpen(t, d, "kms:"+denied)
		denyOn(t, env.client, denied, "kms:ReEncryptTo")
		_, err := Rewrap(ctx, a, k, w, envelope.ContentCommitKey)
		wantError(t, err, "kms ReEncrypt", "AccessDeniedException", false, "kms:ReEncryptTo")
	})
	t.Run("disabled", func(t *testing.T) {
		arn := env.createKey(t, nil, "disabled")
		k := mustOpen(t, d, "kms:"+arn)
		disable(t, env.client, arn)
		_, err := Rewrap(ctx, a, k, w, envelope.ContentCommitKey)
		wantError(t, err, "kms ReEncrypt", "DisabledException", true, "enable-key")
		_, err = Open(ctx, mustSpec(t, "kms:"+arn), d)
		wantError(t, err, "open", "DisabledException", true, "enable-key")
	})
	t.Run("cross region", func(t *testing.T) {
		west := env.createKey(t, env.clientFor("us-west-2"), "west")
		wv2, err := a.Wrap(ctx, dek, envelope.ContentAESGCM, map[string]string{"tenant": "t-1"})
		if err != nil {
			t.Fatal(err)
		}
		crossRegion(t, env, d, a, wv2, dek, west)
	})
}
