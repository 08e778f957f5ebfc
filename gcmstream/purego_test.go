package gcmstream

import (
	"encoding/binary"
	"testing"
)

// Pure Go, table-driven GHASH, kept to measure (BenchmarkGHASH) what the
// package does not use: the fastest of them reaches about 1.5 GB/s per
// core, against 7-8 GB/s for GHASH through crypto/cipher (Stream.ghashScaled).
// Their lookups are indexed by secret-dependent bytes, so they are not
// constant time either. Each computes y = (y ^ X_i) * H over whole blocks.

// mulX multiplies by x: a right shift in GCM's bit order, with reduction.
func mulX(v fieldElement) fieldElement {
	lsb := v.lo & 1
	return fieldElement{v.hi>>1 ^ (0xe1<<56)&-lsb, v.lo>>1 | v.hi<<63}
}

// reduce4 and reduce8 are the reductions of the 4 or 8 bits a shift by 4 or
// 8 moves out of the low end, applied to the top of hi.
var reduce4, reduce8 = func() (r4 [16]uint64, r8 [256]uint64) {
	for t := range 256 {
		z := fieldElement{0, uint64(t)}
		for i := range 8 {
			z = mulX(z)
			if i == 3 && t < 16 {
				r4[t] = z.hi
			}
		}
		r8[t] = z.hi
	}
	return r4, r8
}()

// shoup4 is Shoup's 4-bit method: 16 multiples of H, 32 shift-and-add steps
// per block.
type shoup4 [16]fieldElement

func newShoup4(h fieldElement) *shoup4 {
	var t shoup4
	t[8] = h
	t[4] = mulX(t[8])
	t[2] = mulX(t[4])
	t[1] = mulX(t[2])
	for i := 2; i < 16; i <<= 1 {
		for j := 1; j < i; j++ {
			t[i|j] = t[i].xor(t[j])
		}
	}
	return &t
}

func (t *shoup4) ghash(y fieldElement, data []byte) fieldElement {
	for ; len(data) >= 16; data = data[16:] {
		x := y.xor(loadElement(data))
		var z fieldElement
		for _, w := range [2]uint64{x.lo, x.hi} {
			for range 16 {
				r := z.lo & 0xf
				z.lo = z.lo>>4 | z.hi<<60
				z.hi = z.hi>>4 ^ reduce4[r]
				z = z.xor(t[w&0xf])
				w >>= 4
			}
		}
		y = z
	}
	return y
}

// shoup8 is Shoup's 8-bit method: 256 multiples of H, 16 steps per block.
type shoup8 [256]fieldElement

func newShoup8(h fieldElement) *shoup8 {
	var t shoup8
	t[0x80] = h
	for i := 0x40; i > 0; i >>= 1 {
		t[i] = mulX(t[i<<1])
	}
	for i := 2; i < 256; i <<= 1 {
		for j := 1; j < i; j++ {
			t[i|j] = t[i].xor(t[j])
		}
	}
	return &t
}

func (t *shoup8) mul(x fieldElement) fieldElement {
	var z fieldElement
	for _, w := range [2]uint64{x.lo, x.hi} {
		for range 8 {
			r := z.lo & 0xff
			z.lo = z.lo>>8 | z.hi<<56
			z.hi = z.hi>>8 ^ reduce8[r]
			z = z.xor(t[w&0xff])
			w >>= 8
		}
	}
	return z
}

func (t *shoup8) ghash(y fieldElement, data []byte) fieldElement {
	for ; len(data) >= 16; data = data[16:] {
		y = t.mul(y.xor(loadElement(data)))
	}
	return y
}

// table8x16 holds x^(8b) * v * H for every byte position b and value v (64
// KiB per H): 16 lookups per block and no reduction.
type table8x16 [16][256]fieldElement

func newTable8x16(h fieldElement) *table8x16 {
	var t table8x16
	t[0] = *newShoup8(h)
	for b := 1; b < 16; b++ {
		for v := range 256 {
			z := t[b-1][v]
			for range 8 {
				z = mulX(z)
			}
			t[b][v] = z
		}
	}
	return &t
}

func (t *table8x16) ghash(y fieldElement, data []byte) fieldElement {
	for ; len(data) >= 16; data = data[16:] {
		hi := y.hi ^ binary.BigEndian.Uint64(data)
		lo := y.lo ^ binary.BigEndian.Uint64(data[8:])
		var z fieldElement
		for b := range 8 {
			z = z.xor(t[b][byte(hi>>(56-8*b))])
			z = z.xor(t[8+b][byte(lo>>(56-8*b))])
		}
		y = z
	}
	return y
}

// table8x16x2 aggregates two blocks per step with the tables of H and H^2
// (128 KiB): y = (y ^ X1) * H^2 ^ X2 * H, 32 independent lookups. The
// fastest pure Go variant measured.
type table8x16x2 [2]*table8x16

func newTable8x16x2(h fieldElement) *table8x16x2 {
	return &table8x16x2{newTable8x16(h), newTable8x16(mul(h, h))}
}

func (t *table8x16x2) ghash(y fieldElement, data []byte) fieldElement {
	t1, t2 := t[0], t[1]
	for ; len(data) >= 32; data = data[32:] {
		hi := y.hi ^ binary.BigEndian.Uint64(data)
		lo := y.lo ^ binary.BigEndian.Uint64(data[8:])
		hi2 := binary.BigEndian.Uint64(data[16:])
		lo2 := binary.BigEndian.Uint64(data[24:])
		var z fieldElement
		for b := range 8 {
			z = z.xor(t2[b][byte(hi>>(56-8*b))])
			z = z.xor(t2[8+b][byte(lo>>(56-8*b))])
			z = z.xor(t1[b][byte(hi2>>(56-8*b))])
			z = z.xor(t1[8+b][byte(lo2>>(56-8*b))])
		}
		y = z
	}
	return t1.ghash(y, data)
}

// ctGHASH is the constant-time mul block by block (the package's path for
// short inputs).
func ctGHASH(h fieldElement) func(fieldElement, []byte) fieldElement {
	return func(y fieldElement, data []byte) fieldElement { return ghashBlocks(h, y, data) }
}

func pureGoGHASH(h fieldElement) map[string]func(fieldElement, []byte) fieldElement {
	return map[string]func(fieldElement, []byte) fieldElement{
		"ctmul64":     ctGHASH(h),
		"shoup4":      newShoup4(h).ghash,
		"shoup8":      newShoup8(h).ghash,
		"table8x16":   newTable8x16(h).ghash,
		"table8x16x2": newTable8x16x2(h).ghash,
	}
}

func TestPureGoGHASH(t *testing.T) {
	r := newRand(t)
	h := randElement(r)
	for _, n := range []int{0, 16, 48, 64, 80, 1024} {
		data := randBytes(r, n)
		want := fieldElement{}
		for i := 0; i < n; i += 16 {
			want = mulRef(want.xor(loadElement(data[i:])), h)
		}
		for name, f := range pureGoGHASH(h) {
			if got := f(fieldElement{}, data); got != want {
				t.Errorf("%s n=%d: differs", name, n)
			}
		}
	}
}
