package envelope

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Metadata names (without the x-amz-meta- prefix S3 adds on the wire).
const (
	FieldKeyV1         = "x-amz-key"
	FieldKeyV2         = "x-amz-key-v2"
	FieldIV            = "x-amz-iv"
	FieldMatDesc       = "x-amz-matdesc"
	FieldWrapAlg       = "x-amz-wrap-alg"
	FieldCEKAlg        = "x-amz-cek-alg"
	FieldTagLen        = "x-amz-tag-len"
	FieldContentLength = "x-amz-unencrypted-content-length"
	FieldV3ContentAlg  = "x-amz-c"
	FieldV3Key         = "x-amz-3"
	FieldV3MatDesc     = "x-amz-m"
	FieldV3Context     = "x-amz-t"
	FieldV3WrapAlg     = "x-amz-w"
	FieldV3Commitment  = "x-amz-d"
	FieldV3MessageID   = "x-amz-i"
	// FieldInstructionFile marks an instruction file object (Java client).
	FieldInstructionFile = "x-amz-crypto-instr-file"
)

// MetaPrefix is the prefix of user metadata headers on the wire.
const MetaPrefix = "x-amz-meta-"

// DefaultInstructionSuffix is appended to an object key to name its
// instruction file.
const DefaultInstructionSuffix = ".instruction"

// Default limits for ParseOptions.
const (
	// DefaultMaxMetadataBytes is S3's limit on user-defined metadata: the
	// sum of the UTF-8 lengths of all names and values.
	DefaultMaxMetadataBytes = 2048
	// DefaultMaxInstructionFileBytes bounds the instruction file body.
	DefaultMaxInstructionFileBytes = 64 << 10
)

const (
	whereMeta  = "object metadata"
	whereInstr = "instruction file"
)

var (
	v12Fields = []string{FieldKeyV1, FieldKeyV2, FieldIV, FieldMatDesc, FieldWrapAlg, FieldCEKAlg}
	v3Fields  = []string{FieldV3ContentAlg, FieldV3Key, FieldV3MatDesc, FieldV3Context, FieldV3WrapAlg, FieldV3Commitment, FieldV3MessageID}
	// v3ObjectOnly are the V3 fields that never live in an instruction file.
	v3ObjectOnly = []string{FieldV3ContentAlg, FieldV3Commitment, FieldV3MessageID}
)

// IsEnvelopeField reports whether a user metadata name (any case, with or
// without the x-amz-meta- prefix) belongs to an envelope. A copy that
// replaces an object's envelope keeps every other user metadata entry.
func IsEnvelopeField(name string) bool {
	switch normName(name) {
	case FieldKeyV1, FieldKeyV2, FieldIV, FieldMatDesc, FieldWrapAlg, FieldCEKAlg,
		FieldTagLen, FieldContentLength, FieldV3ContentAlg, FieldV3Key,
		FieldV3MatDesc, FieldV3Context, FieldV3WrapAlg, FieldV3Commitment,
		FieldV3MessageID:
		return true
	}
	return false
}

// Envelope is a decoded S3EC envelope. Binary fields hold decoded bytes;
// treat the slices and the map as read-only (use Clone or WithWrappedKey to
// change them).
type Envelope struct {
	Format    Format
	Placement Placement
	// CEKAlg is the content algorithm (x-amz-cek-alg / x-amz-c).
	CEKAlg ContentAlg
	// WrapAlg is the wrapping algorithm (x-amz-wrap-alg, or x-amz-w
	// translated to its full name). For V1 objects without x-amz-wrap-alg
	// it is inferred like the Java client does: RSA above 48 bytes of
	// wrapped key, AES otherwise.
	WrapAlg WrapAlg
	// WrappedKey is the encrypted data key (x-amz-key / x-amz-key-v2 /
	// x-amz-3).
	WrappedKey []byte
	// IV is the V1/V2 content IV (x-amz-iv); nil for V3.
	IV []byte
	// MatDesc is the material description, or for KMS wrapping the KMS
	// encryption context (x-amz-matdesc; in V3 x-amz-t for kms+context,
	// x-amz-m otherwise). Never nil after Parse.
	MatDesc map[string]string
	// TagLenBits is the recorded x-amz-tag-len: 128, or 0 when absent.
	// AES-GCM content always carries a 128-bit tag.
	TagLenBits int
	// UnencryptedContentLength is x-amz-unencrypted-content-length, or -1
	// when absent or empty.
	UnencryptedContentLength int64
	// MessageID (x-amz-i) and KeyCommitment (x-amz-d), 28 bytes each; V3.
	MessageID     []byte
	KeyCommitment []byte

	// rawMatDesc is the JSON text MatDesc was read from; written back
	// unchanged while it is ASCII and still describes MatDesc.
	rawMatDesc string
	// srcKeys holds the envelope names present where the envelope was read
	// from; nil for an envelope this package created. It keeps optional
	// empty entries (Go's empty x-amz-m, ...) across a rewrite.
	srcKeys map[string]bool
}

