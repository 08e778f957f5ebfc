package envelope

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"errors"
	"testing"
)

func TestWrapAESGCM(t *testing.T) {
	dk := testDataKey(1)
	for _, kek := range [][]byte{bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{2}, 24), testKEK()} {
		for _, cek := range []ContentAlg{ContentAESGCM, ContentCommitKey} {
			w, err := WrapKeyAESGCM(kek, dk, cek, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			if len(w) != AESGCMWrappedSize {
				t.Fatalf("wrapped %d bytes, want 60", len(w))
			}
			got, err := UnwrapKeyAESGCM(kek, w, cek)
			if err != nil || !got.Equal(dk) {
				t.Fatalf("unwrap: %v", err)
			}
			// Bound to the content algorithm: the other one is a mismatch.
			other := ContentCommitKey
			if cek == ContentCommitKey {
				other = ContentAESGCM
			}
			_, err = UnwrapKeyAESGCM(kek, w, other)
			wantErr(t, err, ErrAlgorithmMismatch, "wrapped data key", "altered")
			// Wrong key, flipped bit.
			_, err = UnwrapKeyAESGCM(bytes.Repeat([]byte{9}, len(kek)), w, cek)
			wantErr(t, err, ErrAuthentication, "wrapped data key")
			w[len(w)-1] ^= 1
			_, err = UnwrapKeyAESGCM(kek, w, cek)
			wantErr(t, err, ErrAuthentication)
		}
	}
	_, err := WrapKeyAESGCM(make([]byte, 31), dk, ContentAESGCM, rand.Reader)
	wantErr(t, err, ErrBadKeyLength, "wrapping key")
	_, err = WrapKeyAESGCM(testKEK(), NewDataKey(make([]byte, 16)), ContentAESGCM, rand.Reader)
	wantErr(t, err, ErrBadKeyLength, "data key")
	_, err = UnwrapKeyAESGCM(testKEK(), make([]byte, 59), ContentAESGCM)
	wantErr(t, err, ErrBadKeyLength, "want 60 bytes, got 59")
	_, err = UnwrapKeyAESGCM(make([]byte, 7), make([]byte, 60), ContentAESGCM)
	wantErr(t, err, ErrBadKeyLength, "wrapping key")
}

