// Package escrow reads and writes escrow files: a second wrapping of an
// object's data key, under a backup (escrow) key, kept beside the object so
// that losing the primary wrapping key (an HSM that died, a KMS key
// deleted) never loses the object.
//
// Terms:
//   - Primary wrapping: the wrapped data key in the object's own envelope
//     (its metadata or its instruction file KEY.instruction); what the
//     official clients read by default.
//   - Escrow key: the backup key (KMS, RSA public key, HSM) that wraps the
//     same data key a second time.
//   - Escrow file: an S3 Encryption Client instruction file at KEY +
//     suffix (DefaultSuffix, ".escrow.instruction"), byte for byte what the
//     Java client's reEncryptInstructionFile writes under a custom suffix:
//     a JSON object of strings with sorted names, no spaces, ASCII only;
//     for V2 the whole envelope (x-amz-key-v2, x-amz-iv, x-amz-matdesc,
//     x-amz-wrap-alg, x-amz-cek-alg, x-amz-tag-len), for V3 x-amz-3,
//     x-amz-w and x-amz-m or x-amz-t (x-amz-c, x-amz-d and x-amz-i stay
//     on the object). The file object carries x-amz-crypto-instr-file "".
//     A reader with a custom instruction-file suffix (Java's
//     withCustomInstructionFileSuffix) opens the object through it with
//     the escrow key alone; a reader that knows only ".instruction" opens
//     it from a copy of the file under that name (see docs/escrow.md).
//   - Valid escrow: the data key the escrow file wraps is the object's.
//     Nothing in an escrow file is trusted: it may be stale (the object
//     was re-encrypted under a fresh data key) or written by someone else.
//     Its content fields must describe the object's content (same format,
//     content algorithm, V2 IV), and its data key, once unwrapped, must
//     open the object: for V3 the key commitment x-amz-d checks it without
//     reading the body (CheckKey); for V2, whose AES-GCM content commits
//     to no key, only the body's authentication tag can (ErrNeedsBody:
//     the caller streams the body through the tag check). A fingerprint
//     or any other value stored in the escrow file could be written by
//     whoever wrote the file, so none is relied on.
//
// The package makes no network calls; the pipeline (pipeline/escrow.go)
// reads and writes the files through the commit protocol.
package escrow
