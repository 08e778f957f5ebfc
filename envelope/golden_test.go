package envelope

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

var update = flag.Bool("update", false, "rewrite testdata/golden")

type goPut struct {
	Name      string            `json:"name"`
	Metadata  map[string]string `json:"metadata"`
	BodyB64   string            `json:"body_b64"`
	KeyB64    string            `json:"data_key_b64"`
	Plaintext string            `json:"plaintext"`
}

func loadGoPuts(t *testing.T) []goPut {
	t.Helper()
	b, err := os.ReadFile("testdata/official_go_v4_put.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct{ Objects []goPut }
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	return f.Objects
}

// escapeNonASCII rewrites the raw UTF-8 the Go client puts in JSON as the
// \uXXXX escapes this package writes.
func escapeNonASCII(s string) string {
	var buf bytes.Buffer
	for _, r := range s {
		if r < utf8.RuneSelf {
			buf.WriteRune(r)
			continue
		}
		var tmp bytes.Buffer
		writeJSONString(&tmp, string(r))
		buf.Write(tmp.Bytes()[1 : tmp.Len()-1])
	}
	return buf.String()
}

// TestMatchesOfficialGoWriter rebuilds objects the official Go client v4.0.0
// wrote (testdata/official_go_v4_put.json) from the same inputs and checks
// metadata and body byte for byte.
func TestMatchesOfficialGoWriter(t *testing.T) {
	for _, o := range loadGoPuts(t) {
		t.Run(o.Name, func(t *testing.T) {
			dk := NewDataKey(mustB64(t, o.KeyB64))
			body := mustB64(t, o.BodyB64)

			// Read what Go wrote.
			got, err := Parse(o.Metadata, nil, ParseOptions{})
			if err != nil {
				t.Fatal(err)
			}
			pt, err := DecryptContent(got, dk, body)
			if err != nil || string(pt) != o.Plaintext {
				t.Fatalf("decrypt: %q, %v", pt, err)
			}

			// Write it ourselves from the same inputs.
			format, nonce := V2, o.Metadata[FieldIV]
			if strings.HasPrefix(o.Name, "V3") {
				format, nonce = V3, o.Metadata[FieldV3MessageID]
			}
			env, ours, err := EncryptContent(format, dk, []byte(o.Plaintext), bytes.NewReader(mustB64(t, nonce)))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ours, body) {
				t.Fatal("content differs from the official client's")
			}
			user := map[string]string{"tenant": "a", "html": "<&>"}
			if strings.HasSuffix(o.Name, "nonascii") {
				user["nonascii"] = "caf\u00e9 \U0001F600"
			}
			ctx, err := NewKMSContext(env.CEKAlg, user)
			if err != nil {
				t.Fatal(err)
			}
			env, err = env.WithWrappedKey(bytes.Repeat([]byte{0xb1}, 150), WrapKMSContext, ctx)
			if err != nil {
				t.Fatal(err)
			}
			meta, err := env.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			want := maps.Clone(o.Metadata)
			for _, f := range []string{FieldMatDesc, FieldV3Context} {
				if v, ok := want[f]; ok {
					want[f] = escapeNonASCII(v) // only difference: ASCII-only JSON
				}
			}
			if !maps.Equal(meta, want) {
				t.Fatalf("metadata differs from the official client's:\n got %q\nwant %q", meta, want)
			}

			// Rewriting what Go wrote keeps every byte (JSON re-escaped only
			// where Go wrote non-ASCII).
			again, err := got.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(again, want) {
				t.Fatalf("rewrite differs:\n got %q\nwant %q", again, want)
			}
		})
	}
}

// Key sets read off the official writers' source:
// Go v4.0.0 internal/strategy.go ObjectMetadataSaveStrategy.Save (+
// EncodeMetaV2/V3), Java v4.0.1 ContentMetadataEncodingStrategy.
var (
	goV2MetadataKeys = []string{FieldCEKAlg, FieldIV, FieldKeyV2, FieldMatDesc, FieldTagLen, FieldContentLength, FieldWrapAlg}
	goV3MetadataKeys = []string{FieldV3Key, FieldV3ContentAlg, FieldV3Commitment, FieldV3MessageID, FieldV3MatDesc, FieldV3Context, FieldContentLength, FieldV3WrapAlg}
	javaV2FileKeys   = []string{FieldCEKAlg, FieldIV, FieldKeyV2, FieldMatDesc, FieldTagLen, FieldWrapAlg}
	javaV3ObjectKeys = []string{FieldV3ContentAlg, FieldV3Commitment, FieldV3MessageID}
)

