package envelope

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"sort"
	"strings"
	"testing"
)

// Metadata maps travel through the fuzzer as "name:value" lines.
func encodeMeta(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + ":" + m[k] + "\n")
	}
	return b.String()
}

func decodeMeta(s string) map[string]string {
	m := map[string]string{}
	for line := range strings.SplitSeq(s, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = v
		}
	}
	return m
}

var allSentinels = []error{ErrNotEncrypted, ErrMissingField, ErrConflictingFields, ErrBadBase64,
	ErrBadIVLength, ErrBadKeyLength, ErrBadTagLength, ErrBadContentLength, ErrUnknownAlgorithm,
	ErrLegacyAlgorithm, ErrReadOnly, ErrAlgorithmMismatch, ErrCommitmentMismatch,
	ErrV3FieldInInstructionFile, ErrBadMaterialDescription, ErrBadInstructionFile,
	ErrMetadataTooLarge, ErrAuthentication, ErrBadPadding, ErrNoWrappedKey}

func checkTypedError(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range allSentinels {
		if errors.Is(err, s) {
			if !strings.HasPrefix(err.Error(), "envelope: ") {
				t.Fatalf("message without prefix: %q", err)
			}
			return
		}
	}
	t.Fatalf("error wraps no sentinel: %v", err)
}

// fuzzSeeds returns real envelopes: every writable combination, the
// official client's objects and a legacy one.
func fuzzSeeds(t testing.TB) []sealed {
	var out []sealed
	for i, w := range writable {
		out = append(out, seal(t, w.f, w.p, w.alg, []byte("fuzz seed"), byte(100+i)))
	}
	return out
}

// checkReparse asserts that an envelope Parse accepted can be written and
// read back to the same fields.
func checkReparse(t *testing.T, env *Envelope, opts ParseOptions) {
	t.Helper()
	var meta map[string]string
	var instr []byte
	var err error
	if env.Placement == PlacementMetadata {
		meta, err = env.Metadata()
	} else {
		meta, instr, err = env.InstructionFile()
	}
	checkTypedError(t, err)
	if err != nil {
		return
	}
	opts.MaxMetadataBytes = -1
	again, err := Parse(meta, instr, opts)
	if err != nil {
		t.Fatalf("written envelope does not parse: %v\nmeta %q\nfile %q", err, meta, instr)
	}
	if again.Format != env.Format || again.CEKAlg != env.CEKAlg || again.WrapAlg != env.WrapAlg ||
		!bytes.Equal(again.WrappedKey, env.WrappedKey) || !bytes.Equal(again.IV, env.IV) ||
		!bytes.Equal(again.MessageID, env.MessageID) || !bytes.Equal(again.KeyCommitment, env.KeyCommitment) ||
		!maps.Equal(again.MatDesc, env.MatDesc) || again.TagLenBits != env.TagLenBits ||
		again.UnencryptedContentLength != env.UnencryptedContentLength {
		t.Fatalf("round trip changed the envelope:\n got %+v\nwant %+v", again, env)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		if s.instr == nil {
			f.Add(encodeMeta(s.meta), true)
		}
	}
	vectors, _ := loadOfficialVectors(f)
	for _, v := range vectors {
		f.Add(encodeMeta(v.Metadata), v.Legacy)
	}
	f.Add(encodeMeta(map[string]string{FieldKeyV1: b64(make([]byte, 48)), FieldIV: b64(make([]byte, 16)), FieldMatDesc: "{}"}), true)
	f.Add(encodeMeta(map[string]string{FieldMatDesc: "=?UTF-8?B?eyJhIjoiw4PCqSJ9?="}), false)
	f.Fuzz(func(t *testing.T, metaText string, legacy bool) {
		opts := ParseOptions{AllowLegacy: legacy}
		env, err := Parse(decodeMeta(metaText), nil, opts)
		checkTypedError(t, err)
		if err != nil {
			return
		}
		checkReparse(t, env, opts)
		_, _ = env.KMSContext()
	})
}

