package rewrap

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/kmsserver"
)

// keyUnderTest is an opened key with an independent way to unwrap what it
// wrapped: KMS Decrypt through the SDK, or the envelope package's primitives
// with the key material the test made.
type keyUnderTest struct {
	kind   string
	k      Keyring
	verify func(t *testing.T, w Wrapped, cek envelope.ContentAlg) *envelope.DataKey
}

// matrixKeys opens two keys (A and B) of every kind. KMS keys live on env,
// the HSM keys on the stack's SoftHSM token.
func matrixKeys(t *testing.T, env *kmsEnv, d *Deps) map[string][2]keyUnderTest {
	t.Helper()
	out := map[string][2]keyUnderTest{}
	var pair [2]keyUnderTest

	for i := range 2 {
		arn := env.createKey(t, nil, fmt.Sprint("matrix ", i))
		k := mustOpen(t, d, "kms:"+arn)
		pair[i] = keyUnderTest{"kms", k, func(t *testing.T, w Wrapped, cek envelope.ContentAlg) *envelope.DataKey {
			t.Helper()
			if w.Alg != envelope.WrapKMSContext || w.MatDesc[envelope.ReservedContextKey] != string(cek) {
				t.Fatalf("KMS destination stored %s with context %v", w.Alg, w.MatDesc)
			}
			return env.decrypt(t, nil, arn, w)
		}}
	}
	out["kms"] = pair

	for i := range 2 {
		spec, value := hsmKey(t, d, fmt.Sprint(i))
		k := mustOpen(t, d, spec)
		pair[i] = keyUnderTest{"hsm", k, func(t *testing.T, w Wrapped, cek envelope.ContentAlg) *envelope.DataKey {
			t.Helper()
			if _, has := w.MatDesc[MatDescKEK]; w.Alg != envelope.WrapAESGCM || has {
				t.Fatalf("HSM destination stored %s with material description %v", w.Alg, w.MatDesc)
			}
			// The HSM's output is plain S3EC AES/GCM: the envelope
			// package opens it with the key's value.
			dk, err := envelope.UnwrapKeyAESGCM(value, w.Key, cek)
			if err != nil {
				t.Fatalf("S3EC AES/GCM unwrap of the HSM's output: %v", err)
			}
			return dk
		}}
	}
	out["hsm"] = pair

	for i := range 2 {
		path, value := writeAESKey(t)
		pair[i] = keyUnderTest{"aes", mustOpen(t, d, "aes:"+path), func(t *testing.T, w Wrapped, cek envelope.ContentAlg) *envelope.DataKey {
			t.Helper()
			dk, err := envelope.UnwrapKeyAESGCM(value, w.Key, cek)
			if err != nil {
				t.Fatal(err)
			}
			return dk
		}}
	}
	out["aes"] = pair

	for i, name := range []string{"rsa-a.pem", "rsa-b.pem"} {
		path, priv := testRSA(t, name)
		pair[i] = keyUnderTest{"rsa", mustOpen(t, d, "rsa:"+path), func(t *testing.T, w Wrapped, cek envelope.ContentAlg) *envelope.DataKey {
			t.Helper()
			dk, err := envelope.UnwrapKeyRSAOAEP(priv, w.Key, cek)
			if err != nil {
				t.Fatal(err)
			}
			return dk
		}}
	}
	out["rsa"] = pair
	return out
}

// TestRewrapMatrix moves a data key between every pair of key kinds, for V2
// and V3 objects (whose wrappings bind different content algorithms), with
// the in-process KMS server and the stack's SoftHSM.
func TestRewrapMatrix(t *testing.T) {
	env := inProcessKMS(t, kmsserver.Options{})
	d := newDeps(t, env.cfg, func(d *Deps) { hsmDeps(t, d) })
	runMatrix(t, env, d, func(src, dst string) bool { return true })
}

// TestRewrapMatrixStackKMS runs the pairs that involve KMS against the local
// stack's KMS test server.
func TestRewrapMatrixStackKMS(t *testing.T) {
	env := stackKMS(t)
	d := newDeps(t, env.cfg, func(d *Deps) { hsmDeps(t, d) })
	runMatrix(t, env, d, func(src, dst string) bool { return src == "kms" || dst == "kms" })
}

