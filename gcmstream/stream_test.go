package gcmstream

import (
	"bytes"
	"context"
	"crypto/aes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
)

// lengthsFor returns stdLengths, without the largest under -short.
func lengthsFor(t *testing.T) []int {
	if !testing.Short() {
		return stdLengths
	}
	var out []int
	for _, n := range stdLengths {
		if n <= 1<<20 {
			out = append(out, n)
		}
	}
	return out
}

// TestSealOpenMatchStdlib: Engine.Seal equals crypto/cipher's Seal and
// Engine.Open opens it, for every length, key size and AAD shape.
func TestSealOpenMatchStdlib(t *testing.T) {
	ctx := context.Background()
	for _, keyLen := range []int{16, 24, 32} {
		for _, aadLen := range []int{-1, 0, 2, 17, 1000} {
			t.Run(fmt.Sprintf("key%d/aad%d", keyLen, aadLen), func(t *testing.T) {
				t.Parallel()
				r := newRand(t)
				for _, n := range lengthsFor(t) {
					if keyLen != 32 && n > 1<<20 {
						continue
					}
					m := newMessage(t, r, keyLen, aadLen, n)
					s := m.stream(t)
					e := Engine{Workers: 3, ChunkSize: 64 << 10}
					got, err := e.Seal(ctx, s, nil, m.plaintext)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, m.sealed) {
						t.Fatalf("n=%d: Seal differs from crypto/cipher", n)
					}
					pt, err := e.Open(ctx, s, nil, m.sealed)
					if err != nil || !bytes.Equal(pt, m.plaintext) {
						t.Fatalf("n=%d: Open: %v", n, err)
					}
					// In place, with a prefix in dst.
					buf := append([]byte("prefix"), m.plaintext...)
					buf = append(buf, make([]byte, TagSize)...)[:6+n]
					got, err = e.Seal(ctx, s, buf[:6], buf[6:])
					if err != nil || !bytes.Equal(got[6:], m.sealed) || string(got[:6]) != "prefix" {
						t.Fatalf("n=%d: in-place Seal: %v", n, err)
					}
					pt, err = e.Open(ctx, s, got[6:6], got[6:])
					if err != nil || !bytes.Equal(pt, m.plaintext) {
						t.Fatalf("n=%d: in-place Open: %v", n, err)
					}
				}
			})
		}
	}
}

