package rewrap

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// The fuzz targets below handle key material: their messages show a
// fingerprint and the length of an input, never the input.
func fingerprint(b []byte) string {
	sum := sha256.Sum256(b)
	return fmt.Sprintf("%d bytes, sha256 %x", len(b), sum[:6])
}

var (
	// aesKeyErrors are parseAESKey's messages.
	aesKeyErrors = regexp.MustCompile(`^(\d+ bytes: neither 32 raw bytes, nor 64 hex digits, nor 44 base64 characters|` +
		`64 characters but not hex digits|44 characters but not base64 of 32 bytes|the key is all zeros)$`)
	hexKeyText = regexp.MustCompile(`^[0-9A-Fa-f]{64}$`)
	b64KeyText = regexp.MustCompile(`^[A-Za-z0-9+/]{43}=$`)
)

// refAESKey is parseAESKey's contract: 32 raw bytes, or 64 hex digits, or
// the padded standard base64 of 32 bytes (the text forms may end in one
// newline), not all zeros.
func refAESKey(b []byte) ([]byte, bool) {
	var k []byte
	if len(b) == 32 {
		k = bytes.Clone(b)
	} else {
		t := b
		if n := len(t); n > 0 && t[n-1] == '\n' {
			t = bytes.TrimSuffix(t[:n-1], []byte("\r"))
		}
		switch {
		case hexKeyText.Match(t):
			k, _ = hex.DecodeString(string(t))
		case b64KeyText.Match(t):
			d, err := base64.StdEncoding.Strict().DecodeString(string(t))
			if err != nil || len(d) != 32 {
				return nil, false
			}
			k = d
		default:
			return nil, false
		}
	}
	if bytes.Equal(k, make([]byte, 32)) {
		return nil, false
	}
	return k, true
}

// FuzzParseAESKey parses arbitrary bytes as an AES key file (never a
// panic) and checks it against its contract (refAESKey): it accepts
// exactly the 32-byte keys the contract does, as a copy of the file's
// bytes, and a key it accepts parses the same in every form the contract
// names (raw, hex in either case, base64, each with and without a
// newline). A refusal never shows the file's text or the key in it.
func FuzzParseAESKey(f *testing.F) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		f.Fatal(err)
	}
	hexKey, b64Key := hex.EncodeToString(key), base64.StdEncoding.EncodeToString(key)
	for _, s := range []string{
		string(key), hexKey, hexKey + "\n", strings.ToUpper(hexKey) + "\r\n", b64Key, b64Key + "\n", b64Key + "\r\n",
		hexKey + "\r", hexKey + "\n\n", "\n" + b64Key, hexKey[:63] + "\n", "zz" + hexKey[2:], " " + hexKey,
		base64.RawStdEncoding.EncodeToString(key) + "A", b64Key[:20] + "\n" + b64Key[20:],
		strings.NewReplacer("+", "-", "/", "_").Replace(b64Key), base64.StdEncoding.EncodeToString(key[:31]) + "=",
		string(make([]byte, 32)), strings.Repeat("0", 64), base64.StdEncoding.EncodeToString(make([]byte, 32)), "",
		string(key[:31]), string(key) + "\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		k, err := parseAESKey(b)
		want, ok := refAESKey(in)
		if !bytes.Equal(b, in) {
			t.Fatalf("parseAESKey changed its input (%s)", fingerprint(in))
		}
		if (err == nil) != ok || ok && !bytes.Equal(k, want) {
			t.Fatalf("parseAESKey(%s): accepted %v (a key of %s), the contract says %v (a key of %s)",
				fingerprint(in), err == nil, fingerprint(k), ok, fingerprint(want))
		}
		if err != nil {
			// The messages are a closed set, none with any of the file.
			if !aesKeyErrors.MatchString(err.Error()) {
				t.Fatalf("the error of parseAESKey(%s) is not one of its messages: it may show the file", fingerprint(in))
			}
			return
		}
		if len(b) > 0 && &k[0] == &b[0] {
			t.Fatalf("parseAESKey(%s) returned the file's own bytes, not a copy", fingerprint(in))
		}
		h, s := hex.EncodeToString(k), base64.StdEncoding.EncodeToString(k)
		for _, form := range []string{string(k), h, h + "\n", strings.ToUpper(h) + "\r\n", s, s + "\n", s + "\r\n"} {
			if again, err := parseAESKey([]byte(form)); err != nil || !bytes.Equal(again, k) {
				t.Fatalf("a key parsed from %s does not parse back from a %d-byte form of it: %v", fingerprint(in), len(form), err)
			}
		}
	})
}

