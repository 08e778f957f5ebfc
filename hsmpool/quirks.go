package hsmpool

import (
	"strings"

	"github.com/miekg/pkcs11"
)

// quirks are the documented ways a PKCS#11 module departs from the standard
// that the pool works around. A module gets the quirks of the first entry
// of knownQuirks that matches its C_GetInfo, none otherwise (and none when
// C_GetInfo fails): every workaround is opt-in per module, so that a module
// that behaves as the standard says is never second-guessed.
type quirks struct {
	// name is the matched entry, for messages ("" for none).
	name string
	// generalErrorIsAuth: the module reports a failed integrity check (a
	// bad AES-GCM tag, a failed key-unwrap check) as CKR_GENERAL_ERROR
	// instead of CKR_AEAD_DECRYPT_FAILED, CKR_ENCRYPTED_DATA_INVALID or
	// CKR_WRAPPED_KEY_INVALID. With it, CKR_GENERAL_ERROR from such a step
	// is ErrAuthentication (one bad object) once the session is seen to
	// still answer. Without it, CKR_GENERAL_ERROR is what PKCS#11 says it
	// is, a failure of the module or the HSM, and stays a module error
	// (rotator stops the run), never a per-object authentication failure.
	generalErrorIsAuth bool
}

// knownQuirks is the per-module table, matched on C_GetInfo.
//
//   - SoftHSM 2 (manufacturer "SoftHSM"; checked with 2.6.1): a bad GCM tag
//     and a failed unwrap come back as CKR_GENERAL_ERROR.
//
// CloudHSM's library is not in the table: nobody here has seen what it
// answers for a bad tag. If it, too, says CKR_GENERAL_ERROR, runs will stop
// on the first tampered object with that code in the message; add an entry
// matching its manufacturer then, after checking it on a real cluster.
var knownQuirks = []struct {
	match  func(pkcs11.Info) bool
	quirks quirks
}{
	{
		match:  func(i pkcs11.Info) bool { return strings.TrimSpace(i.ManufacturerID) == "SoftHSM" },
		quirks: quirks{name: "SoftHSM", generalErrorIsAuth: true},
	},
}

// quirksFor returns the quirks of the module that describes itself with
// info.
func quirksFor(info pkcs11.Info) quirks {
	for _, k := range knownQuirks {
		if k.match(info) {
			return k.quirks
		}
	}
	return quirks{}
}