// ParseOptions configures Parse.
type ParseOptions struct {
	// AllowLegacy accepts V1 envelopes, AES/CBC content and the legacy
	// wrapping algorithms (kms, AESWrap, AES, RSA, RSA-OAEP-SHA256).
	AllowLegacy bool
	// MaxMetadataBytes bounds the object's user metadata (names without the
	// prefix plus decoded values). 0 means DefaultMaxMetadataBytes; a
	// negative value disables the check.
	MaxMetadataBytes int
	// MaxInstructionFileBytes bounds the instruction file body. 0 means
	// DefaultMaxInstructionFileBytes; negative disables the check.
	MaxInstructionFileBytes int
}

// InstructionKey returns the key of the instruction file of objectKey;
// suffix "" means DefaultInstructionSuffix.
func InstructionKey(objectKey, suffix string) string {
	if suffix == "" {
		suffix = DefaultInstructionSuffix
	}
	return objectKey + suffix
}

// InstructionObjectMetadata returns the user metadata the Java client puts on
// an instruction file object itself: x-amz-crypto-instr-file with an empty
// value.
func InstructionObjectMetadata() map[string]string {
	return map[string]string{FieldInstructionFile: ""}
}

// IsInstructionFile reports whether an object's user metadata marks it as an
// instruction file (Java's x-amz-crypto-instr-file).
func IsInstructionFile(objectMeta map[string]string) bool {
	for k := range objectMeta {
		if normName(k) == FieldInstructionFile {
			return true
		}
	}
	return false
}

// NeedsInstructionFile reports whether objectMeta holds no complete envelope,
// so that Parse needs the object's instruction file. It is also true for an
// object that is not encrypted at all (its instruction file does not exist)
// and false for an instruction file object itself.
func NeedsInstructionFile(objectMeta map[string]string) bool {
	if IsInstructionFile(objectMeta) {
		return false
	}
	has := map[string]bool{}
	for k := range objectMeta {
		has[normName(k)] = true
	}
	return detect(has) == 0
}

func normName(k string) string {
	k = strings.ToLower(k)
	return strings.TrimPrefix(k, MetaPrefix)
}

// detect returns the format of a complete envelope among the names in has,
// or 0 (the official clients' rules: V1 x-amz-key + x-amz-iv, V2
// x-amz-key-v2 + x-amz-iv, V3 x-amz-3 + x-amz-d + x-amz-i).
func detect(has map[string]bool) Format {
	switch {
	case has[FieldV3Key] && has[FieldV3Commitment] && has[FieldV3MessageID]:
		return V3
	case has[FieldKeyV2] && has[FieldIV]:
		return V2
	case has[FieldKeyV1] && has[FieldIV]:
		return V1
	}
	return 0
}

// fieldSet is the merged view Parse decodes from, remembering where each
// value came from for error messages.
type fieldSet struct {
	vals  map[string]string
	where map[string]string
	def   string
}

func (fs *fieldSet) get(name string) (string, bool) {
	v, ok := fs.vals[name]
	return v, ok
}

func (fs *fieldSet) whereOf(name string) string {
	if w, ok := fs.where[name]; ok {
		return w
	}
	return fs.def
}

func (fs *fieldSet) err(name string, sentinel error, format string, args ...any) *FormatError {
	return &FormatError{Where: fs.whereOf(name), Field: name, Reason: fmt.Sprintf(format, args...), Err: sentinel}
}

func (fs *fieldSet) has(names ...string) []string {
	var out []string
	for _, n := range names {
		if _, ok := fs.vals[n]; ok {
			out = append(out, n)
		}
	}
	return out
}

