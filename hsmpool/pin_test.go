package hsmpool

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadPIN(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	t.Setenv("HSMPOOL_TEST_PIN", "user:s3cret")
	t.Setenv("HSMPOOL_TEST_EMPTY", "")

	for _, tc := range []struct {
		source, want string
	}{
		{"file:" + write("lf", "5678\n"), "5678"},
		{"file:" + write("crlf", "5678\r\n"), "5678"},
		{"file:" + write("bare", "user:pass word"), "user:pass word"},
		{"env:HSMPOOL_TEST_PIN", "user:s3cret"},
	} {
		p, err := ReadPIN(tc.source)
		if err != nil {
			t.Errorf("ReadPIN(%q): %v", tc.source, err)
			continue
		}
		if string(p.b) != tc.want || p.Source() != tc.source {
			t.Errorf("ReadPIN(%q) = %q from %q, want %q", tc.source, p.b, p.Source(), tc.want)
		}
	}

	for _, tc := range []struct {
		source, want string
	}{
		{"5678", "want file:/path or env:NAME"},
		{"pin:5678", "want file:/path or env:NAME"},
		{"file:", "names no file"},
		{"env:", "names no variable"},
		{"file:" + filepath.Join(dir, "missing"), "no such file"},
		{"file:" + write("empty", "\n"), "is empty"},
		{"env:HSMPOOL_TEST_EMPTY", "is empty"},
		{"env:HSMPOOL_TEST_UNSET_VARIABLE", "is empty"},
	} {
		_, err := ReadPIN(tc.source)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ReadPIN(%q) = %v, want an error containing %q", tc.source, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "5678") {
			t.Errorf("ReadPIN(%q): error echoes what may be a PIN: %v", tc.source, err)
		}
	}
}

func TestPINRedacted(t *testing.T) {
	t.Setenv("HSMPOOL_TEST_PIN", "s3cretpin")
	p, err := ReadPIN("env:HSMPOOL_TEST_PIN")
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(struct{ PIN *PIN }{p})
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("login", "pin", p)
	outs := []string{
		fmt.Sprint(p), fmt.Sprintf("%s %v %+v %#v %x %X %q %d", p, p, p, p, p, p, p, p),
		fmt.Sprintf("%v", Config{PIN: p}), fmt.Sprintf("%+v", &Config{PIN: p}),
		string(js), logged.String(),
	}
	for _, out := range outs {
		if strings.Contains(out, "s3cretpin") || strings.Contains(out, fmt.Sprintf("%x", "s3cretpin")) {
			t.Errorf("PIN leaked: %s", out)
		}
		if !strings.Contains(out, redacted) {
			t.Errorf("no %s in %s", redacted, out)
		}
	}
	p.Clear()
	p.Clear()
	if p.b != nil {
		t.Error("Clear kept the bytes")
	}
}

func TestConfigErrors(t *testing.T) {
	t.Setenv("HSMPOOL_TEST_PIN", "1234")
	pin, err := ReadPIN("env:HSMPOOL_TEST_PIN")
	if err != nil {
		t.Fatal(err)
	}
	good := Config{ModulePath: "/x.so", TokenLabel: "t", PIN: pin}
	for _, tc := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.ModulePath = "" }, "ModulePath is empty"},
		{func(c *Config) { c.TokenLabel = "" }, "TokenLabel"},
		{func(c *Config) { c.PIN = nil }, "no PIN"},
		{func(c *Config) { c.Size = MaxSize + 1 }, "Size 1025 out of range 1..1024"},
		{func(c *Config) { c.Size = -1 }, "out of range"},
		{func(c *Config) { c.Mechanism = 0x1085 /* CKM_AES_CBC_PAD */ }, "cannot protect data keys"},
	} {
		cfg := good
		tc.edit(&cfg)
		_, err := cfg.withDefaults()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want an error containing %q", err, tc.want)
		}
	}
	cfg, err := good.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Size != DefaultSize || cfg.AcquireTimeout != DefaultAcquireTimeout || cfg.Mechanism != 0x1087 /* CKM_AES_GCM */ ||
		cfg.HealthInterval != DefaultHealthInterval || cfg.ReopenAttempts != DefaultReopenAttempts {
		t.Errorf("defaults not applied: %+v", cfg)
	}
	// A module that is not there fails before anything is loaded.
	cfg = good
	cfg.ModulePath = filepath.Join(t.TempDir(), "missing.so")
	if _, err := Open(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "hint:") {
		t.Errorf("Open with a missing module: %v, want an error with a hint", err)
	}
}