func sortedKeys(m map[string]string) []string {
	k := slices.Collect(maps.Keys(m))
	slices.Sort(k)
	return k
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// goldenEnvelope builds a deterministic envelope for the golden files.
func goldenEnvelope(t *testing.T, f Format, alg WrapAlg) *Envelope {
	t.Helper()
	env, _, err := EncryptContent(f, testDataKey(7), []byte("golden"), detRand(7))
	if err != nil {
		t.Fatal(err)
	}
	var wrapped []byte
	md := map[string]string{"kid": "k\u00e9y/<1>&\u2028\U0001F511"}
	switch alg {
	case WrapAESGCM:
		wrapped = bytes.Repeat([]byte{0xa9}, AESGCMWrappedSize)
	case WrapRSAOAEPSHA1:
		wrapped = bytes.Repeat([]byte{0x52}, 256)
	case WrapKMSContext:
		wrapped = bytes.Repeat([]byte{0xb1}, 150)
		md, err = NewKMSContext(env.CEKAlg, md)
		if err != nil {
			t.Fatal(err)
		}
	}
	env, err = env.WithWrappedKey(wrapped, alg, md)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// TestGolden pins the exact bytes written for every writable combination
// (testdata/golden; regenerate with -update and review the diff).
func TestGolden(t *testing.T) {
	for _, w := range writable {
		name := strings.NewReplacer("/", "-", "+", "-").Replace(strings.ToLower(w.f.String() + "-" + string(w.alg)))
		t.Run(name+"/"+w.p.String(), func(t *testing.T) {
			env := goldenEnvelope(t, w.f, w.alg)
			var got []byte
			switch w.p {
			case PlacementMetadata:
				meta, err := env.Metadata()
				if err != nil {
					t.Fatal(err)
				}
				want := goV2MetadataKeys
				if w.f == V3 {
					want = goV3MetadataKeys
				}
				if !slices.Equal(sortedKeys(meta), sorted(want)) {
					t.Errorf("keys %v, the Go client writes %v", sortedKeys(meta), sorted(want))
				}
				for k, v := range meta {
					if !isASCII(v) {
						t.Errorf("%s is not ASCII: %q", k, v)
					}
				}
				got, _ = json.MarshalIndent(meta, "", "  ")
				name += ".metadata.json"
			case PlacementInstructionFile:
				objMeta, body, err := env.InstructionFile()
				if err != nil {
					t.Fatal(err)
				}
				file := parseJSONMap(t, body)
				wantFile, wantObj := javaV2FileKeys, []string{}
				if w.f == V3 {
					active := FieldV3MatDesc
					if w.alg == WrapKMSContext {
						active = FieldV3Context
					}
					wantFile, wantObj = []string{FieldV3Key, FieldV3WrapAlg, active}, javaV3ObjectKeys
				}
				if !slices.Equal(sortedKeys(file), sorted(wantFile)) || !slices.Equal(sortedKeys(objMeta), sorted(wantObj)) {
					t.Errorf("keys file=%v object=%v, the Java client writes %v / %v", sortedKeys(file), sortedKeys(objMeta), wantFile, wantObj)
				}
				if !isASCII(string(body)) || bytes.ContainsAny(body, " \n") {
					t.Errorf("instruction file is not compact ASCII JSON: %s", body)
				}
				om, _ := json.MarshalIndent(objMeta, "", "  ")
				got = append(append(om, '\n'), body...)
				name += ".instruction"
			}
			path := filepath.Join("testdata", "golden", name)
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s differs:\n got %s\nwant %s", path, got, want)
			}
		})
	}
}

// TestMarshalASCII checks the JSON writer against encoding/json: same value,
// same bytes for ASCII input, sorted names, only ASCII out.
func TestMarshalASCII(t *testing.T) {
	cases := []map[string]string{
		{},
		{"b": "2", "a": "1"},
		{"html": "<a href=\"x\">&amp;</a>", "ctl": "\x00\x01\t\n\r\x1f\x7f", "q": `"\`},
		{"caf\u00e9": "\u00e9\u2028\u2029\ufeff", "emoji": "\U0001F600\U0010FFFF", "cjk": "\u4e2d\u6587"},
	}
	for _, m := range cases {
		got, err := marshalASCII(m)
		if err != nil {
			t.Fatal(err)
		}
		if !isASCII(string(got)) {
			t.Errorf("not ASCII: %s", got)
		}
		std, _ := json.Marshal(m)
		if isASCII(string(std)) && !bytes.Equal(got, std) {
			t.Errorf("ASCII input: got %s, encoding/json %s", got, std)
		}
		var back map[string]string
		if err := json.Unmarshal(got, &back); err != nil || !maps.Equal(back, m) {
			t.Errorf("%s does not decode to %q: %v", got, m, err)
		}
	}
	if got, _ := marshalASCII(map[string]string{"k": "\U0001F600"}); string(got) != `{"k":"\ud83d\ude00"}` {
		t.Errorf("surrogate pair: got %s", got)
	}
	if _, err := marshalASCII(map[string]string{"k": "\xff"}); err == nil {
		t.Error("invalid UTF-8 accepted")
	}
	_ = base64.StdEncoding
}
