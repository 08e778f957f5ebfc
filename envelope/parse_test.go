package envelope

import (
	"bytes"
	"maps"
	"mime"
	"net/http"
	"strings"
	"testing"
)

func TestParseNamesAnyCaseAndPrefix(t *testing.T) {
	s := seal(t, V3, PlacementMetadata, WrapKMSContext, []byte("abc"), 1)
	variants := map[string]func(string) string{
		"lower":         func(k string) string { return k },
		"upper":         strings.ToUpper,
		"canonical":     http.CanonicalHeaderKey,
		"prefixed":      func(k string) string { return MetaPrefix + k },
		"prefixedUpper": func(k string) string { return strings.ToUpper(MetaPrefix + k) },
	}
	for name, f := range variants {
		t.Run(name, func(t *testing.T) {
			m := map[string]string{"content-type-ish": "x"}
			for k, v := range s.meta {
				m[f(k)] = v
			}
			env, err := Parse(m, nil, ParseOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if pt, err := DecryptContent(env, s.dataKey, s.body); err != nil || string(pt) != "abc" {
				t.Fatalf("%q %v", pt, err)
			}
		})
	}
	// The same name twice with different values is ambiguous.
	m := cloneMeta(s.meta)
	m[MetaPrefix+FieldV3MessageID] = "AAAA" + m[FieldV3MessageID][4:]
	_, err := Parse(m, nil, ParseOptions{})
	wantErr(t, err, ErrConflictingFields, FieldV3MessageID)
	// ... with the same value it is fine.
	m[MetaPrefix+FieldV3MessageID] = m[FieldV3MessageID]
	if _, err := Parse(m, nil, ParseOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestParsePrecedence(t *testing.T) {
	inMeta := seal(t, V2, PlacementMetadata, WrapAESGCM, []byte("from metadata"), 2)
	inFile := seal(t, V2, PlacementInstructionFile, WrapAESGCM, []byte("from file"), 3)

	// A complete envelope in the metadata wins over any instruction file.
	env, err := Parse(inMeta.meta, inFile.instr, ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if env.Placement != PlacementMetadata || !bytes.Equal(env.IV, inMeta.env.IV) {
		t.Fatal("instruction file won over complete metadata")
	}
	if NeedsInstructionFile(inMeta.meta) {
		t.Error("NeedsInstructionFile true for complete metadata")
	}

	// No envelope in metadata: the instruction file is used.
	if !NeedsInstructionFile(map[string]string{"other": "x"}) {
		t.Error("NeedsInstructionFile false without envelope")
	}
	env, err = Parse(map[string]string{"other": "x"}, inFile.instr, ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if env.Placement != PlacementInstructionFile {
		t.Fatal("placement not instruction file")
	}
	if pt, err := DecryptContent(env, inFile.dataKey, inFile.body); err != nil || string(pt) != "from file" {
		t.Fatalf("%q %v", pt, err)
	}

	// An incomplete envelope in metadata (x-amz-iv only) defers to the file.
	partial := map[string]string{FieldIV: inMeta.meta[FieldIV]}
	if !NeedsInstructionFile(partial) {
		t.Error("NeedsInstructionFile false for partial metadata")
	}
	if _, err := Parse(partial, inFile.instr, ParseOptions{}); err != nil {
		t.Fatal(err)
	}

	// V3 split: c/d/i on the object, the rest in the file.
	v3 := seal(t, V3, PlacementInstructionFile, WrapRSAOAEPSHA1, []byte("split"), 4)
	if !NeedsInstructionFile(v3.meta) {
		t.Error("NeedsInstructionFile false for V3 split metadata")
	}
	env, err = Parse(v3.meta, v3.instr, ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(env.MessageID, v3.env.MessageID) || !bytes.Equal(env.KeyCommitment, v3.env.KeyCommitment) {
		t.Fatal("V3 object fields not taken from metadata")
	}
	// Without the file, the error says the file is needed.
	_, err = Parse(v3.meta, nil, ParseOptions{})
	wantErr(t, err, ErrMissingField, "instruction file", FieldV3ContentAlg)

	// Nothing at all.
	_, err = Parse(map[string]string{"content-type": "text/plain"}, nil, ParseOptions{})
	wantErr(t, err, ErrNotEncrypted, "object metadata")
	_, err = Parse(nil, nil, ParseOptions{})
	wantErr(t, err, ErrNotEncrypted)
}

func TestInstructionFileMarker(t *testing.T) {
	marker := InstructionObjectMetadata()
	if !IsInstructionFile(marker) || !IsInstructionFile(map[string]string{"X-Amz-Meta-X-Amz-Crypto-Instr-File": ""}) {
		t.Fatal("marker not recognised")
	}
	if IsInstructionFile(map[string]string{FieldIV: "x"}) {
		t.Fatal("false marker")
	}
	if NeedsInstructionFile(marker) {
		t.Error("an instruction file object needs no instruction file")
	}
	_, err := Parse(marker, nil, ParseOptions{})
	wantErr(t, err, ErrNotEncrypted, FieldInstructionFile)
	if got := InstructionKey("a/b.txt", ""); got != "a/b.txt.instruction" {
		t.Errorf("InstructionKey default: %q", got)
	}
	if got := InstructionKey("a/b.txt", ".rotated"); got != "a/b.txt.rotated" {
		t.Errorf("InstructionKey custom: %q", got)
	}
}

func TestParseRFC2047(t *testing.T) {
	ctx := map[string]string{ReservedContextKey: "115", "owner": "J\u00fcrgen \u4e2d\u6587 \U0001F600"}
	s := seal(t, V3, PlacementMetadata, WrapKMSContext, []byte("x"), 5)
	env, err := s.env.WithWrappedKey(s.env.WrappedKey, WrapKMSContext, ctx)
	if err != nil {
		t.Fatal(err)
	}
	// What the Go client sends: raw UTF-8 JSON.
	raw := `{"aws:x-amz-cek-alg":"115","owner":"J` + "\u00fcrgen \u4e2d\u6587 \U0001F600" + `"}`
	// S3 reads raw header bytes as ISO-8859-1 and returns the result
	// RFC 2047-encoded ("double encoding").
	latin := make([]rune, 0, len(raw))
	for _, b := range []byte(raw) {
		latin = append(latin, rune(b))
	}
	cases := map[string]string{
		"double-encoded B": mime.BEncoding.Encode("UTF-8", string(latin)),
		"double-encoded Q": mime.QEncoding.Encode("UTF-8", string(latin)),
		"sent encoded B":   mime.BEncoding.Encode("UTF-8", raw),
		"sent encoded Q":   mime.QEncoding.Encode("utf-8", raw),
		"raw":              raw,
		"ascii escapes":    `{"aws:x-amz-cek-alg":"115","owner":"J\u00fcrgen \u4e2d\u6587 \ud83d\ude00"}`,
	}
	for name, v := range cases {
		t.Run(name, func(t *testing.T) {
			m, err := env.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			m[FieldV3Context] = v
			got, err := Parse(m, nil, ParseOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got.MatDesc, ctx) {
				t.Fatalf("context %q, want %q", got.MatDesc, ctx)
			}
			// Written back ASCII-only.
			out, err := got.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			if !isASCII(out[FieldV3Context]) {
				t.Fatalf("rewritten context not ASCII: %q", out[FieldV3Context])
			}
		})
	}
	m, _ := env.Metadata()
	m[FieldV3Context] = "=?UTF-8?B?!!!?="
	_, err = Parse(m, nil, ParseOptions{})
	wantErr(t, err, ErrBadMaterialDescription, FieldV3Context)
}

func TestParseInstructionJSONNumbers(t *testing.T) {
	s := seal(t, V2, PlacementInstructionFile, WrapAESGCM, []byte("n"), 6)
	file := parseJSONMap(t, s.instr)
	build := func(tag, length string) []byte {
		var b strings.Builder
		b.WriteString("{")
		for k, v := range file {
			if k == FieldTagLen {
				continue
			}
			b.WriteString(`"` + k + `":` + quoteJSON(v) + ",")
		}
		b.WriteString(`"x-amz-tag-len":` + tag + `,"x-amz-unencrypted-content-length":` + length + "}")
		return []byte(b.String())
	}
	env, err := Parse(nil, build("128", "1"), ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if env.TagLenBits != 128 || env.UnencryptedContentLength != 1 {
		t.Fatalf("numbers: tag %d length %d", env.TagLenBits, env.UnencryptedContentLength)
	}
	if env, err = Parse(nil, build(`"128"`, "null"), ParseOptions{}); err != nil || env.UnencryptedContentLength != -1 {
		t.Fatalf("strings/null: %v %d", err, env.UnencryptedContentLength)
	}
	_, err = Parse(nil, build("128.5", "1"), ParseOptions{})
	wantErr(t, err, ErrBadInstructionFile, FieldTagLen, "instruction file")
	_, err = Parse(nil, build("true", "1"), ParseOptions{})
	wantErr(t, err, ErrBadInstructionFile, FieldTagLen)
	_, err = Parse(nil, build("96", "1"), ParseOptions{})
	wantErr(t, err, ErrBadTagLength, FieldTagLen, "want 128")
	_, err = Parse(nil, build("128", "-1"), ParseOptions{})
	wantErr(t, err, ErrBadContentLength, FieldContentLength)

	// Names are case-insensitive and unknown fields of any type are ignored.
	up := bytes.Replace(s.instr, []byte(`"x-amz-iv"`), []byte(`"X-Amz-Iv"`), 1)
	up = append(up[:len(up)-1], []byte(`,"extra":{"nested":[1,2]}}`)...)
	if _, err := Parse(nil, up, ParseOptions{}); err != nil {
		t.Fatal(err)
	}
}

func quoteJSON(s string) string {
	b, _ := marshalASCII(map[string]string{"": s})
	return string(b[4 : len(b)-1])
}

func TestParseLegacy(t *testing.T) {
	dk := testDataKey(9)
	iv := bytes.Repeat([]byte{0x16}, CBCIVSize)
	ct := cbcEncryptForTest(t, dk.Bytes(), iv, []byte("legacy content"))
	v1 := map[string]string{
		FieldKeyV1:   b64(bytes.Repeat([]byte{1}, 48)),
		FieldIV:      b64(iv),
		FieldMatDesc: "{}",
	}
	_, err := Parse(v1, nil, ParseOptions{})
	wantErr(t, err, ErrLegacyAlgorithm, FieldKeyV1)
	env, err := Parse(v1, nil, ParseOptions{AllowLegacy: true})
	if err != nil {
		t.Fatal(err)
	}
	if env.Format != V1 || env.CEKAlg != ContentAESCBC || env.WrapAlg != WrapAES {
		t.Fatalf("V1 parsed as %v %s %s", env.Format, env.CEKAlg, env.WrapAlg)
	}
	pt, err := DecryptContent(env, dk, ct)
	if err != nil || string(pt) != "legacy content" {
		t.Fatalf("%q %v", pt, err)
	}
	v1[FieldKeyV1] = b64(bytes.Repeat([]byte{1}, 256))
	if env, err = Parse(v1, nil, ParseOptions{AllowLegacy: true}); err != nil || env.WrapAlg != WrapRSA {
		t.Fatalf("V1 RSA inference: %v %v", env, err)
	}
	// V1 is never written.
	_, err = env.Metadata()
	wantErr(t, err, ErrReadOnly, FieldKeyV1)
	_, err = env.WithWrappedKey([]byte("k"), WrapKMSContext, map[string]string{ReservedContextKey: string(ContentAESCBC)})
	wantErr(t, err, ErrReadOnly)

	for _, alg := range []WrapAlg{WrapKMS, WrapAESWrap, WrapAES, WrapRSA, WrapRSAOAEPSHA256} {
		m := map[string]string{FieldKeyV2: b64([]byte("wrapped")), FieldIV: b64(bytes.Repeat([]byte{1}, GCMIVSize)),
			FieldMatDesc: `{"kms_cmk_id":"alias/x"}`, FieldWrapAlg: string(alg), FieldCEKAlg: string(ContentAESGCM), FieldTagLen: "128"}
		_, err := Parse(m, nil, ParseOptions{})
		wantErr(t, err, ErrLegacyAlgorithm, FieldWrapAlg, string(alg))
		env, err := Parse(m, nil, ParseOptions{AllowLegacy: true})
		if err != nil {
			t.Fatal(err)
		}
		_, err = env.Metadata()
		wantErr(t, err, ErrReadOnly, FieldWrapAlg)
		if alg == WrapKMS {
			ctx, err := env.KMSContext()
			if err != nil || ctx["kms_cmk_id"] != "alias/x" {
				t.Fatalf("legacy kms context: %v %v", ctx, err)
			}
		}
	}
}

func TestKMSContext(t *testing.T) {
	s := seal(t, V2, PlacementMetadata, WrapKMSContext, []byte("k"), 10)
	ctx, err := s.env.KMSContext()
	if err != nil {
		t.Fatal(err)
	}
	if ctx[ReservedContextKey] != string(ContentAESGCM) || ctx["tenant"] != "a" {
		t.Fatalf("context %v", ctx)
	}
	ctx["tenant"] = "changed"
	if s.env.MatDesc["tenant"] != "a" {
		t.Fatal("KMSContext returned the envelope's own map")
	}
	a := seal(t, V2, PlacementMetadata, WrapAESGCM, []byte("k"), 10)
	_, err = a.env.KMSContext()
	wantErr(t, err, ErrAlgorithmMismatch, FieldWrapAlg)

	_, err = NewKMSContext(ContentCommitKey, map[string]string{ReservedContextKey: "x"})
	wantErr(t, err, ErrBadMaterialDescription, ReservedContextKey)
	c, err := NewKMSContext(ContentCommitKey, nil)
	if err != nil || !maps.Equal(c, map[string]string{ReservedContextKey: "115"}) {
		t.Fatalf("%v %v", c, err)
	}
}

// TestRewritePreservesShape: an envelope read from another writer (Java key
// sets, unsorted JSON, empty optional entries) is written back byte for byte.
func TestRewritePreservesShape(t *testing.T) {
	v3 := seal(t, V3, PlacementMetadata, WrapKMSContext, []byte("s"), 60).meta
	v2 := seal(t, V2, PlacementMetadata, WrapAESGCM, []byte("s"), 61).meta
	javaV3 := cloneMeta(v3)
	delete(javaV3, FieldV3MatDesc)
	delete(javaV3, FieldContentLength)
	javaV3[FieldV3Context] = `{"tenant":"a", "aws:x-amz-cek-alg":"115"}`
	javaV2 := cloneMeta(v2)
	delete(javaV2, FieldContentLength)
	javaV2[FieldMatDesc] = `{ "keyname" : "kek-1" }`
	emptyTag := cloneMeta(v2)
	emptyTag[FieldTagLen] = ""
	for name, m := range map[string]map[string]string{"java V3": javaV3, "java V2": javaV2, "empty tag-len": emptyTag} {
		env, err := Parse(m, nil, ParseOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := env.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(got, m) {
			t.Errorf("%s: rewrite changed the metadata:\n got %q\nwant %q", name, got, m)
		}
		// Changing the material description re-encodes it canonically.
		n, err := env.WithWrappedKey(env.WrappedKey, env.WrapAlg, maps.Clone(env.MatDesc))
		if err != nil {
			t.Fatal(err)
		}
		n.MatDesc["added"] = "1"
		got, err = n.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		if md := got[n.matDescField()]; strings.Contains(md, " ") || !strings.Contains(md, `"added":"1"`) {
			t.Errorf("%s: changed material description written as %q", name, md)
		}
	}

	// A V3 instruction file with both x-amz-m and x-amz-t keeps both.
	f := seal(t, V3, PlacementInstructionFile, WrapAESGCM, []byte("s"), 62)
	body := append(bytes.TrimSuffix(f.instr, []byte("}")), []byte(`,"x-amz-t":""}`)...)
	env, err := Parse(f.meta, body, ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, again, err := env.InstructionFile()
	if err != nil || !maps.Equal(parseJSONMap(t, again), parseJSONMap(t, body)) {
		t.Fatalf("instruction file shape changed: %s -> %s (%v)", body, again, err)
	}
}

func TestHelpers(t *testing.T) {
	for _, n := range []string{"x-amz-iv", "X-Amz-Meta-X-Amz-Iv", "x-amz-t", FieldContentLength} {
		if !IsEnvelopeField(n) {
			t.Errorf("IsEnvelopeField(%q) = false", n)
		}
	}
	for _, n := range []string{"content-type", "x-amz-meta-owner", FieldInstructionFile, "x-amz-ivy"} {
		if IsEnvelopeField(n) {
			t.Errorf("IsEnvelopeField(%q) = true", n)
		}
	}
	if n := MetadataSize(map[string]string{"X-Amz-Meta-Ab": "\u00e9"}); n != 4 {
		t.Errorf("MetadataSize = %d, want 4", n)
	}
	s := seal(t, V3, PlacementMetadata, WrapAESGCM, []byte("c"), 63)
	c := s.env.Clone()
	c.WrappedKey[0] ^= 1
	c.MatDesc["x"] = "y"
	c.KeyCommitment[0] ^= 1
	if bytes.Equal(c.WrappedKey, s.env.WrappedKey) || s.env.MatDesc["x"] == "y" || bytes.Equal(c.KeyCommitment, s.env.KeyCommitment) {
		t.Fatal("Clone shares memory")
	}
	if !bytes.Equal(s.env.ContentIV(), V3ContentIV()) || !bytes.Equal(s.env.ContentAAD(), []byte{0, 0x73}) {
		t.Fatal("V3 content IV/AAD")
	}
	v2 := seal(t, V2, PlacementMetadata, WrapAESGCM, []byte("c"), 64)
	if !bytes.Equal(v2.env.ContentIV(), v2.env.IV) || v2.env.ContentAAD() != nil {
		t.Fatal("V2 content IV/AAD")
	}
	for _, f := range []Format{V1, V2, V3, 9} {
		if f.String() == "" {
			t.Error("empty Format string")
		}
	}
	if PlacementInstructionFile.String() != "instruction file" || Placement(7).String() == "" {
		t.Error("Placement strings")
	}
	for _, w := range []WrapAlg{WrapAESGCM, WrapKMSContext, WrapRSAOAEPSHA1} {
		code, ok := w.V3Code()
		back, ok2 := WrapAlgFromV3Code(code)
		if !ok || !ok2 || back != w || w.Legacy() {
			t.Errorf("%s <-> %q", w, code)
		}
	}
	if _, ok := WrapKMS.V3Code(); ok || !WrapKMS.Legacy() || !WrapKMS.IsKMS() || WrapAESGCM.IsKMS() {
		t.Error("legacy kms")
	}
}
