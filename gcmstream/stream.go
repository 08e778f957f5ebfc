package gcmstream

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Sizes of AES-GCM as the S3 Encryption Client uses it.
const (
	// BlockSize is the AES block size; segments start at multiples of it.
	BlockSize = 16
	// IVSize is the only IV (nonce) size accepted.
	IVSize = 12
	// TagSize is the size of the authentication tag.
	TagSize = 16
	// MaxLength is the longest plaintext (and ciphertext, without tag) one
	// GCM message may have: 2^39 - 256 bits, 2^36 - 32 bytes (64 GiB - 32),
	// because the 32-bit block counter starts at 2 for the first data block.
	MaxLength = 1<<36 - 32
)

const (
	// stdlibMin is the input size from which GHASH goes through the
	// standard library's AEAD (one call plus one multiplication) rather
	// than through mul block by block.
	stdlibMin = 128
	// fusedMin is the segment size from which SealSegment uses the fused
	// path (see sealFused).
	fusedMin = 256
	// openPiece is how much ciphertext OpenSegment hashes before decrypting
	// it, so the second pass reads from the CPU cache.
	openPiece = 32 << 10
)

// Stream is one AES-GCM message: a key, a 12-byte IV and the additional
// data. It encrypts, decrypts and hashes segments of the message at any
// 16-byte aligned offset, and turns their Partials into the tag. Its methods
// are safe for concurrent use; Close waits for calls in flight.
type Stream struct {
	mu     sync.RWMutex
	closed bool
	id     uint64 // creation order, the order in which to lock two Streams

	block cipher.Block
	// gcm is crypto/cipher's GCM: an empty plaintext with the data as AAD
	// yields GHASH of the data at hardware speed (ghashScaled).
	gcm cipher.AEAD
	// fused is GCM with 16-byte nonces, whose J0 can be steered to any
	// counter position (sealFused).
	fused cipher.AEAD
	// ckpt seals checkpoints under a key derived from the message key.
	ckpt cipher.AEAD

	iv      [IVSize]byte
	noFused bool // H = 0 (probability 2^-128): H has no inverse
	h       fieldElement
	pow     *powers
	hInv2   fieldElement // H^-2
	lenH16  fieldElement // lengthBlock(0, 16) * H, from the J0 of a 16-byte nonce
	tagMask fieldElement // E_K(J0), J0 = IV || 1
	aad     fieldElement // scaled GHASH of the AAD (see Partial)
	aadLen  uint64
	binding [sha256.Size]byte // SHA-256 of the IV and the AAD, bound into checkpoints
}

var streams atomic.Uint64

