package kmsserver

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"sort"
	"unicode/utf8"
)

// Ciphertext blob layout (all integers big-endian):
//
//	offset   size  field
//	0        2     magic "rk"
//	2        1     format version, 1
//	3        2     N, length of the key ARN
//	5        N     key ARN (UTF-8)
//	5+N      4     backing-key version, 1-based
//	9+N      12    AES-GCM nonce
//	21+N     L+16  AES-256-GCM ciphertext of the L plaintext bytes, tag appended
//
// The additional authenticated data is the header (bytes 0 to 9+N, that is
// everything before the nonce) followed by the canonical encryption context
// (see canonicalContext), so changing the ARN, the version or the context makes
// the tag check fail.
const (
	blobMagic      = "rk"
	blobFormat     = 1
	blobNonceSize  = 12
	blobTagSize    = 16
	blobMaxARN     = 2048
	blobFixedSize  = 2 + 1 + 2 + 4 + blobNonceSize + blobTagSize
	backingKeySize = 32
)

var errBadBlob = errors.New("malformed ciphertext blob")

// blob is a parsed ciphertext blob.
type blob struct {
	keyARN  string
	version uint32
	header  []byte // bytes before the nonce, part of the AAD
	nonce   []byte
	sealed  []byte // ciphertext || tag
}

// parseBlob splits a ciphertext blob into its fields without decrypting it.
// It never panics on any input; the returned slices alias b.
func parseBlob(b []byte) (blob, error) {
	if len(b) < blobFixedSize || string(b[:2]) != blobMagic || b[2] != blobFormat {
		return blob{}, errBadBlob
	}
	n := int(binary.BigEndian.Uint16(b[3:5]))
	if n == 0 || n > blobMaxARN || len(b) < blobFixedSize+n {
		return blob{}, errBadBlob
	}
	arn := b[5 : 5+n]
	if !utf8.Valid(arn) {
		return blob{}, errBadBlob
	}
	version := binary.BigEndian.Uint32(b[5+n : 9+n])
	if version == 0 {
		return blob{}, errBadBlob
	}
	return blob{
		keyARN:  string(arn),
		version: version,
		header:  b[:9+n],
		nonce:   b[9+n : 9+n+blobNonceSize],
		sealed:  b[9+n+blobNonceSize:],
	}, nil
}

// blobHeader encodes the fields before the nonce.
func blobHeader(keyARN string, version uint32) []byte {
	h := make([]byte, 0, 9+len(keyARN))
	h = append(h, blobMagic...)
	h = append(h, blobFormat)
	h = binary.BigEndian.AppendUint16(h, uint16(len(keyARN)))
	h = append(h, keyARN...)
	h = binary.BigEndian.AppendUint32(h, version)
	return h
}

// canonicalContext encodes an encryption context deterministically: the
// number of pairs, then each pair sorted by key as length-prefixed key and
// value (uint32 lengths).
func canonicalContext(ctx map[string]string) []byte {
	keys := make([]string, 0, len(ctx))
	for k := range ctx {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := binary.BigEndian.AppendUint32(nil, uint32(len(keys)))
	for _, k := range keys {
		out = binary.BigEndian.AppendUint32(out, uint32(len(k)))
		out = append(out, k...)
		out = binary.BigEndian.AppendUint32(out, uint32(len(ctx[k])))
		out = append(out, ctx[k]...)
	}
	return out
}

func newGCM(material []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(material)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal encrypts plaintext under one backing key and returns the blob.
func seal(keyARN string, version uint32, material, plaintext []byte, ctx map[string]string) ([]byte, error) {
	if len(keyARN) == 0 || len(keyARN) > blobMaxARN {
		return nil, errors.New("key arn length out of range")
	}
	aead, err := newGCM(material)
	if err != nil {
		return nil, err
	}
	header := blobHeader(keyARN, version)
	out := make([]byte, len(header), len(header)+blobNonceSize+len(plaintext)+blobTagSize)
	copy(out, header)
	nonce := make([]byte, blobNonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out = append(out, nonce...)
	aad := append(append([]byte(nil), header...), canonicalContext(ctx)...)
	return aead.Seal(out, nonce, plaintext, aad), nil
}

// open decrypts a parsed blob with the backing key it names.
func open(b blob, material []byte, ctx map[string]string) ([]byte, error) {
	aead, err := newGCM(material)
	if err != nil {
		return nil, err
	}
	aad := append(append([]byte(nil), b.header...), canonicalContext(ctx)...)
	return aead.Open(nil, b.nonce, b.sealed, aad)
}