// Parse decodes the envelope of an object from its user metadata (names as
// the AWS SDK returns them: without x-amz-meta-, lowercase; any case and the
// prefixed form are accepted too) and, when the metadata holds no complete
// envelope, from its instruction file body (nil if there is none).
//
// A complete envelope in the metadata wins over an instruction file. A V3
// instruction file holds x-amz-3, x-amz-w and x-amz-m or x-amz-t; x-amz-c,
// x-amz-d and x-amz-i are then read from the metadata, and are rejected
// inside the file (ErrV3FieldInInstructionFile). Metadata values that S3
// returns RFC 2047-encoded are decoded.
func Parse(objectMeta map[string]string, instruction []byte, opts ParseOptions) (*Envelope, error) {
	om, err := normalizeMeta(objectMeta, opts)
	if err != nil {
		return nil, err
	}
	if _, ok := om[FieldInstructionFile]; ok {
		return nil, &FormatError{Where: whereMeta, Field: FieldInstructionFile,
			Reason: "object is an instruction file, not an encrypted object", Err: ErrNotEncrypted}
	}
	ms := &fieldSet{vals: om, def: whereMeta}
	if f := detect(presence(om)); f != 0 {
		if err := checkExclusive(ms, f); err != nil {
			return nil, err
		}
		return decode(f, ms, PlacementMetadata, opts)
	}

	if instruction == nil {
		if got := ms.has(v3ObjectOnly...); len(got) > 0 {
			return nil, &FormatError{Where: whereMeta, Field: strings.Join(got, ", "),
				Reason: "V3 envelope without x-amz-3: its instruction file is needed but was not given", Err: ErrMissingField}
		}
		if got := ms.has(append(append([]string{}, v12Fields...), v3Fields...)...); len(got) > 0 {
			return nil, &FormatError{Where: whereMeta, Field: strings.Join(got, ", "),
				Reason: "incomplete envelope and no instruction file", Err: ErrMissingField}
		}
		return nil, &FormatError{Where: whereMeta, Reason: "no envelope in object metadata and no instruction file", Err: ErrNotEncrypted}
	}

	limit := opts.MaxInstructionFileBytes
	if limit == 0 {
		limit = DefaultMaxInstructionFileBytes
	}
	if limit > 0 && len(instruction) > limit {
		return nil, &FormatError{Where: whereInstr, Reason: fmt.Sprintf("%d bytes, limit %d", len(instruction), limit), Err: ErrMetadataTooLarge}
	}
	im, err := parseInstructionJSON(instruction)
	if err != nil {
		return nil, err
	}
	is := &fieldSet{vals: im, def: whereInstr}

	if _, ok := im[FieldV3Key]; ok {
		if got := is.has(v3ObjectOnly...); len(got) > 0 {
			return nil, &FormatError{Where: whereInstr, Field: strings.Join(got, ", "),
				Reason: "V3 instruction files must not hold x-amz-c, x-amz-d or x-amz-i (they belong in the object's metadata)",
				Err:    ErrV3FieldInInstructionFile}
		}
		if got := is.has(v12Fields...); len(got) > 0 {
			return nil, &FormatError{Where: whereInstr, Field: strings.Join(got, ", "),
				Reason: "V1/V2 fields beside x-amz-3", Err: ErrConflictingFields}
		}
		merged := &fieldSet{vals: maps.Clone(im), where: map[string]string{}, def: whereInstr}
		for _, f := range v3ObjectOnly {
			merged.where[f] = whereMeta
			if v, ok := om[f]; ok {
				merged.vals[f] = v
			} else {
				delete(merged.vals, f)
			}
		}
		return decode(V3, merged, PlacementInstructionFile, opts)
	}

	f := detect(presence(im))
	if f == 0 {
		if got := is.has(v3Fields...); len(got) > 0 {
			return nil, is.err(FieldV3Key, ErrMissingField, "V3 instruction file without x-amz-3")
		}
		switch {
		case im[FieldKeyV2] != "" || im[FieldKeyV1] != "":
			return nil, is.err(FieldIV, ErrMissingField, "missing")
		default:
			return nil, is.err(FieldKeyV2, ErrMissingField, "no wrapped data key (x-amz-key-v2, x-amz-key or x-amz-3)")
		}
	}
	if got := ms.has(v3ObjectOnly...); len(got) > 0 {
		return nil, &FormatError{Where: whereMeta, Field: strings.Join(got, ", "),
			Reason: fmt.Sprintf("V3 fields on an object whose instruction file is %v", f), Err: ErrConflictingFields}
	}
	if err := checkExclusive(is, f); err != nil {
		return nil, err
	}
	return decode(f, is, PlacementInstructionFile, opts)
}

func presence(m map[string]string) map[string]bool {
	has := make(map[string]bool, len(m))
	for k := range m {
		has[k] = true
	}
	return has
}

// checkExclusive rejects names that belong to another format than f.
func checkExclusive(fs *fieldSet, f Format) error {
	var other []string
	switch f {
	case V1:
		other = append([]string{FieldKeyV2}, v3Fields...)
	case V2:
		other = append([]string{FieldKeyV1}, v3Fields...)
	case V3:
		other = v12Fields
	}
	if got := fs.has(other...); len(got) > 0 {
		return &FormatError{Where: fs.whereOf(got[0]), Field: strings.Join(got, ", "),
			Reason: fmt.Sprintf("not part of a %v envelope", f), Err: ErrConflictingFields}
	}
	return nil
}

