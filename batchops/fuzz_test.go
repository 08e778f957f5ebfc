package batchops

import (
	"encoding/json"
	"maps"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"
)

// FuzzDecode decodes arbitrary bytes as a Batch Operations invocation
// (never a panic) and checks what Handle relies on: a decoded invocation
// is of schema 1.0 or 2.0, has one task per task of the event, in order,
// and each task either names a bucket (no '/', not empty, for a 1.0 ARN)
// or carries the reason it does not (BucketErr, 1.0 only); userArguments
// only come with 2.0. An event that fails to decode runs nothing: its
// tasks (answered PermanentFailure) carry only their ids. What decodes
// re-encodes, through aws-lambda-go's event types, to an event that
// decodes the same.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		// Schema 1.0 as S3 Batch Operations sends it (the bucket as an ARN).
		`{"invocationSchemaVersion":"1.0","invocationId":"YXNkbGZqYWRmaiBhc2RmdW9hZHNmZGpmaGFzbGtkaGZza2RmaAo",` +
			`"job":{"id":"f3cc4f60-61f6-4a2b-8a21-d07600c373ce"},` +
			`"tasks":[{"taskId":"dGFza2lkZ29lc2hlcmUK","s3Key":"customerImage1.jpg","s3VersionId":"1","s3BucketArn":"arn:aws:s3:::amzn-s3-demo-bucket"}]}`,
		`{"invocationSchemaVersion":"1.0","invocationId":"inv","job":{"id":"job"},
		"tasks":[{"taskId":"t1","s3Key":"a%2Fb+c","s3VersionId":"v1","s3BucketArn":"arn:aws:s3:::bkt"},
		{"taskId":"t2","s3Key":"k","s3VersionId":null,"s3BucketArn":"arn:aws-cn:s3:us-east-1:0123456788:b.k-t"},
		{"taskId":"t3","s3Key":"k","s3BucketArn":"arn:aws:s3:::bkt/key"},{"taskId":"t4","s3Key":"k","s3BucketArn":"bkt"}]}`,
		// Schema 2.0 (the bucket's name, userArguments).
		`{"invocationSchemaVersion":"2.0","invocationId":"YXNkbGZqYWRmaiBhc2RmdW9hZHNmZGpmaGFzbGtkaGZza2RmaAo",` +
			`"job":{"id":"f3cc4f60-61f6-4a2b-8a21-d07600c373ce","userArguments":{"to":"kms:alias/b","from":"kms:alias/a,kms:alias/z","mode":"reencrypt"}},` +
			`"tasks":[{"taskId":"dGFza2lkZ29lc2hlcmUK","s3Key":"prefix%2Fcustomer+Image1.jpg","s3VersionId":null,"s3Bucket":"amzn-s3-demo-bucket"}]}`,
		`{"invocationSchemaVersion":"2.0","invocationId":"inv","job":{"id":"job","userArguments":{}},
		"tasks":[{"taskId":"t1","s3Key":"k","s3VersionId":"v","s3Bucket":"bkt"},{"taskId":"t2","s3Key":"","s3Bucket":""}]}`,
		// Other schemas, broken events.
		`{"invocationSchemaVersion":"9.9","invocationId":"inv","tasks":[{"taskId":"t1"},{"taskId":"t2","s3Bucket":"b"}]}`,
		`{"invocationSchemaVersion":"1.0","tasks":5}`,
		`{"invocationSchemaVersion":"2.0","job":{"userArguments":{"a":1}},"tasks":[{"taskId":"t1"}]}`,
		`{"InvocationSchemaVersion":"1.0","invocationSchemaVersion":"2.0","TASKS":[{"TASKID":"t"}]}`,
		`{"hello":"world"}`, `[1]`, `null`, ``, `{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		inv, err := decode(raw)
		// The tasks of the event, in order, as either schema reads them.
		var ev struct {
			Tasks []struct {
				TaskID string `json:"taskId"`
			} `json:"tasks"`
		}
		_ = json.Unmarshal(raw, &ev)
		if err != nil {
			if inv.UserArgs != nil {
				t.Fatalf("failed (%v) with userArguments %v", err, inv.UserArgs)
			}
			for i, tk := range inv.Tasks {
				if tk.Bucket != "" || tk.Key != "" || tk.VersionID != "" {
					t.Fatalf("failed (%v), yet task %d names an object: %+v", err, i, tk)
				}
				if i >= len(ev.Tasks) || tk.ID != ev.Tasks[i].TaskID {
					t.Fatalf("failed (%v): task %d is %+v; the event's tasks are %+v", err, i, tk, ev.Tasks)
				}
			}
			return
		}
		if inv.Schema != Schema1 && inv.Schema != Schema2 {
			t.Fatalf("decoded an invocation of schema %q", inv.Schema)
		}
		if inv.Schema == Schema1 && inv.UserArgs != nil {
			t.Fatalf("schema 1.0 with userArguments %v", inv.UserArgs)
		}
		if len(inv.Tasks) != len(ev.Tasks) {
			t.Fatalf("%d tasks decoded, the event has %d", len(inv.Tasks), len(ev.Tasks))
		}
		for i, tk := range inv.Tasks {
			if tk.ID != ev.Tasks[i].TaskID {
				t.Fatalf("task %d has id %q, the event's is %q", i, tk.ID, ev.Tasks[i].TaskID)
			}
			switch {
			case inv.Schema == Schema2 && tk.BucketErr != nil:
				t.Fatalf("schema 2.0 task %d: bucket error %v", i, tk.BucketErr)
			case tk.BucketErr != nil && tk.Bucket != "":
				t.Fatalf("task %d: bucket %q and bucket error %v", i, tk.Bucket, tk.BucketErr)
			case inv.Schema == Schema1 && tk.BucketErr == nil && (tk.Bucket == "" || strings.Contains(tk.Bucket, "/")):
				t.Fatalf("schema 1.0 task %d: bucket %q accepted", i, tk.Bucket)
			}
		}
		again, err := decode(reencode(t, inv))
		if err != nil {
			t.Fatalf("re-encoded invocation does not decode: %v", err)
		}
		if !sameInvocation(inv, again) {
			t.Fatalf("round trip changed the invocation:\n got %+v\nwant %+v", again, inv)
		}
	})
}

// reencode writes inv back as an event of its schema; a schema 1.0 task
// whose bucket could not be read gets an ARN that cannot be either.
func reencode(t *testing.T, inv invocation) []byte {
	var v any
	switch inv.Schema {
	case Schema1:
		e := events.S3BatchJobEvent{InvocationSchemaVersion: inv.Schema, InvocationID: inv.ID, Job: events.S3BatchJob{ID: inv.JobID}}
		for _, tk := range inv.Tasks {
			arn := "arn:aws:s3:::" + tk.Bucket
			if tk.BucketErr != nil {
				arn = "arn:aws:s3:::"
			}
			e.Tasks = append(e.Tasks, events.S3BatchJobTask{TaskID: tk.ID, S3Key: tk.Key, S3VersionID: tk.VersionID, S3BucketARN: arn})
		}
		v = e
	default:
		e := events.S3BatchJobEventV2{InvocationSchemaVersion: inv.Schema, InvocationID: inv.ID,
			Job: events.S3BatchJobV2{ID: inv.JobID, UserArguments: inv.UserArgs}}
		for _, tk := range inv.Tasks {
			e.Tasks = append(e.Tasks, events.S3BatchJobTaskV2{TaskID: tk.ID, S3Key: tk.Key, S3VersionID: tk.VersionID, S3Bucket: tk.Bucket})
		}
		v = e
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("re-encode %+v: %v", inv, err)
	}
	return b
}

// sameInvocation compares invocations, bucket errors by their presence.
func sameInvocation(a, b invocation) bool {
	if a.Schema != b.Schema || a.ID != b.ID || a.JobID != b.JobID || len(a.Tasks) != len(b.Tasks) ||
		(a.UserArgs == nil) != (b.UserArgs == nil) || !maps.Equal(a.UserArgs, b.UserArgs) {
		return false
	}
	for i := range a.Tasks {
		x, y := a.Tasks[i], b.Tasks[i]
		if x.ID != y.ID || x.Bucket != y.Bucket || x.Key != y.Key || x.VersionID != y.VersionID || (x.BucketErr == nil) != (y.BucketErr == nil) {
			return false
		}
	}
	return true
}
