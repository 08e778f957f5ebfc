package ledger

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
)

// EventSource is what the exports read; every Ledger is one.
type EventSource interface {
	Events(ctx context.Context, fn func(Event) error) error
}

// ExportColumns are the columns of ExportCSV, and the fields of every line
// of ExportJSONLines, in this order. They are a stable interface for
// auditors: columns are never renamed or removed, new ones only appended.
//
//	bucket, object_key, version_id   the object version changed ("" = null version)
//	run_id, op, method               who changed it and how
//	from_key, to_key                 canonical key ids
//	at                               UTC, RFC 3339 with nanoseconds
//	etag_before, etag_after
//	version_before, version_after
//	old_wrapped_key_sha256           SHA-256 of the replaced wrapped data key
//	new_wrapped_key_sha256           SHA-256 of the wrapped data key that replaced it
var ExportColumns = []string{
	"bucket", "object_key", "version_id", "run_id", "op", "method", "from_key", "to_key",
	"at", "etag_before", "etag_after", "version_before", "version_after", "old_wrapped_key_sha256",
	"new_wrapped_key_sha256",
}

// exportRow has one field per column, in ExportColumns order; no field is
// ever left out of a JSON line.
type exportRow struct {
	Bucket              string `json:"bucket"`
	Key                 string `json:"object_key"`
	VersionID           string `json:"version_id"`
	RunID               string `json:"run_id"`
	Op                  string `json:"op"`
	Method              string `json:"method"`
	FromKey             string `json:"from_key"`
	ToKey               string `json:"to_key"`
	At                  string `json:"at"`
	ETagBefore          string `json:"etag_before"`
	ETagAfter           string `json:"etag_after"`
	VersionBefore       string `json:"version_before"`
	VersionAfter        string `json:"version_after"`
	OldWrappedKeySHA256 string `json:"old_wrapped_key_sha256"`
	NewWrappedKeySHA256 string `json:"new_wrapped_key_sha256"`
}

func toExportRow(e Event) exportRow {
	return exportRow{
		Bucket: e.ID.Bucket, Key: e.ID.Key, VersionID: e.ID.VersionID,
		RunID: e.RunID, Op: e.Op, Method: e.Method, FromKey: e.FromKey, ToKey: e.ToKey,
		At: formatTime(e.At), ETagBefore: e.ETagBefore, ETagAfter: e.ETagAfter,
		VersionBefore: e.VersionBefore, VersionAfter: e.VersionAfter,
		OldWrappedKeySHA256: e.OldWrappedKeySHA256, NewWrappedKeySHA256: e.NewWrappedKeySHA256,
	}
}

func (r exportRow) fields() []string {
	return []string{
		r.Bucket, r.Key, r.VersionID, r.RunID, r.Op, r.Method, r.FromKey, r.ToKey,
		r.At, r.ETagBefore, r.ETagAfter, r.VersionBefore, r.VersionAfter, r.OldWrappedKeySHA256,
		r.NewWrappedKeySHA256,
	}
}

// ExportCSV writes every event of src as RFC 4180 CSV: a header line of
// ExportColumns, then one row per event, in no particular order (sort
// downstream). Values are written as recorded: an S3 key that starts with
// '=' is not defused for spreadsheets.
func ExportCSV(ctx context.Context, w io.Writer, src EventSource) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(ExportColumns); err != nil {
		return err
	}
	err := src.Events(ctx, func(e Event) error {
		return cw.Write(toExportRow(e).fields())
	})
	if err != nil {
		return err
	}
	cw.Flush()
	return cw.Error()
}

// ExportJSONLines writes every event of src as one JSON object per line,
// with exactly the fields of ExportColumns, in that order, in no particular
// order of events.
func ExportJSONLines(ctx context.Context, w io.Writer, src EventSource) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	err := src.Events(ctx, func(e Event) error {
		return enc.Encode(toExportRow(e))
	})
	if err != nil {
		return err
	}
	return bw.Flush()
}
