package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/internal/testenv"
	"github.com/rotator-dev/rotator/rewrap"
)

// throttlingProxy stands in front of the KMS server and answers every
// third request ThrottlingException, so that runs retry.
func throttlingProxy(t *testing.T, target string) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%3 == 0 {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			w.Header().Set("X-Amzn-ErrorType", "ThrottlingException")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"__type":"ThrottlingException","message":"Rate exceeded"}`)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// dataKeys returns the plaintext data key of every sample, unwrapped with
// the key of spec, as a reader of the bucket would.
func (f *cliFixture) dataKeys(t *testing.T, spec string) [][]byte {
	t.Helper()
	d := &rewrap.Deps{AWS: testenv.AWSConfig(t)}
	defer d.Close()
	s, err := rewrap.ParseSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	k, err := rewrap.Open(ctx, s, d)
	if err != nil {
		t.Fatal(err)
	}
	var keys [][]byte
	for _, o := range f.objs {
		get := func(key string) ([]byte, map[string]string) {
			out, err := f.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &f.bucket, Key: &key})
			if err != nil {
				t.Fatal(err)
			}
			defer out.Body.Close()
			b, err := io.ReadAll(out.Body)
			if err != nil {
				t.Fatal(err)
			}
			return b, out.Metadata
		}
		_, meta := get(o.Key)
		var instr []byte
		if envelope.NeedsInstructionFile(meta) {
			instr, _ = get(envelope.InstructionKey(o.Key, envelope.DefaultInstructionSuffix))
		}
		env, err := envelope.Parse(meta, instr, envelope.ParseOptions{AllowLegacy: true})
		if err != nil {
			t.Fatal(err)
		}
		w, cek := rewrap.FromEnvelope(env)
		dek, err := k.Unwrap(ctx, w, cek)
		if err != nil {
			t.Fatalf("%s under %s: %v", o.Key, spec, err)
		}
		keys = append(keys, bytes.Clone(dek.Bytes()))
		dek.Clear()
	}
	return keys
}

// leakForms are the ways a secret could show in a log: as it is, in hex
// and in base64.
func leakForms(secret []byte) []string {
	return []string{string(secret), hex.EncodeToString(secret), strings.ToUpper(hex.EncodeToString(secret)),
		base64.StdEncoding.EncodeToString(secret), base64.RawStdEncoding.EncodeToString(secret),
		base64.URLEncoding.EncodeToString(secret), base64.RawURLEncoding.EncodeToString(secret)}
}

// A rewrap, an HSM migration, a rewrap to a local key and a
// re-encryption, each at --log-level debug with KMS throttling some
// requests and one HSM session for eight workers: no line of their output
// (logs, text, --json) holds a PIN, a plaintext data key or local key
// material in any form, while the logs hold what debug level promises.
func TestCLIDebugLogsHoldNoSecrets(t *testing.T) {
	testenv.Need(t, testenv.PKCS11)
	f := newCLIFixture(t, 8)
	hsm := newHSMKey(t)
	pin, err := os.ReadFile(os.Getenv(testenv.EnvPKCS11PinFile))
	if err != nil {
		t.Fatal(err)
	}
	secrets := [][]byte{bytes.TrimRight(pin, "\r\n")}
	secrets = append(secrets, f.dataKeys(t, "kms:"+f.arnA)...)
	aesKey := make([]byte, 32)
	_, _ = rand.Read(aesKey)
	aesFile := filepath.Join(f.dir, "aes.key")
	if err := os.WriteFile(aesFile, aesKey, 0o600); err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, aesKey)

	kmsProxy := throttlingProxy(t, os.Getenv(testenv.EnvKMSEndpoint))
	ledgerPath := filepath.Join(f.dir, "l.db")
	var all bytes.Buffer
	step := func(name string, args ...string) {
		t.Helper()
		args = append(args, "--source", "s3://"+f.bucket, "--ledger", ledgerPath, "--run-id", name, "--log-level", "debug",
			"--concurrency", "8", "--hsm-sessions", "1", "--report", name+".csv")
		c := f.cmd(append([]string{"run"}, args...)...)
		c.Env = append(c.Env, testenv.EnvKMSEndpoint+"="+kmsProxy)
		var out bytes.Buffer
		c.Stdout, c.Stderr = &out, &out
		if err := c.Run(); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out.String())
		}
		all.Write(out.Bytes())
	}
	step("rewrap", "--from", "kms:"+f.arnA, "--to", "kms:"+f.arnB)
	step("to-hsm", "--from", "kms:"+f.arnB, "--to", hsm)
	step("to-aes", "--from", hsm, "--to", "aes:"+aesFile, "--json")
	step("reencrypt", "--mode", "reencrypt", "--from", "aes:"+aesFile, "--to", "kms:"+f.arnB)
	f.opensUnder(t, f.arnB)
	secrets = append(secrets, f.dataKeys(t, "kms:"+f.arnB)...) // the fresh data keys of the re-encryption

	out := all.String()
	for i, s := range secrets {
		for _, form := range leakForms(s) {
			if strings.Contains(out, form) {
				t.Fatalf("secret %d (%d bytes) is in the output, as %q", i, len(s), form)
			}
		}
	}
	// The scan looked at what debug level logs.
	var objects, attempts, waits int
	for _, line := range strings.Split(out, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil || m["level"] == nil {
			continue
		}
		switch {
		case m["outcome"] != nil:
			objects++
		case m["message"] == "AWS request attempt failed" && m["code"] == "ThrottlingException":
			attempts++
		case m["service"] == "pkcs11":
			waits++
		}
	}
	// (Waits for an HSM session happen only when two workers meet at the
	// one session, which the pipeline mostly avoids: they are counted, not
	// required; TestAcquireWaitLoggedAtDebug in hsmpool proves the line.)
	if objects < 4*len(f.objs) || attempts == 0 {
		t.Errorf("%d object lines (want %d), %d throttled attempts, %d HSM waits: the debug logs lack what they promise", objects, 4*len(f.objs), attempts, waits)
	}
	t.Logf("%d bytes of output, %d object lines, %d throttled attempts, %d HSM waits; %d secrets in 7 forms each not found", len(out), objects, attempts, waits, len(secrets))
}

// run logs one JSON line per object outcome on stderr with the fixed field
// names (warn for a failure, info otherwise) and the summary at info,
// while --json messages go to stdout, every line of each stream decoding
// as its kind; --log-format console writes the same lines for people.
func TestCLILogsOneLinePerObjectOutcome(t *testing.T) {
	f := newCLIFixture(t, 6)
	bad := "corrupt/object"
	if _, err := f.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &f.bucket, Key: &bad, Body: strings.NewReader("x"),
		Metadata: map[string]string{"x-amz-key-v2": "AAAA", "x-amz-iv": "short", "x-amz-cek-alg": "AES/GCM/NoPadding",
			"x-amz-wrap-alg": "kms+context", "x-amz-matdesc": "{}"}}); err != nil {
		t.Fatal(err)
	}
	c := f.cmd("run", "--source", "s3://"+f.bucket, "--to", "kms:"+f.arnB, "--ledger", filepath.Join(f.dir, "l.db"),
		"--run-id", "logs", "--json", "--shard", "0/1")
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err == nil {
		t.Fatal("want exit 3 for the corrupt object")
	}
	perKey := map[string]map[string]any{}
	var summary map[string]any
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("stderr holds a line that is no JSON: %q", line)
		}
		if m["level"] == nil || m["time"] == nil || m["message"] == nil || m["run_id"] != "logs" && m["exit_code"] == nil {
			t.Errorf("a log line without level, time, message or run_id: %s", line)
		}
		if m["message_type"] != nil {
			t.Errorf("a --json message on stderr: %s", line)
		}
		if k, ok := m["key"].(string); ok && m["outcome"] != nil {
			if perKey[k] != nil {
				t.Errorf("two lines for %s", k)
			}
			perKey[k] = m
		}
		if m["message"] == "run finished" {
			summary = m
		}
	}
	if len(perKey) != len(f.objs)+1 {
		t.Errorf("%d object lines, want %d:\n%s", len(perKey), len(f.objs)+1, stderr.String())
	}
	for _, o := range f.objs {
		m := perKey[o.Key]
		if m == nil || m["level"] != "info" || m["bucket"] != f.bucket || m["op"] != "rewrap" || m["outcome"] != "succeeded" ||
			m["to_key"] != f.arnB || m["from_key"] != f.arnA || m["shard"] != "0/1" || m["duration_ms"] == nil {
			t.Errorf("%s: %v", o.Key, m)
		}
	}
	if m := perKey[bad]; m == nil || m["level"] != "warn" || m["outcome"] != "failed" || m["code"] != "BadEnvelope" {
		t.Errorf("the corrupt object's line: %v", m)
	}
	if summary == nil || summary["level"] != "info" || summary["objects_done"] != float64(len(f.objs)+1) {
		t.Errorf("summary line: %v", summary)
	}
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil || m["message_type"] == nil {
			t.Errorf("stdout holds a line that is no --json message: %q", line)
		}
	}

	code, out := f.rotator(t, "run", "--source", "s3://"+f.bucket, "--to", "kms:"+f.arnB, "--ledger", filepath.Join(f.dir, "l.db"),
		"--run-id", "console", "--log-format", "console", "--no-progress")
	if code != exitPartial || !strings.Contains(out, "WRN") || !strings.Contains(out, "code=BadEnvelope") ||
		!strings.Contains(out, "rotator: 1 objects failed") || strings.Contains(out, `{"level"`) {
		t.Errorf("console format (exit %d):\n%s", code, out)
	}
}
