// Package rewrap changes the key that wraps an object's data key without
// touching the object's content.
//
// Terms:
//   - Data key (DEK): the per-object AES-256 key that encrypts the body.
//   - Wrapped key: the data key encrypted under a wrapping key; what the
//     envelope stores.
//   - Wrapping key: a KMS key, an HSM key reached through PKCS#11, or a local
//     AES or RSA key; named on the command line by a key spec (kms:..., pkcs11:...,
//     aes:FILE, rsa:FILE).
//   - Rewrap: unwrap with the old wrapping key and wrap with the new one. KMS to
//     KMS uses ReEncrypt, so the plaintext data key never enters the process.
//   - Lineage record: from key, to key and method of one rewrap; never the
//     plaintext.
package rewrap
