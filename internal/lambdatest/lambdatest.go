// Package lambdatest runs rotator's Lambda handler (cmd/rotator-batchops)
// as AWS Lambda would, for tests: it builds the bootstrap for an OS-only
// runtime (provided.al2023), starts the AWS Lambda Runtime Interface
// Emulator (aws-lambda-rie, which scripts/stack installs) on 127.0.0.1
// with it, and sends it S3 Batch Operations events built from a CSV
// manifest, one task per invocation as Batch Operations sends them.
package lambdatest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/rotator-dev/rotator/internal/testenv"
)

// Bootstrap builds the handler as a Lambda bootstrap (GOOS=linux, cgo on
// for the PKCS#11 backend, the lambda.norpc tag as for provided.al2023)
// into a temporary directory, and returns its path.
func Bootstrap(t testing.TB) string {
	t.Helper()
	dir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/rotator-dev/rotator").Output()
	if err != nil {
		t.Fatalf("find the rotator module: %v", err)
	}
	out := filepath.Join(t.TempDir(), "bootstrap")
	c := exec.Command("go", "build", "-tags", "lambda.norpc", "-o", out, "./cmd/rotator-batchops")
	c.Dir = strings.TrimSpace(string(dir))
	c.Env = append(os.Environ(), "GOOS=linux", "CGO_ENABLED=1", "GOFLAGS=-buildvcs=false")
	if b, err := c.CombinedOutput(); err != nil {
		t.Fatalf("build the bootstrap: %v\n%s", err, b)
	}
	return out
}

// Emulator is a running aws-lambda-rie serving one function: one
// execution environment, one invocation at a time.
type Emulator struct {
	// URL is the invocation endpoint.
	URL  string
	cmd  *exec.Cmd
	logs *testenv.Buffer
}

// Start starts the emulator with bootstrap, bound to 127.0.0.1 (both its
// invocation endpoint and the runtime API), with env (KEY=VALUE) added to
// the test's environment: the emulator hands its environment to the
// function. It is stopped when the test ends.
func Start(t testing.TB, bootstrap string, env ...string) *Emulator {
	t.Helper()
	testenv.Need(t, testenv.LambdaRIE)
	invokePort, apiPort := freePort(t), freePort(t)
	e := &Emulator{URL: "http://127.0.0.1:" + invokePort + "/2015-03-31/functions/function/invocations", logs: &testenv.Buffer{}}
	e.cmd = exec.Command(os.Getenv(testenv.EnvLambdaRIE),
		"--runtime-interface-emulator-address", "127.0.0.1:"+invokePort,
		"--runtime-api-address", "127.0.0.1:"+apiPort,
		bootstrap)
	e.cmd.Env = append(os.Environ(), env...)
	e.cmd.Stdout, e.cmd.Stderr = e.logs, e.logs
	// Its own process group, so that the bootstrap it starts is stopped
	// with it.
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := e.cmd.Start(); err != nil {
		t.Fatalf("start aws-lambda-rie: %v", err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
		_ = e.cmd.Wait()
		if t.Failed() {
			t.Logf("aws-lambda-rie and function output:\n%s", e.Logs())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+invokePort, time.Second)
		if err == nil {
			c.Close()
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("aws-lambda-rie did not listen on 127.0.0.1:%s: %v\n%s", invokePort, err, e.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Logs returns what the emulator and the function printed so far.
func (e *Emulator) Logs() string { return e.logs.String() }

// Invoke sends event (marshalled to JSON) and decodes the function's
// answer into a Batch Operations response. A function error (the handler
// returned an error, or panicked, or timed out) is returned as an error.
func (e *Emulator) Invoke(ctx context.Context, event any) (events.S3BatchJobResponse, error) {
	var resp events.S3BatchJobResponse
	body, err := json.Marshal(event)
	if err != nil {
		return resp, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.URL, bytes.NewReader(body))
	if err != nil {
		return resp, err
	}
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		return resp, err
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return resp, err
	}
	var fnErr struct {
		Message string `json:"errorMessage"`
		Type    string `json:"errorType"`
	}
	if r.StatusCode != http.StatusOK || json.Unmarshal(b, &fnErr) == nil && fnErr.Type != "" {
		return resp, fmt.Errorf("function error (HTTP %d): %s", r.StatusCode, b)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&resp); err != nil {
		return resp, fmt.Errorf("the answer is not a Batch Operations response: %v: %s", err, b)
	}
	return resp, nil
}

// Task is one line of a CSV manifest (S3BatchOperations_CSV_20180820:
// bucket,key[,version], the key URL-encoded), kept as Batch Operations
// passes it to the function: the key still encoded.
type Task struct {
	Bucket, EncodedKey, VersionID string
}

// ReadManifest reads a CSV manifest. Lines are simple fields (a manifest's
// keys are URL-encoded, so they hold no comma or quote).
func ReadManifest(r io.Reader) ([]Task, error) {
	var tasks []Task
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" {
			continue
		}
		f := strings.Split(line, ",")
		if len(f) < 2 || len(f) > 3 {
			return nil, fmt.Errorf("manifest line %d: want bucket,key[,version]: %q", n, line)
		}
		t := Task{Bucket: f[0], EncodedKey: f[1]}
		if len(f) == 3 {
			t.VersionID = f[2]
		}
		tasks = append(tasks, t)
	}
	return tasks, sc.Err()
}

// EventV1 is the schema 1.0 invocation of task number i of job jobID: the
// bucket as an ARN, no userArguments.
func EventV1(jobID string, i int, t Task) events.S3BatchJobEvent {
	return events.S3BatchJobEvent{
		InvocationSchemaVersion: "1.0", InvocationID: invocationID(jobID, i), Job: events.S3BatchJob{ID: jobID},
		Tasks: []events.S3BatchJobTask{{TaskID: TaskID(jobID, i), S3Key: t.EncodedKey, S3VersionID: t.VersionID, S3BucketARN: "arn:aws:s3:::" + t.Bucket}},
	}
}

// EventV2 is the schema 2.0 invocation of task number i of job jobID: the
// bucket's name, and the job's userArguments. A task without a version
// has s3VersionId null, as Batch Operations sends it.
func EventV2(jobID string, userArgs map[string]string, i int, t Task) any {
	task := map[string]any{"taskId": TaskID(jobID, i), "s3Key": t.EncodedKey, "s3VersionId": nil, "s3Bucket": t.Bucket}
	if t.VersionID != "" {
		task["s3VersionId"] = t.VersionID
	}
	return map[string]any{
		"invocationSchemaVersion": "2.0",
		"invocationId":            invocationID(jobID, i),
		"job":                     events.S3BatchJobV2{ID: jobID, UserArguments: userArgs},
		"tasks":                   []any{task},
	}
}

// TaskID is the task id EventV1 and EventV2 give task number i.
func TaskID(jobID string, i int) string { return fmt.Sprintf("%s-task-%d", jobID, i) }

func invocationID(jobID string, i int) string { return fmt.Sprintf("%s-invocation-%d", jobID, i) }

func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, p, _ := net.SplitHostPort(l.Addr().String())
	return p
}
