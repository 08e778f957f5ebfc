package gcmstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
)

// DefaultChunkSize is the chunk size of an Engine whose ChunkSize is 0.
const DefaultChunkSize = 1 << 20

// Engine encrypts and decrypts ranges of a message in parallel: it cuts
// them into chunks of ChunkSize bytes, has up to Workers goroutines
// process chunks (counter mode and GHASH of one chunk on one core), and
// combines the chunks' Partials in order. The zero Engine uses
// runtime.GOMAXPROCS workers and DefaultChunkSize.
//
// Decryption (OpenAt, OpenRange, ReencryptRange) produces plaintext before
// the message is authenticated: until Stream.Verify over the Partials of
// the whole message returns nil, that plaintext, and anything derived from
// it, must not be committed or acted on. Open does the verification itself
// and clears its output when it fails.
type Engine struct {
	// Workers is the number of chunks processed at once; 0 or less means
	// runtime.GOMAXPROCS(0).
	Workers int
	// ChunkSize is the size of a chunk in bytes, a multiple of 16; 0 means
	// DefaultChunkSize. The range methods buffer Workers chunks.
	ChunkSize int
}

func (e Engine) params() (workers, chunk int, err error) {
	workers, chunk = e.Workers, e.ChunkSize
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	if chunk == 0 {
		chunk = DefaultChunkSize
	}
	if chunk < 0 || chunk%BlockSize != 0 {
		return 0, 0, fmt.Errorf("%w: Engine.ChunkSize %d is not a positive multiple of 16 (hint: use 0 for the default of 1 MiB)", ErrOffset, chunk)
	}
	return workers, chunk, nil
}

