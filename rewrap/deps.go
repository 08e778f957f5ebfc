package rewrap

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/miekg/pkcs11"

	"github.com/rotator-dev/rotator/hsmpool"
	"github.com/rotator-dev/rotator/internal/awsx"
)

// Limits are the request budgets of the backends. Every attempt of a KMS
// call (retries included) waits for its region's pacer first (an
// internal/awsx.Pacer: this hard cap, then the adaptive rate); the HSM
// budget is the session pool's size (Deps.PKCS11PoolSize): at most that
// many HSM operations run at once.
type Limits struct {
	// KMSRPS is the most KMS requests per second this process sends to one
	// region, retries included (the KMS quota is per account and region:
	// 10,000 rps by default, shared by everything the account runs there).
	// Zero or less means no cap. Below it, the pacer finds the rate the
	// quota allows by itself: it slows down when throttling grows with
	// its rate, and only retries throttles that other applications cause
	// (see internal/awsx).
	KMSRPS float64
	// KMSBurst is the hard cap's bucket size (default: one second's worth,
	// at least 1).
	KMSBurst int
}

// Environment variables that supply PKCS#11 defaults (the local stack's
// .stack/env sets them).
const (
	EnvPKCS11Module  = "ROTATOR_PKCS11_MODULE"
	EnvPKCS11PINFile = "ROTATOR_PKCS11_PIN_FILE"
)

// Deps holds what keyrings share: the AWS configuration and one KMS client
// and limiter per region, one hsmpool.Pool per module, token and PIN source,
// and the local keys opened (cleared by Close). Set the exported fields
// before the first Open and do not change them afterwards; a Deps is safe for
// concurrent use and must not be copied after first use.
type Deps struct {
	// AWS is the base AWS configuration (internal/awsx.Load). Its Region
	// is the region of KMS specs that are not ARNs; ARNs use their own
	// region. Each region's client gets its own pacer and retryer
	// (awsx.KMS), whatever AWS.Retryer says.
	AWS aws.Config
	// Limits are the request budgets.
	Limits Limits
	// KMSMaxAttempts and KMSMaxBackoff shape the retries of KMS calls
	// (awsx.PacerOptions: defaults 10 attempts, twice as many when
	// throttled, and 20s).
	KMSMaxAttempts int
	KMSMaxBackoff  time.Duration
	// Slots, when set, bound the KMS requests in flight together with the
	// S3 requests of the same run (awsx.Slots).
	Slots *awsx.Slots

	// PKCS11Module is the PKCS#11 library for pkcs11: specs without
	// module-path (default: $ROTATOR_PKCS11_MODULE).
	PKCS11Module string
	// PKCS11PINSource is the PIN source (file:/path or env:NAME) for specs
	// without pin-source (default: file:$ROTATOR_PKCS11_PIN_FILE).
	PKCS11PINSource string
	// PKCS11PoolSize is the session budget of each pool (default
	// hsmpool.DefaultSize).
	PKCS11PoolSize int
	// PKCS11Mechanism is how HSM keys wrap data keys: pkcs11.CKM_AES_GCM
	// (the default, and the only one that gives S3EC AES/GCM objects the
	// official clients can read). pkcs11.CKM_AES_KEY_WRAP_PAD only unwraps
	// WrapPKCS11KeyWrap keys made elsewhere: wrapping with it is refused,
	// since no S3EC envelope can store the result.
	PKCS11Mechanism uint
	// PKCS11AcquireTimeout bounds the wait for a free HSM session (default
	// hsmpool.DefaultAcquireTimeout).
	PKCS11AcquireTimeout time.Duration

	mu      sync.Mutex
	closed  bool
	regions map[string]*kmsRegion
	pools   map[string]*hsmpool.Pool
	locals  []interface{ clear() }
}

// kmsRegion is one region's KMS client, paced by its own pacer: the quota
// is per account and region.
type kmsRegion struct {
	name   string
	client kmsAPI
}

