package envelope

import (
	"crypto/subtle"
	"fmt"
	"io"
	"log/slog"

	"github.com/rs/zerolog"
)

const redacted = "**redacted**"

// DataKey holds plaintext key bytes: a data key (DEK), a derived content key
// or a wrapping key. It never prints, formats, logs or marshals its bytes.
// Call Clear as soon as the key is no longer needed.
type DataKey struct {
	b []byte
}

// NewDataKey returns a DataKey holding a copy of b. The caller should clear
// its own copy.
func NewDataKey(b []byte) *DataKey {
	return &DataKey{b: append([]byte(nil), b...)}
}

// GenerateDataKey returns a fresh 32-byte data key read from rand.
func GenerateDataKey(rand io.Reader) (*DataKey, error) {
	k := &DataKey{b: make([]byte, DataKeySize)}
	if _, err := io.ReadFull(rand, k.b); err != nil {
		k.Clear()
		return nil, fmt.Errorf("envelope: generate data key: %w", err)
	}
	return k, nil
}

// Bytes returns the key bytes themselves, not a copy. The caller must not
// keep, modify or log them; they are zeroed by Clear.
func (k *DataKey) Bytes() []byte {
	if k == nil {
		return nil
	}
	return k.b
}

// Len returns the key length in bytes.
func (k *DataKey) Len() int {
	if k == nil {
		return 0
	}
	return len(k.b)
}

// Equal reports in constant time (for equal lengths) whether k and o hold the
// same bytes.
func (k *DataKey) Equal(o *DataKey) bool {
	return subtle.ConstantTimeCompare(k.Bytes(), o.Bytes()) == 1
}

// Clear zeroes the key bytes and forgets them. It is safe to call twice.
func (k *DataKey) Clear() {
	if k == nil {
		return
	}
	clear(k.b)
	k.b = nil
}

// The formatting methods have value receivers so that a copied DataKey
// value does not print its bytes either.

// String returns "**redacted**".
func (DataKey) String() string { return redacted }

// GoString returns "**redacted**".
func (DataKey) GoString() string { return redacted }

// Format prints "**redacted**" for every verb, including %x and %#v.
func (DataKey) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

// LogValue keeps the key out of log/slog output.
func (DataKey) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText keeps the key out of text encodings.
func (DataKey) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// MarshalJSON keeps the key out of JSON (and so out of zerolog's Interface).
func (DataKey) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalZerologObject keeps the key out of zerolog's Object and
// EmbedObject: it writes "redacted": true and nothing else.
func (DataKey) MarshalZerologObject(e *zerolog.Event) { e.Bool("redacted", true) }

var (
	_ fmt.Stringer   = DataKey{}
	_ fmt.Formatter  = DataKey{}
	_ fmt.GoStringer = DataKey{}
	_ slog.LogValuer = DataKey{}

	_ zerolog.LogObjectMarshaler = DataKey{}
)
