package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/rotator-dev/rotator/pipeline"
)

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]int64{
		"16777216": 16 << 20, "0": 0, "16MiB": 16 << 20, "16mib": 16 << 20, "16M": 16 << 20, "16 MiB": 16 << 20,
		"5GB": 5e9, "5GiB": 5 << 30, "1.5GiB": 3 << 29, "512k": 512 << 10, "512KB": 512000, "1TiB": 1 << 40,
		"100B": 100, "1_000": 1000,
	} {
		got, err := parseByteSize(in)
		if err != nil || got != want {
			t.Errorf("parseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "16XB", "-5MiB", "1.5", "16 M B", "1e3", "0.1B", "99999999999TiB"} {
		if got, err := parseByteSize(in); err == nil {
			t.Errorf("parseByteSize(%q) = %d, want an error", in, got)
		}
	}
	for n, want := range map[int64]string{16 << 20: "16MiB", 5 << 30: "5GiB", 1536 << 10: "1536KiB", 1000: "1000"} {
		if got := sizeString(n); got != want {
			t.Errorf("sizeString(%d) = %q, want %q", n, got, want)
		}
	}
}

// Every byte-size flag takes units; plain numbers still work.
func TestByteSizeFlags(t *testing.T) {
	var cfg pipeline.Config
	fs := newFlagSet("run", "", &bytes.Buffer{})
	sourceFlags(fs, &cfg)
	runFlags(fs, &cfg)
	args := []string{"--part-size", "16MiB", "--reencrypt-memory", "1GiB", "--multipart-threshold", "5GB",
		"--inventory-max-file-bytes", "2147483648"}
	if _, err := parse(fs, args); err != nil {
		t.Fatal(err)
	}
	if cfg.PartSize != 16<<20 || cfg.ReencryptMemory != 1<<30 || cfg.MultipartThreshold != 5e9 || cfg.InventoryMaxFileBytes != 2<<30 {
		t.Errorf("parsed %d %d %d %d", cfg.PartSize, cfg.ReencryptMemory, cfg.MultipartThreshold, cfg.InventoryMaxFileBytes)
	}
	var errb bytes.Buffer
	fs = newFlagSet("run", "", &errb)
	runFlags(fs, &cfg)
	if _, err := parse(fs, []string{"--part-size", "16 lots"}); err == nil || !strings.Contains(err.Error(), "16MiB") {
		t.Errorf("a bad size: %v, want an error with an example", err)
	}
}