// FuzzParseRSAKey parses arbitrary bytes as an RSA key file (never a
// panic). What it accepts is one PEM block, unencrypted, with nothing but
// space after it, of type RSA PRIVATE KEY, PRIVATE KEY or PUBLIC KEY, the
// last one alone without a private key; the public key is the private
// key's and has an ID (RSAKeyID); and the key re-encoded in every format
// it reads (PKCS#1, PKCS#8, PKIX) parses to the same key and ID. A
// refusal never shows the key material of the block.
func FuzzParseRSAKey(f *testing.F) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		f.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		f.Fatal(err)
	}
	pkix, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		f.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	ecPub, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	edDER, _ := x509.MarshalPKCS8PrivateKey(ed)
	enc := func(typ string, der []byte, headers map[string]string) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: typ, Headers: headers, Bytes: der})
	}
	pkcs1PEM, pkcs8PEM, pubPEM := enc("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(priv), nil), enc("PRIVATE KEY", pkcs8, nil), enc("PUBLIC KEY", pkix, nil)
	for _, b := range [][]byte{
		pkcs1PEM, pkcs8PEM, pubPEM,
		append(bytes.Clone(pubPEM), " \n\t\n"...),
		append([]byte("comment before the block\n"), pubPEM...),
		append(bytes.Clone(pkcs8PEM), pubPEM...),
		append(bytes.Clone(pubPEM), "garbage"...),
		enc("RSA PRIVATE KEY", []byte{1, 2, 3}, map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}),
		enc("ENCRYPTED PRIVATE KEY", []byte{1, 2, 3}, nil),
		enc("PRIVATE KEY", ecDER, nil), enc("PUBLIC KEY", ecPub, nil), enc("PRIVATE KEY", edDER, nil),
		enc("CERTIFICATE", []byte{1, 2, 3}, nil), enc("RSA PRIVATE KEY", []byte{1, 2, 3}, nil),
		enc("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&priv.PublicKey), nil),
		enc("PUBLIC KEY", pkix[:len(pkix)-1], nil),
		[]byte("hello"), nil,
	} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		pub, key, err := parseRSAKey(b)
		block, rest := pem.Decode(in)
		if err != nil {
			if pub != nil || key != nil {
				t.Fatalf("parseRSAKey(%s) failed with a key", fingerprint(in))
			}
			if block != nil && len(block.Bytes) >= 12 {
				msg := err.Error()
				for _, secret := range []string{base64.StdEncoding.EncodeToString(block.Bytes[:12]), hex.EncodeToString(block.Bytes[:8])} {
					if strings.Contains(msg, secret) && !strings.Contains(quote(block.Type), secret) {
						t.Fatalf("the error of parseRSAKey(%s) shows key material", fingerprint(in))
					}
				}
			}
			return
		}
		switch {
		case block == nil || len(bytes.TrimSpace(rest)) > 0:
			t.Fatalf("parseRSAKey(%s) accepted what is not one PEM block", fingerprint(in))
		case block.Headers["Proc-Type"] != "":
			t.Fatalf("parseRSAKey(%s) accepted an encrypted PEM block", fingerprint(in))
		case block.Type != "RSA PRIVATE KEY" && block.Type != "PRIVATE KEY" && block.Type != "PUBLIC KEY":
			t.Fatalf("parseRSAKey(%s) accepted a PEM block of type %s", fingerprint(in), quote(block.Type))
		case (key == nil) != (block.Type == "PUBLIC KEY"):
			t.Fatalf("parseRSAKey(%s) of a %s block: private key %v", fingerprint(in), block.Type, key != nil)
		case pub == nil || pub.N == nil || pub.N.Sign() <= 0 || pub.E <= 0:
			t.Fatalf("parseRSAKey(%s): no usable public key", fingerprint(in))
		case key != nil && pub != &key.PublicKey:
			t.Fatalf("parseRSAKey(%s): the public key is not the private key's", fingerprint(in))
		}
		id, err := RSAKeyID(pub)
		if err != nil {
			t.Fatalf("parseRSAKey(%s): a public key without an ID: %v", fingerprint(in), err)
		}
		der := func(b []byte, err error) []byte {
			if err != nil {
				t.Fatalf("re-encode the key of %s (%s): %v", fingerprint(in), id, err)
			}
			return b
		}
		again := map[string][]byte{"PKIX": enc("PUBLIC KEY", der(x509.MarshalPKIXPublicKey(pub)), nil)}
		if key != nil {
			_ = key.Validate() // openRSA's check: a verdict, never a panic
			again["PKCS#8"] = enc("PRIVATE KEY", der(x509.MarshalPKCS8PrivateKey(key)), nil)
			again["PKCS#1"] = enc("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key), nil)
		}
		for format, b2 := range again {
			pub2, key2, err := parseRSAKey(b2)
			if err != nil || !pub2.Equal(pub) || (key2 == nil) != (format == "PKIX") || key2 != nil && !key2.Equal(key) {
				t.Fatalf("the key of %s (%s) does not parse back as %s: %v", fingerprint(in), id, format, err)
			}
			if id2, err := RSAKeyID(pub2); err != nil || id2 != id {
				t.Fatalf("the key of %s as %s: ID %s, %v; want %s", fingerprint(in), format, id2, err, id)
			}
		}
	})
}
