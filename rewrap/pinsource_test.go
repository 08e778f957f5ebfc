package rewrap

import (
	"errors"
	"strings"
	"testing"
)

// A PIN typed where its source belongs (pin-source=PIN instead of
// pin-source=file:/path) must never be echoed by an error, whatever else is
// wrong with the spec and wherever in it the attribute stands.
func TestMalformedPINSourceIsNeverEchoed(t *testing.T) {
	const pin = "S3cr3tPIN42" // stands for the user's PIN
	specs := []string{
		"pkcs11:token=t;object=k?pin-source=" + pin,
		"pkcs11:token=t;object=k?module-path=/x.so&pin-source=" + pin,
		"pkcs11:token=t;object=k?pin-source=" + pin + "&module-path=/x.so",
		"pkcs11:token=t;object=k?PIN-SOURCE=" + pin,
		"pkcs11:token=t;object=k;pin-source=" + pin,                    // in the path part
		"pkcs11:token=t?pin-source=" + pin,                             // and no object
		"pkcs11:token=t;object=k?pin-source=" + pin + "&bad",           // and a bad attribute after it
		"pkcs11:token=t;object=%zz?pin-source=" + pin,                  // and a bad escape before it
		"pkcs11:token=t;object=k?pin-source=file:/p&pin-source=" + pin, // given twice
		"pkcs11:token=t;object=k?pin-source=" + pin + "%zz",            // a bad escape in it
		"pkcs11:token=t;object=k?pin-source=%53" + pin[1:],             // percent-encoded
		"pkcs11:token=t;object=k?pin-source:" + pin,                    // ':' for '='
		"pkcs11:token=t;object=k?pin-source=env:" + pin + "!",          // not a variable name
		"pkcs11:token=t;object=k?pin-source=env:",                      // env: naming nothing
		"pkcs11:token=t;object=k?pin-source=file:",                     // file: naming nothing
		"pkcs11 :token=t;object=k?pin-source=" + pin,                   // not a pkcs11: URI at all
		"pkcs12:token=t;object=k?pin-source=" + pin,                    // unknown kind
	}
	for _, in := range specs {
		_, err := ParseSpec(in)
		if err == nil {
			t.Errorf("ParseSpec(%q) succeeded, want an error", in)
			continue
		}
		if !errors.Is(err, ErrBadSpec) {
			t.Errorf("ParseSpec(%q) error %v is not ErrBadSpec", in, err)
		}
		msg := err.Error()
		for _, leak := range []string{pin, pin[1:], pin[:len(pin)-1]} {
			if strings.Contains(msg, leak) {
				t.Errorf("ParseSpec(%q) error echoes the PIN: %s", in, msg)
				break
			}
		}
		if strings.Contains(strings.ToLower(in), "pin-source") && !strings.Contains(msg, "**redacted**") && !strings.Contains(msg, "want file:/path or env:NAME") {
			t.Errorf("ParseSpec(%q) = %q: say what a pin-source looks like, or show the value redacted", in, msg)
		}
	}
}

// Well-formed sources are not secrets: errors and Describe keep them, so an
// operator sees which file or variable was meant.
func TestWellFormedPINSourceIsShown(t *testing.T) {
	_, err := ParseSpec("pkcs11:token=t?pin-source=file:/etc/rotator/hsm.pin")
	if err == nil || !strings.Contains(err.Error(), "pin-source=file:/etc/rotator/hsm.pin") {
		t.Errorf("error %v should show the well-formed pin-source", err)
	}
	if got, want := RedactSpec("pkcs11:token=t;object=k?pin-source=env:HSM_PIN"), "pkcs11:token=t;object=k?pin-source=env:HSM_PIN"; got != want {
		t.Errorf("RedactSpec = %q, want %q", got, want)
	}
	if got, want := RedactSpec("pkcs11:token=t;object=k?pin-source=1234abcd&module-path=/x.so"), "pkcs11:token=t;object=k?pin-source=**redacted**&module-path=/x.so"; got != want {
		t.Errorf("RedactSpec = %q, want %q", got, want)
	}
	for _, ok := range []string{"file:/run/pin", "file:/etc/rotator/hsm%20pin", "env:HSM_PIN", "env:_x1"} {
		if _, err := ParseSpec("pkcs11:token=t;object=k?pin-source=" + ok); err != nil {
			t.Errorf("pin-source=%s: %v", ok, err)
		}
	}
}
