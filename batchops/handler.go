package batchops

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/pipeline"
)

// Invocation schema versions S3 Batch Operations sends.
const (
	Schema1 = "1.0"
	Schema2 = "2.0"
)

// DefaultClaimLease is how long an execution environment's claim on an
// object lasts without a renewal (ROTATOR_CLAIM_LEASE changes it). It is
// renewed while the object is changed, so it only matters after an
// invocation was killed (a timeout): the object is then claimable again
// after this long.
const DefaultClaimLease = 2 * time.Minute

// DefaultMargin is the time kept before the invocation's deadline to stop
// working on the object and answer: a change cut there is answered
// TemporaryFailure and settled by the next attempt, rather than killed
// mid-call by the timeout.
const DefaultMargin = 3 * time.Second

// Handler answers Batch Operations' invocations. One Handler serves an
// execution environment: it opens the run's clients, keys and ledger at
// the first invocation and keeps them while the settings stay the same.
// The zero value reads os.Getenv and opens with pipeline.Open.
type Handler struct {
	// Getenv reads the function's environment (default os.Getenv).
	Getenv func(string) string
	// Open opens a run's environment (default: pipeline.Open with KMS
	// retries that fit an invocation, see OpenOptions).
	Open func(context.Context, pipeline.Config) (*pipeline.Env, error)
	// Log gets one line per task (default: JSON lines on stderr, which
	// Lambda sends to CloudWatch Logs).
	Log *slog.Logger
	// Margin before the invocation's deadline (default DefaultMargin).
	Margin time.Duration

	mu   sync.Mutex
	sess *session
}

// OpenOptions are the options of the default Open: Batch Operations
// retries a task answered TemporaryFailure, so a throttled KMS call is
// given a few quick attempts rather than the CLI's minutes.
var OpenOptions = pipeline.OpenOptions{KMSMaxAttempts: 3, KMSMaxBackoff: time.Second}

// session is what an execution environment keeps between invocations of
// one job.
type session struct {
	key   string // the settings it was opened with
	cfg   pipeline.Config
	runID string
	env   *pipeline.Env
	lease *pipeline.RunLease
	core  *pipeline.Core
}

func (h *Handler) getenv(k string) string {
	if h.Getenv != nil {
		return h.Getenv(k)
	}
	return os.Getenv(k)
}

func (h *Handler) log() *slog.Logger {
	if h.Log != nil {
		return h.Log
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, nil))
}

// task is one task of either schema.
type task struct {
	ID, Bucket, Key, VersionID string
	// BucketErr: the bucket could not be read from the task.
	BucketErr error
}

// invocation is an event of either schema.
type invocation struct {
	Schema, ID, JobID string
	UserArgs          map[string]string
	Tasks             []task
}

