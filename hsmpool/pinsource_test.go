package hsmpool

import (
	"strings"
	"testing"
)

// env: followed by something that cannot be a variable name is most likely
// the PIN itself (pin-source=env:1234abcd): refuse it without echoing it.
func TestReadPINNeverEchoesAMalformedEnvSource(t *testing.T) {
	for _, src := range []string{"env:1234abcd", "env:user:s3cret", "env:pass word", "env:a-b"} {
		_, err := ReadPIN(src)
		if err == nil {
			t.Errorf("ReadPIN(%q) succeeded", src)
			continue
		}
		if secret := strings.TrimPrefix(src, "env:"); strings.Contains(err.Error(), secret) {
			t.Errorf("ReadPIN(%q) error echoes the source: %v", src, err)
		}
		if !strings.Contains(err.Error(), "env:NAME") {
			t.Errorf("ReadPIN(%q) = %v, want it to say what a source looks like", src, err)
		}
	}
}
