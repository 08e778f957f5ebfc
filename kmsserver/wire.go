package kmsserver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Error codes the server answers with. They are the AWS KMS error type names
// (the __type of the JSON error body), so the aws-sdk-go-v2 client maps them to
// its typed errors (types.NotFoundException, ...) where the KMS model has one.
const (
	ErrAccessDenied          = "AccessDeniedException"
	ErrAlreadyExists         = "AlreadyExistsException"
	ErrDependencyTimeout     = "DependencyTimeoutException"
	ErrDisabled              = "DisabledException"
	ErrDryRunOperation       = "DryRunOperationException"
	ErrIncorrectKey          = "IncorrectKeyException"
	ErrInvalidAliasName      = "InvalidAliasNameException"
	ErrInvalidCiphertext     = "InvalidCiphertextException"
	ErrInvalidKeyUsage       = "InvalidKeyUsageException"
	ErrInvalidMarker         = "InvalidMarkerException"
	ErrKeyUnavailable        = "KeyUnavailableException"
	ErrKMSInternal           = "KMSInternalException"
	ErrKMSInvalidState       = "KMSInvalidStateException"
	ErrLimitExceeded         = "LimitExceededException"
	ErrMalformedPolicy       = "MalformedPolicyDocumentException"
	ErrNotFound              = "NotFoundException"
	ErrSerialization         = "SerializationException"
	ErrThrottling            = "ThrottlingException"
	ErrUnknownOperation      = "UnknownOperationException"
	ErrUnsupportedOperation  = "UnsupportedOperationException"
	ErrValidation            = "ValidationException"
	ErrRequestEntityTooLarge = "RequestEntityTooLargeException"
)

// apiError is an error as KMS sends it: a type name, a message and an HTTP
// status.
type apiError struct {
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func errf(code, format string, args ...any) *apiError {
	return &apiError{code: code, message: fmt.Sprintf(format, args...)}
}

// httpStatus is the status KMS answers an error code with: 400 for client
// errors, like the real service (its model declares 404/409 for some of them,
// but the service answers 400), 5xx for server-side faults.
func httpStatus(code string) int {
	switch code {
	case ErrKMSInternal, ErrKeyUnavailable:
		return http.StatusInternalServerError
	case ErrDependencyTimeout:
		return http.StatusServiceUnavailable
	case ErrDryRunOperation:
		return http.StatusPreconditionFailed
	case ErrRequestEntityTooLarge:
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusBadRequest
}

const contentType = "application/x-amz-json-1.1"

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		fmt.Fprintf(&buf, `{"__type":%q,"message":%q}`, ErrKMSInternal, "encode response: "+err.Error())
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func writeError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("X-Amzn-ErrorType", e.code)
	writeJSON(w, httpStatus(e.code), struct {
		Type    string `json:"__type"`
		Message string `json:"message,omitempty"`
	}{e.code, e.message})
}

// decode reads a JSON request body into v.
func decode(body []byte, v any) *apiError {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return errf(ErrSerialization, "cannot parse request body: %v", err)
	}
	if dec.More() {
		return errf(ErrSerialization, "cannot parse request body: trailing data")
	}
	return nil
}

// epochTime is a timestamp as the JSON 1.1 protocol sends it: seconds since
// the epoch as a number with millisecond precision.
type epochTime time.Time

func (t epochTime) MarshalJSON() ([]byte, error) {
	ms := time.Time(t).UnixMilli()
	return []byte(strconv.FormatFloat(float64(ms)/1000, 'f', 3, 64)), nil
}

func epoch(t time.Time) *epochTime {
	if t.IsZero() {
		return nil
	}
	e := epochTime(t)
	return &e
}

// validator collects constraint violations and reports them the way AWS
// does: "2 validation errors detected: Value null at 'keyId' failed to
// satisfy constraint: Member must not be null; ...".
type validator struct{ errs []string }

func (v *validator) add(value, member, constraint string) {
	v.errs = append(v.errs, fmt.Sprintf("Value %s at '%s' failed to satisfy constraint: Member must %s", value, member, constraint))
}

func (v *validator) required(member string, present bool) bool {
	if !present {
		v.add("null", member, "not be null")
	}
	return present
}

// length checks a string or blob length; show includes the value in the
// message (never for secrets).
func (v *validator) length(member string, value string, n, lo, hi int, show bool) {
	shown := ""
	if show {
		shown = "'" + value + "' "
	}
	if n < lo {
		v.errs = append(v.errs, fmt.Sprintf("Value %sat '%s' failed to satisfy constraint: Member must have length greater than or equal to %d", shown, member, lo))
	}
	if n > hi {
		v.errs = append(v.errs, fmt.Sprintf("Value %sat '%s' failed to satisfy constraint: Member must have length less than or equal to %d", shown, member, hi))
	}
}

func (v *validator) strLen(member string, s *string, lo, hi int) {
	if s != nil {
		v.length(member, *s, len(*s), lo, hi, true)
	}
}

func (v *validator) intRange(member string, n *int32, lo, hi int32) {
	if n == nil {
		return
	}
	if *n < lo {
		v.add(fmt.Sprintf("'%d'", *n), member, fmt.Sprintf("have value greater than or equal to %d", lo))
	}
	if *n > hi {
		v.add(fmt.Sprintf("'%d'", *n), member, fmt.Sprintf("have value less than or equal to %d", hi))
	}
}

func (v *validator) enum(member string, s *string, allowed []string) {
	if s == nil {
		return
	}
	for _, a := range allowed {
		if *s == a {
			return
		}
	}
	v.add("'"+*s+"'", member, "satisfy enum value set: ["+strings.Join(allowed, ", ")+"]")
}

func (v *validator) grantTokens(t []string) {
	if len(t) > 10 {
		v.errs = append(v.errs, "Value at 'grantTokens' failed to satisfy constraint: Member must have length less than or equal to 10")
	}
}

func (v *validator) err() *apiError {
	switch len(v.errs) {
	case 0:
		return nil
	case 1:
		return errf(ErrValidation, "1 validation error detected: %s", v.errs[0])
	}
	return errf(ErrValidation, "%d validation errors detected: %s", len(v.errs), strings.Join(v.errs, "; "))
}