// New returns the Stream of the AES-GCM message with the given key (16, 24
// or 32 bytes), 12-byte IV and additional data (nil for none, as in the S3
// Encryption Client's V2 format). It keeps no copy of key; the caller may
// clear it once New returns.
//
// New fails where crypto/cipher.NewGCM fails, in particular under
// GODEBUG=fips140=only, which forbids GCM with caller-chosen IVs.
func New(key, iv, aad []byte) (*Stream, error) {
	switch len(key) {
	case 16, 24, 32:
	default:
		return nil, fmt.Errorf("%w: want 16, 24 or 32 bytes, got %d (hint: pass the plaintext data key, not the wrapped one)", ErrKeySize, len(key))
	}
	if len(iv) != IVSize {
		return nil, fmt.Errorf("%w: want %d bytes, got %d (hint: S3 Encryption Client content uses 12-byte IVs; other sizes are not supported)", ErrIVSize, IVSize, len(iv))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("gcmstream: aes: %w", err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("gcmstream: %w (hint: AES-GCM with the object's own IV is refused in this mode; run without GODEBUG=fips140=only)", err)
	}
	fused, err := cipher.NewGCMWithNonceSize(block, BlockSize)
	if err != nil {
		return nil, fmt.Errorf("gcmstream: %w", err)
	}
	s := &Stream{id: streams.Add(1), block: block, gcm: gcm, fused: fused, aadLen: uint64(len(aad))}
	copy(s.iv[:], iv)

	var b [BlockSize]byte
	block.Encrypt(b[:], b[:])
	s.h = loadElement(b[:])
	s.noFused = s.h == fieldElement{}
	s.pow = newPowers(s.h)
	s.hInv2 = invert(s.pow[1]) // H^2 is not 0 unless H is
	s.lenH16 = mul(lengthBlock(0, BlockSize), s.h)
	b = s.counterBlock(1)
	block.Encrypt(b[:], b[:])
	s.tagMask = loadElement(b[:])
	clear(b[:])
	scratch := make([]byte, 0, TagSize)
	s.aad = s.ghashScaled(aad, scratch)

	// Checkpoint key: AES_K of two blocks whose last 32 bits are zero. The
	// counter blocks of GCM messages with 12-byte IVs under K run from 1 to
	// 2^32 - 1, never 0, and neither block is all zero (that gives H).
	var ck [32]byte
	copy(ck[:12], "gcmstream-c1")
	copy(ck[16:28], "gcmstream-c2")
	block.Encrypt(ck[:16], ck[:16])
	block.Encrypt(ck[16:], ck[16:])
	cb, err := aes.NewCipher(ck[:])
	clear(ck[:])
	if err != nil {
		return nil, fmt.Errorf("gcmstream: checkpoint key: %w", err)
	}
	if s.ckpt, err = cipher.NewGCMWithRandomNonce(cb); err != nil {
		return nil, fmt.Errorf("gcmstream: checkpoint cipher: %w", err)
	}
	d := sha256.New()
	d.Write([]byte("gcmstream binding v1\x00"))
	d.Write(iv)
	d.Write(binary.BigEndian.AppendUint64(nil, uint64(len(aad))))
	d.Write(aad)
	d.Sum(s.binding[:0])
	return s, nil
}

// Close clears what the Stream holds of the key in memory it owns: H, its
// powers and inverse, the tag mask, the hash of the AAD. Every later call
// fails with ErrClosed. Close always returns nil; calling it twice is fine.
//
// Limits of the Go runtime: the AES key schedule inside crypto/aes and the
// GHASH tables inside crypto/cipher's GCM are unexported and cannot be
// cleared; Close drops the references so they become garbage, but the
// garbage collector does not zero freed memory, and copies may remain in
// stacks and registers. runtime/secret (GOEXPERIMENT=runtimesecret) is
// experimental and not used. Protect the process (no core dumps, no swap)
// rather than rely on Close.
func (s *Stream) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.pow != nil {
		clear(s.pow[:])
	}
	s.h, s.hInv2, s.lenH16, s.tagMask, s.aad = fieldElement{}, fieldElement{}, fieldElement{}, fieldElement{}, fieldElement{}
	s.block, s.gcm, s.fused, s.ckpt, s.pow = nil, nil, nil, nil, nil
	return nil
}

// counterBlock returns IV || c, c as a big-endian 32-bit integer. Data block
// k of the message is encrypted with counterBlock(k + 2).
func (s *Stream) counterBlock(c uint32) (b [BlockSize]byte) {
	copy(b[:], s.iv[:])
	binary.BigEndian.PutUint32(b[IVSize:], c)
	return b
}

// rlock takes the read lock and fails if the Stream is closed. Callers
// must call s.mu.RUnlock when it returns nil.
func (s *Stream) rlock(op string) error {
	if s == nil {
		return fmt.Errorf("%w: %s without a Stream (hint: create Streams with New and Hashers with Stream.NewHasher)", ErrClosed, op)
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return errClosed(op)
	}
	return nil
}

// checkSegment validates a segment of n bytes at offset.
func checkSegment(offset, n int64) error {
	if offset < 0 || offset%BlockSize != 0 {
		return errOffset(offset)
	}
	if end := uint64(offset) + uint64(n); end > MaxLength {
		return errTooLong(end)
	}
	return nil
}

// checkBuffers validates dst for a transformation of src.
func checkBuffers(dst, src []byte) error {
	if len(dst) < len(src) {
		return fmt.Errorf("%w: dst holds %d bytes, src %d (hint: make dst at least as long as src)", ErrBuffer, len(dst), len(src))
	}
	if inexactOverlap(dst[:len(src)], src) {
		return fmt.Errorf("%w: dst and src overlap without starting at the same address (hint: work in place with dst = src, or use separate buffers)", ErrBuffer)
	}
	return nil
}

// inexactOverlap reports whether x and y share memory at different
// positions (crypto/internal/alias.InexactOverlap).
func inexactOverlap(x, y []byte) bool {
	if len(x) == 0 || len(y) == 0 || &x[0] == &y[0] {
		return false
	}
	xs, ys := uintptr(unsafe.Pointer(&x[0])), uintptr(unsafe.Pointer(&y[0]))
	return xs <= ys+uintptr(len(y)-1) && ys <= xs+uintptr(len(x)-1)
}

