package hsmpool

import (
	"errors"
	"fmt"
	"time"

	"github.com/miekg/pkcs11"
)

// Limits and defaults.
const (
	// DefaultSize is the session budget when Config.Size is zero.
	DefaultSize = 16
	// MaxSize is the largest session budget: CloudHSM allows 1,024 PKCS#11
	// sessions per application.
	MaxSize = 1024
	// DefaultAcquireTimeout is how long Acquire waits for a free session
	// when Config.AcquireTimeout is zero.
	DefaultAcquireTimeout = 30 * time.Second
	// DefaultHealthInterval is the probe interval when
	// Config.HealthInterval is zero.
	DefaultHealthInterval = 30 * time.Second
	// DefaultReopenBackoff, DefaultReopenMaxBackoff and
	// DefaultReopenAttempts shape the retries of a session open that failed
	// for a transient reason: 100ms, 200ms, 400ms, 800ms between five
	// attempts, each pause with up to 50% jitter.
	DefaultReopenBackoff    = 100 * time.Millisecond
	DefaultReopenMaxBackoff = 2 * time.Second
	DefaultReopenAttempts   = 5
)

// Config configures a Pool. The zero value of every field but ModulePath,
// TokenLabel (or Slot) and PIN selects a default.
type Config struct {
	// ModulePath is the PKCS#11 library, e.g.
	// /usr/lib/softhsm/libsofthsm2.so or
	// /opt/cloudhsm/lib/libcloudhsm_pkcs11.so.
	ModulePath string
	// TokenLabel selects the token by label (it must be unique among the
	// module's tokens). With Slot set too, the token in Slot must carry
	// this label.
	TokenLabel string
	// Slot selects the token by slot ID instead of by label.
	Slot *uint
	// PIN is the user PIN, from ReadPIN. Open copies it; the caller may
	// Clear it afterwards.
	PIN *PIN
	// Size is the session budget: at most Size sessions are open and lent
	// out at once (default DefaultSize, at most MaxSize). Size workers per
	// pool keep every session busy; more only queue in Acquire.
	Size int
	// AcquireTimeout bounds the wait for a free session (default
	// DefaultAcquireTimeout); a negative value waits as long as the
	// context allows.
	AcquireTimeout time.Duration
	// Mechanism protects data keys in WrapDataKey and UnwrapDataKey:
	// pkcs11.CKM_AES_GCM (the default), pkcs11.CKM_AES_KEY_WRAP_PAD,
	// pkcs11.CKM_AES_KEY_WRAP, or a vendor key-wrap mechanism without
	// parameters (>= CKM_VENDOR_DEFINED). Open checks that the token
	// supports it.
	Mechanism uint
	// HealthInterval is how often idle sessions are probed with
	// C_GetSessionInfo and dead ones dropped; a session idle for longer is
	// also probed before it is lent out (default DefaultHealthInterval; a
	// negative value disables both).
	HealthInterval time.Duration
	// ReopenBackoff, ReopenMaxBackoff and ReopenAttempts shape the retries
	// of a session open that fails for a transient reason (device removed,
	// token not present, session count): the first pause, the longest
	// pause, and the number of attempts (defaults DefaultReopenBackoff,
	// DefaultReopenMaxBackoff, DefaultReopenAttempts).
	ReopenBackoff    time.Duration
	ReopenMaxBackoff time.Duration
	ReopenAttempts   int
}

// withDefaults returns cfg with defaults filled in, or an error naming the
// first bad field.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.ModulePath == "" {
		return cfg, errors.New("hsmpool: config: ModulePath is empty (hint: SoftHSM is /usr/lib/softhsm/libsofthsm2.so, CloudHSM /opt/cloudhsm/lib/libcloudhsm_pkcs11.so)")
	}
	if cfg.TokenLabel == "" && cfg.Slot == nil {
		return cfg, errors.New("hsmpool: config: name the token with TokenLabel (or Slot)")
	}
	if cfg.PIN == nil || len(cfg.PIN.b) == 0 {
		return cfg, errors.New("hsmpool: config: no PIN (hint: hsmpool.ReadPIN(\"file:/path\") or ReadPIN(\"env:NAME\"))")
	}
	switch {
	case cfg.Size == 0:
		cfg.Size = DefaultSize
	case cfg.Size < 0 || cfg.Size > MaxSize:
		return cfg, fmt.Errorf("hsmpool: config: Size %d out of range 1..%d (CloudHSM allows %d sessions per application)", cfg.Size, MaxSize, MaxSize)
	}
	if cfg.AcquireTimeout == 0 {
		cfg.AcquireTimeout = DefaultAcquireTimeout
	}
	if cfg.Mechanism == 0 { // 0 is CKM_RSA_PKCS_KEY_PAIR_GEN: never meant here
		cfg.Mechanism = pkcs11.CKM_AES_GCM
	}
	switch m := cfg.Mechanism; {
	case m == pkcs11.CKM_AES_GCM, m == pkcs11.CKM_AES_KEY_WRAP, m == pkcs11.CKM_AES_KEY_WRAP_PAD, m >= pkcs11.CKM_VENDOR_DEFINED:
	default:
		return cfg, fmt.Errorf("hsmpool: config: %s cannot protect data keys (want CKM_AES_GCM, CKM_AES_KEY_WRAP_PAD, CKM_AES_KEY_WRAP or a vendor key-wrap mechanism)", mechanismName(m))
	}
	if cfg.HealthInterval == 0 {
		cfg.HealthInterval = DefaultHealthInterval
	}
	if cfg.ReopenBackoff <= 0 {
		cfg.ReopenBackoff = DefaultReopenBackoff
	}
	if cfg.ReopenMaxBackoff <= 0 {
		cfg.ReopenMaxBackoff = DefaultReopenMaxBackoff
	}
	cfg.ReopenMaxBackoff = max(cfg.ReopenMaxBackoff, cfg.ReopenBackoff)
	if cfg.ReopenAttempts <= 0 {
		cfg.ReopenAttempts = DefaultReopenAttempts
	}
	return cfg, nil
}
