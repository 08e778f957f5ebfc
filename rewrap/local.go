package rewrap

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/rotator-dev/rotator/envelope"
)

// Bounds on key files: an AES key file is at most a base64 line; an RSA PEM
// file of a 16384-bit private key is about 13 KiB.
const (
	maxAESKeyFile = 128
	maxRSAKeyFile = 64 << 10
	// minRSABits is the smallest RSA key rotator wraps with. Smaller keys
	// still unwrap, so objects can be moved off them.
	minRSABits = 2048
)

// aesKeyIDLabel is the message of the HMAC that derives an AES key's ID.
const aesKeyIDLabel = "rotator aes key id v1"

// AESKeyID returns the ID of a local AES key: "aes:sha256:" and the hex of
// HMAC-SHA256(key, "rotator aes key id v1"). The HMAC makes it a key
// identifier that reveals nothing about the key (unlike a hash of the key, it
// cannot be used to test guesses without the key). To compute it elsewhere:
//
//	printf 'rotator aes key id v1' | openssl dgst -sha256 -mac HMAC -macopt hexkey:$(xxd -p -c 64 key.bin)
func AESKeyID(key []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(aesKeyIDLabel))
	return "aes:sha256:" + hex.EncodeToString(m.Sum(nil))
}

// RSAKeyID returns the ID of an RSA key pair: "rsa:sha256:" and the hex of
// SHA-256 of the public key's PKIX (SubjectPublicKeyInfo) DER, the usual
// public key fingerprint:
//
//	openssl pkey -in key.pem -pubout -outform DER | sha256sum
func RSAKeyID(pub *rsa.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return "rsa:sha256:" + hex.EncodeToString(sum[:]), nil
}

// readKeyFile reads a regular file of at most limit bytes. The caller clears
// the bytes.
func readKeyFile(op, path string, limit int64) ([]byte, error) {
	bad := func(detail, hint string) error { return newError(op, "", CodeBadKeyFile, detail, hint) }
	f, err := os.Open(path)
	if err != nil {
		return nil, bad(err.Error(), "check the path in the key spec")
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, bad(err.Error(), "")
	}
	if !st.Mode().IsRegular() {
		return nil, bad(path+" is not a regular file", "")
	}
	if st.Size() > limit {
		return nil, bad(fmt.Sprintf("%s is %d bytes, more than a key file holds (%d)", path, st.Size(), limit), "check that the spec names the key file")
	}
	b := make([]byte, 0, st.Size()+1)
	for {
		n, err := f.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			clear(b)
			return nil, bad(err.Error(), "")
		}
		if len(b) == cap(b) { // the file grew while we read it
			clear(b)
			return nil, bad(path+" changed while it was read", "")
		}
	}
	return b, nil
}

// parseAESKey accepts exactly 32 raw bytes, or 64 hex digits, or standard
// base64 (padded) of 32 bytes; the text forms may end in one newline. An
// all-zero key (a placeholder) is refused. It never echoes the file.
func parseAESKey(b []byte) ([]byte, error) {
	if len(b) == envelope.DataKeySize {
		return checkAESKey(bytes.Clone(b))
	}
	t := b
	if n := len(t); n > 0 && t[n-1] == '\n' {
		t = t[:n-1]
		if n := len(t); n > 0 && t[n-1] == '\r' {
			t = t[:n-1]
		}
	}
	switch len(t) {
	case 2 * envelope.DataKeySize:
		k := make([]byte, envelope.DataKeySize)
		if _, err := hex.Decode(k, t); err != nil {
			clear(k)
			return nil, errors.New("64 characters but not hex digits")
		}
		return checkAESKey(k)
	case base64.StdEncoding.EncodedLen(envelope.DataKeySize):
		k := make([]byte, envelope.DataKeySize+2)
		n, err := base64.StdEncoding.Strict().Decode(k, t)
		if err != nil || n != envelope.DataKeySize {
			clear(k)
			return nil, errors.New("44 characters but not base64 of 32 bytes")
		}
		return checkAESKey(k[:n])
	}
	return nil, fmt.Errorf("%d bytes: neither 32 raw bytes, nor 64 hex digits, nor 44 base64 characters", len(b))
}

