package logs

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]zerolog.Level{"": zerolog.InfoLevel, "debug": zerolog.DebugLevel, "INFO": zerolog.InfoLevel,
		"warn": zerolog.WarnLevel, "warning": zerolog.WarnLevel, "error": zerolog.ErrorLevel, "off": zerolog.Disabled, "trace": zerolog.TraceLevel} {
		if got, err := ParseLevel(in); err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"loud", "fatal", "panic", "5"} {
		if _, err := ParseLevel(in); err == nil || !strings.Contains(err.Error(), "--log-level") {
			t.Errorf("ParseLevel(%q): %v, want an error naming --log-level", in, err)
		}
	}
}

// JSON lines off a terminal, console format on one; time in UTC with
// milliseconds; the level filters.
func TestNewFormats(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(&buf, Options{Level: "info"})
	if err != nil {
		t.Fatal(err)
	}
	l.Debug().Msg("hidden")
	l.Info().Str(RunID, "r1").Msg("shown")
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("not one JSON line: %q", buf.String())
	}
	ts, _ := m["time"].(string)
	if m["level"] != "info" || m["run_id"] != "r1" || m["message"] != "shown" || !strings.HasSuffix(ts, "Z") || len(ts) != len("2006-01-02T15:04:05.000Z") {
		t.Errorf("JSON line: %q", buf.String())
	}
	buf.Reset()
	l, _ = New(&buf, Options{Terminal: true})
	l.Warn().Str(Code, "BadEnvelope").Msg("failed")
	if out := buf.String(); strings.HasPrefix(out, "{") || !strings.Contains(out, "WRN") || !strings.Contains(out, "BadEnvelope") {
		t.Errorf("console line on a terminal: %q", out)
	}
	buf.Reset()
	l, _ = New(&buf, Options{Terminal: true, Format: FormatJSON})
	l.Info().Msg("x")
	if !strings.HasPrefix(buf.String(), "{") {
		t.Errorf("--log-format json on a terminal: %q", buf.String())
	}
	if _, err := New(&buf, Options{Format: "xml"}); err == nil {
		t.Error("New accepted --log-format xml")
	}
}
