package rewrap

import (
	"context"
	"maps"
	"strconv"

	"github.com/rotator-dev/rotator/envelope"
)

// Wrapped is a wrapped data key as an envelope stores it: the wrapping
// algorithm, the wrapped bytes and the material description (for KMS: the
// encryption context). The content algorithm that goes with it is passed
// beside it: it binds AES/GCM wrapping (AAD), RSA-OAEP-SHA1 wrapping (the
// plaintext's suffix) and the KMS context's aws:x-amz-cek-alg.
type Wrapped struct {
	Alg     envelope.WrapAlg
	Key     []byte
	MatDesc map[string]string
}

// FromEnvelope returns the wrapped data key of e and its content algorithm.
// The result shares no memory with e.
func FromEnvelope(e *envelope.Envelope) (Wrapped, envelope.ContentAlg) {
	md := maps.Clone(e.MatDesc)
	if md == nil {
		md = map[string]string{}
	}
	return Wrapped{Alg: e.WrapAlg, Key: append([]byte(nil), e.WrappedKey...), MatDesc: md}, e.CEKAlg
}

// Wrapper wraps data keys under one key.
type Wrapper interface {
	// Wrap wraps dek for content algorithm cek. userDesc holds the user
	// entries of the material description to keep (see UserEntries). A KMS
	// keyring adds aws:x-amz-cek-alg to them (its encryption context);
	// every other keyring stores them as they are, as the official raw
	// keyrings do. It never keeps dek.
	Wrap(ctx context.Context, dek *envelope.DataKey, cek envelope.ContentAlg, userDesc map[string]string) (Wrapped, error)
}

// Unwrapper unwraps data keys wrapped under one key.
type Unwrapper interface {
	// Unwrap returns the data key of w. The caller must Clear it.
	Unwrap(ctx context.Context, w Wrapped, cek envelope.ContentAlg) (*envelope.DataKey, error)
}

// Keyring is one wrapping key: a KMS key, an HSM key or a local AES or RSA
// key. Keyrings are safe for concurrent use.
type Keyring interface {
	// ID is the key's canonical identity, the same whatever spec named it:
	// what the ledger records and what --from is matched against.
	//   - KMS: the key ARN (aliases resolved at Open).
	//   - PKCS#11: the key URI without module path or PIN source
	//     (PKCS11URI.KeyURI), e.g. pkcs11:token=T;object=L.
	//   - AES: aes:sha256:HEX, HEX = HMAC-SHA256(key, "rotator aes key id v1").
	//   - RSA: rsa:sha256:HEX, HEX = SHA-256 of the public key's PKIX DER.
	// None of them reveals key material.
	ID() string
	// Kind is the kind of key.
	Kind() Kind
	Wrapper
	Unwrapper
}

// Match is what a keyring can tell, without a network call, about whether it
// can unwrap a wrapped key.
type Match int

// Matches.
const (
	// MatchNo: the keyring cannot unwrap it (another algorithm, another
	// key named in the material description, or a trial unwrap failed).
	MatchNo Match = iota
	// MatchUnknown: only a call to the backend can tell. Always the answer
	// for kms+context (the ciphertext blob is opaque, and the official
	// clients store no key id for KMS-wrapped keys), and an HSM keyring's
	// answer for AES/GCM wrapped keys that name no key (a trial unwrap
	// inside the HSM tells).
	MatchUnknown
	// MatchYes: the keyring unwraps it (checked offline: by a trial unwrap
	// with a local key, or by the MatDescKEK entry of objects migrated by
	// earlier versions naming this HSM key).
	MatchYes
)

func (m Match) String() string {
	switch m {
	case MatchNo:
		return "no"
	case MatchUnknown:
		return "unknown"
	case MatchYes:
		return "yes"
	}
	return "Match(?)"
}

// Recognizer is implemented by keyrings that can tell offline whether they
// unwrap a wrapped key (all of this package's keyrings).
type Recognizer interface {
	Recognize(w Wrapped) Match
}

// Classify reports whether k can unwrap w, without network calls: k's own
// answer if it is a Recognizer, MatchUnknown otherwise.
func Classify(k Keyring, w Wrapped) Match {
	if r, ok := k.(Recognizer); ok {
		return r.Recognize(w)
	}
	return MatchUnknown
}

