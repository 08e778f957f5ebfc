package gcmstream

import (
	"bytes"
	"fmt"
	"testing"
)

// TestHasherMatchesStdlib writes ciphertext in random pieces and checks the
// tag against crypto/cipher.
func TestHasherMatchesStdlib(t *testing.T) {
	r := newRand(t)
	for _, n := range lengthsFor(t) {
		m := newMessage(t, r, 32, r.IntN(40)-1, n)
		s := m.stream(t)
		h := s.NewHasher()
		ct := m.ciphertext()
		for len(ct) > 0 {
			k := min(len(ct), r.IntN(3)*r.IntN(70000)+r.IntN(40))
			if w, err := h.Write(ct[:k]); err != nil || w != k {
				t.Fatalf("Write = %d, %v", w, err)
			}
			ct = ct[k:]
		}
		if h.Len() != int64(n) {
			t.Fatalf("Len = %d, want %d", h.Len(), n)
		}
		tag, err := h.Tag()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(tag[:], m.tag()) {
			t.Fatalf("n=%d: Hasher tag differs", n)
		}
		if err := h.Verify(m.tag()); err != nil {
			t.Fatal(err)
		}
		bad := bytes.Clone(m.tag())
		bad[0] ^= 1
		wantErr(t, h.Verify(bad), ErrAuthentication)
		h.Reset()
		if h.Len() != 0 {
			t.Fatal("Reset kept the length")
		}
	}
}

// TestHasherResume checkpoints a Hasher at random points (aligned or not,
// after Writes or Appends), resumes in a fresh Stream with the same key, IV
// and AAD, and checks the final tag.
func TestHasherResume(t *testing.T) {
	r := newRand(t)
	for _, n := range []int{0, 1, 17, 4096, 100000 + 9, 1 << 20} {
		for trial := range 8 {
			m := newMessage(t, r, 16+8*r.IntN(3), r.IntN(20)-1, n)
			s := m.stream(t)
			h := s.NewHasher()
			ct := m.ciphertext()
			pos := 0
			for pos < n {
				if r.IntN(2) == 0 && pos%16 == 0 {
					// Append the Partial of a segment, as parts complete.
					end := min(n, pos+16*(1+r.IntN(4000)))
					p, err := s.GHASHSegment(ct[pos:end], int64(pos))
					if err != nil {
						t.Fatal(err)
					}
					if err := h.Append(p); err != nil {
						t.Fatal(err)
					}
					pos = end
				} else {
					end := min(n, pos+r.IntN(5000))
					if _, err := h.Write(ct[pos:end]); err != nil {
						t.Fatal(err)
					}
					pos = end
				}
				// Checkpoint, "crash", resume in a new Stream.
				state, err := h.MarshalBinary()
				if err != nil {
					t.Fatal(err)
				}
				s = m.stream(t)
				h = s.NewHasher()
				if err := h.UnmarshalBinary(state); err != nil {
					t.Fatal(err)
				}
				if h.Len() != int64(pos) {
					t.Fatalf("resumed at %d, want %d", h.Len(), pos)
				}
			}
			tag, err := h.Tag()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(tag[:], m.tag()) {
				t.Fatalf("n=%d trial=%d: resumed tag differs", n, trial)
			}
		}
	}
}

