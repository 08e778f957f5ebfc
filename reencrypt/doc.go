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
//     an object of one part with its envelope in the metadata, both with
//     If-Match) only after that check passed.
//   - Intent: one re-encryption between Begin and the end of its writes:
//     the new envelope (its data key wrapped under To) and the checkpoint.
//     Begin unwraps the old data key, checks the object's size against the
//     length its envelope records, makes and wraps the new data key; it
//     writes nothing. The caller (the commit protocol, package pipeline)
//     records the intent before Write, and decides from the object, never
//     from an error, whether the writes landed (Content).
//   - Checkpoint (Intent.State, kept in the ledger): the upload id, the
//     parts uploaded and their ETags, the GHASH states of the parts uploaded
//     so far in the old and new message (folded into one state for the
//     contiguous prefix, sealed under keys derived from the content keys:
//     gcmstream.Stream.MarshalPartial), the new envelope (data key wrapped),
//     and the phase. Never a plaintext key.
//   - Phase: uploading (the completion was never sent: the object is as it
//     was, and Write goes on after the last part recorded, reading no
//     earlier part again), completing (recorded before the completion is
//     sent: only the object can tell whether it landed; if it did not, Write
//     sends it again with the same parts), completed (instruction-file
//     objects: the content landed, the instruction file is left to write,
//     which needs neither the old nor the new data key).
//   - Instruction-file objects: the content is always written as a
//     multipart upload, even when small: after Abort nothing of the intent
//     can land, so an object still holding its old content proves the
//     content did not land. Then the instruction file is written (If-Match).
//   - Content (evidence): whether an object holds the intent's new content,
//     its old one, or someone else's: the new wrapped key in the metadata;
//     the V3 message id; the ETag the completed upload must have (MD5 of the
//     parts' MD5s and "-N", when the parts' ETags are MD5s); the source's
//     ETag, version id and size; last, the content's tag under the new data
//     key (read back in parts, holding one buffer of the budget at a time).
//   - Abort and Orphans: Abort gives an intent up (its upload and any other
//     upload on the key created since the intent began, which a
//     CreateMultipartUpload whose response was lost can leave); Orphans
//     aborts only the others, once the content landed.
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
//   - Memory budget: part buffers of all objects share one budget
//     (Engine.Memory); no holder takes a second buffer while it holds one,
//     and every wait for memory ends with its context (PeakMemory reports
//     the most ever held).
//
// The new object keeps the original's user metadata (envelope entries
// replaced), system headers and tags (see commit.Committer.CreateUpload).
// New data keys come from crypto/rand and are wrapped by To (for KMS, one
// Encrypt call with the object's encryption context); they are cleared once
// the new message is set up.
package reencrypt
