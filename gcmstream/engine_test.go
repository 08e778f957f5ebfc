package gcmstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
)

// TestEngineConfigurations: every worker count and chunk size gives
// crypto/cipher's output.
func TestEngineConfigurations(t *testing.T) {
	ctx := context.Background()
	r := newRand(t)
	for _, n := range []int{0, 1, 4095, 100000 + 3, 1<<20 + 17} {
		m := newMessage(t, r, 32, 2, n)
		s := m.stream(t)
		for _, workers := range []int{0, 1, 2, 3, 16} {
			for _, chunk := range []int{0, 16, 48, 4096, 1 << 20} {
				if chunk != 0 && n/chunk > 2000 {
					continue
				}
				e := Engine{Workers: workers, ChunkSize: chunk}
				got, err := e.Seal(ctx, s, nil, m.plaintext)
				if err != nil || !bytes.Equal(got, m.sealed) {
					t.Fatalf("n=%d %+v: Seal differs: %v", n, e, err)
				}
				pt, err := e.Open(ctx, s, nil, m.sealed)
				if err != nil || !bytes.Equal(pt, m.plaintext) {
					t.Fatalf("n=%d %+v: Open: %v", n, e, err)
				}
			}
		}
	}
}

// TestEngineParts encrypts and decrypts a message part by part at their
// offsets, as a multipart upload does, and combines the parts' Partials.
func TestEngineParts(t *testing.T) {
	ctx := context.Background()
	r := newRand(t)
	m := newMessage(t, r, 32, -1, 3<<20+5)
	s := m.stream(t)
	e := Engine{Workers: 2, ChunkSize: 256 << 10}
	const part = 1 << 20
	ct := make([]byte, len(m.plaintext))
	pt := make([]byte, len(m.plaintext))
	var sealed, opened []Partial
	for lo := 0; lo < len(ct); lo += part {
		hi := min(lo+part, len(ct))
		p, err := e.SealAt(ctx, s, ct[lo:hi], m.plaintext[lo:hi], int64(lo))
		if err != nil {
			t.Fatal(err)
		}
		sealed = append(sealed, p)
		if p, err = e.OpenAt(ctx, s, pt[lo:hi], m.ciphertext()[lo:hi], int64(lo)); err != nil {
			t.Fatal(err)
		}
		opened = append(opened, p)
	}
	if !bytes.Equal(ct, m.ciphertext()) || !bytes.Equal(pt, m.plaintext) {
		t.Fatal("parts differ")
	}
	for _, parts := range [][]Partial{sealed, opened} {
		total, err := s.Combine(parts...)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Verify(total, m.tag()); err != nil {
			t.Fatal(err)
		}
	}
	empty, err := e.SealAt(ctx, s, nil, nil, 32)
	if err != nil || empty.Offset() != 32 || empty.Len() != 0 {
		t.Fatalf("empty SealAt = %+v, %v", empty, err)
	}
}