// blocks returns the number of 16-byte blocks n bytes occupy.
func blocks(n int64) uint64 { return (uint64(n) + BlockSize - 1) / BlockSize }

// XORKeyStreamAt XORs src with the GCM keystream starting at byte offset of
// the message and writes the result to dst: it encrypts plaintext and
// decrypts ciphertext alike. offset must be a multiple of 16. dst must be at
// least as long as src and may be src itself. It authenticates nothing;
// see OpenSegment and SealSegment.
func (s *Stream) XORKeyStreamAt(dst, src []byte, offset int64) error {
	if err := checkSegment(offset, int64(len(src))); err != nil {
		return err
	}
	if err := checkBuffers(dst, src); err != nil {
		return err
	}
	if err := s.rlock("XORKeyStreamAt"); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	s.xorKeyStream(dst, src, uint64(offset)/BlockSize)
	return nil
}

// xorKeyStream XORs src with the keystream from data block k on.
func (s *Stream) xorKeyStream(dst, src []byte, k uint64) {
	if len(src) == 0 {
		return
	}
	ctr := s.counterBlock(uint32(k + 2))
	if len(src) >= 4*BlockSize {
		cipher.NewCTR(s.block, ctr[:]).XORKeyStream(dst, src)
		return
	}
	// Short: a few blocks without the allocation of NewCTR. No carry
	// leaves the low 32 bits within MaxLength.
	var ks [BlockSize]byte
	c := binary.BigEndian.Uint32(ctr[IVSize:])
	for len(src) > 0 {
		binary.BigEndian.PutUint32(ctr[IVSize:], c)
		s.block.Encrypt(ks[:], ctr[:])
		n := subtle.XORBytes(dst, src, ks[:])
		dst, src = dst[n:], src[n:]
		c++
	}
	clear(ks[:])
}

// ghashScaled returns GHASH_H(x) * H, x zero-padded to whole blocks (the
// scaled form kept in Partial). From stdlibMin bytes on it asks
// crypto/cipher, whose GHASH uses carry-less multiplication instructions
// where the CPU has them: sealing an empty plaintext with x as AAD yields
//
//	tag = E_K(J0) ^ (GHASH_H(x) ^ L) * H,  L = lengthBlock(len(x), 0)
//
// so GHASH_H(x) * H = tag ^ E_K(J0) ^ L*H. That tag is internal and never
// leaves the Stream. scratch must have a capacity of at least 16 bytes.
func (s *Stream) ghashScaled(x, scratch []byte) fieldElement {
	if len(x) == 0 {
		return fieldElement{}
	}
	if len(x) < stdlibMin {
		return mul(ghashBlocks(s.h, fieldElement{}, x), s.h)
	}
	tag := s.gcm.Seal(scratch[:0], s.iv[:], nil, x)
	return loadElement(tag).xor(s.tagMask).xor(mul(lengthBlock(uint64(len(x)), 0), s.h))
}

// sealFused encrypts plaintext (at least 32 bytes) as data blocks k, k+1,
// ... into dst and returns the scaled GHASH of the ciphertext, in one pass
// of crypto/cipher's GCM (counter mode and GHASH interleaved in assembly).
//
// GCM derives J0 from a 16-byte nonce N as GHASH_H(N || L16) = N*H^2 ^
// L16*H, so the nonce N = (J0' ^ L16*H) * H^-2 makes it start at J0' = IV ||
// (k+1), whose successors are exactly the counter blocks of data blocks k,
// k+1, ...: the ciphertext is the message's. The chunk's own tag is then
// E_K(J0') ^ (GHASH_H(C) ^ L) * H with L = lengthBlock(0, len(C)), which
// gives GHASH_H(C) * H. Sealing appends the tag after the ciphertext, so the
// last 16 to 31 bytes of the segment are encrypted separately to keep the
// tag inside dst's part of the buffer.
func (s *Stream) sealFused(dst, plaintext []byte, k uint64, scratch []byte) fieldElement {
	n := len(plaintext)
	head := (n - BlockSize) &^ (BlockSize - 1) // n - head is 16..31
	var tail [2 * BlockSize]byte
	copy(tail[:], plaintext[head:]) // before Seal writes its tag over it when in place
	j0 := s.counterBlock(uint32(k + 1))
	nonce := mul(loadElement(j0[:]).xor(s.lenH16), s.hInv2).bytes()
	out := s.fused.Seal(dst[:0], nonce[:], plaintext[:head], nil)
	tag := loadElement(out[head:])
	s.block.Encrypt(j0[:], j0[:])
	q := tag.xor(loadElement(j0[:])).xor(mul(lengthBlock(0, uint64(head)), s.h))
	clear(j0[:])

	s.xorKeyStream(dst[head:n], tail[:n-head], k+uint64(head)/BlockSize)
	clear(tail[:])
	return s.pow.mulPow(q, blocks(int64(n-head))).xor(s.ghashScaled(dst[head:n], scratch))
}