func TestHasherAppendErrors(t *testing.T) {
	r := newRand(t)
	m := newMessage(t, r, 32, -1, 100)
	s := m.stream(t)
	seg := func(lo, hi int) Partial {
		p, err := s.GHASHSegment(m.ciphertext()[lo:hi], int64(lo))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	h := s.NewHasher()
	wantErr(t, h.Append(seg(16, 32)), ErrPartials) // gap
	if err := h.Append(Partial{}); err != nil {    // empty: no-op
		t.Fatal(err)
	}
	h.Write(m.ciphertext()[:5])
	wantErr(t, h.Append(seg(16, 32)), ErrPartials) // pending bytes
	h.Reset()
	other := newMessage(t, r, 32, -1, 100).stream(t)
	foreign, _ := other.GHASHSegment(m.ciphertext()[:16], 0)
	wantErr(t, h.Append(foreign), ErrPartials)
	if err := h.Append(seg(0, 50)); err != nil { // unaligned end: the message ends
		t.Fatal(err)
	}
	wantErr(t, h.Append(seg(48, 64)), ErrPartials)
	_, err := h.Write([]byte{1})
	wantErr(t, err, ErrPartials)
	// An ended hasher survives a checkpoint.
	state, err := h.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	h2 := s.NewHasher()
	if err := h2.UnmarshalBinary(state); err != nil {
		t.Fatal(err)
	}
	_, err = h2.Write([]byte{1})
	wantErr(t, err, ErrPartials)
	want, _ := s.Tag(seg(0, 50))
	if got, _ := h2.Tag(); got != want {
		t.Fatal("ended hasher tag differs after resume")
	}
	var zero Hasher
	_, err = zero.Write([]byte{1})
	wantErr(t, err, ErrClosed)
	wantErr(t, zero.UnmarshalBinary(state), ErrCheckpoint)
}

// TestCheckpointRefused: a checkpoint from another key, IV or AAD, an
// altered or truncated one, or one of the other kind is refused and leaves
// the Hasher unchanged.
func TestCheckpointRefused(t *testing.T) {
	r := newRand(t)
	m := newMessage(t, r, 32, 7, 1000)
	s := m.stream(t)
	h := s.NewHasher()
	h.Write(m.ciphertext()[:333])
	state, err := h.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	p, _ := s.GHASHSegment(m.ciphertext()[:320], 0)
	pstate, err := s.MarshalPartial(p)
	if err != nil {
		t.Fatal(err)
	}
	variants := map[string]func(*message){
		"key": func(m *message) { m.key[0] ^= 1 },
		"iv":  func(m *message) { m.iv[0] ^= 1 },
		"aad": func(m *message) { m.aad = append(m.aad, 0) },
	}
	for name, mod := range variants {
		m2 := *m
		m2.key, m2.iv, m2.aad = bytes.Clone(m.key), bytes.Clone(m.iv), bytes.Clone(m.aad)
		mod(&m2)
		s2 := m2.stream(t)
		h2 := s2.NewHasher()
		h2.Write(m.ciphertext()[:20])
		wantErr(t, h2.UnmarshalBinary(state), ErrCheckpoint)
		if h2.Len() != 20 {
			t.Fatalf("%s: refused checkpoint changed the hasher", name)
		}
		_, err := s2.UnmarshalPartial(pstate)
		wantErr(t, err, ErrCheckpoint)
	}
	for i := range state {
		bad := bytes.Clone(state)
		bad[i] ^= 0x10
		wantErr(t, h.UnmarshalBinary(bad), ErrCheckpoint)
	}
	for _, bad := range [][]byte{nil, state[:len(state)-1], append(bytes.Clone(state), 0), state[:checkpointMinSize-1], make([]byte, checkpointMaxSize+1)} {
		wantErr(t, h.UnmarshalBinary(bad), ErrCheckpoint)
	}
	wantErr(t, h.UnmarshalBinary(pstate), ErrCheckpoint)
	_, err = s.UnmarshalPartial(state)
	wantErr(t, err, ErrCheckpoint)
	if h.Len() != 333 {
		t.Fatal("refused checkpoints changed the hasher")
	}
	got, err := s.UnmarshalPartial(pstate)
	if err != nil || got != p {
		t.Fatalf("UnmarshalPartial = %+v, %v", got, err)
	}
}

// TestCheckpointHidesState: checkpoints of the same state differ (random
// nonce) and contain neither the GHASH value nor H.
func TestCheckpointHidesState(t *testing.T) {
	r := newRand(t)
	m := newMessage(t, r, 32, -1, 4096)
	s := m.stream(t)
	p, _ := s.GHASHSegment(m.ciphertext(), 0)
	a, _ := s.MarshalPartial(p)
	b, _ := s.MarshalPartial(p)
	if bytes.Equal(a, b) {
		t.Fatal("two checkpoints of one state are equal")
	}
	q, h := p.q.bytes(), s.h.bytes()
	for _, secret := range [][]byte{q[:], h[:], q[:8], h[:8]} {
		if bytes.Contains(a, secret) {
			t.Fatal("checkpoint contains the GHASH value or H")
		}
	}
}

// TestDecodeState covers the validation of the state inside a checkpoint.
func TestDecodeState(t *testing.T) {
	enc := func(kind byte, flags byte, off, n int64, pending int) []byte {
		st := state{flags: flags, off: off, n: n, pending: make([]byte, pending)}
		return st.encode()
	}
	good := map[string][]byte{
		"hasher empty":   enc(kindHasher, 0, 0, 0, 0),
		"hasher pending": enc(kindHasher, 0, 0, 33, 1),
		"hasher ended":   enc(kindHasher, flagEnded, 0, 33, 0),
		"hasher max":     enc(kindHasher, 0, 0, MaxLength, 0),
	}
	for name, b := range good {
		if _, err := decodeState(kindHasher, b); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := decodeState(kindPartial, enc(kindPartial, 0, MaxLength-16, 16, 0)); err != nil {
		t.Error(err)
	}
	bad := map[string][]byte{
		"short":            enc(kindHasher, 0, 0, 0, 0)[:stateFixedSize-1],
		"long":             enc(kindHasher, 0, 0, 15, 16),
		"offset":           enc(kindHasher, 0, 16, 0, 0),
		"too long":         enc(kindHasher, 0, 0, MaxLength+1, 1),
		"pending mismatch": enc(kindHasher, 0, 0, 33, 2),
		"ended aligned":    enc(kindHasher, flagEnded, 0, 32, 0),
		"ended pending":    enc(kindHasher, flagEnded, 0, 33, 1),
		"flags":            enc(kindHasher, 2, 0, 0, 0),
		"negative":         enc(kindHasher, 0, 0, -1, 0),
	}
	for name, b := range bad {
		if _, err := decodeState(kindHasher, b); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			wantErr(t, err, ErrCheckpoint)
		}
	}
	for name, b := range map[string][]byte{
		"misaligned": enc(kindPartial, 0, 8, 16, 0),
		"flags":      enc(kindPartial, flagEnded, 0, 16, 0),
		"pending":    enc(kindPartial, 0, 0, 17, 1),
		"beyond":     enc(kindPartial, 0, MaxLength, 16, 0),
	} {
		if _, err := decodeState(kindPartial, b); err == nil {
			t.Errorf("partial %s: accepted", name)
		}
	}
	if _, err := decodeState('X', enc(kindHasher, 0, 0, 0, 0)); err == nil {
		t.Error("unknown kind accepted")
	}
}

func ExampleHasher_MarshalBinary() {
	key, iv := make([]byte, 32), make([]byte, 12) // the new data key and IV
	s, err := New(key, iv, nil)
	if err != nil {
		panic(err)
	}
	defer s.Close()
	h := s.NewHasher()
	part1 := make([]byte, 5<<20) // ciphertext of part 1, uploaded
	h.Write(part1)
	checkpoint, _ := h.MarshalBinary() // store with the upload ID

	// After a restart: same key, IV and AAD.
	s2, _ := New(key, iv, nil)
	defer s2.Close()
	h2 := s2.NewHasher()
	if err := h2.UnmarshalBinary(checkpoint); err != nil {
		panic(err)
	}
	fmt.Println(h2.Len())
	// Output: 5242880
}
