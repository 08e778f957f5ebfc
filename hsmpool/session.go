package hsmpool

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/miekg/pkcs11"
)

// Sizes of AES-GCM and AES key material, in bytes.
const (
	GCMIVSize  = 12 // the only IV size the package accepts or returns
	GCMTagSize = 16 // the tag appended to every GCM ciphertext
	AESKeySize = 32 // keys made by GenerateAESKey (AES-256)
)

// conn is one PKCS#11 session handle and its key cache. It belongs to the
// pool while idle and to one lease (Session) while lent out.
type conn struct {
	h      pkcs11.SessionHandle
	keys   map[string]pkcs11.ObjectHandle // key handles by label
	gen    uint64                         // Pool.keyGen the cache is valid for
	lastOK time.Time                      // last time the session was known good
	dead   bool                           // discard instead of returning to the pool
	gone   bool                           // the library reported the handle gone
}

// Session is a session lent out by Acquire or Do: a lease on one PKCS#11
// session. Its operations replace the session by themselves if the HSM lost
// it (closed, token removed, logged out) and retry once where the operation
// has no side effects; the lease stays the same. One goroutine at a time may
// use a Session, and not after Release.
type Session struct {
	p        *Pool
	c        *conn           // nil after a failed reopen: the next operation opens one
	ctx      context.Context // bounds reopen back-off
	released bool
}

var errReleased = errors.New("hsmpool: session used after Release")

// op names an operation in error messages; it is formatted only when an
// error needs it, keeping fmt off the hot path.
type op struct {
	verb  string // "encrypt with", "generate", ...
	label string // the key
	mech  uint   // shown when not zero
}

func (o op) String() string {
	s := fmt.Sprintf("%s key %q", o.verb, o.label)
	if o.mech != 0 {
		s += " (" + mechanismName(o.mech) + ")"
	}
	return s
}

// Release returns the session to the pool (or discards it, if it died). A
// second Release does nothing.
func (s *Session) Release() {
	if s == nil || s.released {
		return
	}
	s.released = true
	c := s.c
	s.c = nil
	s.p.release(c)
}

// call runs f on the session with the handle of the secret key o.label
// (looked up only when keyed). A stale cached key handle is looked up again
// once. A lost session is discarded and replaced, and the lookup or f retried
// once, unless f itself failed and is not idempotent.
func (s *Session) call(o op, keyed, idempotent bool, f func(h pkcs11.SessionHandle, key pkcs11.ObjectHandle) error) error {
	if s.released {
		return errReleased
	}
	p, label := s.p, o.label
	if !keyed {
		label = ""
	}
	var lost error // the loss that made us reopen
	refound := false
	for {
		if s.c != nil && s.c.dead { // lost by an earlier, non-idempotent operation
			p.discard(s.c, true)
			s.c = nil
		}
		if s.c == nil {
			c, err := p.openConn(s.ctx)
			if err != nil {
				if lost == nil {
					return newError(fmt.Sprintf("hsmpool: token %q: %s: no session: %v", p.token, o, err), ErrUnavailable, err)
				}
				return newError(fmt.Sprintf("hsmpool: token %q: %s: session lost (%v) and reopening failed: %v", p.token, o, lost, err), ErrUnavailable, err, lost)
			}
			s.c = c
		}
		var key pkcs11.ObjectHandle
		var err error
		if label != "" {
			key, err = s.key(label)
		}
		ran := false // whether f ran: a failed lookup is always safe to retry
		if err == nil {
			ran = true
			err = f(s.c.h, key)
		}
		if err == nil {
			return nil
		}
		if _, ok := code(err); ok && !errors.Is(err, ErrAuthentication) {
			p.errs.Add(1)
		}
		if label != "" && !refound && staleKey(err) {
			delete(s.c.keys, label)
			refound = true
			continue
		}
		if !sessionLost(err) {
			var he *hsmError
			if errors.As(err, &he) {
				return err // composed already
			}
			return newError(fmt.Sprintf("hsmpool: token %q: %s: %v", p.token, o, err), err)
		}
		s.c.dead, s.c.gone = true, handleGone(err)
		switch {
		case lost != nil:
			return newError(fmt.Sprintf("hsmpool: token %q: %s: session lost again after reopening: %v (hint: check the HSM and its client)", p.token, o, err), ErrUnavailable, err)
		case !idempotent && ran:
			return newError(fmt.Sprintf("hsmpool: token %q: %s: session lost: %v (not retried: it may have taken effect; check before trying again)", p.token, o, err), ErrUnavailable, err)
		}
		lost, refound = err, false
		p.discard(s.c, true)
		s.c = nil
	}
}

