package interop

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rsa"
	"crypto/sha1"
	"errors"
	"fmt"

	matv3 "github.com/aws/amazon-s3-encryption-client-go/v3/materials"
	matv4 "github.com/aws/amazon-s3-encryption-client-go/v4/materials"
)

// The official Go clients ship only KMS keyrings. These test keyrings let
// them decrypt objects whose data key is wrapped with AES/GCM or
// RSA-OAEP-SHA1: the client still parses the envelope and decrypts the
// content itself, so what is proven is that it accepts rotator's metadata and
// content. The unwrapping here is written from FORMAT.md with the standard
// library alone, independent of package envelope.

// unwrapSpec unwraps a data key per FORMAT.md.
func unwrapSpec(alg string, wrapped []byte, cekAlg string, aesKey []byte, rsaKey *rsa.PrivateKey) ([]byte, error) {
	binding := []byte("AES/GCM/NoPadding")
	if cekAlg == "115" {
		binding = []byte("115")
	}
	switch alg {
	case "AES/GCM":
		if aesKey == nil || len(wrapped) != 60 {
			return nil, fmt.Errorf("test keyring: cannot unwrap %s", alg)
		}
		b, err := aes.NewCipher(aesKey)
		if err != nil {
			return nil, err
		}
		g, err := cipher.NewGCM(b)
		if err != nil {
			return nil, err
		}
		return g.Open(nil, wrapped[:12], wrapped[12:], binding)
	case "RSA-OAEP-SHA1":
		if rsaKey == nil {
			return nil, fmt.Errorf("test keyring: cannot unwrap %s", alg)
		}
		pt, err := rsa.DecryptOAEP(sha1.New(), nil, rsaKey, wrapped, nil)
		if err != nil {
			return nil, err
		}
		if len(pt) != 1+32+len(binding) || pt[0] != 32 || string(pt[33:]) != string(binding) {
			return nil, errors.New("test keyring: RSA plaintext is not 0x20 || key || binding")
		}
		return pt[1:33], nil
	}
	return nil, fmt.Errorf("test keyring: unexpected wrapping algorithm %q", alg)
}

type localKeyringV3 struct {
	aes []byte
	rsa *rsa.PrivateKey
}

func (k localKeyringV3) OnEncrypt(context.Context, *matv3.EncryptionMaterials) (*matv3.CryptographicMaterials, error) {
	return nil, errors.New("test keyring is decrypt-only")
}

func (k localKeyringV3) OnDecrypt(_ context.Context, m *matv3.DecryptionMaterials, dk matv3.DataKey) (*matv3.CryptographicMaterials, error) {
	key, err := unwrapSpec(m.DataKey.DataKeyAlgorithm, dk.EncryptedDataKey, m.ContentAlgorithm, k.aes, k.rsa)
	if err != nil {
		return nil, err
	}
	return &matv3.CryptographicMaterials{
		Key: key, IV: m.ContentIV, KeyringAlgorithm: m.DataKey.DataKeyAlgorithm, CEKAlgorithm: m.ContentAlgorithm,
		TagLength: m.TagLength, MaterialDescription: m.MaterialDescription, EncryptedKey: dk.EncryptedDataKey,
		KeyCommitment: m.KeyCommitment,
	}, nil
}

type localKeyringV4 struct {
	aes []byte
	rsa *rsa.PrivateKey
}

func (k localKeyringV4) OnEncrypt(context.Context, *matv4.EncryptionMaterials) (*matv4.CryptographicMaterials, error) {
	return nil, errors.New("test keyring is decrypt-only")
}

func (k localKeyringV4) OnDecrypt(_ context.Context, m *matv4.DecryptionMaterials, dk matv4.DataKey) (*matv4.CryptographicMaterials, error) {
	key, err := unwrapSpec(m.DataKey.DataKeyAlgorithm, dk.EncryptedDataKey, m.ContentAlgorithm, k.aes, k.rsa)
	if err != nil {
		return nil, err
	}
	return &matv4.CryptographicMaterials{
		Key: key, IV: m.ContentIV, KeyringAlgorithm: m.DataKey.DataKeyAlgorithm, CEKAlgorithm: m.ContentAlgorithm,
		TagLength: m.TagLength, MaterialDescription: m.MaterialDescription, EncryptedKey: dk.EncryptedDataKey,
		KeyCommitment: m.KeyCommitment,
	}, nil
}
