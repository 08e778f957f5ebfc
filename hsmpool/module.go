package hsmpool

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"unsafe"

	"github.com/miekg/pkcs11"
)

// PKCS#11 state is process-wide: C_Initialize and C_Finalize act on the
// library, not on a handle, and dlopen returns the same library for every
// pkcs11.New of one path. A C_Finalize by one pool would therefore pull the
// rug from every other pool of the process, and a C_Logout by one would log
// out the sessions of every other pool on that token. So the package keeps
// one module per library (by canonical path) with a count of the pools using
// it, and per token a count of the pools logged in to it:
//
//   - the first pool calls C_Initialize; CKR_CRYPTOKI_ALREADY_INITIALIZED
//     means some other code of this process initialised the library, which
//     then is not ours to finalise;
//   - the last pool to close calls C_Finalize (only if we initialised);
//   - the last pool on a token calls C_Logout.
//
// Libraries stay loaded for the life of the process (no dlclose): unloading
// a C++ library such as SoftHSM under a running Go program is not worth the
// few kilobytes it would free.
var registry = struct {
	sync.Mutex
	modules map[string]*module
}{modules: map[string]*module{}}

// module is one loaded PKCS#11 library. Its fields (but not ctx, which is
// safe for concurrent use) are guarded by registry's mutex.
type module struct {
	path   string
	ctx    *pkcs11.Ctx
	refs   int  // pools using the module
	owned  bool // we called C_Initialize, so we call C_Finalize
	tokens map[uint]*tokenState
	// quirks are the module's departures from PKCS#11 the package works
	// around, from its C_GetInfo (see knownQuirks).
	quirks quirks
}

// tokenState tracks one token (by slot) of a module.
type tokenState struct {
	refs int // pools on the token
	// pinSum is the SHA-256 of the PIN this process logged in with. The
	// token answers CKR_USER_ALREADY_LOGGED_IN to any PIN once logged in,
	// so a second pool with a wrong PIN would otherwise pass unnoticed.
	pinSum [sha256.Size]byte
	hasSum bool
}

// acquireModule loads and initialises the library at path, or takes another
// reference to it.
func acquireModule(path string) (*module, error) {
	canon, err := filepath.Abs(path)
	if err == nil {
		canon, err = filepath.EvalSymlinks(canon)
	}
	if err != nil {
		return nil, fmt.Errorf("hsmpool: PKCS#11 module %s: %w (hint: SoftHSM is /usr/lib/softhsm/libsofthsm2.so, CloudHSM /opt/cloudhsm/lib/libcloudhsm_pkcs11.so)", path, err)
	}
	registry.Lock()
	defer registry.Unlock()
	m := registry.modules[canon]
	if m == nil {
		ctx := pkcs11.New(canon)
		if ctx == nil {
			return nil, fmt.Errorf("hsmpool: PKCS#11 module %s: cannot load it (hint: is it a PKCS#11 library for this platform and architecture?)", canon)
		}
		m = &module{path: canon, ctx: ctx, tokens: map[uint]*tokenState{}}
		registry.modules[canon] = m
	}
	if m.refs == 0 {
		switch err := m.ctx.Initialize(); {
		case err == nil:
			m.owned = true
		case hasCode(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED):
			m.owned = false
		default:
			return nil, newError(fmt.Sprintf("hsmpool: PKCS#11 module %s: C_Initialize: %v (hint: for SoftHSM check SOFTHSM2_CONF and its tokendir)", canon, err), err)
		}
		m.quirks = quirks{} // a module that cannot describe itself gets none
		if info, err := m.ctx.GetInfo(); err == nil {
			m.quirks = quirksFor(info)
		}
	}
	m.refs++
	return m, nil
}

// release drops a reference; the last one finalises the library if we
// initialised it.
func (m *module) release() error {
	registry.Lock()
	defer registry.Unlock()
	m.refs--
	if m.refs > 0 {
		return nil
	}
	clear(m.tokens)
	if !m.owned {
		return nil
	}
	m.owned = false
	if err := m.ctx.Finalize(); err != nil && !hasCode(err, pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED) {
		return newError(fmt.Sprintf("hsmpool: PKCS#11 module %s: C_Finalize: %v", m.path, err), err)
	}
	return nil
}

// addToken counts one more pool on the token in slot.
func (m *module) addToken(slot uint) {
	registry.Lock()
	defer registry.Unlock()
	ts := m.tokens[slot]
	if ts == nil {
		ts = &tokenState{}
		m.tokens[slot] = ts
	}
	ts.refs++
}

// releaseToken counts one pool fewer on the token; if it was the last one,
// it calls logout (when not nil) before any other pool can log in again.
func (m *module) releaseToken(slot uint, logout func()) {
	registry.Lock()
	defer registry.Unlock()
	if ts := m.tokens[slot]; ts != nil {
		ts.refs--
		if ts.refs > 0 {
			return
		}
		delete(m.tokens, slot)
	}
	if logout != nil {
		logout()
	}
}

// login logs the user in on session sh of the token in slot. Logins are
// serialised per process, which also keeps concurrent reopens from racing
// each other to the token.
func (m *module) login(slot uint, sh pkcs11.SessionHandle, pin []byte) error {
	if len(pin) == 0 {
		return ErrClosed // the pool cleared its PIN: it is closing
	}
	sum := sha256.Sum256(pin)
	defer clear(sum[:])
	registry.Lock()
	defer registry.Unlock()
	ts := m.tokens[slot]
	if ts == nil { // cannot happen while a pool holds the token; be safe
		ts = &tokenState{}
		m.tokens[slot] = ts
	}
	// pkcs11.Ctx.Login takes a string and copies it into C memory for the
	// duration of the call; an aliasing string avoids leaving an immutable
	// Go copy of the PIN behind. pin is not modified during the call.
	err := m.ctx.Login(sh, pkcs11.CKU_USER, unsafe.String(&pin[0], len(pin)))
	switch {
	case err == nil:
		ts.pinSum, ts.hasSum = sum, true
		return nil
	case hasCode(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN):
		if ts.hasSum && subtle.ConstantTimeCompare(ts.pinSum[:], sum[:]) != 1 {
			return errPINMismatch
		}
		return nil
	default:
		return err
	}
}

// errPINMismatch is turned into an ErrLogin by the caller, which knows the
// token's name.
var errPINMismatch = errors.New("the PIN differs from the one this process logged in to the token with")