// runChunks calls do for chunks 0..n-1 on up to workers goroutines, each
// with its worker number and a scratch slice of capacity 16, and returns the
// first error.
func runChunks(ctx context.Context, n, workers int, do func(worker, chunk int, scratch []byte) error) error {
	workers = min(workers, n)
	if workers <= 1 {
		scratch := make([]byte, 0, TagSize)
		for i := range n {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := do(0, i, scratch); err != nil {
				return err
			}
		}
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	var next atomic.Int64
	for w := range workers {
		g.Go(func() error {
			scratch := make([]byte, 0, TagSize)
			for {
				if err := gctx.Err(); err != nil {
					return err
				}
				i := int(next.Add(1) - 1)
				if i >= n {
					return nil
				}
				if err := do(w, i, scratch); err != nil {
					return err
				}
			}
		})
	}
	return g.Wait()
}

// combineInOrder returns the Partial of parts, contiguous and in order, or
// the empty Partial at offset when there are none. The caller holds the
// read lock.
func (s *Stream) combineInOrder(parts []Partial, offset int64) (Partial, error) {
	if len(parts) == 0 {
		return Partial{s: s, off: offset}, nil
	}
	acc := parts[0]
	for _, p := range parts[1:] {
		var err error
		if acc, err = s.appendPartial(acc, p); err != nil {
			return Partial{}, err // unreachable: chunks are contiguous
		}
	}
	return acc, nil
}

func chunks(n int64, chunk int) int { return int((n + int64(chunk) - 1) / int64(chunk)) }

// SealAt encrypts plaintext as the segment of the message starting at byte
// offset (a multiple of 16) into dst, in parallel, and returns the
// segment's Partial. dst must be at least as long as plaintext and may be
// plaintext itself. On error dst holds a mix of plaintext and ciphertext.
func (e Engine) SealAt(ctx context.Context, s *Stream, dst, plaintext []byte, offset int64) (Partial, error) {
	return e.memory(ctx, s, dst, plaintext, offset, "Engine.SealAt", (*Stream).sealSegment)
}

// OpenAt decrypts ciphertext as the segment of the message starting at
// byte offset (a multiple of 16) into dst, in parallel, and returns the
// segment's Partial. dst must be at least as long as ciphertext and may be
// ciphertext itself. The plaintext is unauthenticated until Stream.Verify
// over the whole message returns nil.
func (e Engine) OpenAt(ctx context.Context, s *Stream, dst, ciphertext []byte, offset int64) (Partial, error) {
	return e.memory(ctx, s, dst, ciphertext, offset, "Engine.OpenAt", (*Stream).openSegment)
}

type segmentFunc func(s *Stream, dst, src []byte, offset int64, scratch []byte) Partial

func (e Engine) memory(ctx context.Context, s *Stream, dst, src []byte, offset int64, op string, do segmentFunc) (Partial, error) {
	workers, chunk, err := e.params()
	if err != nil {
		return Partial{}, err
	}
	if err := checkSegment(offset, int64(len(src))); err != nil {
		return Partial{}, err
	}
	if err := checkBuffers(dst, src); err != nil {
		return Partial{}, err
	}
	if err := s.rlock(op); err != nil {
		return Partial{}, err
	}
	defer s.mu.RUnlock()
	parts := make([]Partial, chunks(int64(len(src)), chunk))
	err = runChunks(ctx, len(parts), workers, func(_, i int, scratch []byte) error {
		lo := i * chunk
		hi := min(lo+chunk, len(src))
		parts[i] = do(s, dst[lo:hi], src[lo:hi], offset+int64(lo), scratch)
		return nil
	})
	if err != nil {
		return Partial{}, err
	}
	return s.combineInOrder(parts, offset)
}

// Seal encrypts the whole message plaintext, appends the ciphertext and
// the tag to dst and returns the result, byte for byte what
// crypto/cipher's GCM Seal returns for the Stream's key, IV and AAD. To
// encrypt in place, pass plaintext[:0] as dst.
func (e Engine) Seal(ctx context.Context, s *Stream, dst, plaintext []byte) ([]byte, error) {
	if uint64(len(plaintext)) > MaxLength {
		return nil, errTooLong(uint64(len(plaintext)))
	}
	ret, out := sliceForAppend(dst, len(plaintext)+TagSize)
	if inexactOverlap(out, plaintext) {
		return nil, fmt.Errorf("%w: dst and plaintext overlap without starting at the same address (hint: pass plaintext[:0] to encrypt in place, or a separate buffer)", ErrBuffer)
	}
	p, err := e.SealAt(ctx, s, out, plaintext, 0)
	if err != nil {
		return nil, err
	}
	tag, err := s.Tag(p)
	if err != nil {
		return nil, err
	}
	copy(out[len(plaintext):], tag[:])
	return ret, nil
}

// Open decrypts and verifies the whole message ciphertext (with its tag
// appended), appends the plaintext to dst and returns the result, as
// crypto/cipher's GCM Open does. When the tag does not match, the error
// wraps ErrAuthentication and the output is cleared. To decrypt in place,
// pass ciphertext[:0] as dst.
func (e Engine) Open(ctx context.Context, s *Stream, dst, ciphertext []byte) ([]byte, error) {
	if len(ciphertext) < TagSize {
		return nil, fmt.Errorf("%w: ciphertext is %d bytes, shorter than the %d-byte tag (hint: the object is truncated)", ErrAuthentication, len(ciphertext), TagSize)
	}
	n := len(ciphertext) - TagSize
	tag := ciphertext[n:]
	ret, out := sliceForAppend(dst, n)
	if inexactOverlap(out, ciphertext) {
		return nil, fmt.Errorf("%w: dst and ciphertext overlap without starting at the same address (hint: pass ciphertext[:0] to decrypt in place, or a separate buffer)", ErrBuffer)
	}
	var saved [TagSize]byte
	copy(saved[:], tag) // out may cover it when dst has room beyond ciphertext
	p, err := e.OpenAt(ctx, s, out, ciphertext[:n], 0)
	if err != nil {
		clear(out)
		return nil, err
	}
	if err := s.Verify(p, saved[:]); err != nil {
		clear(out)
		return nil, err
	}
	return ret, nil
}

// sliceForAppend extends in by n bytes, reusing its capacity when it can,
// and returns the whole slice and the new part.
func sliceForAppend(in []byte, n int) (head, tail []byte) {
	if total := len(in) + n; cap(in) >= total {
		head = in[:total]
	} else {
		head = make([]byte, total)
		copy(head, in)
	}
	return head, head[len(in):]
}

// SealRange reads length bytes of plaintext from src at offset, encrypts
// them in parallel as the segment of the message at offset (a multiple of
// 16) and writes the ciphertext to dst at the same offset. It returns the
// segment's Partial. dst must accept concurrent writes to disjoint ranges
// (as *os.File does). Memory use is Workers x ChunkSize.
func (e Engine) SealRange(ctx context.Context, s *Stream, dst io.WriterAt, src io.ReaderAt, offset, length int64) (Partial, error) {
	return e.ranged(ctx, s, dst, src, offset, length, "Engine.SealRange", (*Stream).sealSegment)
}

// OpenRange reads length bytes of ciphertext from src at offset, decrypts
// them in parallel as the segment of the message at offset (a multiple of
// 16) and writes the plaintext to dst at the same offset. It returns the
// segment's Partial. dst must accept concurrent writes to disjoint ranges.
// The plaintext written is unauthenticated until Stream.Verify over the
// whole message returns nil.
func (e Engine) OpenRange(ctx context.Context, s *Stream, dst io.WriterAt, src io.ReaderAt, offset, length int64) (Partial, error) {
	return e.ranged(ctx, s, dst, src, offset, length, "Engine.OpenRange", (*Stream).openSegment)
}

func (e Engine) ranged(ctx context.Context, s *Stream, dst io.WriterAt, src io.ReaderAt, offset, length int64, op string, do segmentFunc) (Partial, error) {
	workers, chunk, err := e.params()
	if err != nil {
		return Partial{}, err
	}
	if err := checkRange(offset, length); err != nil {
		return Partial{}, err
	}
	if err := s.rlock(op); err != nil {
		return Partial{}, err
	}
	defer s.mu.RUnlock()
	parts := make([]Partial, chunks(length, chunk))
	bufs := make([][]byte, min(workers, len(parts)))
	defer clearAll(bufs)
	err = runChunks(ctx, len(parts), workers, func(w, i int, scratch []byte) error {
		lo, buf := chunkBuffer(bufs, w, i, chunk, offset, length)
		if err := readChunk(src, buf, lo, op); err != nil {
			return err
		}
		parts[i] = do(s, buf, buf, lo, scratch)
		return writeChunk(dst, buf, lo, op)
	})
	if err != nil {
		return Partial{}, err
	}
	return s.combineInOrder(parts, offset)
}

// ReencryptRange reads length bytes of ciphertext of message from at
// offset (a multiple of 16) from src, decrypts them and encrypts the
// plaintext as the same range of message to, in parallel, and writes the
// new ciphertext to dst at the same offset: the rotation of an object's
// data key, part by part. The plaintext never leaves the engine's chunk
// buffers, which are cleared before it returns. It returns the Partials of
// the range in both messages.
//
// The old message is not authenticated yet: the new ciphertext may be
// uploaded as parts, but the new object must not be committed (the
// multipart upload completed) before from.Verify over the old message's
// whole Partial returns nil.
func (e Engine) ReencryptRange(ctx context.Context, from, to *Stream, dst io.WriterAt, src io.ReaderAt, offset, length int64) (fromPartial, toPartial Partial, err error) {
	const op = "Engine.ReencryptRange"
	workers, chunk, err := e.params()
	if err != nil {
		return Partial{}, Partial{}, err
	}
	if from == to {
		return Partial{}, Partial{}, fmt.Errorf("%w: %s from and to the same Stream (hint: re-encrypt under a new data key or IV)", ErrPartials, op)
	}
	if err := checkRange(offset, length); err != nil {
		return Partial{}, Partial{}, err
	}
	// Lock in a fixed order so that two crossed calls and a pending Close
	// cannot deadlock.
	first, second := from, to
	if second != nil && (first == nil || second.id < first.id) {
		first, second = second, first
	}
	if err := first.rlock(op); err != nil {
		return Partial{}, Partial{}, err
	}
	defer first.mu.RUnlock()
	if err := second.rlock(op); err != nil {
		return Partial{}, Partial{}, err
	}
	defer second.mu.RUnlock()
	fromParts := make([]Partial, chunks(length, chunk))
	toParts := make([]Partial, len(fromParts))
	bufs := make([][]byte, min(workers, len(fromParts)))
	defer clearAll(bufs)
	err = runChunks(ctx, len(fromParts), workers, func(w, i int, scratch []byte) error {
		lo, buf := chunkBuffer(bufs, w, i, chunk, offset, length)
		if err := readChunk(src, buf, lo, op); err != nil {
			return err
		}
		fromParts[i] = from.openSegment(buf, buf, lo, scratch)
		toParts[i] = to.sealSegment(buf, buf, lo, scratch)
		return writeChunk(dst, buf, lo, op)
	})
	if err != nil {
		return Partial{}, Partial{}, err
	}
	if fromPartial, err = from.combineInOrder(fromParts, offset); err != nil {
		return Partial{}, Partial{}, err
	}
	if toPartial, err = to.combineInOrder(toParts, offset); err != nil {
		return Partial{}, Partial{}, err
	}
	return fromPartial, toPartial, nil
}

// checkRange validates a range of an io.ReaderAt.
func checkRange(offset, length int64) error {
	if length < 0 || length > MaxLength {
		return errTooLong(uint64(length))
	}
	return checkSegment(offset, length)
}

// chunkBuffer returns the offset of chunk i of the range and worker w's
// buffer cut to its length, allocated on first use.
func chunkBuffer(bufs [][]byte, w, i, chunk int, offset, length int64) (int64, []byte) {
	if bufs[w] == nil {
		bufs[w] = make([]byte, chunk)
	}
	lo := offset + int64(i)*int64(chunk)
	return lo, bufs[w][:min(int64(chunk), offset+length-lo)]
}

func readChunk(src io.ReaderAt, buf []byte, lo int64, op string) error {
	m, err := src.ReadAt(buf, lo)
	if m == len(buf) {
		return nil // io.ReaderAt may report io.EOF with a full read
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("gcmstream: %s: read bytes [%d, %d): %w (hint: the source is shorter than offset + length, or failed)", op, lo, lo+int64(len(buf)), err)
}

func writeChunk(dst io.WriterAt, buf []byte, lo int64, op string) error {
	if _, err := dst.WriteAt(buf, lo); err != nil {
		return fmt.Errorf("gcmstream: %s: write bytes [%d, %d): %w", op, lo, lo+int64(len(buf)), err)
	}
	return nil
}

// clearAll clears the chunk buffers, which held plaintext.
func clearAll(bufs [][]byte) {
	for _, b := range bufs {
		clear(b)
	}
}
