// Package hsmpool keeps a bounded pool of PKCS#11 sessions to an HSM
// (CloudHSM in production, SoftHSM in tests).
//
// Terms:
//   - Module: the PKCS#11 shared library (C_Initialize once, C_Finalize once).
//   - Token: the HSM partition; one login per token serves every session.
//   - Session: a PKCS#11 session handle; the pool hands out at most Size of
//     them at a time (CloudHSM allows 1,024 per application).
//   - Key handle: the object handle of a key found by label, cached per
//     session.
//   - Reopen: replacing a session the HSM invalidated (session closed, device
//     removed, token not present) with back-off.
package hsmpool