func checkAESKey(k []byte) ([]byte, error) {
	var or byte
	for _, c := range k {
		or |= c
	}
	if or == 0 {
		return nil, errors.New("the key is all zeros")
	}
	return k, nil
}

// aesKeyring is a local AES-256 key: the S3EC raw AES keyring's AES/GCM
// wrapping.
type aesKeyring struct {
	id  string
	mu  sync.RWMutex // guards kek against clear
	kek *envelope.DataKey
}

var (
	_ Keyring    = (*aesKeyring)(nil)
	_ Recognizer = (*aesKeyring)(nil)
)

func openAES(path string) (*aesKeyring, error) {
	b, err := readKeyFile("open aes key", path, maxAESKeyFile)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	k, err := parseAESKey(b)
	if err != nil {
		return nil, newError("open aes key", "", CodeBadKeyFile, path+": "+err.Error(),
			"an AES key file holds 32 raw bytes, or 64 hex digits, or their standard base64 (44 characters), e.g. `head -c 32 /dev/urandom > kek.key`")
	}
	defer clear(k)
	return &aesKeyring{id: AESKeyID(k), kek: envelope.NewDataKey(k)}, nil
}

func (k *aesKeyring) clear() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.kek.Clear()
}

// ID returns aes:sha256:HEX (AESKeyID).
func (k *aesKeyring) ID() string { return k.id }

// Kind returns KindAES.
func (k *aesKeyring) Kind() Kind { return KindAES }

