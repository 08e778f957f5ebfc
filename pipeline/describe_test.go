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

// --placement is validated: instruction-file only, with a rewrap, the
// default suffix, and not (yet) with --check-acl.
func TestPlacementValidation(t *testing.T) {
	base := Config{Source: "s3://b", To: "kms:alias/x", Placement: PlacementInstructionFile}
	if err := base.Validate(); err != nil {
		t.Fatalf("rewrap with --placement instruction-file: %v", err)
	}
	if !strings.Contains(base.Describe(), "moving envelopes to instruction-file") {
		t.Errorf("Describe() = %q", base.Describe())
	}
	for _, tc := range []struct {
		set  func(*Config)
		want string
	}{
		{func(c *Config) { c.Placement = "metadata" }, "want instruction-file"},
		{func(c *Config) { c.Mode, c.From = ModeReencrypt, []string{"kms:alias/y"} }, "applies to --mode rewrap"},
		{func(c *Config) { c.InstructionSuffix = ".enc" }, "read no other suffix"},
		{func(c *Config) { c.CheckACL = true }, "--check-acl"},
	} {
		c := base
		tc.set(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error saying %q", c, err, tc.want)
		}
	}
}