// normalizeMeta lowercases names, strips the x-amz-meta- prefix, decodes
// RFC 2047 in the JSON-valued envelope fields and checks the size limit.
func normalizeMeta(meta map[string]string, opts ParseOptions) (map[string]string, error) {
	out := make(map[string]string, len(meta))
	size := 0
	for k, v := range meta {
		n := normName(k)
		if n == FieldMatDesc || n == FieldV3MatDesc || n == FieldV3Context {
			d, err := decodeS3Value(v)
			if err != nil {
				return nil, &FormatError{Where: whereMeta, Field: n, Reason: "bad RFC 2047 encoding: " + err.Error(), Err: ErrBadMaterialDescription}
			}
			v = d
		}
		if old, ok := out[n]; ok && old != v {
			return nil, &FormatError{Where: whereMeta, Field: n, Reason: "given twice with different values", Err: ErrConflictingFields}
		}
		if _, ok := out[n]; !ok {
			size += len(n) + len(v)
		}
		out[n] = v
	}
	limit := opts.MaxMetadataBytes
	if limit == 0 {
		limit = DefaultMaxMetadataBytes
	}
	if limit > 0 && size > limit {
		return nil, &FormatError{Where: whereMeta, Reason: fmt.Sprintf("%d bytes of user metadata, limit %d", size, limit), Err: ErrMetadataTooLarge}
	}
	return out, nil
}

// decodeS3Value undoes the RFC 2047 encoding S3 applies to non-ASCII
// metadata values on the way out, and then S3's "double encoding": a value
// sent as raw UTF-8 is stored as if it were ISO-8859-1, so after decoding
// each original byte shows up as one rune below U+0100. Such a value is
// folded back to its UTF-8 bytes when that yields valid UTF-8.
func decodeS3Value(v string) (string, error) {
	if !strings.Contains(v, "=?") {
		return v, nil
	}
	s, err := new(mime.WordDecoder).DecodeHeader(v)
	if err != nil {
		return "", err
	}
	if s == v || isASCII(s) {
		return s, nil
	}
	b := make([]byte, 0, len(s))
	for _, r := range s {
		if r > 0xFF {
			return s, nil
		}
		b = append(b, byte(r))
	}
	if !utf8.Valid(b) {
		return s, nil
	}
	return string(b), nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// parseInstructionJSON reads an instruction file: a JSON object of strings.
// x-amz-tag-len and x-amz-unencrypted-content-length may also be integers;
// null means absent. Names are matched case-insensitively (as Go's
// encoding/json does) and may not repeat.
func parseInstructionJSON(b []byte) (map[string]string, error) {
	bad := func(field, format string, args ...any) error {
		return &FormatError{Where: whereInstr, Field: field, Reason: fmt.Sprintf(format, args...), Err: ErrBadInstructionFile}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, bad("", "not JSON: %v", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, bad("", "not a JSON object")
	}
	out := map[string]string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, bad("", "not JSON: %v", err)
		}
		name := strings.ToLower(tok.(string))
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, bad(name, "not JSON: %v", err)
		}
		if _, dup := out[name]; dup {
			return nil, &FormatError{Where: whereInstr, Field: name, Reason: "given twice", Err: ErrConflictingFields}
		}
		if !IsEnvelopeField(name) && name != FieldInstructionFile {
			continue
		}
		switch raw[0] {
		case '"':
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return nil, bad(name, "bad JSON string: %v", err)
			}
			out[name] = s
		case 'n':
			// null: absent, as in the Go client.
		default:
			if name != FieldTagLen && name != FieldContentLength {
				return nil, bad(name, "want a JSON string, got %s", jsonKind(raw))
			}
			n, err := strconv.ParseInt(string(raw), 10, 64)
			if err != nil {
				return nil, bad(name, "want a string or an integer, got %s", truncate(string(raw), 32))
			}
			out[name] = strconv.FormatInt(n, 10)
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, bad("", "not JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, bad("", "trailing data after the JSON object")
	}
	return out, nil
}

func jsonKind(raw []byte) string {
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	}
	return "a number"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// decode builds and validates an envelope of format f from fs.
func decode(f Format, fs *fieldSet, p Placement, opts ParseOptions) (*Envelope, error) {
	e := &Envelope{Format: f, Placement: p, UnencryptedContentLength: -1, srcKeys: map[string]bool{}}
	for k := range fs.vals {
		if IsEnvelopeField(k) && fs.whereOf(k) == fs.def {
			e.srcKeys[k] = true
		}
	}
	var err error
	if f == V3 {
		err = decodeV3(e, fs)
	} else {
		err = decodeV12(e, fs, opts)
	}
	if err != nil {
		return nil, err
	}
	if err := decodeOptional(e, fs); err != nil {
		return nil, err
	}
	if err := e.validate(false); err != nil {
		if err.Where == "" && err.Field != "" {
			err.Where = fs.whereOf(err.Field)
		}
		return nil, err
	}
	return e, nil
}

