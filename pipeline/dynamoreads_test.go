package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/rotator-dev/rotator/internal/testenv"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/pipeline"
)

// TestDynamoDBCoalescedReadFailsAndResumeFinishes: the DynamoDB ledger
// sends the classification reads of objects that overlap as one
// BatchGetItem (ledger/SCHEMA.md, "Coalesced reads"). When that request
// fails, the run stops with the ledger's error and every object it did not
// finish is left as it was: each opens under its old key or, if its
// worker got that far, under the new one. A resume finishes them all.
func TestDynamoDBCoalescedReadFailsAndResumeFinishes(t *testing.T) {
	testenv.Need(t, testenv.S3, testenv.KMS, testenv.DynamoDB)
	const n = 16
	f := newFixture(t, n, false)
	var failing atomic.Bool
	var batches, slowed atomic.Int64
	failing.Store(true)
	probe := func(st *middleware.Stack) error {
		return st.Initialize.Add(middleware.InitializeMiddlewareFunc("test/FailBatchReads",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				switch p := in.Parameters.(type) {
				case *dynamodb.GetItemInput:
					// An object's record read is slow, so that the other
					// workers' reads queue behind it and go as a batch.
					if v, _ := p.Key["PK"].(*ddbtypes.AttributeValueMemberS); v != nil && strings.HasPrefix(v.Value, "obj#") && failing.Load() {
						slowed.Add(1)
						time.Sleep(300 * time.Millisecond)
					}
				case *dynamodb.BatchGetItemInput:
					batches.Add(1)
					if failing.Load() {
						return middleware.InitializeOutput{}, middleware.Metadata{}, errors.New("injected: the BatchGetItem failed")
					}
				}
				return next.HandleInitialize(ctx, in)
			}), middleware.After)
	}
	cfg := testenv.AWSConfig(t)
	cfg.APIOptions = append(cfg.APIOptions, probe)
	l, err := ledger.Open(ctx, "dynamodb://"+f.bucket+"?create=true", ledger.WithAWSConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	f.ledger = l
	c := f.core("coalesced-read-fails")

	var buf bytes.Buffer
	rep, err := pipeline.NewReport(&buf)
	if err != nil {
		t.Fatal(err)
	}
	run := &ledger.Run{ID: c.RunID, Config: []byte(`{}`), State: ledger.RunRunning}
	if err := l.CreateRun(ctx, run); err != nil {
		t.Fatal(err)
	}
	r := &pipeline.Runner{Core: c, Source: f.source(t), Workers: 8, Runs: l, Run: run, Report: rep, Intents: l}
	err = r.Execute(ctx, nil)
	if batches.Load() == 0 {
		t.Fatalf("no reads overlapped (%d slowed GetItems): the test proves nothing\n%s", slowed.Load(), buf.String())
	}
	if err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("run with a failing BatchGetItem: %v, want its error\n%s", err, buf.String())
	}
	// Nothing broken: each object opens under one of the two keys.
	for _, o := range f.objs {
		pt, errA := f.tryDecrypt(o.Key, f.a)
		if errA != nil {
			pt = f.decrypt(t, o.Key, f.b)
		}
		if !bytes.Equal(pt, f.plain[o.Key]) {
			t.Fatalf("%s: plaintext changed", o.Key)
		}
	}

	failing.Store(false)
	f.runWant(t, c, ledger.RunDone, true)
	for _, o := range f.objs {
		if pt := f.decrypt(t, o.Key, f.b); !bytes.Equal(pt, f.plain[o.Key]) {
			t.Fatalf("%s: plaintext changed", o.Key)
		}
	}
	t.Logf("%d BatchGetItems, %d slowed GetItems", batches.Load(), slowed.Load())
}