// SealSegment encrypts plaintext as the segment of the message starting at
// byte offset (a multiple of 16) into dst and returns the segment's Partial.
// dst must be at least as long as plaintext and may be plaintext itself.
// Only the last segment of a message may have a length that is not a
// multiple of 16.
func (s *Stream) SealSegment(dst, plaintext []byte, offset int64) (Partial, error) {
	if err := checkSegment(offset, int64(len(plaintext))); err != nil {
		return Partial{}, err
	}
	if err := checkBuffers(dst, plaintext); err != nil {
		return Partial{}, err
	}
	if err := s.rlock("SealSegment"); err != nil {
		return Partial{}, err
	}
	defer s.mu.RUnlock()
	return s.sealSegment(dst, plaintext, offset, make([]byte, 0, TagSize)), nil
}

func (s *Stream) sealSegment(dst, plaintext []byte, offset int64, scratch []byte) Partial {
	k := uint64(offset) / BlockSize
	dst = dst[:len(plaintext)]
	var q fieldElement
	if len(plaintext) < fusedMin || s.noFused {
		s.xorKeyStream(dst, plaintext, k)
		q = s.ghashScaled(dst, scratch)
	} else {
		q = s.sealFused(dst, plaintext, k, scratch)
	}
	return Partial{s: s, off: offset, n: int64(len(plaintext)), q: q}
}

// OpenSegment hashes ciphertext as the segment of the message starting at
// byte offset (a multiple of 16), decrypts it into dst and returns the
// segment's Partial. dst must be at least as long as ciphertext and may be
// ciphertext itself.
//
// The plaintext is unauthenticated until the tag of the whole message
// verifies (Stream.Verify over the Combine of every segment's Partial):
// nothing derived from it may be committed, uploaded or acted on before.
func (s *Stream) OpenSegment(dst, ciphertext []byte, offset int64) (Partial, error) {
	if err := checkSegment(offset, int64(len(ciphertext))); err != nil {
		return Partial{}, err
	}
	if err := checkBuffers(dst, ciphertext); err != nil {
		return Partial{}, err
	}
	if err := s.rlock("OpenSegment"); err != nil {
		return Partial{}, err
	}
	defer s.mu.RUnlock()
	return s.openSegment(dst, ciphertext, offset, make([]byte, 0, TagSize)), nil
}

func (s *Stream) openSegment(dst, ciphertext []byte, offset int64, scratch []byte) Partial {
	k := uint64(offset) / BlockSize
	n := len(ciphertext)
	if n < 4*BlockSize {
		q := s.ghashScaled(ciphertext, scratch)
		s.xorKeyStream(dst, ciphertext, k)
		return Partial{s: s, off: offset, n: int64(n), q: q}
	}
	// Hash a piece, then decrypt it while it is still in cache: hashing
	// first keeps decryption in place correct.
	ctrBlock := s.counterBlock(uint32(k + 2))
	ctr := cipher.NewCTR(s.block, ctrBlock[:])
	var q fieldElement
	for lo := 0; lo < n; lo += openPiece {
		hi := min(lo+openPiece, n)
		q = s.pow.mulPow(q, blocks(int64(hi-lo))).xor(s.ghashScaled(ciphertext[lo:hi], scratch))
		ctr.XORKeyStream(dst[lo:hi], ciphertext[lo:hi])
	}
	return Partial{s: s, off: offset, n: int64(n), q: q}
}

// GHASHSegment hashes ciphertext as the segment of the message starting at
// byte offset (a multiple of 16) and returns its Partial, without
// decrypting: for verifying a stored object before reading it again, or
// for ciphertext encrypted by XORKeyStreamAt.
func (s *Stream) GHASHSegment(ciphertext []byte, offset int64) (Partial, error) {
	if err := checkSegment(offset, int64(len(ciphertext))); err != nil {
		return Partial{}, err
	}
	if err := s.rlock("GHASHSegment"); err != nil {
		return Partial{}, err
	}
	defer s.mu.RUnlock()
	q := s.ghashScaled(ciphertext, make([]byte, 0, TagSize))
	return Partial{s: s, off: offset, n: int64(len(ciphertext)), q: q}, nil
}

