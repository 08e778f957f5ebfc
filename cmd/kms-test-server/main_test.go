package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/rotator-dev/rotator/internal/testenv"
)

// TestMain lets the test binary act as kms-test-server for the subprocess
// test.
func TestMain(m *testing.M) {
	if os.Getenv("KMS_TEST_SERVER_BE_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-addr", "0.0.0.0:7071"},
		{"-addr", ":7071"},
		{"-addr", "10.1.2.3:7071"},
		{"-rps", "-1"},
		{"-throttle-fraction", "1.5"},
		{"-throttle-fraction", "-0.1"},
		{"-throttle-fraction", "NaN"},
		{"-latency", "soon"},
		{"-no-such-flag"},
		{"extra"},
	} {
		var stderr strings.Builder
		if code := run(t.Context(), args, &stderr); code != exitUsage {
			t.Errorf("run(%q) = %d, want %d; stderr:\n%s", args, code, exitUsage, stderr.String())
		}
		if !strings.Contains(stderr.String(), "kms-test-server: error: ") {
			t.Errorf("run(%q) stderr lacks the error line:\n%s", args, stderr.String())
		}
	}
	var stderr strings.Builder
	if code := run(t.Context(), []string{"-h"}, &stderr); code != exitOK || !strings.Contains(stderr.String(), "-pid-file") {
		t.Errorf("-h: code %d, usage:\n%s", code, stderr.String())
	}
	if code := run(t.Context(), []string{"-addr", "127.0.0.1:0", "-seed", filepath.Join(t.TempDir(), "missing.json")}, io.Discard); code != exitFatal {
		t.Errorf("missing seed file: code %d, want %d", code, exitFatal)
	}
}

var listening = regexp.MustCompile(`listening on (http://127\.0\.0\.1:[0-9]+)`)

func client(url string) *kms.Client {
	return kms.New(kms.Options{
		Region:       "eu-central-1",
		BaseEndpoint: aws.String(url),
		Credentials:  credentials.NewStaticCredentialsProvider("AKID", "secret", ""),
	})
}

func TestRunServesUntilCancelled(t *testing.T) {
	dir := t.TempDir()
	pid := filepath.Join(dir, "kms.pid")
	state := filepath.Join(dir, "state.json")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stderr testenv.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-pid-file", pid, "-state", state, "-region", "eu-central-1", "-latency", "1ms", "-v"}, &stderr)
	}()
	var url string
	for deadline := time.Now().Add(10 * time.Second); url == "" && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if m := listening.FindStringSubmatch(stderr.String()); m != nil {
			url = m[1]
		}
	}
	if url == "" {
		t.Fatalf("no listening line:\n%s", stderr.String())
	}
	b, err := os.ReadFile(pid)
	if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("pid file %q, %v", b, err)
	}
	out, err := client(url).CreateKey(t.Context(), &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(*out.KeyMetadata.Arn, "arn:aws:kms:eu-central-1:111122223333:key/") {
		t.Errorf("key ARN %s", *out.KeyMetadata.Arn)
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("exit code %d; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	if _, err := os.Stat(pid); !os.IsNotExist(err) {
		t.Errorf("pid file left behind: %v", err)
	}
	if _, err := os.Stat(state); err != nil {
		t.Errorf("state file: %v", err)
	}
	if log := stderr.String(); !strings.Contains(log, "kms CreateKey 200") || !strings.Contains(log, "stopped") {
		t.Errorf("log:\n%s", log)
	}
}

// TestThrottleFractionFlag: -throttle-fraction reaches the server.
func TestThrottleFractionFlag(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stderr testenv.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-throttle-fraction", "1", "-throttle-seed", "7"}, &stderr)
	}()
	var url string
	for deadline := time.Now().Add(10 * time.Second); url == "" && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if m := listening.FindStringSubmatch(stderr.String()); m != nil {
			url = m[1]
		}
	}
	if url == "" {
		t.Fatalf("no listening line:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "throttled at random 1") {
		t.Errorf("the listening line does not show the fraction:\n%s", stderr.String())
	}
	c := kms.New(kms.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(url),
		Credentials:  credentials.NewStaticCredentialsProvider("AKID", "secret", ""),
		Retryer:      aws.NopRetryer{},
	})
	key, err := c.CreateKey(t.Context(), &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Encrypt(t.Context(), &kms.EncryptInput{KeyId: key.KeyMetadata.KeyId, Plaintext: []byte("x")})
	if err == nil || !strings.Contains(err.Error(), "ThrottlingException") {
		t.Errorf("Encrypt at -throttle-fraction 1: %v, want ThrottlingException", err)
	}
	cancel()
	if code := <-done; code != exitOK {
		t.Errorf("exit code %d; stderr:\n%s", code, stderr.String())
	}
}

// TestSIGTERM runs the real main in a subprocess and stops it with SIGTERM.
func TestSIGTERM(t *testing.T) {
	dir := t.TempDir()
	pid := filepath.Join(dir, "kms.pid")
	cmd := exec.Command(os.Args[0], "-addr", "127.0.0.1:0", "-pid-file", pid)
	cmd.Env = append(os.Environ(), "KMS_TEST_SERVER_BE_MAIN=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := bufio.NewScanner(stderr)
	if !lines.Scan() {
		t.Fatalf("no output: %v", lines.Err())
	}
	first := lines.Text()
	m := listening.FindStringSubmatch(first)
	if m == nil {
		t.Fatalf("first line %q lacks the address", first)
	}
	if _, err := client(m[1]).ListKeys(t.Context(), &kms.ListKeysInput{}); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		for lines.Scan() { // drain stderr before Wait closes the pipe
		}
		errc <- cmd.Wait()
	}()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	if _, err := os.Stat(pid); !os.IsNotExist(err) {
		t.Errorf("pid file left behind: %v", err)
	}
}
