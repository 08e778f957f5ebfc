package gcmstream

import (
	"encoding"
	"fmt"
	"io"
)

// Hasher accumulates GHASH over the ciphertext of a message in order, from
// offset 0: written bytes (Write) or the Partials of whole segments
// (Append). Its state can be checkpointed after any call (MarshalBinary)
// and resumed later, in another process, without reading the earlier
// ciphertext again (UnmarshalBinary on a Hasher of a Stream with the same
// key, IV and AAD). A Hasher is not safe for concurrent use.
type Hasher struct {
	s *Stream
	n int64
	// q is the scaled GHASH value (see Partial) of the whole blocks
	// written, and of the final padded block once ended.
	q fieldElement
	// pending holds the n mod 16 bytes after the last whole block.
	pending [BlockSize]byte
	// ended: an unaligned Partial was appended, the message is complete.
	ended   bool
	scratch []byte
}

var (
	_ io.Writer                  = (*Hasher)(nil)
	_ encoding.BinaryMarshaler   = (*Hasher)(nil)
	_ encoding.BinaryUnmarshaler = (*Hasher)(nil)
)

// NewHasher returns an empty Hasher of the message.
func (s *Stream) NewHasher() *Hasher {
	return &Hasher{s: s, scratch: make([]byte, 0, TagSize)}
}

// Len returns the number of ciphertext bytes hashed so far.
func (h *Hasher) Len() int64 { return h.n }

// Reset empties the Hasher.
func (h *Hasher) Reset() {
	h.n, h.q, h.pending, h.ended = 0, fieldElement{}, [BlockSize]byte{}, false
}

func (h *Hasher) errEnded(op string) error {
	return fmt.Errorf("%w: %s after the message ended with an unaligned segment at %d bytes (hint: only the last segment may end unaligned)", ErrPartials, op, h.n)
}

// Write hashes the next ciphertext bytes of the message. It never returns
// a short count without an error.
func (h *Hasher) Write(ciphertext []byte) (int, error) {
	if h.ended {
		return 0, h.errEnded("Write")
	}
	if end := uint64(h.n) + uint64(len(ciphertext)); end > MaxLength {
		return 0, errTooLong(end)
	}
	if err := h.s.rlock("Hasher.Write"); err != nil {
		return 0, err
	}
	defer h.s.mu.RUnlock()
	s, p := h.s, ciphertext
	if np := int(h.n % BlockSize); np > 0 {
		c := copy(h.pending[np:], p)
		p = p[c:]
		if np+c < BlockSize {
			h.n += int64(len(ciphertext))
			return len(ciphertext), nil
		}
		h.q = s.pow.mulPow(h.q, 1).xor(s.ghashScaled(h.pending[:], h.scratch))
	}
	if full := len(p) &^ (BlockSize - 1); full > 0 {
		h.q = s.pow.mulPow(h.q, uint64(full/BlockSize)).xor(s.ghashScaled(p[:full], h.scratch))
		p = p[full:]
	}
	copy(h.pending[:], p)
	h.n += int64(len(ciphertext))
	return len(ciphertext), nil
}

// Append adds the Partial of the next segment, which must start where the
// Hasher stands (Len) at a multiple of 16 bytes: the way to checkpoint a
// message whose segments (multipart parts) were processed in parallel, in
// order as they complete. A segment with an unaligned length ends the
// message.
func (h *Hasher) Append(p Partial) error {
	if p.n == 0 {
		return nil
	}
	if p.s != h.s {
		return fmt.Errorf("%w: partial [%d, %d) was computed by another Stream (hint: append only partials of the Hasher's own message)", ErrPartials, p.off, p.End())
	}
	if h.ended {
		return h.errEnded("Append")
	}
	if h.n%BlockSize != 0 || p.off != h.n {
		return fmt.Errorf("%w: partial [%d, %d) appended to a hasher at %d bytes (hint: append segments in order, without gaps, after whole blocks)", ErrPartials, p.off, p.End(), h.n)
	}
	if err := h.s.rlock("Hasher.Append"); err != nil {
		return err
	}
	defer h.s.mu.RUnlock()
	h.q = h.s.pow.mulPow(h.q, blocks(p.n)).xor(p.q)
	h.n += p.n
	h.ended = p.n%BlockSize != 0
	return nil
}

// Partial returns the Partial of everything hashed so far, from offset 0.
func (h *Hasher) Partial() (Partial, error) {
	if err := h.s.rlock("Hasher.Partial"); err != nil {
		return Partial{}, err
	}
	defer h.s.mu.RUnlock()
	return h.partial(), nil
}

func (h *Hasher) partial() Partial {
	q := h.q
	if np := h.n % BlockSize; np != 0 && !h.ended {
		q = h.s.pow.mulPow(q, 1).xor(h.s.ghashScaled(h.pending[:np], h.scratch))
	}
	return Partial{s: h.s, n: h.n, q: q}
}

// Tag returns the tag of the message, taking everything hashed as its whole
// ciphertext. The Hasher is unchanged and may go on.
func (h *Hasher) Tag() ([TagSize]byte, error) {
	p, err := h.Partial()
	if err != nil {
		return [TagSize]byte{}, err
	}
	return h.s.Tag(p)
}

// Verify checks in constant time that tag is the tag of the message,
// taking everything hashed as its whole ciphertext. Errors wrap
// ErrAuthentication (or ErrClosed).
func (h *Hasher) Verify(tag []byte) error {
	p, err := h.Partial()
	if err != nil {
		return err
	}
	return h.s.Verify(p, tag)
}

// MarshalBinary returns the Hasher's state as a checkpoint: the byte count,
// the GHASH value and the up to 15 ciphertext bytes after the last whole
// block, encrypted and authenticated under a key derived from the message
// key and bound to the IV and AAD. It never contains the key, H or
// plaintext, and the sealing hides the GHASH value too (which with the
// ciphertext would reveal H).
func (h *Hasher) MarshalBinary() ([]byte, error) {
	if err := h.s.rlock("Hasher.MarshalBinary"); err != nil {
		return nil, err
	}
	defer h.s.mu.RUnlock()
	st := state{n: h.n, q: h.q}
	if h.ended {
		st.flags = flagEnded
	} else {
		st.pending = h.pending[:h.n%BlockSize]
	}
	return h.s.sealState(kindHasher, &st), nil
}

// UnmarshalBinary restores a state written by MarshalBinary. The Hasher
// must come from NewHasher of a Stream with the same key, IV and AAD as the
// one that wrote it; otherwise, or if data was altered, the error wraps
// ErrCheckpoint and the Hasher is unchanged.
func (h *Hasher) UnmarshalBinary(data []byte) error {
	if h.s == nil {
		return fmt.Errorf("%w: the Hasher has no Stream (hint: create it with Stream.NewHasher, then call UnmarshalBinary)", ErrCheckpoint)
	}
	if err := h.s.rlock("Hasher.UnmarshalBinary"); err != nil {
		return err
	}
	defer h.s.mu.RUnlock()
	st, err := h.s.openState(kindHasher, data)
	if err != nil {
		return err
	}
	h.Reset()
	h.n, h.q, h.ended = st.n, st.q, st.flags&flagEnded != 0
	copy(h.pending[:], st.pending)
	if h.scratch == nil {
		h.scratch = make([]byte, 0, TagSize)
	}
	return nil
}
