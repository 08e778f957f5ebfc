package rewrap

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
	"github.com/miekg/pkcs11"

	"github.com/rotator-dev/rotator/hsmpool"
)

// Codes of the failures that are not AWS error codes. KMS failures carry the
// AWS error code itself (AccessDeniedException, DisabledException, ...).
const (
	// CodeNotFromKey: the wrapped key is not wrapped under the --from key
	// (KMS IncorrectKeyException is reported under its own code).
	CodeNotFromKey = "NotWrappedUnderFromKey"
	// CodeNeedFromKey: the wrapped key can only be unwrapped with a named
	// source key (--from).
	CodeNeedFromKey = "NeedFromKey"
	// CodeAuthentication: the wrapped key does not open under the key (wrong
	// key, or an altered wrapped key).
	CodeAuthentication = "AuthenticationFailed"
	// CodeAlgorithmMismatch: the wrapping or content algorithm does not fit
	// the key or the stored material description (for example a KMS context
	// whose aws:x-amz-cek-alg names another content algorithm).
	CodeAlgorithmMismatch = "AlgorithmMismatch"
	// CodeUnsupported: a wrapping algorithm or spec attribute rotator does
	// not handle.
	CodeUnsupported = "Unsupported"
	// CodeWrapOnly: the key can wrap but not unwrap (an RSA public key).
	CodeWrapOnly = "WrapOnly"
	// CodeBadKeyFile: a local key file that does not pass the checks.
	CodeBadKeyFile = "BadKeyFile"
	// CodeBadInput: a malformed wrapped key or argument.
	CodeBadInput = "BadInput"
	// CodeKeyNotFound: no HSM key with the label (hsmpool.ErrKeyNotFound).
	CodeKeyNotFound = "KeyNotFound"
	// CodeLogin: the HSM refused the PIN (hsmpool.ErrLogin).
	CodeLogin = "LoginFailed"
	// CodeHSMUnavailable: the HSM session was lost and could not be
	// replaced (hsmpool.ErrUnavailable).
	CodeHSMUnavailable = "HSMUnavailable"
	// CodeHSMBusy: every session of the pool stayed busy
	// (hsmpool.ErrExhausted).
	CodeHSMBusy = "HSMBusy"
	// CodeClosed: the pool or the Deps were closed.
	CodeClosed = "Closed"
	// CodeCanceled: the context ended.
	CodeCanceled = "Canceled"
	// CodeRequestFailed: a KMS request failed without an AWS error code
	// (network, endpoint), after the SDK's retries.
	CodeRequestFailed = "RequestFailed"
	// CodeConfig: the configuration cannot work (no region, no module, ...).
	CodeConfig = "Config"
	// CodeHSMError: any other PKCS#11 failure.
	CodeHSMError = "HSMError"
)

// Error is the failure of one backend step of a rewrap (or of opening a
// key). Callers branch on Code, Systemic and Retryable, never on the text.
//
// Systemic errors concern the destination key, the credentials or the
// configuration: every object would fail the same way, so the pipeline
// should stop. Other errors concern one object (its wrapped key, its context,
// the key it is wrapped under) and go to the report.
//
// The message never holds key bytes, plaintext or PINs.
type Error struct {
	// Op is the step that failed: "kms ReEncrypt", "kms Decrypt", "kms
	// Encrypt", "kms DescribeKey", "hsm encrypt", "hsm decrypt", "aes
	// unwrap", "open", ...
	Op string
	// Key is the identity (Keyring.ID) of the key concerned, or the spec
	// while opening; empty when unknown.
	Key string
	// Code is the AWS error code (AccessDeniedException, ...) or one of the
	// Code constants of this package.
	Code string
	// Hint says what to do next; may be empty.
	Hint string
	// Retryable: the same call may succeed later (throttling after the
	// SDK's retries, KMS internal errors, HSM busy or reconnecting).
	Retryable bool
	// Systemic: every object would fail this way; stop the run.
	Systemic bool
	// Err is the underlying error (an SDK or hsmpool error), if any.
	Err error

	detail string
}

