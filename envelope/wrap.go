package envelope

import (
	"crypto/rsa"
	"crypto/sha1"
	"crypto/subtle"
	"fmt"
	"io"
)

// WrapKeyAESGCM wraps a 32-byte data key with the AES/GCM algorithm of the
// S3 Encryption Client: a random 12-byte IV followed by AES-GCM(kek, IV,
// dataKey, AAD = cek.Binding()), 60 bytes in all. kek is a 16-, 24- or
// 32-byte AES key.
func WrapKeyAESGCM(kek []byte, dataKey *DataKey, cek ContentAlg, rand io.Reader) ([]byte, error) {
	if dataKey.Len() != DataKeySize {
		return nil, ferr("data key", ErrBadKeyLength, fmt.Sprintf("want %d bytes, got %d", DataKeySize, dataKey.Len()))
	}
	iv := make([]byte, GCMIVSize)
	if _, err := io.ReadFull(rand, iv); err != nil {
		return nil, fmt.Errorf("envelope: generate wrapping IV: %w", err)
	}
	g, err := newGCM(kek)
	if err != nil {
		return nil, wrappingKeyErr(err)
	}
	return g.Seal(iv, iv, dataKey.Bytes(), cek.Binding()), nil
}

// UnwrapKeyAESGCM reverses WrapKeyAESGCM. A wrapped key bound to another content
// algorithm than cek (AAD "115" versus "AES/GCM/NoPadding") fails with
// ErrAlgorithmMismatch; any other failure with ErrAuthentication.
func UnwrapKeyAESGCM(kek, wrapped []byte, cek ContentAlg) (*DataKey, error) {
	if len(wrapped) != AESGCMWrappedSize {
		return nil, ferr("wrapped data key", ErrBadKeyLength, fmt.Sprintf("AES/GCM-wrapped data key: want %d bytes, got %d", AESGCMWrappedSize, len(wrapped)))
	}
	g, err := newGCM(kek)
	if err != nil {
		return nil, wrappingKeyErr(err)
	}
	iv, ct := wrapped[:GCMIVSize], wrapped[GCMIVSize:]
	dk, err := g.Open(nil, iv, ct, cek.Binding())
	if err != nil {
		other := ContentCommitKey
		if cek == ContentCommitKey {
			other = ContentAESGCM
		}
		if k, err2 := g.Open(nil, iv, ct, other.Binding()); err2 == nil {
			clear(k)
			return nil, ferr("wrapped data key", ErrAlgorithmMismatch,
				fmt.Sprintf("AES/GCM-wrapped key is bound to content algorithm %q, envelope says %q (altered metadata)", other.Binding(), cek))
		}
		return nil, ferr("wrapped data key", ErrAuthentication, "AES/GCM unwrap failed (wrong wrapping key or altered wrapped key)")
	}
	return &DataKey{b: dk}, nil
}

// WrapKeyRSAOAEP wraps a 32-byte data key with RSA-OAEP-SHA1: RSA-OAEP with
// SHA-1 and MGF1-SHA1, empty label, over 0x20 || dataKey || cek.Binding().
func WrapKeyRSAOAEP(pub *rsa.PublicKey, dataKey *DataKey, cek ContentAlg, rand io.Reader) ([]byte, error) {
	if dataKey.Len() != DataKeySize {
		return nil, ferr("data key", ErrBadKeyLength, fmt.Sprintf("want %d bytes, got %d", DataKeySize, dataKey.Len()))
	}
	if pub == nil {
		return nil, ferr("wrapping key", ErrBadKeyLength, "nil RSA public key")
	}
	bind := cek.Binding()
	msg := make([]byte, 0, 1+DataKeySize+len(bind))
	msg = append(msg, byte(DataKeySize))
	msg = append(msg, dataKey.Bytes()...)
	msg = append(msg, bind...)
	defer clear(msg)
	ct, err := rsa.EncryptOAEP(sha1.New(), rand, pub, msg, nil)
	if err != nil {
		return nil, ferr("wrapping key", ErrBadKeyLength, "RSA-OAEP-SHA1: "+err.Error())
	}
	return ct, nil
}