// decode reads an event of schema 1.0 (events.S3BatchJobEvent: the bucket
// as an ARN, no userArguments) or 2.0 (events.S3BatchJobEventV2: the
// bucket's name, userArguments).
func decode(raw []byte) (invocation, error) {
	var head struct {
		Schema string `json:"invocationSchemaVersion"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return invocation{}, fmt.Errorf("the event is not an S3 Batch Operations invocation: %w", err)
	}
	switch head.Schema {
	case Schema1:
		var e events.S3BatchJobEvent
		if err := json.Unmarshal(raw, &e); err != nil {
			return invocation{}, fmt.Errorf("read the schema 1.0 event: %w", err)
		}
		inv := invocation{Schema: e.InvocationSchemaVersion, ID: e.InvocationID, JobID: e.Job.ID}
		for _, t := range e.Tasks {
			b, err := bucketOfARN(t.S3BucketARN)
			inv.Tasks = append(inv.Tasks, task{ID: t.TaskID, Bucket: b, BucketErr: err, Key: t.S3Key, VersionID: t.S3VersionID})
		}
		return inv, nil
	case Schema2:
		var e events.S3BatchJobEventV2
		if err := json.Unmarshal(raw, &e); err != nil {
			return invocation{}, fmt.Errorf("read the schema 2.0 event: %w", err)
		}
		inv := invocation{Schema: e.InvocationSchemaVersion, ID: e.InvocationID, JobID: e.Job.ID, UserArgs: e.Job.UserArguments}
		for _, t := range e.Tasks {
			inv.Tasks = append(inv.Tasks, task{ID: t.TaskID, Bucket: t.S3Bucket, Key: t.S3Key, VersionID: t.S3VersionID})
		}
		return inv, nil
	}
	// Answer each task rather than fail the invocation: the report then
	// says why.
	var e events.S3BatchJobEventV2
	_ = json.Unmarshal(raw, &e)
	inv := invocation{Schema: head.Schema, ID: e.InvocationID, JobID: e.Job.ID}
	for _, t := range e.Tasks {
		inv.Tasks = append(inv.Tasks, task{ID: t.TaskID})
	}
	return inv, fmt.Errorf("invocation schema %q: rotator reads 1.0 and 2.0 (set InvocationSchemaVersion of the job's LambdaInvoke operation)", head.Schema)
}

// bucketOfARN returns the bucket of an S3 bucket ARN,
// arn:PARTITION:s3:::BUCKET (region and account are empty for buckets).
func bucketOfARN(arn string) (string, error) {
	p := strings.SplitN(arn, ":", 6)
	if len(p) != 6 || p[0] != "arn" || p[2] != "s3" || p[5] == "" || strings.Contains(p[5], "/") {
		return "", fmt.Errorf("s3BucketArn %q is not a bucket ARN (arn:aws:s3:::BUCKET)", arn)
	}
	return p[5], nil
}

// Handle answers one invocation: one result per task, in the tasks'
// order. It returns an error only for an event that is not a Batch
// Operations invocation at all (Lambda reports it as a function error).
func (h *Handler) Handle(ctx context.Context, raw json.RawMessage) (events.S3BatchJobResponse, error) {
	inv, err := decode(raw)
	resp := events.S3BatchJobResponse{InvocationSchemaVersion: inv.Schema, TreatMissingKeysAs: string(pipeline.TaskPermanentFailure),
		InvocationID: inv.ID, Results: make([]events.S3BatchJobResult, 0, len(inv.Tasks))}
	if err != nil && len(inv.Tasks) == 0 {
		return resp, err
	}
	answerAll := func(code pipeline.TaskCode, msg string) (events.S3BatchJobResponse, error) {
		for _, t := range inv.Tasks {
			resp.Results = append(resp.Results, events.S3BatchJobResult{TaskID: t.ID, ResultCode: string(code), ResultString: msg})
			h.log().Error("task not run", "task_id", t.ID, "invocation_id", inv.ID, "job_id", inv.JobID, "code", string(code), "result", msg)
		}
		return resp, nil
	}
	if err != nil {
		return answerAll(pipeline.TaskPermanentFailure, "rotator: "+err.Error())
	}
	h.mu.Lock() // one invocation at a time per execution environment
	defer h.mu.Unlock()
	sess, err := h.session(ctx, inv)
	if err != nil {
		code, msg := pipeline.TaskResultOf(pipeline.Outcome{}, err)
		return answerAll(code, "rotator: "+msg)
	}
	runCtx, stop := sess.lease.Keep(ctx)
	defer stop()
	for _, t := range inv.Tasks {
		code, msg := h.task(runCtx, sess, inv, t)
		resp.Results = append(resp.Results, events.S3BatchJobResult{TaskID: t.ID, ResultCode: string(code), ResultString: msg})
	}
	if sess.lease.Lost() != nil {
		// Another holder took the lease over (it cannot be this
		// environment's own: its name is unique): start afresh next time.
		h.closeSession()
	}
	return resp, nil
}

// task processes one task.
func (h *Handler) task(ctx context.Context, sess *session, inv invocation, t task) (pipeline.TaskCode, string) {
	start := time.Now()
	o := pipeline.Outcome{Bucket: t.Bucket, Key: t.Key, VersionID: t.VersionID}
	var perr error
	key, err := url.QueryUnescape(t.Key)
	switch {
	case t.BucketErr != nil:
		o.Status, o.ErrorCode, o.Message = pipeline.StatusFailed, "InvalidTask", t.BucketErr.Error()
	case err != nil:
		o.Status, o.ErrorCode, o.Message = pipeline.StatusFailed, "InvalidTask",
			fmt.Sprintf("s3Key %q is not URL-encoded as Batch Operations sends keys: %v", t.Key, err)
	default:
		o.Key = key
		o, perr = h.process(ctx, sess, t.Bucket, key, t.VersionID)
	}
	code, msg := pipeline.TaskResultOf(o, perr)
	lvl := slog.LevelInfo
	if code != pipeline.TaskSucceeded {
		lvl = slog.LevelWarn
	}
	h.log().Log(ctx, lvl, "object", "run_id", sess.runID, "task_id", t.ID, "invocation_id", inv.ID, "job_id", inv.JobID,
		"bucket", o.Bucket, "key", o.Key, "version_id", o.VersionID, "from_key", o.FromKey, "to_key", o.ToKey,
		"op", o.Action, "outcome", string(o.Status), "code", o.ErrorCode, "result_code", string(code), "result", msg,
		"duration_ms", time.Since(start).Milliseconds())
	return code, msg
}

// process runs the per-object core on one object, stopping Margin before
// the invocation's deadline.
func (h *Handler) process(ctx context.Context, sess *session, bucket, key, versionID string) (pipeline.Outcome, error) {
	o := pipeline.Outcome{Bucket: bucket, Key: key, VersionID: versionID}
	margin := h.Margin
	if margin <= 0 {
		margin = DefaultMargin
	}
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-margin))
		defer cancel()
	}
	suffix := sess.cfg.InstructionSuffix
	if suffix == "" {
		suffix = inventory.DefaultExcludeSuffix
	}
	it, keep, err := inventory.One(ctx, sess.env.S3, bucket, key, versionID, suffix)
	switch {
	case errors.Is(err, inventory.ErrMalformed):
		o.Status, o.ErrorCode, o.Message = pipeline.StatusFailed, "InvalidTask", err.Error()
		return o, nil
	case err != nil:
		o.Status, o.ErrorCode, o.Message = pipeline.StatusFailed, pipeline.CodeS3, err.Error()
		return o, nil
	case !keep:
		o.Status, o.ErrorCode = pipeline.StatusSkipped, "InstructionFile"
		o.Message = "the instruction file of an object that exists: it is rotated with its object (that object's task)"
		return o, nil
	}
	return sess.core.Process(ctx, it)
}

// session returns the execution environment's session for inv's
// settings, opening one (clients, keys, ledger, the run record, the
// environment's lease) when there is none or the settings changed.
func (h *Handler) session(ctx context.Context, inv invocation) (*session, error) {
	st, err := Resolve(h.getenv, inv.UserArgs, inv.JobID)
	if err != nil {
		return nil, err
	}
	cfg, err := st.Config(inv.JobID)
	if err != nil {
		return nil, err
	}
	conf, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	key := st.RunID + "\x00" + string(conf)
	if h.sess != nil && h.sess.key == key {
		return h.sess, nil
	}
	h.closeSession()
	open := h.Open
	if open == nil {
		open = func(ctx context.Context, cfg pipeline.Config) (*pipeline.Env, error) {
			return pipeline.Open(ctx, cfg, OpenOptions)
		}
	}
	env, err := open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			env.Close()
		}
	}()
	rec := &ledger.Run{ID: st.RunID, Config: conf, State: ledger.RunRunning}
	if err := env.Ledger.CreateRun(ctx, rec); err != nil && !errors.Is(err, ledger.ErrRunExists) {
		return nil, err
	}
	host, name := h.environmentName()
	lease, err := pipeline.AcquireRunLease(ctx, env.Ledger, st.RunID, name, pipeline.LeaseOptions{
		Host: host,
		// The name is this environment's alone: a holder of it is
		// this process, so nothing is ever taken over before it expires.
		TakeOver: func(ledger.Lease) bool { return false },
	})
	if err != nil {
		return nil, err
	}
	claim := DefaultClaimLease
	if v := h.getenv("ROTATOR_CLAIM_LEASE"); v != "" {
		if claim, err = time.ParseDuration(v); err != nil || claim < time.Second {
			return nil, fmt.Errorf("ROTATOR_CLAIM_LEASE %q: want a duration of a second or more, such as 2m", v)
		}
	}
	core := env.Core(st.RunID, lease.Owner())
	core.Lease = claim
	ok = true
	h.sess = &session{key: key, cfg: cfg, runID: st.RunID, env: env, lease: lease, core: core}
	return h.sess, nil
}

// environmentName names this execution environment: the host shown in
// the lease (function name and log stream), and the lease's name,
// "lambda-" and the log stream's id (or a random one).
func (h *Handler) environmentName() (host, lease string) {
	fn, stream := h.getenv("AWS_LAMBDA_FUNCTION_NAME"), h.getenv("AWS_LAMBDA_LOG_STREAM_NAME")
	// A log stream is "YYYY/MM/DD/[VERSION]ID".
	id := stream
	if i := strings.LastIndexByte(id, ']'); i >= 0 {
		id = id[i+1:]
	}
	id = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return -1
	}, id)
	if len(id) < 8 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		id = hex.EncodeToString(b[:])
	}
	if len(id) > 32 {
		id = id[:32]
	}
	host = fn
	if host == "" {
		host, _ = os.Hostname()
	}
	host = strings.ReplaceAll(host+":"+id, "/", "-")
	return host, "lambda-" + id
}

// closeSession releases the session's lease and closes its clients.
func (h *Handler) closeSession() {
	if h.sess == nil {
		return
	}
	_ = h.sess.lease.Release(context.Background())
	_ = h.sess.env.Close()
	h.sess = nil
}

// Close ends the execution environment's session (its lease is released,
// its HSM sessions closed).
func (h *Handler) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closeSession()
}
