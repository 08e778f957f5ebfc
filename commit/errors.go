package commit

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
)

// Sentinel errors. Callers branch on them with errors.Is.
var (
	// ErrChanged: a guard failed (HTTP 412 PreconditionFailed, or 409
	// ConditionalRequestConflict): the object was written by someone else
	// after it was read, and this write was not made.
	ErrChanged = errors.New("someone changed the object since it was read: left untouched")
	// ErrGone: the object or version no longer exists (NoSuchKey,
	// NoSuchVersion, or the key's current version is a delete marker).
	ErrGone = errors.New("the object no longer exists")
	// ErrAccessDenied: S3 refused the request for lack of permission.
	ErrAccessDenied = errors.New("access denied")
	// ErrNotCurrent: the version read is not the key's current version; an
	// older version cannot be changed in place.
	ErrNotCurrent = errors.New("not the current version of the key: an older version cannot be changed in place")
	// ErrUnsupported: the object cannot be committed by this package
	// (SSE-C, delete marker, archived storage class, instruction file
	// given as an object, ...).
	ErrUnsupported = errors.New("object cannot be rewritten in place")
	// ErrNotRewrap: the new envelope changes more than the wrapping (content
	// algorithm, IV, message ID, key commitment or recorded lengths), or is
	// not a complete envelope: writing it would make the object
	// undecryptable.
	ErrNotRewrap = errors.New("new envelope is not a rewrap of the stored one")
)