// kmsAPI is the part of the KMS client keyrings use.
type kmsAPI interface {
	Encrypt(context.Context, *kms.EncryptInput, ...func(*kms.Options)) (*kms.EncryptOutput, error)
	Decrypt(context.Context, *kms.DecryptInput, ...func(*kms.Options)) (*kms.DecryptOutput, error)
	ReEncrypt(context.Context, *kms.ReEncryptInput, ...func(*kms.Options)) (*kms.ReEncryptOutput, error)
	DescribeKey(context.Context, *kms.DescribeKeyInput, ...func(*kms.Options)) (*kms.DescribeKeyOutput, error)
}

var _ kmsAPI = (*kms.Client)(nil)

// Open returns the keyring of spec, built with (and sharing) what d holds:
//
//   - kms: the key is resolved once with DescribeKey (an alias to its key's
//     ARN) and must be an enabled symmetric encryption key.
//   - pkcs11: the pool of the spec's module and token is opened (or shared)
//     and the key looked up by label.
//   - aes, rsa: the key file is read and checked strictly (see the package
//     documentation).
//
// Errors are *Error, all Systemic.
func Open(ctx context.Context, spec Spec, d *Deps) (Keyring, error) {
	if d == nil {
		return nil, &Error{Op: "open", Key: spec.String(), Code: CodeConfig, detail: "nil Deps", Systemic: true}
	}
	d.mu.Lock()
	closed := d.closed
	d.mu.Unlock()
	if closed {
		return nil, &Error{Op: "open", Key: spec.String(), Code: CodeClosed, detail: "Deps closed", Systemic: true}
	}
	var k Keyring
	var err error
	switch spec.Kind {
	case KindKMS:
		k, err = d.openKMS(ctx, spec)
	case KindPKCS11:
		k, err = d.openHSM(ctx, spec)
	case KindAES:
		var a *aesKeyring
		if a, err = openAES(spec.Path); err == nil {
			d.track(a)
			k = a
		}
	case KindRSA:
		var r *rsaKeyring
		if r, err = openRSA(spec.Path); err == nil {
			d.track(r)
			k = r
		}
	default:
		err = &Error{Op: "open", Code: CodeConfig, detail: "empty key spec", Hint: "parse it with ParseSpec"}
	}
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.Systemic = true
			if e.Key == "" {
				e.Key = spec.String()
			}
		}
		return nil, err
	}
	return k, nil
}

func (d *Deps) track(l interface{ clear() }) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.locals = append(d.locals, l)
}

// HSMPools returns the HSM session pools opened so far (none once d is
// closed), for their Stats. A nil Deps has none.
func (d *Deps) HSMPools() []*hsmpool.Pool {
	if d == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	pools := make([]*hsmpool.Pool, 0, len(d.pools))
	for _, p := range d.pools {
		pools = append(pools, p)
	}
	return pools
}

// Close closes the HSM pools and clears the local keys. Keyrings opened with
// d stop working. Close is idempotent.
func (d *Deps) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	pools, locals := d.pools, d.locals
	d.pools, d.locals = nil, nil
	d.mu.Unlock()
	for _, l := range locals {
		l.clear()
	}
	var errs []error
	for _, p := range pools {
		if err := p.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// region returns the client of a region, creating it (and its pacer) once.
func (d *Deps) region(name string) (*kmsRegion, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, &Error{Op: "open", Code: CodeClosed, detail: "Deps closed"}
	}
	if r := d.regions[name]; r != nil {
		return r, nil
	}
	pacer := awsx.NewPacer(awsx.PacerOptions{
		RPS:         d.Limits.KMSRPS,
		Burst:       d.Limits.KMSBurst,
		MaxAttempts: d.KMSMaxAttempts,
		MaxBackoff:  d.KMSMaxBackoff,
	})
	client := awsx.KMS(d.AWS, pacer, func(o *kms.Options) {
		o.Region = name
		o.APIOptions = append(o.APIOptions, d.Slots.Middleware)
	})
	r := &kmsRegion{name: name, client: client}
	if d.regions == nil {
		d.regions = map[string]*kmsRegion{}
	}
	d.regions[name] = r
	return r, nil
}

