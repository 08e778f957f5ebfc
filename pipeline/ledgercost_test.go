package pipeline_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/internal/sample"
	"github.com/rotator-dev/rotator/internal/testenv"
	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/pipeline"
	"github.com/rotator-dev/rotator/rewrap"
)

// countingLedger counts the writes a run makes on one object's behalf.
type countingLedger struct {
	ledger.Ledger
	writes atomic.Int64
}

func (l *countingLedger) Claim(ctx context.Context, id ledger.ObjectID, owner string, lease time.Duration) (ledger.Claimed, error) {
	l.writes.Add(1)
	return l.Ledger.Claim(ctx, id, owner, lease)
}

func (l *countingLedger) Begin(ctx context.Context, owner string, lease time.Duration, ev ledger.Event) (ledger.Claimed, error) {
	l.writes.Add(1)
	return l.Ledger.Begin(ctx, owner, lease, ev)
}

func (l *countingLedger) Release(ctx context.Context, id ledger.ObjectID, owner string) error {
	l.writes.Add(1)
	return l.Ledger.Release(ctx, id, owner)
}

func (l *countingLedger) Prepare(ctx context.Context, owner string, ev ledger.Event) error {
	l.writes.Add(1)
	return l.Ledger.Prepare(ctx, owner, ev)
}

func (l *countingLedger) Commit(ctx context.Context, owner string, obj ledger.Object, ev ledger.Event) error {
	l.writes.Add(1)
	return l.Ledger.Commit(ctx, owner, obj, ev)
}

func (l *countingLedger) Abandon(ctx context.Context, owner string, id ledger.ObjectID, runID, op string) error {
	l.writes.Add(1)
	return l.Ledger.Abandon(ctx, owner, id, runID, op)
}

func (l *countingLedger) SaveUpload(ctx context.Context, owner string, u ledger.Upload) error {
	l.writes.Add(1)
	return l.Ledger.SaveUpload(ctx, owner, u)
}

func (l *countingLedger) DeleteUpload(ctx context.Context, owner, runID string, id ledger.ObjectID) error {
	l.writes.Add(1)
	return l.Ledger.DeleteUpload(ctx, owner, runID, id)
}

func (l *countingLedger) Observe(ctx context.Context, obj ledger.Object) error {
	l.writes.Add(1)
	return l.Ledger.Observe(ctx, obj)
}

func (l *countingLedger) ObserveRelease(ctx context.Context, owner string, obj ledger.Object) error {
	l.writes.Add(1)
	return l.Ledger.ObserveRelease(ctx, owner, obj)
}

// TestPlanCountsTheLedgerWritesOfARun: the plan's estimate of embedded
// ledger writes is what a rewrap run makes (two per rewrapped object: the
// claim with the intent, the commit), and a second run (nothing to do)
// makes one observation per object, as planned.
func TestPlanCountsTheLedgerWritesOfARun(t *testing.T) {
	f := newFixture(t, 12, false)
	for i, run := range []string{"run-cost", "run-cost-again"} {
		c := f.core(run)
		plan, err := pipeline.MakePlan(ctx, pipeline.DryRun(c), f.source(t), pipeline.PlanOptions{DynamoDBLedger: true})
		if err != nil {
			t.Fatal(err)
		}
		cl := &countingLedger{Ledger: f.ledger}
		c.Ledger = cl
		f.run(t, c)
		want := plan.Requests["ledger:embedded-write"]
		if got := cl.writes.Load(); got != want {
			t.Errorf("%s: %d ledger writes, the plan says %d (%v)", run, got, want, plan.Requests)
		}
		if per := float64(want) / float64(plan.Objects); i == 0 && per > 2 {
			t.Errorf("%s: %.2f ledger writes per object, want at most 2", run, per)
		}
		if w, obj := plan.Requests["dynamodb:write"], plan.Objects; w != 2*obj && i == 0 {
			t.Errorf("%s: %d DynamoDB writes planned for %d rewraps, want 2 each", run, w, obj)
		}
	}
}

