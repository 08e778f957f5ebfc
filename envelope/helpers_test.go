package envelope

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	mrand "math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
)

// detRand returns a deterministic random source for reproducible tests.
func detRand(seed byte) *mrand.ChaCha8 {
	var s [32]byte
	for i := range s {
		s[i] = seed + byte(i)
	}
	return mrand.NewChaCha8(s)
}

func testDataKey(seed byte) *DataKey {
	b := make([]byte, DataKeySize)
	for i := range b {
		b[i] = seed ^ byte(i*7)
	}
	return NewDataKey(b)
}

func testKEK() []byte { return bytes.Repeat([]byte{0x4b}, 32) }

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

// testRSAKey returns the fixed 2048-bit test key (testdata, test use only),
// so that fuzz seeds and crashers stay valid across runs.
func testRSAKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	rsaOnce.Do(func() {
		b, err := os.ReadFile("testdata/rsa2048-test-key.pem")
		if err != nil {
			panic(err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			panic("testdata/rsa2048-test-key.pem: no PEM block")
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			panic(err)
		}
		rsaKey = k.(*rsa.PrivateKey)
	})
	return rsaKey
}

// wantErr checks that err wraps sentinel and that its message mentions
// every one of mentions (field names, where).
func wantErr(t testing.TB, err, sentinel error, mentions ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", sentinel)
	}
	if !errors.Is(err, sentinel) {
		t.Fatalf("got %v, want an error wrapping %v", err, sentinel)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "envelope: ") {
		t.Errorf("message %q lacks the envelope: prefix", msg)
	}
	if strings.HasSuffix(msg, ".") {
		t.Errorf("message %q ends with a period", msg)
	}
	for _, m := range mentions {
		if !strings.Contains(msg, m) {
			t.Errorf("message %q does not mention %q", msg, m)
		}
	}
}

func mustB64(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func cloneMeta(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// sealed is one encrypted object built by this package for tests.
type sealed struct {
	name      string
	env       *Envelope
	meta      map[string]string // object metadata
	instr     []byte            // instruction file body, nil for metadata placement
	body      []byte
	plaintext []byte
	dataKey   *DataKey
}

// seal encrypts plaintext and wraps the data key with alg.
func seal(t testing.TB, f Format, p Placement, alg WrapAlg, plaintext []byte, seed byte) sealed {
	t.Helper()
	r := detRand(seed)
	dk := testDataKey(seed)
	env, body, err := EncryptContent(f, dk, plaintext, r)
	if err != nil {
		t.Fatal(err)
	}
	var wrapped []byte
	md := map[string]string{}
	switch alg {
	case WrapAESGCM:
		wrapped, err = WrapKeyAESGCM(testKEK(), dk, env.CEKAlg, r)
		md = map[string]string{"keyname": "kek-1"}
	case WrapRSAOAEPSHA1:
		wrapped, err = WrapKeyRSAOAEP(&testRSAKey(t).PublicKey, dk, env.CEKAlg, r)
		md = map[string]string{"keyname": "rsa-1"}
	case WrapKMSContext:
		wrapped = bytes.Repeat([]byte{0xb1, seed}, 92) // stands in for a KMS CiphertextBlob
		md, err = NewKMSContext(env.CEKAlg, map[string]string{"tenant": "a"})
	}
	if err != nil {
		t.Fatal(err)
	}
	env, err = env.WithWrappedKey(wrapped, alg, md)
	if err != nil {
		t.Fatal(err)
	}
	env.Placement = p
	s := sealed{name: f.String() + "/" + p.String() + "/" + string(alg), env: env, body: body, plaintext: plaintext, dataKey: dk}
	if p == PlacementMetadata {
		s.meta, err = env.Metadata()
	} else {
		s.meta, s.instr, err = env.InstructionFile()
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// unwrapFor recovers the data key of env with the test keys.
func unwrapFor(t testing.TB, env *Envelope, kmsKey *DataKey) (*DataKey, error) {
	t.Helper()
	switch env.WrapAlg {
	case WrapAESGCM:
		return env.UnwrapAESGCM(testKEK())
	case WrapRSAOAEPSHA1:
		return env.UnwrapRSAOAEP(testRSAKey(t))
	case WrapKMSContext:
		if _, err := env.KMSContext(); err != nil {
			return nil, err
		}
		return NewDataKey(kmsKey.Bytes()), nil
	}
	t.Fatalf("no test key for %s", env.WrapAlg)
	return nil, nil
}

var writable = []struct {
	f   Format
	p   Placement
	alg WrapAlg
}{
	{V2, PlacementMetadata, WrapKMSContext},
	{V2, PlacementMetadata, WrapAESGCM},
	{V2, PlacementMetadata, WrapRSAOAEPSHA1},
	{V2, PlacementInstructionFile, WrapKMSContext},
	{V2, PlacementInstructionFile, WrapAESGCM},
	{V2, PlacementInstructionFile, WrapRSAOAEPSHA1},
	{V3, PlacementMetadata, WrapKMSContext},
	{V3, PlacementMetadata, WrapAESGCM},
	{V3, PlacementMetadata, WrapRSAOAEPSHA1},
	{V3, PlacementInstructionFile, WrapKMSContext},
	{V3, PlacementInstructionFile, WrapAESGCM},
	{V3, PlacementInstructionFile, WrapRSAOAEPSHA1},
}

func parseJSONMap(t testing.TB, b []byte) map[string]string {
	t.Helper()
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("instruction file %s: %v", b, err)
	}
	return m
}
