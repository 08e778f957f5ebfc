package gcmstream

import (
	"encoding/binary"
	"math/bits"
)

// fieldElement is an element of GF(2^128) in GCM's bit order: hi holds bytes
// 0-7 and lo bytes 8-15 of the 16-byte block, big-endian, so the most
// significant bit of hi is the coefficient of x^0 and the least significant
// bit of lo the coefficient of x^127. The field polynomial is
// x^128 + x^7 + x^2 + x + 1.
type fieldElement struct{ hi, lo uint64 }

func loadElement(b []byte) fieldElement {
	return fieldElement{binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])}
}

func (x fieldElement) put(b []byte) {
	binary.BigEndian.PutUint64(b, x.hi)
	binary.BigEndian.PutUint64(b[8:], x.lo)
}

func (x fieldElement) bytes() (b [16]byte) {
	x.put(b[:])
	return b
}

func (x fieldElement) xor(y fieldElement) fieldElement {
	return fieldElement{x.hi ^ y.hi, x.lo ^ y.lo}
}

// lengthBlock returns GCM's final GHASH block: the bit lengths of the
// additional data and of the ciphertext as two big-endian 64-bit integers.
func lengthBlock(aadBytes, ciphertextBytes uint64) fieldElement {
	return fieldElement{aadBytes * 8, ciphertextBytes * 8}
}

// bmul64 returns the low 64 bits of the carry-less product of x and y in
// constant time, with integer multiplications whose carries fall into the
// holes of the masks (BearSSL's ghash_ctmul64). Integer multiplication has a
// data-independent latency on every CPU Go supports for this module.
func bmul64(x, y uint64) uint64 {
	const m0, m1, m2, m3 = 0x1111111111111111, 0x2222222222222222, 0x4444444444444444, 0x8888888888888888
	x0, x1, x2, x3 := x&m0, x&m1, x&m2, x&m3
	y0, y1, y2, y3 := y&m0, y&m1, y&m2, y&m3
	z0 := (x0 * y0) ^ (x1 * y3) ^ (x2 * y2) ^ (x3 * y1)
	z1 := (x0 * y1) ^ (x1 * y0) ^ (x2 * y3) ^ (x3 * y2)
	z2 := (x0 * y2) ^ (x1 * y1) ^ (x2 * y0) ^ (x3 * y3)
	z3 := (x0 * y3) ^ (x1 * y2) ^ (x2 * y1) ^ (x3 * y0)
	return z0&m0 | z1&m1 | z2&m2 | z3&m3
}

// mul returns x*y in GF(2^128) in constant time (Karatsuba over bmul64, the
// high halves obtained by bit reversal, then reduction; BearSSL's
// ghash_ctmul64). It costs about 40 ns and serves every multiplication the
// package makes itself: combining, powers of H, short tails.
func mul(x, y fieldElement) fieldElement {
	x1, x0 := x.hi, x.lo
	y1, y0 := y.hi, y.lo
	x0r, x1r := bits.Reverse64(x0), bits.Reverse64(x1)
	y0r, y1r := bits.Reverse64(y0), bits.Reverse64(y1)
	x2, x2r := x0^x1, x0r^x1r
	y2, y2r := y0^y1, y0r^y1r

	z0 := bmul64(x0, y0)
	z1 := bmul64(x1, y1)
	z2 := bmul64(x2, y2)
	z0h := bmul64(x0r, y0r)
	z1h := bmul64(x1r, y1r)
	z2h := bmul64(x2r, y2r)
	z2 ^= z0 ^ z1
	z2h ^= z0h ^ z1h
	z0h = bits.Reverse64(z0h) >> 1
	z1h = bits.Reverse64(z1h) >> 1
	z2h = bits.Reverse64(z2h) >> 1

	v0 := z0
	v1 := z0h ^ z2
	v2 := z1 ^ z2h
	v3 := z1h
	v3 = v3<<1 | v2>>63
	v2 = v2<<1 | v1>>63
	v1 = v1<<1 | v0>>63
	v0 <<= 1
	v2 ^= v0 ^ v0>>1 ^ v0>>2 ^ v0>>7
	v1 ^= v0<<63 ^ v0<<62 ^ v0<<57
	v3 ^= v1 ^ v1>>1 ^ v1>>2 ^ v1>>7
	v2 ^= v1<<63 ^ v1<<62 ^ v1<<57
	return fieldElement{v3, v2}
}

// ghashBlocks folds data into y the way GHASH does, one block at a time:
// y = (y ^ X_i) * h, the last block zero-padded. It is the constant-time
// path for short inputs; bulk data goes through the standard library (see
// Stream.ghashScaled).
func ghashBlocks(h, y fieldElement, data []byte) fieldElement {
	for len(data) >= 16 {
		y = mul(y.xor(loadElement(data)), h)
		data = data[16:]
	}
	if len(data) > 0 {
		var last [16]byte
		copy(last[:], data)
		y = mul(y.xor(loadElement(last[:])), h)
	}
	return y
}

// powers holds H^(2^i) for i = 0..maxBlockBits, enough to raise H to any
// block count a GCM message can have.
type powers [maxBlockBits + 1]fieldElement

// maxBlockBits is the number of bits of the largest block count of one
// message, 2^32 - 2.
const maxBlockBits = 32

func newPowers(h fieldElement) *powers {
	var p powers
	p[0] = h
	for i := 1; i < len(p); i++ {
		p[i] = mul(p[i-1], p[i-1])
	}
	return &p
}

// mulPow returns x * H^n. n is a public block count: the number of
// multiplications (its popcount) depends only on it.
func (p *powers) mulPow(x fieldElement, n uint64) fieldElement {
	for i := 0; n != 0; i++ {
		if n&1 == 1 {
			x = mul(x, p[i])
		}
		n >>= 1
	}
	return x
}

// invert returns 1/h, h^(2^128 - 2) by an Itoh-Tsujii addition chain (127
// squarings and 12 multiplications). The result for h = 0 is 0.
func invert(h fieldElement) fieldElement {
	sqr := func(x fieldElement, n int) fieldElement {
		for range n {
			x = mul(x, x)
		}
		return x
	}
	// a(k) = h^(2^k - 1); a(2k) = a(k)^(2^k) * a(k); a(k+1) = a(k)^2 * h.
	a := h // a(1)
	k := 1
	for _, step := range []int{2, 3, 6, 7, 14, 15, 30, 31, 62, 63, 126, 127} {
		if step == 2*k {
			a = mul(sqr(a, k), a)
		} else {
			a = mul(sqr(a, 1), h)
		}
		k = step
	}
	return sqr(a, 1) // h^(2^128 - 2)
}
