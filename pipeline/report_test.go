package pipeline

import (
	"bytes"
	"encoding/csv"
	"net/url"
	"sync"
	"testing"
)

func TestReportRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	r, err := NewReport(&buf)
	if err != nil {
		t.Fatal(err)
	}
	outs := []Outcome{
		{Bucket: "b", Key: "a/b c+d,é#%.txt", VersionID: "v1", Status: StatusSucceeded, Action: "rewrap", FromKey: "kms:A", ToKey: "kms:B"},
		{Bucket: "b", Key: "x", Status: StatusFailed, ErrorCode: "AccessDeniedException", Message: "line one\nline \"two\", three"},
		{Bucket: "b", Key: "y", Status: StatusChanged, ErrorCode: "Changed"},
	}
	for _, o := range outs {
		if err := r.Add(o); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatalf("report is not valid CSV: %v", err)
	}
	if len(rows) != len(outs)+1 || len(rows[0]) != len(ReportHeader) {
		t.Fatalf("got %d rows of %d columns", len(rows), len(rows[0]))
	}
	for i, o := range outs {
		row := rows[i+1]
		key, err := url.QueryUnescape(row[1])
		if err != nil || key != o.Key {
			t.Errorf("row %d: key %q decodes to %q, %v; want %q", i, row[1], key, err, o.Key)
		}
		if row[3] != string(o.Status) || row[4] != o.ErrorCode {
			t.Errorf("row %d: %v", i, row)
		}
		if bytes.ContainsAny([]byte(row[5]), "\r\n") {
			t.Errorf("row %d: message spans lines: %q", i, row[5])
		}
	}
	if got := r.String(); got != "changed=1 failed=1 succeeded=1" {
		t.Errorf("String() = %q", got)
	}
}

func TestReportConcurrent(t *testing.T) {
	var buf bytes.Buffer
	r, _ := NewReport(&buf)
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				r.Add(Outcome{Bucket: "b", Key: "k", Status: StatusSkipped})
			}
		}()
	}
	wg.Wait()
	r.Flush()
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil || len(rows) != 5001 || r.Counts()[StatusSkipped] != 5000 {
		t.Fatalf("rows=%d counts=%v err=%v", len(rows), r.Counts(), err)
	}
}

func FuzzReportRow(f *testing.F) {
	f.Add("k", "msg")
	f.Add("a\nb,\"c\"", "x\r\ny")
	f.Fuzz(func(t *testing.T, key, msg string) {
		var buf bytes.Buffer
		r, _ := NewReport(&buf)
		r.Add(Outcome{Bucket: "b", Key: key, Message: msg, Status: StatusFailed})
		r.Flush()
		rows, err := csv.NewReader(&buf).ReadAll()
		if err != nil || len(rows) != 2 {
			t.Fatalf("rows=%d err=%v", len(rows), err)
		}
		if k, err := url.QueryUnescape(rows[1][1]); err != nil || k != key {
			t.Fatalf("key %q came back as %q (%v)", key, k, err)
		}
	})
}
