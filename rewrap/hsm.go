package rewrap

import (
	"context"
	"errors"
	"fmt"

	"github.com/miekg/pkcs11"

	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/hsmpool"
)

// WrapPKCS11KeyWrap is the wrapping algorithm rotator records for a data key
// wrapped in the HSM with a key-wrap mechanism (Deps.PKCS11Mechanism =
// CKM_AES_KEY_WRAP_PAD, RFC 5649, or CKM_AES_KEY_WRAP, RFC 3394): the
// mechanism's output (40 bytes for a 32-byte key), with MatDescKEK naming the
// HSM key and MatDescKEKMechanism the mechanism.
//
// It is NOT an S3 Encryption Client algorithm: no official client reads such
// an object, key wrap cannot bind the content algorithm as AES/GCM wrapping
// does, and envelope.Envelope.WithWrappedKey refuses to write it (the
// envelope package writes S3EC algorithms only). rotator therefore never
// writes it (Wrap refuses key-wrap mechanisms); Unwrap still reads it for
// wrappings made elsewhere. The default, CKM_AES_GCM, stores S3EC AES/GCM.
const WrapPKCS11KeyWrap envelope.WrapAlg = "x-rotator/pkcs11-key-wrap"

// hsmKeyring is a secret key in an HSM, named by label, used through a
// shared session pool.
type hsmKeyring struct {
	id    string // PKCS11URI.KeyURI
	label string
	pool  *hsmpool.Pool
}

var (
	_ Keyring    = (*hsmKeyring)(nil)
	_ Recognizer = (*hsmKeyring)(nil)
)

func (d *Deps) openHSM(ctx context.Context, spec Spec) (*hsmKeyring, error) {
	u := spec.PKCS11
	if u == nil {
		return nil, newError("open", "", CodeConfig, "pkcs11 spec without URI", "parse it with ParseSpec")
	}
	if len(u.ID) > 0 {
		return nil, newError("open", spec.String(), CodeUnsupported, "selecting the key by id= is not supported",
			"name the key by its label only (object=LABEL)")
	}
	p, err := d.pool(ctx, u)
	if err != nil {
		return nil, err
	}
	k := &hsmKeyring{id: u.KeyURI(), label: u.Object, pool: p}
	err = p.Do(ctx, func(s *hsmpool.Session) error {
		_, err := s.FindKey(k.label)
		return err
	})
	if err != nil {
		return nil, hsmError("find key", k.id, sideOpen, err)
	}
	return k, nil
}

// ID returns the key URI (no module path, no PIN source).
func (k *hsmKeyring) ID() string { return k.id }

// Kind returns KindPKCS11.
func (k *hsmKeyring) Kind() Kind { return KindPKCS11 }

// Recognize tells what it can offline. An AES/GCM wrapped key carries no
// key name (Wrap writes none), so it is MatchUnknown: only a trial unwrap
// inside the HSM can tell (the pipeline does one when the ledger does not
// know the key). Objects migrated by earlier versions carry MatDescKEK: the
// entry naming this key is MatchYes, naming another key MatchNo. A
// WrapPKCS11KeyWrap key made elsewhere is MatchYes when MatDescKEK names
// this key and MatDescKEKMechanism the pool's mechanism. Anything else is
// MatchNo.
func (k *hsmKeyring) Recognize(w Wrapped) Match {
	named, ok := w.MatDesc[MatDescKEK]
	switch w.Alg {
	case envelope.WrapAESGCM:
		switch {
		case len(w.Key) != envelope.AESGCMWrappedSize:
			return MatchNo
		case !ok:
			return MatchUnknown
		case named == k.id:
			return MatchYes
		}
	case WrapPKCS11KeyWrap:
		if ok && named == k.id && w.MatDesc[MatDescKEKMechanism] == mechanismName(k.pool.Mechanism()) {
			return MatchYes
		}
	}
	return MatchNo
}

