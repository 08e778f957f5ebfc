package batchops

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/rotator-dev/rotator/pipeline"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestResolve(t *testing.T) {
	base := map[string]string{"ROTATOR_LEDGER": "dynamodb://t", "ROTATOR_TO": "kms:alias/b"}
	st, err := Resolve(env(base), nil, "0b8c-job")
	if err != nil || st.To != "kms:alias/b" || st.Ledger != "dynamodb://t" || st.RunID != "batchops-0b8c-job" || st.From != nil {
		t.Fatalf("schema 1.0 settings: %+v, %v", st, err)
	}
	st, err = Resolve(env(map[string]string{"ROTATOR_LEDGER": "dynamodb://t"}), map[string]string{
		"to": "kms:alias/b", "from": " kms:alias/a , kms:alias/z,", "mode": "reencrypt", "runId": "r1", "kmsRps": "50",
	}, "job")
	if err != nil || st.To != "kms:alias/b" || len(st.From) != 2 || st.From[1] != "kms:alias/z" || st.Mode != "reencrypt" || st.RunID != "r1" || st.KMSRPS != 50 {
		t.Fatalf("schema 2.0 settings: %+v, %v", st, err)
	}
	// The same value in both places is fine.
	if _, err := Resolve(env(base), map[string]string{"to": "kms:alias/b"}, "job"); err != nil {
		t.Errorf("same value twice: %v", err)
	}
	for _, c := range []struct {
		env  map[string]string
		args map[string]string
		want string
	}{
		{base, map[string]string{"to": "kms:alias/c"}, "contradicts the function's ROTATOR_TO"},
		{base, map[string]string{"ledger_table": "x"}, "unknown userArguments ledger_table"},
		{base, map[string]string{"kmsRps": "fast"}, "kmsRps"},
		{map[string]string{"ROTATOR_LEDGER": "dynamodb://t"}, nil, "no target key"},
		{map[string]string{"ROTATOR_TO": "kms:alias/b"}, nil, "needs a DynamoDB ledger"},
		{map[string]string{"ROTATOR_TO": "kms:alias/b", "ROTATOR_LEDGER": "rotator-ledger.db"}, nil, "needs a DynamoDB ledger"},
	} {
		if _, err := Resolve(env(c.env), c.args, "job"); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Resolve(%v, %v) = %v, want %q", c.env, c.args, err, c.want)
		}
	}
	if _, err := Resolve(env(base), nil, ""); err == nil || !strings.Contains(err.Error(), "runId") {
		t.Errorf("no job id: %v", err)
	}
}

func TestSettingsConfig(t *testing.T) {
	st := Settings{To: "kms:alias/b", Ledger: "dynamodb://t", Manifest: "s3://ops/m.csv"}
	cfg, err := st.Config("job")
	if err != nil || cfg.List != "s3://ops/m.csv" || cfg.Concurrency != 1 {
		t.Errorf("Config = %+v, %v", cfg, err)
	}
	st.Manifest = ""
	if cfg, err = st.Config("job"); err != nil || cfg.List != "s3-batch-operations-job:job" {
		t.Errorf("Config without a manifest = %+v, %v", cfg, err)
	}
	st.Mode = "shred"
	if _, err := st.Config("job"); err == nil {
		t.Error("mode shred accepted")
	}
}

