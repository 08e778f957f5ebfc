package hsmpool

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"
)

// TestQuirksFor: the quirks table matches SoftHSM by its C_GetInfo
// manufacturer (space-padded, as PKCS#11 fields are) and nothing else.
func TestQuirksFor(t *testing.T) {
	for _, tc := range []struct {
		name string
		info pkcs11.Info
		want quirks
	}{
		{"SoftHSM 2", pkcs11.Info{ManufacturerID: "SoftHSM" + strings.Repeat(" ", 25), LibraryDescription: "Implementation of PKCS11",
			LibraryVersion: pkcs11.Version{Major: 2, Minor: 6}}, quirks{name: "SoftHSM", generalErrorIsAuth: true}},
		{"another vendor", pkcs11.Info{ManufacturerID: "Some HSM Vendor, Inc.", LibraryDescription: "CloudHSM PKCS#11 library"}, quirks{}},
		{"a name that only contains SoftHSM", pkcs11.Info{ManufacturerID: "Not SoftHSM"}, quirks{}},
		{"a module that says nothing", pkcs11.Info{}, quirks{}},
	} {
		if got := quirksFor(tc.info); got != tc.want {
			t.Errorf("%s: quirks %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// TestGeneralErrorQuirk: SoftHSM reports a bad GCM tag and a failed
// unwrap as CKR_GENERAL_ERROR. With SoftHSM's quirk (chosen for it from
// C_GetInfo) that is ErrAuthentication, a per-object failure; a module
// without the quirk gets the same code reported as a failure of the module
// (no ErrAuthentication, counted as an HSM error, and a hint), so that a
// real general error on CloudHSM stops the run instead of failing objects
// one by one.
func TestGeneralErrorQuirk(t *testing.T) {
	p := openPool(t, nil)
	info, err := p.mod.ctx.GetInfo()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(info.ManufacturerID, "SoftHSM") {
		t.Skipf("the test module is %q, not SoftHSM", info.ManufacturerID)
	}
	if !p.quirks.generalErrorIsAuth || p.quirks.name != "SoftHSM" {
		t.Fatalf("SoftHSM (%q, %q) got quirks %+v", info.ManufacturerID, info.LibraryDescription, p.quirks)
	}
	ctx := t.Context()
	label := newKey(t, p, false)
	aad := []byte("aad")
	var iv, ct, wrapped []byte
	if err := p.Do(ctx, func(s *Session) (err error) {
		if iv, ct, err = s.EncryptGCM(label, nil, []byte("a data key of 32 bytes, really!"), aad); err != nil {
			return err
		}
		wrapped, err = s.WrapKeyPad(label, bytes.Repeat([]byte{7}, 32))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	badTag := bytes.Clone(ct)
	badTag[len(badTag)-1] ^= 1
	badWrap := bytes.Clone(wrapped)
	badWrap[len(badWrap)-1] ^= 1
	ops := map[string]func(*Session) error{
		"decrypt": func(s *Session) error { _, err := s.DecryptGCM(label, iv, badTag, aad); return err },
		"unwrap":  func(s *Session) error { _, err := s.UnwrapKeyPad(label, badWrap); return err },
	}
	for name, op := range ops {
		t.Run(name, func(t *testing.T) {
			// With the quirk: one bad object.
			before := p.Stats()
			err := p.Do(ctx, op)
			var code pkcs11.Error
			if !errors.As(err, &code) {
				t.Fatalf("%v carries no PKCS#11 code", err)
			}
			if code != pkcs11.CKR_GENERAL_ERROR {
				t.Skipf("this SoftHSM reports %v here, not CKR_GENERAL_ERROR: the quirk does not apply", code)
			}
			if !errors.Is(err, ErrAuthentication) || !strings.Contains(err.Error(), "as SoftHSM reports a failed check") {
				t.Errorf("with the quirk: %v, want ErrAuthentication", err)
			}
			if st := p.Stats(); st.Errors != before.Errors {
				t.Errorf("with the quirk, a failed check counted as an HSM error")
			}

			// Without it: the module failed.
			p.quirks = quirks{}
			defer func() { p.quirks = p.mod.quirks }()
			before = p.Stats()
			err = p.Do(ctx, op)
			if errors.Is(err, ErrAuthentication) || !errors.As(err, &code) || code != pkcs11.CKR_GENERAL_ERROR {
				t.Fatalf("without the quirk: %v, want CKR_GENERAL_ERROR and no ErrAuthentication", err)
			}
			for _, want := range []string{`token "` + p.TokenLabel() + `"`, label, "the module failed", "hint: ", "quirks"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("without the quirk: %q lacks %q", err, want)
				}
			}
			if st := p.Stats(); st.Errors != before.Errors+1 {
				t.Errorf("without the quirk, HSM errors went from %d to %d, want one more", before.Errors, st.Errors)
			}
			// The session is not lost: the pool keeps working.
			if err := roundTrip(ctx, p, label, []byte("still there")); err != nil {
				t.Fatal(err)
			}
		})
	}
}