func decodeV12(e *Envelope, fs *fieldSet, opts ParseOptions) error {
	keyField := FieldKeyV2
	if e.Format == V1 {
		keyField = FieldKeyV1
		if !opts.AllowLegacy {
			return fs.err(keyField, ErrLegacyAlgorithm, "V1 envelope (AES/CBC content) needs AllowLegacy")
		}
	}
	var err error
	if e.WrappedKey, err = requiredB64(fs, keyField); err != nil {
		return err
	}

	cek, ok := fs.get(FieldCEKAlg)
	switch {
	case e.Format == V1 && (!ok || cek == ""):
		e.CEKAlg = ContentAESCBC
	case e.Format == V1 && cek != string(ContentAESCBC):
		return fs.err(FieldCEKAlg, ErrAlgorithmMismatch, "V1 (x-amz-key) objects use %s, got %q", ContentAESCBC, truncate(cek, 40))
	case !ok || cek == "":
		return fs.err(FieldCEKAlg, ErrMissingField, "missing")
	case cek == string(ContentAESGCM) || cek == string(ContentAESCBC):
		e.CEKAlg = ContentAlg(cek)
	case cek == string(ContentCommitKey):
		return fs.err(FieldCEKAlg, ErrAlgorithmMismatch, "suite 115 needs the V3 format (x-amz-c)")
	default:
		return fs.err(FieldCEKAlg, ErrUnknownAlgorithm, "unknown content algorithm %q", truncate(cek, 40))
	}
	if e.CEKAlg.Legacy() && !opts.AllowLegacy {
		return fs.err(FieldCEKAlg, ErrLegacyAlgorithm, "legacy content algorithm %s needs AllowLegacy", e.CEKAlg)
	}

	w, ok := fs.get(FieldWrapAlg)
	switch {
	case (!ok || w == "") && e.Format == V1:
		// As the Java client: V1 encryption-only objects carry no
		// wrap-alg; RSA ciphertexts are longer than any padded AES key.
		if len(e.WrappedKey) > 48 {
			e.WrapAlg = WrapRSA
		} else {
			e.WrapAlg = WrapAES
		}
	case !ok || w == "":
		return fs.err(FieldWrapAlg, ErrMissingField, "missing")
	case !WrapAlg(w).Known():
		return fs.err(FieldWrapAlg, ErrUnknownAlgorithm, "unknown wrapping algorithm %q", truncate(w, 40))
	default:
		e.WrapAlg = WrapAlg(w)
	}
	if e.WrapAlg.Legacy() && !opts.AllowLegacy {
		return fs.err(FieldWrapAlg, ErrLegacyAlgorithm, "legacy wrapping algorithm %s needs AllowLegacy", e.WrapAlg)
	}

	if e.IV, err = requiredB64(fs, FieldIV); err != nil {
		return err
	}
	return decodeMatDesc(e, fs, FieldMatDesc)
}

func decodeV3(e *Envelope, fs *fieldSet) error {
	c, ok := fs.get(FieldV3ContentAlg)
	switch {
	case !ok || c == "":
		return fs.err(FieldV3ContentAlg, ErrMissingField, "missing")
	case c != string(ContentCommitKey):
		return fs.err(FieldV3ContentAlg, ErrUnknownAlgorithm, "want %q, got %q", ContentCommitKey, truncate(c, 40))
	}
	e.CEKAlg = ContentCommitKey

	w, ok := fs.get(FieldV3WrapAlg)
	if !ok || w == "" {
		return fs.err(FieldV3WrapAlg, ErrMissingField, "missing")
	}
	alg, ok := WrapAlgFromV3Code(w)
	if !ok {
		return fs.err(FieldV3WrapAlg, ErrUnknownAlgorithm, "unknown V3 wrapping algorithm code %q (want 02, 12 or 22)", truncate(w, 40))
	}
	e.WrapAlg = alg

	var err error
	if e.WrappedKey, err = requiredB64(fs, FieldV3Key); err != nil {
		return err
	}
	if e.KeyCommitment, err = requiredB64(fs, FieldV3Commitment); err != nil {
		return err
	}
	if e.MessageID, err = requiredB64(fs, FieldV3MessageID); err != nil {
		return err
	}
	return decodeMatDesc(e, fs, e.matDescField())
}

