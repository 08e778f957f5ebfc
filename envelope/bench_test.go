package envelope

import (
	"crypto/rand"
	"fmt"
	"testing"
)

func BenchmarkContent(b *testing.B) {
	dk := testDataKey(1)
	for _, f := range []Format{V2, V3} {
		for _, size := range []int{1 << 10, 1 << 20, 16 << 20} {
			pt := make([]byte, size)
			b.Run(fmt.Sprintf("Encrypt/%v/%dKiB", f, size>>10), func(b *testing.B) {
				b.SetBytes(int64(size))
				for b.Loop() {
					if _, _, err := EncryptContent(f, dk, pt, rand.Reader); err != nil {
						b.Fatal(err)
					}
				}
			})
			env, ct, err := EncryptContent(f, dk, pt, rand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			b.Run(fmt.Sprintf("Decrypt/%v/%dKiB", f, size>>10), func(b *testing.B) {
				b.SetBytes(int64(size))
				for b.Loop() {
					if _, err := DecryptContent(env, dk, ct); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkEnvelope(b *testing.B) {
	s := seal(b, V3, PlacementMetadata, WrapKMSContext, []byte("x"), 1)
	b.Run("Parse", func(b *testing.B) {
		for b.Loop() {
			if _, err := Parse(s.meta, nil, ParseOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Metadata", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.env.Metadata(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("DeriveV3", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.env.ContentKey(s.dataKey); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("UnwrapAESGCM", func(b *testing.B) {
		w, _ := WrapKeyAESGCM(testKEK(), s.dataKey, ContentCommitKey, rand.Reader)
		for b.Loop() {
			if _, err := UnwrapKeyAESGCM(testKEK(), w, ContentCommitKey); err != nil {
				b.Fatal(err)
			}
		}
	})
}
