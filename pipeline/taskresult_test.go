package pipeline

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"testing"

	"github.com/rotator-dev/rotator/rewrap"
)

func TestTaskResultOf(t *testing.T) {
	cases := []struct {
		o    Outcome
		err  error
		want TaskCode
		str  string // a part of the result string
	}{
		{Outcome{Status: StatusSucceeded, Action: ActionRewrap, FromKey: "arn:a", ToKey: "arn:b", Message: "kms-reencrypt"}, nil, TaskSucceeded, "rewrap arn:a -> arn:b (kms-reencrypt)"},
		{Outcome{Status: StatusSkipped, ErrorCode: CodeAlreadyTarget, Message: "already"}, nil, TaskSucceeded, "skipped: AlreadyUnderTargetKey: already"},
		{Outcome{Status: StatusSkipped, ErrorCode: CodeNotFromKey, Message: "not under"}, nil, TaskSucceeded, "skipped: NotWrappedUnderFromKey"},
		{Outcome{Status: StatusSkipped, ErrorCode: CodeGone}, nil, TaskSucceeded, "skipped: Gone"},
		{Outcome{Status: StatusPending, ErrorCode: CodeDryRun, Message: "would rewrap (dry run)"}, nil, TaskSucceeded, "DryRun"},
		{Outcome{Status: StatusUnfinished, ErrorCode: CodeUnfinished, Message: "kept"}, nil, TaskTemporaryFailure, "Unfinished: kept"},
		{Outcome{Status: StatusChanged, ErrorCode: CodeChanged}, nil, TaskTemporaryFailure, "Changed"},
		{Outcome{Status: StatusFailed, ErrorCode: "ThrottlingException", Message: "rate exceeded"}, nil, TaskTemporaryFailure, "ThrottlingException: rate exceeded"},
		{Outcome{Status: StatusFailed, ErrorCode: CodeClaimed}, nil, TaskTemporaryFailure, "ClaimedByAnotherRun"},
		{Outcome{Status: StatusFailed, ErrorCode: CodeS3, Message: "500"}, nil, TaskTemporaryFailure, "S3Error"},
		{Outcome{Status: StatusFailed, ErrorCode: CodeHSMUnavailable}, nil, TaskTemporaryFailure, "HSMUnavailable"},
		{Outcome{Status: StatusFailed, ErrorCode: CodeLedger}, errors.New("ledger down"), TaskTemporaryFailure, "LedgerError"},
		{Outcome{Status: StatusFailed, ErrorCode: "AccessDeniedException", Message: "denied (hint: grant kms:ReEncryptTo)"}, errors.New("systemic"), TaskPermanentFailure, "grant kms:ReEncryptTo"},
		{Outcome{Status: StatusFailed, ErrorCode: CodeAccessDenied}, nil, TaskPermanentFailure, "AccessDenied"},
		{Outcome{Status: StatusFailed, ErrorCode: CodeBadEnvelope}, nil, TaskPermanentFailure, "BadEnvelope"},
		{Outcome{Status: StatusFailed, ErrorCode: "InvalidCiphertextException"}, nil, TaskPermanentFailure, "InvalidCiphertextException"},
		{Outcome{Status: StatusFailed, ErrorCode: rewrap.CodeAuthentication}, nil, TaskPermanentFailure, "AuthenticationFailed"},
		{Outcome{Status: StatusFailed, ErrorCode: "DisabledException"}, nil, TaskPermanentFailure, "DisabledException"},
		{Outcome{Status: StatusFailed, ErrorCode: CodeContentAuth}, nil, TaskPermanentFailure, "ContentAuthenticationFailed"},
		{Outcome{Status: StatusPending, ErrorCode: CodeNeedsReencrypt, Message: "run with --mode reencrypt"}, nil, TaskPermanentFailure, "NeedsReencrypt"},
		// A systemic error without an outcome code.
		{Outcome{}, context.DeadlineExceeded, TaskTemporaryFailure, "deadline"},
		{Outcome{}, ledgerError{errors.New("unreachable")}, TaskTemporaryFailure, "unreachable"},
		{Outcome{}, &rewrap.Error{Op: "kms ReEncrypt", Code: "KMSInternalException", Retryable: true}, TaskTemporaryFailure, "KMSInternalException"},
		{Outcome{}, &rewrap.Error{Op: "kms ReEncrypt", Code: "AccessDeniedException", Systemic: true}, TaskPermanentFailure, "AccessDeniedException"},
	}
	for _, c := range cases {
		code, s := TaskResultOf(c.o, c.err)
		if code != c.want || !strings.Contains(s, c.str) {
			t.Errorf("TaskResultOf(%s %s, %v) = %s %q; want %s and a string with %q", c.o.Status, c.o.ErrorCode, c.err, code, s, c.want, c.str)
		}
	}
}

func TestTaskResultStringIsOneBoundedLine(t *testing.T) {
	o := Outcome{Status: StatusFailed, ErrorCode: CodeBadEnvelope, Message: "line one\r\nline two\n" + strings.Repeat("é", 2*MaxResultString)}
	_, s := TaskResultOf(o, nil)
	if len(s) > MaxResultString || strings.ContainsAny(s, "\r\n") || !strings.HasSuffix(s, "...") || !strings.HasPrefix(s, "BadEnvelope: line one line two") {
		t.Errorf("result string of %d bytes: %.80q...", len(s), s)
	}
}

