package gcmstream

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

// one is the multiplicative identity of GF(2^128) in GCM's bit order.
var one = fieldElement{1 << 63, 0}

// newRand returns a deterministic generator for test t (seeded by its name)
// so failures reproduce.
func newRand(t testing.TB) *rand.Rand {
	var seed [32]byte
	copy(seed[:], t.Name())
	return rand.New(rand.NewChaCha8(seed))
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], r.Uint64())
		copy(b[i:], w[:])
	}
	return b
}

func randElement(r *rand.Rand) fieldElement { return fieldElement{r.Uint64(), r.Uint64()} }

// stdGCM returns crypto/cipher's AES-GCM for key.
func stdGCM(t testing.TB, key []byte) cipher.AEAD {
	t.Helper()
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

// message is one random AES-GCM message and its reference encryption.
type message struct {
	key, iv, aad, plaintext, sealed []byte
}

func (m *message) ciphertext() []byte { return m.sealed[:len(m.plaintext)] }
func (m *message) tag() []byte        { return m.sealed[len(m.plaintext):] }

func newMessage(t testing.TB, r *rand.Rand, keyLen, aadLen, n int) *message {
	t.Helper()
	m := &message{
		key:       randBytes(r, keyLen),
		iv:        randBytes(r, IVSize),
		plaintext: randBytes(r, n),
	}
	if aadLen >= 0 {
		m.aad = randBytes(r, aadLen)
	}
	m.sealed = stdGCM(t, m.key).Seal(nil, m.iv, m.plaintext, m.aad)
	return m
}

func (m *message) stream(t testing.TB) *Stream {
	t.Helper()
	s, err := New(m.key, m.iv, m.aad)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// randomCuts returns sorted segment boundaries 0 = c0 < c1 < ... < n, all
// multiples of 16 but the last.
func randomCuts(r *rand.Rand, n, segments int) []int {
	cuts := []int{0}
	for range segments - 1 {
		if n < 32 {
			break
		}
		cuts = append(cuts, r.IntN(n/16)*16)
	}
	cuts = append(cuts, n)
	// sort and dedupe
	for i := 1; i < len(cuts); i++ {
		for j := i; j > 0 && cuts[j] < cuts[j-1]; j-- {
			cuts[j], cuts[j-1] = cuts[j-1], cuts[j]
		}
	}
	out := cuts[:1]
	for _, c := range cuts[1:] {
		if c != out[len(out)-1] {
			out = append(out, c)
		}
	}
	if len(out) == 1 { // n == 0
		out = append(out, 0)
	}
	return out
}

// wantErr fails t unless err wraps target and its message has the package
// prefix and a hint.
func wantErr(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want %v", err, target)
	}
	if !strings.HasPrefix(err.Error(), "gcmstream: ") {
		t.Errorf("error without prefix: %q", err)
	}
	if target != ErrAuthentication && !strings.Contains(err.Error(), "hint: ") {
		t.Errorf("error without hint: %q", err)
	}
}

// stdLengths are the message lengths every differential test covers.
var stdLengths = []int{0, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257, 4095, 4096, 4097, 65536 + 7, 5<<20 - 1, 5<<20 + 1}
