package main

import (
	"encoding/json"
	"io"
	"sync"
	"time"

	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/pipeline"
)

// The --json messages: one JSON object per line on stdout, each with a
// message_type. docs/json.md documents every type and field; a test holds
// the two to each other. Field names are those of the logs where they mean
// the same (run_id, bucket, key, version_id, op, outcome, code, from_key,
// to_key, duration_ms). Fields are only ever added.

// Message types.
const (
	msgStatus     = "status"
	msgObject     = "object"
	msgSummary    = "summary"
	msgExitError  = "exit_error"
	msgPlan       = "plan"
	msgRunStatus  = "run_status"
	msgEvent      = "event"
	msgLedgerObj  = "ledger_object"
	msgKeyCounts  = "key_counts"
	msgRun        = "run"
	msgIntent     = "intent"
	msgVersionMsg = "version"
)

// counts are a run's outcome counters.
type counts struct {
	Succeeded  int64 `json:"succeeded"`
	Skipped    int64 `json:"skipped"`
	Pending    int64 `json:"pending"`
	Failed     int64 `json:"failed"`
	Changed    int64 `json:"changed"`
	Unfinished int64 `json:"unfinished"`
	Deleted    int64 `json:"deleted"`
	Left       int64 `json:"left"`
}

func countsOf(s *pipeline.Stats) counts {
	return counts{Succeeded: s.Succeeded.Load(), Skipped: s.Skipped.Load(), Pending: s.Pending.Load(), Failed: s.Failed.Load(),
		Changed: s.Changed.Load(), Unfinished: s.Unfinished.Load(), Deleted: s.Deleted.Load(), Left: s.Left.Load()}
}

// statusMsg is the progress of a run (or verify), every second.
type statusMsg struct {
	MessageType      string  `json:"message_type"`
	RunID            string  `json:"run_id,omitempty"`
	Phase            string  `json:"phase"`
	SecondsElapsed   float64 `json:"seconds_elapsed"`
	ObjectsListed    int64   `json:"objects_listed"`
	ListingDone      bool    `json:"listing_done"`
	ObjectsDone      int64   `json:"objects_done"`
	ObjectsTotal     int64   `json:"objects_total,omitempty"`
	TotalSource      string  `json:"total_source,omitempty"`
	PercentDone      float64 `json:"percent_done,omitempty"`
	ObjectsPerSecond float64 `json:"objects_per_second"`
	ETASeconds       float64 `json:"eta_seconds,omitempty"`
	Counts           counts  `json:"counts"`
	Message          string  `json:"message,omitempty"`
}

// objectMsg is one object's outcome.
type objectMsg struct {
	MessageType string  `json:"message_type"`
	RunID       string  `json:"run_id,omitempty"`
	Bucket      string  `json:"bucket"`
	Key         string  `json:"key"`
	VersionID   string  `json:"version_id,omitempty"`
	Outcome     string  `json:"outcome"`
	Code        string  `json:"code,omitempty"`
	Message     string  `json:"message,omitempty"`
	Op          string  `json:"op,omitempty"`
	FromKey     string  `json:"from_key,omitempty"`
	ToKey       string  `json:"to_key,omitempty"`
	DurationMS  float64 `json:"duration_ms,omitempty"`
}