// decodeMatDesc reads a JSON object of strings; absent or empty means {}.
func decodeMatDesc(e *Envelope, fs *fieldSet, field string) error {
	raw, _ := fs.get(field)
	if raw == "" {
		e.MatDesc = map[string]string{}
		return nil
	}
	m, err := parseMatDesc(raw)
	if err != nil {
		return fs.err(field, ErrBadMaterialDescription, "%s", err.Error())
	}
	e.MatDesc = m
	e.rawMatDesc = raw
	return nil
}

func parseMatDesc(raw string) (map[string]string, error) {
	if m, ok := parseFlatMatDesc(raw); ok {
		return m, nil
	}
	dec := json.NewDecoder(strings.NewReader(raw))
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("not a JSON object: %v", err)
	}
	if m == nil {
		return nil, errors.New("not a JSON object: null")
	}
	if dec.More() {
		return nil, errors.New("trailing data after the JSON object")
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("value of %q is not a string", truncate(k, 40))
		}
		out[k] = s
	}
	return out, nil
}

// parseFlatMatDesc reads raw without encoding/json when it is what the
// clients write: one JSON object, surrounded by JSON whitespace at most,
// whose keys and values are strings of printable ASCII without escapes.
// Then it returns what encoding/json would (a later duplicate key wins);
// otherwise ok is false and encoding/json decides. Every object's envelope
// is parsed more than once per rewrap, and the decoder's allocations were
// most of the parser's.
func parseFlatMatDesc(raw string) (m map[string]string, ok bool) {
	i := skipJSONSpace(raw, 0)
	if i == len(raw) || raw[i] != '{' {
		return nil, false
	}
	m = make(map[string]string, 2)
	i = skipJSONSpace(raw, i+1)
	if i < len(raw) && raw[i] == '}' {
		return m, skipJSONSpace(raw, i+1) == len(raw)
	}
	for {
		k, j, ok := flatJSONString(raw, i)
		if !ok {
			return nil, false
		}
		if i = skipJSONSpace(raw, j); i == len(raw) || raw[i] != ':' {
			return nil, false
		}
		v, j, ok := flatJSONString(raw, skipJSONSpace(raw, i+1))
		if !ok {
			return nil, false
		}
		m[k] = v
		if i = skipJSONSpace(raw, j); i == len(raw) {
			return nil, false
		}
		switch raw[i] {
		case ',':
			i = skipJSONSpace(raw, i+1)
		case '}':
			return m, skipJSONSpace(raw, i+1) == len(raw)
		default:
			return nil, false
		}
	}
}

// flatJSONString reads the string at raw[i:] when it holds only
// printable ASCII and no escape; next is the index after its quote.
func flatJSONString(raw string, i int) (s string, next int, ok bool) {
	if i >= len(raw) || raw[i] != '"' {
		return "", 0, false
	}
	for j := i + 1; j < len(raw); j++ {
		switch c := raw[j]; {
		case c == '"':
			return raw[i+1 : j], j + 1, true
		case c == '\\' || c < 0x20 || c > 0x7e:
			return "", 0, false
		}
	}
	return "", 0, false
}

func skipJSONSpace(raw string, i int) int {
	for i < len(raw) && (raw[i] == ' ' || raw[i] == '\t' || raw[i] == '\n' || raw[i] == '\r') {
		i++
	}
	return i
}

func decodeOptional(e *Envelope, fs *fieldSet) error {
	if v, ok := fs.get(FieldTagLen); ok && v != "" {
		if v != "128" {
			return fs.err(FieldTagLen, ErrBadTagLength, "want 128, got %q", truncate(v, 20))
		}
		e.TagLenBits = TagLenBits
	}
	if v, ok := fs.get(FieldContentLength); ok && v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || (len(v) > 1 && v[0] == '0') {
			return fs.err(FieldContentLength, ErrBadContentLength, "want a non-negative decimal integer, got %q", truncate(v, 24))
		}
		e.UnencryptedContentLength = n
	}
	return nil
}

func requiredB64(fs *fieldSet, field string) ([]byte, error) {
	v, ok := fs.get(field)
	if !ok || v == "" {
		return nil, fs.err(field, ErrMissingField, "missing")
	}
	b, err := decodeB64(v)
	if err != nil {
		return nil, fs.err(field, ErrBadBase64, "not canonical standard base64: %v", err)
	}
	return b, nil
}

// decodeB64 accepts only canonical padded standard base64, so that
// re-encoding reproduces the stored text byte for byte.
func decodeB64(s string) ([]byte, error) {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		return nil, fmt.Errorf("line break at offset %d", i)
	}
	return base64.StdEncoding.Strict().DecodeString(s)
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// Field names of e's format.

