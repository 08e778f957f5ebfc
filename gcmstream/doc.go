// Package gcmstream encrypts, decrypts and authenticates AES-GCM messages
// too large for one call of crypto/cipher's AEAD: in segments, at any
// offset, in parallel, with checkpoints. It serves the re-encryption of S3
// Encryption Client objects of many GiB: decrypt the old object from
// parallel ranged GETs, encrypt under a fresh data key into a multipart
// upload with parts in flight in parallel, and resume after a crash at a
// part boundary without reading earlier parts again.
//
// The output is byte for byte that of crypto/cipher.NewGCM (12-byte IV,
// 16-byte tag, optional additional data): for any key, IV, AAD and
// plaintext, Engine.Seal returns what cipher.AEAD.Seal returns and
// Engine.Open accepts exactly what cipher.AEAD.Open accepts. The tests check
// this against the standard library and the Wycheproof vectors.
//
// # Terms
//
//   - Message: one AES-GCM encryption: key, IV, additional data (AAD),
//     ciphertext and tag (Stream). In the S3 Encryption Client one object's
//     content is one message and its tag is the last 16 bytes of the object.
//   - Segment (part, chunk): a contiguous byte range of the message's
//     plaintext or ciphertext (they have the same length) processed on its
//     own: a multipart part, a ranged GET, a worker's chunk. A segment
//     starts at a multiple of 16 bytes; only the last segment of a message
//     may end elsewhere.
//   - Counter position: data block k (bytes 16k to 16k+15) is encrypted
//     with the keystream block AES_K(IV || k+2), the 32-bit counter
//     big-endian; J0 = IV || 1 masks the tag. Any segment can therefore be
//     encrypted or decrypted knowing only its offset (XORKeyStreamAt).
//   - GHASH state (Partial): GHASH is a polynomial in H = AES_K(0^128), so
//     the GHASH of a segment can be computed alone and combined: the value
//     of segments A then B is value(A) * H^blocks(B) xor value(B)
//     (Stream.Combine, with H^n by square and multiply). A Partial holds a
//     segment's range and value.
//   - Tag: AES_K(J0) xor GHASH(AAD, ciphertext, lengths), from the Partial
//     of the whole ciphertext (Stream.Tag, Stream.Verify).
//   - Checkpoint state: a Hasher (GHASH of the ciphertext from offset 0 up
//     to some byte) or a Partial, marshaled. It holds only the byte range,
//     the GHASH value and at most 15 ciphertext bytes after the last whole
//     block; never the key, H or plaintext. Because the GHASH value and the
//     public ciphertext together determine H, and H with one tag allows
//     forging tags, the state is sealed with AES-256-GCM under a key derived
//     from the message key and bound to the IV and AAD: a checkpoint reveals
//     nothing, and one from another object, data key or version is refused
//     (ErrCheckpoint).
//
// # Unauthenticated plaintext
//
// Decryption in segments (OpenSegment, Engine.OpenAt, Engine.OpenRange,
// XORKeyStreamAt) yields plaintext before the tag is checked. Until
// Stream.Verify over the Partials of the whole message returns nil, that
// plaintext is unauthenticated: it may be attacker-chosen, and nothing
// derived from it may be committed (a completed multipart upload, a
// rewritten envelope, a ledger entry). When Verify fails, discard it all
// (abort the multipart upload). Engine.Open verifies before returning and
// clears its output on failure, as crypto/cipher does.
//
// # Speed
//
// Pure Go GHASH is the bottleneck of a streaming GCM: the table-driven
// versions measured reach 0.3 to 1.5 GB/s per core, where crypto/cipher,
// with carry-less multiplication instructions, does the whole of GCM at
// 4-5 GB/s. This package therefore lets crypto/cipher compute GHASH through
// its public API, with no assembly of its own:
//
//   - GHASH of any data: seal an empty plaintext with the data as AAD; the
//     tag is AES_K(J0) xor (GHASH(data) xor L) * H, every term but GHASH
//     known (Stream.ghashScaled).
//   - Encryption at any counter position in one fused pass: a 16-byte
//     nonce N gives J0 = N * H^2 xor L * H, so N can be chosen to start the
//     counter at any block, and the chunk's tag yields its GHASH
//     (Stream.sealFused).
//
// Decryption needs GHASH of its input, which crypto/cipher computes in the
// same pass as counter mode only inside Open, where it stays hidden; it
// therefore takes two passes (GHASH, then counter mode, per 32 KiB piece
// while it is in cache) and gains less from parallelism than encryption.
// Engine.ReencryptRange decrypts and re-encrypts each chunk while it is in
// cache, without the plaintext leaving the engine. The package's own
// field arithmetic (combining, powers of H, tails under 128 bytes) is a
// constant-time multiplication (BearSSL's ctmul64) of about 40 ns.
// bench_test.go measures the Engine against crypto/cipher's one-shot Seal
// and Open, and the pure Go GHASH variants that were tried.
//
// # Limits
//
// The IV must be 12 bytes (every S3 Encryption Client format uses 12), the
// tag 16 bytes. A message holds at most MaxLength = 2^36 - 32 bytes (2^39 -
// 256 bits, about 64 GiB): the 32-bit counter would wrap past it; longer
// ranges are refused with ErrTooLong. New fails under
// GODEBUG=fips140=only, like crypto/cipher.NewGCM.
//
// Stream.Close clears H, its powers and the tag mask, but the AES key
// schedule and GHASH tables inside crypto/aes and crypto/cipher are
// unexported and cannot be cleared; see Close.
package gcmstream
