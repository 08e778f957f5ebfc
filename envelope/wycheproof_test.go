package envelope

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/rotator-dev/rotator/internal/testenv"
)

// Wycheproof test vectors come from the C2SP/wycheproof repository as a Go
// module, fetched through the module proxy the way the Go standard library's
// crypto tests do (crypto/internal/cryptotest.FetchModule). The vector file
// is never committed.
const (
	wycheproofModule  = "github.com/c2sp/wycheproof"
	wycheproofVersion = "v0.0.0-20260105152342-fca0d3ba9f12"
)

// fetchModule downloads module@version and returns its directory. Without a
// go command or a reachable proxy the test is skipped, unless the
// integration environment is required (CI), where it fails.
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
	cmd := exec.CommandContext(ctx, goTool, "mod", "download", "-json", module+"@"+version)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		skip("go mod download %s@%s: %v\n%s%s", module, version, err, out, stderr.Bytes())
	}
	var j struct{ Dir, Error string }
	if err := json.Unmarshal(out, &j); err != nil || j.Dir == "" {
		skip("go mod download %s@%s: no directory (%v %s)\n%s", module, version, err, j.Error, out)
	}
	return j.Dir
}

type wycheproofAEAD struct {
	TestGroups []struct {
		IVSize  int `json:"ivSize"`
		KeySize int `json:"keySize"`
		TagSize int `json:"tagSize"`
		Tests   []struct {
			TcID    int      `json:"tcId"`
			Comment string   `json:"comment"`
			Flags   []string `json:"flags"`
			Key     string   `json:"key"`
			IV      string   `json:"iv"`
			AAD     string   `json:"aad"`
			Msg     string   `json:"msg"`
			CT      string   `json:"ct"`
			Tag     string   `json:"tag"`
			Result  string   `json:"result"`
		} `json:"tests"`
	} `json:"testGroups"`
}

// TestWycheproofAESGCM runs testvectors_v1/aes_gcm_test.json against the
// AES-GCM primitives used for content (V2, V3) and for AES/GCM key wrapping:
// 12-byte nonces and 16-byte tags are supported, all other nonce sizes must
// be refused, every invalid vector must fail to open.
func TestWycheproofAESGCM(t *testing.T) {
	dir := fetchModule(t, wycheproofModule, wycheproofVersion)
	b, err := os.ReadFile(filepath.Join(dir, "testvectors_v1", "aes_gcm_test.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f wycheproofAEAD
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	var ran, refused, content int
	for _, g := range f.TestGroups {
		for _, tc := range g.Tests {
			key, iv, aad := mustHex(t, tc.Key), mustHex(t, tc.IV), mustHex(t, tc.AAD)
			msg, ct := mustHex(t, tc.Msg), append(mustHex(t, tc.CT), mustHex(t, tc.Tag)...)
			if g.IVSize != 96 || g.TagSize != 128 {
				// Our formats only use 96-bit nonces and 128-bit tags.
				if _, err := gcmOpen(key, iv, ct, aad); err == nil && len(iv) != GCMIVSize {
					t.Errorf("tcId %d: %d-bit nonce accepted", tc.TcID, g.IVSize)
				}
				if _, err := gcmSeal(key, iv, msg, aad); err == nil && len(iv) != GCMIVSize {
					t.Errorf("tcId %d: sealed with a %d-bit nonce", tc.TcID, g.IVSize)
				}
				refused++
				continue
			}
			ran++
			got, err := gcmOpen(key, iv, ct, aad)
			switch tc.Result {
			case "valid", "acceptable":
				if err != nil || !bytes.Equal(got, msg) {
					t.Errorf("tcId %d (%s): open failed: %v", tc.TcID, tc.Comment, err)
				}
				sealed, err := gcmSeal(key, iv, msg, aad)
				if err != nil || !bytes.Equal(sealed, ct) {
					t.Errorf("tcId %d (%s): seal differs: %v", tc.TcID, tc.Comment, err)
				}
				// The V2 content path: AES-256, no AAD.
				if len(key) == 32 && len(aad) == 0 {
					env := &Envelope{Format: V2, CEKAlg: ContentAESGCM, IV: iv}
					pt, err := DecryptContent(env, NewDataKey(key), ct)
					if err != nil || !bytes.Equal(pt, msg) {
						t.Errorf("tcId %d: DecryptContent: %v", tc.TcID, err)
					}
					content++
				}
			case "invalid":
				if err == nil {
					t.Errorf("tcId %d (%s %v): invalid vector opened", tc.TcID, tc.Comment, tc.Flags)
				} else if !errors.Is(err, ErrAuthentication) {
					t.Errorf("tcId %d: error %v does not wrap ErrAuthentication", tc.TcID, err)
				}
			default:
				t.Errorf("tcId %d: unknown result %q", tc.TcID, tc.Result)
			}
		}
	}
	if ran < 100 || content == 0 {
		t.Fatalf("only %d vectors ran (%d through DecryptContent)", ran, content)
	}
	t.Logf("%d vectors with 96-bit nonces (%d through DecryptContent), %d with other nonce sizes refused", ran, content, refused)
}