func (e *Envelope) keyField() string {
	switch e.Format {
	case V1:
		return FieldKeyV1
	case V3:
		return FieldV3Key
	}
	return FieldKeyV2
}

func (e *Envelope) matDescField() string {
	if e.Format != V3 {
		return FieldMatDesc
	}
	if e.WrapAlg == WrapKMSContext {
		return FieldV3Context
	}
	return FieldV3MatDesc
}

func (e *Envelope) wrapField() string {
	if e.Format == V3 {
		return FieldV3WrapAlg
	}
	return FieldWrapAlg
}

func (e *Envelope) cekField() string {
	if e.Format == V3 {
		return FieldV3ContentAlg
	}
	return FieldCEKAlg
}

// validate checks the decoded fields against each other. forWrite adds the
// rules for envelopes this package writes (no V1, no legacy wrapping).
func (e *Envelope) validate(forWrite bool) *FormatError {
	switch e.Format {
	case V1, V2, V3:
	default:
		return ferr("format", ErrUnknownAlgorithm, fmt.Sprintf("unknown format %v", e.Format))
	}
	if forWrite && e.Format == V1 {
		return ferr(FieldKeyV1, ErrReadOnly, "V1 envelopes are read-only; re-encrypt the content to write V2 or V3")
	}
	if e.Placement != PlacementMetadata && e.Placement != PlacementInstructionFile {
		return ferr("placement", ErrUnknownAlgorithm, fmt.Sprintf("unknown placement %v", e.Placement))
	}

	// Content algorithm and its parameters.
	switch e.Format {
	case V3:
		if e.CEKAlg != ContentCommitKey {
			return ferr(FieldV3ContentAlg, ErrAlgorithmMismatch, fmt.Sprintf("V3 needs suite %s, got %q", ContentCommitKey, e.CEKAlg))
		}
		if len(e.MessageID) != MessageIDSize {
			return ferr(FieldV3MessageID, ErrBadIVLength, fmt.Sprintf("want %d bytes, got %d", MessageIDSize, len(e.MessageID)))
		}
		if len(e.KeyCommitment) != CommitmentSize {
			return ferr(FieldV3Commitment, ErrBadKeyLength, fmt.Sprintf("want %d bytes of key commitment, got %d", CommitmentSize, len(e.KeyCommitment)))
		}
		if e.IV != nil {
			return ferr(FieldIV, ErrConflictingFields, "V3 envelopes have no IV (the message ID replaces it)")
		}
	default:
		want := GCMIVSize
		switch e.CEKAlg {
		case ContentAESGCM:
			if e.Format == V1 {
				return ferr(FieldCEKAlg, ErrAlgorithmMismatch, "V1 envelopes use "+string(ContentAESCBC))
			}
		case ContentAESCBC:
			want = CBCIVSize
		case ContentCommitKey:
			return ferr(FieldCEKAlg, ErrAlgorithmMismatch, "suite 115 needs the V3 format")
		default:
			return ferr(FieldCEKAlg, ErrUnknownAlgorithm, fmt.Sprintf("unknown content algorithm %q", truncate(string(e.CEKAlg), 40)))
		}
		if len(e.IV) != want {
			return ferr(FieldIV, ErrBadIVLength, fmt.Sprintf("want %d bytes, got %d", want, len(e.IV)))
		}
		if e.MessageID != nil || e.KeyCommitment != nil {
			return ferr(FieldV3MessageID, ErrConflictingFields, "message ID and key commitment exist only in V3")
		}
	}

	// Wrapping.
	if !e.WrapAlg.Known() {
		return ferr(e.wrapField(), ErrUnknownAlgorithm, fmt.Sprintf("unknown wrapping algorithm %q", truncate(string(e.WrapAlg), 40)))
	}
	if e.Format == V3 {
		if _, ok := e.WrapAlg.V3Code(); !ok {
			return ferr(FieldV3WrapAlg, ErrUnknownAlgorithm, fmt.Sprintf("V3 cannot express wrapping algorithm %s", e.WrapAlg))
		}
	}
	if forWrite && e.WrapAlg.Legacy() {
		return ferr(e.wrapField(), ErrReadOnly, fmt.Sprintf("legacy wrapping algorithm %s is read-only", e.WrapAlg))
	}
	if len(e.WrappedKey) == 0 {
		return ferr(e.keyField(), ErrBadKeyLength, "empty wrapped data key")
	}
	if e.WrapAlg == WrapAESGCM && len(e.WrappedKey) != AESGCMWrappedSize {
		return ferr(e.keyField(), ErrBadKeyLength, fmt.Sprintf("AES/GCM-wrapped data key: want %d bytes, got %d", AESGCMWrappedSize, len(e.WrappedKey)))
	}

	// Material description / KMS context.
	md := e.matDescField()
	for k, v := range e.MatDesc {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return ferr(md, ErrBadMaterialDescription, "entries must be valid UTF-8")
		}
	}
	if e.WrapAlg == WrapKMSContext {
		if err := checkCEKContext(e.MatDesc, e.CEKAlg); err != nil {
			err.Field = md
			return err
		}
	}

	if e.TagLenBits != 0 && e.TagLenBits != TagLenBits {
		return ferr(FieldTagLen, ErrBadTagLength, fmt.Sprintf("want 128, got %d", e.TagLenBits))
	}
	if e.UnencryptedContentLength < -1 {
		return ferr(FieldContentLength, ErrBadContentLength, fmt.Sprintf("negative length %d", e.UnencryptedContentLength))
	}
	return nil
}

