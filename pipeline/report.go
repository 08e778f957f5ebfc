package pipeline

import (
	"encoding/csv"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"
)

// Status is how one object ended in a run.
type Status string

// Statuses of an Outcome.
const (
	StatusSucceeded Status = "succeeded" // rewrapped or re-encrypted and committed
	StatusSkipped   Status = "skipped"   // nothing to do (already under the target key, not encrypted, delete marker, ...)
	StatusChanged   Status = "changed"   // someone else changed the object mid-run: left untouched
	StatusFailed    Status = "failed"    // could not be processed: left untouched, see ErrorCode and Message
	StatusPending   Status = "pending"   // needs an action this run does not perform (e.g. re-encryption)
	// StatusUnfinished: a change whose outcome is not known yet; its intent
	// is kept in the ledger and 'rotator resume' finishes it (a later row
	// for the same object supersedes this one).
	StatusUnfinished Status = "unfinished"
)

// Outcome is the result of processing one object version: one row of the
// completion report. It never holds key material.
type Outcome struct {
	Bucket, Key, VersionID string
	Status                 Status
	// ErrorCode is a short machine-readable reason (an AWS error code such as
	// AccessDeniedException, or one of rotator's: Changed, NotEncrypted,
	// BadEnvelope, ...). Empty on success.
	ErrorCode string
	// Message says what happened and, for failures, what to do next.
	Message string
	Action  string // rewrap, reencrypt, delete-version, skip
	FromKey string
	ToKey   string
	// Also holds the rows of other versions changed while this one was
	// processed (the older versions a re-encryption deleted).
	Also []Outcome
	// Duration is how long the object took to process (set by the
	// Runner; not in the report).
	Duration time.Duration
	// instrRead: classify sent a GET of the object's instruction file
	// (whatever it found); ledgerRead: it read the object's ledger record
	// (Core.identify). Plan counts a classification's requests by them.
	instrRead, ledgerRead bool
}

// ReportHeader is the completion report's columns. The first six follow S3
// Batch Operations' completion report (with Status in place of TaskStatus);
// keys are URL-encoded as in S3 Batch Operations manifests and reports, so a
// report can be fed back as a --list of, say, the failed objects.
var ReportHeader = []string{"Bucket", "Key", "VersionId", "Status", "ErrorCode", "Message", "Action", "FromKey", "ToKey"}

// ReportFormat is the layout of a completion report's rows.
type ReportFormat string

// Report formats.
const (
	// ReportRotator: a header row (ReportHeader), then one row per outcome
	// with rotator's status and code.
	ReportRotator ReportFormat = "rotator"
	// ReportBatchOps: the rows S3 Batch Operations writes in its
	// completion reports (Report_CSV_20180820) for a job that invokes
	// rotator's Lambda handler: no header; Bucket, Key (URL-encoded),
	// VersionId, TaskStatus (succeeded or failed), HTTPStatusCode (200:
	// the task ran), ErrorCode (empty, TemporaryFailure or
	// PermanentFailure), ResultMessage (the task's result string, see
	// TaskResultOf). Batch Operations' manifest.json names the schema
	// "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode,
	// ResultMessage", but its rows carry the HTTP status before the error
	// code ("failed,200,PermanentFailure,..."), and so do these.
	ReportBatchOps ReportFormat = "batch-ops"
)

// ParseReportFormat parses a --report-format value.
func ParseReportFormat(s string) (ReportFormat, error) {
	switch ReportFormat(s) {
	case "", ReportRotator:
		return ReportRotator, nil
	case ReportBatchOps:
		return ReportBatchOps, nil
	}
	return "", fmt.Errorf("report format %q: want rotator (with a header row and rotator's columns) or batch-ops (S3 Batch Operations' completion report rows)", s)
}

// ReportOptions shape a report.
type ReportOptions struct {
	Format ReportFormat
	// FailedOnly writes only the rows of objects whose task failed
	// (TaskResultOf is not Succeeded), as a Batch Operations report with
	// scope FailedTasksOnly does. Counts still count every outcome.
	FailedOnly bool
}

// Report writes the completion report as CSV and counts outcomes by status.
// It is safe for concurrent use.
type Report struct {
	mu     sync.Mutex
	w      *csv.Writer
	opts   ReportOptions
	counts map[Status]int64
	err    error
}

// NewReport starts a report on w (nil: count only) in rotator's format.
func NewReport(w io.Writer) (*Report, error) {
	return NewReportWith(w, ReportOptions{})
}

// NewReportWith starts a report on w (nil: count only) with opts: the
// header row, when the format has one, is written at once.
func NewReportWith(w io.Writer, opts ReportOptions) (*Report, error) {
	r := ContinueReportWith(w, opts)
	if w != nil && r.opts.Format == ReportRotator {
		if err := r.w.Write(ReportHeader); err != nil {
			return nil, fmt.Errorf("write report header: %w", err)
		}
	}
	return r, nil
}

// ContinueReport continues a report on w without writing the header again
// (a resumed run appending to its report).
func ContinueReport(w io.Writer) *Report {
	return ContinueReportWith(w, ReportOptions{})
}

// ContinueReportWith continues a report on w with opts, without a header.
func ContinueReportWith(w io.Writer, opts ReportOptions) *Report {
	if opts.Format == "" {
		opts.Format = ReportRotator
	}
	r := &Report{counts: map[Status]int64{}, opts: opts}
	if w != nil {
		r.w = csv.NewWriter(w)
	}
	return r
}

// Add records one outcome.
func (r *Report) Add(o Outcome) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[o.Status]++
	if r.w == nil || r.err != nil {
		return r.err
	}
	code, msg := TaskResultOf(o, nil)
	if r.opts.FailedOnly && code == TaskSucceeded {
		return nil
	}
	if r.opts.Format == ReportBatchOps {
		status, errCode := "succeeded", ""
		if code != TaskSucceeded {
			status, errCode = "failed", string(code)
		}
		r.err = r.w.Write([]string{o.Bucket, url.QueryEscape(o.Key), o.VersionID, status, "200", errCode, oneLine(msg)})
	} else {
		r.err = r.w.Write([]string{
			o.Bucket, url.QueryEscape(o.Key), o.VersionID, string(o.Status), o.ErrorCode,
			oneLine(o.Message), o.Action, o.FromKey, o.ToKey,
		})
	}
	if r.err != nil {
		r.err = fmt.Errorf("write report: %w", r.err)
	}
	return r.err
}

// Flush writes buffered rows and returns the first error met.
func (r *Report) Flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w != nil && r.err == nil {
		r.w.Flush()
		r.err = r.w.Error()
	}
	return r.err
}

// Counts returns the number of outcomes per status.
func (r *Report) Counts() map[Status]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := make(map[Status]int64, len(r.counts))
	for k, v := range r.counts {
		c[k] = v
	}
	return c
}

// String summarises the counts, e.g. "succeeded=10 skipped=2".
func (r *Report) String() string {
	c := r.Counts()
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, string(k))
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, c[Status(k)])
	}
	return strings.Join(parts, " ")
}

// oneLine keeps a message on one CSV line for readers that split on lines.
func oneLine(s string) string {
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}