func (e *Error) Error() string {
	s := "rewrap: " + e.Op + ": " + e.Code
	if e.detail != "" {
		s += ": " + e.detail
	}
	if e.Hint != "" {
		s += " (hint: " + e.Hint + ")"
	}
	return s
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// IsSystemic reports whether err is an *Error marked Systemic.
func IsSystemic(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Systemic
}

// IsRetryable reports whether err is an *Error marked Retryable.
func IsRetryable(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Retryable
}

func newError(op, key, code, detail, hint string) *Error {
	return &Error{Op: op, Key: key, Code: code, detail: detail, Hint: hint}
}

// side says which end of a rewrap a backend call serves, which decides
// whether its failure is systemic.
type side int

const (
	sideSource side = iota // unwrapping: the object's key
	sideDest               // wrapping: the destination key, the same for every object
	sideOpen               // opening a key: configuration
)

// credentialCodes are the AWS error codes that mean the caller's
// credentials are not accepted at all.
var credentialCodes = map[string]bool{
	"UnrecognizedClientException":         true,
	"InvalidSignatureException":           true,
	"ExpiredTokenException":               true,
	"InvalidClientTokenId":                true,
	"MissingAuthenticationTokenException": true,
	"IncompleteSignature":                 true,
	"SignatureDoesNotMatch":               true,
}

// kmsError classifies the failure of a KMS call by the SDK's typed errors
// and smithy.APIError codes. key is the key the call was about (the
// destination for Encrypt, the source for Decrypt); accessHint is the
// permission to grant on AccessDeniedException.
func kmsError(op, key string, sd side, accessHint string, err error) *Error {
	e := &Error{Op: "kms " + op, Key: key, Err: err}
	var (
		ae            smithy.APIError
		disabled      *types.DisabledException
		invalidState  *types.KMSInvalidStateException
		notFound      *types.NotFoundException
		invalidCT     *types.InvalidCiphertextException
		incorrectKey  *types.IncorrectKeyException
		unavailable   *types.KeyUnavailableException
		internal      *types.KMSInternalException
		depTimeout    *types.DependencyTimeoutException
		invalidUsage  *types.InvalidKeyUsageException
		invalidARN    *types.InvalidArnException
		limitExceeded *types.LimitExceededException
	)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		e.Code, e.detail = CodeCanceled, err.Error()
		return e
	}
	if !errors.As(err, &ae) {
		// After the SDK's retries: an endpoint that stays unreachable
		// fails every object that needs the destination key.
		e.Code, e.detail, e.Retryable, e.Systemic = CodeRequestFailed, err.Error(), true, sd != sideSource
		e.Hint = "check the KMS endpoint and the network (AWS_ENDPOINT_URL_KMS, AWS_REGION)"
		return e
	}
	e.Code, e.detail = ae.ErrorCode(), ae.ErrorMessage()
	dest := sd != sideSource
	keyName := key
	if keyName == "" {
		keyName = "the key"
	}
	switch {
	case errors.As(err, &disabled):
		e.Systemic = dest
		e.Hint = fmt.Sprintf("enable it (aws kms enable-key --key-id %s) or name another key", keyName)
	case errors.As(err, &invalidState):
		e.Systemic = dest
		e.Hint = fmt.Sprintf("cancel the deletion of %s (aws kms cancel-key-deletion, then enable-key) or name another key", keyName)
	case errors.As(err, &notFound), errors.As(err, &invalidARN):
		e.Systemic = dest
		e.Hint = fmt.Sprintf("%s does not exist in this account and region: check the key ARN or alias, and that the client's region is the key's", keyName)
	case errors.As(err, &invalidCT):
		e.Hint = "the stored encryption context does not match the one the key was wrapped with, or the wrapped key was altered: the stored x-amz-matdesc (V3: x-amz-t) must be exactly the encryption context"
	case errors.As(err, &incorrectKey):
		e.Hint = fmt.Sprintf("the object is not wrapped under --from key %s: it belongs to another key (leave it, or name its key with --from)", keyName)
	case errors.As(err, &unavailable), errors.As(err, &internal), errors.As(err, &depTimeout):
		e.Retryable = true
		e.Hint = "a KMS-side failure: retry later"
	case errors.As(err, &invalidUsage):
		e.Systemic = dest
		e.Hint = fmt.Sprintf("%s is not a symmetric ENCRYPT_DECRYPT key: S3EC wraps data keys with symmetric KMS keys only", keyName)
	case errors.As(err, &limitExceeded), e.Code == "ThrottlingException":
		e.Retryable = true
		e.Hint = "KMS throttled every retry of the request (the account's KMS quota is shared with its other applications): resume later, lower the KMS request budget (Limits.KMSRPS) or ask AWS for a higher quota"
	case e.Code == "AccessDeniedException":
		e.Systemic = dest
		e.Hint = accessHint
		if action, resource, ok := deniedAction(e.detail); ok {
			e.Hint = grantHint(action, resource)
		}
		e.Hint += "; 'rotator iam-policy' with the run's flags prints every permission a run needs"
	case credentialCodes[e.Code]:
		e.Systemic = true
		e.Hint = "AWS rejected the credentials: check AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, and that the session has not expired"
	}
	return e
}

// deniedRE finds the action and resource KMS names in an AccessDenied
// message ("User: ARN is not authorized to perform: kms:ReEncryptTo on
// resource: KEY-ARN because no ... policy allows ..." or "... with an
// explicit deny in ...").
var deniedRE = regexp.MustCompile(`not authorized to perform: (kms:[A-Za-z]+) on resource: ([^ ]+)`)