// memFile is an in-memory io.ReaderAt and io.WriterAt.
type memFile struct {
	mu       sync.Mutex
	b        []byte
	failAt   int64 // WriteAt at this offset fails when > 0
	writeErr error
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if off >= int64(len(f.b)) {
		return 0, io.EOF
	}
	n := copy(p, f.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failAt > 0 && off == f.failAt {
		return 0, f.writeErr
	}
	if end := off + int64(len(p)); end > int64(len(f.b)) {
		f.b = append(f.b, make([]byte, end-int64(len(f.b)))...)
	}
	return copy(f.b[off:], p), nil
}

// TestEngineRanges runs SealRange and OpenRange over ranges of a message,
// as parallel ranged GETs and part uploads would.
func TestEngineRanges(t *testing.T) {
	ctx := context.Background()
	r := newRand(t)
	m := newMessage(t, r, 32, 11, 2<<20+100)
	s := m.stream(t)
	for _, e := range []Engine{{}, {Workers: 1, ChunkSize: 4096}, {Workers: 3, ChunkSize: 64 << 10}} {
		src, enc, dec := &memFile{b: m.plaintext}, &memFile{}, &memFile{}
		ctSrc := &memFile{b: m.sealed} // ciphertext || tag, as in S3
		cuts := randomCuts(r, len(m.plaintext), 5)
		var sealed, opened []Partial
		for i := range len(cuts) - 1 {
			off, n := int64(cuts[i]), int64(cuts[i+1]-cuts[i])
			p, err := e.SealRange(ctx, s, enc, src, off, n)
			if err != nil {
				t.Fatal(err)
			}
			sealed = append(sealed, p)
			if p, err = e.OpenRange(ctx, s, dec, ctSrc, off, n); err != nil {
				t.Fatal(err)
			}
			opened = append(opened, p)
		}
		if !bytes.Equal(enc.b, m.ciphertext()) || !bytes.Equal(dec.b, m.plaintext) {
			t.Fatalf("%+v: ranges differ", e)
		}
		for _, parts := range [][]Partial{sealed, opened} {
			total, err := s.Combine(parts...)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Verify(total, m.tag()); err != nil {
				t.Fatal(err)
			}
		}
	}
	p, err := Engine{}.OpenRange(ctx, s, &memFile{}, ctSrcEmpty(), 48, 0)
	if err != nil || p.Offset() != 48 || p.Len() != 0 {
		t.Fatalf("empty OpenRange = %+v, %v", p, err)
	}
}

func ctSrcEmpty() io.ReaderAt { return &memFile{} }

func TestEngineRangeErrors(t *testing.T) {
	ctx := context.Background()
	r := newRand(t)
	m := newMessage(t, r, 32, -1, 1<<20)
	s := m.stream(t)
	e := Engine{Workers: 2, ChunkSize: 64 << 10}

	_, err := e.OpenRange(ctx, s, &memFile{}, &memFile{b: m.sealed}, 0, int64(len(m.sealed))+1)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short source: %v", err)
	}
	boom := errors.New("disk full")
	_, err = e.SealRange(ctx, s, &memFile{failAt: 128 << 10, writeErr: boom}, &memFile{b: m.plaintext}, 0, 1<<20)
	if !errors.Is(err, boom) {
		t.Fatalf("write error: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = e.SealRange(cctx, s, &memFile{}, &memFile{b: m.plaintext}, 0, 1<<20)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	_, err = Engine{Workers: 1}.Seal(cctx, s, nil, m.plaintext)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	_, err = e.OpenRange(ctx, s, &memFile{}, &memFile{b: m.sealed}, 8, 16)
	wantErr(t, err, ErrOffset)
	_, err = e.OpenRange(ctx, s, &memFile{}, &memFile{b: m.sealed}, 0, -1)
	wantErr(t, err, ErrTooLong)
}

func ExampleEngine_Open() {
	key, iv := make([]byte, 32), make([]byte, 12)
	s, err := New(key, iv, nil)
	if err != nil {
		panic(err)
	}
	defer s.Close()
	var e Engine // GOMAXPROCS workers, 1 MiB chunks
	sealed, _ := e.Seal(context.Background(), s, nil, []byte("hello"))
	sealed[0] ^= 1
	_, err = e.Open(context.Background(), s, nil, sealed)
	fmt.Println(errors.Is(err, ErrAuthentication))
	// Output: true
}

// TestReencryptRange rotates a message to a new key and IV range by range
// and checks the result against crypto/cipher under the new key.
func TestReencryptRange(t *testing.T) {
	ctx := context.Background()
	r := newRand(t)
	old := newMessage(t, r, 32, -1, 3<<20+33)
	fresh := &message{key: randBytes(r, 32), iv: randBytes(r, IVSize), plaintext: old.plaintext, aad: []byte{0, 0x73}}
	fresh.sealed = stdGCM(t, fresh.key).Seal(nil, fresh.iv, fresh.plaintext, fresh.aad)
	from, to := old.stream(t), fresh.stream(t)
	for _, e := range []Engine{{}, {Workers: 1, ChunkSize: 4096}, {Workers: 4, ChunkSize: 256 << 10}} {
		src, dst := &memFile{b: old.sealed}, &memFile{}
		cuts := randomCuts(r, len(old.plaintext), 4)
		var fromParts, toParts []Partial
		for i := range len(cuts) - 1 {
			f, tp, err := e.ReencryptRange(ctx, from, to, dst, src, int64(cuts[i]), int64(cuts[i+1]-cuts[i]))
			if err != nil {
				t.Fatal(err)
			}
			fromParts, toParts = append(fromParts, f), append(toParts, tp)
		}
		fromTotal, err := from.Combine(fromParts...)
		if err != nil {
			t.Fatal(err)
		}
		if err := from.Verify(fromTotal, old.tag()); err != nil {
			t.Fatal(err)
		}
		toTotal, err := to.Combine(toParts...)
		if err != nil {
			t.Fatal(err)
		}
		tag, err := to.Tag(toTotal)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(append(dst.b, tag[:]...), fresh.sealed) {
			t.Fatalf("%+v: re-encrypted object differs from crypto/cipher", e)
		}
	}
	// Crossed calls with Close pending must not deadlock (run with -race).
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			a, b := from, to
			if i%2 == 1 {
				a, b = to, from
			}
			Engine{Workers: 2, ChunkSize: 64 << 10}.ReencryptRange(ctx, a, b, &memFile{}, &memFile{b: old.sealed}, 0, 1<<20)
		})
	}
	_, _, err := Engine{}.ReencryptRange(ctx, from, from, &memFile{}, &memFile{}, 0, 0)
	wantErr(t, err, ErrPartials)
	wg.Go(func() { from.Close() })
	wg.Go(func() { to.Close() })
	wg.Wait()
}
