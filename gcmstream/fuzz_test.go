package gcmstream

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

// FuzzSealMatchesStdlib checks the package against crypto/cipher on any
// key, IV, AAD and plaintext, cut into chunks and segments chosen by the
// fuzzer: Engine.Seal equals Seal, Engine.Open opens it and refuses it
// with a flipped bit, segments and a Hasher give the same tag.
func FuzzSealMatchesStdlib(f *testing.F) {
	for _, v := range gcmSpecVectors {
		f.Add(mustHex(f, v.key), mustHex(f, v.iv), mustHex(f, v.aad), mustHex(f, v.pt), uint16(1), uint16(7))
	}
	f.Add(make([]byte, 24), []byte("iv"), []byte{0, 0x73}, bytes.Repeat([]byte("x"), 1000), uint16(300), uint16(2))
	f.Add([]byte{}, []byte{}, []byte{}, make([]byte, 257), uint16(0xffff), uint16(0))
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, key, iv, aad, plaintext []byte, split, chunk uint16) {
		key = append(key, make([]byte, 32)...)[:[]int{16, 24, 32}[int(split)%3]]
		iv = append(iv, make([]byte, IVSize)...)[:IVSize]
		if len(aad) == 0 {
			aad = nil
		}
		want := stdGCM(t, key).Seal(nil, iv, plaintext, aad)
		s, err := New(key, iv, aad)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		e := Engine{Workers: 1 + int(chunk)%3, ChunkSize: 16 * (1 + int(chunk)%64)}
		got, err := e.Seal(ctx, s, nil, plaintext)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("Seal differs from crypto/cipher: %v", err)
		}
		pt, err := e.Open(ctx, s, nil, want)
		if err != nil || !bytes.Equal(pt, plaintext) {
			t.Fatalf("Open: %v", err)
		}
		bad := bytes.Clone(want)
		bad[int(split)%len(bad)] ^= 1 << (chunk % 8)
		if _, err := e.Open(ctx, s, nil, bad); !errors.Is(err, ErrAuthentication) {
			t.Fatalf("altered message: %v", err)
		}

		// Two segments cut at an aligned offset, sealed in reverse order.
		n := len(plaintext)
		cut := 16 * (int(split) % (n/16 + 1))
		ct := make([]byte, n)
		p2, err := s.SealSegment(ct[cut:], plaintext[cut:], int64(cut))
		if err != nil {
			t.Fatal(err)
		}
		p1, err := s.SealSegment(ct[:cut], plaintext[:cut], 0)
		if err != nil {
			t.Fatal(err)
		}
		total, err := s.Combine(p2, p1)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Verify(total, want[n:]); err != nil || !bytes.Equal(ct, want[:n]) {
			t.Fatalf("segments: %v", err)
		}

		// A Hasher fed at an arbitrary cut, checkpointed in between.
		h := s.NewHasher()
		hc := min(int(split), n)
		h.Write(want[:hc])
		state, err := h.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		h = s.NewHasher()
		if err := h.UnmarshalBinary(state); err != nil {
			t.Fatal(err)
		}
		h.Write(want[hc:n])
		if err := h.Verify(want[n:]); err != nil {
			t.Fatalf("hasher: %v", err)
		}
	})
}

// FuzzHasherUnmarshalBinary feeds arbitrary bytes to the checkpoint parser,
// both as a sealed checkpoint (almost always refused) and as the state
// inside one (sealed with the Stream's key first, so the parser proper is
// reached). Accepted states must round-trip; refused ones must wrap
// ErrCheckpoint and leave the Hasher unchanged.
func FuzzHasherUnmarshalBinary(f *testing.F) {
	key, iv := make([]byte, 32), make([]byte, IVSize)
	s, err := New(key, iv, []byte{0, 0x73})
	if err != nil {
		f.Fatal(err)
	}
	ct := bytes.Repeat([]byte{0xa5}, 100)
	for _, n := range []int{0, 15, 16, 33, 100} {
		h := s.NewHasher()
		h.Write(ct[:n])
		b, err := h.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		st := state{n: int64(n), pending: ct[:n%16]}
		f.Add(st.encode())
	}
	f.Add((&state{flags: flagEnded, n: 33}).encode())
	f.Add([]byte{checkpointVersion, kindHasher})
	f.Fuzz(func(t *testing.T, data []byte) {
		h := s.NewHasher()
		h.Write(ct[:21])
		if err := h.UnmarshalBinary(data); err != nil {
			if !errors.Is(err, ErrCheckpoint) {
				t.Fatalf("error %v does not wrap ErrCheckpoint", err)
			}
			if h.Len() != 21 {
				t.Fatal("refused checkpoint changed the hasher")
			}
		} else {
			roundTrip(t, s, h)
		}

		st, err := decodeState(kindHasher, data)
		if err != nil {
			if !errors.Is(err, ErrCheckpoint) {
				t.Fatalf("error %v does not wrap ErrCheckpoint", err)
			}
			return
		}
		if !bytes.Equal(st.encode(), data) {
			t.Fatal("state does not re-encode to the same bytes")
		}
		h = s.NewHasher()
		if err := h.UnmarshalBinary(s.sealState(kindHasher, &st)); err != nil {
			t.Fatalf("valid state refused: %v", err)
		}
		if h.Len() != st.n || h.q != st.q || h.ended != (st.flags&flagEnded != 0) {
			t.Fatal("state not restored")
		}
		roundTrip(t, s, h)
		if _, err := h.Tag(); err != nil {
			t.Fatal(err)
		}
	})
}

func roundTrip(t *testing.T, s *Stream, h *Hasher) {
	t.Helper()
	b, err := h.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	h2 := s.NewHasher()
	if err := h2.UnmarshalBinary(b); err != nil {
		t.Fatalf("round trip refused: %v", err)
	}
	if np := h.n % BlockSize; h2.n != h.n || h2.q != h.q || !bytes.Equal(h2.pending[:np], h.pending[:np]) || h2.ended != h.ended {
		t.Fatal("round trip changed the state")
	}
}