// Error is the error every function of this package returns.
type Error struct {
	// Op is the step that failed: "head", "copy", "multipart copy",
	// "put instruction file", "get tagging", ...
	Op string
	// Bucket, Key and VersionID name the object (VersionID may be empty).
	Bucket, Key, VersionID string
	// Kind is one of the sentinel errors, or nil.
	Kind error
	// Err is the underlying error (usually from the S3 client), or nil.
	Err error
	// Hint says what to do next, or is empty.
	Hint string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("commit")
	if e.Bucket != "" {
		b.WriteString(" s3://")
		b.WriteString(e.Bucket)
		b.WriteString("/")
		b.WriteString(e.Key)
		if e.VersionID != "" {
			b.WriteString("@")
			b.WriteString(e.VersionID)
		}
	}
	b.WriteString(": ")
	b.WriteString(e.Op)
	if e.Kind != nil {
		b.WriteString(": ")
		b.WriteString(e.Kind.Error())
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	if e.Hint != "" {
		b.WriteString(" (hint: ")
		b.WriteString(e.Hint)
		b.WriteString(")")
	}
	return b.String()
}

// Unwrap returns Kind and Err, so errors.Is finds the sentinel and errors.As
// the S3 error.
func (e *Error) Unwrap() []error {
	var out []error
	if e.Kind != nil {
		out = append(out, e.Kind)
	}
	if e.Err != nil {
		out = append(out, e.Err)
	}
	return out
}

// S3 error codes this package branches on.
const (
	codePreconditionFailed  = "PreconditionFailed"
	codeConditionalConflict = "ConditionalRequestConflict"
	codeNoSuchKey           = "NoSuchKey"
	codeNoSuchVersion       = "NoSuchVersion"
	codeNotFound            = "NotFound" // HEAD 404: no body, code from the status
	codeNoSuchBucket        = "NoSuchBucket"
	codeNoSuchUpload        = "NoSuchUpload"
	codeAccessDenied        = "AccessDenied"
	codeForbidden           = "Forbidden" // HEAD 403
	codeInvalidObjectState  = "InvalidObjectState"
	codeMethodNotAllowed    = "MethodNotAllowed"
	codeBadDigest           = "BadDigest"
	codeNotImplemented      = "NotImplemented"
)

// apiCode returns the S3 error code and HTTP status of err (empty / 0 when
// err carries none).
func apiCode(err error) (code string, status int) {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	return code, status
}

// isDeleteMarker reports whether err is a response that carries
// x-amz-delete-marker: true (HEAD or GET of a delete marker, or of a key
// whose current version is one).
func isDeleteMarker(err error) bool {
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.Response != nil {
		return strings.EqualFold(re.Response.Header.Get("x-amz-delete-marker"), "true")
	}
	return false
}

// Permissions named in hints.
const (
	hintCopyPerms = "the commit needs s3:GetObject, s3:PutObject, s3:GetObjectTagging and s3:PutObjectTagging on the objects " +
		"(s3:GetObjectVersion and s3:GetObjectVersionTagging in versioned buckets; kms:Decrypt and kms:GenerateDataKey on the key of SSE-KMS objects)"
	hintHeadPerms = "reading an object's state needs s3:GetObject (s3:GetObjectVersion for a version id)"
	hintReadPerms = "reading an object's content needs s3:GetObject (s3:GetObjectVersion for a version id)"
)

// classify turns an S3 error into an *Error with the matching sentinel and
// hint. perms is the hint for access denied.
func (o *objRef) classify(op string, err error, perms string) *Error {
	e := &Error{Op: op, Bucket: o.bucket, Key: o.key, VersionID: o.versionID, Err: err}
	code, status := apiCode(err)
	switch {
	case code == codePreconditionFailed || status == http.StatusPreconditionFailed ||
		code == codeConditionalConflict:
		e.Kind = ErrChanged
	case code == codeNoSuchKey || code == codeNoSuchVersion || code == codeNotFound:
		e.Kind = ErrGone
		if isDeleteMarker(err) {
			e.Hint = "the key's current version is a delete marker"
		}
	case code == codeMethodNotAllowed && isDeleteMarker(err):
		e.Kind = ErrGone
		e.Hint = "the version is a delete marker; delete markers are never written"
	case code == codeAccessDenied || code == codeForbidden:
		e.Kind = ErrAccessDenied
		e.Hint = perms
	case code == codeInvalidObjectState:
		e.Kind = ErrUnsupported
		e.Hint = "the object is in an archive storage class or tier: restore it first (s3 restore-object) and retry"
	case code == codeNoSuchBucket:
		e.Hint = "check the bucket name and region"
	case code == codeNotImplemented:
		e.Hint = "the server may not support If-Match on a copy or completion: set Options.NoDestinationIfMatch"
	case status == http.StatusBadRequest && code == "BadRequest" && op == opHead:
		// HEAD has no error body; a bare 400 is what S3 answers for an
		// SSE-C object read without its key.
		e.Hint = "if the object is encrypted with SSE-C (customer-provided keys), it cannot be rewritten without the customer key"
	}
	return e
}

// ReadError classifies the error of a read of an object's content (the
// GET of its body or of a range of it, or the body's read) as this
// package's errors are: a guard that failed (412) is ErrChanged, a key or
// version gone ErrGone, a denied read ErrAccessDenied, an archived object
// ErrUnsupported. op names the read ("get body", "get range").
func ReadError(op, bucket, key, versionID string, err error) *Error {
	ref := &objRef{bucket: bucket, key: key, versionID: versionID}
	return ref.classify(op, err, hintReadPerms)
}

// objRef names an object for errors.
type objRef struct{ bucket, key, versionID string }

func (o *objRef) fail(op string, kind error, hint string, format string, args ...any) *Error {
	e := &Error{Op: op, Bucket: o.bucket, Key: o.key, VersionID: o.versionID, Kind: kind, Hint: hint}
	if format != "" {
		e.Err = fmt.Errorf(format, args...)
	}
	return e
}

// Operation names used in errors.
const (
	opHead        = "head"
	opGetTagging  = "get tagging"
	opCopy        = "copy"
	opMultipart   = "multipart copy"
	opPutInstr    = "put instruction file"
	opGetInstr    = "get instruction file"
	opCheck       = "check"
	opCheckObject = "check object"
)
