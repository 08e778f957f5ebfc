package rewrap

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/rotator-dev/rotator/hsmpool"
)

// TestHSMGeneralErrorIsSystemic: CKR_GENERAL_ERROR that hsmpool did not
// turn into ErrAuthentication (a module without SoftHSM's quirk) is a
// failure of the HSM: systemic even when unwrapping an object's key, so
// the run stops instead of failing every object one by one. A failed
// integrity check stays a per-object failure, and other PKCS#11 errors of
// the source side stay per object.
func TestHSMGeneralErrorIsSystemic(t *testing.T) {
	const key = "pkcs11:token=t;object=k"
	general := pkcs11.Error(pkcs11.CKR_GENERAL_ERROR)
	for _, tc := range []struct {
		name     string
		err      error
		sd       side
		code     string
		systemic bool
		hint     string
	}{
		{"general error, source", fmt.Errorf("hsmpool: token \"t\": decrypt with key \"k\": the module failed: %w", general), sideSource, CodeHSMError, true, "check the HSM"},
		{"general error, destination", fmt.Errorf("hsmpool: wrap: %w", general), sideDest, CodeHSMError, true, "check the HSM"},
		{"general error as a failed check (SoftHSM)", errors.Join(hsmpool.ErrAuthentication, general), sideSource, CodeAuthentication, false, "altered"},
		{"another module error, source", fmt.Errorf("hsmpool: %w", pkcs11.Error(pkcs11.CKR_DEVICE_MEMORY)), sideSource, CodeHSMError, false, ""},
	} {
		e := hsmError("decrypt", key, tc.sd, tc.err)
		if e.Code != tc.code || e.Systemic != tc.systemic || !strings.Contains(e.Hint, tc.hint) {
			t.Errorf("%s: code %s systemic %v hint %q, want %s %v %q", tc.name, e.Code, e.Systemic, e.Hint, tc.code, tc.systemic, tc.hint)
		}
		if !errors.Is(e, tc.err) {
			t.Errorf("%s: %v does not wrap the HSM's error", tc.name, e)
		}
	}
}
