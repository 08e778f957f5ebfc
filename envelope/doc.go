// Package envelope reads and writes the envelopes of the Amazon S3
// Encryption Client (S3EC) byte for byte as the official clients do, and
// performs the content and data-key cryptography that needs no AWS call.
// It makes no network calls; KMS operations live elsewhere and use
// Envelope.KMSContext.
//
// # Terms
//
//   - Envelope: the fields an S3EC writes beside an encrypted object so a
//     reader can decrypt it: the wrapped data key, the algorithms, the IV or
//     message ID, the material description, and for V3 the key commitment.
//   - Data key (DEK): the random 256-bit AES key that encrypts one object's
//     content. It exists in plaintext only in memory (type DataKey).
//   - Wrapped key: the data key encrypted under a wrapping key (a KMS key,
//     an AES key or an RSA key pair), stored base64 in the envelope.
//     Rotating keys means rewrapping: replacing the wrapped key and nothing
//     else (Envelope.WithWrappedKey).
//   - Material description: a JSON object of strings stored with the
//     wrapped key. For KMS wrapping it is the KMS encryption context
//     (including "aws:x-amz-cek-alg"); for AES/RSA wrapping it describes the
//     wrapping key and is not authenticated.
//   - Placement: where the envelope lives: in the object's user metadata
//     (x-amz-meta-*), or in an instruction file.
//   - Instruction file: a separate object, KEY + ".instruction", whose body
//     is the envelope as JSON. For V3 only x-amz-3, x-amz-w and x-amz-m or
//     x-amz-t go in the file; x-amz-c, x-amz-d and x-amz-i stay in the
//     object's metadata. A complete envelope in the metadata wins.
//   - Key commitment: in V3, 28 bytes derived from the data key and the
//     message ID with HKDF-SHA512 and stored as x-amz-d; readers check it in
//     constant time before decrypting, so one ciphertext cannot decrypt
//     under two different data keys.
//
// # What it reads
//
//   - V3: x-amz-c "115" (suite ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY),
//     x-amz-w "02" (AES/GCM), "12" (kms+context), "22" (RSA-OAEP-SHA1),
//     in metadata or split with an instruction file.
//   - V2: x-amz-cek-alg AES/GCM/NoPadding with x-amz-wrap-alg kms+context,
//     AES/GCM or RSA-OAEP-SHA1, in metadata or an instruction file.
//   - Legacy, only with ParseOptions.AllowLegacy: V1 (x-amz-key, content
//     AES/CBC/PKCS5Padding), V2 with AES/CBC/PKCS5Padding content, and the
//     wrapping algorithms kms, AESWrap, AES, RSA and
//     RSA/ECB/OAEPWithSHA-256AndMGF1Padding. The package decrypts legacy
//     content but unwraps no legacy wrapped key itself.
//
// # What it writes
//
//   - V3 (suite 115) and V2 (AES/GCM/NoPadding), wrapped with kms+context,
//     AES/GCM or RSA-OAEP-SHA1, in metadata (Envelope.Metadata, the key set
//     of the official Go client) or with an instruction file
//     (Envelope.InstructionFile, the key set of the Java client).
//   - An existing V2 envelope over legacy AES/CBC content may be rewritten
//     with a new non-legacy wrapping; no AES/CBC content is ever produced.
//   - Never V1 and never a legacy wrapping algorithm (ErrReadOnly).
//
// # Cryptography
//
// Content: V2 is AES-256-GCM under x-amz-iv with the 16-byte tag appended
// and no AAD. V3 derives the content key and commitment from the data key
// with HKDF-SHA512 (salt = message ID, info = 0x00 0x73 || "DERIVEKEY" or
// "COMMITKEY") and uses AES-256-GCM with twelve 0x01 bytes as nonce and
// 0x00 0x73 as AAD. Legacy content is AES-256-CBC with PKCS#5 padding
// (decrypt only). DecryptContent and EncryptContent handle whole objects in
// memory; DeriveV3, Envelope.ContentKey, ContentIV and ContentAAD are the
// primitives for streaming.
//
// Data keys: AES/GCM wrapping is IV(12) || AES-GCM(wrapping key, data key,
// AAD = "AES/GCM/NoPadding", or "115" for V3); RSA-OAEP-SHA1 encrypts
// 0x20 || data key || the same string. Both bind the wrapped key to the
// content algorithm, so a tampered x-amz-cek-alg fails with
// ErrAlgorithmMismatch.
//
// Every error wraps a sentinel (ErrNotEncrypted, ErrMissingField, ...),
// usually inside a *FormatError naming the field and where it was found.
// Key bytes are never part of an error or of any formatted output.
package envelope