func TestDecode(t *testing.T) {
	v1 := `{"invocationSchemaVersion":"1.0","invocationId":"inv","job":{"id":"job"},
		"tasks":[{"taskId":"t1","s3Key":"a%2Fb+c","s3VersionId":"v1","s3BucketArn":"arn:aws:s3:::bkt"}]}`
	inv, err := decode([]byte(v1))
	if err != nil || inv.Schema != "1.0" || inv.JobID != "job" || len(inv.Tasks) != 1 || inv.Tasks[0].Bucket != "bkt" ||
		inv.Tasks[0].Key != "a%2Fb+c" || inv.Tasks[0].VersionID != "v1" || inv.UserArgs != nil {
		t.Errorf("1.0: %+v, %v", inv, err)
	}
	v2 := `{"invocationSchemaVersion":"2.0","invocationId":"inv","job":{"id":"job","userArguments":{"to":"kms:alias/b"}},
		"tasks":[{"taskId":"t1","s3Key":"k","s3VersionId":null,"s3Bucket":"bkt"}]}`
	inv, err = decode([]byte(v2))
	if err != nil || inv.Schema != "2.0" || inv.Tasks[0].Bucket != "bkt" || inv.Tasks[0].VersionID != "" || inv.UserArgs["to"] != "kms:alias/b" {
		t.Errorf("2.0: %+v, %v", inv, err)
	}
	inv, err = decode([]byte(`{"invocationSchemaVersion":"9.9","invocationId":"inv","tasks":[{"taskId":"t1"}]}`))
	if err == nil || len(inv.Tasks) != 1 || inv.Tasks[0].ID != "t1" {
		t.Errorf("9.9: %+v, %v", inv, err)
	}
	if _, err := decode([]byte(`[1]`)); err == nil {
		t.Error("an array decoded")
	}
	for arn, want := range map[string]string{"arn:aws:s3:::bkt": "bkt", "arn:aws-cn:s3:::b.k-t": "b.k-t", "arn:aws:s3:us-east-1:0123456788:bkt": "bkt"} {
		if got, err := bucketOfARN(arn); err != nil || got != want {
			t.Errorf("bucketOfARN(%s) = %q, %v", arn, got, err)
		}
	}
	for _, arn := range []string{"bkt", "arn:aws:sqs:::q", "arn:aws:s3:::", "arn:aws:s3:::bkt/key"} {
		if _, err := bucketOfARN(arn); err == nil {
			t.Errorf("bucketOfARN(%s) accepted", arn)
		}
	}
}

// TestHandleWithoutSettings: every task is answered, with the reason,
// before anything is opened.
func TestHandleWithoutSettings(t *testing.T) {
	h := &Handler{Getenv: env(nil), Open: func(context.Context, pipeline.Config) (*pipeline.Env, error) {
		t.Fatal("opened without settings")
		return nil, nil
	}}
	ev := `{"invocationSchemaVersion":"2.0","invocationId":"inv","job":{"id":"job"},
		"tasks":[{"taskId":"t1","s3Key":"k","s3VersionId":null,"s3Bucket":"bkt"},{"taskId":"t2","s3Key":"k2","s3VersionId":null,"s3Bucket":"bkt"}]}`
	resp, err := h.Handle(context.Background(), json.RawMessage(ev))
	if err != nil || resp.InvocationID != "inv" || resp.InvocationSchemaVersion != "2.0" || resp.TreatMissingKeysAs != "PermanentFailure" || len(resp.Results) != 2 {
		t.Fatalf("%+v, %v", resp, err)
	}
	for i, r := range resp.Results {
		if r.TaskID != []string{"t1", "t2"}[i] || r.ResultCode != "PermanentFailure" || !strings.Contains(r.ResultString, "no target key") {
			t.Errorf("result %d: %+v", i, r)
		}
	}
	if _, err := h.Handle(context.Background(), json.RawMessage(`{"hello":"world"}`)); err == nil {
		t.Error("a non-Batch Operations event: no error")
	}
}

func TestEnvironmentName(t *testing.T) {
	h := &Handler{Getenv: env(map[string]string{"AWS_LAMBDA_FUNCTION_NAME": "rotator-batchops",
		"AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/02/[$LATEST]0123456789ABCDEF0123456789abcdef99"})}
	host, lease := h.environmentName()
	if lease != "lambda-0123456789abcdef0123456789abcdef" || host != "rotator-batchops:0123456789abcdef0123456789abcdef" {
		t.Errorf("environmentName = %q, %q", host, lease)
	}
	h = &Handler{Getenv: env(nil)}
	_, l1 := h.environmentName()
	_, l2 := h.environmentName()
	if l1 == l2 || !strings.HasPrefix(l1, "lambda-") {
		t.Errorf("outside Lambda: %q, %q (want random, distinct)", l1, l2)
	}
}
