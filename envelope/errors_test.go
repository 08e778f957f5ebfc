package envelope

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestMalformed feeds one malformed input per class and checks the sentinel
// and that the message names the field (and where it was found).
func TestMalformed(t *testing.T) {
	v2 := seal(t, V2, PlacementMetadata, WrapAESGCM, []byte("m"), 20).meta
	v2kms := seal(t, V2, PlacementMetadata, WrapKMSContext, []byte("m"), 21).meta
	v3 := seal(t, V3, PlacementMetadata, WrapKMSContext, []byte("m"), 22).meta
	v3aes := seal(t, V3, PlacementMetadata, WrapAESGCM, []byte("m"), 25).meta
	v2f := seal(t, V2, PlacementInstructionFile, WrapAESGCM, []byte("m"), 23)
	v3f := seal(t, V3, PlacementInstructionFile, WrapAESGCM, []byte("m"), 24)

	with := func(base map[string]string, kv ...string) map[string]string {
		m := cloneMeta(base)
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "<del>" {
				delete(m, kv[i])
			} else {
				m[kv[i]] = kv[i+1]
			}
		}
		return m
	}
	file := func(base []byte, kv ...string) []byte {
		m := parseJSONMap(t, base)
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "<del>" {
				delete(m, kv[i])
			} else {
				m[kv[i]] = kv[i+1]
			}
		}
		b, err := marshalASCII(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	iv16 := b64(bytes.Repeat([]byte{1}, 16))

	cases := []struct {
		name     string
		meta     map[string]string
		instr    []byte
		opts     ParseOptions
		sentinel error
		mentions []string
	}{
		{"no envelope", map[string]string{"a": "b"}, nil, ParseOptions{}, ErrNotEncrypted, []string{"object metadata"}},
		{"instruction file object", InstructionObjectMetadata(), nil, ParseOptions{}, ErrNotEncrypted, []string{FieldInstructionFile}},

		{"V2 cek-alg removed", with(v2, FieldCEKAlg, "<del>"), nil, ParseOptions{AllowLegacy: true}, ErrMissingField, []string{FieldCEKAlg, "object metadata"}},
		{"V2 wrap-alg removed", with(v2, FieldWrapAlg, "<del>"), nil, ParseOptions{AllowLegacy: true}, ErrMissingField, []string{FieldWrapAlg}},
		{"V2 key empty", with(v2, FieldKeyV2, ""), nil, ParseOptions{}, ErrMissingField, []string{FieldKeyV2}},
		{"V3 x-amz-c removed", with(v3, FieldV3ContentAlg, "<del>"), nil, ParseOptions{}, ErrMissingField, []string{FieldV3ContentAlg}},
		{"V3 x-amz-w removed", with(v3, FieldV3WrapAlg, "<del>"), nil, ParseOptions{}, ErrMissingField, []string{FieldV3WrapAlg}},
		{"kms context lacks cek-alg", with(v2kms, FieldMatDesc, `{"tenant":"a"}`), nil, ParseOptions{}, ErrMissingField, []string{FieldMatDesc, ReservedContextKey}},
		{"V3 kms context lacks cek-alg", with(v3, FieldV3Context, `{}`), nil, ParseOptions{}, ErrMissingField, []string{FieldV3Context, ReservedContextKey}},
		{"V3 kms context only in x-amz-m", with(v3, FieldV3Context, "<del>", FieldV3MatDesc, `{"aws:x-amz-cek-alg":"115"}`), nil, ParseOptions{}, ErrMissingField, []string{FieldV3Context}},
		{"V3 file without object x-amz-d", with(v3f.meta, FieldV3Commitment, "<del>"), v3f.instr, ParseOptions{}, ErrMissingField, []string{FieldV3Commitment, "object metadata"}},
		{"instruction file without key", nil, []byte(`{"x-amz-iv":"AAAA"}`), ParseOptions{}, ErrMissingField, []string{FieldKeyV2, "instruction file"}},
		{"instruction file without iv", nil, file(v2f.instr, FieldIV, "<del>"), ParseOptions{}, ErrMissingField, []string{FieldIV, "instruction file"}},

		{"iv not base64", with(v2, FieldIV, "!!!!"), nil, ParseOptions{}, ErrBadBase64, []string{FieldIV}},
		{"iv unpadded", with(v2, FieldIV, strings.TrimRight(b64(make([]byte, 11)), "=")), nil, ParseOptions{}, ErrBadBase64, []string{FieldIV}},
		{"iv non-canonical bits", with(v2, FieldIV, "AAAAAAAAAAAAAAB="), nil, ParseOptions{}, ErrBadBase64, []string{FieldIV}},
		{"key with newline", with(v2, FieldKeyV2, v2[FieldKeyV2][:40]+"\n"+v2[FieldKeyV2][40:]), nil, ParseOptions{}, ErrBadBase64, []string{FieldKeyV2}},
		{"url-safe base64", with(v3, FieldV3MessageID, strings.NewReplacer("+", "-", "/", "_").Replace(b64(bytes.Repeat([]byte{0xfb, 0xff}, 14)))), nil, ParseOptions{}, ErrBadBase64, []string{FieldV3MessageID}},
		{"x-amz-d not base64 in file case", with(v3f.meta, FieldV3Commitment, "notvalidbase64"), v3f.instr, ParseOptions{}, ErrBadBase64, []string{FieldV3Commitment, "object metadata"}},

		{"V2 IV of 16 bytes", with(v2, FieldIV, iv16), nil, ParseOptions{}, ErrBadIVLength, []string{"envelope: object metadata: x-amz-iv: want 12 bytes, got 16"}},
		{"CBC IV of 12 bytes", with(v2, FieldCEKAlg, string(ContentAESCBC), FieldTagLen, "<del>"), nil, ParseOptions{AllowLegacy: true}, ErrBadIVLength, []string{FieldIV, "want 16 bytes, got 12"}},
		{"V3 message ID 27 bytes", with(v3, FieldV3MessageID, b64(make([]byte, 27))), nil, ParseOptions{}, ErrBadIVLength, []string{FieldV3MessageID, "want 28 bytes, got 27"}},
		{"V3 file IV length", with(v3f.meta, FieldV3MessageID, b64(make([]byte, 12))), v3f.instr, ParseOptions{}, ErrBadIVLength, []string{FieldV3MessageID, "object metadata"}},

		{"AES/GCM wrapped key 59 bytes", with(v2, FieldKeyV2, b64(make([]byte, 59))), nil, ParseOptions{}, ErrBadKeyLength, []string{FieldKeyV2, "want 60 bytes, got 59"}},
		{"V3 AES/GCM wrapped key 61 bytes", with(v3aes, FieldV3Key, b64(make([]byte, 61))), nil, ParseOptions{}, ErrBadKeyLength, []string{FieldV3Key}},
		{"V3 commitment 27 bytes", with(v3, FieldV3Commitment, b64(make([]byte, 27))), nil, ParseOptions{}, ErrBadKeyLength, []string{FieldV3Commitment, "want 28 bytes"}},
		{"V3 file wrapped key length", v3f.meta, file(v3f.instr, FieldV3Key, b64(make([]byte, 12))), ParseOptions{}, ErrBadKeyLength, []string{FieldV3Key, "instruction file"}},

		{"unknown cek-alg", with(v2, FieldCEKAlg, "AES/CTR/NoPadding"), nil, ParseOptions{AllowLegacy: true}, ErrUnknownAlgorithm, []string{FieldCEKAlg}},
		{"unknown wrap-alg", with(v2, FieldWrapAlg, "ROT13"), nil, ParseOptions{AllowLegacy: true}, ErrUnknownAlgorithm, []string{FieldWrapAlg, "ROT13"}},
		{"V3 suite 116", with(v3, FieldV3ContentAlg, "116"), nil, ParseOptions{}, ErrUnknownAlgorithm, []string{FieldV3ContentAlg}},
		{"V3 long wrap name", with(v3, FieldV3WrapAlg, "kms+context"), nil, ParseOptions{}, ErrUnknownAlgorithm, []string{FieldV3WrapAlg}},
		{"V3 code 03", with(v3, FieldV3WrapAlg, "03"), nil, ParseOptions{}, ErrUnknownAlgorithm, []string{FieldV3WrapAlg}},

		{"CBC without AllowLegacy", with(v2, FieldCEKAlg, string(ContentAESCBC)), nil, ParseOptions{}, ErrLegacyAlgorithm, []string{FieldCEKAlg}},
		{"AESWrap without AllowLegacy", with(v2, FieldWrapAlg, string(WrapAESWrap)), nil, ParseOptions{}, ErrLegacyAlgorithm, []string{FieldWrapAlg}},
		{"legacy in instruction file", nil, file(v2f.instr, FieldWrapAlg, "kms"), ParseOptions{}, ErrLegacyAlgorithm, []string{FieldWrapAlg, "instruction file"}},

		{"context cek-alg tampered V2", with(v2kms, FieldMatDesc, `{"aws:x-amz-cek-alg":"AES/CBC/PKCS5Padding","tenant":"a"}`), nil, ParseOptions{}, ErrAlgorithmMismatch, []string{FieldMatDesc, ReservedContextKey}},
		{"context cek-alg tampered V3", with(v3, FieldV3Context, `{"aws:x-amz-cek-alg":"AES/GCM/NoPadding"}`), nil, ParseOptions{}, ErrAlgorithmMismatch, []string{FieldV3Context}},
		{"cek-alg GCM to CBC keeps context", with(v2kms, FieldCEKAlg, string(ContentAESCBC), FieldIV, iv16, FieldTagLen, "<del>"), nil, ParseOptions{AllowLegacy: true}, ErrAlgorithmMismatch, []string{FieldMatDesc}},
		{"V2 cek-alg 115", with(v2, FieldCEKAlg, "115"), nil, ParseOptions{}, ErrAlgorithmMismatch, []string{FieldCEKAlg, "V3"}},

		{"x-amz-c in V3 file", v3f.meta, file(v3f.instr, FieldV3ContentAlg, "115"), ParseOptions{}, ErrV3FieldInInstructionFile, []string{FieldV3ContentAlg, "instruction file"}},
		{"x-amz-d in V3 file", v3f.meta, file(v3f.instr, FieldV3Commitment, v3f.meta[FieldV3Commitment]), ParseOptions{}, ErrV3FieldInInstructionFile, []string{FieldV3Commitment}},
		{"x-amz-i in V3 file", v3f.meta, file(v3f.instr, FieldV3MessageID, v3f.meta[FieldV3MessageID]), ParseOptions{}, ErrV3FieldInInstructionFile, []string{FieldV3MessageID}},

		{"matdesc not JSON", with(v2, FieldMatDesc, "kid=1"), nil, ParseOptions{}, ErrBadMaterialDescription, []string{FieldMatDesc}},
		{"matdesc array", with(v2, FieldMatDesc, `["a"]`), nil, ParseOptions{}, ErrBadMaterialDescription, []string{FieldMatDesc}},
		{"matdesc null", with(v2, FieldMatDesc, `null`), nil, ParseOptions{}, ErrBadMaterialDescription, []string{FieldMatDesc}},
		{"matdesc number value", with(v2, FieldMatDesc, `{"a":1}`), nil, ParseOptions{}, ErrBadMaterialDescription, []string{FieldMatDesc, `"a"`}},
		{"matdesc nested", with(v2, FieldMatDesc, `{"a":{"b":"c"}}`), nil, ParseOptions{}, ErrBadMaterialDescription, []string{FieldMatDesc}},
		{"matdesc trailing", with(v2, FieldMatDesc, `{"a":"b"}{}`), nil, ParseOptions{}, ErrBadMaterialDescription, []string{FieldMatDesc}},
		{"x-amz-m not JSON", with(v3aes, FieldV3MatDesc, `{`), nil, ParseOptions{}, ErrBadMaterialDescription, []string{FieldV3MatDesc}},
		{"x-amz-t in file not JSON", v3f.meta, file(v3f.instr, FieldV3WrapAlg, "12", FieldV3MatDesc, "<del>", FieldV3Context, "{oops"), ParseOptions{}, ErrBadMaterialDescription, []string{FieldV3Context, "instruction file"}},

		{"metadata over 2 KB", with(v2, "user", strings.Repeat("x", 2048)), nil, ParseOptions{}, ErrMetadataTooLarge, []string{"object metadata", "limit 2048"}},
		{"metadata over custom limit", v2, nil, ParseOptions{MaxMetadataBytes: 100}, ErrMetadataTooLarge, []string{"limit 100"}},
		{"instruction file over limit", nil, v2f.instr, ParseOptions{MaxInstructionFileBytes: 10}, ErrMetadataTooLarge, []string{"instruction file", "limit 10"}},

		{"x-amz-key and x-amz-key-v2", with(v2, FieldKeyV1, v2[FieldKeyV2]), nil, ParseOptions{AllowLegacy: true}, ErrConflictingFields, []string{FieldKeyV1}},
		{"V2 with x-amz-c", with(v2, FieldV3ContentAlg, "115"), nil, ParseOptions{}, ErrConflictingFields, []string{FieldV3ContentAlg}},
		{"V3 with x-amz-iv", with(v3, FieldIV, v2[FieldIV]), nil, ParseOptions{}, ErrConflictingFields, []string{FieldIV}},
		{"V3 file with V2 field", v3f.meta, file(v3f.instr, FieldCEKAlg, "AES/GCM/NoPadding"), ParseOptions{}, ErrConflictingFields, []string{FieldCEKAlg, "instruction file"}},
		{"V2 file with V3 object fields", v3f.meta, v2f.instr, ParseOptions{}, ErrConflictingFields, []string{FieldV3ContentAlg, "object metadata"}},
		{"duplicate name in file", nil, append([]byte(`{"x-amz-iv":"a","X-AMZ-IV":"b",`), v2f.instr[1:]...), ParseOptions{}, ErrConflictingFields, []string{FieldIV}},

		{"file not JSON", nil, []byte("x-amz-iv=abc"), ParseOptions{}, ErrBadInstructionFile, []string{"instruction file", "not JSON"}},
		{"file is array", nil, []byte(`[]`), ParseOptions{}, ErrBadInstructionFile, []string{"not a JSON object"}},
		{"file trailing data", nil, append(bytes.Clone(v2f.instr), "{}"...), ParseOptions{}, ErrBadInstructionFile, []string{"trailing"}},
		{"file truncated", nil, v2f.instr[:len(v2f.instr)-1], ParseOptions{}, ErrBadInstructionFile, []string{"instruction file"}},
		{"file iv number", nil, []byte(`{"x-amz-iv":12}`), ParseOptions{}, ErrBadInstructionFile, []string{FieldIV, "want a JSON string"}},
		{"file matdesc object", nil, []byte(`{"x-amz-matdesc":{"a":"b"}}`), ParseOptions{}, ErrBadInstructionFile, []string{FieldMatDesc}},

		{"tag length 96", with(v2, FieldTagLen, "96"), nil, ParseOptions{}, ErrBadTagLength, []string{FieldTagLen}},
		{"content length text", with(v2, FieldContentLength, "ten"), nil, ParseOptions{}, ErrBadContentLength, []string{FieldContentLength}},
		{"content length negative", with(v2, FieldContentLength, "-5"), nil, ParseOptions{}, ErrBadContentLength, []string{FieldContentLength}},
		{"content length leading zero", with(v2, FieldContentLength, "05"), nil, ParseOptions{}, ErrBadContentLength, []string{FieldContentLength}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(c.meta, c.instr, c.opts)
			wantErr(t, err, c.sentinel, c.mentions...)
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("%T is not a *FormatError", err)
			}
		})
	}

	// Limits: negative disables, and the valid originals parse.
	if _, err := Parse(with(v2, "user", strings.Repeat("x", 4096)), nil, ParseOptions{MaxMetadataBytes: -1}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []map[string]string{v2, v2kms, v3, v3aes} {
		if _, err := Parse(m, nil, ParseOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWriteErrors(t *testing.T) {
	s := seal(t, V2, PlacementMetadata, WrapAESGCM, []byte("w"), 30)
	_, err := s.env.WithWrappedKey(make([]byte, 59), WrapAESGCM, nil)
	wantErr(t, err, ErrBadKeyLength, FieldKeyV2)
	_, err = s.env.WithWrappedKey(nil, WrapKMSContext, map[string]string{ReservedContextKey: "AES/GCM/NoPadding"})
	wantErr(t, err, ErrBadKeyLength, FieldKeyV2, "empty")
	_, err = s.env.WithWrappedKey([]byte("blob"), WrapKMSContext, map[string]string{"tenant": "a"})
	wantErr(t, err, ErrMissingField, FieldMatDesc, ReservedContextKey)
	_, err = s.env.WithWrappedKey([]byte("blob"), WrapKMSContext, map[string]string{ReservedContextKey: "115"})
	wantErr(t, err, ErrAlgorithmMismatch, FieldMatDesc)
	_, err = s.env.WithWrappedKey([]byte("blob"), WrapKMS, nil)
	wantErr(t, err, ErrReadOnly, FieldWrapAlg)
	_, err = s.env.WithWrappedKey([]byte("blob"), "bogus", nil)
	wantErr(t, err, ErrUnknownAlgorithm, FieldWrapAlg)
	_, err = s.env.WithWrappedKey([]byte("blob"), WrapRSAOAEPSHA1, map[string]string{"k": "\xff"})
	wantErr(t, err, ErrBadMaterialDescription, FieldMatDesc)

	big := map[string]string{"k": strings.Repeat("v", 2000)}
	n, err := s.env.WithWrappedKey(bytes.Repeat([]byte{1}, 256), WrapRSAOAEPSHA1, big)
	if err != nil {
		t.Fatal(err)
	}
	_, err = n.Metadata()
	wantErr(t, err, ErrMetadataTooLarge, "instruction file")
	if _, _, err := n.InstructionFile(); err != nil {
		t.Fatalf("instruction file has no size limit: %v", err)
	}

	_, _, err = EncryptContent(V1, testDataKey(1), nil, detRand(1))
	wantErr(t, err, ErrReadOnly)
	_, _, err = EncryptContent(V2, NewDataKey(make([]byte, 16)), nil, detRand(1))
	wantErr(t, err, ErrBadKeyLength, "data key")
	_, _, err = EncryptContent(V3, testDataKey(1), nil, bytes.NewReader(make([]byte, 100)))
	if err == nil || !strings.Contains(err.Error(), "zeros") {
		t.Fatalf("all-zero message ID accepted: %v", err)
	}
	_, _, err = EncryptContent(V2, testDataKey(1), nil, bytes.NewReader(nil))
	if err == nil {
		t.Fatal("failing random source accepted")
	}

	var zero Envelope
	_, err = zero.Metadata()
	wantErr(t, err, ErrUnknownAlgorithm, "format")
}
