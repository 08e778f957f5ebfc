package rewrap

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/rotator-dev/rotator/envelope"
)

func TestAESKeyFiles(t *testing.T) {
	t.Parallel()
	d := newDeps(t, aws.Config{}, nil)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	m := hmac.New(sha256.New, key)
	m.Write([]byte("rotator aes key id v1"))
	wantID := "aes:sha256:" + hex.EncodeToString(m.Sum(nil))
	if AESKeyID(key) != wantID {
		t.Fatalf("AESKeyID = %s, want %s", AESKeyID(key), wantID)
	}
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hexKey, b64Key := hex.EncodeToString(key), base64.StdEncoding.EncodeToString(key)
	good := map[string][]byte{
		"raw":      key,
		"hex":      []byte(hexKey),
		"hex-nl":   []byte(hexKey + "\n"),
		"HEX-crlf": []byte(strings.ToUpper(hexKey) + "\r\n"),
		"b64":      []byte(b64Key),
		"b64-nl":   []byte(b64Key + "\n"),
	}
	for name, b := range good {
		k := mustOpen(t, d, "aes:"+write(name, b))
		if k.ID() != wantID || k.Kind() != KindAES {
			t.Errorf("%s: ID %s, want %s", name, k.ID(), wantID)
		}
	}

	short := make([]byte, 31)
	_, _ = rand.Read(short)
	bad := map[string][]byte{
		"raw 31 bytes":      key[:31],
		"raw 33 bytes":      append(bytes.Clone(key), 'x'),
		"hex 63 digits":     []byte(hexKey[:63] + "\n"),
		"not hex":           []byte("zz" + hexKey[2:]),
		"base64 of 31":      []byte(base64.StdEncoding.EncodeToString(short) + "="),
		"base64 unpadded":   []byte(base64.RawStdEncoding.EncodeToString(key) + "A"),
		"two newlines":      []byte(hexKey + "\n\n"),
		"all zeros":         make([]byte, 32),
		"all zeros in hex":  []byte(strings.Repeat("0", 64)),
		"empty":             nil,
		"too large":         bytes.Repeat([]byte{'a'}, 1000),
		"hex with a space":  []byte(" " + hexKey),
		"leading newline":   []byte("\n" + b64Key),
		"url-safe base64":   []byte(strings.NewReplacer("+", "-", "/", "_").Replace(b64Key)),
		"base64 whitespace": []byte(b64Key[:20] + "\n" + b64Key[20:]),
	}
	if !strings.ContainsAny(b64Key, "+/") {
		delete(bad, "url-safe base64")
	}
	for name, b := range bad {
		p := write(strings.ReplaceAll(name, " ", "-"), b)
		_, err := Open(t.Context(), mustSpec(t, "aes:"+p), d)
		e := wantError(t, err, "open aes key", CodeBadKeyFile, true, "")
		for _, secret := range []string{hexKey, strings.ToUpper(hexKey), b64Key, string(key), hexKey[:20], b64Key[:20]} {
			if strings.Contains(err.Error(), secret) || strings.Contains(e.Hint, secret) {
				t.Errorf("%s: the error shows key material: %v", name, err)
			}
		}
	}
	for name, p := range map[string]string{"directory": dir, "missing": filepath.Join(dir, "nope")} {
		_, err := Open(t.Context(), mustSpec(t, "aes:"+p), d)
		if wantError(t, err, "open aes key", CodeBadKeyFile, true, ""); err == nil {
			t.Errorf("%s: opened", name)
		}
	}
}