// batchOpsRow is a completion report row as S3 Batch Operations' readers
// take it (Report_CSV_20180820: no header, seven columns, keys
// URL-encoded).
type batchOpsRow struct {
	Bucket, Key, VersionID, TaskStatus, HTTPStatus, ErrorCode, ResultMessage string
}

// readBatchOpsReport parses a report the way a reader of Batch Operations
// reports does, and fails on anything such a reader would choke on.
func readBatchOpsReport(t *testing.T, r io.Reader) []batchOpsRow {
	t.Helper()
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = 7
	recs, err := cr.ReadAll()
	if err != nil {
		t.Fatalf("not a Batch Operations report: %v", err)
	}
	var rows []batchOpsRow
	for i, rec := range recs {
		key, err := url.QueryUnescape(rec[1])
		if err != nil {
			t.Fatalf("row %d: key %q is not URL-encoded: %v", i+1, rec[1], err)
		}
		row := batchOpsRow{rec[0], key, rec[2], rec[3], rec[4], rec[5], rec[6]}
		switch {
		case row.TaskStatus != "succeeded" && row.TaskStatus != "failed":
			t.Errorf("row %d: TaskStatus %q", i+1, row.TaskStatus)
		case row.HTTPStatus != "200":
			t.Errorf("row %d: HTTPStatusCode %q", i+1, row.HTTPStatus)
		case row.TaskStatus == "succeeded" && row.ErrorCode != "",
			row.TaskStatus == "failed" && row.ErrorCode != string(TaskPermanentFailure) && row.ErrorCode != string(TaskTemporaryFailure):
			t.Errorf("row %d: %s with ErrorCode %q", i+1, row.TaskStatus, row.ErrorCode)
		case row.Bucket == "" || row.Bucket == "Bucket":
			t.Errorf("row %d: bucket %q (a header row?)", i+1, row.Bucket)
		}
		rows = append(rows, row)
	}
	return rows
}

func TestReportBatchOpsFormat(t *testing.T) {
	outs := []Outcome{
		{Bucket: "b", Key: "a/b c+d,é#%.txt", VersionID: "v1", Status: StatusSucceeded, Action: ActionRewrap, FromKey: "arn:a", ToKey: "arn:b", Message: "kms-reencrypt"},
		{Bucket: "b", Key: "skip", Status: StatusSkipped, ErrorCode: CodeAlreadyTarget, Message: "already"},
		{Bucket: "b", Key: "x\ny", Status: StatusFailed, ErrorCode: "AccessDeniedException", Message: `denied, "quoted"` + "\nsecond line"},
		{Bucket: "b", Key: "u", Status: StatusUnfinished, ErrorCode: CodeUnfinished, Message: "kept in the ledger"},
	}
	for _, failedOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("failedOnly=%v", failedOnly), func(t *testing.T) {
			var buf bytes.Buffer
			r, err := NewReportWith(&buf, ReportOptions{Format: ReportBatchOps, FailedOnly: failedOnly})
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range outs {
				if err := r.Add(o); err != nil {
					t.Fatal(err)
				}
			}
			if err := r.Flush(); err != nil {
				t.Fatal(err)
			}
			rows := readBatchOpsReport(t, &buf)
			want := outs
			if failedOnly {
				want = outs[2:]
			}
			if len(rows) != len(want) {
				t.Fatalf("%d rows, want %d: %+v", len(rows), len(want), rows)
			}
			for i, o := range want {
				code, msg := TaskResultOf(o, nil)
				status := "succeeded"
				if code != TaskSucceeded {
					status = "failed"
				}
				got := rows[i]
				if got.Bucket != o.Bucket || got.Key != o.Key || got.VersionID != o.VersionID || got.TaskStatus != status || got.ResultMessage != msg {
					t.Errorf("row %d: %+v, want %s %s %s %s %q", i, got, o.Bucket, o.Key, status, code, msg)
				}
			}
			if failedOnly {
				if rows[0].ErrorCode != "PermanentFailure" || rows[1].ErrorCode != "TemporaryFailure" {
					t.Errorf("error codes %q %q", rows[0].ErrorCode, rows[1].ErrorCode)
				}
			}
			if c := r.Counts(); c[StatusSucceeded] != 1 || c[StatusSkipped] != 1 || c[StatusFailed] != 1 || c[StatusUnfinished] != 1 {
				t.Errorf("counts %v: every outcome counts, written or not", c)
			}
		})
	}
}

func TestParseReportFormat(t *testing.T) {
	for in, want := range map[string]ReportFormat{"": ReportRotator, "rotator": ReportRotator, "batch-ops": ReportBatchOps} {
		if got, err := ParseReportFormat(in); err != nil || got != want {
			t.Errorf("ParseReportFormat(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseReportFormat("batchops"); err == nil || !strings.Contains(err.Error(), "batch-ops") {
		t.Errorf("ParseReportFormat(batchops): %v", err)
	}
}