// TestPlanCountsTheReadsOfObjectsItLeaves: objects a classification
// decides on its own (a bad envelope in an instruction file) cost the
// HEADs, GETs and ledger reads the plan counts, as the others do (the
// plan counted no GET for them).
func TestPlanCountsTheReadsOfObjectsItLeaves(t *testing.T) {
	f := newFixture(t, 8, false) // two of each format and placement
	var instr []sample.Object
	for _, o := range f.objs {
		if o.Kind.Placement == envelope.PlacementInstructionFile {
			instr = append(instr, o)
		}
	}
	// A bad envelope in two instruction files: not JSON, and JSON with a
	// field of the wrong type.
	for i, body := range []string{`not json`, `{"x-amz-key-v2": 1}`} {
		bad := instr[2*i].Key + ".instruction"
		if _, err := f.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &f.bucket, Key: &bad, Body: strings.NewReader(body),
			Metadata: map[string]string{"x-amz-crypto-instr-file": ""}}); err != nil {
			t.Fatal(err)
		}
	}
	cs := &countingS3{S3: f.s3}
	c := f.core("reads")
	c.S3 = commit.New(cs, commit.Options{})
	plan, err := pipeline.MakePlan(ctx, pipeline.DryRun(c), f.source(t), pipeline.PlanOptions{DynamoDBLedger: true})
	if err != nil {
		t.Fatal(err)
	}
	cs.heads.Store(0)
	cs.gets.Store(0)
	cl := &countingLedger{Ledger: f.ledger}
	c.Ledger = cl
	rep, buf := f.run(t, c)
	counts := rep.Counts()
	if counts[pipeline.StatusFailed] != 2 || counts[pipeline.StatusSucceeded] != 6 {
		t.Fatalf("counts %v, want 2 failed (the bad envelopes), 6 rewrapped\n%s", counts, buf)
	}
	if got, want := cs.heads.Load(), plan.Requests["s3:HeadObject"]; got != want {
		t.Errorf("%d HEADs, the plan says %d (%v)", got, want, plan.Requests)
	}
	if got, want := cs.gets.Load(), plan.Requests["s3:GetObject"]; got != want {
		t.Errorf("%d GETs, the plan says %d (%v)", got, want, plan.Requests)
	}
	if got, want := cl.writes.Load(), plan.Requests["ledger:embedded-write"]; got != want {
		t.Errorf("%d ledger writes, the plan says %d (%v)", got, want, plan.Requests)
	}
}

// TestPlanCountsTheRequestsOfAnEscrowRun: for run --escrow the plan counts
// what the run sends: each object's escrow file read and written, the
// escrow's KMS ReEncrypt beside the rewrap's, and the escrow's ledger
// writes (a change of its own through the protocol).
func TestPlanCountsTheRequestsOfAnEscrowRun(t *testing.T) {
	const n = 8 // two of each format and placement
	f := newFixture(t, n, false)
	escrowKey := openKey(t, f.deps, "kms:"+createKey(t, f.kms.Client(""), "escrow C"))
	cs := &countingS3{S3: f.s3}
	cm := commit.New(cs, commit.Options{})
	c := f.core("escrow-cost")
	c.S3, c.Escrow, c.Creator = cm, escrowKey, cm
	plan, err := pipeline.MakePlan(ctx, pipeline.DryRun(c), f.source(t), pipeline.PlanOptions{DynamoDBLedger: true})
	if err != nil {
		t.Fatal(err)
	}
	if cs.puts.Load() != 0 || cs.copies.Load() != 0 {
		t.Fatalf("the plan wrote: %d puts, %d copies", cs.puts.Load(), cs.copies.Load())
	}
	runAndCompare := func(c *pipeline.Core, plan *pipeline.Plan) {
		t.Helper()
		cl := &countingLedger{Ledger: f.ledger}
		c.Ledger = cl
		f.kms.ResetCounts()
		for _, n := range []*atomic.Int64{&cs.puts, &cs.copies, &cs.creates, &cs.parts, &cs.completes} {
			n.Store(0)
		}
		rep, buf := f.run(t, c)
		if got := rep.Counts()[pipeline.StatusSucceeded]; got != n {
			t.Fatalf("%s: succeeded %d of %d\n%s", c.RunID, got, n, buf)
		}
		if plan.EscrowFiles != n {
			t.Errorf("%s: the plan counts %d escrow files, want %d", c.RunID, plan.EscrowFiles, n)
		}
		for _, m := range []struct {
			what      string
			got, want int64
		}{
			{"embedded ledger writes", cl.writes.Load(), plan.Requests["ledger:embedded-write"]},
			{"KMS ReEncrypt requests", f.kms.Count("ReEncrypt"), plan.Requests["kms:ReEncrypt"]},
			{"KMS Decrypt requests", f.kms.Count("Decrypt"), plan.Requests["kms:Decrypt"]},
			{"KMS Encrypt requests", f.kms.Count("Encrypt"), plan.Requests["kms:Encrypt"]},
			{"S3 PutObject requests", cs.puts.Load(), plan.Requests["s3:PutObject"]},
			{"S3 CopyObject requests", cs.copies.Load(), plan.Requests["s3:CopyObject"]},
			{"S3 CreateMultipartUpload requests", cs.creates.Load(), plan.Requests["s3:CreateMultipartUpload"]},
			{"S3 UploadPart requests", cs.parts.Load(), plan.Requests["s3:UploadPart"]},
			{"S3 CompleteMultipartUpload requests", cs.completes.Load(), plan.Requests["s3:CompleteMultipartUpload"]},
		} {
			if m.got != m.want {
				t.Errorf("%s: %s: the run sent %d, the plan says %d (%v)", c.RunID, m.what, m.got, m.want, plan.Requests)
			}
			t.Logf("%s: %s: %d", c.RunID, m.what, m.got)
		}
	}
	runAndCompare(c, plan)

	// A re-encryption B -> A with --escrow: each escrow file is rewritten
	// after the object's re-encryption, from its new data key.
	re, _ := f.reencryptCore("escrow-cost-reencrypt", cm, f.b)
	re.S3, re.To, re.Escrow, re.Creator = cm, f.a, escrowKey, cm
	plan, err = pipeline.MakePlan(ctx, pipeline.DryRun(re), f.source(t), pipeline.PlanOptions{DynamoDBLedger: true})
	if err != nil {
		t.Fatal(err)
	}
	runAndCompare(re, plan)
}

