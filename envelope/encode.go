package envelope

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"sort"
	"strconv"
	"unicode/utf8"
)

// Metadata returns the user metadata entries (names without x-amz-meta-) that
// store e in the object's own metadata, exactly as the official Go client
// writes them:
//
//   - V2: x-amz-key-v2, x-amz-iv, x-amz-matdesc, x-amz-wrap-alg,
//     x-amz-cek-alg, x-amz-tag-len ("128") and
//     x-amz-unencrypted-content-length.
//   - V3: x-amz-c, x-amz-3, x-amz-w, x-amz-d, x-amz-i, x-amz-m and x-amz-t
//     (the one the wrapping algorithm does not use is empty) and an empty
//     x-amz-unencrypted-content-length.
//
// An envelope read by Parse keeps the optional entries it was read with
// (present, empty or absent). JSON values have sorted names, no spaces and
// only ASCII (\uXXXX escapes). The result must fit S3's 2 KB user metadata
// limit (ErrMetadataTooLarge); the caller must still check the total with
// the object's other user metadata (see MetadataSize).
func (e *Envelope) Metadata() (map[string]string, error) {
	m, err := e.entries(PlacementMetadata)
	if err != nil {
		return nil, err
	}
	if n := MetadataSize(m); n > DefaultMaxMetadataBytes {
		return nil, &FormatError{Where: whereMeta, Reason: fmt.Sprintf("envelope needs %d bytes of user metadata, limit %d (store it in an instruction file)", n, DefaultMaxMetadataBytes), Err: ErrMetadataTooLarge}
	}
	return m, nil
}

// MetadataSize returns the size S3 counts against its 2 KB user metadata
// limit: the UTF-8 lengths of all names (without x-amz-meta-) and values.
func MetadataSize(meta map[string]string) int {
	n := 0
	for k, v := range meta {
		n += len(normName(k)) + len(v)
	}
	return n
}

// InstructionFile returns what stores e with an instruction file: the
// entries for the object's own metadata (V3: x-amz-c, x-amz-d, x-amz-i; none
// for V2) and the instruction file body, a JSON object of strings with
// sorted names, no spaces and only ASCII. The instruction file object itself
// carries InstructionObjectMetadata. V3 files hold x-amz-3, x-amz-w and
// x-amz-m or x-amz-t; V2 files hold the whole envelope. The key set of a new
// envelope follows the Java client (the Go clients write no instruction
// files); an envelope read by Parse keeps the optional entries it had.
func (e *Envelope) InstructionFile() (objectMeta map[string]string, body []byte, err error) {
	all, err := e.entries(PlacementInstructionFile)
	if err != nil {
		return nil, nil, err
	}
	objectMeta = map[string]string{}
	if e.Format == V3 {
		for _, f := range v3ObjectOnly {
			objectMeta[f] = all[f]
			delete(all, f)
		}
	}
	body, err = marshalASCII(all)
	if err != nil {
		return nil, nil, err
	}
	return objectMeta, body, nil
}

// entries lays out every envelope entry for placement p.
func (e *Envelope) entries(p Placement) (map[string]string, error) {
	if err := e.validate(true); err != nil {
		return nil, err
	}
	md, err := e.matDescJSON()
	if err != nil {
		return nil, err
	}
	fresh := e.srcKeys == nil
	out := map[string]string{}
	// optional writes a recorded value, or an empty entry where the source
	// had one (or the Go writer would write one).
	optional := func(name string, set bool, val string, emptyByDefault bool) {
		switch {
		case set:
			out[name] = val
		case e.srcKeys[name] || (fresh && emptyByDefault):
			out[name] = ""
		}
	}
	tagSet := e.TagLenBits != 0
	lenSet := e.UnencryptedContentLength >= 0
	lenVal := strconv.FormatInt(e.UnencryptedContentLength, 10)

	switch e.Format {
	case V2:
		out[FieldKeyV2] = b64(e.WrappedKey)
		out[FieldIV] = b64(e.IV)
		out[FieldMatDesc] = md
		out[FieldWrapAlg] = string(e.WrapAlg)
		out[FieldCEKAlg] = string(e.CEKAlg)
		optional(FieldTagLen, tagSet, "128", false)
		if fresh && p == PlacementInstructionFile {
			lenSet = false // the Java client does not record it
		}
		optional(FieldContentLength, lenSet, lenVal, false)
	case V3:
		code, _ := e.WrapAlg.V3Code()
		out[FieldV3ContentAlg] = string(e.CEKAlg)
		out[FieldV3Key] = b64(e.WrappedKey)
		out[FieldV3WrapAlg] = code
		out[FieldV3Commitment] = b64(e.KeyCommitment)
		out[FieldV3MessageID] = b64(e.MessageID)
		active, inactive := FieldV3MatDesc, FieldV3Context
		if e.WrapAlg == WrapKMSContext {
			active, inactive = inactive, active
		}
		out[active] = md
		goShape := fresh && p == PlacementMetadata
		if goShape || (e.srcKeys[FieldV3MatDesc] && e.srcKeys[FieldV3Context]) {
			out[inactive] = ""
		}
		optional(FieldContentLength, lenSet, lenVal, goShape)
		optional(FieldTagLen, tagSet, "128", false)
	}
	return out, nil
}

// matDescJSON returns the JSON text of MatDesc: the text it was read from
// when that is ASCII and still equal, else a fresh encoding.
func (e *Envelope) matDescJSON() (string, error) {
	if e.rawMatDesc != "" && isASCII(e.rawMatDesc) {
		if m, err := parseMatDesc(e.rawMatDesc); err == nil && maps.Equal(m, e.MatDesc) {
			return e.rawMatDesc, nil
		}
	}
	md := e.MatDesc
	if md == nil {
		md = map[string]string{}
	}
	b, err := marshalASCII(md)
	if err != nil {
		return "", ferr(e.matDescField(), ErrBadMaterialDescription, err.Error())
	}
	return string(b), nil
}

// marshalASCII encodes a string map as Go's encoding/json does (sorted
// names, no spaces, <>& and U+2028/U+2029 escaped) and then escapes every
// other non-ASCII rune as \uXXXX (UTF-16 surrogate pairs above U+FFFF), so
// that S3 stores the text unchanged.
func marshalASCII(m map[string]string) ([]byte, error) {
	for k, v := range m {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, fmt.Errorf("entry %q is not valid UTF-8", truncate(k, 40))
		}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			buf.WriteByte(',')
		}
		writeJSONString(&buf, k)
		buf.WriteByte(':')
		writeJSONString(&buf, m[k])
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

func writeJSONString(buf *bytes.Buffer, s string) {
	b, _ := json.Marshal(s) // valid UTF-8 checked by the caller; never fails
	const hex = "0123456789abcdef"
	for _, r := range string(b) {
		if r < utf8.RuneSelf {
			buf.WriteByte(byte(r))
			continue
		}
		var units []rune
		if r > 0xFFFF {
			r -= 0x10000
			units = []rune{0xD800 + (r>>10)&0x3FF, 0xDC00 + r&0x3FF}
		} else {
			units = []rune{r}
		}
		for _, u := range units {
			buf.WriteString(`\u`)
			buf.WriteByte(hex[u>>12&0xF])
			buf.WriteByte(hex[u>>8&0xF])
			buf.WriteByte(hex[u>>4&0xF])
			buf.WriteByte(hex[u&0xF])
		}
	}
}
