// Package kmsserver is the project's own AWS KMS test server: an http.Handler
// speaking the real KMS wire protocol, so tests drive it with the real
// aws-sdk-go-v2 KMS client over HTTP, like net/http/httptest in spirit.
// cmd/kms-test-server wraps it in a binary for the local stack.
//
// # Protocol
//
// Requests are POST / with Content-Type application/x-amz-json-1.1, the
// operation in X-Amz-Target (TrentService.<Operation>) and a JSON body whose
// binary fields are base64. Errors are JSON bodies {"__type":"NotFoundException",
// "message":"..."} with the same type in the X-Amzn-ErrorType header and HTTP
// 400 (500 for KMSInternalException and KeyUnavailableException, 503 for
// DependencyTimeoutException, 412 for DryRunOperationException), so the SDK
// returns its typed errors (*types.NotFoundException, ...) and treats
// ThrottlingException as a retryable throttle. SigV4 signatures are not
// verified; the region is read from the Authorization header's credential
// scope (the server's default region when absent) and the access key ID names
// the caller in AccessDeniedException messages. Every caller belongs to the
// server's default account.
//
// Implemented: CreateKey, DescribeKey, ListKeys, CreateAlias, DeleteAlias,
// ListAliases, Encrypt, Decrypt, GenerateDataKey,
// GenerateDataKeyWithoutPlaintext, ReEncrypt, EnableKeyRotation,
// DisableKeyRotation, GetKeyRotationStatus, RotateKeyOnDemand, DisableKey,
// EnableKey, ScheduleKeyDeletion, CancelKeyDeletion, PutKeyPolicy and
// GetKeyPolicy. Other KMS operations answer UnsupportedOperationException,
// unknown ones UnknownOperationException. Only symmetric encryption keys
// (SYMMETRIC_DEFAULT, origin AWS_KMS, single-Region) exist.
//
// # Terms
//
// Key: a KMS key, named by key ID (a UUID), key ARN
// (arn:aws:kms:REGION:ACCOUNT:key/ID), alias name (alias/NAME) or alias ARN
// (arn:aws:kms:REGION:ACCOUNT:alias/NAME). A bare key ID or alias name is
// looked up in the caller's account and the request's region; an ARN reaches
// a key in any account (cross-account use) but, as in AWS, only in the
// request's region: KMS keys are regional, so a client for another region
// must be used (Options.AllowCrossRegion lifts this). Management operations
// (EnableKey, PutKeyPolicy, rotation, deletion, CreateAlias's target,
// ListAliases's filter) take a key ID or key ARN only, as documented for KMS;
// unlike KMS they also accept a key ARN of another account.
//
// Backing key: one version of a key's 256-bit AES material, with a key
// material ID (64 hex digits). A key starts with one; RotateKeyOnDemand adds a
// version, and new ciphertexts use the newest while old ones keep decrypting
// with theirs. EnableKeyRotation records a schedule that is reported by
// GetKeyRotationStatus but never runs.
//
// Ciphertext blob: what Encrypt, GenerateDataKey and ReEncrypt return;
// opaque to callers, self-describing to the server. It names the key (its
// ARN) and the backing-key version, and holds AES-256-GCM ciphertext with the
// encryption context bound as additional authenticated data, so a different
// context, or any change to the blob, gives InvalidCiphertextException.
// Decrypt and ReEncrypt find the key from the blob; a KeyId (SourceKeyId for
// ReEncrypt) naming another key gives IncorrectKeyException. Layout, integers
// big-endian:
//
//	"rk" | 0x01 | uint16 N | key ARN (N bytes) | uint32 version | nonce (12) | ciphertext+tag
//
// The additional authenticated data is everything before the nonce followed
// by the canonical context: uint32 number of pairs, then for each pair in
// ascending key order uint32 len(key) | key | uint32 len(value) | value.
//
// Key policy: each key has an IAM-style policy (PutKeyPolicy and
// GetKeyPolicy, policy name "default"; a new key gets KMS's default policy,
// which allows the account's root, so every caller of the account, kms:*).
// A statement applies when its Action (a string or list, wildcards * and ?
// as in kms:ReEncrypt*, case-insensitive) or NotAction matches the
// operation's action, its Resource or NotResource (if any) matches the key
// ARN, and its Principal (if any) is "*", {"AWS": "*"}, the caller's account
// ID, account root ARN or user ARN (NotPrincipal is the reverse); the caller
// is arn:aws:iam::ACCOUNT:user/ACCESS-KEY-ID, so two access keys are two
// principals. An applicable Deny denies (AccessDeniedException "User: ARN
// is not authorized to perform: kms:ReEncryptTo on resource: KEY-ARN with
// an explicit deny in a resource-based policy"). A policy with Allow
// statements denies whatever none of them grants, as KMS does ("... because
// no resource-based policy allows the kms:ReEncryptTo action"), unless one
// of them grants an account's root (as the default policy does): that
// hands the decision to the account's IAM policies, which are not
// modelled, so everything is allowed. A policy of Deny statements only
// allows everything it does not deny. Conditions are ignored: a
// statement with a Condition applies unconditionally. ReEncrypt needs
// kms:ReEncryptFrom on the source key and kms:ReEncryptTo on the destination
// key. A new policy that would not allow the caller kms:PutKeyPolicy is
// refused (MalformedPolicyDocumentException) unless
// BypassPolicyLockoutSafetyCheck is set.
//
// Key states: Enabled; Disabled (DisableKey; cryptographic and rotation
// operations fail with DisabledException); PendingDeletion
// (ScheduleKeyDeletion, window 7 to 30 days, default 30; most operations fail
// with KMSInvalidStateException; CancelKeyDeletion leaves the key Disabled).
// When the window ends (by Options.Now) the key and its aliases are deleted.
//
// Quota: Encrypt, Decrypt, ReEncrypt, GenerateDataKey and
// GenerateDataKeyWithoutPlaintext share one request-rate quota per account and
// region (Options.RPS, SetRateLimit); above it they fail with
// ThrottlingException "Rate exceeded". Other operations are not limited.
//
// Background throttling: Options.ThrottleFraction (SetThrottleFraction)
// throttles that fraction of the cryptographic operations at random, with
// the same ThrottlingException "Rate exceeded", whatever the client's own
// rate: what a client sees when other applications spend the account's
// shared quota. Unlike the RPS cap, sending slower does not make it go away,
// which is what a client's rate control must tell apart. Each request is
// drawn independently, before the RPS cap (a request throttled at random
// takes no token); Options.ThrottleSeed makes the draws reproducible (the
// n-th cryptographic request meets the n-th draw).
//
// # Seed file
//
// A seed file creates keys at start-up, for example keys in other accounts or
// regions that tests reach by ARN:
//
//	{
//	  "keys": [
//	    {
//	      "id": "0b8c3f4e-1d2a-4c5b-9e6f-7a8b9c0d1e2f",
//	      "account": "444455556666",
//	      "region": "eu-west-1",
//	      "description": "cross-account destination",
//	      "material": "BASE64 OF 32 BYTES",
//	      "state": "Enabled",
//	      "rotation_enabled": false,
//	      "aliases": ["alias/dest"],
//	      "policy": {"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt"}]}
//	    }
//	  ]
//	}
//
// Every field is optional: id defaults to a UUID derived from account,
// region and the first alias (or the key's position in the file), so loading
// the same seed twice yields the same key; account and region to the server's
// defaults; material (standard base64 of 32 bytes, the first backing key) to
// random bytes; state (Enabled, Disabled or PendingDeletion) to Enabled;
// policy (a JSON object, or a string holding one) to the default key policy.
// Unknown fields are errors. Seed keys that already exist (from the state
// file) are left as they are.
//
// # State file
//
// With a state file the whole key store (keys, backing keys in the clear,
// aliases, policies, states) is written to it after every change, atomically
// (a temporary file in the same directory renamed over it: a killed server
// leaves the old or the new state, never a torn file; there is no fsync, so a
// power loss may lose the latest changes), and read back at start, so a
// restarted server keeps its keys. The file is created with mode 0600.
// Plaintext and key material are never logged.
//
// # In-process control
//
// Handler's methods let tests change the server while it runs: SetRateLimit,
// SetThrottleFraction, SetLatency, FailNext (the next n requests of an operation fail with a given
// error code), AddKey (a seed key at run time), and Count, Counts and
// ResetCounts (requests received per operation, to prove for instance that a
// rewrap called ReEncrypt and never Decrypt).
package kmsserver