// ReEncrypter is implemented by keyrings whose service moves a wrapped key to
// another key without the plaintext data key entering this process (KMS
// ReEncrypt). Rewrap uses it when the destination keyring has it.
type ReEncrypter interface {
	// CanReEncrypt reports whether ReEncrypt can take keys wrapped under
	// from (nil: whatever key the service finds in the wrapped key).
	CanReEncrypt(from Keyring) bool
	// ReEncrypt moves w to this keyring's key.
	ReEncrypt(ctx context.Context, from Keyring, w Wrapped, cek envelope.ContentAlg) (Result, error)
}

// Lineage says where a wrapped key came from and how it was moved. It never
// holds key material.
type Lineage struct {
	FromKey string // Keyring.ID of the source key (for KMS: from the service's answer)
	ToKey   string // Keyring.ID of the destination key
	Method  string // Method* constant, or UNWRAP+WRAP (e.g. "kms-decrypt+hsm-wrap")
}

// Result is the outcome of a rewrap: the new wrapping and its lineage. It
// never holds the plaintext data key.
type Result struct {
	Wrapped
	Lineage
}

// Apply returns a copy of e carrying r's wrapping; nothing else changes
// (envelope.Envelope.WithWrappedKey).
func (r Result) Apply(e *envelope.Envelope) (*envelope.Envelope, error) {
	return e.WithWrappedKey(r.Key, r.Alg, r.MatDesc)
}

// Methods recorded in Lineage.Method. A rewrap through the process is
// UNWRAP+WRAP with one name of each column:
//
//	unwrap            wrap
//	kms-decrypt       kms-encrypt
//	hsm-unwrap        hsm-wrap
//	aes-unwrap        aes-wrap
//	rsa-unwrap        rsa-wrap
//
// so a cross-region KMS rewrap is "kms-decrypt+kms-encrypt" and a migration
// to the HSM "kms-decrypt+hsm-wrap".
const (
	// MethodKMSReEncrypt: KMS ReEncrypt; the data key stayed inside KMS.
	MethodKMSReEncrypt = "kms-reencrypt"
	// MethodKMSDecryptEncrypt: KMS Decrypt in the source region and KMS
	// Encrypt in the destination region (ReEncrypt cannot cross regions).
	MethodKMSDecryptEncrypt = "kms-decrypt+kms-encrypt"
)

// UnwrapOp names the unwrap half of a method for a key of kind k
// ("kms-decrypt", "hsm-unwrap", "aes-unwrap", "rsa-unwrap").
func UnwrapOp(k Kind) string { return unwrapOp(k) }

// WrapOp names the wrap half of a method for a key of kind k
// ("kms-encrypt", "hsm-wrap", "aes-wrap", "rsa-wrap").
func WrapOp(k Kind) string { return wrapOp(k) }

func unwrapOp(k Kind) string {
	switch k {
	case KindKMS:
		return "kms-decrypt"
	case KindPKCS11:
		return "hsm-unwrap"
	}
	return k.String() + "-unwrap"
}

func wrapOp(k Kind) string {
	switch k {
	case KindKMS:
		return "kms-encrypt"
	case KindPKCS11:
		return "hsm-wrap"
	}
	return k.String() + "-wrap"
}

// Material description entries rotator reserves.
const (
	// MatDescKEK names the HSM key that wrapped the data key, as a PKCS#11
	// key URI (pkcs11:token=T;object=L). rotator no longer writes it (the
	// official clients compare a reader's encryption context with the whole
	// material description, so it broke readers that pass one); it is read
	// on objects migrated by earlier versions and dropped by every rewrap.
	MatDescKEK = "x-rotator-kek"
	// MatDescKEKMechanism names the PKCS#11 mechanism of a key wrapped with
	// WrapPKCS11KeyWrap (never present with AES/GCM).
	MatDescKEKMechanism = "x-rotator-kek-mechanism"
	// matDescKMSKeyID is the Java client's entry naming the KMS key
	// (informational; the Java v3+ clients leave it out of the comparison).
	matDescKMSKeyID = "kms_cmk_id"
)