// deniedAction returns the action and resource a KMS AccessDenied message
// names, if it names them.
func deniedAction(msg string) (action, resource string, ok bool) {
	m := deniedRE.FindStringSubmatch(msg)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

// grantHint names the one permission a denied request lacked.
func grantHint(action, resource string) string {
	switch action {
	case "kms:ReEncryptFrom", "kms:Decrypt":
		return "grant " + action + " on the source key " + resource + " (its key policy, or the IAM policy where the key policy lets IAM decide)"
	case "kms:ReEncryptTo", "kms:Encrypt":
		return "grant " + action + " on the destination key " + resource + " (its key policy, or the IAM policy where the key policy lets IAM decide)"
	}
	return "grant " + action + " on " + resource + " (its key policy, or the IAM policy where the key policy lets IAM decide)"
}

// hsmError classifies the failure of an HSM operation by hsmpool's sentinel
// errors. The message is rotator's own (with the PKCS#11 return value when
// there is one); hsmpool's full message stays in Err.
func hsmError(op, key string, sd side, err error) *Error {
	e := &Error{Op: "hsm " + op, Key: key, Err: err}
	dest := sd != sideSource
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		e.Code, e.detail = CodeCanceled, err.Error()
	case errors.Is(err, hsmpool.ErrKeyNotFound):
		e.Code, e.Systemic = CodeKeyNotFound, dest
		e.detail = "no secret key " + key + " on the token"
		if dest {
			e.Hint = "check the object= label and the token (pkcs11-tool --list-objects --type secrkey), or create the key"
		} else {
			e.Hint = "the key this object is wrapped under is not on the token (deleted or renamed?)"
		}
	case errors.Is(err, hsmpool.ErrLogin):
		e.Code, e.Systemic = CodeLogin, true
		e.detail = "the PIN differs from the one this process logged in with, or the user PIN is locked"
		var ce pkcs11.Error
		if errors.As(err, &ce) {
			e.detail = "the token refused the PIN (" + ce.Error() + ")"
		}
		e.Hint = "check the PIN file named by pin-source (or " + EnvPKCS11PINFile + "); repeated failures can lock the HSM user"
	case errors.Is(err, hsmpool.ErrAuthentication):
		e.Code = CodeAuthentication
		e.detail = pkcs11Detail("the HSM's integrity check failed", err)
		e.Hint = "the wrapped key does not open under " + key + ": it is wrapped under another key, or altered"
	case errors.Is(err, hsmpool.ErrExhausted):
		e.Code, e.Retryable = CodeHSMBusy, true
		e.detail = "every session of the pool stayed busy"
		e.Hint = "run at most the pool size of HSM workers, or raise the pool size"
	case errors.Is(err, hsmpool.ErrUnavailable):
		e.Code, e.Retryable, e.Systemic = CodeHSMUnavailable, true, dest
		e.detail = pkcs11Detail("the HSM session was lost and could not be replaced", err)
		e.Hint = "check the HSM and its client; the pool reconnects by itself when it can"
	case errors.Is(err, hsmpool.ErrClosed):
		e.Code, e.Systemic, e.detail = CodeClosed, true, "the session pool is closed"
	default:
		e.Code, e.Systemic = CodeHSMError, dest
		e.detail = err.Error()
		var ce pkcs11.Error
		if errors.As(err, &ce) && ce == pkcs11.CKR_GENERAL_ERROR {
			// PKCS#11 reserves it for failures of the module or the HSM
			// (hsmpool turns it into ErrAuthentication only for modules
			// known to report bad tags that way): every object would
			// fail, whichever end of the rewrap it is.
			e.Systemic = true
			e.Hint = "the HSM or its PKCS#11 library failed: check the HSM and its client's logs, then resume"
		}
	}
	return e
}

// pkcs11Detail appends the PKCS#11 return value inside err, if any, to what.
func pkcs11Detail(what string, err error) string {
	var ce pkcs11.Error
	if errors.As(err, &ce) {
		return what + " (" + ce.Error() + ")"
	}
	return what
}

// IsWrongKey reports whether err is an answer about the key: the wrapped
// key is not under the key tried (KMS IncorrectKeyException or
// InvalidCiphertextException, an unwrap whose tag or algorithm does not
// fit). A backend that is unavailable, busy or refuses the login says
// nothing about the key: IsWrongKey is false, and such a failure must
// never be taken for "not this key".
func IsWrongKey(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code {
	case "IncorrectKeyException", "InvalidCiphertextException", CodeNotFromKey, CodeAuthentication, CodeAlgorithmMismatch:
		return true
	}
	return false
}
