package envelope

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// Every way of handing a DataKey to zerolog, in JSON and console format,
// writes **redacted** (or "redacted": true) and never the key bytes.
func TestDataKeyRedactedInZerolog(t *testing.T) {
	raw := []byte("super-secret-key-material-000000")
	k := NewDataKey(raw)
	forms := []string{string(raw), hex.EncodeToString(raw), base64.StdEncoding.EncodeToString(raw), base64.RawURLEncoding.EncodeToString(raw)}
	for _, console := range []bool{false, true} {
		var buf bytes.Buffer
		w := zerolog.New(&buf)
		if console {
			w = zerolog.New(zerolog.ConsoleWriter{Out: &buf, NoColor: true})
		}
		w.Info().Interface("k", k).Msg("interface")
		w.Info().Any("k", *k).Msg("any value")
		w.Info().Stringer("k", k).Msg("stringer")
		w.Info().Object("k", k).Msg("object")
		w.Info().EmbedObject(*k).Msg("embed")
		w.Info().Fields(map[string]any{"k": k}).Msg("fields map")
		w.Info().Fields([]any{"k", *k}).Msg("fields slice")
		w.Info().Interface("s", struct{ K DataKey }{*k}).Msg("in a struct")
		w.Info().Str("k", fmt.Sprint(k)).Msg("sprint")
		l := w.With().Interface("k", k).Logger()
		l.Info().Msg("context")
		out := buf.String()
		for _, f := range forms {
			if strings.Contains(out, f) {
				t.Errorf("console=%v: the key leaked in a form of %d chars:\n%s", console, len(f), out)
			}
		}
		if n := strings.Count(out, redacted) + strings.Count(out, "redacted"); n < 10 {
			t.Errorf("console=%v: %d lines say redacted, want every one:\n%s", console, n, out)
		}
	}
}