func runMatrix(t *testing.T, env *kmsEnv, d *Deps, want func(src, dst string) bool) {
	keys := matrixKeys(t, env, d)
	kinds := []string{"kms", "hsm", "aes", "rsa"}
	for _, format := range []envelope.Format{envelope.V2, envelope.V3} {
		for _, src := range kinds {
			for _, dst := range kinds {
				if !want(src, dst) {
					continue
				}
				t.Run(fmt.Sprintf("%v/%s-%s", format, src, dst), func(t *testing.T) {
					roundTrip(t, format, keys[src][0], keys[dst][1])
				})
			}
		}
	}
}

// roundTrip encrypts an object under from, rewraps it to to, stores and
// parses the new envelope, and checks that to's key (unwrapped
// independently) is the same data key and still decrypts the unchanged body.
func roundTrip(t *testing.T, format envelope.Format, from, to keyUnderTest) {
	ctx := context.Background()
	dek := newDEK(t)
	plaintext := []byte("rewrap round trip " + t.Name())
	env, body, err := envelope.EncryptContent(format, dek, plaintext, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cek := env.CEKAlg
	user := map[string]string{"purpose": "rotation-test", "team": "storage"}
	w0, err := from.k.Wrap(ctx, dek, cek, user)
	if err != nil {
		t.Fatalf("wrap under the source key: %v", err)
	}
	stored := store(t, env, w0)

	// Before: the source key unwraps the data key.
	before, err := from.k.Unwrap(ctx, w0, cek)
	if err != nil {
		t.Fatalf("unwrap with the source key: %v", err)
	}
	defer before.Clear()
	if !before.Equal(dek) {
		t.Fatal("source unwrap differs from the data key")
	}

	w, cekIn := FromEnvelope(stored)
	res, err := Rewrap(ctx, from.k, to.k, w, cekIn)
	if err != nil {
		t.Fatalf("Rewrap: %v", err)
	}
	wantMethod := unwrapOp(from.k.Kind()) + "+" + wrapOp(to.k.Kind())
	if from.kind == "kms" && to.kind == "kms" {
		wantMethod = MethodKMSReEncrypt
	}
	if res.FromKey != from.k.ID() || res.ToKey != to.k.ID() || res.Method != wantMethod {
		t.Errorf("lineage %+v, want from %s to %s by %s", res.Lineage, from.k.ID(), to.k.ID(), wantMethod)
	}
	rewrapped, err := res.Apply(stored)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	after := store(t, rewrapped, Wrapped{Alg: rewrapped.WrapAlg, Key: rewrapped.WrappedKey, MatDesc: rewrapped.MatDesc})

	// Nothing but the wrapping changed.
	if !bytes.Equal(after.IV, env.IV) || !bytes.Equal(after.MessageID, env.MessageID) ||
		!bytes.Equal(after.KeyCommitment, env.KeyCommitment) || after.CEKAlg != env.CEKAlg || after.Format != env.Format {
		t.Fatal("rewrap changed more than the wrapping")
	}
	for n, v := range user {
		if after.MatDesc[n] != v {
			t.Errorf("material description %v lost user entry %s", after.MatDesc, n)
		}
	}
	if from.kind == "kms" && to.kind == "kms" && !maps.Equal(after.MatDesc, stored.MatDesc) {
		t.Errorf("ReEncrypt changed the context: %v -> %v", stored.MatDesc, after.MatDesc)
	}

	// After: the destination key, used independently, gives the same data
	// key, which decrypts the unchanged body.
	aw, acek := FromEnvelope(after)
	got := to.verify(t, aw, acek)
	defer got.Clear()
	if !got.Equal(before) {
		t.Fatal("the destination key unwraps another data key")
	}
	pt, err := envelope.DecryptContent(after, got, body)
	if err != nil || !bytes.Equal(pt, plaintext) {
		t.Fatalf("decrypt the body with the rewrapped key: %v", err)
	}
	// And the destination keyring itself unwraps it.
	dk, err := to.k.Unwrap(ctx, aw, acek)
	if err != nil {
		t.Fatalf("destination keyring Unwrap: %v", err)
	}
	defer dk.Clear()
	if !dk.Equal(before) {
		t.Fatal("destination keyring unwraps another data key")
	}
	wantMatch := MatchYes // offline: local keys by trial
	if to.kind == "kms" || to.kind == "hsm" {
		// A KMS blob is opaque; an HSM wrapping names no key (only a trial
		// unwrap inside the HSM can tell).
		wantMatch = MatchUnknown
	}
	if m := Classify(to.k, aw); m != wantMatch {
		t.Errorf("Classify(destination %s) = %v, want %v", to.kind, m, wantMatch)
	}
	if from.k.ID() != to.k.ID() && to.kind != "kms" && to.kind != "hsm" {
		if m := Classify(from.k, aw); m != MatchNo && from.kind == to.kind {
			t.Errorf("Classify(source %s) of the new wrapping = %v, want no", from.kind, m)
		}
	}
}

// store writes e with wrapping w as object metadata and parses it back, as
// the commit stage and a later reader would.
func store(t *testing.T, e *envelope.Envelope, w Wrapped) *envelope.Envelope {
	t.Helper()
	n, err := e.WithWrappedKey(w.Key, w.Alg, w.MatDesc)
	if err != nil {
		t.Fatalf("WithWrappedKey(%s): %v", w.Alg, err)
	}
	meta, err := n.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	p, err := envelope.Parse(meta, nil, envelope.ParseOptions{})
	if err != nil {
		t.Fatalf("parse the stored envelope: %v", err)
	}
	return p
}

// recordingKeyring is a local AES keyring that keeps the data keys it was
// asked to wrap, to check that Rewrap clears them.
type recordingKeyring struct {
	*aesKeyring
	seen []*envelope.DataKey
}

func (r *recordingKeyring) Wrap(ctx context.Context, dek *envelope.DataKey, cek envelope.ContentAlg, desc map[string]string) (Wrapped, error) {
	r.seen = append(r.seen, dek)
	return r.aesKeyring.Wrap(ctx, dek, cek, desc)
}

func TestRewrapClearsTheDataKey(t *testing.T) {
	d := newDeps(t, aws.Config{}, nil)
	pa, _ := writeAESKey(t)
	pb, _ := writeAESKey(t)
	a := mustOpen(t, d, "aes:"+pa)
	b := &recordingKeyring{aesKeyring: mustOpen(t, d, "aes:"+pb).(*aesKeyring)}
	dek := newDEK(t)
	w, err := a.Wrap(t.Context(), dek, envelope.ContentAESGCM, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Rewrap(t.Context(), a, b, w, envelope.ContentAESGCM)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.seen) != 1 || b.seen[0].Len() != 0 {
		t.Fatalf("the data key Rewrap unwrapped was not cleared (%d keys seen)", len(b.seen))
	}
	if res.Method != "aes-unwrap+aes-wrap" {
		t.Errorf("method %q", res.Method)
	}
	got, err := b.Unwrap(t.Context(), res.Wrapped, envelope.ContentAESGCM)
	if err != nil || !got.Equal(dek) {
		t.Fatalf("unwrap the result: %v", err)
	}
	got.Clear()
}

func TestRewrapArguments(t *testing.T) {
	d := newDeps(t, aws.Config{}, nil)
	pa, _ := writeAESKey(t)
	a := mustOpen(t, d, "aes:"+pa)
	dek := newDEK(t)
	w, err := a.Wrap(t.Context(), dek, envelope.ContentAESGCM, nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		from, to Keyring
		w        Wrapped
		cek      envelope.ContentAlg
		code     string
	}{
		{"no destination", a, nil, w, envelope.ContentAESGCM, CodeConfig},
		{"no source for AES/GCM", nil, a, w, envelope.ContentAESGCM, CodeNeedFromKey},
		{"unknown content algorithm", a, a, w, "AES/XTS", CodeAlgorithmMismatch},
		{"empty wrapped key", a, a, Wrapped{Alg: envelope.WrapAESGCM}, envelope.ContentAESGCM, CodeBadInput},
		{"V3 binding on a V2 key", a, a, w, envelope.ContentCommitKey, CodeAlgorithmMismatch},
		{"KMS-wrapped to a local source", a, a, Wrapped{Alg: envelope.WrapKMSContext, Key: []byte("blob")}, envelope.ContentAESGCM, CodeAlgorithmMismatch},
		{"legacy AESWrap", a, a, Wrapped{Alg: envelope.WrapAESWrap, Key: make([]byte, 40)}, envelope.ContentAESGCM, CodeUnsupported},
		{"unknown wrapping", a, a, Wrapped{Alg: "ROT13", Key: make([]byte, 40)}, envelope.ContentAESGCM, CodeUnsupported},
	}
	for _, tc := range cases {
		_, err := Rewrap(t.Context(), tc.from, tc.to, tc.w, tc.cek)
		var e *Error
		if !errors.As(err, &e) || e.Code != tc.code {
			t.Errorf("%s: got %v, want code %s", tc.name, err, tc.code)
		}
	}
}