// key returns the handle of the secret key labelled label, from the cache or
// the token.
func (s *Session) key(label string) (pkcs11.ObjectHandle, error) {
	c, ctx := s.c, s.p.mod.ctx
	if g := s.p.keyGen.Load(); g != c.gen {
		clear(c.keys)
		c.gen = g
	}
	if h, ok := c.keys[label]; ok {
		return h, nil
	}
	tmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}
	if err := ctx.FindObjectsInit(c.h, tmpl); err != nil {
		return 0, err
	}
	found, _, err := ctx.FindObjects(c.h, 2)
	if ferr := ctx.FindObjectsFinal(c.h); err == nil {
		err = ferr
	}
	if err != nil {
		return 0, err
	}
	switch len(found) {
	case 1:
		c.keys[label] = found[0]
		return found[0], nil
	case 0:
		// A logged-out token hides its private objects: rule that out
		// before blaming the label. Reporting it as CKR_USER_NOT_LOGGED_IN
		// makes call replace the session, which logs in again.
		info, err := ctx.GetSessionInfo(c.h)
		if err != nil {
			return 0, err
		}
		if !userState(info.State) {
			return 0, pkcs11.Error(pkcs11.CKR_USER_NOT_LOGGED_IN)
		}
		return 0, newError(fmt.Sprintf("hsmpool: token %q: no secret key labelled %q (hint: create it with `pkcs11-tool --module %s --token-label %s --login --keygen --key-type AES:32 --label %s`, or check the label)", s.p.token, label, s.p.mod.path, s.p.token, label), ErrKeyNotFound)
	default:
		return 0, newError(fmt.Sprintf("hsmpool: token %q: more than one secret key labelled %q (hint: labels must be unique: delete or relabel the extra keys)", s.p.token, label))
	}
}

// FindKey returns the handle of the secret key labelled label (from the
// session's cache when it has it), or an error wrapping ErrKeyNotFound.
func (s *Session) FindKey(label string) (pkcs11.ObjectHandle, error) {
	var h pkcs11.ObjectHandle
	err := s.call(op{"find", label, 0}, true, true, func(_ pkcs11.SessionHandle, key pkcs11.ObjectHandle) error {
		h = key
		return nil
	})
	return h, err
}

