package gcmstream

import (
	"testing"
)

// mulRef is Algorithm 1 of NIST SP 800-38D, bit by bit.
func mulRef(x, y fieldElement) fieldElement {
	var z fieldElement
	v := y
	for i := range 128 {
		var bit uint64
		if i < 64 {
			bit = x.hi >> (63 - i) & 1
		} else {
			bit = x.lo >> (127 - i) & 1
		}
		if bit == 1 {
			z = z.xor(v)
		}
		lsb := v.lo & 1
		v.lo = v.lo>>1 | v.hi<<63
		v.hi >>= 1
		if lsb == 1 {
			v.hi ^= 0xe1 << 56
		}
	}
	return z
}

// clmulLow is the low 64 bits of the carry-less product, bit by bit.
func clmulLow(x, y uint64) uint64 {
	var z uint64
	for i := range 64 {
		if y>>i&1 == 1 {
			z ^= x << i
		}
	}
	return z
}

func TestBmul64(t *testing.T) {
	r := newRand(t)
	for range 10000 {
		x, y := r.Uint64(), r.Uint64()
		if got, want := bmul64(x, y), clmulLow(x, y); got != want {
			t.Fatalf("bmul64(%#x, %#x) = %#x, want %#x", x, y, got, want)
		}
	}
	if got := bmul64(^uint64(0), ^uint64(0)); got != clmulLow(^uint64(0), ^uint64(0)) {
		t.Fatalf("bmul64(all ones) = %#x", got)
	}
}

func TestMulMatchesReference(t *testing.T) {
	r := newRand(t)
	edge := []fieldElement{{}, one, {0, 1}, {^uint64(0), ^uint64(0)}, {1, 0}, {1 << 63, 1}}
	for _, x := range edge {
		for _, y := range edge {
			if got, want := mul(x, y), mulRef(x, y); got != want {
				t.Fatalf("mul(%x, %x) = %x, want %x", x, y, got, want)
			}
		}
	}
	for range 5000 {
		x, y := randElement(r), randElement(r)
		if got, want := mul(x, y), mulRef(x, y); got != want {
			t.Fatalf("mul(%x, %x) = %x, want %x", x, y, got, want)
		}
		if mul(x, one) != x || mul(x, y) != mul(y, x) {
			t.Fatal("identity or commutativity broken")
		}
	}
}

func TestInvert(t *testing.T) {
	r := newRand(t)
	if invert(fieldElement{}) != (fieldElement{}) {
		t.Fatal("invert(0) != 0")
	}
	if invert(one) != one {
		t.Fatal("invert(1) != 1")
	}
	for range 50 {
		h := randElement(r)
		if got := mul(h, invert(h)); got != one {
			t.Fatalf("h * invert(h) = %x", got)
		}
	}
}

func TestPowers(t *testing.T) {
	r := newRand(t)
	h := randElement(r)
	p := newPowers(h)
	want := one
	for n := range uint64(600) {
		if got := p.mulPow(one, n); got != want {
			t.Fatalf("H^%d differs", n)
		}
		want = mul(want, h)
	}
	// H^(a+b) = H^a * H^b for large exponents.
	for range 50 {
		a, b := r.Uint64N(1<<32), r.Uint64N(1<<32)
		if p.mulPow(p.mulPow(one, a), b) != p.mulPow(one, a+b) {
			t.Fatalf("H^%d * H^%d != H^%d", a, b, a+b)
		}
	}
}

func TestGHASHBlocksMatchesReference(t *testing.T) {
	r := newRand(t)
	h := randElement(r)
	for _, n := range []int{0, 1, 15, 16, 17, 100} {
		data := randBytes(r, n)
		var y fieldElement
		padded := append(append([]byte{}, data...), make([]byte, (16-n%16)%16)...)
		for i := 0; i < len(padded); i += 16 {
			y = mulRef(y.xor(loadElement(padded[i:])), h)
		}
		if got := ghashBlocks(h, fieldElement{}, data); got != y {
			t.Fatalf("n=%d: ghashBlocks differs", n)
		}
	}
}
