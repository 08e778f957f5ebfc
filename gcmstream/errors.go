package gcmstream

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error from the package's own checks wraps exactly
// one of them, so callers branch with errors.Is; the message around it says
// what was wrong and what to do. Errors of the caller's io.ReaderAt and
// io.WriterAt and of the context are wrapped as they are.
var (
	// ErrKeySize: the key is not 16, 24 or 32 bytes long.
	ErrKeySize = errors.New("gcmstream: invalid AES key size")
	// ErrIVSize: the IV is not 12 bytes long (the only size S3 Encryption
	// Client content uses).
	ErrIVSize = errors.New("gcmstream: invalid IV size")
	// ErrOffset: a segment starts at a negative offset or at one that is not
	// a multiple of 16, or an engine chunk size is not a positive multiple of
	// 16.
	ErrOffset = errors.New("gcmstream: misaligned segment")
	// ErrTooLong: the message would exceed MaxLength, the most one GCM
	// message can hold with its 32-bit block counter.
	ErrTooLong = errors.New("gcmstream: message too long for AES-GCM")
	// ErrBuffer: dst is shorter than src, or dst and src overlap without
	// starting at the same address.
	ErrBuffer = errors.New("gcmstream: invalid output buffer")
	// ErrPartials: partials that must be combined or tagged do not form one
	// contiguous range (a gap, an overlap, an unaligned segment that is not
	// the last one, a range not starting at 0), or come from another Stream.
	ErrPartials = errors.New("gcmstream: partials do not form one range of this message")
	// ErrCheckpoint: a checkpoint does not authenticate under this key, IV
	// and AAD (it belongs to another object or data key, or it was altered),
	// or it is malformed.
	ErrCheckpoint = errors.New("gcmstream: invalid checkpoint")
	// ErrAuthentication: the tag does not match: wrong key, IV or AAD, or
	// altered ciphertext or tag. Any plaintext already produced must be
	// discarded.
	ErrAuthentication = errors.New("gcmstream: message authentication failed")
	// ErrClosed: the Stream was closed.
	ErrClosed = errors.New("gcmstream: stream is closed")
)

func errOffset(offset int64) error {
	return fmt.Errorf("%w: offset %d is not a non-negative multiple of 16 (hint: cut segments at multiples of 16 bytes; only the last segment of a message may end anywhere)", ErrOffset, offset)
}

func errTooLong(end uint64) error {
	return fmt.Errorf("%w: range ends at byte %d, beyond %d (2^36 - 32) (hint: GCM's 32-bit counter covers no more; such an object cannot be valid AES-GCM, check the content length)", ErrTooLong, end, uint64(MaxLength))
}

func errClosed(op string) error {
	return fmt.Errorf("%w: %s after Close (hint: create a new Stream with New)", ErrClosed, op)
}
