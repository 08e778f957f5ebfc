package main

import (
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rotator-dev/rotator/pipeline"
)

// TestReportDropsATornRow: a process killed while writing a row of its
// report leaves a partial line; the resumed run cuts it before it
// appends, so that the report stays CSV (the fault trials once read
// "record on line 192: wrong number of fields").
func TestReportDropsATornRow(t *testing.T) {
	for _, tc := range []struct {
		name, before string
		rows         int // whole rows kept, header included
	}{
		{"whole", "", 2},
		{"torn row", `b,k2,,succe`, 2},
		{"torn long row", "b," + strings.Repeat("x", 9000), 2},
		{"torn header", "", 1}, // written again
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "report.csv")
			content := strings.Join(pipeline.ReportHeader, ",") + "\nb,k1,,succeeded,,,rewrap,a,b\n" + tc.before
			if tc.name == "torn header" {
				content = "bucket,ke"
			}
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			f, rep, err := openReport(path, outputFlags{})
			if err != nil {
				t.Fatal(err)
			}
			if err := rep.Add(pipeline.Outcome{Bucket: "b", Key: "k3", Status: pipeline.StatusSucceeded}); err != nil {
				t.Fatal(err)
			}
			if err := rep.Flush(); err != nil {
				t.Fatal(err)
			}
			f.Close()
			b, _ := os.ReadFile(path)
			recs, err := csv.NewReader(strings.NewReader(string(b))).ReadAll()
			if err != nil {
				t.Fatalf("the report is not CSV after a resume: %v\n%s", err, b)
			}
			if len(recs) != tc.rows+1 || recs[len(recs)-1][1] != "k3" {
				t.Errorf("rows %q, want the %d whole ones then k3", recs, tc.rows)
			}
		})
	}
}
