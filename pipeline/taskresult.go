package pipeline

import (
	"context"
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/rewrap"
)

// TaskCode is how S3 Batch Operations names the result of one task: what a
// Lambda function answers for it (resultCode), and the ErrorCode of a
// failed task in a completion report.
type TaskCode string

// Task codes. Batch Operations redrives a TemporaryFailure (up to its
// limit; the last answer is reported) and reports a PermanentFailure as
// failed at once.
const (
	TaskSucceeded        TaskCode = "Succeeded"
	TaskTemporaryFailure TaskCode = "TemporaryFailure"
	TaskPermanentFailure TaskCode = "PermanentFailure"
)

// MaxResultString bounds a task's result string (one line of a completion
// report); a longer message is cut, and ends with "...".
const MaxResultString = 1024

// temporaryCodes are the outcome codes that a later attempt can turn into
// a success without anyone doing anything: throttling, services that
// failed for a while, a change whose outcome is not known yet, an object
// another process holds. Every other failure is permanent: a corrupt
// envelope, a data key that does not open under its key, a refusal
// (AccessDenied, a disabled or missing key), an unsupported object.
var temporaryCodes = map[string]bool{
	CodeUnfinished: true, CodeChanged: true, CodeClaimed: true, CodeLostClaim: true,
	CodeOtherRunUnfinished: true, CodeHSMUnavailable: true, CodeLedger: true, CodeCanceled: true,
	// An S3 error rotator has no sentinel for (a 5xx after the SDK's
	// retries, a reset connection): Batch Operations tries again.
	CodeS3: true,
	// Key backends (rewrap.Error codes, AWS error codes passed through).
	rewrap.CodeHSMBusy: true, rewrap.CodeRequestFailed: true,
	"ThrottlingException": true, "LimitExceededException": true, "KMSInternalException": true,
	"KeyUnavailableException": true, "DependencyTimeoutException": true,
	// S3 and DynamoDB throttling and server errors.
	"SlowDown": true, "InternalError": true, "ServiceUnavailable": true, "RequestTimeout": true,
	"ProvisionedThroughputExceededException": true, "RequestLimitExceeded": true,
}

// TaskResultOf maps the outcome of one object, and the systemic error
// Core.Process returned with it (nil for most), to S3 Batch Operations'
// task result: the one place where rotator's outcome codes become
// Succeeded, TemporaryFailure or PermanentFailure. The Lambda handler
// answers with it, and the completion report in Batch Operations' shape
// writes it.
//
//   - succeeded, skipped (nothing to do: already under the target key, not
//     under a --from key, not encrypted, deleted since it was listed, a
//     delete marker) and dry-run rows: Succeeded;
//   - unfinished, changed by someone else, and failures in temporaryCodes:
//     TemporaryFailure (Batch Operations retries the task, which reads the
//     object again, or settles the change this run left on it);
//   - every other failure, and what needs an action the run does not
//     perform (NeedsReencrypt, a noncurrent version): PermanentFailure.
//
// The result string is "CODE: message" for failures, "skipped: CODE:
// message" for skips and "rewrap FROM -> TO (method)" for changes, on one
// line, at most MaxResultString bytes. It holds no key material: outcomes
// never do.
func TaskResultOf(o Outcome, err error) (TaskCode, string) {
	code := TaskPermanentFailure
	switch {
	case o.Status == StatusSucceeded:
		code = TaskSucceeded
	case o.Status == StatusSkipped, o.ErrorCode == CodeDryRun:
		code = TaskSucceeded
	case o.Status == StatusUnfinished, o.Status == StatusChanged:
		code = TaskTemporaryFailure
	case o.ErrorCode != "":
		if temporaryCodes[o.ErrorCode] {
			code = TaskTemporaryFailure
		}
	case err != nil:
		if temporaryError(err) {
			code = TaskTemporaryFailure
		}
	}
	return code, resultString(o, err)
}

// temporaryError classifies a systemic error that came without an
// outcome code.
func temporaryError(err error) bool {
	var le ledgerError
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.As(err, &le) || rewrap.IsRetryable(err) ||
		errors.Is(err, ledger.ErrClaimed) || errors.Is(err, ledger.ErrNotClaimed)
}

func resultString(o Outcome, err error) string {
	var s string
	switch {
	case o.Status == StatusSucceeded:
		s = o.Action + " " + o.FromKey + " -> " + o.ToKey
		if o.Message != "" {
			s += " (" + o.Message + ")"
		}
	case o.Status == StatusSkipped:
		s = "skipped: " + o.ErrorCode + ": " + o.Message
	case o.ErrorCode != "":
		s = o.ErrorCode + ": " + o.Message
	case err != nil:
		s = err.Error()
	default:
		s = string(o.Status) + ": " + o.Message
	}
	return truncate(oneLine(s), MaxResultString)
}

// truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n-3]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return strings.TrimRight(s, " ") + "..."
}