// UserEntries returns a copy of a material description or KMS encryption
// context without the entries the clients and rotator reserve
// (aws:x-amz-cek-alg, kms_cmk_id, x-rotator-*): the entries a rewrap carries
// over to the new wrapping. Never nil.
func UserEntries(matDesc map[string]string) map[string]string {
	out := make(map[string]string, len(matDesc))
	for k, v := range matDesc {
		switch k {
		case envelope.ReservedContextKey, matDescKMSKeyID, MatDescKEK, MatDescKEKMechanism:
			continue
		}
		out[k] = v
	}
	return out
}

// Rewrap moves the wrapped data key w from the key of from to the key of to,
// without changing the data key, and returns the new wrapping with its
// lineage. It never returns the plaintext data key.
//
//   - KMS to KMS in one region: KMS ReEncrypt with the stored context as
//     source and destination context (for legacy "kms" wrapping the
//     destination context gains aws:x-amz-cek-alg); SourceKeyId is from's
//     key when from is given, so a key wrapped under another key fails with
//     IncorrectKeyException. The data key never enters the process. With from
//     nil the source key must be in to's region.
//   - KMS to KMS across regions: KMS Decrypt in from's region, KMS Encrypt in
//     to's region (MethodKMSDecryptEncrypt).
//   - Every other pair: from unwraps, to wraps, and the data key is cleared
//     at once. A KMS destination gets the user entries of the old material
//     description plus aws:x-amz-cek-alg as its context; HSM and local
//     destinations get the user entries only (MatDescKEK left by earlier
//     versions is dropped).
//
// from may be nil only for a KMS source going to a KMS destination. Errors
// are *Error.
func Rewrap(ctx context.Context, from, to Keyring, w Wrapped, cek envelope.ContentAlg) (Result, error) {
	if to == nil {
		return Result{}, &Error{Op: "wrap", Code: CodeConfig, detail: "no destination key", Systemic: true}
	}
	if err := checkInput(w, cek); err != nil {
		return Result{}, err
	}
	if w.Alg.IsKMS() {
		if re, ok := to.(ReEncrypter); ok && re.CanReEncrypt(from) {
			return re.ReEncrypt(ctx, from, w, cek)
		}
	}
	if from == nil {
		return Result{}, newError("unwrap", "", CodeNeedFromKey,
			string(w.Alg)+"-wrapped data key and no source key",
			"name the key the objects are wrapped under with --from (only KMS to KMS in one region works without it)")
	}
	dek, err := from.Unwrap(ctx, w, cek)
	if err != nil {
		return Result{}, err
	}
	defer dek.Clear()
	nw, err := to.Wrap(ctx, dek, cek, UserEntries(w.MatDesc))
	if err != nil {
		return Result{}, err
	}
	return Result{Wrapped: nw, Lineage: Lineage{
		FromKey: from.ID(),
		ToKey:   to.ID(),
		Method:  unwrapOp(from.Kind()) + "+" + wrapOp(to.Kind()),
	}}, nil
}

// checkInput rejects what no keyring could rewrap.
func checkInput(w Wrapped, cek envelope.ContentAlg) error {
	switch cek {
	case envelope.ContentAESGCM, envelope.ContentCommitKey, envelope.ContentAESCBC:
	default:
		return newError("input", "", CodeAlgorithmMismatch, "unknown content algorithm "+quote(string(cek)), "")
	}
	if len(w.Key) == 0 {
		return newError("input", "", CodeBadInput, "empty wrapped key", "")
	}
	switch {
	case w.Alg == WrapPKCS11KeyWrap, w.Alg == envelope.WrapKMS:
	case !w.Alg.Known():
		return newError("input", "", CodeUnsupported, "unknown wrapping algorithm "+quote(string(w.Alg)), "")
	case w.Alg.Legacy():
		return newError("input", "", CodeUnsupported, "legacy wrapping algorithm "+quote(string(w.Alg))+" is not unwrapped by rotator",
			"re-encrypt the object under a fresh data key instead of rewrapping it")
	}
	return nil
}

// quote quotes s for a message, cut to 40 bytes.
func quote(s string) string { return quoteN(s, 40) }

// quoteN quotes s for a message, cut to n bytes.
func quoteN(s string, n int) string {
	if len(s) > n {
		return strconv.Quote(s[:n]) + "..."
	}
	return strconv.Quote(s)
}
