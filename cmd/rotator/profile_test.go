package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestProfilesWritten: each profiling variable makes the command write its
// file, in its format (gzip for pprof profiles, the trace's "go 1." header).
func TestProfilesWritten(t *testing.T) {
	dir := t.TempDir()
	files := map[string][]byte{
		envCPUProfile: {0x1f, 0x8b},
		envMemProfile: {0x1f, 0x8b},
		envTrace:      []byte("go 1."),
	}
	for env := range files {
		t.Setenv(env, filepath.Join(dir, env))
	}
	startProfiles(io.Discard)()
	for env, magic := range files {
		got, err := os.ReadFile(filepath.Join(dir, env))
		if err != nil {
			t.Fatalf("%s: %v", env, err)
		}
		if !bytes.HasPrefix(got, magic) {
			t.Errorf("%s: the file starts with %q, want %q", env, got[:min(len(got), 8)], magic)
		}
	}
}
