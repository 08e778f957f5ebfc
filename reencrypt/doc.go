// Package reencrypt re-encrypts S3 Encryption Client objects under fresh data
// keys: incident re-keying, when a data key may have been exposed and a
// rewrap (which keeps the data key) is not enough, and format upgrades (V2 to
// the key-committing V3).
//
// # Terms
//
//   - Job: one object version as classified (its state, envelope and
//     instruction file), the keyring that unwraps its data key (From) and
//     the one that wraps the new data key (To).
//   - Old and new message: the object's content is one AES-GCM message
//     (ciphertext, then the 16-byte tag). The new message has the same
//     length under a fresh data key and, for V2, a fresh IV; for V3 a fresh
//     message ID and key commitment (envelope.NewContent).
//   - Part: a byte range of the ciphertext, at least 5 MiB (S3's minimum)
//     except the last, which also carries the tag; the part size grows
//     for objects above PartSize x 10,000 so that any object S3 can store
//     has at most 10,000 parts. Each part is read with a ranged GET
//     (If-Match the ETag read at classify time, pinned to its version),
//     decrypted and re-encrypted in memory by gcmstream (ReencryptRange: the
//     plaintext only lives in the engine's chunk buffers and is cleared),
//     and uploaded as the same part of a multipart upload. Parts go in
//     parallel (PartsInFlight per object), and part buffers of all objects
//     share one memory budget (Memory): memory is bounded by in-flight parts
//     x part size whatever the object size or count.
//   - Authenticate before commit: the old tag is checked against the GHASH
//     states of every part, combined, only when the last part is read. The
//     new content becomes visible (CompleteMultipartUpload, or PutObject for
//     an object of one part, both with If-Match) only after that check
//     passed. A bad tag, a changed object or any other failure aborts the
//     upload: the object is left byte for byte as it was and no parts are
//     left behind.
//   - Checkpoint: after each part, the ledger records (ledger.Upload) the
//     upload id, the parts uploaded and their ETags, the GHASH states of the
//     parts uploaded so far in the old and new message (folded into one
//     state for the contiguous prefix, sealed under keys derived from the
//     content keys: gcmstream.Stream.MarshalPartial) and the new envelope,
//     whose data key is wrapped. Never a plaintext key. A later call for
//     the same object version in the same run (a resume after kill -9)
//     unwraps the new data key again and uploads only the missing parts:
//     earlier parts are not read again. An interrupted call (context
//     canceled) keeps its upload for that resume; any other failure aborts
//     it. A checkpoint that no longer matches the object (changed since) is
//     dropped and its upload aborted.
//   - Instruction-file objects: the object is written first (its new
//     content, and for V3 the new x-amz-c, x-amz-d and x-amz-i), then the
//     instruction file with If-Match. In between the object cannot be
//     decrypted, so a checkpoint holds the new envelope from before the
//     object write until the instruction file is written; an interrupted
//     call finishes it on the next call (Completed), and a write whose
//     response was lost is recognised by authenticating the object's
//     current content under the new key.
//   - Legacy AES-CBC content (V1, and V2 with AES/CBC/PKCS5Padding) is
//     always upgraded (to V2 AES-GCM, or V3): each part is decrypted with
//     the ciphertext block before it as IV (one more 16-byte ranged GET)
//     and sealed under the new key. CBC has no tag: the PKCS#5 padding of
//     the last block, read and checked before anything is written, gives
//     the plaintext length (the new object's x-amz-unencrypted-content-length
//     and size) and is the only check a wrong key or altered content can
//     fail. Data keys under the legacy "kms" wrapping are unwrapped with KMS
//     Decrypt (context = the material description); the other legacy
//     wrappings (AESWrap, AES/ECB, RSA PKCS#1 v1.5) are not unwrapped.
//   - Leftover and Settle: a checkpoint still in the ledger when its run
//     ends (an object given up, or changed by someone else after an
//     interruption). Settle aborts its upload and drops it, except when the
//     new content landed and only its instruction file is left to write:
//     then the checkpoint, the only copy of the new envelope, is kept.
//   - Landed: a commit write whose response was lost fails its own retry. The
//     engine then reads the object: it is ours when its metadata carries the
//     new wrapped key, or (instruction file) its content authenticates under
//     the new content key.
//
// The new object keeps the original's user metadata (envelope entries
// replaced), system headers and tags (see commit.Committer.CreateUpload).
// New data keys come from crypto/rand and are wrapped by To (for KMS, one
// Encrypt call with the object's encryption context); they are cleared once
// the new message is set up.
package reencrypt