// TestSegmentsMatchStdlib processes random splits of messages segment by
// segment, in random order, and checks ciphertext, plaintext and tag
// against crypto/cipher.
func TestSegmentsMatchStdlib(t *testing.T) {
	r := newRand(t)
	for _, n := range lengthsFor(t) {
		for trial := range 4 {
			m := newMessage(t, r, 32, r.IntN(40)-1, n)
			s := m.stream(t)
			cuts := randomCuts(r, n, 1+r.IntN(6))
			order := r.Perm(len(cuts) - 1)
			ct := make([]byte, n)
			pt := make([]byte, n)
			ks := make([]byte, n)
			var sealed, opened, hashed, xored []Partial
			for _, i := range order {
				lo, hi := cuts[i], cuts[i+1]
				p, err := s.SealSegment(ct[lo:hi], m.plaintext[lo:hi], int64(lo))
				if err != nil {
					t.Fatal(err)
				}
				sealed = append(sealed, p)
				if p, err = s.OpenSegment(pt[lo:hi], m.ciphertext()[lo:hi], int64(lo)); err != nil {
					t.Fatal(err)
				}
				opened = append(opened, p)
				if p, err = s.GHASHSegment(m.ciphertext()[lo:hi], int64(lo)); err != nil {
					t.Fatal(err)
				}
				hashed = append(hashed, p)
				if err := s.XORKeyStreamAt(ks[lo:hi], m.plaintext[lo:hi], int64(lo)); err != nil {
					t.Fatal(err)
				}
				if p, err = s.GHASHSegment(ks[lo:hi], int64(lo)); err != nil {
					t.Fatal(err)
				}
				xored = append(xored, p)
			}
			if !bytes.Equal(ct, m.ciphertext()) || !bytes.Equal(ks, m.ciphertext()) {
				t.Fatalf("n=%d cuts=%v: ciphertext differs", n, cuts)
			}
			if !bytes.Equal(pt, m.plaintext) {
				t.Fatalf("n=%d cuts=%v: plaintext differs", n, cuts)
			}
			for name, parts := range map[string][]Partial{"SealSegment": sealed, "OpenSegment": opened, "GHASHSegment": hashed, "XORKeyStreamAt": xored} {
				total, err := s.Combine(parts...)
				if err != nil {
					t.Fatal(err)
				}
				if total.Offset() != 0 || total.Len() != int64(n) {
					t.Fatalf("%s: total covers [%d, %d)", name, total.Offset(), total.End())
				}
				tag, err := s.Tag(total)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(tag[:], m.tag()) {
					t.Fatalf("n=%d trial=%d cuts=%v %s: tag differs", n, trial, cuts, name)
				}
				if err := s.Verify(total, m.tag()); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// TestCombineAnyChunking: any chunking, combined in any grouping, gives the
// same Partial.
func TestCombineAnyChunking(t *testing.T) {
	r := newRand(t)
	m := newMessage(t, r, 32, 13, 100000+5)
	s := m.stream(t)
	whole, err := s.GHASHSegment(m.ciphertext(), 0)
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		cuts := randomCuts(r, len(m.plaintext), 1+r.IntN(20))
		var parts []Partial
		for i := range len(cuts) - 1 {
			p, err := s.GHASHSegment(m.ciphertext()[cuts[i]:cuts[i+1]], int64(cuts[i]))
			if err != nil {
				t.Fatal(err)
			}
			parts = append(parts, p)
		}
		// Combine a random adjacent pair first, then everything.
		if len(parts) > 2 {
			i := r.IntN(len(parts) - 1)
			pair, err := s.Combine(parts[i+1], parts[i])
			if err != nil {
				t.Fatal(err)
			}
			parts = append(append(parts[:i:i], pair), parts[i+2:]...)
		}
		r.Shuffle(len(parts), func(i, j int) { parts[i], parts[j] = parts[j], parts[i] })
		parts = append(parts, Partial{}) // empty partials are ignored
		total, err := s.Combine(parts...)
		if err != nil {
			t.Fatal(err)
		}
		if total != whole {
			t.Fatalf("cuts %v: combined partial differs", cuts)
		}
	}
	if p, err := s.Combine(); err != nil || p.Len() != 0 {
		t.Fatalf("Combine() = %+v, %v", p, err)
	}
}

func TestCombineErrors(t *testing.T) {
	r := newRand(t)
	m := newMessage(t, r, 16, -1, 100)
	s := m.stream(t)
	seg := func(lo, hi int) Partial {
		p, err := s.GHASHSegment(m.ciphertext()[lo:hi], int64(lo))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	other := newMessage(t, r, 16, -1, 100).stream(t)
	foreign, err := other.GHASHSegment(m.ciphertext()[:32], 0)
	if err != nil {
		t.Fatal(err)
	}
	for name, parts := range map[string][]Partial{
		"gap":          {seg(0, 32), seg(48, 100)},
		"overlap":      {seg(0, 48), seg(32, 100)},
		"twice":        {seg(0, 32), seg(0, 32)},
		"unaligned":    {seg(0, 40), seg(48, 100)},
		"another":      {foreign, seg(32, 100)},
		"unaligned-in": {seg(0, 20), seg(32, 100)},
	} {
		if _, err := s.Combine(parts...); err == nil {
			t.Errorf("%s: Combine accepted", name)
		} else {
			wantErr(t, err, ErrPartials)
		}
	}
	if _, err := s.Tag(seg(16, 100)); err == nil {
		t.Error("Tag of a partial not starting at 0 accepted")
	} else {
		wantErr(t, err, ErrPartials)
	}
	if _, err := s.Tag(foreign); err == nil {
		t.Error("Tag of a foreign partial accepted")
	} else {
		wantErr(t, err, ErrPartials)
	}
	if _, err := s.MarshalPartial(foreign); err == nil {
		t.Error("MarshalPartial of a foreign partial accepted")
	}
}

// TestAuthenticationFailures: any change of ciphertext, tag, AAD, IV or key
// fails with ErrAuthentication and Open returns no plaintext.
func TestAuthenticationFailures(t *testing.T) {
	ctx := context.Background()
	r := newRand(t)
	m := newMessage(t, r, 32, 20, 300000+3)
	e := Engine{Workers: 2, ChunkSize: 64 << 10}
	check := func(name string, s *Stream, sealed []byte) {
		t.Helper()
		dst := make([]byte, 0, len(sealed))
		out, err := e.Open(ctx, s, dst, sealed)
		if err == nil {
			t.Fatalf("%s: Open accepted", name)
		}
		wantErr(t, err, ErrAuthentication)
		if out != nil {
			t.Fatalf("%s: Open returned output", name)
		}
		if n := len(sealed) - TagSize; n > 0 && !bytes.Equal(dst[:n], make([]byte, n)) {
			t.Fatalf("%s: plaintext left in dst after failure", name)
		}
	}
	s := m.stream(t)
	n := len(m.plaintext)
	for _, pos := range []int{0, 1, 15, 16, 65535, 65536, n / 2, n - 1, n, n + 15} {
		bad := bytes.Clone(m.sealed)
		bad[pos] ^= 0x80
		check(fmt.Sprintf("bit flipped at %d", pos), s, bad)
	}
	check("truncated", s, m.sealed[:len(m.sealed)-1])
	check("extended", s, append(bytes.Clone(m.sealed), 0))
	check("shorter than a tag", s, m.sealed[:TagSize-1])
	for name, mod := range map[string]func(*message){
		"aad":    func(m *message) { m.aad[0] ^= 1 },
		"no aad": func(m *message) { m.aad = nil },
		"iv":     func(m *message) { m.iv[11] ^= 1 },
		"key":    func(m *message) { m.key[31] ^= 1 },
	} {
		m2 := *m
		m2.key, m2.iv, m2.aad = bytes.Clone(m.key), bytes.Clone(m.iv), bytes.Clone(m.aad)
		mod(&m2)
		check(name, m2.stream(t), m.sealed)
	}
	total, err := s.GHASHSegment(m.ciphertext(), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range [][]byte{nil, m.tag()[:12], append(bytes.Clone(m.tag()), 0), make([]byte, 16)} {
		wantErr(t, s.Verify(total, tag), ErrAuthentication)
	}
	if err := s.Verify(total, m.tag()); err != nil {
		t.Fatal(err)
	}
}

func TestNewErrors(t *testing.T) {
	for _, n := range []int{0, 8, 15, 17, 31, 33, 64} {
		_, err := New(make([]byte, n), make([]byte, 12), nil)
		wantErr(t, err, ErrKeySize)
	}
	for _, n := range []int{0, 8, 11, 13, 16} {
		_, err := New(make([]byte, 32), make([]byte, n), nil)
		wantErr(t, err, ErrIVSize)
	}
}

func TestSegmentErrors(t *testing.T) {
	r := newRand(t)
	m := newMessage(t, r, 32, -1, 64)
	s := m.stream(t)
	buf := make([]byte, 64)
	for _, off := range []int64{-16, 1, 15, 17, 1<<40 + 8} {
		_, err := s.SealSegment(buf, buf, off)
		wantErr(t, err, ErrOffset)
		_, err = s.OpenSegment(buf, buf, off)
		wantErr(t, err, ErrOffset)
		_, err = s.GHASHSegment(buf, off)
		wantErr(t, err, ErrOffset)
		wantErr(t, s.XORKeyStreamAt(buf, buf, off), ErrOffset)
	}
	_, err := s.SealSegment(buf[:10], buf, 0)
	wantErr(t, err, ErrBuffer)
	_, err = s.OpenSegment(buf[1:], buf[:40], 0)
	wantErr(t, err, ErrBuffer)
	wantErr(t, s.XORKeyStreamAt(buf[16:], buf[:32], 0), ErrBuffer)
	_, err = Engine{}.Seal(context.Background(), s, buf[1:1], buf[:32])
	wantErr(t, err, ErrBuffer)
	for _, cs := range []int{-16, 8, 17} {
		_, err = Engine{ChunkSize: cs}.SealAt(context.Background(), s, buf, buf, 0)
		wantErr(t, err, ErrOffset)
	}
}

// TestMaxLength: the last 16 bytes a message may have are accepted, one
// more byte is refused, and the keystream at the end of the range is AES of
// the counter blocks up to IV || 0xffffffff (no wrap), on both the counter
// mode and the fused path.
func TestMaxLength(t *testing.T) {
	r := newRand(t)
	m := newMessage(t, r, 32, -1, 0)
	s := m.stream(t)
	if MaxLength != (1<<32-2)*16 {
		t.Fatalf("MaxLength = %d, want (2^32 - 2) * 16", MaxLength)
	}
	const n = 4096
	off := int64(MaxLength - n)
	zero := make([]byte, n)
	want := make([]byte, n)
	blk, _ := aes.NewCipher(m.key)
	for i := range n / 16 {
		var ctr [16]byte
		copy(ctr[:], m.iv)
		binary.BigEndian.PutUint32(ctr[12:], uint32(off/16)+2+uint32(i))
		blk.Encrypt(want[16*i:], ctr[:])
	}
	if binary.BigEndian.Uint32(want[n-16:]) == 0 {
		t.Fatal("test setup")
	}
	got := make([]byte, n)
	if err := s.XORKeyStreamAt(got, zero, off); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("XORKeyStreamAt at the end of the counter range differs")
	}
	p, err := s.SealSegment(got, zero, off)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("SealSegment at the end of the counter range differs")
	}
	if q, _ := s.GHASHSegment(want, off); q != p {
		t.Fatal("fused GHASH differs at the end of the counter range")
	}
	wantErr(t, s.XORKeyStreamAt(make([]byte, 17), make([]byte, 17), MaxLength-16), ErrTooLong)
	_, err = s.GHASHSegment(make([]byte, 1), MaxLength)
	wantErr(t, err, ErrTooLong)
	_, err = Engine{}.SealRange(context.Background(), s, nil, nil, 0, MaxLength+1)
	wantErr(t, err, ErrTooLong)
	_, err = Engine{}.OpenRange(context.Background(), s, nil, nil, -1, 16)
	if err == nil {
		t.Fatal("negative offset accepted")
	}
	h := s.NewHasher()
	h.n = MaxLength - 8
	_, err = h.Write(make([]byte, 9))
	wantErr(t, err, ErrTooLong)
	if _, err = h.Write(make([]byte, 8)); err != nil {
		t.Fatal(err)
	}
}

func TestClose(t *testing.T) {
	r := newRand(t)
	m := newMessage(t, r, 32, 5, 64)
	s, err := New(m.key, m.iv, m.aad)
	if err != nil {
		t.Fatal(err)
	}
	h := s.NewHasher()
	p, _ := s.GHASHSegment(m.ciphertext(), 0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s.h != (fieldElement{}) || s.tagMask != (fieldElement{}) || s.aad != (fieldElement{}) || s.hInv2 != (fieldElement{}) || s.pow != nil || s.block != nil {
		t.Fatal("Close left key material")
	}
	buf := make([]byte, 64)
	calls := map[string]error{
		"XORKeyStreamAt": s.XORKeyStreamAt(buf, buf, 0),
		"Verify":         s.Verify(p, m.tag()),
	}
	_, calls["SealSegment"] = s.SealSegment(buf, buf, 0)
	_, calls["OpenSegment"] = s.OpenSegment(buf, buf, 0)
	_, calls["GHASHSegment"] = s.GHASHSegment(buf, 0)
	_, calls["Combine"] = s.Combine(p)
	_, calls["Tag"] = s.Tag(p)
	_, calls["MarshalPartial"] = s.MarshalPartial(p)
	_, calls["UnmarshalPartial"] = s.UnmarshalPartial(buf)
	_, calls["Hasher.Write"] = h.Write(buf)
	_, calls["Hasher.Tag"] = h.Tag()
	_, calls["Hasher.MarshalBinary"] = h.MarshalBinary()
	calls["Hasher.UnmarshalBinary"] = h.UnmarshalBinary(buf)
	_, calls["Engine.Seal"] = Engine{}.Seal(context.Background(), s, nil, buf)
	_, calls["Engine.Open"] = Engine{}.Open(context.Background(), s, nil, buf)
	for name, err := range calls {
		if err == nil {
			t.Errorf("%s after Close succeeded", name)
			continue
		}
		wantErr(t, err, ErrClosed)
	}
}

// TestConcurrentUse: one Stream used by many goroutines at once, with a
// Close racing them (run with -race).
func TestConcurrentUse(t *testing.T) {
	r := newRand(t)
	m := newMessage(t, r, 32, 3, 1<<16)
	s, err := New(m.key, m.iv, m.aad)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			out := make([]byte, 4096)
			for i := range 16 {
				off := (g*16 + i) % 16 * 4096
				_, err := s.SealSegment(out, m.plaintext[off:off+4096], int64(off))
				if err != nil {
					wantErr(t, err, ErrClosed)
					return
				}
				if !bytes.Equal(out, m.ciphertext()[off:off+4096]) {
					t.Error("concurrent SealSegment differs")
					return
				}
			}
		})
	}
	s.Close()
	wg.Wait()
}

func TestRandomCuts(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 16, 100, 5000} {
		for range 20 {
			c := randomCuts(r, n, 1+r.IntN(8))
			if c[0] != 0 || c[len(c)-1] != n {
				t.Fatalf("cuts %v for %d", c, n)
			}
			for i := 1; i < len(c)-1; i++ {
				if c[i]%16 != 0 || c[i] <= c[i-1] {
					t.Fatalf("cuts %v for %d", c, n)
				}
			}
		}
	}
}
