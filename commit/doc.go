// Package commit performs the conditional writes of the pipeline's commit
// stage: it stores a rewrapped envelope on an S3 object without losing
// anyone else's write and without touching the object's content.
//
// # Terms
//
//   - Object: the state of one object version as read at classify time by
//     Head (or ReadInstruction): ETag, version id, size, user metadata and
//     every system header a copy onto itself must send again. A commit is
//     always guarded by that state, never by a fresh read.
//   - Guard: the precondition that makes a write conditional on the state
//     read at classify time: CopySourceIfMatch (the source still has the
//     ETag), If-Match on the destination of a copy, a multipart completion
//     or a PutObject. A guard that fails means someone else wrote the object
//     in between; the write is not made and the error wraps ErrChanged.
//   - Self-copy: CopyObject of an object onto itself with
//     MetadataDirective=REPLACE and TaggingDirective=COPY, which changes the
//     user metadata and keeps the bytes (MetadataEnvelope). It resends every
//     system header (see System headers), because REPLACE drops what is not
//     sent again. The copy source is the key's current version, named
//     without a version id: guarded by the ETag it is the same bytes as the
//     version read, and a delete marker or a newer object on the key fails
//     the copy, where a copy from a pinned version id would put the old
//     version back on top of them on servers that ignore the destination
//     If-Match (versitygw does).
//   - Multipart copy: the same change for objects above the multipart
//     threshold (CopyObject refuses sources above 5 GiB): CreateMultipartUpload
//     with metadata, headers and tags given explicitly, UploadPartCopy of
//     ranges of the object itself (each guarded by CopySourceIfMatch),
//     CompleteMultipartUpload guarded by If-Match. The upload asks for the
//     object's checksum algorithm; for a full-object CRC the completion
//     carries the object's own checksum, so S3 itself verifies that the
//     copy holds the same bytes (Options.NoMultipartChecksum turns this
//     off). Any failure aborts the upload, so no parts are left behind.
//   - Landed check: a write whose response was lost is retried by the S3
//     client and then fails its own guard (the first attempt changed the
//     ETag). After such a failure the package reads the object once more and
//     reports success when it already holds exactly what was written (the
//     new wrapped key is unique to one rewrap).
//   - Instruction file rewrite: a PutObject of the instruction file (a
//     separate small object holding the envelope as JSON) guarded by
//     If-Match, keeping the file's own metadata and headers
//     (InstructionEnvelope, WriteInstruction). The encrypted object itself
//     is not written: the envelope fields on it (V3 x-amz-c, x-amz-d,
//     x-amz-i) never change on a rewrap (CheckObjectSide verifies that).
//   - Move (move.go): NewInstruction creates an instruction file only
//     where none exists (If-None-Match: *; its own file found on a retry
//     is success, anyone else's ErrExists); DropEnvelope copies the object
//     onto itself without the envelope in its metadata (V3 keeps x-amz-c,
//     x-amz-d and x-amz-i), guarded as every self-copy; DeleteInstruction
//     removes a file a move created whose copy did not land (If-Match).
//   - Envelope fields: the user metadata names envelope.IsEnvelopeField
//     recognises. A commit replaces all of them with the new envelope's and
//     keeps every other user metadata entry unchanged.
//   - System headers: Content-Type, Cache-Control, Content-Disposition,
//     Content-Encoding, Content-Language, Expires (sent back verbatim),
//     storage class, server-side encryption (SSE-S3, SSE-KMS with key id and
//     bucket key), website redirect location and checksum algorithm. Object
//     Lock retention and legal hold are reported in Object and sent again
//     only with Options.CopyObjectLock. Objects encrypted with SSE-C cannot
//     be copied without the customer key and are refused (ErrUnsupported).
//   - Current version: the newest version of a key. Only the current
//     version can be changed in place: copying an older version onto the key
//     would make it current again over a newer write (ErrNotCurrent). Delete
//     markers are never written.
//
// # Errors
//
// Every error is an *Error naming the operation and the object and wraps a
// sentinel where one applies: ErrChanged (a guard failed: HTTP 412
// PreconditionFailed or 409 ConditionalRequestConflict), ErrGone (NoSuchKey,
// NoSuchVersion, a delete marker), ErrAccessDenied (with a hint naming the
// permissions), ErrNotCurrent, ErrUnsupported, ErrNotRewrap (the new
// envelope changes more than the wrapping), envelope.ErrMetadataTooLarge,
// and for ACLs ErrACLWouldBeDropped and ErrNoACLs (a server without object
// ACLs).
// S3 errors are classified by their API error code and HTTP status, never by
// their text. A failed write that S3 gave no precondition code for (some
// servers check a copy range before the precondition) is classified by
// reading the key's current ETag.
//
// # What the guards cannot see
//
// A metadata-only change keeps an object's ETag (on AWS too), so neither
// guard notices a concurrent metadata-only write: two rotations racing on one
// object must be kept apart by the ledger's per-object claim. Tags are not
// covered by the ETag either: the multipart copy writes the tags read just
// before it starts. Object ACLs are not copied (a copy gets the bucket's
// default; buckets with ACLs disabled, the AWS default, have none):
// ExtraGrants reads the grants a rewrite would drop, so that a caller can
// leave such objects alone (ErrACLWouldBeDropped). Nor is
// an SSE-KMS object's additional encryption context, which S3 does not
// report.
package commit
