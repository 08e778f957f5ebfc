package pipeline

import (
	"strings"
	"testing"
)

// Describe is printed by plan and run: it never shows a PIN typed where its
// source belongs, even for a configuration that was never validated (a run
// record written by another version, say).
func TestDescribeRedactsMalformedPINSource(t *testing.T) {
	const pin = "1234abcdS3cret"
	c := Config{
		Source: "s3://bucket",
		To:     "pkcs11:token=t;object=k?pin-source=" + pin,
		From:   []string{"kms:alias/a", "pkcs11:token=t;object=old?pin-source=file:/etc/rotator/pin&x=1"},
	}
	got := c.Describe()
	if strings.Contains(got, pin) {
		t.Errorf("Describe() = %q shows the PIN", got)
	}
	for _, want := range []string{"pin-source=**redacted**", "pin-source=file:/etc/rotator/pin", "kms:alias/a"} {
		if !strings.Contains(got, want) {
			t.Errorf("Describe() = %q, want it to contain %q", got, want)
		}
	}
}
