package gcmstream

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rotator-dev/rotator/internal/testenv"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const gcmSpecP = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72" +
	"1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255"

// gcmSpecVectors are test cases of McGrew and Viega, "The Galois/Counter
// Mode of Operation (GCM)", with 96-bit IVs.
var gcmSpecVectors = []struct {
	name, key, iv, aad, pt, ct, tag, h string
}{
	{"1", "00000000000000000000000000000000", "000000000000000000000000", "", "", "",
		"58e2fccefa7e3061367f1d57a4e7455a", "66e94bd4ef8a2c3b884cfa59ca342b2e"},
	{"2", "00000000000000000000000000000000", "000000000000000000000000", "", "00000000000000000000000000000000",
		"0388dace60b6a392f328c2b971b2fe78", "ab6e47d42cec13bdf53a67b21257bddf", "66e94bd4ef8a2c3b884cfa59ca342b2e"},
	{"3", "feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888", "", gcmSpecP,
		"42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
		"4d5c2af327cd64a62cf35abd2ba6fab4", ""},
	{"4", "feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888", "feedfacedeadbeeffeedfacedeadbeefabaddad2", gcmSpecP[:120],
		"42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
		"5bc94fbc3221a5db94fae95ae7121a47", ""},
	{"13", "0000000000000000000000000000000000000000000000000000000000000000", "000000000000000000000000", "", "", "",
		"530f8afbc74536b9a963b4f1c4cb738b", "dc95c078a2408989ad48a21492842087"},
	{"14", "0000000000000000000000000000000000000000000000000000000000000000", "000000000000000000000000", "", "00000000000000000000000000000000",
		"cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919", "dc95c078a2408989ad48a21492842087"},
	{"15", "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888", "", gcmSpecP,
		"522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
		"b094dac5d93471bdec1a502270e3cc6c", ""},
	{"16", "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888", "feedfacedeadbeeffeedfacedeadbeefabaddad2", gcmSpecP[:120],
		"522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
		"76fc6ece0f4e1768cddf8853bb2d551b", ""},
}

func TestGCMSpecVectors(t *testing.T) {
	ctx := context.Background()
	for _, v := range gcmSpecVectors {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			var aad []byte
			if v.aad != "" {
				aad = mustHex(t, v.aad)
			}
			s, err := New(mustHex(t, v.key), mustHex(t, v.iv), aad)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if v.h != "" && s.h != loadElement(mustHex(t, v.h)) {
				t.Fatal("H differs")
			}
			pt, want := mustHex(t, v.pt), append(mustHex(t, v.ct), mustHex(t, v.tag)...)
			got, err := Engine{ChunkSize: 16}.Seal(ctx, s, nil, pt)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("Seal = %x, %v; want %x", got, err, want)
			}
			back, err := Engine{ChunkSize: 32}.Open(ctx, s, nil, want)
			if err != nil || !bytes.Equal(back, pt) {
				t.Fatalf("Open = %x, %v", back, err)
			}
		})
	}
}

// Wycheproof vectors come from the C2SP/wycheproof module through the
// module proxy, as envelope's tests fetch them; never committed.
const (
	wycheproofModule  = "github.com/c2sp/wycheproof"
	wycheproofVersion = "v0.0.0-20260105152342-fca0d3ba9f12"
)

func fetchModule(t *testing.T, module, version string) string {
	t.Helper()
	skip := func(format string, args ...any) {
		t.Helper()
		if testenv.Required() {
			t.Fatalf(format, args...)
		}
		t.Skipf(format, args...)
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		skip("fetching %s needs the go command: %v", module, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goTool, "mod", "download", "-json", module+"@"+version).Output()
	if err != nil {
		skip("go mod download %s@%s: %v\n%s", module, version, err, out)
	}
	var j struct{ Dir, Error string }
	if err := json.Unmarshal(out, &j); err != nil || j.Dir == "" {
		skip("go mod download %s@%s: no directory (%v %s)", module, version, err, j.Error)
	}
	return j.Dir
}

// TestWycheproofAESGCM runs testvectors_v1/aes_gcm_test.json: every vector
// with a 96-bit IV and a 128-bit tag through Engine.Seal/Open in 16-byte
// chunks and through segments; other IV sizes must be refused by New.
func TestWycheproofAESGCM(t *testing.T) {
	dir := fetchModule(t, wycheproofModule, wycheproofVersion)
	b, err := os.ReadFile(filepath.Join(dir, "testvectors_v1", "aes_gcm_test.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		TestGroups []struct {
			IVSize, KeySize, TagSize int
			Tests                    []struct {
				TcID                               int
				Comment                            string
				Key, IV, AAD, Msg, CT, Tag, Result string
			}
		}
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var ran, refused int
	for _, g := range f.TestGroups {
		for _, tc := range g.Tests {
			key, iv, aad := mustHex(t, tc.Key), mustHex(t, tc.IV), mustHex(t, tc.AAD)
			msg, sealed := mustHex(t, tc.Msg), append(mustHex(t, tc.CT), mustHex(t, tc.Tag)...)
			s, err := New(key, iv, aad)
			if g.IVSize != 96 || len(iv) != IVSize {
				if err == nil {
					t.Errorf("tcId %d: %d-bit IV accepted", tc.TcID, g.IVSize)
					s.Close()
				} else if !errors.Is(err, ErrIVSize) {
					t.Errorf("tcId %d: %v", tc.TcID, err)
				}
				refused++
				continue
			}
			if err != nil {
				t.Fatalf("tcId %d: %v", tc.TcID, err)
			}
			if g.TagSize != 128 {
				s.Close()
				refused++
				continue
			}
			ran++
			got, err := Engine{ChunkSize: 16, Workers: 2}.Open(ctx, s, nil, sealed)
			switch tc.Result {
			case "valid", "acceptable":
				if err != nil || !bytes.Equal(got, msg) {
					t.Errorf("tcId %d (%s): Open: %v", tc.TcID, tc.Comment, err)
				}
				out, err := Engine{ChunkSize: 32}.Seal(ctx, s, nil, msg)
				if err != nil || !bytes.Equal(out, sealed) {
					t.Errorf("tcId %d (%s): Seal differs: %v", tc.TcID, tc.Comment, err)
				}
				// Segments in reverse order.
				var parts []Partial
				ct := sealed[:len(msg)]
				for lo := len(ct) / 16 * 16; lo >= 0; lo -= 16 {
					p, err := s.GHASHSegment(ct[lo:min(lo+16, len(ct))], int64(lo))
					if err != nil {
						t.Fatal(err)
					}
					parts = append(parts, p)
				}
				total, err := s.Combine(parts...)
				if err == nil {
					err = s.Verify(total, sealed[len(msg):])
				}
				if err != nil {
					t.Errorf("tcId %d (%s): segments: %v", tc.TcID, tc.Comment, err)
				}
			case "invalid":
				if err == nil {
					t.Errorf("tcId %d (%s): invalid vector opened", tc.TcID, tc.Comment)
				} else if !errors.Is(err, ErrAuthentication) {
					t.Errorf("tcId %d: %v", tc.TcID, err)
				}
			default:
				t.Errorf("tcId %d: unknown result %q", tc.TcID, tc.Result)
			}
			s.Close()
		}
	}
	if ran < 100 {
		t.Fatalf("only %d vectors ran", ran)
	}
	t.Logf("%d vectors with 96-bit IVs and 128-bit tags, %d refused or skipped (other IV or tag sizes)", ran, refused)
}