// Combine returns the Partial of the union of parts, which must come from
// this Stream and, in any order, cover one contiguous range in which every
// segment but the last has a length that is a multiple of 16. Empty parts
// are ignored; Combine of nothing is the empty Partial at offset 0.
func (s *Stream) Combine(parts ...Partial) (Partial, error) {
	sorted := make([]Partial, 0, len(parts))
	for _, p := range parts {
		if p.n == 0 {
			continue
		}
		if p.s != s {
			return Partial{}, fmt.Errorf("%w: partial [%d, %d) was computed by another Stream (hint: combine only the partials of one message, with the Stream that made them or unmarshaled them)", ErrPartials, p.off, p.End())
		}
		sorted = append(sorted, p)
	}
	if len(sorted) == 0 {
		return Partial{}, nil
	}
	slices.SortFunc(sorted, func(a, b Partial) int {
		switch {
		case a.off < b.off:
			return -1
		case a.off > b.off:
			return 1
		}
		return 0
	})
	if err := s.rlock("Combine"); err != nil {
		return Partial{}, err
	}
	defer s.mu.RUnlock()
	acc := sorted[0]
	for _, p := range sorted[1:] {
		var err error
		if acc, err = s.appendPartial(acc, p); err != nil {
			return Partial{}, err
		}
	}
	return acc, nil
}

// appendPartial returns the Partial of a followed by b.
func (s *Stream) appendPartial(a, b Partial) (Partial, error) {
	if a.n%BlockSize != 0 {
		return Partial{}, fmt.Errorf("%w: segment [%d, %d) is followed by [%d, %d) but its length is not a multiple of 16 (hint: only the last segment of a message may end unaligned)", ErrPartials, a.off, a.End(), b.off, b.End())
	}
	if b.off != a.End() {
		return Partial{}, fmt.Errorf("%w: segment [%d, %d) is followed by [%d, %d) (hint: a segment is missing or given twice)", ErrPartials, a.off, a.End(), b.off, b.End())
	}
	a.q = s.pow.mulPow(a.q, blocks(b.n)).xor(b.q)
	a.n += b.n
	return a, nil
}

// Tag returns the authentication tag of the message whose ciphertext total
// covers entirely: total must start at offset 0 and its length is the
// ciphertext length.
func (s *Stream) Tag(total Partial) ([TagSize]byte, error) {
	if total.n != 0 && total.s != s {
		return [TagSize]byte{}, fmt.Errorf("%w: the partial was computed by another Stream (hint: tag with the Stream that made it)", ErrPartials)
	}
	if total.off != 0 {
		return [TagSize]byte{}, fmt.Errorf("%w: the partial covers [%d, %d), not the message from offset 0 (hint: Combine the partials of every segment first)", ErrPartials, total.off, total.End())
	}
	if err := s.rlock("Tag"); err != nil {
		return [TagSize]byte{}, err
	}
	defer s.mu.RUnlock()
	return s.tag(total.q, uint64(total.n)).bytes(), nil
}

// tag is E_K(J0) ^ (GHASH(A, C) ^ L) * H where GHASH(A, C) * H = aad *
// H^blocks(C) ^ q.
func (s *Stream) tag(q fieldElement, n uint64) fieldElement {
	sum := s.pow.mulPow(s.aad, blocks(int64(n))).xor(q)
	return s.tagMask.xor(sum).xor(mul(lengthBlock(s.aadLen, n), s.h))
}

// Verify checks in constant time that tag is the tag of the message whose
// ciphertext total covers entirely (see Tag). It returns nil or an error
// wrapping ErrAuthentication (also for a tag that is not 16 bytes long).
// Plaintext produced before Verify returned nil must be discarded when it
// fails.
func (s *Stream) Verify(total Partial, tag []byte) error {
	want, err := s.Tag(total)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(want[:], tag) != 1 {
		return errAuth(len(tag))
	}
	return nil
}

func errAuth(tagLen int) error {
	if tagLen != TagSize {
		return fmt.Errorf("%w: tag is %d bytes, want %d (hint: the object is truncated or the tag length is wrong; discard any plaintext already produced)", ErrAuthentication, tagLen, TagSize)
	}
	return fmt.Errorf("%w: tag does not match (hint: wrong data key, IV or AAD, or altered ciphertext; discard any plaintext already produced)", ErrAuthentication)
}
