package hsmpool

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// Every way of handing a PIN (or a Config holding one) to zerolog, in JSON
// and console format, writes **redacted** and never the PIN.
func TestPINRedactedInZerolog(t *testing.T) {
	t.Setenv("HSMPOOL_TEST_PIN", "s3cretpin-4711")
	p, err := ReadPIN("env:HSMPOOL_TEST_PIN")
	if err != nil {
		t.Fatal(err)
	}
	pin := "s3cretpin-4711"
	forms := []string{pin, hex.EncodeToString([]byte(pin)), base64.StdEncoding.EncodeToString([]byte(pin))}
	for _, console := range []bool{false, true} {
		var buf bytes.Buffer
		w := zerolog.New(&buf)
		if console {
			w = zerolog.New(zerolog.ConsoleWriter{Out: &buf, NoColor: true})
		}
		w.Info().Interface("pin", p).Msg("interface")
		w.Info().Any("pin", p).Msg("any")
		w.Info().Stringer("pin", p).Msg("stringer")
		w.Info().Object("pin", p).Msg("object")
		w.Info().EmbedObject(p).Msg("embed")
		w.Info().Fields(map[string]any{"pin": p}).Msg("fields")
		w.Info().Interface("cfg", Config{ModulePath: "/m.so", TokenLabel: "t", PIN: p}).Msg("config")
		w.Info().Str("pin", fmt.Sprintf("%v %x", p, p)).Msg("sprintf")
		out := buf.String()
		for _, f := range forms {
			if strings.Contains(out, f) {
				t.Errorf("console=%v: the PIN leaked:\n%s", console, out)
			}
		}
		if n := strings.Count(out, "redacted"); n < 8 {
			t.Errorf("console=%v: %d lines say redacted, want every one:\n%s", console, n, out)
		}
	}
}