func TestRSAKeyFiles(t *testing.T) {
	t.Parallel()
	d := newDeps(t, aws.Config{}, nil)
	pathA, privA := testRSA(t, "rsa-a.pem")
	pubPEM, err := os.ReadFile(filepath.Join("testdata", "rsa-a.pub.pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pubPEM)
	sum := sha256.Sum256(block.Bytes) // the SPKI fingerprint, as openssl computes it
	wantID := "rsa:sha256:" + hex.EncodeToString(sum[:])

	a := mustOpen(t, d, "rsa:"+pathA)
	for _, name := range []string{"rsa-a.pkcs1.pem", "rsa-a.pub.pem"} {
		k := mustOpen(t, d, "rsa:"+filepath.Join("testdata", name))
		if k.ID() != wantID || a.ID() != wantID || k.Kind() != KindRSA {
			t.Errorf("%s: ID %s, want %s", name, k.ID(), wantID)
		}
	}

	// A public key wraps but does not unwrap.
	pub := mustOpen(t, d, "rsa:"+filepath.Join("testdata", "rsa-a.pub.pem"))
	dek := newDEK(t)
	w, err := pub.Wrap(t.Context(), dek, envelope.ContentCommitKey, map[string]string{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := envelope.UnwrapKeyRSAOAEP(privA, w.Key, envelope.ContentCommitKey)
	if err != nil || !got.Equal(dek) || w.MatDesc["k"] != "v" || w.Alg != envelope.WrapRSAOAEPSHA1 {
		t.Fatalf("public-key wrap: %v", err)
	}
	got.Clear()
	_, err = pub.Unwrap(t.Context(), w, envelope.ContentCommitKey)
	wantError(t, err, "rsa unwrap", CodeWrapOnly, true, "private key")
	if m := Classify(pub, w); m != MatchUnknown {
		t.Errorf("Classify(public key) = %v", m)
	}

	// A weak key unwraps (to move objects off it) but does not wrap.
	weakPath, weakPriv := testRSA(t, "rsa-weak.pem")
	weak := mustOpen(t, d, "rsa:"+weakPath)
	ww, err := envelope.WrapKeyRSAOAEP(&weakPriv.PublicKey, dek, envelope.ContentAESGCM, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Rewrap(t.Context(), weak, a, Wrapped{Alg: envelope.WrapRSAOAEPSHA1, Key: ww}, envelope.ContentAESGCM)
	if err != nil || res.Method != "rsa-unwrap+rsa-wrap" {
		t.Fatalf("rewrap off a weak key: %v", err)
	}
	_, err = Rewrap(t.Context(), a, weak, res.Wrapped, envelope.ContentAESGCM)
	wantError(t, err, "rsa wrap", CodeBadKeyFile, true, "openssl genpkey")

	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	ecPub, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	keyPEM, _ := os.ReadFile(pathA)
	dir := t.TempDir()
	bad := map[string][]byte{
		"two blocks":       append(bytes.Clone(keyPEM), pubPEM...),
		"trailing text":    append(bytes.Clone(keyPEM), []byte("garbage")...),
		"not PEM":          []byte("hello"),
		"EC private key":   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}),
		"EC public key":    pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecPub}),
		"certificate":      pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}}),
		"encrypted PKCS#8": pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1, 2, 3}}),
		"encrypted PKCS#1": pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY",
			Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: []byte{1, 2, 3}}),
		"malformed PKCS#1": pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte{1, 2, 3}}),
	}
	for name, b := range bad {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Open(t.Context(), mustSpec(t, "rsa:"+p), d)
		wantError(t, err, "open rsa key", CodeBadKeyFile, true, "PEM")
		if strings.Contains(err.Error(), "MII") {
			t.Errorf("%s: the error shows key material: %v", name, err)
		}
	}
}

func TestLocalRecognize(t *testing.T) {
	t.Parallel()
	d := newDeps(t, aws.Config{}, nil)
	pa, _ := writeAESKey(t)
	pb, _ := writeAESKey(t)
	a, b := mustOpen(t, d, "aes:"+pa), mustOpen(t, d, "aes:"+pb)
	dek := newDEK(t)
	for _, cek := range []envelope.ContentAlg{envelope.ContentAESGCM, envelope.ContentCommitKey} {
		w, err := a.Wrap(t.Context(), dek, cek, nil)
		if err != nil {
			t.Fatal(err)
		}
		if Classify(a, w) != MatchYes || Classify(b, w) != MatchNo {
			t.Errorf("%s: own %v, other %v", cek, Classify(a, w), Classify(b, w))
		}
		_, err = Rewrap(t.Context(), b, a, w, cek)
		wantError(t, err, "aes unwrap", CodeAuthentication, false, "--from")
	}
	if Classify(a, Wrapped{Alg: envelope.WrapKMSContext, Key: make([]byte, 60)}) != MatchNo {
		t.Error("a KMS blob matched an AES key")
	}

	ra, _ := testRSA(t, "rsa-a.pem")
	rb, _ := testRSA(t, "rsa-b.pem")
	x, y := mustOpen(t, d, "rsa:"+ra), mustOpen(t, d, "rsa:"+rb)
	w, err := x.Wrap(t.Context(), dek, envelope.ContentCommitKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	if Classify(x, w) != MatchYes || Classify(y, w) != MatchNo || Classify(x, Wrapped{Alg: envelope.WrapRSAOAEPSHA1, Key: w.Key[1:]}) != MatchNo {
		t.Error("RSA recognition")
	}
	_, err = Rewrap(t.Context(), x, y, w, envelope.ContentAESGCM)
	wantError(t, err, "rsa unwrap", CodeAlgorithmMismatch, false, "altered")
}

func TestDepsCloseDropsLocalKeys(t *testing.T) {
	t.Parallel()
	d := &Deps{}
	pa, _ := writeAESKey(t)
	a := mustOpen(t, d, "aes:"+pa)
	ra, _ := testRSA(t, "rsa-a.pem")
	r := mustOpen(t, d, "rsa:"+ra)
	dek := newDEK(t)
	w, err := r.Wrap(t.Context(), dek, envelope.ContentAESGCM, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = a.Wrap(t.Context(), dek, envelope.ContentAESGCM, nil)
	wantError(t, err, "aes wrap", CodeClosed, true, "")
	_, err = r.Unwrap(t.Context(), w, envelope.ContentAESGCM)
	wantError(t, err, "rsa unwrap", CodeClosed, true, "")
	if a.(*aesKeyring).kek.Len() != 0 {
		t.Error("the AES key was not cleared")
	}
	_, err = Open(t.Context(), mustSpec(t, "aes:"+pa), d)
	wantError(t, err, "open", CodeClosed, true, "")
}