func FuzzParseInstructionFile(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		if s.instr != nil {
			f.Add(encodeMeta(s.meta), s.instr, false)
		}
	}
	f.Add("", []byte(`{"x-amz-key-v2":"AAAA","x-amz-iv":"AAAAAAAAAAAAAAAA","x-amz-tag-len":128,"x-amz-unencrypted-content-length":null}`), true)
	f.Add("x-amz-c:115\nx-amz-d:AAAA\nx-amz-i:AAAA\n", []byte(`{"x-amz-3":"AAAA","x-amz-w":"12","x-amz-t":"{\"aws:x-amz-cek-alg\":\"115\"}"}`), false)
	f.Fuzz(func(t *testing.T, metaText string, body []byte, legacy bool) {
		opts := ParseOptions{AllowLegacy: legacy}
		env, err := Parse(decodeMeta(metaText), body, opts)
		checkTypedError(t, err)
		if err != nil {
			return
		}
		checkReparse(t, env, opts)
	})
}

func FuzzDecryptContent(f *testing.F) {
	key := testDataKey(1)
	for _, s := range fuzzSeeds(f) {
		f.Add(uint8(s.env.Format), s.env.CEKAlg == ContentAESCBC, s.env.IV, s.env.MessageID, s.env.KeyCommitment, s.dataKey.Bytes(), s.body)
	}
	iv := bytes.Repeat([]byte{2}, CBCIVSize)
	f.Add(uint8(V1), true, iv, []byte(nil), []byte(nil), key.Bytes(), cbcEncryptForTest(f, key.Bytes(), iv, []byte("legacy")))
	f.Fuzz(func(t *testing.T, format uint8, cbc bool, iv, msgID, commitment, dk, ct []byte) {
		env := &Envelope{Format: Format(format % 4), IV: iv, MessageID: msgID, KeyCommitment: commitment}
		switch {
		case env.Format == V3:
			env.CEKAlg = ContentCommitKey
		case cbc:
			env.CEKAlg = ContentAESCBC
		default:
			env.CEKAlg = ContentAESGCM
		}
		pt, err := DecryptContent(env, NewDataKey(dk), ct)
		checkTypedError(t, err)
		if err != nil || env.CEKAlg == ContentAESCBC {
			return
		}
		// An accepted GCM ciphertext is exactly what sealing the plaintext
		// produces: nothing else authenticates.
		ck, err := env.ContentKey(NewDataKey(dk))
		if err != nil {
			t.Fatal(err)
		}
		again, err := gcmSeal(ck.Bytes(), env.ContentIV(), pt, env.ContentAAD())
		if err != nil || !bytes.Equal(again, ct) {
			t.Fatalf("accepted ciphertext is not the seal of its plaintext: %v", err)
		}
	})
}

func FuzzUnwrapAESGCM(f *testing.F) {
	for _, cek := range []ContentAlg{ContentAESGCM, ContentCommitKey} {
		w, err := WrapKeyAESGCM(testKEK(), testDataKey(3), cek, detRand(3))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(testKEK(), w, cek == ContentCommitKey)
	}
	f.Add(bytes.Repeat([]byte{1}, 16), make([]byte, 60), false)
	f.Fuzz(func(t *testing.T, kek, wrapped []byte, v3 bool) {
		cek := ContentAESGCM
		if v3 {
			cek = ContentCommitKey
		}
		dk, err := UnwrapKeyAESGCM(kek, wrapped, cek)
		checkTypedError(t, err)
		if err != nil {
			return
		}
		if dk.Len() != DataKeySize {
			t.Fatalf("unwrapped %d bytes", dk.Len())
		}
		again, err := WrapKeyAESGCM(kek, dk, cek, bytes.NewReader(wrapped[:GCMIVSize]))
		if err != nil || !bytes.Equal(again, wrapped) {
			t.Fatalf("accepted wrapped key is not the wrap of its data key: %v", err)
		}
	})
}

