package envelope

import "errors"

// Sentinel errors. Every error returned by this package wraps exactly one of
// them (usually inside a *FormatError naming the field), so callers branch
// with errors.Is.
var (
	// ErrNotEncrypted: the object carries no envelope at all (and no
	// instruction file was supplied), or it is itself an instruction file.
	ErrNotEncrypted = errors.New("envelope: object is not client-side encrypted")
	// ErrMissingField: a field the format requires is absent.
	ErrMissingField = errors.New("envelope: required field missing")
	// ErrConflictingFields: fields of different formats are mixed, or a
	// field is given twice with different values.
	ErrConflictingFields = errors.New("envelope: conflicting fields")
	// ErrBadBase64: a binary field is not canonical standard base64.
	ErrBadBase64 = errors.New("envelope: invalid base64")
	// ErrBadIVLength: a content IV or V3 message ID has the wrong length.
	ErrBadIVLength = errors.New("envelope: invalid IV length")
	// ErrBadKeyLength: a data key, wrapped data key, wrapping key or key
	// commitment has the wrong length.
	ErrBadKeyLength = errors.New("envelope: invalid key length")
	// ErrBadTagLength: x-amz-tag-len is not 128.
	ErrBadTagLength = errors.New("envelope: invalid tag length")
	// ErrBadContentLength: x-amz-unencrypted-content-length is not a
	// non-negative decimal integer.
	ErrBadContentLength = errors.New("envelope: invalid content length")
	// ErrUnknownAlgorithm: an algorithm name or V3 code is not one the
	// official clients define.
	ErrUnknownAlgorithm = errors.New("envelope: unknown algorithm")
	// ErrLegacyAlgorithm: a legacy format or algorithm was met while
	// ParseOptions.AllowLegacy is false.
	ErrLegacyAlgorithm = errors.New("envelope: legacy algorithm not allowed")
	// ErrReadOnly: the format or algorithm can be read but never written.
	ErrReadOnly = errors.New("envelope: format or algorithm is read-only")
	// ErrAlgorithmMismatch: fields that must agree do not (tampered cek-alg
	// or wrap-alg): the KMS context's aws:x-amz-cek-alg differs from the
	// content algorithm, a wrapped key is bound to another content
	// algorithm, or the envelope names another wrapping algorithm than the
	// one asked for.
	ErrAlgorithmMismatch = errors.New("envelope: algorithm mismatch")
	// ErrCommitmentMismatch: the V3 key commitment derived from the data
	// key does not equal x-amz-d (wrong data key or tampered metadata).
	ErrCommitmentMismatch = errors.New("envelope: key commitment mismatch")
	// ErrV3FieldInInstructionFile: a V3 instruction file holds x-amz-c,
	// x-amz-d or x-amz-i, which belong in the object's metadata only.
	ErrV3FieldInInstructionFile = errors.New("envelope: V3 object-only field in instruction file")
	// ErrBadMaterialDescription: a material description or KMS encryption
	// context is not a JSON object of strings (or not valid UTF-8).
	ErrBadMaterialDescription = errors.New("envelope: invalid material description")
	// ErrBadInstructionFile: the instruction file is not a JSON object, or a
	// field in it has the wrong JSON type.
	ErrBadInstructionFile = errors.New("envelope: invalid instruction file")
	// ErrMetadataTooLarge: user metadata or an instruction file exceeds the
	// configured limit.
	ErrMetadataTooLarge = errors.New("envelope: metadata too large")
	// ErrAuthentication: AES-GCM (content or wrapped key) or RSA-OAEP
	// decryption failed: wrong key or altered bytes.
	ErrAuthentication = errors.New("envelope: authentication failed")
	// ErrBadPadding: legacy AES-CBC content has invalid PKCS#5 padding or
	// length (wrong key or altered bytes; CBC has no authentication).
	ErrBadPadding = errors.New("envelope: invalid CBC padding")
)

// FormatError reports what is wrong with one field of an envelope or with the
// content it protects. It wraps one of the sentinel errors above.
type FormatError struct {
	// Where is "object metadata", "instruction file" or empty when the
	// field is not tied to a container (content, keys).
	Where string
	// Field is the metadata name (x-amz-iv, x-amz-3, ...) or a short noun
	// such as "content" or "data key".
	Field string
	// Reason says what is wrong, e.g. "want 12 bytes, got 16".
	Reason string
	// Err is the sentinel the error wraps.
	Err error
}

func (e *FormatError) Error() string {
	s := "envelope: "
	if e.Where != "" {
		s += e.Where + ": "
	}
	if e.Field != "" {
		s += e.Field + ": "
	}
	if e.Reason != "" {
		return s + e.Reason
	}
	if e.Err != nil {
		return s + trimPrefix(e.Err.Error())
	}
	return s + "invalid"
}

// Unwrap returns the sentinel.
func (e *FormatError) Unwrap() error { return e.Err }

func trimPrefix(s string) string {
	const p = "envelope: "
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}

func ferr(field string, sentinel error, reason string) *FormatError {
	return &FormatError{Field: field, Reason: reason, Err: sentinel}
}