// Recognize tries to unwrap (offline, a microsecond): MatchYes when the key
// opens w under either content algorithm's binding.
func (k *aesKeyring) Recognize(w Wrapped) Match {
	if w.Alg != envelope.WrapAESGCM || len(w.Key) != envelope.AESGCMWrappedSize {
		return MatchNo
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	dk, err := envelope.UnwrapKeyAESGCM(k.kek.Bytes(), w.Key, envelope.ContentAESGCM)
	dk.Clear()
	if err == nil || errors.Is(err, envelope.ErrAlgorithmMismatch) {
		return MatchYes
	}
	return MatchNo
}

// Wrap wraps dek with S3EC AES/GCM. The material description is userDesc.
func (k *aesKeyring) Wrap(_ context.Context, dek *envelope.DataKey, cek envelope.ContentAlg, userDesc map[string]string) (Wrapped, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.kek.Len() == 0 {
		return Wrapped{}, &Error{Op: "aes wrap", Key: k.id, Code: CodeClosed, detail: "key cleared (Deps closed)", Systemic: true}
	}
	b, err := envelope.WrapKeyAESGCM(k.kek.Bytes(), dek, cek, rand.Reader)
	if err != nil {
		return Wrapped{}, localError("aes wrap", k.id, sideDest, err)
	}
	return Wrapped{Alg: envelope.WrapAESGCM, Key: b, MatDesc: UserEntries(userDesc)}, nil
}

// Unwrap unwraps S3EC AES/GCM.
func (k *aesKeyring) Unwrap(_ context.Context, w Wrapped, cek envelope.ContentAlg) (*envelope.DataKey, error) {
	if w.Alg != envelope.WrapAESGCM {
		return nil, newError("aes unwrap", k.id, CodeAlgorithmMismatch,
			fmt.Sprintf("the data key is wrapped with %s, not AES/GCM", quote(string(w.Alg))),
			"name the key the objects are wrapped under with --from")
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.kek.Len() == 0 {
		return nil, &Error{Op: "aes unwrap", Key: k.id, Code: CodeClosed, detail: "key cleared (Deps closed)", Systemic: true}
	}
	dk, err := envelope.UnwrapKeyAESGCM(k.kek.Bytes(), w.Key, cek)
	if err != nil {
		return nil, localError("aes unwrap", k.id, sideSource, err)
	}
	return dk, nil
}

// localError classifies an envelope error of a local wrap or unwrap.
func localError(op, key string, sd side, err error) *Error {
	e := &Error{Op: op, Key: key, Err: err, detail: err.Error(), Systemic: sd == sideDest}
	switch {
	case errors.Is(err, envelope.ErrAuthentication):
		e.Code = CodeAuthentication
		e.Hint = "the object is not wrapped under " + key + " (or its wrapped key was altered): leave it, or name its key with --from"
	case errors.Is(err, envelope.ErrAlgorithmMismatch):
		e.Code = CodeAlgorithmMismatch
		e.Hint = "the wrapped key is bound to another content algorithm than the envelope names: the metadata was altered"
	default:
		e.Code = CodeBadInput
	}
	return e
}

// rsaKeyring is a local RSA key: the S3EC raw RSA keyring's RSA-OAEP-SHA1
// wrapping. Without the private key it only wraps.
type rsaKeyring struct {
	id     string
	pub    *rsa.PublicKey
	mu     sync.RWMutex // guards priv and closed against clear
	priv   *rsa.PrivateKey
	closed bool
}

var (
	_ Keyring    = (*rsaKeyring)(nil)
	_ Recognizer = (*rsaKeyring)(nil)
)

// parseRSAKey reads one PEM block: PKCS#1 ("RSA PRIVATE KEY") or PKCS#8
// ("PRIVATE KEY") private key, or PKIX ("PUBLIC KEY") public key. Anything
// else, an encrypted key, or more than one block is refused.
func parseRSAKey(b []byte) (*rsa.PublicKey, *rsa.PrivateKey, error) {
	block, rest := pem.Decode(b)
	if block == nil {
		return nil, nil, errors.New("no PEM block")
	}
	defer clear(block.Bytes)
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, nil, errors.New("more than one PEM block (or text after it)")
	}
	if _, ok := block.Headers["Proc-Type"]; ok {
		return nil, nil, errors.New("an encrypted PEM key (decrypt it first: openssl pkey -in key.pem -out plain.pem)")
	}
	switch block.Type {
	case "RSA PRIVATE KEY":
		priv, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return nil, nil, errors.New("malformed PKCS#1 RSA private key")
		}
		return &priv.PublicKey, priv, nil
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, nil, errors.New("malformed PKCS#8 private key")
		}
		priv, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, nil, fmt.Errorf("a PKCS#8 %T, not an RSA key", k)
		}
		return &priv.PublicKey, priv, nil
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, nil, errors.New("malformed PKIX public key")
		}
		pub, ok := k.(*rsa.PublicKey)
		if !ok {
			return nil, nil, fmt.Errorf("a %T public key, not an RSA key", k)
		}
		return pub, nil, nil
	case "ENCRYPTED PRIVATE KEY":
		return nil, nil, errors.New("an encrypted PKCS#8 key (decrypt it first: openssl pkey -in key.pem -out plain.pem)")
	}
	return nil, nil, fmt.Errorf("a PEM block of type %s", quote(block.Type))
}

func openRSA(path string) (*rsaKeyring, error) {
	b, err := readKeyFile("open rsa key", path, maxRSAKeyFile)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	pub, priv, err := parseRSAKey(b)
	if err != nil {
		return nil, newError("open rsa key", "", CodeBadKeyFile, path+": "+err.Error(),
			"an RSA key file is one PEM block: a PKCS#1 or PKCS#8 private key (to unwrap and wrap), or a PKIX public key (to wrap only)")
	}
	if priv != nil {
		if err := priv.Validate(); err != nil {
			return nil, newError("open rsa key", "", CodeBadKeyFile, path+": invalid RSA private key", "")
		}
		priv.Precompute()
	}
	id, err := RSAKeyID(pub)
	if err != nil {
		return nil, newError("open rsa key", "", CodeBadKeyFile, path+": "+err.Error(), "")
	}
	return &rsaKeyring{id: id, pub: pub, priv: priv}, nil
}

