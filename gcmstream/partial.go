package gcmstream

import (
	"encoding/binary"
	"fmt"
)

// Partial is the GHASH state of one segment of a message: the byte range it
// covers and its GHASH value, kept multiplied once more by H (the form the
// standard library yields; see Stream.ghashScaled). Partials of adjacent
// segments combine into the Partial of their union (Stream.Combine); the
// Partial of the whole message gives the tag (Stream.Tag).
//
// A Partial holds no key, no H and no plaintext, but together with the
// ciphertext its GHASH value is a polynomial in H with known coefficients,
// from which H could be computed and tags forged. It therefore leaves the
// process only sealed (Stream.MarshalPartial). The zero Partial is the empty
// segment at offset 0.
type Partial struct {
	s   *Stream
	off int64
	n   int64
	q   fieldElement
}

// Offset returns the byte offset of the segment in the message.
func (p Partial) Offset() int64 { return p.off }

// Len returns the length of the segment in bytes.
func (p Partial) Len() int64 { return p.n }

// End returns Offset + Len.
func (p Partial) End() int64 { return p.off + p.n }

// Checkpoint encoding. A checkpoint is
//
//	version (1) || kind (1) || nonce (12) || AES-256-GCM(state) || tag (16)
//
// sealed with the Stream's checkpoint key (derived from the message key)
// and, as additional data, checkpointLabel || version || kind || SHA-256 of
// the IV and the AAD. The state is
//
//	flags (1) || offset (8) || length (8) || GHASH value (16) || pending
//
// integers big-endian; pending is the ciphertext after the last whole block
// of a Hasher (length mod 16 bytes), absent for a Partial and for a Hasher
// whose message ended with an unaligned Partial (flagEnded).
const (
	checkpointVersion = 1
	checkpointLabel   = "gcmstream checkpoint"
	kindHasher        = 'H'
	kindPartial       = 'P'
	flagEnded         = 1
	stateFixedSize    = 1 + 8 + 8 + 16
	checkpointMinSize = 2 + IVSize + stateFixedSize + TagSize
	checkpointMaxSize = checkpointMinSize + BlockSize - 1
)

// state is the content of a checkpoint.
type state struct {
	flags   byte
	off, n  int64
	q       fieldElement
	pending []byte
}

func (st *state) encode() []byte {
	b := make([]byte, 0, stateFixedSize+len(st.pending))
	b = append(b, st.flags)
	b = binary.BigEndian.AppendUint64(b, uint64(st.off))
	b = binary.BigEndian.AppendUint64(b, uint64(st.n))
	q := st.q.bytes()
	b = append(b, q[:]...)
	return append(b, st.pending...)
}

func errState(kind byte, format string, args ...any) error {
	what := "partial"
	if kind == kindHasher {
		what = "hasher"
	}
	return fmt.Errorf("%w: %s state: %s (hint: the checkpoint was not written by this version of gcmstream; restart the object from the beginning)", ErrCheckpoint, what, fmt.Sprintf(format, args...))
}

// decodeState parses and validates the state of a checkpoint of kind.
func decodeState(kind byte, b []byte) (state, error) {
	var st state
	if len(b) < stateFixedSize || len(b) > stateFixedSize+BlockSize-1 {
		return st, errState(kind, "%d bytes, want %d to %d", len(b), stateFixedSize, stateFixedSize+BlockSize-1)
	}
	st.flags = b[0]
	off, n := binary.BigEndian.Uint64(b[1:]), binary.BigEndian.Uint64(b[9:])
	st.q = loadElement(b[17:])
	st.pending = b[stateFixedSize:]
	if off > MaxLength || n > MaxLength || off+n > MaxLength {
		return st, errState(kind, "range [%d, +%d) exceeds %d bytes", off, n, uint64(MaxLength))
	}
	st.off, st.n = int64(off), int64(n)
	if off%BlockSize != 0 {
		return st, errState(kind, "offset %d is not a multiple of 16", off)
	}
	switch kind {
	case kindPartial:
		if st.flags != 0 || len(st.pending) != 0 {
			return st, errState(kind, "flags %#x and %d pending bytes, want none", st.flags, len(st.pending))
		}
	case kindHasher:
		switch {
		case off != 0:
			return st, errState(kind, "offset %d, want 0", off)
		case st.flags&^flagEnded != 0:
			return st, errState(kind, "unknown flags %#x", st.flags)
		case st.flags&flagEnded != 0 && (n%BlockSize == 0 || len(st.pending) != 0):
			return st, errState(kind, "ended at %d bytes with %d pending bytes", n, len(st.pending))
		case st.flags&flagEnded == 0 && uint64(len(st.pending)) != n%BlockSize:
			return st, errState(kind, "%d pending bytes after %d bytes, want %d", len(st.pending), n, n%BlockSize)
		}
	default:
		return st, errState(kind, "unknown kind %#x", kind)
	}
	return st, nil
}