func objectOf(runID string, o pipeline.Outcome) objectMsg {
	return objectMsg{MessageType: msgObject, RunID: runID, Bucket: o.Bucket, Key: o.Key, VersionID: o.VersionID,
		Outcome: string(o.Status), Code: o.ErrorCode, Message: o.Message, Op: o.Action, FromKey: o.FromKey, ToKey: o.ToKey,
		DurationMS: ms(o.Duration)}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// summaryMsg ends a run, a resume or a verify.
type summaryMsg struct {
	MessageType    string  `json:"message_type"`
	Command        string  `json:"command"`
	RunID          string  `json:"run_id,omitempty"`
	State          string  `json:"state,omitempty"`
	DryRun         bool    `json:"dry_run,omitempty"`
	Key            string  `json:"key,omitempty"`
	Report         string  `json:"report,omitempty"`
	SecondsElapsed float64 `json:"seconds_elapsed"`
	ObjectsListed  int64   `json:"objects_listed"`
	ObjectsDone    int64   `json:"objects_done"`
	Counts         counts  `json:"counts"`
	Error          string  `json:"error,omitempty"`
}

// exitErrorMsg is the last line of a command that exits non-zero.
type exitErrorMsg struct {
	MessageType string `json:"message_type"`
	ExitCode    int    `json:"exit_code"`
	Message     string `json:"message"`
	Hint        string `json:"hint,omitempty"`
}

// planMsg is rotator plan's result.
type planMsg struct {
	MessageType string          `json:"message_type"`
	Config      pipeline.Config `json:"config"`
	TargetKey   string          `json:"target_key"`
	*pipeline.Plan
	DurationSeconds float64 `json:"duration_seconds"`
}

// runStatusMsg is rotator status's result.
type runStatusMsg struct {
	MessageType string           `json:"message_type"`
	RunID       string           `json:"run_id"`
	State       string           `json:"state"`
	Counts      map[string]int64 `json:"counts"`
	Config      pipeline.Config  `json:"config"`
	Positions   []string         `json:"positions,omitempty"`
	Error       string           `json:"error,omitempty"`
	Unfinished  int              `json:"unfinished"`
	Leases      []leaseMsg       `json:"leases,omitempty"`
	CreatedAt   time.Time        `json:"created_at"`
	UpdatedAt   time.Time        `json:"updated_at"`
}

type leaseMsg struct {
	Name    string `json:"name"`
	Holder  string `json:"holder"`
	Host    string `json:"host"`
	PID     int    `json:"pid"`
	Epoch   int64  `json:"epoch"`
	Expires string `json:"expires"`
}

// eventMsg is a lineage event of the ledger.
type eventMsg struct {
	MessageType         string    `json:"message_type"`
	Bucket              string    `json:"bucket"`
	Key                 string    `json:"key"`
	VersionID           string    `json:"version_id,omitempty"`
	RunID               string    `json:"run_id"`
	Op                  string    `json:"op"`
	Method              string    `json:"method,omitempty"`
	FromKey             string    `json:"from_key,omitempty"`
	ToKey               string    `json:"to_key,omitempty"`
	At                  time.Time `json:"at"`
	ETagBefore          string    `json:"etag_before,omitempty"`
	ETagAfter           string    `json:"etag_after,omitempty"`
	VersionBefore       string    `json:"version_before,omitempty"`
	VersionAfter        string    `json:"version_after,omitempty"`
	OldWrappedKeySHA256 string    `json:"old_wrapped_key_sha256,omitempty"`
	NewWrappedKeySHA256 string    `json:"new_wrapped_key_sha256,omitempty"`
}

func eventOf(ev ledger.Event) eventMsg {
	return eventMsg{MessageType: msgEvent, Bucket: ev.ID.Bucket, Key: ev.ID.Key, VersionID: ev.ID.VersionID, RunID: ev.RunID,
		Op: ev.Op, Method: ev.Method, FromKey: ev.FromKey, ToKey: ev.ToKey, At: ev.At.UTC(), ETagBefore: ev.ETagBefore,
		ETagAfter: ev.ETagAfter, VersionBefore: ev.VersionBefore, VersionAfter: ev.VersionAfter,
		OldWrappedKeySHA256: ev.OldWrappedKeySHA256, NewWrappedKeySHA256: ev.NewWrappedKeySHA256}
}

// ledgerObjectMsg is an object's record in the ledger.
type ledgerObjectMsg struct {
	MessageType      string    `json:"message_type"`
	Bucket           string    `json:"bucket"`
	Key              string    `json:"key"`
	VersionID        string    `json:"version_id,omitempty"`
	WrapKey          string    `json:"wrap_key,omitempty"`
	Format           string    `json:"format,omitempty"`
	Placement        string    `json:"placement,omitempty"`
	CEKAlg           string    `json:"cek_alg,omitempty"`
	State            string    `json:"state"`
	ETag             string    `json:"etag,omitempty"`
	RunID            string    `json:"run_id,omitempty"`
	UpdatedAt        time.Time `json:"updated_at"`
	WrappedKeySHA256 string    `json:"wrapped_key_sha256,omitempty"`
}

func ledgerObjectOf(o ledger.Object) ledgerObjectMsg {
	return ledgerObjectMsg{MessageType: msgLedgerObj, Bucket: o.ID.Bucket, Key: o.ID.Key, VersionID: o.ID.VersionID,
		WrapKey: o.WrapKey, Format: o.Format, Placement: o.Placement, CEKAlg: o.CEKAlg, State: string(o.State), ETag: o.ETag,
		RunID: o.RunID, UpdatedAt: o.UpdatedAt.UTC(), WrappedKeySHA256: o.WrappedKeySHA256}
}

// keyCountsMsg is rotator ledger counts's result.
type keyCountsMsg struct {
	MessageType string           `json:"message_type"`
	Counts      map[string]int64 `json:"counts"`
}

// runMsg is one run of rotator ledger runs.
type runMsg struct {
	MessageType string           `json:"message_type"`
	RunID       string           `json:"run_id"`
	State       string           `json:"state"`
	Counts      map[string]int64 `json:"counts"`
	CreatedAt   time.Time        `json:"created_at"`
	UpdatedAt   time.Time        `json:"updated_at"`
}

// intentMsg is one unfinished change of rotator ledger intents.
type intentMsg struct {
	MessageType         string    `json:"message_type"`
	RunID               string    `json:"run_id"`
	Bucket              string    `json:"bucket"`
	Key                 string    `json:"key"`
	VersionID           string    `json:"version_id,omitempty"`
	Op                  string    `json:"op"`
	FromKey             string    `json:"from_key,omitempty"`
	ToKey               string    `json:"to_key,omitempty"`
	OldWrappedKeySHA256 string    `json:"old_wrapped_key_sha256,omitempty"`
	NewWrappedKeySHA256 string    `json:"new_wrapped_key_sha256,omitempty"`
	Since               time.Time `json:"since"`
	Phase               string    `json:"phase,omitempty"`
	UploadID            string    `json:"upload_id,omitempty"`
	InstructionFile     string    `json:"instruction_file,omitempty"`
	CheckpointError     string    `json:"checkpoint_error,omitempty"`
}

// versionMsg is rotator version --json.
type versionMsg struct {
	MessageType string `json:"message_type"`
	Version     string `json:"version"`
	AppID       string `json:"app_id"`
}

// jsonLines writes messages, one per line, safe for concurrent use.
type jsonLines struct {
	mu sync.Mutex
	w  io.Writer
}

func (j *jsonLines) emit(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	_, err = j.w.Write(append(b, '\n'))
	return err
}