func (k *rsaKeyring) clear() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.priv, k.closed = nil, true // big.Int internals cannot be zeroed reliably; drop the reference
}

// ID returns rsa:sha256:HEX (RSAKeyID).
func (k *rsaKeyring) ID() string { return k.id }

// Kind returns KindRSA.
func (k *rsaKeyring) Kind() Kind { return KindRSA }

// Recognize tries to decrypt (offline, about a millisecond) when the private
// key is there; a public key alone answers MatchUnknown for RSA-OAEP-SHA1
// wrapped keys of its size.
func (k *rsaKeyring) Recognize(w Wrapped) Match {
	if w.Alg != envelope.WrapRSAOAEPSHA1 || len(w.Key) != k.pub.Size() {
		return MatchNo
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.priv == nil {
		return MatchUnknown
	}
	dk, err := envelope.UnwrapKeyRSAOAEP(k.priv, w.Key, envelope.ContentAESGCM)
	dk.Clear()
	if err == nil || errors.Is(err, envelope.ErrAlgorithmMismatch) {
		return MatchYes
	}
	return MatchNo
}

// Wrap wraps dek with S3EC RSA-OAEP-SHA1. The material description is
// userDesc.
func (k *rsaKeyring) Wrap(_ context.Context, dek *envelope.DataKey, cek envelope.ContentAlg, userDesc map[string]string) (Wrapped, error) {
	if k.pub.N.BitLen() < minRSABits {
		return Wrapped{}, &Error{Op: "rsa wrap", Key: k.id, Code: CodeBadKeyFile, Systemic: true,
			detail: fmt.Sprintf("a %d-bit RSA key is too weak to wrap with (at least %d bits)", k.pub.N.BitLen(), minRSABits),
			Hint:   "make a new key: openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072"}
	}
	k.mu.RLock()
	closed := k.closed
	k.mu.RUnlock()
	if closed {
		return Wrapped{}, &Error{Op: "rsa wrap", Key: k.id, Code: CodeClosed, detail: "key dropped (Deps closed)", Systemic: true}
	}
	b, err := envelope.WrapKeyRSAOAEP(k.pub, dek, cek, rand.Reader)
	if err != nil {
		return Wrapped{}, localError("rsa wrap", k.id, sideDest, err)
	}
	return Wrapped{Alg: envelope.WrapRSAOAEPSHA1, Key: b, MatDesc: UserEntries(userDesc)}, nil
}

// Unwrap unwraps S3EC RSA-OAEP-SHA1 with the private key.
func (k *rsaKeyring) Unwrap(_ context.Context, w Wrapped, cek envelope.ContentAlg) (*envelope.DataKey, error) {
	if w.Alg != envelope.WrapRSAOAEPSHA1 {
		return nil, newError("rsa unwrap", k.id, CodeAlgorithmMismatch,
			fmt.Sprintf("the data key is wrapped with %s, not RSA-OAEP-SHA1", quote(string(w.Alg))),
			"name the key the objects are wrapped under with --from")
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.closed {
		return nil, &Error{Op: "rsa unwrap", Key: k.id, Code: CodeClosed, detail: "key dropped (Deps closed)", Systemic: true}
	}
	if k.priv == nil {
		return nil, &Error{Op: "rsa unwrap", Key: k.id, Code: CodeWrapOnly, Systemic: true,
			detail: "the key file holds only the public key",
			Hint:   "give the private key (PKCS#1 or PKCS#8 PEM) to unwrap"}
	}
	dk, err := envelope.UnwrapKeyRSAOAEP(k.priv, w.Key, cek)
	if err != nil {
		return nil, localError("rsa unwrap", k.id, sideSource, err)
	}
	return dk, nil
}
