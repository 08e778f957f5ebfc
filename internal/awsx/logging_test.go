package awsx_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/rs/zerolog"

	"github.com/rotator-dev/rotator/internal/awsx"
	"github.com/rotator-dev/rotator/kmsserver"
)

// Each failed attempt of a request that the SDK retries is logged at debug
// level through the logger of the request's context, with the fixed field
// names; at info level, or without a logger, nothing is.
func TestLogAttemptsAtDebug(t *testing.T) {
	t.Parallel()
	s := kmsserver.NewTestServer(t, kmsserver.Options{})
	cfg := s.AWSConfig("")
	cfg.APIOptions = append(cfg.APIOptions, awsx.LogAttempts)
	c := awsx.KMS(cfg, awsx.NewPacer(awsx.PacerOptions{MaxBackoff: time.Millisecond}))
	key, err := c.CreateKey(t.Context(), &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	encrypt := func(level zerolog.Level) string {
		var buf bytes.Buffer
		ctx := zerolog.New(&buf).Level(level).WithContext(t.Context())
		s.FailNext("Encrypt", kmsserver.ErrThrottling, 2)
		if _, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: key.KeyMetadata.KeyId, Plaintext: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		return buf.String()
	}
	out := encrypt(zerolog.DebugLevel)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines for 2 throttled attempts, want 2:\n%s", len(lines), out)
	}
	for i, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		if m["level"] != "debug" || m["service"] != "KMS" || m["operation"] != "Encrypt" || m["attempt"] != float64(i+1) ||
			m["code"] != "ThrottlingException" || m["throttled"] != true || m["http_status"] != float64(400) || m["duration_ms"] == nil {
			t.Errorf("line %d: %s", i+1, l)
		}
	}
	if out := encrypt(zerolog.InfoLevel); out != "" {
		t.Errorf("at info level: %s", out)
	}
	s.FailNext("Encrypt", kmsserver.ErrThrottling, 1)
	if _, err := c.Encrypt(t.Context(), &kms.EncryptInput{KeyId: key.KeyMetadata.KeyId, Plaintext: []byte("x")}); err != nil {
		t.Fatal(err)
	}
}