func FuzzUnwrapRSA(f *testing.F) {
	priv := testRSAKey(f)
	for _, cek := range []ContentAlg{ContentAESGCM, ContentCommitKey} {
		w, err := WrapKeyRSAOAEP(&priv.PublicKey, testDataKey(4), cek, detRand(4))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(w, cek == ContentCommitKey)
	}
	f.Add(make([]byte, priv.Size()), false)
	f.Fuzz(func(t *testing.T, wrapped []byte, v3 bool) {
		cek := ContentAESGCM
		if v3 {
			cek = ContentCommitKey
		}
		dk, err := UnwrapKeyRSAOAEP(priv, wrapped, cek)
		checkTypedError(t, err)
		if err == nil && dk.Len() != DataKeySize {
			t.Fatalf("unwrapped %d bytes", dk.Len())
		}
	})
}

// FuzzMatDescJSON checks that the ASCII JSON writer and the reader agree,
// including RFC 2047 decoding of what S3 might return.
func FuzzMatDescJSON(f *testing.F) {
	f.Add("kid", "caf\u00e9 <&> \U0001F600", "=?UTF-8?B?eyJhIjoiw4PCqSJ9?=")
	f.Add("", "\u2028\x00\"\\", `{"a":"b"}`)
	f.Fuzz(func(t *testing.T, k, v, header string) {
		m := map[string]string{k: v, ReservedContextKey: "115"}
		b, err := marshalASCII(m)
		if err != nil {
			return // invalid UTF-8
		}
		if !isASCII(string(b)) {
			t.Fatalf("not ASCII: %q", b)
		}
		back, err := parseMatDesc(string(b))
		if err != nil || !maps.Equal(back, m) {
			t.Fatalf("%q -> %q -> %q, %v", m, b, back, err)
		}
		if d, err := decodeS3Value(header); err == nil {
			_, _ = parseMatDesc(d)
		}
	})
}

// FuzzFlatMatDesc checks that the material description's fast path
// (parseFlatMatDesc) reads what encoding/json reads, wherever it takes
// the input.
func FuzzFlatMatDesc(f *testing.F) {
	for _, s := range []string{`{"aws:x-amz-cek-alg":"AES/GCM/NoPadding"}`, ` { "a" : "b" , "a" : "c" } `, `{}`, `{"a":"b"}}`,
		`{"a":"b",}`, `{"a":1}`, `{"a":"\u00e9"}`, "{\"a\":\"\xff\"}", `{"a":"b"} x`, `{"kms_cmk_id":"arn:aws:kms:us-east-1:1:key/k"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		fast, ok := parseFlatMatDesc(raw)
		if !ok {
			return
		}
		var m map[string]any
		dec := json.NewDecoder(strings.NewReader(raw))
		if err := dec.Decode(&m); err != nil || m == nil || dec.More() {
			t.Fatalf("%q: the fast path read %q, encoding/json fails (%v)", raw, fast, err)
		}
		if len(m) != len(fast) {
			t.Fatalf("%q: fast %q, encoding/json %q", raw, fast, m)
		}
		for k, v := range m {
			if s, isStr := v.(string); !isStr || fast[k] != s {
				t.Fatalf("%q: fast %q, encoding/json %q", raw, fast, m)
			}
		}
	})
}

// FuzzWrappedKeyOf checks that the wrapped key lookup never panics and
// agrees with Parse wherever Parse succeeds.
func FuzzWrappedKeyOf(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(encodeMeta(s.meta), s.instr)
	}
	f.Add("x-amz-key-v2:\n", []byte(nil))
	f.Add("", []byte(`{"x-amz-3":"!!"}`))
	f.Fuzz(func(t *testing.T, metaText string, body []byte) {
		meta := decodeMeta(metaText)
		w, err := WrappedKeyOf(meta, body)
		checkTypedError(t, err)
		env, perr := Parse(meta, body, ParseOptions{AllowLegacy: true})
		if perr != nil || err != nil {
			return
		}
		if env.Placement == PlacementInstructionFile || body == nil {
			if !bytes.Equal(w, env.WrappedKey) {
				t.Fatalf("WrappedKeyOf = %x, Parse found %x", w, env.WrappedKey)
			}
		}
	})
}
