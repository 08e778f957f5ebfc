// Package rewrap changes the key that wraps an object's data key without
// touching the object's content.
//
// Terms:
//   - Data key (DEK): the per-object AES-256 key that encrypts the body.
//   - Wrapped key: the data key encrypted under a wrapping key; what the
//     envelope stores (type Wrapped: wrapping algorithm, bytes, material
//     description). The content algorithm travels beside it: it binds
//     AES/GCM wrapping (AAD), RSA-OAEP-SHA1 wrapping (plaintext suffix) and
//     the KMS context's aws:x-amz-cek-alg.
//   - Wrapping key: a KMS key, an HSM key reached through PKCS#11, or a local
//     AES or RSA key; named on the command line by a key spec (kms:..., pkcs11:...,
//     aes:FILE, rsa:FILE).
//   - Keyring: an opened wrapping key (Open): Wrap and Unwrap, age-style,
//     plus optional abilities found by type assertion: Recognizer (offline
//     match) and ReEncrypter (KMS ReEncrypt).
//   - Key ID: a keyring's canonical identity (Keyring.ID), what the ledger
//     records and --from is matched against: the KMS key ARN (an alias
//     resolves to its key's ARN once, at Open), the PKCS#11 key URI without
//     module or PIN (pkcs11:token=T;object=L), aes:sha256:HEX or
//     rsa:sha256:HEX for local keys. Local IDs are fingerprints that reveal
//     nothing about the key: an HMAC-SHA256 of a fixed label under the AES
//     key (AESKeyID), the SHA-256 of the RSA public key (RSAKeyID).
//   - Rewrap: unwrap with the old wrapping key and wrap with the new one. KMS to
//     KMS uses ReEncrypt, so the plaintext data key never enters the process.
//     Across regions ReEncrypt cannot reach the destination key, so the data
//     key is decrypted in the source region and encrypted in the
//     destination region.
//   - Lineage record: from key, to key and method of one rewrap; never the
//     plaintext. Methods are kms-reencrypt or UNWRAP+WRAP, e.g.
//     kms-decrypt+hsm-wrap (see MethodKMSReEncrypt).
//   - Match: whether a keyring can unwrap a wrapped key, told without a
//     network call: yes, no or unknown. KMS-wrapped keys are always unknown:
//     the blob is opaque and the official clients store no key id for
//     KMS-wrapped keys, so only a KMS call can tell. AES/GCM keys wrapped by
//     an HSM key name no key either: unknown to HSM keyrings, until a trial
//     unwrap inside the HSM tells (local AES keyrings try offline).
//   - Budget: every backend call first waits for its limiter: HSM sessions
//     (the pool's size); for KMS, every attempt waits for its region's
//     pacer (internal/awsx.Pacer, built into the client by awsx.KMS): the
//     hard cap Limits.KMSRPS, then an adaptive rate that slows down only
//     when the throttling grows with our rate (a quota we exceed), not when
//     other applications sharing the quota cause it. Throttled attempts
//     are retried there, after short jittered pauses, never by a loop of
//     our own.
//   - Systemic error: a failure every object would meet (the destination
//     key, the credentials, the configuration): the pipeline stops. Other
//     failures concern one object and go to the report (Error).
//
// # What a rewrap stores
//
// A KMS destination stores kms+context: the new ciphertext blob, with the
// user entries of the old material description (reserved entries
// aws:x-amz-cek-alg, kms_cmk_id and x-rotator-* dropped) plus
// aws:x-amz-cek-alg as the encryption context. Readers must then pass those
// user entries as their encryption context. ReEncrypt keeps the stored
// context unchanged.
//
// An HSM destination stores S3EC AES/GCM, computed inside the HSM with
// CKM_AES_GCM: a 12-byte IV (read back from the HSM) || ciphertext || 16-byte
// tag, AAD = the content algorithm's binding, 60 bytes. The material
// description is the user entries only, exactly as the official raw AES
// keyring writes it: the official clients compare a reader's encryption
// context with the whole material description, so any entry rotator added
// would break every reader that passes its context. The object stays a valid
// S3EC object that an official client with a raw AES keyring holding the
// same key material reads. Which HSM key wraps it is learned from the
// ledger (the wrapped key's fingerprint) or by a trial unwrap inside the HSM;
// objects migrated by earlier versions may carry "x-rotator-kek"
// (MatDescKEK), which is still read, and dropped by the next rewrap.
// Key-wrap mechanisms (Deps.PKCS11Mechanism = CKM_AES_KEY_WRAP_PAD) are
// refused for wrapping with a systemic CodeUnsupported error: no S3EC
// envelope can store their output (WrapPKCS11KeyWrap is read only).
//
// A local AES or RSA destination stores AES/GCM or RSA-OAEP-SHA1 with the
// user entries as material description, as the official raw keyrings do.
//
// # Key files
//
// aes: a regular file of exactly 32 raw bytes, or 64 hex digits, or the
// standard base64 of 32 bytes (44 characters), the text forms with at most
// one trailing newline; an all-zero key is refused. rsa: one PEM block, a
// PKCS#1 or PKCS#8 RSA private key (unwrap and wrap) or a PKIX public key
// (wrap only); encrypted PEM is refused; wrapping needs at least 2048 bits.
// Key bytes are cleared when Deps.Close is called and never appear in an
// error.
//
// # Plaintext data keys
//
// A data key unwrapped by a rewrap lives in an envelope.DataKey that is
// cleared (deferred) as soon as the new wrapping exists; it is never logged
// and never returned. Copies made by the AWS SDK (request bodies) and by the
// PKCS#11 library are out of this package's reach.
package rewrap
