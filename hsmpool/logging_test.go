package hsmpool

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// An Acquire that waits for a busy pool logs the wait at debug level
// through the logger of its context; one that finds a free session logs
// nothing.
func TestAcquireWaitLoggedAtDebug(t *testing.T) {
	p := openPool(t, func(c *Config) { c.Size = 1 })
	var buf bytes.Buffer
	ctx := zerolog.New(&buf).Level(zerolog.DebugLevel).WithContext(t.Context())
	s, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(50*time.Millisecond, s.Release)
	s2, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s2.Release()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("%d lines, want one for the one wait:\n%s", len(lines), buf.String())
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatal(err)
	}
	if m["level"] != "debug" || m["service"] != "pkcs11" || m["sessions"] != float64(1) || m["token"] != p.TokenLabel() {
		t.Errorf("wait line: %s", lines[0])
	}
	if ms, _ := m["duration_ms"].(float64); ms < 40 {
		t.Errorf("duration_ms %v, want about 50: %s", m["duration_ms"], lines[0])
	}
}