// EncryptGCM encrypts plaintext with CKM_AES_GCM under the key labelled
// label, authenticating aad too, and returns the IV used and the ciphertext
// with the 16-byte tag appended (the layout of Go's cipher.AEAD.Seal).
//
// With iv nil the package draws a random 12-byte IV, which is what callers
// should do: an IV must never repeat under one key. Either way the IV is read
// back from the mechanism parameters after encrypting, because some HSMs
// (CloudHSM) ignore the caller's IV and write their own; always store ivOut.
func (s *Session) EncryptGCM(label string, iv, plaintext, aad []byte) (ivOut, ciphertext []byte, err error) {
	what := op{"encrypt with", label, 0}
	if iv == nil {
		iv = make([]byte, GCMIVSize)
		_, _ = rand.Read(iv) // never fails (it crashes the program instead)
	} else if len(iv) != GCMIVSize {
		return nil, nil, fmt.Errorf("hsmpool: token %q: %s: IV is %d bytes, want %d", s.p.token, what, len(iv), GCMIVSize)
	}
	ctx := s.p.mod.ctx
	err = s.call(what, true, true, func(h pkcs11.SessionHandle, key pkcs11.ObjectHandle) error {
		params := pkcs11.NewGCMParams(iv, aad, GCMTagSize*8)
		defer params.Free()
		if err := ctx.EncryptInit(h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, key); err != nil {
			return err
		}
		out, err := ctx.Encrypt(h, plaintext)
		if err != nil {
			return err
		}
		used := params.IV()
		if len(used) != GCMIVSize || len(out) != len(plaintext)+GCMTagSize {
			return newError(fmt.Sprintf("hsmpool: token %q: %s: the HSM returned a %d-byte IV and %d bytes for %d bytes of plaintext, want a %d-byte IV and a %d-byte tag", s.p.token, what, len(used), len(out), len(plaintext), GCMIVSize, GCMTagSize))
		}
		ivOut, ciphertext = used, out
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return ivOut, ciphertext, nil
}

// DecryptGCM decrypts ciphertext (with its 16-byte tag appended) with
// CKM_AES_GCM under the key labelled label. A tag that does not verify gives
// an error wrapping ErrAuthentication.
func (s *Session) DecryptGCM(label string, iv, ciphertext, aad []byte) ([]byte, error) {
	what := op{"decrypt with", label, 0}
	if len(iv) != GCMIVSize {
		return nil, fmt.Errorf("hsmpool: token %q: %s: IV is %d bytes, want %d", s.p.token, what, len(iv), GCMIVSize)
	}
	if len(ciphertext) < GCMTagSize {
		return nil, newError(fmt.Sprintf("hsmpool: token %q: %s: authentication failed: ciphertext is %d bytes, shorter than the %d-byte tag", s.p.token, what, len(ciphertext), GCMTagSize), ErrAuthentication)
	}
	ctx := s.p.mod.ctx
	var plaintext []byte
	err := s.call(what, true, true, func(h pkcs11.SessionHandle, key pkcs11.ObjectHandle) error {
		params := pkcs11.NewGCMParams(iv, aad, GCMTagSize*8)
		defer params.Free()
		if err := ctx.DecryptInit(h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, key); err != nil {
			return err
		}
		out, err := ctx.Decrypt(h, ciphertext)
		if err != nil {
			return s.authError(what, h, err)
		}
		plaintext = out
		return nil
	})
	if err != nil {
		return nil, err
	}
	return plaintext, nil
}

// authError classifies the failure of a step that verifies integrity (GCM
// decrypt, key unwrap). Codes that mean a failed check map to
// ErrAuthentication. CKR_GENERAL_ERROR does too on a module with the
// generalErrorIsAuth quirk (SoftHSM reports a bad tag that way), once the
// other causes are ruled out: the inputs passed our own checks, the Init
// step accepted key and mechanism, and the session still answers (if it
// does not, the probe's error goes back to call, which replaces the session
// and retries). On any other module CKR_GENERAL_ERROR is a failure of the
// module, not of the object, and says so.
func (s *Session) authError(what op, h pkcs11.SessionHandle, err error) error {
	hint := "(hint: wrong key, IV or additional data, or the ciphertext was altered)"
	if authCode(err) {
		return newError(fmt.Sprintf("hsmpool: token %q: %s: authentication failed: %v %s", s.p.token, what, err, hint), ErrAuthentication, err)
	}
	if hasCode(err, pkcs11.CKR_GENERAL_ERROR) {
		if !s.p.quirks.generalErrorIsAuth {
			return newError(fmt.Sprintf("hsmpool: token %q: %s: the module failed: %v (hint: PKCS#11 reserves it for failures of the module or the HSM; "+
				"check the HSM and its client's logs. If this module reports bad tags this way, it needs a quirks entry in hsmpool)", s.p.token, what, err), err)
		}
		if _, perr := s.p.mod.ctx.GetSessionInfo(h); perr != nil {
			return perr
		}
		return newError(fmt.Sprintf("hsmpool: token %q: %s: authentication failed: %v (as %s reports a failed check) %s", s.p.token, what, err, s.p.quirks.name, hint), ErrAuthentication, err)
	}
	return err
}

// WrapKeyPad wraps dataKey with CKM_AES_KEY_WRAP_PAD (RFC 5649) under the
// key labelled label; a 32-byte key wraps to 40 bytes.
//
// PKCS#11 wraps objects, not bytes, and SoftHSM refuses the key-wrap
// mechanisms in C_Encrypt (CKR_MECHANISM_INVALID), so the data key is
// imported as a short-lived session object (CKK_GENERIC_SECRET, sensitive,
// extractable), wrapped with C_WrapKey and destroyed at once.
//
// SoftHSM 2.6 zero-pads a key whose length is not a multiple of 8 before
// wrapping and records the padded length, so such keys unwrap padded and
// their wrapping is not RFC 5649's; 16-, 24- and 32-byte keys wrap exactly as
// RFC 5649 says (the tests check both against the RFC).
func (s *Session) WrapKeyPad(label string, dataKey []byte) ([]byte, error) {
	return s.wrap(label, pkcs11.CKM_AES_KEY_WRAP_PAD, dataKey)
}

// UnwrapKeyPad reverses WrapKeyPad: C_UnwrapKey into a short-lived session
// object (CKK_GENERIC_SECRET, not sensitive, extractable), whose CKA_VALUE is
// read and which is destroyed at once. A failed integrity check gives an
// error wrapping ErrAuthentication. The caller owns the returned key bytes
// and should clear them after use. This needs the HSM to let an unwrapped
// key be non-sensitive; SoftHSM does, CloudHSM is unverified (where it does
// not, use CKM_AES_GCM, whose decryption returns the bytes directly).
func (s *Session) UnwrapKeyPad(label string, wrapped []byte) ([]byte, error) {
	return s.unwrap(label, pkcs11.CKM_AES_KEY_WRAP_PAD, wrapped)
}

func (s *Session) wrap(label string, mech uint, dataKey []byte) ([]byte, error) {
	what := op{"wrap with", label, mech}
	if len(dataKey) == 0 {
		return nil, fmt.Errorf("hsmpool: token %q: %s: empty data key", s.p.token, what)
	}
	ctx := s.p.mod.ctx
	var wrapped []byte
	err := s.call(what, true, true, func(h pkcs11.SessionHandle, key pkcs11.ObjectHandle) error {
		obj, err := ctx.CreateObject(h, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_GENERIC_SECRET),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE, dataKey), // not copied on the Go side
		})
		if err != nil {
			return err
		}
		defer func() { _ = ctx.DestroyObject(h, obj) }()
		out, err := ctx.WrapKey(h, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, key, obj)
		if err != nil {
			return err
		}
		wrapped = out
		return nil
	})
	if err != nil {
		return nil, err
	}
	return wrapped, nil
}