// pool returns the pool for a module, token and PIN source, opening it once.
func (d *Deps) pool(ctx context.Context, u *PKCS11URI) (*hsmpool.Pool, error) {
	module := u.ModulePath
	if module == "" {
		module = d.PKCS11Module
	}
	if module == "" {
		module = os.Getenv(EnvPKCS11Module)
	}
	if module == "" {
		return nil, newError("open", "", CodeConfig, "no PKCS#11 module",
			"add ?module-path=/path/to/lib.so to the spec, or set "+EnvPKCS11Module+" (SoftHSM: /usr/lib/softhsm/libsofthsm2.so, CloudHSM: /opt/cloudhsm/lib/libcloudhsm_pkcs11.so)")
	}
	if canon, err := filepath.EvalSymlinks(module); err == nil {
		module = canon
	}
	pinSource := u.PINSource
	if pinSource == "" {
		pinSource = d.PKCS11PINSource
	}
	if pinSource == "" {
		if f := os.Getenv(EnvPKCS11PINFile); f != "" {
			pinSource = "file:" + f
		}
	}
	if pinSource == "" {
		return nil, newError("open", "", CodeConfig, "no PIN source",
			"add ?pin-source=file:/path to the spec, or set "+EnvPKCS11PINFile)
	}
	cfg := hsmpool.Config{
		ModulePath:     module,
		TokenLabel:     u.Token,
		Size:           d.PKCS11PoolSize,
		Mechanism:      d.PKCS11Mechanism,
		AcquireTimeout: d.PKCS11AcquireTimeout,
	}
	if u.Serial != "" {
		return nil, newError("open", "", CodeUnsupported, "selecting the token by serial= is not supported", "name the token by token=LABEL or slot-id=N")
	}
	if u.SlotID != "" {
		n, err := strconv.ParseUint(u.SlotID, 10, 0)
		if err != nil {
			return nil, newError("open", "", CodeConfig, "slot-id="+quote(u.SlotID)+" is not a number", "")
		}
		slot := uint(n)
		cfg.Slot = &slot
	}
	key := strings.Join([]string{module, u.Token, u.SlotID, pinSource, strconv.FormatUint(uint64(d.PKCS11Mechanism), 16)}, "\x00")

	d.mu.Lock()
	defer d.mu.Unlock() // opening under the lock: a second Open waits and shares
	if d.closed {
		return nil, &Error{Op: "open", Code: CodeClosed, detail: "Deps closed"}
	}
	if p := d.pools[key]; p != nil {
		return p, nil
	}
	pin, err := hsmpool.ReadPIN(pinSource)
	if err != nil {
		return nil, newError("open", "", CodeConfig, err.Error(), "")
	}
	cfg.PIN = pin
	p, err := hsmpool.Open(ctx, cfg)
	pin.Clear()
	if err != nil {
		e := hsmError("open", u.KeyURI(), sideOpen, err)
		if e.Code == CodeLogin {
			e.Hint = "check the PIN in " + pinSource + "; repeated failures can lock the HSM user"
		}
		return nil, e
	}
	if d.pools == nil {
		d.pools = map[string]*hsmpool.Pool{}
	}
	d.pools[key] = p
	return p, nil
}

// mechanismName names a PKCS#11 mechanism for material descriptions and
// messages.
func mechanismName(m uint) string {
	switch m {
	case pkcs11.CKM_AES_GCM:
		return "CKM_AES_GCM"
	case pkcs11.CKM_AES_KEY_WRAP:
		return "CKM_AES_KEY_WRAP"
	case pkcs11.CKM_AES_KEY_WRAP_PAD:
		return "CKM_AES_KEY_WRAP_PAD"
	}
	return fmt.Sprintf("0x%X", m)
}
