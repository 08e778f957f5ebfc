package hsmpool

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/rs/zerolog"
)

const redacted = "**redacted**"

// PIN is a token user PIN (for CloudHSM, "user:password"). It never prints,
// formats, logs or marshals its bytes. Get one from ReadPIN; there is
// deliberately no way to build one from a literal.
type PIN struct {
	b      []byte
	source string
}

// ReadPIN reads a PIN from source, which is "file:/path" (the file's content
// without trailing newlines) or "env:NAME" (the variable's value). A PIN
// never comes from a flag value or a URI: those end up in shell histories,
// process listings and logs.
func ReadPIN(source string) (*PIN, error) {
	kind, arg, _ := strings.Cut(source, ":")
	var b []byte
	switch kind {
	case "file":
		if arg == "" {
			return nil, errors.New("hsmpool: PIN source file: names no file (hint: file:/path/to/pin)")
		}
		var err error
		if b, err = os.ReadFile(arg); err != nil {
			return nil, fmt.Errorf("hsmpool: read PIN: %w (hint: check the path in the PIN source)", err)
		}
		b = bytes.TrimRight(b, "\r\n") // a subslice: no copy of the PIN left behind
	case "env":
		if arg == "" {
			return nil, errors.New("hsmpool: PIN source env: names no variable (hint: env:NAME)")
		}
		if !envName(arg) {
			// Never echo arg: env:1234abcd is the PIN where a name belongs.
			return nil, errors.New("hsmpool: bad PIN source: env: must be followed by a variable name (letters, digits, '_'): want env:NAME (hint: never pass the PIN itself)")
		}
		b = []byte(os.Getenv(arg))
	default:
		// Never echo source: it may be the PIN itself, passed by mistake.
		return nil, errors.New("hsmpool: bad PIN source: want file:/path or env:NAME (hint: never pass the PIN itself)")
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("hsmpool: PIN from %s is empty (hint: write the user PIN there)", source)
	}
	return &PIN{b: b, source: source}, nil
}

// Source returns where the PIN was read from ("file:/path" or "env:NAME"),
// which is safe to show in messages.
func (p *PIN) Source() string {
	if p == nil {
		return ""
	}
	return p.source
}

// Clear zeroes the PIN bytes. A pool keeps its own copy, so a caller may
// clear its PIN as soon as Open returns.
func (p *PIN) Clear() {
	if p == nil {
		return
	}
	clear(p.b)
	p.b = nil
}

// String returns "**redacted**".
func (p *PIN) String() string { return redacted }

// GoString returns "**redacted**".
func (p *PIN) GoString() string { return redacted }

// Format prints "**redacted**" for every verb, including %x and %#v.
func (p *PIN) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

// LogValue keeps the PIN out of log/slog output.
func (p *PIN) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText keeps the PIN out of text and JSON encodings (and so out of
// zerolog's Interface).
func (p *PIN) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// MarshalZerologObject keeps the PIN out of zerolog's Object and
// EmbedObject: it writes "redacted": true and nothing else.
func (p *PIN) MarshalZerologObject(e *zerolog.Event) { e.Bool("redacted", true) }

var _ zerolog.LogObjectMarshaler = (*PIN)(nil)

// envName reports whether n is a POSIX environment variable name: letters,
// digits and '_', not starting with a digit.
func envName(n string) bool {
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return n != ""
}