// Wrap wraps dek inside the HSM with CKM_AES_GCM (the default). The result
// is S3EC AES/GCM: a 12-byte IV (read back from the HSM, which may choose its
// own) || ciphertext || 16-byte tag, AAD = cek.Binding(). The material
// description is the user entries of userDesc (UserEntries) and nothing
// else: nothing names the HSM key, because the official clients
// compare a reader's encryption context with the whole material
// description (an extra entry would break every reader that passes one).
// Which HSM key wraps an object is found by the ledger (the wrapped key's
// fingerprint) or a trial unwrap inside the HSM (Recognize says
// MatchUnknown). A key-wrap mechanism (Deps.PKCS11Mechanism =
// CKM_AES_KEY_WRAP_PAD or CKM_AES_KEY_WRAP) is refused before any HSM call
// with a systemic CodeUnsupported error: its output (WrapPKCS11KeyWrap)
// cannot be stored in an S3EC envelope.
func (k *hsmKeyring) Wrap(ctx context.Context, dek *envelope.DataKey, cek envelope.ContentAlg, userDesc map[string]string) (Wrapped, error) {
	if dek.Len() != envelope.DataKeySize {
		return Wrapped{}, newError("hsm wrap", k.id, CodeBadInput, fmt.Sprintf("data key is %d bytes, want %d", dek.Len(), envelope.DataKeySize), "")
	}
	mech := k.pool.Mechanism()
	md := UserEntries(userDesc)
	if mech != pkcs11.CKM_AES_GCM {
		return Wrapped{}, &Error{Op: "hsm wrap", Key: k.id, Code: CodeUnsupported, Systemic: true,
			detail: "the pool's mechanism " + mechanismName(mech) + " gives a wrapping no S3 Encryption Client envelope can store",
			Hint:   "wrap with CKM_AES_GCM (the default): the result is S3EC AES/GCM, which official clients read given the key"}
	}
	var iv, ct []byte
	err := k.pool.Do(ctx, func(s *hsmpool.Session) error {
		var err error
		iv, ct, err = s.EncryptGCM(k.label, nil, dek.Bytes(), cek.Binding())
		return err
	})
	if err != nil {
		return Wrapped{}, hsmError("encrypt", k.id, sideDest, err)
	}
	if len(iv) != envelope.GCMIVSize || len(ct) != envelope.DataKeySize+envelope.TagSize {
		return Wrapped{}, &Error{Op: "hsm encrypt", Key: k.id, Code: CodeHSMError, Systemic: true,
			detail: fmt.Sprintf("the HSM returned a %d-byte IV and %d bytes of ciphertext and tag, want %d and %d", len(iv), len(ct), envelope.GCMIVSize, envelope.DataKeySize+envelope.TagSize)}
	}
	blob := make([]byte, 0, envelope.AESGCMWrappedSize)
	blob = append(append(blob, iv...), ct...)
	return Wrapped{Alg: envelope.WrapAESGCM, Key: blob, MatDesc: md}, nil
}

// Unwrap unwraps w inside the HSM. A material description naming another
// HSM key fails without an HSM call (CodeNotFromKey).
func (k *hsmKeyring) Unwrap(ctx context.Context, w Wrapped, cek envelope.ContentAlg) (*envelope.DataKey, error) {
	if named, ok := w.MatDesc[MatDescKEK]; ok && named != k.id {
		return nil, newError("hsm unwrap", k.id, CodeNotFromKey,
			fmt.Sprintf("the material description names HSM key %s", quoteN(named, 200)),
			"the object is wrapped under another HSM key: leave it, or name that key with --from")
	}
	var pt []byte
	switch w.Alg {
	case envelope.WrapAESGCM:
		if len(w.Key) != envelope.AESGCMWrappedSize {
			return nil, newError("hsm decrypt", k.id, CodeBadInput,
				fmt.Sprintf("AES/GCM-wrapped key is %d bytes, want %d", len(w.Key), envelope.AESGCMWrappedSize), "")
		}
		iv, ct := w.Key[:envelope.GCMIVSize], w.Key[envelope.GCMIVSize:]
		var mismatch bool
		err := k.pool.Do(ctx, func(s *hsmpool.Session) error {
			var err error
			pt, err = s.DecryptGCM(k.label, iv, ct, cek.Binding())
			if errors.Is(err, hsmpool.ErrAuthentication) {
				// Tell a key bound to the other content algorithm
				// (altered x-amz-cek-alg) from a wrong key, as
				// envelope.UnwrapKeyAESGCM does.
				if other, err2 := s.DecryptGCM(k.label, iv, ct, otherBinding(cek)); err2 == nil {
					clear(other)
					mismatch = true
				}
			}
			return err
		})
		if mismatch {
			return nil, newError("hsm decrypt", k.id, CodeAlgorithmMismatch,
				fmt.Sprintf("the wrapped key is bound to content algorithm %s, the envelope says %s", quote(string(otherBinding(cek))), quote(string(cek))),
				"the envelope's metadata was altered")
		}
		if err != nil {
			return nil, hsmError("decrypt", k.id, sideSource, err)
		}
	case WrapPKCS11KeyWrap:
		mech := mechanismName(k.pool.Mechanism())
		if got := w.MatDesc[MatDescKEKMechanism]; got != mech {
			return nil, newError("hsm unwrap", k.id, CodeAlgorithmMismatch,
				fmt.Sprintf("the key was wrapped with %s, the pool uses %s", quote(got), mech),
				"open the key with Deps.PKCS11Mechanism set to the mechanism recorded in "+MatDescKEKMechanism)
		}
		err := k.pool.Do(ctx, func(s *hsmpool.Session) error {
			var err error
			pt, err = s.UnwrapDataKey(k.label, w.Key, nil)
			return err
		})
		if err != nil {
			return nil, hsmError("unwrap", k.id, sideSource, err)
		}
	default:
		return nil, newError("hsm unwrap", k.id, CodeAlgorithmMismatch,
			fmt.Sprintf("the data key is wrapped with %s, not by an HSM key", quote(string(w.Alg))),
			"name the key the objects are wrapped under with --from")
	}
	defer clear(pt)
	if len(pt) != envelope.DataKeySize {
		return nil, newError("hsm unwrap", k.id, CodeBadInput, fmt.Sprintf("the unwrapped key is %d bytes, want %d", len(pt), envelope.DataKeySize), "")
	}
	return envelope.NewDataKey(pt), nil
}

// otherBinding returns the binding of the content algorithm family cek is
// not in ("115" for V2's, "AES/GCM/NoPadding" for V3's).
func otherBinding(cek envelope.ContentAlg) []byte {
	if cek == envelope.ContentCommitKey {
		return envelope.ContentAESGCM.Binding()
	}
	return envelope.ContentCommitKey.Binding()
}
