package envelope

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha512"
	"crypto/subtle"
	"fmt"
	"io"
)

// v3Suite is suite 115 as the two big-endian bytes used in the HKDF info
// strings and as the content AAD.
var v3Suite = [2]byte{0x00, 0x73}

const (
	deriveKeyLabel = "DERIVEKEY"
	commitKeyLabel = "COMMITKEY"
)

// MaxGCMPlaintext is the largest plaintext one AES-GCM message can protect
// (2^36 - 32 bytes).
const MaxGCMPlaintext = 1<<36 - 32

// V3ContentIV returns the fixed AES-GCM nonce of suite 115: twelve 0x01
// bytes (the message ID, not the nonce, makes each content key unique).
func V3ContentIV() []byte {
	return []byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}
}

// V3ContentAAD returns the AES-GCM additional data of suite 115: 0x00 0x73.
func V3ContentAAD() []byte { return []byte{v3Suite[0], v3Suite[1]} }

// ContentIV returns the nonce the content cipher uses: x-amz-iv for V1/V2,
// V3ContentIV for V3.
func (e *Envelope) ContentIV() []byte {
	if e.Format == V3 {
		return V3ContentIV()
	}
	return cloneBytes(e.IV)
}

// ContentAAD returns the content cipher's additional data: nil for V1/V2,
// V3ContentAAD for V3.
func (e *Envelope) ContentAAD() []byte {
	if e.Format == V3 {
		return V3ContentAAD()
	}
	return nil
}

// DeriveV3 derives the suite 115 content key and key commitment from a data
// key and a message ID:
//
//	PRK        = HKDF-Extract(SHA-512, salt = messageID, ikm = dataKey)
//	contentKey = HKDF-Expand(PRK, 0x00 0x73 || "DERIVEKEY", 32)
//	commitment = HKDF-Expand(PRK, 0x00 0x73 || "COMMITKEY", 28)
func DeriveV3(dataKey *DataKey, messageID []byte) (contentKey *DataKey, commitment []byte, err error) {
	if dataKey.Len() != DataKeySize {
		return nil, nil, ferr("data key", ErrBadKeyLength, fmt.Sprintf("want %d bytes, got %d", DataKeySize, dataKey.Len()))
	}
	if len(messageID) != MessageIDSize {
		return nil, nil, ferr(FieldV3MessageID, ErrBadIVLength, fmt.Sprintf("want %d bytes, got %d", MessageIDSize, len(messageID)))
	}
	prk, err := hkdf.Extract(sha512.New, dataKey.Bytes(), messageID)
	if err != nil {
		return nil, nil, fmt.Errorf("envelope: hkdf extract: %w", err)
	}
	defer clear(prk)
	commitment, err = hkdf.Expand(sha512.New, prk, string(v3Suite[:])+commitKeyLabel, CommitmentSize)
	if err != nil {
		return nil, nil, fmt.Errorf("envelope: hkdf expand: %w", err)
	}
	ck, err := hkdf.Expand(sha512.New, prk, string(v3Suite[:])+deriveKeyLabel, DataKeySize)
	if err != nil {
		return nil, nil, fmt.Errorf("envelope: hkdf expand: %w", err)
	}
	return &DataKey{b: ck}, commitment, nil
}

// ContentKey returns the key the content cipher uses. For V1/V2 it is a copy
// of the data key. For V3 it is derived with DeriveV3, after checking in
// constant time that the derived commitment equals x-amz-d
// (ErrCommitmentMismatch): no content may be decrypted before that check.
func (e *Envelope) ContentKey(dataKey *DataKey) (*DataKey, error) {
	if dataKey.Len() != DataKeySize {
		return nil, ferr("data key", ErrBadKeyLength, fmt.Sprintf("want %d bytes, got %d", DataKeySize, dataKey.Len()))
	}
	if e.Format != V3 {
		return NewDataKey(dataKey.Bytes()), nil
	}
	if len(e.KeyCommitment) != CommitmentSize {
		return nil, ferr(FieldV3Commitment, ErrBadKeyLength, fmt.Sprintf("want %d bytes of key commitment, got %d", CommitmentSize, len(e.KeyCommitment)))
	}
	ck, commitment, err := DeriveV3(dataKey, e.MessageID)
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(commitment, e.KeyCommitment) != 1 {
		ck.Clear()
		return nil, ferr(FieldV3Commitment, ErrCommitmentMismatch,
			"derived key commitment does not match the stored one (wrong data key or altered metadata)")
	}
	return ck, nil
}

