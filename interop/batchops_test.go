package interop

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/amazon-s3-encryption-client-go/v4/commitment"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/internal/lambdatest"
	"github.com/rotator-dev/rotator/internal/testenv"
	"github.com/rotator-dev/rotator/ledger"
)

// TestBatchOperationsOfficialClientsRead: objects written by the official
// clients v3.2.0 (V2) and v4.0.0 (V3), in metadata and in instruction
// files, are rotated from key A to key B by rotator's Lambda handler run
// under the AWS Lambda Runtime Interface Emulator, fed the schema 1.0 and
// 2.0 invocations S3 Batch Operations sends for a CSV manifest of the
// bucket; then the official clients open every object under key B with
// its original plaintext.
func TestBatchOperationsOfficialClientsRead(t *testing.T) {
	testenv.Need(t, testenv.DynamoDB, testenv.LambdaRIE)
	st := newStack(t)
	ctx := context.Background()
	bucket := st.bucket(t)
	a, b := st.key(t), st.key(t)
	writers := map[string]officialClient{
		"v3.2.0": st.v3(t, a),
		"v4.0.0": st.v4(t, a, commitment.REQUIRE_ENCRYPT_REQUIRE_DECRYPT),
	}
	bodies := map[string][]byte{}
	writerOf := map[string]string{}
	for wname, w := range writers {
		for _, p := range []envelope.Placement{envelope.PlacementMetadata, envelope.PlacementInstructionFile} {
			for _, size := range []int{0, 5000} {
				key := fmt.Sprintf("%s/%v/%d bytes+€", wname, p, size)
				body := randomBytes(size)
				put(t, w, bucket, key, body, nil)
				if p == envelope.PlacementInstructionFile {
					st.intoInstructionFile(t, bucket, key)
				}
				bodies[key], writerOf[key] = body, wname
			}
		}
	}
	table := testenv.Name(t)
	l, err := ledger.Open(ctx, "dynamodb://"+table+"?create=true")
	if err != nil {
		t.Fatal(err)
	}
	l.Close()

	// The manifest: every key of the bucket, URL-encoded.
	var m bytes.Buffer
	out, err := st.s3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &bucket})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range out.Contents {
		fmt.Fprintf(&m, "%s,%s\n", bucket, url.QueryEscape(aws.ToString(o.Key)))
	}
	tasks, err := lambdatest.ReadManifest(&m)
	if err != nil {
		t.Fatal(err)
	}
	bootstrap := lambdatest.Bootstrap(t)
	v1 := lambdatest.Start(t, bootstrap, "ROTATOR_LEDGER=dynamodb://"+table, "ROTATOR_TO=kms:"+b, "ROTATOR_FROM=kms:"+a)
	v2 := lambdatest.Start(t, bootstrap, "ROTATOR_LEDGER=dynamodb://"+table)
	args := map[string]string{"to": "kms:" + b, "from": "kms:" + a}
	for i, task := range tasks {
		var ev any = lambdatest.EventV1("job-official", i, task)
		em := v1
		if i%2 == 1 {
			ev, em = lambdatest.EventV2("job-official", args, i, task), v2
		}
		resp, err := em.Invoke(ctx, ev)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Results) != 1 || resp.Results[0].ResultCode != "Succeeded" {
			t.Errorf("%s: %+v", task.EncodedKey, resp)
		}
		key, _ := url.QueryUnescape(task.EncodedKey)
		if _, obj := bodies[key]; obj && !strings.Contains(resp.Results[0].ResultString, b) {
			t.Errorf("%s: %q, want a rewrap to B", key, resp.Results[0].ResultString)
		}
	}
	for key, body := range bodies {
		format := envelope.V2
		if writerOf[key] == "v4.0.0" {
			format = envelope.V3
		}
		for rname, c := range st.readers(t, keys{kmsKey: b}, envelope.WrapKMSContext, format) {
			if got, err := get(c, bucket, key); err != nil || !bytes.Equal(got, body) {
				t.Errorf("%s: official %s on key B: %v", key, rname, err)
			}
		}
	}
}