func TestWrapRSAOAEP(t *testing.T) {
	priv := testRSAKey(t)
	dk := testDataKey(2)
	for _, cek := range []ContentAlg{ContentAESGCM, ContentCommitKey} {
		w, err := WrapKeyRSAOAEP(&priv.PublicKey, dk, cek, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		// The plaintext layout is 0x20 || key || binding.
		msg, err := rsa.DecryptOAEP(sha1.New(), nil, priv, w, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := append(append([]byte{0x20}, dk.Bytes()...), cek.Binding()...)
		if !bytes.Equal(msg, want) {
			t.Fatalf("OAEP plaintext %x, want %x", msg, want)
		}
		got, err := UnwrapKeyRSAOAEP(priv, w, cek)
		if err != nil || !got.Equal(dk) {
			t.Fatalf("unwrap: %v", err)
		}
		other := ContentCommitKey
		if cek == ContentCommitKey {
			other = ContentAESGCM
		}
		_, err = UnwrapKeyRSAOAEP(priv, w, other)
		wantErr(t, err, ErrAlgorithmMismatch, "altered")
	}
	// Malformed plaintexts inside valid OAEP.
	enc := func(msg []byte) []byte {
		c, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, &priv.PublicKey, msg, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	key := bytes.Repeat([]byte{7}, 32)
	for name, c := range map[string]struct {
		msg      []byte
		sentinel error
	}{
		"empty":            {nil, ErrBadKeyLength},
		"16-byte key":      {append(append([]byte{16}, key[:16]...), "AES/GCM/NoPadding"...), ErrBadKeyLength},
		"truncated key":    {append([]byte{32}, key[:20]...), ErrBadKeyLength},
		"no binding":       {append([]byte{32}, key...), ErrAlgorithmMismatch},
		"trailing garbage": {append(append(append([]byte{32}, key...), "AES/GCM/NoPadding"...), 0), ErrAlgorithmMismatch},
		"other binding":    {append(append([]byte{32}, key...), "AES/CBC/PKCS5Padding"...), ErrAlgorithmMismatch},
	} {
		_, err := UnwrapKeyRSAOAEP(priv, enc(c.msg), ContentAESGCM)
		if !errors.Is(err, c.sentinel) {
			t.Errorf("%s: got %v, want %v", name, err, c.sentinel)
		}
	}
	w, _ := WrapKeyRSAOAEP(&priv.PublicKey, dk, ContentAESGCM, rand.Reader)
	w[10] ^= 1
	_, err := UnwrapKeyRSAOAEP(priv, w, ContentAESGCM)
	wantErr(t, err, ErrAuthentication, "RSA-OAEP-SHA1")
	_, err = UnwrapKeyRSAOAEP(priv, w[:100], ContentAESGCM)
	wantErr(t, err, ErrBadKeyLength, "want 256 bytes")
	_, err = UnwrapKeyRSAOAEP(nil, w, ContentAESGCM)
	wantErr(t, err, ErrBadKeyLength)
	_, err = WrapKeyRSAOAEP(nil, dk, ContentAESGCM, rand.Reader)
	wantErr(t, err, ErrBadKeyLength)
}

// TestMalleability mirrors the official clients' parameter malleability
// tests (Java ParameterMalleabilityTest, Go KMS cek-alg check): altering the
// content or wrapping algorithm of a stored object must make it fail, even
// with legacy algorithms allowed.
func TestMalleability(t *testing.T) {
	aes2 := seal(t, V2, PlacementMetadata, WrapAESGCM, []byte("ContentDowngradeAttackFails"), 50)
	aes3 := seal(t, V3, PlacementMetadata, WrapAESGCM, []byte("V3"), 51)
	rsa2 := seal(t, V2, PlacementMetadata, WrapRSAOAEPSHA1, []byte("RSA"), 52)
	kms3 := seal(t, V3, PlacementMetadata, WrapKMSContext, []byte("KMS"), 53)
	legacy := ParseOptions{AllowLegacy: true}

	// open runs the whole read path the way a keyring would pick it.
	open := func(s sealed, meta map[string]string, opts ParseOptions) error {
		env, err := Parse(meta, s.instr, opts)
		if err != nil {
			return err
		}
		var dk *DataKey
		switch env.WrapAlg {
		case WrapAESGCM:
			dk, err = env.UnwrapAESGCM(testKEK())
		case WrapRSAOAEPSHA1:
			dk, err = env.UnwrapRSAOAEP(testRSAKey(t))
		case WrapKMSContext:
			if _, err = env.KMSContext(); err == nil {
				dk = s.dataKey
			}
		default:
			// A legacy keyring would now try AESWrap/AES/RSA on bytes that
			// are not that: the envelope asks for a key this package's
			// AES/GCM and RSA-OAEP paths refuse.
			if _, err = env.UnwrapAESGCM(testKEK()); err == nil {
				t.Fatal("AES/GCM unwrap accepted a legacy envelope")
			}
			return err
		}
		if err != nil {
			return err
		}
		_, err = DecryptContent(env, dk, s.body)
		return err
	}
	for _, s := range []sealed{aes2, aes3, rsa2, kms3} {
		if err := open(s, s.meta, ParseOptions{}); err != nil {
			t.Fatalf("%s: untampered object fails: %v", s.name, err)
		}
	}

	cases := []struct {
		name     string
		s        sealed
		kv       []string
		opts     ParseOptions
		sentinel error
	}{
		{"content downgrade: cek-alg removed", aes2, []string{FieldCEKAlg, ""}, legacy, ErrMissingField},
		{"content downgrade: cek-alg CBC", aes2, []string{FieldCEKAlg, string(ContentAESCBC)}, legacy, ErrBadIVLength},
		{"key wrap removal", aes2, []string{FieldWrapAlg, ""}, legacy, ErrMissingField},
		{"key wrap downgrade AESWrap", aes2, []string{FieldWrapAlg, string(WrapAESWrap)}, legacy, ErrAlgorithmMismatch},
		{"key wrap downgrade AES", aes2, []string{FieldWrapAlg, string(WrapAES)}, legacy, ErrAlgorithmMismatch},
		{"key wrap downgrade AESWrap, strict", aes2, []string{FieldWrapAlg, string(WrapAESWrap)}, ParseOptions{}, ErrLegacyAlgorithm},
		{"AES/GCM relabelled RSA", aes2, []string{FieldWrapAlg, string(WrapRSAOAEPSHA1)}, ParseOptions{}, ErrBadKeyLength},
		{"RSA relabelled AES/GCM", rsa2, []string{FieldWrapAlg, string(WrapAESGCM)}, ParseOptions{}, ErrBadKeyLength},
		{"RSA relabelled RSA legacy", rsa2, []string{FieldWrapAlg, string(WrapRSA)}, legacy, ErrAlgorithmMismatch},
		{"V3 w 02 to 22", aes3, []string{FieldV3WrapAlg, V3CodeRSAOAEPSHA1}, ParseOptions{}, ErrBadKeyLength},
		{"V3 w 12 to 02", kms3, []string{FieldV3WrapAlg, V3CodeAESGCM}, ParseOptions{}, ErrBadKeyLength},
		{"V3 c changed", aes3, []string{FieldV3ContentAlg, string(ContentAESGCM)}, legacy, ErrUnknownAlgorithm},
		{"V3 message ID changed", aes3, []string{FieldV3MessageID, b64(bytes.Repeat([]byte{9}, 28))}, ParseOptions{}, ErrCommitmentMismatch},
		{"V3 commitment changed", aes3, []string{FieldV3Commitment, b64(bytes.Repeat([]byte{9}, 28))}, ParseOptions{}, ErrCommitmentMismatch},
		{"V3 context cek-alg changed", kms3, []string{FieldV3Context, `{"aws:x-amz-cek-alg":"AES/GCM/NoPadding","tenant":"a"}`}, ParseOptions{}, ErrAlgorithmMismatch},
		{"V2 IV changed", aes2, []string{FieldIV, b64(bytes.Repeat([]byte{9}, 12))}, ParseOptions{}, ErrAuthentication},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := cloneMeta(c.s.meta)
			for i := 0; i < len(c.kv); i += 2 {
				if c.kv[i+1] == "" {
					delete(m, c.kv[i])
				} else {
					m[c.kv[i]] = c.kv[i+1]
				}
			}
			err := open(c.s, m, c.opts)
			if !errors.Is(err, c.sentinel) {
				t.Fatalf("got %v, want %v", err, c.sentinel)
			}
		})
	}

	// A V3 AES/GCM-wrapped key moved into a V2 envelope (and back) is caught
	// by the AAD binding.
	moved := cloneMeta(aes2.meta)
	moved[FieldKeyV2] = b64(aes3.env.WrappedKey)
	err := open(aes2, moved, ParseOptions{})
	wantErr(t, err, ErrAlgorithmMismatch, FieldKeyV2, `"115"`)
	moved3 := cloneMeta(aes3.meta)
	moved3[FieldV3Key] = b64(aes2.env.WrappedKey)
	err = open(aes3, moved3, ParseOptions{})
	wantErr(t, err, ErrAlgorithmMismatch, FieldV3Key)
}
