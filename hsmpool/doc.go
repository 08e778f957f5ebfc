// Package hsmpool keeps a bounded pool of PKCS#11 sessions to an HSM
// (CloudHSM in production, SoftHSM in tests).
//
// Terms:
//   - Module: the PKCS#11 shared library (C_Initialize once, C_Finalize once).
//     PKCS#11 state is per process, so every Pool of a process on one
//     library shares one module, counted: the first pool initialises it, the
//     last to close finalises it (unless other code of the process
//     initialised it first, in which case the package never finalises it).
//   - Token: the HSM partition; one login per token serves every session.
//     Pools of one process on one token share that login: the first logs
//     in, the others get CKR_USER_ALREADY_LOGGED_IN (success, once their PIN
//     is checked against the first one's), the last to close logs out.
//   - Session: a PKCS#11 session handle; the pool hands out at most Size of
//     them at a time (CloudHSM allows 1,024 per application).
//   - Budget: Size, the number of sessions a pool may hold open and lend out
//     at once. It is the HSM concurrency of the process for that pool: run
//     Size HSM workers; more only wait in Acquire.
//   - Lease: a *Session, a session lent out by Acquire or Do until Release.
//   - Key handle: the object handle of a key found by label, cached per
//     session.
//   - Discard: dropping a session the HSM invalidated (operation error
//     CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED, CKR_DEVICE_REMOVED,
//     CKR_TOKEN_NOT_PRESENT or CKR_USER_NOT_LOGGED_IN, or a failed probe).
//   - Reopen: replacing a session the HSM invalidated (session closed, device
//     removed, token not present) with back-off, logging in again if the
//     token was logged out. Key operations have no side effects, so a key
//     operation that lost its session is retried once on the new one, inside
//     the same lease; the caller does not see the loss.
//   - Probe: C_GetSessionInfo on an idle session, every HealthInterval and
//     before lending out a session idle for longer.
//   - Quirks: a module's documented departures from PKCS#11 that the pool
//     works around, chosen per module from its C_GetInfo (knownQuirks in
//     quirks.go) and off for any module not in the table. SoftHSM's one:
//     it reports a bad GCM tag or a failed unwrap as CKR_GENERAL_ERROR, so
//     for SoftHSM that code from an integrity check means ErrAuthentication.
//     On any other module (CloudHSM included, until checked) it is what the
//     standard says, a failure of the module, never a per-object
//     authentication failure.
//
// Operations: AES-GCM (EncryptGCM, DecryptGCM; byte for byte Go's
// crypto/cipher layout, ciphertext || tag), RFC 5649 key wrap (WrapKeyPad,
// UnwrapKeyPad), data-key protection with the configured mechanism
// (WrapDataKey, UnwrapDataKey), and key management for tests, setup and the
// demo (GenerateAESKey, FindKey, DestroyKey).
//
// Secrets: the PIN comes from a file or an environment variable (ReadPIN),
// prints as **redacted**, and the pool's copy is cleared by Close. Plaintext
// data keys are never logged (the package does not log at all) and the
// package makes no Go copies of them. miekg/pkcs11 copies PINs, attribute
// values and plaintexts through C buffers that it frees without zeroing;
// that is outside this package's reach.
package hsmpool
