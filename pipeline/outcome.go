package pipeline

import (
	"context"
	"errors"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/reencrypt"
	"github.com/rotator-dev/rotator/rewrap"
)

// Outcome codes. AWS error codes and the codes of key backends
// (rewrap.Error.Code) are passed through as they are; these are rotator's
// own, all in one place.
const (
	CodeDeleteMarker   = "DeleteMarker"
	CodeNotEncrypted   = "NotEncrypted"
	CodeAlreadyTarget  = "AlreadyUnderTargetKey"
	CodeNotFromKey     = rewrap.CodeNotFromKey
	CodeNeedFromKey    = rewrap.CodeNeedFromKey
	CodeBadEnvelope    = "BadEnvelope"
	CodeChanged        = "Changed"
	CodeGone           = "Gone"
	CodeNoncurrent     = "NoncurrentVersion"
	CodeNeedsReencrypt = "NeedsReencrypt"
	CodeClaimed        = "ClaimedByAnotherRun"
	CodeDryRun         = "DryRun"
	CodeLedger         = "LedgerError"
	CodeS3             = "S3Error"
	CodeAccessDenied   = "AccessDenied"
	CodeUnsupported    = "Unsupported"
	CodeCanceled       = "Canceled"
	// CodeContentAuth: the object's content does not authenticate under its
	// data key (corrupted or tampered); it was left untouched.
	CodeContentAuth = "ContentAuthenticationFailed"
	// CodeLengthMismatch: the object's size is not the plaintext length its
	// envelope records plus the tag (a truncated or extended body).
	CodeLengthMismatch = "ContentLengthMismatch"
	// CodeUnfinished: a write's outcome is not known yet (no evidence
	// either way); its intent stays in the ledger and 'rotator resume'
	// finishes it. The run exits 4 while any remains.
	CodeUnfinished = "Unfinished"
	// CodeInstructionConflict: the object holds this run's new content but
	// its instruction file holds neither the old nor the new envelope
	// (someone rewrote it): the object cannot be decrypted; the new
	// envelope is kept in the ledger for an operator.
	CodeInstructionConflict = "InstructionFileConflict"
	// CodeOtherRunUnfinished: another run left a change in progress on the
	// object: it is left to that run's resume.
	CodeOtherRunUnfinished = "UnfinishedByAnotherRun"
	// CodeDuplicate: the object was listed twice (a --list with a repeated
	// line); it is processed once.
	CodeDuplicate = "Duplicate"
	// CodeLostClaim: the claim on the object was taken over mid-change (the
	// run's lease ended); the new holder finishes it.
	CodeLostClaim = "ClaimLost"
	// CodeHSMUnavailable: an HSM failure that says nothing about whether
	// the object is under a key (HSMUnavailable, HSMBusy, LoginFailed):
	// never a reason to skip.
	CodeHSMUnavailable = "HSMUnavailable"
	// CodeObjectLocked: Object Lock retention or a legal hold protects the
	// version: left in place, never bypassed.
	CodeObjectLocked = "ObjectLocked"
	// CodeCurrentNotDone: the key's current version is still under a
	// --from key (or unreadable): its older versions are kept until it is
	// re-encrypted.
	CodeCurrentNotDone = "CurrentVersionNotReencrypted"
	// CodeWithCurrent: an older version met in the listing is handled by
	// the worker of its key's current version (--delete-old-versions).
	CodeWithCurrent = "HandledWithCurrentVersion"
	// CodeUnpairedInstructionFile: a key that ends with the instruction
	// suffix although no object KEY (the key without it) exists, and that
	// is no encrypted object either: most likely an instruction file its
	// object outlived. It is left as it is.
	CodeUnpairedInstructionFile = "UnpairedInstructionFile"
	// CodeACLWouldBeDropped: the object's ACL grants more than its owner's
	// FULL_CONTROL (commit.ErrACLWouldBeDropped). Any rewrite gives the new
	// object the bucket's default ACL, so with --check-acl the object is
	// left untouched and reported.
	CodeACLWouldBeDropped = "ObjectACLWouldBeDropped"
	// CodeInstructionVersion: an older version of an object whose envelope
	// lives in an instruction file: which key wraps it cannot be told.
	CodeInstructionVersion = "InstructionFileVersionUnknown"
)

// verbs name actions in messages.
var verbs = map[string]string{
	ActionRewrap: "rewrap", ActionReencrypt: "re-encrypt", ActionEscrow: "write the escrow file of", ActionDeleteVersion: "delete this older version", ActionSkip: "skip",
}

// Outcome helpers.

func (o Outcome) skip(code, msg string) Outcome {
	o.Status, o.ErrorCode, o.Message = StatusSkipped, code, msg
	return o
}

