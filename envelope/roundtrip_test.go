package envelope

import (
	"bytes"
	"fmt"
	"maps"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for i, w := range writable {
		for _, size := range []int{0, 1, 16, 1000} {
			t.Run(fmt.Sprintf("%v/%v/%s/%d", w.f, w.p, w.alg, size), func(t *testing.T) {
				t.Parallel()
				pt := bytes.Repeat([]byte{byte(size)}, size)
				s := seal(t, w.f, w.p, w.alg, pt, byte(i))
				env, err := Parse(s.meta, s.instr, ParseOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if env.Format != w.f || env.Placement != w.p || env.WrapAlg != w.alg {
					t.Fatalf("parsed %v/%v/%s", env.Format, env.Placement, env.WrapAlg)
				}
				if !maps.Equal(env.MatDesc, s.env.MatDesc) || !bytes.Equal(env.WrappedKey, s.env.WrappedKey) ||
					!bytes.Equal(env.IV, s.env.IV) || !bytes.Equal(env.MessageID, s.env.MessageID) ||
					!bytes.Equal(env.KeyCommitment, s.env.KeyCommitment) || env.CEKAlg != s.env.CEKAlg ||
					env.TagLenBits != s.env.TagLenBits {
					t.Fatalf("parsed envelope differs:\n got %+v\nwant %+v", env, s.env)
				}
				dk, err := unwrapFor(t, env, s.dataKey)
				if err != nil {
					t.Fatal(err)
				}
				defer dk.Clear()
				if !dk.Equal(s.dataKey) {
					t.Fatal("unwrapped data key differs")
				}
				got, err := DecryptContent(env, dk, s.body)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, pt) {
					t.Fatal("plaintext differs")
				}
				if len(s.body) != size+TagSize {
					t.Fatalf("body is %d bytes, want %d", len(s.body), size+TagSize)
				}

				// Writing the parsed envelope again reproduces the bytes.
				var meta2 map[string]string
				var instr2 []byte
				if w.p == PlacementMetadata {
					meta2, err = env.Metadata()
				} else {
					meta2, instr2, err = env.InstructionFile()
				}
				if err != nil {
					t.Fatal(err)
				}
				if !maps.Equal(meta2, s.meta) || !bytes.Equal(instr2, s.instr) {
					t.Fatalf("rewrite differs:\n got %v %s\nwant %v %s", meta2, instr2, s.meta, s.instr)
				}
			})
		}
	}
}

// TestRewrapAcrossAlgorithms moves each writable envelope to every other
// wrapping algorithm and checks that only the wrapping changed.
func TestRewrapAcrossAlgorithms(t *testing.T) {
	algs := []WrapAlg{WrapKMSContext, WrapAESGCM, WrapRSAOAEPSHA1}
	for i, w := range writable {
		for _, to := range algs {
			t.Run(fmt.Sprintf("%v/%v/%s->%s", w.f, w.p, w.alg, to), func(t *testing.T) {
				t.Parallel()
				s := seal(t, w.f, w.p, w.alg, []byte("rewrap me"), byte(40+i))
				src, err := Parse(s.meta, s.instr, ParseOptions{})
				if err != nil {
					t.Fatal(err)
				}
				dk, err := unwrapFor(t, src, s.dataKey)
				if err != nil {
					t.Fatal(err)
				}
				defer dk.Clear()
				var wrapped []byte
				var md map[string]string
				switch to {
				case WrapAESGCM:
					wrapped, err = WrapKeyAESGCM(testKEK(), dk, src.CEKAlg, detRand(9))
					md = map[string]string{"keyname": "kek-2"}
				case WrapRSAOAEPSHA1:
					wrapped, err = WrapKeyRSAOAEP(&testRSAKey(t).PublicKey, dk, src.CEKAlg, detRand(9))
					md = map[string]string{}
				case WrapKMSContext:
					wrapped = bytes.Repeat([]byte{0xee}, 184)
					md, err = NewKMSContext(src.CEKAlg, map[string]string{"tenant": "b"})
				}
				if err != nil {
					t.Fatal(err)
				}
				dst, err := src.WithWrappedKey(wrapped, to, md)
				if err != nil {
					t.Fatal(err)
				}
				var meta map[string]string
				var instr []byte
				if w.p == PlacementMetadata {
					meta, err = dst.Metadata()
				} else {
					meta, instr, err = dst.InstructionFile()
				}
				if err != nil {
					t.Fatal(err)
				}
				// Everything but the wrapping is byte-identical.
				wrapping := map[string]bool{FieldKeyV2: true, FieldWrapAlg: true, FieldMatDesc: true,
					FieldV3Key: true, FieldV3WrapAlg: true, FieldV3MatDesc: true, FieldV3Context: true}
				for k, v := range s.meta {
					if !wrapping[k] && meta[k] != v {
						t.Errorf("%s changed: %q -> %q", k, v, meta[k])
					}
				}
				for k := range meta {
					if _, ok := s.meta[k]; !ok && !wrapping[k] {
						t.Errorf("%s added", k)
					}
				}
				got, err := Parse(meta, instr, ParseOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if got.WrapAlg != to || !maps.Equal(got.MatDesc, md) {
					t.Fatalf("got %s %v", got.WrapAlg, got.MatDesc)
				}
				if w.f == V3 {
					active, inactive := FieldV3MatDesc, FieldV3Context
					if to == WrapKMSContext {
						active, inactive = inactive, active
					}
					m := meta
					if instr != nil {
						m = parseJSONMap(t, instr)
					}
					if m[active] == "" {
						t.Errorf("%s is empty", active)
					}
					if v, ok := m[inactive]; ok && v != "" {
						t.Errorf("%s = %q, want empty or absent", inactive, v)
					}
				}
				dk2, err := unwrapFor(t, got, dk)
				if err != nil {
					t.Fatal(err)
				}
				pt, err := DecryptContent(got, dk2, s.body)
				if err != nil || string(pt) != "rewrap me" {
					t.Fatalf("decrypt after rewrap: %q, %v", pt, err)
				}
			})
		}
	}
}

func TestWithWrappedKeyDoesNotAlias(t *testing.T) {
	s := seal(t, V3, PlacementMetadata, WrapAESGCM, []byte("x"), 3)
	wrapped := bytes.Clone(s.env.WrappedKey)
	md := map[string]string{"a": "b"}
	n, err := s.env.WithWrappedKey(wrapped, WrapAESGCM, md)
	if err != nil {
		t.Fatal(err)
	}
	wrapped[0] ^= 1
	md["a"] = "c"
	n.MessageID[0] ^= 1
	if n.WrappedKey[0] == wrapped[0] || n.MatDesc["a"] != "b" || bytes.Equal(n.MessageID, s.env.MessageID) {
		t.Fatal("WithWrappedKey shares memory with its inputs or its receiver")
	}
}

func TestDecryptContentAfterTamper(t *testing.T) {
	for i, w := range writable {
		s := seal(t, w.f, w.p, w.alg, []byte("tamper-evident"), byte(80+i))
		for _, pos := range []int{0, len(s.body) - 1} {
			body := bytes.Clone(s.body)
			body[pos] ^= 0x80
			_, err := DecryptContent(s.env, s.dataKey, body)
			wantErr(t, err, ErrAuthentication, "content")
		}
		_, err := DecryptContent(s.env, s.dataKey, s.body[:TagSize-1])
		wantErr(t, err, ErrAuthentication, "content")
	}
}
