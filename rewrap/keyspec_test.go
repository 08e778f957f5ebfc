package rewrap

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseSpec(t *testing.T) {
	good := []struct {
		in   string
		kind Kind
	}{
		{"kms:1234abcd-12ab-34cd-56ef-1234567890ab", KindKMS},
		{"kms:alias/s3-data", KindKMS},
		{"kms:arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", KindKMS},
		{"kms:arn:aws:kms:eu-west-1:444455556666:alias/s3-data", KindKMS},
		{"kms:arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/abc", KindKMS},
		{"pkcs11:token=rotator;object=kek-2026", KindPKCS11},
		{"pkcs11:token=rotator;object=kek%202026;type=secret-key?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin", KindPKCS11},
		{"pkcs11:serial=abc123;object=k?pin-source=env:HSM_PIN", KindPKCS11},
		{"aes:/etc/rotator/kek.key", KindAES},
		{"rsa:/etc/rotator/kek.pem", KindRSA},
	}
	for _, tc := range good {
		s, err := ParseSpec(tc.in)
		if err != nil {
			t.Errorf("ParseSpec(%q): %v", tc.in, err)
			continue
		}
		if s.Kind != tc.kind {
			t.Errorf("ParseSpec(%q).Kind = %v, want %v", tc.in, s.Kind, tc.kind)
		}
		again, err := ParseSpec(s.String())
		if err != nil || again.String() != s.String() {
			t.Errorf("ParseSpec(%q).String() = %q does not round-trip: %v", tc.in, s.String(), err)
		}
	}

	bad := []struct{ in, want string }{
		{"", "missing kind prefix"},
		{"alias/foo", "missing kind prefix"},
		{"gcp:foo", `unknown kind "gcp"`},
		{"kms:", "missing key id"},
		{"kms:alias/", "empty alias name"},
		{"kms:arn:aws:s3:::bucket", "malformed KMS ARN"},
		{"kms:arn:aws:kms:us-east-1:111122223333:grant/x", "malformed KMS ARN resource"},
		{"kms:foo/bar", "not a key id"},
		{"pkcs11:token=t", "missing object=LABEL"},
		{"pkcs11:object=k", "missing token=LABEL"},
		{"pkcs11:token=t;object=k?pin-value=1234", "pin-value is refused"},
		{"pkcs11:token=t;object=k;pin-value=1234", "pin-value is refused"},
		{"pkcs11:token=t;object=k;module-path=/x.so", "belongs in the query part"},
		{"pkcs11:token=t;object=k;object=j", "given twice"},
		{"pkcs11:token=t;object=k;type=private", "secret keys only"},
		{"pkcs11:token=t;object=%zz", "bad percent-encoding"},
		{"pkcs11:token=t;object=k?pin-source=/run/pin", "want file:/path or env:NAME"},
		{"aes:", "missing key file path"},
		{"rsa:", "missing key file path"},
	}
	for _, tc := range bad {
		_, err := ParseSpec(tc.in)
		if err == nil {
			t.Errorf("ParseSpec(%q) succeeded, want error containing %q", tc.in, tc.want)
			continue
		}
		if !errors.Is(err, ErrBadSpec) {
			t.Errorf("ParseSpec(%q) error %v is not ErrBadSpec", tc.in, err)
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "example:") {
			t.Errorf("ParseSpec(%q) = %q, want it to contain %q and an example", tc.in, err, tc.want)
		}
		if strings.Contains(err.Error(), "1234") && strings.Contains(tc.in, "pin-value") {
			t.Errorf("ParseSpec(%q) error echoes the PIN: %q", tc.in, err)
		}
	}
}

func TestPKCS11KeyURIHasNoSecretsOrModule(t *testing.T) {
	s, err := ParseSpec("pkcs11:token=rot%3Bator;object=kek?module-path=/usr/lib/x.so&pin-source=file:/run/pin")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.PKCS11.Token, "rot;ator"; got != want {
		t.Errorf("token = %q, want %q", got, want)
	}
	if got, want := s.PKCS11.KeyURI(), "pkcs11:token=rot%3Bator;object=kek"; got != want {
		t.Errorf("KeyURI() = %q, want %q", got, want)
	}
}

func TestReadSecret(t *testing.T) {
	f := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(f, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadSecret("file:" + f); err != nil || string(b) != "s3cret" {
		t.Errorf("ReadSecret(file) = %q, %v", b, err)
	}
	t.Setenv("ROTATOR_TEST_PIN", "envpin")
	if b, err := ReadSecret("env:ROTATOR_TEST_PIN"); err != nil || string(b) != "envpin" {
		t.Errorf("ReadSecret(env) = %q, %v", b, err)
	}
	for _, src := range []string{"1234", "env:ROTATOR_UNSET_VAR_X", "file:/nonexistent/pin"} {
		if _, err := ReadSecret(src); err == nil {
			t.Errorf("ReadSecret(%q) succeeded", src)
		} else if strings.Contains(err.Error(), "1234") {
			t.Errorf("ReadSecret(%q) error echoes the literal: %v", src, err)
		}
	}
}

func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{
		"kms:alias/x", "kms:arn:aws:kms:us-east-1:111122223333:key/abc",
		"pkcs11:token=t;object=k?module-path=/x.so&pin-source=file:/p",
		"pkcs11:token=%41;object=%zz", "aes:/k", "rsa:/k.pem", "pkcs11:;;??&&==",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseSpec(in)
		if err != nil {
			return
		}
		again, err := ParseSpec(s.String())
		if err != nil {
			t.Fatalf("String() of parsed %q = %q does not parse: %v", in, s.String(), err)
		}
		if again.String() != s.String() {
			t.Fatalf("round trip of %q: %q != %q", in, again.String(), s.String())
		}
	})
}