func (o Outcome) fail(code, msg string) Outcome {
	o.Status, o.ErrorCode, o.Message = StatusFailed, code, msg
	return o
}

// msgChangedSinceRead is the message of an object whose write found it
// changed since it was read (commit.ErrChanged, or an intent settled as
// someone else's).
const msgChangedSinceRead = "changed by someone else since it was read: left untouched"

// changed is the outcome of an object someone else changed while the run
// worked on it: left as they made it, and counted apart from failures
// (StatusChanged) since reading it again, in a later run, may find nothing
// wrong with it. The run exits 3 while any is reported: it is not rekeyed.
func (o Outcome) changed(msg string) Outcome {
	o.Status, o.ErrorCode, o.Message = StatusChanged, CodeChanged, msg
	return o
}

func (o Outcome) pending(code, msg string) Outcome {
	o.Status, o.ErrorCode, o.Message = StatusPending, code, msg
	return o
}

func (o Outcome) unfinished(msg string) Outcome {
	o.Status, o.ErrorCode, o.Message = StatusUnfinished, CodeUnfinished, msg
	return o
}

func (o Outcome) succeed(action string, ev ledger.Event) Outcome {
	o.Status, o.ErrorCode, o.Message = StatusSucceeded, "", ev.Method
	o.Action, o.FromKey, o.ToKey = action, ev.FromKey, ev.ToKey
	return o
}

// fromError turns the error of a step that changed nothing (a refused
// write, a failed read, a key backend's refusal) into an outcome: the one
// place where errors become codes. what names the step for the message.
// systemic is set for errors every object would meet (the run stops).
func (o Outcome) fromError(what string, err error) (out Outcome, systemic bool) {
	msg := "could not " + what + ": " + err.Error()
	var re *rewrap.Error
	var ee *escrowError
	switch {
	case errors.As(err, &ee):
		o = o.fail(ee.code, ee.msg)
	case errors.Is(err, errDryRun):
		o.Status, o.ErrorCode = StatusPending, CodeDryRun
		o.Message = "would " + verbs[o.Action] + " (dry run)"
		return o, false
	case errors.Is(err, commit.ErrChanged):
		o = o.changed(msgChangedSinceRead)
	case errors.Is(err, commit.ErrGone):
		o = o.skip(CodeGone, "deleted since it was listed")
	case errors.Is(err, commit.ErrACLWouldBeDropped):
		o = o.fail(CodeACLWouldBeDropped, msg)
	case errors.Is(err, commit.ErrAccessDenied):
		o = o.fail(CodeAccessDenied, msg)
	case errors.Is(err, commit.ErrNotCurrent):
		o = o.pending(CodeNoncurrent, msg)
	case errors.Is(err, commit.ErrUnsupported), errors.Is(err, commit.ErrNotRewrap),
		errors.Is(err, envelope.ErrMetadataTooLarge), errors.Is(err, reencrypt.ErrUnsupported):
		o = o.fail(CodeUnsupported, msg)
	case errors.Is(err, reencrypt.ErrAuthentication):
		o = o.fail(CodeContentAuth, err.Error()+" (check the object's history; it cannot be decrypted as it is)")
	case errors.Is(err, reencrypt.ErrLength):
		o = o.fail(CodeLengthMismatch, err.Error())
	case errors.Is(err, envelope.ErrCommitmentMismatch), errors.Is(err, envelope.ErrAuthentication):
		o = o.fail(CodeBadEnvelope, err.Error()+" (the wrapped data key or key commitment does not match: left untouched)")
	case errors.As(err, &re):
		o = o.fail(re.Code, err.Error())
		switch {
		case re.Code == "IncorrectKeyException" || re.Code == CodeNotFromKey:
			o = o.skip(CodeNotFromKey, "not wrapped under a --from key")
		case rewrap.IsSystemic(err):
			return o, true
		}
	case errors.Is(err, ledger.ErrClaimed):
		o = o.fail(CodeClaimed, err.Error()+" (another run or shard is processing it; run again after it ends)")
	case errors.Is(err, ledger.ErrNotClaimed):
		o = o.fail(CodeLostClaim, err.Error()+" (the run's lease ended and another process took the object over)")
	case isLedgerError(err):
		return o.fail(CodeLedger, msg), true
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		o = o.fail(CodeCanceled, msg)
	default:
		o = o.fail(CodeS3, msg)
	}
	o.ToKey = ""
	return o, false
}

// ledgerError marks a failure of the ledger itself (systemic: the run
// stops rather than fail every object the same way).
type ledgerError struct{ err error }

func (e ledgerError) Error() string { return "ledger: " + e.err.Error() }
func (e ledgerError) Unwrap() error { return e.err }

func isLedgerError(err error) bool {
	var le ledgerError
	return errors.As(err, &le)
}