// ddbCounter counts the requests a DynamoDB ledger sends, by operation
// (the items of a BatchGetItem one by one), in two groups: those on one object's behalf (its item, obj#..., and its
// upload checkpoint, upl#...), and the rest (run records, leases, journal
// items, registries, the table's description).
type ddbCounter struct {
	mu         sync.Mutex
	obj, other map[string]int64
}

func newDDBCounter() *ddbCounter {
	return &ddbCounter{obj: map[string]int64{}, other: map[string]int64{}}
}

func (c *ddbCounter) middleware(st *middleware.Stack) error {
	return st.Initialize.Add(middleware.InitializeMiddlewareFunc("test/CountDynamoDB",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			var key map[string]ddbtypes.AttributeValue
			op := awsmiddleware.GetOperationName(ctx)
			switch p := in.Parameters.(type) {
			case *dynamodb.BatchGetItemInput:
				// Reads coalesced into one request: counted by the item,
				// as DynamoDB bills them (a read request unit each).
				for _, ka := range p.RequestItems {
					for _, k := range ka.Keys {
						c.count(op, k)
					}
				}
				return next.HandleInitialize(ctx, in)
			case *dynamodb.GetItemInput:
				key = p.Key
			case *dynamodb.PutItemInput:
				key = p.Item
			case *dynamodb.UpdateItemInput:
				key = p.Key
			case *dynamodb.DeleteItemInput:
				key = p.Key
			case *dynamodb.QueryInput:
				key = map[string]ddbtypes.AttributeValue{"PK": p.ExpressionAttributeValues[":pk"]}
			}
			c.count(op, key)
			return next.HandleInitialize(ctx, in)
		}), middleware.After)
}