// UnwrapKeyRSAOAEP reverses WrapKeyRSAOAEP and checks the layout: length byte 32,
// the data key, then exactly cek.Binding() (compared in constant time;
// another content algorithm fails with ErrAlgorithmMismatch).
func UnwrapKeyRSAOAEP(priv *rsa.PrivateKey, wrapped []byte, cek ContentAlg) (*DataKey, error) {
	if priv == nil {
		return nil, ferr("wrapping key", ErrBadKeyLength, "nil RSA private key")
	}
	if len(wrapped) != priv.Size() {
		return nil, ferr("wrapped data key", ErrBadKeyLength, fmt.Sprintf("RSA-OAEP-SHA1-wrapped data key: want %d bytes for this %d-bit key, got %d", priv.Size(), priv.N.BitLen(), len(wrapped)))
	}
	msg, err := rsa.DecryptOAEP(sha1.New(), nil, priv, wrapped, nil)
	if err != nil {
		return nil, ferr("wrapped data key", ErrAuthentication, "RSA-OAEP-SHA1 decryption failed (wrong private key or altered wrapped key)")
	}
	defer clear(msg)
	if len(msg) == 0 || int(msg[0]) != DataKeySize {
		n := -1
		if len(msg) > 0 {
			n = int(msg[0])
		}
		return nil, ferr("wrapped data key", ErrBadKeyLength, fmt.Sprintf("RSA-OAEP-SHA1 plaintext announces a %d-byte data key, want %d", n, DataKeySize))
	}
	rest := msg[1:]
	if len(rest) < DataKeySize {
		return nil, ferr("wrapped data key", ErrBadKeyLength, fmt.Sprintf("RSA-OAEP-SHA1 plaintext holds %d key bytes, want %d", len(rest), DataKeySize))
	}
	suffix := rest[DataKeySize:]
	if subtle.ConstantTimeCompare(suffix, cek.Binding()) != 1 {
		other := ContentCommitKey
		if cek == ContentCommitKey {
			other = ContentAESGCM
		}
		if subtle.ConstantTimeCompare(suffix, other.Binding()) == 1 {
			return nil, ferr("wrapped data key", ErrAlgorithmMismatch,
				fmt.Sprintf("RSA-wrapped key is bound to content algorithm %q, envelope says %q (altered metadata)", other.Binding(), cek))
		}
		return nil, ferr("wrapped data key", ErrAlgorithmMismatch, fmt.Sprintf("RSA-OAEP-SHA1 plaintext does not end in %q", cek.Binding()))
	}
	return NewDataKey(rest[:DataKeySize]), nil
}

// UnwrapAESGCM unwraps e's data key with kek after checking that e is
// AES/GCM-wrapped (ErrAlgorithmMismatch otherwise).
func (e *Envelope) UnwrapAESGCM(kek []byte) (*DataKey, error) {
	if e.WrapAlg != WrapAESGCM {
		return nil, ferr(e.wrapField(), ErrAlgorithmMismatch, fmt.Sprintf("envelope is wrapped with %q, not %s", truncate(string(e.WrapAlg), 40), WrapAESGCM))
	}
	k, err := UnwrapKeyAESGCM(kek, e.WrappedKey, e.CEKAlg)
	if fe, ok := err.(*FormatError); ok && fe.Field == "wrapped data key" {
		fe.Field = e.keyField()
	}
	return k, err
}

// UnwrapRSAOAEP unwraps e's data key with priv after checking that e is
// RSA-OAEP-SHA1-wrapped (ErrAlgorithmMismatch otherwise).
func (e *Envelope) UnwrapRSAOAEP(priv *rsa.PrivateKey) (*DataKey, error) {
	if e.WrapAlg != WrapRSAOAEPSHA1 {
		return nil, ferr(e.wrapField(), ErrAlgorithmMismatch, fmt.Sprintf("envelope is wrapped with %q, not %s", truncate(string(e.WrapAlg), 40), WrapRSAOAEPSHA1))
	}
	k, err := UnwrapKeyRSAOAEP(priv, e.WrappedKey, e.CEKAlg)
	if fe, ok := err.(*FormatError); ok && fe.Field == "wrapped data key" {
		fe.Field = e.keyField()
	}
	return k, err
}

func wrappingKeyErr(err error) error {
	if fe, ok := err.(*FormatError); ok {
		fe.Field = "wrapping key"
		return fe
	}
	return err
}
