package main

import (
	"io"
	"testing"
	"time"

	"github.com/rotator-dev/rotator/internal/logs"
	"github.com/rotator-dev/rotator/pipeline"
)

// BenchmarkLogOutcome is the cost of one object's log line (JSON, info).
func BenchmarkLogOutcome(b *testing.B) {
	l, err := logs.New(io.Discard, logs.Options{Level: "info", Format: logs.FormatJSON})
	if err != nil {
		b.Fatal(err)
	}
	l = l.With().Str(logs.RunID, "cmk-2026").Logger()
	o := pipeline.Outcome{Bucket: "data", Key: "2025/reports/q3/report-000123.pdf", Status: pipeline.StatusSucceeded, Action: "rewrap",
		FromKey: "arn:aws:kms:us-east-1:111122223333:key/3cfba966-9921-4b71-887a-c620ec25f45d",
		ToKey:   "arn:aws:kms:us-east-1:111122223333:key/d79467f8-6374-484e-8df6-2307f9ab4065", Message: "kms-reencrypt", Duration: 32 * time.Millisecond}
	b.ReportAllocs()
	for b.Loop() {
		logOutcome(l, o)
	}
}
