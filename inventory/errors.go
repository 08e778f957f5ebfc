package inventory

import (
	"errors"
	"strconv"
	"strings"

	"github.com/aws/smithy-go"
)

// Sentinel errors. Callers branch on them with errors.Is.
var (
	// ErrORC: the S3 Inventory report is in ORC format, which this package
	// cannot read (there is no maintained pure-Go ORC reader).
	ErrORC = errors.New("ORC inventory reports are not supported; configure the report as CSV or Parquet")
	// ErrChecksum: a data file of an S3 Inventory report does not have the
	// MD5 checksum (or size) its manifest records, or the manifest does not
	// match its manifest.checksum.
	ErrChecksum = errors.New("checksum mismatch")
	// ErrMalformed: a line of a list, a row of a report or a manifest
	// cannot be parsed.
	ErrMalformed = errors.New("malformed input")
	// ErrPosition: a resume position cannot be used by this source (it is
	// not a position, or belongs to another source or another fan-out).
	ErrPosition = errors.New("unusable resume position")
	// ErrForeignBucket: a row of an S3 Inventory report names another
	// bucket than the manifest's sourceBucket. S3 never writes such a
	// row; a report that has one was tampered with or mixed up, and
	// following it would aim writes at another bucket.
	ErrForeignBucket = errors.New("row names another bucket than the report's source bucket")
	// ErrTooLarge: a data file of an S3 Inventory report is larger than
	// the bound on what a Parquet file may take on disk while it is read
	// (S3Inventory.MaxFileBytes).
	ErrTooLarge = errors.New("data file too large")
	// ErrAccessDenied: S3 refused a request for lack of permission.
	ErrAccessDenied = errors.New("access denied")
	// ErrNotFound: the bucket, the manifest, a report file or the list does
	// not exist.
	ErrNotFound = errors.New("not found")
)

// Error is the error every source returns. It names what was being read:
// the bucket and prefix of a listing, or the file (a local path or an
// s3:// URL) and line of a list or a report.
type Error struct {
	// Op is the step that failed: "list", "list versions", "read manifest",
	// "read report file", "read list", "resume".
	Op string
	// Bucket and Prefix name the listing (Prefix may be empty).
	Bucket, Prefix string
	// File is the file read, a local path or an s3:// URL; Line its 1-based
	// line (row of a Parquet file), 0 when unknown.
	File string
	Line int64
	// Kind is one of the sentinel errors, or nil.
	Kind error
	// Err is the underlying error, or nil.
	Err error
	// Hint says what to do next, or is empty.
	Hint string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("inventory ")
	b.WriteString(e.Op)
	switch {
	case e.File != "":
		b.WriteString(" ")
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":")
			b.WriteString(strconv.FormatInt(e.Line, 10))
		}
	case e.Bucket != "":
		b.WriteString(" s3://")
		b.WriteString(e.Bucket)
		b.WriteString("/")
		b.WriteString(e.Prefix)
	}
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

// Unwrap returns Kind and Err, so errors.Is finds the sentinel (and
// context.Canceled) and errors.As the S3 error.
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
	codeAccessDenied = "AccessDenied"
	codeForbidden    = "Forbidden"
	codeNoSuchBucket = "NoSuchBucket"
	codeNoSuchKey    = "NoSuchKey"
	codeNotFound     = "NotFound"
	codeInvalidRange = "InvalidRange"
)

// apiCode returns the S3 error code of err, or "".
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// classify fills in Kind and, where e has none, Hint from an S3 error.
// perms names the permission a refusal lacks.
func (e *Error) classify(perms string) *Error {
	switch apiCode(e.Err) {
	case codeAccessDenied, codeForbidden:
		e.Kind = ErrAccessDenied
		if e.Hint == "" {
			e.Hint = perms
		}
	case codeNoSuchBucket:
		e.Kind = ErrNotFound
		if e.Hint == "" {
			e.Hint = "check the bucket name and the region (AWS_REGION)"
		}
	case codeNoSuchKey, codeNotFound:
		e.Kind = ErrNotFound
		if e.Hint == "" {
			e.Hint = "check the s3:// URL"
		}
	}
	return e
}
