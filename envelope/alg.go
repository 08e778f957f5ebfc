package envelope

import "fmt"

// Format is an envelope format version of the S3 Encryption Client.
type Format int

// Format versions. The zero Format is invalid.
const (
	// V1: x-amz-key, AES/CBC content. Read only.
	V1 Format = iota + 1
	// V2: x-amz-key-v2, AES/GCM content (or legacy AES/CBC).
	V2
	// V3: compressed x-amz-c/3/w/m/t/d/i names, key-committing suite 115.
	V3
)

func (f Format) String() string {
	switch f {
	case V1:
		return "V1"
	case V2:
		return "V2"
	case V3:
		return "V3"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// Placement says where an envelope is stored.
type Placement int

// Placements. The zero Placement is PlacementMetadata.
const (
	// PlacementMetadata: the envelope is in the object's user metadata.
	PlacementMetadata Placement = iota
	// PlacementInstructionFile: the envelope is (for V3: mostly) in a
	// separate instruction file object.
	PlacementInstructionFile
)

func (p Placement) String() string {
	switch p {
	case PlacementMetadata:
		return "object metadata"
	case PlacementInstructionFile:
		return "instruction file"
	}
	return fmt.Sprintf("Placement(%d)", int(p))
}

// WrapAlg is a data-key wrapping algorithm by its V1/V2 wire name
// (x-amz-wrap-alg). V3 stores it as a two-digit code (see V3Code).
type WrapAlg string

// Wrapping algorithms.
const (
	// WrapKMSContext: KMS ciphertext blob under an encryption context that
	// includes aws:x-amz-cek-alg. V3 code "12".
	WrapKMSContext WrapAlg = "kms+context"
	// WrapAESGCM: 12-byte IV || AES-GCM(wrapping key, data key). V3 code "02".
	WrapAESGCM WrapAlg = "AES/GCM"
	// WrapRSAOAEPSHA1: RSA-OAEP (SHA-1, MGF1-SHA1). V3 code "22".
	WrapRSAOAEPSHA1 WrapAlg = "RSA-OAEP-SHA1"

	// Legacy, read only (V1/V2, ParseOptions.AllowLegacy).

	// WrapKMS: KMS ciphertext blob, context = the material description.
	WrapKMS WrapAlg = "kms"
	// WrapAESWrap: RFC 3394 AES key wrap.
	WrapAESWrap WrapAlg = "AESWrap"
	// WrapAES: AES/ECB/PKCS5Padding (V1 encryption-only mode).
	WrapAES WrapAlg = "AES"
	// WrapRSA: RSA PKCS#1 v1.5 (V1 encryption-only mode).
	WrapRSA WrapAlg = "RSA"
	// WrapRSAOAEPSHA256: RSA-OAEP with SHA-256.
	WrapRSAOAEPSHA256 WrapAlg = "RSA/ECB/OAEPWithSHA-256AndMGF1Padding"
)

// V3 codes for x-amz-w.
const (
	V3CodeAESGCM      = "02"
	V3CodeKMSContext  = "12"
	V3CodeRSAOAEPSHA1 = "22"
)

// Known reports whether w is a wrapping algorithm the official clients define.
func (w WrapAlg) Known() bool {
	switch w {
	case WrapKMSContext, WrapAESGCM, WrapRSAOAEPSHA1,
		WrapKMS, WrapAESWrap, WrapAES, WrapRSA, WrapRSAOAEPSHA256:
		return true
	}
	return false
}

// Legacy reports whether w is a read-only legacy wrapping algorithm.
func (w WrapAlg) Legacy() bool {
	switch w {
	case WrapKMS, WrapAESWrap, WrapAES, WrapRSA, WrapRSAOAEPSHA256:
		return true
	}
	return false
}

// IsKMS reports whether the wrapped key is a KMS ciphertext blob whose
// encryption context is the envelope's material description.
func (w WrapAlg) IsKMS() bool { return w == WrapKMSContext || w == WrapKMS }

// V3Code returns the x-amz-w code of w, or false when V3 cannot express it.
func (w WrapAlg) V3Code() (string, bool) {
	switch w {
	case WrapAESGCM:
		return V3CodeAESGCM, true
	case WrapKMSContext:
		return V3CodeKMSContext, true
	case WrapRSAOAEPSHA1:
		return V3CodeRSAOAEPSHA1, true
	}
	return "", false
}

// WrapAlgFromV3Code maps an x-amz-w code to its wrapping algorithm.
func WrapAlgFromV3Code(code string) (WrapAlg, bool) {
	switch code {
	case V3CodeAESGCM:
		return WrapAESGCM, true
	case V3CodeKMSContext:
		return WrapKMSContext, true
	case V3CodeRSAOAEPSHA1:
		return WrapRSAOAEPSHA1, true
	}
	return "", false
}

// ContentAlg is a content encryption algorithm by its wire name
// (x-amz-cek-alg in V1/V2, x-amz-c in V3).
type ContentAlg string

// Content algorithms.
const (
	// ContentAESGCM: AES-256-GCM, 12-byte IV, 16-byte tag appended, no AAD
	// (suite ALG_AES_256_GCM_IV12_TAG16_NO_KDF). V2.
	ContentAESGCM ContentAlg = "AES/GCM/NoPadding"
	// ContentAESCBC: AES-256-CBC with PKCS#5 padding, 16-byte IV. Legacy,
	// decrypt only (V1, V2).
	ContentAESCBC ContentAlg = "AES/CBC/PKCS5Padding"
	// ContentCommitKey: suite 115, ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY.
	// V3.
	ContentCommitKey ContentAlg = "115"
)

// Legacy reports whether c is the read-only legacy content algorithm.
func (c ContentAlg) Legacy() bool { return c == ContentAESCBC }

// Binding returns the bytes that tie a wrapped data key to the content
// algorithm: the AAD of AES/GCM key wrapping and the suffix inside the
// RSA-OAEP-SHA1 plaintext. It is ASCII "115" for suite 115 and
// "AES/GCM/NoPadding" for everything else (as the Java client does).
func (c ContentAlg) Binding() []byte {
	if c == ContentCommitKey {
		return []byte("115")
	}
	return []byte("AES/GCM/NoPadding")
}

// Lengths fixed by the formats.
const (
	DataKeySize       = 32 // AES-256 data key
	GCMIVSize         = 12 // V2 content IV and AES/GCM wrapping IV
	CBCIVSize         = 16 // legacy content IV
	TagSize           = 16 // AES-GCM tag appended to the content
	TagLenBits        = 128
	MessageIDSize     = 28 // V3 x-amz-i
	CommitmentSize    = 28 // V3 x-amz-d
	AESGCMWrappedSize = GCMIVSize + DataKeySize + TagSize
)

// ReservedContextKey is the KMS encryption context entry the clients add
// (and check) with the content algorithm as its value.
const ReservedContextKey = "aws:x-amz-cek-alg"
