package escrow

import (
	"bytes"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"strings"

	"github.com/rotator-dev/rotator/envelope"
)

// DefaultSuffix is the suffix of escrow files: KEY + DefaultSuffix. It ends
// with ".instruction", so tools that list instruction files see it as one.
const DefaultSuffix = ".escrow.instruction"

// Errors callers branch on with errors.Is.
var (
	// ErrMismatch: the escrow file does not describe the object's content
	// (another format, content algorithm or IV), or its data key does not
	// open the object: it is stale or someone else's.
	ErrMismatch = errors.New("escrow: escrow file does not match the object")
	// ErrNeedsBody: a V2 object commits to no data key; only its body's
	// authentication tag can tell whether a data key is its own.
	ErrNeedsBody = errors.New("escrow: a V2 data key is checked against the body's tag")
	// ErrBadSuffix: a suffix that could be mistaken for the object's own
	// instruction file, or that is not a plain key suffix.
	ErrBadSuffix = errors.New("escrow: bad escrow file suffix")
)

// Wrapping is a wrapped data key to store in an escrow file: the wrapping
// algorithm, the wrapped bytes and the material description (for KMS the
// encryption context).
type Wrapping struct {
	Alg     envelope.WrapAlg
	Key     []byte
	MatDesc map[string]string
}

// CheckSuffix refuses suffixes that are empty, equal the instruction
// suffix of the objects' own envelopes, or hold characters S3 keys should
// not end with.
func CheckSuffix(suffix, instructionSuffix string) error {
	if instructionSuffix == "" {
		instructionSuffix = envelope.DefaultInstructionSuffix
	}
	switch {
	case suffix == "":
		return fmt.Errorf("%w: empty (the default is %s)", ErrBadSuffix, DefaultSuffix)
	case suffix == instructionSuffix:
		return fmt.Errorf("%w: %q is the objects' own instruction file suffix: an escrow file would replace their envelope", ErrBadSuffix, suffix)
	case len(suffix) > 64 || strings.ContainsAny(suffix, "/\x00\r\n"):
		return fmt.Errorf("%w: %q: at most 64 bytes, no '/' and no control characters", ErrBadSuffix, suffix)
	}
	return nil
}

// Key returns the escrow file key of objectKey; suffix "" means
// DefaultSuffix.
func Key(objectKey, suffix string) string {
	if suffix == "" {
		suffix = DefaultSuffix
	}
	return objectKey + suffix
}

// ObjectMetadata returns the user metadata of an escrow file object:
// x-amz-crypto-instr-file "", as the Java client marks instruction files.
func ObjectMetadata() map[string]string { return envelope.InstructionObjectMetadata() }

// Body returns the escrow file body for the object whose envelope is obj,
// with its data key wrapped as w: the instruction file the Java client
// writes for that envelope (Envelope.InstructionFile of a new envelope).
func Body(obj *envelope.Envelope, w Wrapping) ([]byte, error) {
	if obj == nil {
		return nil, errors.New("escrow: no object envelope")
	}
	if obj.Format != envelope.V2 && obj.Format != envelope.V3 {
		return nil, fmt.Errorf("escrow: %v objects get no escrow file: re-encrypt them to V2 or V3 first", obj.Format)
	}
	if obj.CEKAlg.Legacy() {
		return nil, fmt.Errorf("escrow: %s content gets no escrow file: re-encrypt it first", obj.CEKAlg)
	}
	e := &envelope.Envelope{
		Format:                   obj.Format,
		Placement:                envelope.PlacementInstructionFile,
		CEKAlg:                   obj.CEKAlg,
		WrapAlg:                  w.Alg,
		WrappedKey:               bytes.Clone(w.Key),
		MatDesc:                  maps.Clone(w.MatDesc),
		UnencryptedContentLength: -1,
	}
	if e.MatDesc == nil {
		e.MatDesc = map[string]string{}
	}
	switch obj.Format {
	case envelope.V2:
		e.IV = bytes.Clone(obj.IV)
		e.TagLenBits = 128
	case envelope.V3:
		e.MessageID = bytes.Clone(obj.MessageID)
		e.KeyCommitment = bytes.Clone(obj.KeyCommitment)
	}
	side, body, err := e.InstructionFile()
	if err != nil {
		return nil, fmt.Errorf("escrow: %w", err)
	}
	// The object-side entries (V3) must be the object's own: an escrow file
	// never needs a write to the object.
	want := objectSide(obj)
	if !maps.Equal(side, want) {
		return nil, fmt.Errorf("escrow: the escrow envelope needs object metadata %v, the object has %v", side, want)
	}
	return body, nil
}

// objectSide returns the entries a V3 instruction file leaves on the
// object (x-amz-c, x-amz-d, x-amz-i), from the object's envelope; none for
// V2.
func objectSide(obj *envelope.Envelope) map[string]string {
	m := map[string]string{}
	if obj.Format == envelope.V3 {
		m[envelope.FieldV3ContentAlg] = string(obj.CEKAlg)
		m[envelope.FieldV3Commitment] = base64.StdEncoding.EncodeToString(obj.KeyCommitment)
		m[envelope.FieldV3MessageID] = base64.StdEncoding.EncodeToString(obj.MessageID)
	}
	return m
}

// Parse reads an escrow file body for the object whose envelope is obj and
// returns the escrow envelope: obj's content fields with the escrow
// wrapping. It checks that the file describes obj's content (format,
// content algorithm, V2 IV; ErrMismatch otherwise), not that its data key
// is obj's (CheckKey).
func Parse(obj *envelope.Envelope, body []byte) (*envelope.Envelope, error) {
	if obj == nil {
		return nil, errors.New("escrow: no object envelope")
	}
	if body == nil {
		body = []byte{}
	}
	e, err := envelope.Parse(objectSide(obj), body, envelope.ParseOptions{})
	if err != nil {
		return nil, fmt.Errorf("escrow: escrow file: %w", err)
	}
	switch {
	case e.Format != obj.Format:
		return nil, fmt.Errorf("%w: the escrow file is %v, the object %v", ErrMismatch, e.Format, obj.Format)
	case e.CEKAlg != obj.CEKAlg:
		return nil, fmt.Errorf("%w: the escrow file's content algorithm is %s, the object's %s", ErrMismatch, e.CEKAlg, obj.CEKAlg)
	case e.Format == envelope.V2 && !bytes.Equal(e.IV, obj.IV):
		return nil, fmt.Errorf("%w: the escrow file's IV is not the object's (written for other content)", ErrMismatch)
	}
	return e, nil
}

// Wrapped returns the wrapping an escrow envelope holds.
func Wrapped(e *envelope.Envelope) Wrapping {
	return Wrapping{Alg: e.WrapAlg, Key: bytes.Clone(e.WrappedKey), MatDesc: maps.Clone(e.MatDesc)}
}

// CheckKey tells whether dek is the data key of the object whose envelope
// is obj without reading its body: for V3 the derived key commitment must
// equal x-amz-d (compared in constant time; ErrMismatch otherwise). For V2
// it returns ErrNeedsBody: the caller must check the body's tag.
func CheckKey(obj *envelope.Envelope, dek *envelope.DataKey) error {
	if obj.Format != envelope.V3 {
		return ErrNeedsBody
	}
	ck, commitment, err := envelope.DeriveV3(dek, obj.MessageID)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMismatch, err)
	}
	ck.Clear()
	if subtle.ConstantTimeCompare(commitment, obj.KeyCommitment) != 1 {
		return fmt.Errorf("%w: the escrowed data key does not match the object's key commitment (x-amz-d): stale, or written by someone else", ErrMismatch)
	}
	return nil
}
