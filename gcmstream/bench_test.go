package gcmstream

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"
)

const benchSize = 64 << 20

// BenchmarkEngine compares the parallel Engine with crypto/cipher's
// one-shot Seal and Open on the same 64 MiB buffer in the same process.
// Engine sub-benchmarks report x-vs-stdlib: crypto/cipher's time divided by
// the engine's (above 1: the engine is faster), each the best of runs
// alternating between the two after the timed loop, so that the speed
// changes of a shared machine affect both alike. Run with -cpu to vary
// GOMAXPROCS; the engine uses GOMAXPROCS workers.
func BenchmarkEngine(b *testing.B) {
	ctx := context.Background()
	r := newRand(b)
	key, iv := randBytes(r, 32), randBytes(r, IVSize)
	plaintext := randBytes(r, benchSize)
	g := stdGCM(b, key)
	sealed := g.Seal(nil, iv, plaintext, nil)
	dst := make([]byte, benchSize+TagSize)
	s, err := New(key, iv, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()

	std := map[string]func(){
		"Seal": func() { g.Seal(dst[:0], iv, plaintext, nil) },
		"Open": func() {
			if _, err := g.Open(dst[:0], iv, sealed, nil); err != nil {
				b.Fatal(err)
			}
		},
	}
	for _, op := range []string{"Seal", "Open"} {
		b.Run(op+"/stdlib", func(b *testing.B) {
			b.SetBytes(benchSize)
			for b.Loop() {
				std[op]()
			}
		})
		for _, chunk := range []int{256 << 10, 1 << 20, 4 << 20} {
			e := Engine{ChunkSize: chunk}
			run := map[string]func(){
				"Seal": func() {
					if _, err := e.Seal(ctx, s, dst[:0], plaintext); err != nil {
						b.Fatal(err)
					}
				},
				"Open": func() {
					if _, err := e.Open(ctx, s, dst[:0], sealed); err != nil {
						b.Fatal(err)
					}
				},
			}
			b.Run(fmt.Sprintf("%s/engine/chunk=%dKiB", op, chunk>>10), func(b *testing.B) {
				b.SetBytes(benchSize)
				for b.Loop() {
					run[op]()
				}
				b.ReportMetric(speedup(std[op], run[op]), "x-vs-stdlib")
				b.ReportMetric(float64(runtime.GOMAXPROCS(0)), "workers")
			})
		}
		// The same parallel engine with pure Go GHASH (the fastest table
		// variant) instead of crypto/cipher's: what pure Go can reach.
		tbl := newTable8x16x2(s.h)
		pure := map[string]func(){
			"Seal": func() {
				p, err := Engine{}.memory(ctx, s, dst, plaintext, 0, "bench", pureGoSegment(tbl, true))
				if err == nil {
					_, err = s.Tag(p)
				}
				if err != nil {
					b.Fatal(err)
				}
			},
			"Open": func() {
				p, err := Engine{}.memory(ctx, s, dst, sealed[:benchSize], 0, "bench", pureGoSegment(tbl, false))
				if err == nil {
					err = s.Verify(p, sealed[benchSize:])
				}
				if err != nil {
					b.Fatal(err)
				}
			},
		}
		b.Run(op+"/purego-engine/chunk=1024KiB", func(b *testing.B) {
			b.SetBytes(benchSize)
			for b.Loop() {
				pure[op]()
			}
			b.ReportMetric(speedup(std[op], pure[op]), "x-vs-stdlib")
			b.ReportMetric(float64(runtime.GOMAXPROCS(0)), "workers")
		})
	}
}

// BenchmarkReencrypt measures the rotation of a 64 MiB object to a new
// data key: crypto/cipher's Open then Seal on one core, against
// Engine.ReencryptRange (decrypt and encrypt each chunk while in cache).
func BenchmarkReencrypt(b *testing.B) {
	ctx := context.Background()
	r := newRand(b)
	oldKey, newKey, iv := randBytes(r, 32), randBytes(r, 32), randBytes(r, IVSize)
	gOld, gNew := stdGCM(b, oldKey), stdGCM(b, newKey)
	sealed := gOld.Seal(nil, iv, randBytes(r, benchSize), nil)
	pt, out := make([]byte, benchSize), make([]byte, benchSize+TagSize)
	std := func() {
		if _, err := gOld.Open(pt[:0], iv, sealed, nil); err != nil {
			b.Fatal(err)
		}
		gNew.Seal(out[:0], iv, pt, nil)
	}
	b.Run("stdlib", func(b *testing.B) {
		b.SetBytes(benchSize)
		for b.Loop() {
			std()
		}
	})
	from, err := New(oldKey, iv, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer from.Close()
	to, err := New(newKey, iv, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer to.Close()
	src, dst := bytes.NewReader(sealed), sliceWriterAt(out)
	eng := func() {
		f, tp, err := Engine{}.ReencryptRange(ctx, from, to, dst, src, 0, benchSize)
		if err == nil {
			err = from.Verify(f, sealed[benchSize:])
		}
		if err == nil {
			_, err = to.Tag(tp)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	b.Run("engine", func(b *testing.B) {
		b.SetBytes(benchSize)
		for b.Loop() {
			eng()
		}
		b.ReportMetric(speedup(std, eng), "x-vs-stdlib")
	})
}

// sliceWriterAt writes into a byte slice without locking (disjoint ranges).
type sliceWriterAt []byte

func (w sliceWriterAt) WriteAt(p []byte, off int64) (int, error) { return copy(w[off:], p), nil }

// pureGoSegment is a segmentFunc doing counter mode with crypto/cipher and
// GHASH with the pure Go table t.
func pureGoSegment(t *table8x16x2, seal bool) segmentFunc {
	return func(s *Stream, dst, src []byte, offset int64, _ []byte) Partial {
		dst = dst[:len(src)]
		if seal {
			s.xorKeyStream(dst, src, uint64(offset)/BlockSize)
			src = dst
		}
		full := len(src) &^ (BlockSize - 1)
		y := ghashBlocks(s.h, t.ghash(fieldElement{}, src[:full]), src[full:])
		if !seal {
			s.xorKeyStream(dst, src, uint64(offset)/BlockSize)
		}
		return Partial{s: s, off: offset, n: int64(len(dst)), q: mul(y, s.h)}
	}
}

// speedup runs std and eng alternately and returns the best time of std
// divided by the best time of eng.
func speedup(std, eng func()) float64 {
	bestStd, bestEng := time.Duration(1<<62), time.Duration(1<<62)
	for range 7 {
		start := time.Now()
		std()
		bestStd = min(bestStd, time.Since(start))
		start = time.Now()
		eng()
		bestEng = min(bestEng, time.Since(start))
	}
	return float64(bestStd) / float64(bestEng)
}

// BenchmarkGHASH measures GHASH alone on one core: through crypto/cipher
// (what the package uses) and the pure Go variants of purego_test.go.
func BenchmarkGHASH(b *testing.B) {
	r := newRand(b)
	data := randBytes(r, 1<<20)
	s, err := New(randBytes(r, 32), randBytes(r, IVSize), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.Run("stdlib-aad", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		scratch := make([]byte, 0, TagSize)
		for b.Loop() {
			s.ghashScaled(data, scratch)
		}
	})
	for name, f := range pureGoGHASH(s.h) {
		b.Run("purego-"+name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			var y fieldElement
			for b.Loop() {
				y = f(y, data)
			}
		})
	}
}

// BenchmarkSegment measures one core's segment functions on 1 MiB.
func BenchmarkSegment(b *testing.B) {
	r := newRand(b)
	s, err := New(randBytes(r, 32), randBytes(r, IVSize), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	src, dst := randBytes(r, 1<<20), make([]byte, 1<<20)
	for name, f := range map[string]func() error{
		"SealSegment": func() error { _, err := s.SealSegment(dst, src, 1<<20); return err },
		"OpenSegment": func() error { _, err := s.OpenSegment(dst, src, 1<<20); return err },
		"GHASHSegment": func() error {
			_, err := s.GHASHSegment(src, 1<<20)
			return err
		},
		"XORKeyStreamAt": func() error { return s.XORKeyStreamAt(dst, src, 1<<20) },
	} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(src)))
			for b.Loop() {
				if err := f(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkNew measures the per-message setup (H powers, H^-2, checkpoint
// key, two GCM instances).
func BenchmarkNew(b *testing.B) {
	key, iv := make([]byte, 32), make([]byte, IVSize)
	for b.Loop() {
		s, err := New(key, iv, nil)
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}

// BenchmarkMul measures the package's constant-time field multiplication.
func BenchmarkMul(b *testing.B) {
	x, y := fieldElement{1, 2}, fieldElement{3, 4}
	for b.Loop() {
		x = mul(x, y)
	}
	_ = x
}