// checkCEKContext enforces, as the Go client does, that a kms+context
// encryption context names the content algorithm under aws:x-amz-cek-alg.
func checkCEKContext(ctx map[string]string, cek ContentAlg) *FormatError {
	v, ok := ctx[ReservedContextKey]
	if !ok {
		return ferr("", ErrMissingField, fmt.Sprintf("kms+context encryption context lacks %q", ReservedContextKey))
	}
	if v != string(cek) {
		return ferr("", ErrAlgorithmMismatch, fmt.Sprintf("encryption context says %s=%q but the content algorithm is %q (altered or corrupted metadata)",
			ReservedContextKey, truncate(v, 40), cek))
	}
	return nil
}

// KMSContext returns a copy of the KMS encryption context to pass to KMS
// Decrypt/ReEncrypt for a kms+context (or legacy kms) wrapped key. For
// kms+context it enforces that aws:x-amz-cek-alg matches the content
// algorithm.
func (e *Envelope) KMSContext() (map[string]string, error) {
	if !e.WrapAlg.IsKMS() {
		return nil, ferr(e.wrapField(), ErrAlgorithmMismatch, fmt.Sprintf("wrapping algorithm %s is not KMS", e.WrapAlg))
	}
	if e.WrapAlg == WrapKMSContext {
		if err := checkCEKContext(e.MatDesc, e.CEKAlg); err != nil {
			err.Field = e.matDescField()
			return nil, err
		}
	}
	out := maps.Clone(e.MatDesc)
	if out == nil {
		out = map[string]string{}
	}
	return out, nil
}

// NewKMSContext returns the encryption context for wrapping a data key with
// kms+context: a copy of userContext plus aws:x-amz-cek-alg = cek. A
// userContext holding the reserved key is refused, as by the official
// clients.
func NewKMSContext(cek ContentAlg, userContext map[string]string) (map[string]string, error) {
	if _, ok := userContext[ReservedContextKey]; ok {
		return nil, ferr("encryption context", ErrBadMaterialDescription,
			fmt.Sprintf("%q is reserved for the S3 Encryption Client", ReservedContextKey))
	}
	out := make(map[string]string, len(userContext)+1)
	maps.Copy(out, userContext)
	out[ReservedContextKey] = string(cek)
	return out, nil
}

// Clone returns a deep copy of e.
func (e *Envelope) Clone() *Envelope {
	n := *e
	n.WrappedKey = cloneBytes(e.WrappedKey)
	n.IV = cloneBytes(e.IV)
	n.MessageID = cloneBytes(e.MessageID)
	n.KeyCommitment = cloneBytes(e.KeyCommitment)
	n.MatDesc = maps.Clone(e.MatDesc)
	n.srcKeys = maps.Clone(e.srcKeys)
	return &n
}

func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

// WithWrappedKey returns a copy of e in which only the wrapping changed: the
// wrapped key, its algorithm and the material description (for KMS: the
// encryption context, which must hold aws:x-amz-cek-alg; see NewKMSContext).
// Content algorithm, IV, message ID, commitment and the recorded lengths stay
// byte-identical. A nil matDesc means {}. V1 envelopes and legacy wrapping
// algorithms cannot be written (ErrReadOnly).
func (e *Envelope) WithWrappedKey(wrapped []byte, alg WrapAlg, matDesc map[string]string) (*Envelope, error) {
	n := e.Clone()
	n.WrappedKey = cloneBytes(wrapped)
	n.WrapAlg = alg
	n.MatDesc = maps.Clone(matDesc)
	if n.MatDesc == nil {
		n.MatDesc = map[string]string{}
	}
	if err := n.validate(true); err != nil {
		return nil, err
	}
	return n, nil
}
