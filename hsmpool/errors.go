package hsmpool

import (
	"errors"
	"fmt"

	"github.com/miekg/pkcs11"
)

// Sentinel errors. Every error the package returns starts with "hsmpool:",
// names the token (and the key label where there is one) and wraps one of
// these where it applies, plus the pkcs11.Error behind it, so callers branch
// with errors.Is and errors.As, never on message text.
//
// Per-object failures (the pipeline records them and moves on):
// ErrAuthentication. Systemic failures (the run should stop): ErrLogin,
// ErrUnavailable, ErrClosed, and usually ErrKeyNotFound (a wrong label in the
// configuration). ErrExhausted means the session budget is too small for the
// offered load.
var (
	// ErrKeyNotFound: no secret key with the label on the token.
	ErrKeyNotFound = errors.New("hsmpool: key not found")
	// ErrKeyExists: GenerateAESKey found a key with the label already.
	ErrKeyExists = errors.New("hsmpool: key exists")
	// ErrAuthentication: an AES-GCM tag or an AES key-wrap integrity check
	// failed: wrong key, IV or additional data, or altered ciphertext.
	ErrAuthentication = errors.New("hsmpool: authentication failed")
	// ErrExhausted: every session of the pool stayed busy for
	// Config.AcquireTimeout.
	ErrExhausted = errors.New("hsmpool: all sessions busy")
	// ErrClosed: the pool is closed or closing.
	ErrClosed = errors.New("hsmpool: pool closed")
	// ErrLogin: the token refused the user PIN (or the PIN differs from the
	// one this process already logged in with).
	ErrLogin = errors.New("hsmpool: login failed")
	// ErrUnavailable: a session was lost (closed, token removed, logged out)
	// and could not be replaced, or the operation was not safe to retry.
	ErrUnavailable = errors.New("hsmpool: HSM unavailable")
)

// ckrAEADDecryptFailed is CKR_AEAD_DECRYPT_FAILED from PKCS#11 3.0, which
// miekg/pkcs11 v1.1.2 does not define.
const ckrAEADDecryptFailed = 0x42

// hsmError is an error with its own message that wraps one or more errors
// (a sentinel and the pkcs11.Error behind it) without repeating their text.
type hsmError struct {
	msg  string
	errs []error
}

func (e *hsmError) Error() string   { return e.msg }
func (e *hsmError) Unwrap() []error { return e.errs }

// newError returns an error with message msg (which the caller composes,
// starting with "hsmpool:") wrapping errs; nil entries are dropped.
func newError(msg string, errs ...error) error {
	e := &hsmError{msg: msg}
	for _, err := range errs {
		if err != nil {
			e.errs = append(e.errs, err)
		}
	}
	return e
}

// code returns the PKCS#11 return value inside err, if any.
func code(err error) (uint, bool) {
	var e pkcs11.Error
	if errors.As(err, &e) {
		return uint(e), true
	}
	return 0, false
}

func hasCode(err error, codes ...uint) bool {
	c, ok := code(err)
	if !ok {
		return false
	}
	for _, want := range codes {
		if c == want {
			return true
		}
	}
	return false
}

// sessionLost reports whether err means the session can no longer serve
// operations: it is discarded and, for an operation without side effects,
// replaced and the operation retried once. CKR_OPERATION_ACTIVE is here too:
// a session stuck in an operation is cheaper to replace than to diagnose.
func sessionLost(err error) bool {
	return hasCode(err,
		pkcs11.CKR_SESSION_HANDLE_INVALID,
		pkcs11.CKR_SESSION_CLOSED,
		pkcs11.CKR_DEVICE_REMOVED,
		pkcs11.CKR_TOKEN_NOT_PRESENT,
		pkcs11.CKR_USER_NOT_LOGGED_IN,
		pkcs11.CKR_OPERATION_ACTIVE,
	)
}

// transient reports whether opening a session may succeed if tried again
// after a pause. Login failures are never transient: retrying a wrong PIN
// only brings the account closer to being locked.
func transient(err error) bool {
	return hasCode(err,
		pkcs11.CKR_SESSION_HANDLE_INVALID,
		pkcs11.CKR_SESSION_CLOSED,
		pkcs11.CKR_DEVICE_REMOVED,
		pkcs11.CKR_TOKEN_NOT_PRESENT,
		pkcs11.CKR_DEVICE_ERROR,
		pkcs11.CKR_SESSION_COUNT,
	)
}

// staleKey reports whether err means a cached key handle no longer names an
// object (the key was destroyed, or the token logged out and private objects
// became invisible): the cache entry is dropped and the key looked up again.
func staleKey(err error) bool {
	return hasCode(err, pkcs11.CKR_OBJECT_HANDLE_INVALID, pkcs11.CKR_KEY_HANDLE_INVALID)
}

// authCode reports whether err is a return value that unambiguously means a
// failed integrity check. CKR_GENERAL_ERROR (what SoftHSM returns) is
// handled by the caller, and only for modules with that quirk (quirks.go).
func authCode(err error) bool {
	return hasCode(err, ckrAEADDecryptFailed, pkcs11.CKR_ENCRYPTED_DATA_INVALID, pkcs11.CKR_WRAPPED_KEY_INVALID)
}

// mechanismName names the mechanisms this package uses, for messages.
func mechanismName(m uint) string {
	switch m {
	case pkcs11.CKM_AES_GCM:
		return "CKM_AES_GCM"
	case pkcs11.CKM_AES_KEY_WRAP:
		return "CKM_AES_KEY_WRAP"
	case pkcs11.CKM_AES_KEY_WRAP_PAD:
		return "CKM_AES_KEY_WRAP_PAD"
	}
	return fmt.Sprintf("mechanism 0x%X", m)
}