func (s *Session) unwrap(label string, mech uint, wrapped []byte) ([]byte, error) {
	what := op{"unwrap with", label, mech}
	ctx := s.p.mod.ctx
	var dataKey []byte
	err := s.call(what, true, true, func(h pkcs11.SessionHandle, key pkcs11.ObjectHandle) error {
		obj, err := ctx.UnwrapKey(h, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, key, wrapped, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_GENERIC_SECRET),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
		})
		if err != nil {
			return s.authError(what, h, err)
		}
		defer func() { _ = ctx.DestroyObject(h, obj) }()
		attrs, err := ctx.GetAttributeValue(h, obj, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
		if err != nil {
			return err
		}
		if len(attrs) != 1 || len(attrs[0].Value) == 0 {
			return newError(fmt.Sprintf("hsmpool: token %q: %s: the HSM returned no key value", s.p.token, what))
		}
		dataKey = attrs[0].Value
		return nil
	})
	if err != nil {
		return nil, err
	}
	return dataKey, nil
}

// WrapDataKey protects dataKey under the key labelled label with the pool's
// mechanism (Config.Mechanism) and returns the blob to store:
//
//   - CKM_AES_GCM: IV (12 bytes) || ciphertext || tag (16 bytes), with aad
//     authenticated; a 32-byte key gives 60 bytes.
//   - CKM_AES_KEY_WRAP_PAD, CKM_AES_KEY_WRAP or a vendor wrap mechanism: the
//     wrapped key. These cannot authenticate additional data, so a non-empty
//     aad is refused rather than silently left unbound.
func (s *Session) WrapDataKey(label string, dataKey, aad []byte) ([]byte, error) {
	mech := s.p.cfg.Mechanism
	if mech == pkcs11.CKM_AES_GCM {
		iv, ct, err := s.EncryptGCM(label, nil, dataKey, aad)
		if err != nil {
			return nil, err
		}
		return append(iv, ct...), nil
	}
	if len(aad) > 0 {
		return nil, fmt.Errorf("hsmpool: token %q: wrap with key %q: %s cannot bind additional data (hint: use CKM_AES_GCM, or store the context elsewhere)", s.p.token, label, mechanismName(mech))
	}
	return s.wrap(label, mech, dataKey)
}