// DecryptContent decrypts a whole object body held in memory: AES-256-GCM
// for V2 (tag appended, no AAD) and V3 (derived key, fixed nonce, AAD 0x00
// 0x73, commitment checked first), AES-256-CBC/PKCS#5 for legacy content.
func DecryptContent(env *Envelope, dataKey *DataKey, ciphertext []byte) ([]byte, error) {
	key, err := env.ContentKey(dataKey)
	if err != nil {
		return nil, err
	}
	defer key.Clear()
	switch {
	case env.Format == V3 && env.CEKAlg == ContentCommitKey,
		env.Format == V2 && env.CEKAlg == ContentAESGCM:
		return gcmOpen(key.Bytes(), env.ContentIV(), ciphertext, env.ContentAAD())
	case (env.Format == V1 || env.Format == V2) && env.CEKAlg == ContentAESCBC:
		return cbcDecrypt(key.Bytes(), env.IV, ciphertext)
	}
	return nil, ferr(env.cekField(), ErrUnknownAlgorithm, fmt.Sprintf("cannot decrypt %v content with %q", env.Format, truncate(string(env.CEKAlg), 40)))
}

// NewContent returns the envelope of a new message of plaintextLen bytes
// under dataKey, for content encrypted by the caller (in segments, for
// example): V2 gets a random 12-byte IV and UnencryptedContentLength =
// plaintextLen, V3 a random non-zero 28-byte message ID and the key
// commitment derived from dataKey. The envelope has no wrapping yet (set it
// with WithWrappedKey); ContentKey, ContentIV and ContentAAD give what the
// content cipher needs. V1 (AES/CBC) is never written.
func NewContent(format Format, dataKey *DataKey, plaintextLen int64, rand io.Reader) (*Envelope, error) {
	if plaintextLen < 0 || plaintextLen > MaxGCMPlaintext {
		return nil, ferr("content", ErrBadContentLength, fmt.Sprintf("%d bytes: AES-GCM protects 0 to %d", plaintextLen, int64(MaxGCMPlaintext)))
	}
	if dataKey.Len() != DataKeySize {
		return nil, ferr("data key", ErrBadKeyLength, fmt.Sprintf("want %d bytes, got %d", DataKeySize, dataKey.Len()))
	}
	switch format {
	case V2:
		iv := make([]byte, GCMIVSize)
		if _, err := io.ReadFull(rand, iv); err != nil {
			return nil, fmt.Errorf("envelope: generate IV: %w", err)
		}
		return &Envelope{Format: V2, CEKAlg: ContentAESGCM, IV: iv, TagLenBits: TagLenBits,
			UnencryptedContentLength: plaintextLen, MatDesc: map[string]string{}}, nil
	case V3:
		id, err := nonZeroRandom(rand, MessageIDSize)
		if err != nil {
			return nil, err
		}
		ck, commitment, err := DeriveV3(dataKey, id)
		if err != nil {
			return nil, err
		}
		ck.Clear()
		return &Envelope{Format: V3, CEKAlg: ContentCommitKey, MessageID: id, KeyCommitment: commitment,
			UnencryptedContentLength: -1, MatDesc: map[string]string{}}, nil
	case V1:
		return nil, ferr("format", ErrReadOnly, "V1 (AES/CBC) content is never written")
	default:
		return nil, ferr("format", ErrUnknownAlgorithm, fmt.Sprintf("unknown format %v", format))
	}
}

// EncryptContent encrypts a whole object body held in memory as the official
// Go client does: V2 with AES-256-GCM under a random 12-byte IV, V3 with
// suite 115 under a random non-zero 28-byte message ID (see NewContent). The
// returned envelope has no wrapping yet (set it with WithWrappedKey); its
// UnencryptedContentLength is len(plaintext) for V2 and -1 for V3 (the Go
// client writes it empty).
func EncryptContent(format Format, dataKey *DataKey, plaintext []byte, rand io.Reader) (*Envelope, []byte, error) {
	e, err := NewContent(format, dataKey, int64(len(plaintext)), rand)
	if err != nil {
		return nil, nil, err
	}
	key, err := e.ContentKey(dataKey)
	if err != nil {
		return nil, nil, err
	}
	defer key.Clear()
	ct, err := gcmSeal(key.Bytes(), e.ContentIV(), plaintext, e.ContentAAD())
	if err != nil {
		return nil, nil, err
	}
	return e, ct, nil
}

