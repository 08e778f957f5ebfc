package main

import (
	"encoding/csv"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// TestCLIReportInBatchOpsShape reads the completion reports of
// --report-format batch-ops, with and without --report-failed-only, as a
// reader of S3 Batch Operations reports does: no header row, seven
// columns (Bucket, Key, VersionId, TaskStatus, HTTPStatusCode, ErrorCode,
// ResultMessage), keys URL-encoded, TaskStatus succeeded or failed.
func TestCLIReportInBatchOpsShape(t *testing.T) {
	f := newCLIFixture(t, 5)
	bad := "corrupt/a b+c,d"
	if _, err := f.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &f.bucket, Key: &bad, Body: strings.NewReader("x"),
		Metadata: map[string]string{"x-amz-key-v2": "AAAA", "x-amz-iv": "short", "x-amz-cek-alg": "AES/GCM/NoPadding",
			"x-amz-wrap-alg": "kms+context", "x-amz-matdesc": "{}"}}); err != nil {
		t.Fatal(err)
	}
	ledgerURL := filepath.Join(f.dir, "l.db")
	code, out := f.rotator(t, "run", "--source", "s3://"+f.bucket, "--to", "kms:"+f.arnB, "--from", "kms:"+f.arnA, "--ledger", ledgerURL,
		"--run-id", "bo", "--report", "all.csv", "--report-format", "batch-ops")
	if code != exitPartial {
		t.Fatalf("exit %d, want %d:\n%s", code, exitPartial, out)
	}
	rows := readBatchOpsReport(t, filepath.Join(f.dir, "all.csv"))
	if len(rows) != len(f.objs)+1 {
		t.Fatalf("%d rows, want %d", len(rows), len(f.objs)+1)
	}
	failed := 0
	for _, r := range rows {
		switch {
		case r[1] == bad:
			failed++
			if r[3] != "failed" || r[5] != "PermanentFailure" || !strings.HasPrefix(r[6], "BadEnvelope: ") {
				t.Errorf("corrupt object's row: %q", r)
			}
		case r[3] != "succeeded" || r[5] != "" || !strings.HasPrefix(r[6], "rewrap ") || !strings.Contains(r[6], f.arnB):
			t.Errorf("rewrapped object's row: %q", r)
		}
	}
	if failed != 1 {
		t.Errorf("%d rows for the corrupt object", failed)
	}

	// A second run: every object is done but the corrupt one, and only it
	// is written with --report-failed-only.
	code, out = f.rotator(t, "run", "--source", "s3://"+f.bucket, "--to", "kms:"+f.arnB, "--from", "kms:"+f.arnA, "--ledger", ledgerURL,
		"--run-id", "bo2", "--report", "failed.csv", "--report-format", "batch-ops", "--report-failed-only")
	if code != exitPartial {
		t.Fatalf("exit %d, want %d:\n%s", code, exitPartial, out)
	}
	rows = readBatchOpsReport(t, filepath.Join(f.dir, "failed.csv"))
	if len(rows) != 1 || rows[0][1] != bad || rows[0][3] != "failed" {
		t.Fatalf("failed-only report: %q", rows)
	}

	if code, out := f.rotator(t, "run", "--source", "s3://"+f.bucket, "--to", "kms:"+f.arnB, "--ledger", ledgerURL,
		"--run-id", "bo3", "--report-format", "csv"); code != exitUsage || !strings.Contains(out, "batch-ops") {
		t.Errorf("--report-format csv: exit %d:\n%s", code, out)
	}
}

// readBatchOpsReport parses a completion report as S3 Batch Operations'
// readers do (Report_CSV_20180820), keys decoded.
func readBatchOpsReport(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cr := csv.NewReader(f)
	cr.FieldsPerRecord = 7
	rows, err := cr.ReadAll()
	if err != nil {
		t.Fatalf("%s is not a Batch Operations report: %v", path, err)
	}
	for i, r := range rows {
		if r[0] == "Bucket" {
			t.Fatalf("%s has a header row", path)
		}
		k, err := url.QueryUnescape(r[1])
		if err != nil {
			t.Fatalf("row %d: key %q is not URL-encoded: %v", i+1, r[1], err)
		}
		rows[i][1] = k
		if (r[3] != "succeeded" && r[3] != "failed") || r[4] != "200" {
			t.Errorf("row %d: TaskStatus %q, HTTPStatusCode %q", i+1, r[3], r[4])
		}
	}
	return rows
}