// UnwrapDataKey reverses WrapDataKey. The caller owns the returned key bytes
// and should clear them after use.
func (s *Session) UnwrapDataKey(label string, blob, aad []byte) ([]byte, error) {
	mech := s.p.cfg.Mechanism
	if mech == pkcs11.CKM_AES_GCM {
		if len(blob) < GCMIVSize+GCMTagSize {
			return nil, newError(fmt.Sprintf("hsmpool: token %q: unwrap with key %q: authentication failed: blob is %d bytes, shorter than IV and tag", s.p.token, label, len(blob)), ErrAuthentication)
		}
		return s.DecryptGCM(label, blob[:GCMIVSize], blob[GCMIVSize:], aad)
	}
	if len(aad) > 0 {
		return nil, fmt.Errorf("hsmpool: token %q: unwrap with key %q: %s cannot bind additional data", s.p.token, label, mechanismName(mech))
	}
	return s.unwrap(label, mech, blob)
}

// GenerateAESKey creates a persistent AES-256 key labelled label on the
// token, usable for encrypt, decrypt, wrap and unwrap. It refuses a label in
// use (ErrKeyExists): lookups by label must stay unambiguous.
//
// extractable makes a key whose value can be read (CKA_EXTRACTABLE true,
// CKA_SENSITIVE false): for tests and the demo only. Production keys are
// created with extractable false (sensitive, never leaving the HSM).
func (s *Session) GenerateAESKey(label string, extractable bool) error {
	what := op{"generate", label, 0}
	if label == "" {
		return fmt.Errorf("hsmpool: token %q: generate key: empty label", s.p.token)
	}
	switch _, err := s.FindKey(label); {
	case err == nil:
		return newError(fmt.Sprintf("hsmpool: token %q: %s: a secret key with this label exists (hint: pick another label, or use the existing key)", s.p.token, what), ErrKeyExists)
	case !errors.Is(err, ErrKeyNotFound):
		return err
	}
	ctx := s.p.mod.ctx
	return s.call(what, false, false, func(h pkcs11.SessionHandle, _ pkcs11.ObjectHandle) error {
		k, err := ctx.GenerateKey(h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, AESKeySize),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),
			pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, extractable),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, !extractable),
		})
		if err != nil {
			return err
		}
		if s.c.gen == s.p.keyGen.Load() {
			s.c.keys[label] = k
		}
		return nil
	})
}

// DestroyKey deletes the secret key labelled label from the token and makes
// every session of the pool forget cached key handles. Sessions of other
// pools or processes find out at their next use of the label (the stale
// handle fails and is looked up again), provided the library does not reuse
// the handle number at once; call ForgetKeys on such pools to be sure.
func (s *Session) DestroyKey(label string) error {
	ctx := s.p.mod.ctx
	return s.call(op{"destroy", label, 0}, true, false, func(h pkcs11.SessionHandle, key pkcs11.ObjectHandle) error {
		err := ctx.DestroyObject(h, key)
		delete(s.c.keys, label)
		s.p.ForgetKeys()
		return err
	})
}
