package envelope

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"testing"
)

type officialVector struct {
	Name         string            `json:"name"`
	Legacy       bool              `json:"legacy"`
	Metadata     map[string]string `json:"metadata"`
	DataKeyB64   string            `json:"data_key_b64"`
	BodyHex      string            `json:"body_hex"`
	PlaintextHex string            `json:"plaintext_hex"`
	WantError    string            `json:"want_error"`
}

type hkdfVector struct {
	DataKeyHex    string `json:"data_key_hex"`
	MessageIDHex  string `json:"message_id_hex"`
	ContentKeyHex string `json:"content_key_hex"`
	CommitmentHex string `json:"commitment_hex"`
}

func loadOfficialVectors(t testing.TB) ([]officialVector, []hkdfVector) {
	t.Helper()
	b, err := os.ReadFile("testdata/official_go_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Vectors []officialVector
		HKDF    []hkdfVector
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	return f.Vectors, f.HKDF
}

var sentinels = map[string]error{
	"ErrCommitmentMismatch": ErrCommitmentMismatch,
	"ErrBadBase64":          ErrBadBase64,
}

// TestOfficialGoVectors decrypts the objects of the official Go client's own
// unit tests (mock S3 metadata, the data key its mock KMS returns).
func TestOfficialGoVectors(t *testing.T) {
	vectors, _ := loadOfficialVectors(t)
	for _, v := range vectors {
		t.Run(v.Name, func(t *testing.T) {
			t.Parallel()
			opts := ParseOptions{AllowLegacy: v.Legacy}
			env, err := Parse(v.Metadata, nil, opts)
			if err == nil && v.WantError == "" {
				if _, err := env.KMSContext(); err != nil {
					t.Fatal(err)
				}
			}
			if err == nil {
				var pt []byte
				pt, err = DecryptContent(env, NewDataKey(mustB64(t, v.DataKeyB64)), mustHex(t, v.BodyHex))
				if err == nil && !bytes.Equal(pt, mustHex(t, v.PlaintextHex)) {
					t.Fatal("plaintext differs")
				}
			}
			if v.WantError != "" {
				wantErr(t, err, sentinels[v.WantError], FieldV3Commitment)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v.Legacy {
				if _, err := Parse(v.Metadata, nil, ParseOptions{}); !errors.Is(err, ErrLegacyAlgorithm) {
					t.Fatalf("legacy vector without AllowLegacy: %v", err)
				}
			}
		})
	}
}

func TestDeriveV3Vectors(t *testing.T) {
	_, vectors := loadOfficialVectors(t)
	for _, v := range vectors {
		ck, commitment, err := DeriveV3(NewDataKey(mustHex(t, v.DataKeyHex)), mustHex(t, v.MessageIDHex))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ck.Bytes(), mustHex(t, v.ContentKeyHex)) || !bytes.Equal(commitment, mustHex(t, v.CommitmentHex)) {
			t.Fatalf("DeriveV3 differs for message ID %s", v.MessageIDHex)
		}
		env := &Envelope{Format: V3, CEKAlg: ContentCommitKey, MessageID: mustHex(t, v.MessageIDHex), KeyCommitment: mustHex(t, v.CommitmentHex)}
		if _, err := env.ContentKey(NewDataKey(mustHex(t, v.DataKeyHex))); err != nil {
			t.Fatal(err)
		}
		env.KeyCommitment = make([]byte, CommitmentSize)
		_, err = env.ContentKey(NewDataKey(mustHex(t, v.DataKeyHex)))
		wantErr(t, err, ErrCommitmentMismatch, FieldV3Commitment)
	}
	_, _, err := DeriveV3(NewDataKey(make([]byte, 16)), make([]byte, MessageIDSize))
	wantErr(t, err, ErrBadKeyLength, "data key")
	_, _, err = DeriveV3(NewDataKey(make([]byte, 32)), make([]byte, 12))
	wantErr(t, err, ErrBadIVLength, FieldV3MessageID)
}

// specObject builds an object exactly as FORMAT.md describes, with the
// standard library only (no code of this package), the way the Java client
// writes AES/GCM- and RSA-OAEP-SHA1-wrapped objects.
func specObject(t *testing.T, f Format, alg WrapAlg, instruction bool, plaintext []byte) (meta map[string]string, file []byte, body []byte) {
	t.Helper()
	dk := bytes.Repeat([]byte{0x5a}, 32)
	kek := testKEK()
	std := base64.StdEncoding.EncodeToString
	gcm := func(key []byte) cipher.AEAD {
		b, err := aes.NewCipher(key)
		if err != nil {
			t.Fatal(err)
		}
		g, err := cipher.NewGCM(b)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	binding := "AES/GCM/NoPadding"
	all := map[string]string{}
	if f == V3 {
		binding = "115"
		msgID := bytes.Repeat([]byte{0x17}, 28)
		prk, err := hkdf.Extract(sha512.New, dk, msgID)
		if err != nil {
			t.Fatal(err)
		}
		contentKey, _ := hkdf.Expand(sha512.New, prk, "\x00\x73DERIVEKEY", 32)
		commitment, _ := hkdf.Expand(sha512.New, prk, "\x00\x73COMMITKEY", 28)
		body = gcm(contentKey).Seal(nil, bytes.Repeat([]byte{1}, 12), plaintext, []byte{0x00, 0x73})
		all["x-amz-c"] = "115"
		all["x-amz-d"] = std(commitment)
		all["x-amz-i"] = std(msgID)
	} else {
		iv := bytes.Repeat([]byte{0x24}, 12)
		body = gcm(dk).Seal(nil, iv, plaintext, nil)
		all["x-amz-iv"] = std(iv)
		all["x-amz-cek-alg"] = "AES/GCM/NoPadding"
		all["x-amz-tag-len"] = "128"
	}
	var wrapped []byte
	switch alg {
	case WrapAESGCM:
		wiv := bytes.Repeat([]byte{0x33}, 12)
		wrapped = append(wiv, gcm(kek).Seal(nil, wiv, dk, []byte(binding))...)
	case WrapRSAOAEPSHA1:
		var err error
		msg := append(append([]byte{0x20}, dk...), binding...)
		wrapped, err = rsa.EncryptOAEP(sha1.New(), rand.Reader, &testRSAKey(t).PublicKey, msg, nil)
		if err != nil {
			t.Fatal(err)
		}
	}
	if f == V3 {
		all["x-amz-3"] = std(wrapped)
		all["x-amz-w"] = map[WrapAlg]string{WrapAESGCM: "02", WrapRSAOAEPSHA1: "22"}[alg]
		all["x-amz-m"] = `{"kid":"spec"}`
	} else {
		all["x-amz-key-v2"] = std(wrapped)
		all["x-amz-wrap-alg"] = string(alg)
		all["x-amz-matdesc"] = `{"kid":"spec"}`
	}
	if !instruction {
		return all, nil, body
	}
	meta = map[string]string{}
	if f == V3 {
		for _, k := range []string{"x-amz-c", "x-amz-d", "x-amz-i"} {
			meta[k] = all[k]
			delete(all, k)
		}
	}
	file, err := json.Marshal(all)
	if err != nil {
		t.Fatal(err)
	}
	return meta, file, body
}

func TestSpecConstructedObjects(t *testing.T) {
	pt := []byte("constructed from the format description, not by this package")
	for _, f := range []Format{V2, V3} {
		for _, alg := range []WrapAlg{WrapAESGCM, WrapRSAOAEPSHA1} {
			for _, instr := range []bool{false, true} {
				meta, file, body := specObject(t, f, alg, instr, pt)
				env, err := Parse(meta, file, ParseOptions{})
				if err != nil {
					t.Fatalf("%v %s %v: %v", f, alg, instr, err)
				}
				var dk *DataKey
				if alg == WrapAESGCM {
					dk, err = env.UnwrapAESGCM(testKEK())
				} else {
					dk, err = env.UnwrapRSAOAEP(testRSAKey(t))
				}
				if err != nil {
					t.Fatalf("%v %s %v: %v", f, alg, instr, err)
				}
				if !bytes.Equal(dk.Bytes(), bytes.Repeat([]byte{0x5a}, 32)) {
					t.Fatal("wrong data key")
				}
				got, err := DecryptContent(env, dk, body)
				if err != nil || !bytes.Equal(got, pt) {
					t.Fatalf("%v %s %v: %q %v", f, alg, instr, got, err)
				}
				if env.MatDesc["kid"] != "spec" {
					t.Fatalf("matdesc %v", env.MatDesc)
				}
			}
		}
	}
}

// cbcEncryptForTest builds legacy AES-CBC/PKCS#5 content with the standard
// library.
func cbcEncryptForTest(t testing.TB, key, iv, plaintext []byte) []byte {
	t.Helper()
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	pad := aes.BlockSize - len(plaintext)%aes.BlockSize
	in := append(bytes.Clone(plaintext), bytes.Repeat([]byte{byte(pad)}, pad)...)
	out := make([]byte, len(in))
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(out, in)
	return out
}

func TestCBCPadding(t *testing.T) {
	key := bytes.Repeat([]byte{3}, 32)
	iv := bytes.Repeat([]byte{4}, 16)
	env := &Envelope{Format: V1, CEKAlg: ContentAESCBC, IV: iv}
	for n := 0; n <= 33; n++ {
		pt := bytes.Repeat([]byte{'p'}, n)
		got, err := DecryptContent(env, NewDataKey(key), cbcEncryptForTest(t, key, iv, pt))
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("len %d: %v", n, err)
		}
	}
	raw := func(last []byte) []byte {
		b, _ := aes.NewCipher(key)
		in := append(bytes.Repeat([]byte{'x'}, 16-len(last)), last...)
		out := make([]byte, 16)
		cipher.NewCBCEncrypter(b, iv).CryptBlocks(out, in)
		return out
	}
	for name, last := range map[string][]byte{
		"zero pad":      {0},
		"pad too large": {17},
		"pad 255":       {255},
		"inconsistent":  {2, 3, 3},
		"16 not all":    append([]byte{15}, bytes.Repeat([]byte{16}, 15)...),
	} {
		_, err := DecryptContent(env, NewDataKey(key), raw(last))
		if !errors.Is(err, ErrBadPadding) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, n := range []int{0, 1, 15, 17} {
		_, err := DecryptContent(env, NewDataKey(key), make([]byte, n))
		wantErr(t, err, ErrBadPadding, "content")
	}
	env.IV = iv[:12]
	_, err := DecryptContent(env, NewDataKey(key), make([]byte, 16))
	wantErr(t, err, ErrBadIVLength, FieldIV)
}