func (s *Stream) checkpointAD(kind byte) []byte {
	ad := make([]byte, 0, len(checkpointLabel)+2+len(s.binding))
	ad = append(ad, checkpointLabel...)
	ad = append(ad, checkpointVersion, kind)
	return append(ad, s.binding[:]...)
}

// sealState returns the checkpoint of st. The caller holds the read lock.
func (s *Stream) sealState(kind byte, st *state) []byte {
	out := []byte{checkpointVersion, kind}
	return s.ckpt.Seal(out, nil, st.encode(), s.checkpointAD(kind))
}

// openState authenticates and parses a checkpoint of kind. The caller holds
// the read lock.
func (s *Stream) openState(kind byte, data []byte) (state, error) {
	if len(data) < checkpointMinSize || len(data) > checkpointMaxSize {
		return state{}, fmt.Errorf("%w: %d bytes, want %d to %d (hint: pass the bytes MarshalBinary or MarshalPartial returned, unchanged)", ErrCheckpoint, len(data), checkpointMinSize, checkpointMaxSize)
	}
	if data[0] != checkpointVersion {
		return state{}, fmt.Errorf("%w: version %d, want %d (hint: written by another version of gcmstream; restart the object from the beginning)", ErrCheckpoint, data[0], checkpointVersion)
	}
	if data[1] != kind {
		return state{}, fmt.Errorf("%w: kind %q, want %q (hint: a Hasher checkpoint goes to Hasher.UnmarshalBinary, a Partial to Stream.UnmarshalPartial)", ErrCheckpoint, data[1], kind)
	}
	plain, err := s.ckpt.Open(nil, nil, data[2:], s.checkpointAD(kind))
	if err != nil {
		return state{}, fmt.Errorf("%w: it does not authenticate under this key, IV and AAD (hint: it belongs to another object or data key, or was altered; resume with the same data key and envelope, or restart the object)", ErrCheckpoint)
	}
	return decodeState(kind, plain)
}

// MarshalPartial returns p sealed for a checkpoint: encrypted and
// authenticated under a key derived from the message key, and bound to the
// IV and AAD. Its range and GHASH value are inside the sealed part; no key,
// H or plaintext is in it at all.
func (s *Stream) MarshalPartial(p Partial) ([]byte, error) {
	if p.n != 0 && p.s != s {
		return nil, fmt.Errorf("%w: the partial was computed by another Stream (hint: marshal it with the Stream that made it)", ErrPartials)
	}
	if err := s.rlock("MarshalPartial"); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	return s.sealState(kindPartial, &state{off: p.off, n: p.n, q: p.q}), nil
}

// UnmarshalPartial opens a checkpoint made by MarshalPartial with the same
// key, IV and AAD. Errors wrap ErrCheckpoint.
func (s *Stream) UnmarshalPartial(data []byte) (Partial, error) {
	if err := s.rlock("UnmarshalPartial"); err != nil {
		return Partial{}, err
	}
	defer s.mu.RUnlock()
	st, err := s.openState(kindPartial, data)
	if err != nil {
		return Partial{}, err
	}
	return Partial{s: s, off: st.off, n: st.n, q: st.q}, nil
}