// count counts a request of op on the item of key.
func (c *ddbCounter) count(op string, key map[string]ddbtypes.AttributeValue) {
	str := func(name string) string {
		v, _ := key[name].(*ddbtypes.AttributeValueMemberS)
		if v == nil {
			return ""
		}
		return v.Value
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if strings.HasPrefix(str("PK"), "obj#") || strings.HasPrefix(str("SK"), "upl#") {
		c.obj[op]++
	} else {
		c.other[op]++
	}
}

// take returns the counts so far and starts again.
func (c *ddbCounter) take() (obj, other map[string]int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	obj, other = c.obj, c.other
	c.obj, c.other = map[string]int64{}, map[string]int64{}
	return obj, other
}

// ddbReadOps and ddbWriteOps are the operations plan counts as
// dynamodb:read and dynamodb:write.
var (
	ddbReadOps  = []string{"GetItem", "Query", "BatchGetItem"}
	ddbWriteOps = []string{"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"}
)

func sumOps(m map[string]int64, ops []string) int64 {
	var n int64
	for _, op := range ops {
		n += m[op]
	}
	return n
}

// dynamoLedger gives f a DynamoDB ledger (a table of its own on the
// stack's dynalite) whose requests c counts.
func (f *fixture) dynamoLedger(t *testing.T) *ddbCounter {
	t.Helper()
	testenv.Need(t, testenv.DynamoDB)
	c := newDDBCounter()
	cfg := testenv.AWSConfig(t)
	cfg.APIOptions = append(cfg.APIOptions, c.middleware)
	l, err := ledger.Open(ctx, "dynamodb://"+f.bucket+"?create=true", ledger.WithAWSConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	f.ledger = l
	return c
}

// runCounted plans c over src (current versions, or all of them), runs it
// on f's DynamoDB ledger, and checks that the DynamoDB requests the run
// sent on its objects' behalf are what the plan counts, give or take
// slack (what depends on the order the workers meet an object's versions
// in; 0 elsewhere).
func (f *fixture) runCounted(t *testing.T, cnt *ddbCounter, c *pipeline.Core, allVersions bool, slack int64) {
	t.Helper()
	src := func() inventory.Source {
		s, err := inventory.Open(ctx, f.s3, inventory.Spec{Source: "s3://" + f.bucket, AllVersions: allVersions,
			Options: inventory.Options{ExcludeSuffix: inventory.DefaultExcludeSuffix}})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// --check-escrow: an escrow file that matches its object costs the
	// run a lineage query.
	plan, err := pipeline.MakePlan(ctx, pipeline.DryRun(c), src(), pipeline.PlanOptions{DynamoDBLedger: true, CheckEscrow: c.Escrow != nil})
	if err != nil {
		t.Fatal(err)
	}
	cnt.take()
	var buf bytes.Buffer
	rep, err := pipeline.NewReport(&buf)
	if err != nil {
		t.Fatal(err)
	}
	run := &ledger.Run{ID: c.RunID, Config: []byte(`{}`), State: ledger.RunRunning}
	if err := f.ledger.CreateRun(ctx, run); err != nil {
		t.Fatal(err)
	}
	r := &pipeline.Runner{Core: c, Source: src(), Workers: 8, Runs: f.ledger, Run: run, Report: rep, Intents: f.ledger}
	if err := r.Execute(ctx, nil); err != nil {
		t.Fatalf("run: %v\n%s", err, buf.String())
	}
	obj, other := cnt.take()
	counts := rep.Counts()
	if counts[pipeline.StatusFailed]+counts[pipeline.StatusUnfinished]+counts[pipeline.StatusChanged] > 0 {
		t.Fatalf("%s: %v\n%s", c.RunID, counts, buf.String())
	}
	n := float64(plan.Objects)
	t.Logf("%s: %d objects %v (plan: %v); per object: %.2f writes, %.2f reads (plan: %.2f, %.2f): %v; per run: %v",
		c.RunID, plan.Objects, counts, plan.ByAction,
		float64(sumOps(obj, ddbWriteOps))/n, float64(sumOps(obj, ddbReadOps))/n,
		float64(plan.Requests["dynamodb:write"])/n, float64(plan.Requests["dynamodb:read"])/n, obj, other)
	within := func(got, want int64) bool { return got >= want-slack && got <= want+slack }
	if got, want := sumOps(obj, ddbWriteOps), plan.Requests["dynamodb:write"]; !within(got, want) {
		t.Errorf("%s: the run sent %d DynamoDB writes on its objects' behalf, the plan says %d (%v)", c.RunID, got, want, obj)
	}
	if got, want := sumOps(obj, ddbReadOps), plan.Requests["dynamodb:read"]; !within(got, want) {
		t.Errorf("%s: the run sent %d DynamoDB reads on its objects' behalf, the plan says %d (%v)", c.RunID, got, want, obj)
	}
}

// TestPlanCountsTheDynamoDBRequestsOfARun: for every kind of change, the
// DynamoDB requests a run sends on its objects' behalf (each object's
// item and upload checkpoint) are the plan's dynamodb:write and
// dynamodb:read; what is per run (run record, lease, journal) is logged.
func TestPlanCountsTheDynamoDBRequestsOfARun(t *testing.T) {
	testenv.Need(t, testenv.S3, testenv.KMS, testenv.DynamoDB)
	const n = 8 // two of each format and placement
	t.Run("rewrap", func(t *testing.T) {
		f := newFixture(t, n, false)
		cnt := f.dynamoLedger(t)
		f.runCounted(t, cnt, f.core("rewrap"), false, 0)
		f.runCounted(t, cnt, f.core("rewrap-again"), false, 0) // already under B, the ledger knows
	})
	t.Run("already-under-target", func(t *testing.T) {
		// Under B already, on a ledger that has never seen them: the run
		// asks KMS for the key of those whose envelope does not name it,
		// under the claim, then records each and releases the claim in
		// one write (Ledger.ObserveRelease): two writes and the read of
		// the classification, as the plan counts for a rewrap (it asks
		// no key backend, so it cannot tell them apart).
		f := newFixture(t, n, false)
		f.run(t, f.core("to-b"))
		cnt := f.dynamoLedger(t)
		f.runCounted(t, cnt, f.core("to-b-new-ledger"), false, 0)
	})
	t.Run("escrow", func(t *testing.T) {
		f := newFixture(t, n, false)
		cnt := f.dynamoLedger(t)
		escrowKey := openKey(t, f.deps, "kms:"+createKey(t, f.kms.Client(""), "escrow C"))
		c := f.core("rewrap-escrow")
		c.Escrow, c.Creator = escrowKey, f.commit
		f.runCounted(t, cnt, c, false, 0)
		c = f.core("rewrap-escrow-again") // already under B: escrowed again
		c.Escrow, c.Creator = escrowKey, f.commit
		f.runCounted(t, cnt, c, false, 0)
		re, _ := f.reencryptCore("reencrypt-escrow", nil, f.b)
		re.To, re.Escrow, re.Creator = f.a, escrowKey, f.commit
		f.runCounted(t, cnt, re, false, 0)
	})
	t.Run("kms-to-hsm", func(t *testing.T) {
		testenv.Need(t, testenv.PKCS11)
		f := newFixture(t, n, false)
		cnt := f.dynamoLedger(t)
		c := f.core("to-hsm")
		c.To, c.From = newHSMKey(t, f), []rewrap.Keyring{f.a}
		f.runCounted(t, cnt, c, false, 0)
	})
	t.Run("move", func(t *testing.T) {
		f := newFixture(t, n, false)
		cnt := f.dynamoLedger(t)
		c := f.core("move")
		c.Move = f.commit
		f.runCounted(t, cnt, c, false, 0)
	})
	t.Run("reencrypt", func(t *testing.T) {
		f := newFixture(t, n, false)
		cnt := f.dynamoLedger(t)
		c, _ := f.reencryptCore("reencrypt-single", nil, f.a)
		f.runCounted(t, cnt, c, false, 0)
	})
	t.Run("reencrypt-multipart", func(t *testing.T) {
		f := newFixture(t, 0, false)
		f.seedBig(t, 4, 5<<20+1, 6<<20)
		cnt := f.dynamoLedger(t)
		c, _ := f.reencryptCore("reencrypt-multipart", nil, f.a)
		f.runCounted(t, cnt, c, false, 0)
	})
	t.Run("delete-version", func(t *testing.T) {
		f := newFixture(t, n, true)
		// A second generation: the first becomes the older versions.
		if _, err := sample.Seed(ctx, f.s3, f.kms.Client(""), sample.Options{Bucket: f.bucket, KMSKeyID: f.kmsKeyA(t), Count: n}); err != nil {
			t.Fatal(err)
		}
		cnt := f.dynamoLedger(t)
		c, _ := f.reencryptCore("delete-version", nil, f.a)
		c.Versions = f.commit
		// The plan counts each older version deleted by its current's
		// sweep, met by the listing while that current is re-encrypted.
		// Met after the sweep, it is found gone: two reads fewer (its
		// classification, its current's); met after the current's
		// commit but before its sweep, both workers go for it, and the
		// one that finds it gone has claimed and releases it (measured:
		// three writes and a read more).
		f.runCounted(t, cnt, c, true, 2*n)
	})
}