// nonZeroRandom reads n random bytes, retrying (as the Go client does) if
// they are all zero.
func nonZeroRandom(rand io.Reader, n int) ([]byte, error) {
	b := make([]byte, n)
	for range 3 {
		if _, err := io.ReadFull(rand, b); err != nil {
			return nil, fmt.Errorf("envelope: generate message ID: %w", err)
		}
		for _, c := range b {
			if c != 0 {
				return b, nil
			}
		}
	}
	return nil, fmt.Errorf("envelope: generate message ID: random source returned only zeros")
}

// newGCM returns AES-GCM with a 12-byte nonce and 16-byte tag for a 16-, 24-
// or 32-byte key.
func newGCM(key []byte) (cipher.AEAD, error) {
	switch len(key) {
	case 16, 24, 32:
	default:
		return nil, ferr("key", ErrBadKeyLength, fmt.Sprintf("AES key: want 16, 24 or 32 bytes, got %d", len(key)))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("envelope: %w", err)
	}
	return cipher.NewGCM(block)
}

// gcmSeal returns AES-GCM(key, iv, plaintext, aad) with the tag appended.
func gcmSeal(key, iv, plaintext, aad []byte) ([]byte, error) {
	if len(iv) != GCMIVSize {
		return nil, ferr("iv", ErrBadIVLength, fmt.Sprintf("want %d bytes, got %d", GCMIVSize, len(iv)))
	}
	if len(plaintext) > MaxGCMPlaintext {
		return nil, ferr("content", ErrBadContentLength, "too long for AES-GCM")
	}
	g, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	return g.Seal(make([]byte, 0, len(plaintext)+TagSize), iv, plaintext, aad), nil
}

// gcmOpen authenticates and decrypts ciphertext||tag.
func gcmOpen(key, iv, ciphertext, aad []byte) ([]byte, error) {
	if len(iv) != GCMIVSize {
		return nil, ferr("iv", ErrBadIVLength, fmt.Sprintf("want %d bytes, got %d", GCMIVSize, len(iv)))
	}
	if len(ciphertext) < TagSize {
		return nil, ferr("content", ErrAuthentication, fmt.Sprintf("%d bytes is shorter than the %d-byte GCM tag", len(ciphertext), TagSize))
	}
	g, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	pt, err := g.Open(make([]byte, 0, len(ciphertext)-TagSize), iv, ciphertext, aad)
	if err != nil {
		return nil, ferr("content", ErrAuthentication, "AES-GCM tag mismatch (wrong data key or altered content)")
	}
	return pt, nil
}

// cbcDecrypt decrypts legacy AES-CBC content and removes PKCS#5 padding,
// checking the padding without data-dependent branches.
func cbcDecrypt(key, iv, ciphertext []byte) ([]byte, error) {
	if len(iv) != CBCIVSize {
		return nil, ferr(FieldIV, ErrBadIVLength, fmt.Sprintf("want %d bytes, got %d", CBCIVSize, len(iv)))
	}
	if len(ciphertext) == 0 || len(ciphertext)%aes.BlockSize != 0 {
		return nil, ferr("content", ErrBadPadding, fmt.Sprintf("AES-CBC content of %d bytes is not a positive multiple of %d", len(ciphertext), aes.BlockSize))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, ferr("data key", ErrBadKeyLength, err.Error())
	}
	pt := make([]byte, len(ciphertext))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(pt, ciphertext)
	n, ok := pkcs5Unpad(pt)
	if !ok {
		clear(pt)
		return nil, ferr("content", ErrBadPadding, "bad PKCS#5 padding (wrong data key or altered content)")
	}
	return pt[:n], nil
}

// pkcs5Unpad returns the unpadded length of b (len(b) a non-zero multiple
// of 16) and whether the padding is valid, in constant time.
func pkcs5Unpad(b []byte) (int, bool) {
	pad := int(b[len(b)-1])
	good := subtle.ConstantTimeLessOrEq(1, pad) & subtle.ConstantTimeLessOrEq(pad, aes.BlockSize)
	for i := 1; i <= aes.BlockSize; i++ {
		inPad := subtle.ConstantTimeLessOrEq(i, pad)
		eq := subtle.ConstantTimeByteEq(b[len(b)-i], byte(pad))
		good &= subtle.ConstantTimeSelect(inPad, eq, 1)
	}
	return len(b) - subtle.ConstantTimeSelect(good, pad, 0), good == 1
}
