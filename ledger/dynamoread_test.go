package ledger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dynamodbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/rotator-dev/rotator/internal/testenv"
)

// readProbe sits in a DynamoDB client's stack: it counts the requests by
// operation, holds a GetItem of the gate item until the gate opens, and
// lets a test fail or trim BatchGetItem's answers.
type readProbe struct {
	mu      sync.Mutex
	ops     map[string]int
	entered chan struct{} // closed when the gate's GetItem arrives
	gate    chan struct{} // closed to let it go on
	// batch, when set, may change a BatchGetItem's output or fail it.
	batch func(out *dynamodb.BatchGetItemOutput) error
}

const gatePK = "test#gate"

func newReadProbe() *readProbe {
	return &readProbe{ops: map[string]int{}, entered: make(chan struct{}), gate: make(chan struct{})}
}

func (p *readProbe) middleware(st *middleware.Stack) error {
	return st.Initialize.Add(middleware.InitializeMiddlewareFunc("test/ReadProbe",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			op := awsmiddleware.GetOperationName(ctx)
			p.mu.Lock()
			p.ops[op]++
			batch := p.batch
			p.mu.Unlock()
			if g, ok := in.Parameters.(*dynamodb.GetItemInput); ok && strAttr(g.Key, attrPK) == gatePK {
				close(p.entered)
				<-p.gate
			}
			out, md, err := next.HandleInitialize(ctx, in)
			if b, ok := out.Result.(*dynamodb.BatchGetItemOutput); ok && err == nil && batch != nil {
				err = batch(b)
			}
			return out, md, err
		}), middleware.After)
}

func (p *readProbe) count(op string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ops[op]
}

// readFixture opens a DynamoDB ledger whose client p watches, with items
// test#0 .. test#(present-1) in its table (attribute v = the number).
func readFixture(t *testing.T, present int) (*dynamoLedger, *readProbe) {
	t.Helper()
	open := dynamoStore(t)
	p := newReadProbe()
	cfg := testenv.AWSConfig(t)
	cfg.APIOptions = append(cfg.APIOptions, p.middleware)
	d := open(WithAWSConfig(cfg)).(*dynamoLedger)
	// Count from here: the open reads the schema record.
	p.mu.Lock()
	clear(p.ops)
	p.mu.Unlock()
	// The tests hold a read in flight while others queue: however slow the
	// machine, it must not count as stalled.
	d.r.stall = time.Minute
	for i := range present {
		item := key("test#"+strconv.Itoa(i), "x")
		item["v"] = n(int64(i))
		if _, err := d.c.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(d.table), Item: item}); err != nil {
			t.Fatal(err)
		}
	}
	return d, p
}

type readResult struct {
	item map[string]dynamodbtypes.AttributeValue
	err  error
}

// overlapping asks for the items named while another read is in flight
// (the gate's, held until all of them wait), the way a run's workers ask
// at about the same moment, and returns their answers in order.
func overlapping(t *testing.T, d *dynamoLedger, p *readProbe, ctxs []context.Context, pks []string) []readResult {
	t.Helper()
	gateDone := make(chan error, 1)
	go func() {
		_, err := d.r.get(ctx, gatePK, "x")
		gateDone <- err
	}()
	<-p.entered
	res := make([]readResult, len(pks))
	var wg sync.WaitGroup
	for i, pk := range pks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := ctx
			if ctxs != nil {
				c = ctxs[i]
			}
			res[i].item, res[i].err = d.r.get(c, pk, "x")
		}()
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		d.r.mu.Lock()
		waiting := len(d.r.queue)
		d.r.mu.Unlock()
		if waiting == len(pks) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d reads wait", waiting, len(pks))
		}
		time.Sleep(time.Millisecond)
	}
	close(p.gate)
	if err := <-gateDone; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	return res
}

func checkRead(t *testing.T, pk string, r readResult, present int) {
	t.Helper()
	if r.err != nil {
		t.Errorf("%s: %v", pk, r.err)
		return
	}
	var i int
	if _, err := fmt.Sscanf(pk, "test#%d", &i); err != nil {
		t.Fatal(err)
	}
	switch {
	case i >= present && r.item != nil:
		t.Errorf("%s: read an item that is not there: %v", pk, r.item)
	case i < present && r.item == nil:
		t.Errorf("%s: not found", pk)
	case i < present:
		if v, _ := r.item["v"].(*dynamodbtypes.AttributeValueMemberN); v == nil || v.Value != strconv.Itoa(i) || strAttr(r.item, attrPK) != pk {
			t.Errorf("%s: read %v", pk, r.item)
		}
	}
}

// readFirst reads test#0 .. test#(n-1) overlapping (the first present of
// them in the table) and checks each answer.
func readFirst(t *testing.T, d *dynamoLedger, p *readProbe, n, present int) {
	t.Helper()
	var pks []string
	for i := range n {
		pks = append(pks, "test#"+strconv.Itoa(i))
	}
	res := overlapping(t, d, p, nil, pks)
	for i, pk := range pks {
		checkRead(t, pk, res[i], present)
	}
}

// TestDynamoReadsCoalesce: reads asked for while one is in flight go as
// one BatchGetItem (a key asked for twice is read once), and each caller
// gets its own item, or none when it is not there.
func TestDynamoReadsCoalesce(t *testing.T) {
	d, p := readFixture(t, 10)
	var pks []string
	for i := range 20 {
		pks = append(pks, "test#"+strconv.Itoa(i))
	}
	pks = append(pks, pks[:10]...) // asked for twice
	res := overlapping(t, d, p, nil, pks)
	for i, pk := range pks {
		checkRead(t, pk, res[i], 10)
	}
	if g, b := p.count("GetItem"), p.count("BatchGetItem"); g != 1 || b != 1 {
		t.Errorf("%d GetItem and %d BatchGetItem requests, want the gate's GetItem and one BatchGetItem", g, b)
	}
	// Alone, a read is a GetItem, and it sees what was written before.
	item := key("test#3", "x")
	item["v"] = n(33)
	if _, err := d.c.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(d.table), Item: item}); err != nil {
		t.Fatal(err)
	}
	got, err := d.getItem(ctx, "test#3", "x")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := got["v"].(*dynamodbtypes.AttributeValueMemberN); v == nil || v.Value != "33" {
		t.Errorf("read %v after writing v = 33", got)
	}
	if g := p.count("GetItem"); g != 2 {
		t.Errorf("%d GetItem requests, want 2", g)
	}
}

// TestDynamoReadsMoreThanABatch: 250 overlapping reads go as three
// BatchGetItems of at most 100 keys, one after the other.
func TestDynamoReadsMoreThanABatch(t *testing.T) {
	d, p := readFixture(t, 120)
	readFirst(t, d, p, 250, 120)
	if b := p.count("BatchGetItem"); b != 3 {
		t.Errorf("%d BatchGetItem requests, want 3", b)
	}
}

// TestDynamoReadsUnprocessedKeys: keys a BatchGetItem leaves unprocessed
// (throttled, or over 16 MB) are asked for again until read; a key left
// unprocessed every time fails its caller as throttled, and only it.
func TestDynamoReadsUnprocessedKeys(t *testing.T) {
	d, p := readFixture(t, 10)
	// Each answer keeps one item and leaves the rest unprocessed.
	p.batch = func(out *dynamodb.BatchGetItemOutput) error {
		items := out.Responses[d.table]
		if len(items) <= 1 {
			return nil
		}
		var keys []map[string]dynamodbtypes.AttributeValue
		for _, it := range items[1:] {
			keys = append(keys, key(strAttr(it, attrPK), strAttr(it, attrSK)))
		}
		out.Responses[d.table] = items[:1]
		out.UnprocessedKeys = map[string]dynamodbtypes.KeysAndAttributes{d.table: {Keys: keys, ConsistentRead: aws.Bool(true)}}
		return nil
	}
	readFirst(t, d, p, 5, 10)
	if b := p.count("BatchGetItem"); b != 5 {
		t.Errorf("%d BatchGetItem requests, want 5 (one item each)", b)
	}

	d, p = readFixture(t, 10)
	p.batch = func(out *dynamodb.BatchGetItemOutput) error {
		items := out.Responses[d.table]
		for i, it := range items {
			if strAttr(it, attrPK) == "test#7" {
				out.Responses[d.table] = append(items[:i:i], items[i+1:]...)
				out.UnprocessedKeys = map[string]dynamodbtypes.KeysAndAttributes{d.table: {Keys: []map[string]dynamodbtypes.AttributeValue{key("test#7", "x")}}}
				break
			}
		}
		return nil
	}
	pks := []string{"test#6", "test#7", "test#8", "test#7"}
	res := overlapping(t, d, p, nil, pks)
	var thr *dynamodbtypes.ProvisionedThroughputExceededException
	for i, pk := range pks {
		if pk != "test#7" {
			checkRead(t, pk, res[i], 10)
		} else if !errors.As(res[i].err, &thr) {
			t.Errorf("%s, unprocessed in every try: %v, want a throughput error", pk, res[i].err)
		}
	}
	if b := p.count("BatchGetItem"); b != readTries {
		t.Errorf("%d BatchGetItem requests, want %d", b, readTries)
	}
}

// TestDynamoReadsFailAndGiveUp: a BatchGetItem that fails fails every read
// in it; a caller that gives up returns at once, and the reads after it
// are not held back.
func TestDynamoReadsFailAndGiveUp(t *testing.T) {
	d, p := readFixture(t, 10)
	p.batch = func(*dynamodb.BatchGetItemOutput) error { return errors.New("injected") }
	pks := []string{"test#1", "test#2", "test#1"}
	for i, r := range overlapping(t, d, p, nil, pks) {
		if r.err == nil || r.item != nil {
			t.Errorf("%s: %v, %v: want the batch's error", pks[i], r.item, r.err)
		} else if got := r.err.Error(); !strings.Contains(got, "injected") || !strings.Contains(got, d.table) {
			t.Errorf("%s: %q: want the batch's error, naming the table", pks[i], got)
		}
	}

	d, p = readFixture(t, 10)
	gone, cancel := context.WithCancel(ctx)
	cancel()
	pks = []string{"test#1", "test#2"}
	res := overlapping(t, d, p, []context.Context{gone, ctx}, pks)
	if !errors.Is(res[0].err, context.Canceled) {
		t.Errorf("a read whose caller gave up: %v", res[0].err)
	}
	checkRead(t, pks[1], res[1], 10)
	if b := p.count("BatchGetItem"); b != 1 {
		t.Errorf("%d BatchGetItem requests, want 1", b)
	}
}

// TestDynamoReadsPastAStalledRequest: a read request that does not answer
// holds back the reads queued behind it for the stall time at most; then they
// go without it.
func TestDynamoReadsPastAStalledRequest(t *testing.T) {
	d, p := readFixture(t, 10)
	d.r.stall = 200 * time.Millisecond
	gateDone := make(chan error, 1)
	go func() {
		_, err := d.r.get(ctx, gatePK, "x")
		gateDone <- err
	}()
	<-p.entered
	defer func() {
		close(p.gate)
		if err := <-gateDone; err != nil {
			t.Error(err)
		}
	}()
	began := time.Now()
	got := make(chan readResult, 1)
	go func() {
		item, err := d.r.get(ctx, "test#4", "x")
		got <- readResult{item, err}
	}()
	select {
	case r := <-got:
		checkRead(t, "test#4", r, 10)
		if waited := time.Since(began); waited < d.r.stall/2 {
			t.Errorf("answered after %v, while the request in flight held: it did not wait for it", waited)
		}
	case <-time.After(50 * d.r.stall):
		t.Fatalf("a read queued behind a stalled request waited over %v", 50*d.r.stall)
	}
	if b := p.count("BatchGetItem"); b != 1 {
		t.Errorf("%d BatchGetItem requests, want 1", b)
	}
}

// TestDynamoBatchGetUnprocessedKeys: batchGet (resume's read of the items
// a journal names) asks again for the keys BatchGetItem left unprocessed,
// with the coalesced reads' pauses, and fails as throttled after readTries
// instead of asking for ever.
func TestDynamoBatchGetUnprocessedKeys(t *testing.T) {
	keys := [][2]string{{"test#6", "x"}, {"test#7", "x"}, {"test#8", "x"}, {"test#40", "x"}}
	leave7 := func(d *dynamoLedger, times int) func(out *dynamodb.BatchGetItemOutput) error {
		left := 0
		return func(out *dynamodb.BatchGetItemOutput) error {
			items := out.Responses[d.table]
			for i, it := range items {
				if strAttr(it, attrPK) == "test#7" && left < times {
					left++
					out.Responses[d.table] = append(items[:i:i], items[i+1:]...)
					out.UnprocessedKeys = map[string]dynamodbtypes.KeysAndAttributes{d.table: {Keys: []map[string]dynamodbtypes.AttributeValue{key("test#7", "x")}}}
					break
				}
			}
			return nil
		}
	}
	read := func(d *dynamoLedger) ([]string, error) {
		var got []string
		err := d.batchGet(ctx, keys, func(k [2]string, _ map[string]dynamodbtypes.AttributeValue) error {
			got = append(got, k[0])
			return nil
		})
		slices.Sort(got)
		return got, err
	}

	d, p := readFixture(t, 10)
	p.batch = leave7(d, 2)
	got, err := read(d)
	if err != nil || !slices.Equal(got, []string{"test#6", "test#7", "test#8"}) {
		t.Errorf("read %v, %v: want test#6, 7 and 8 (test#40 is missing)", got, err)
	}
	if b := p.count("BatchGetItem"); b != 3 {
		t.Errorf("%d BatchGetItem requests, want 3 (test#7 unprocessed twice)", b)
	}

	d, p = readFixture(t, 10)
	p.batch = leave7(d, 1<<30)
	_, err = read(d)
	var thr *dynamodbtypes.ProvisionedThroughputExceededException
	if !errors.As(err, &thr) || !strings.Contains(err.Error(), d.table) {
		t.Errorf("test#7 unprocessed in every try: %v, want a throughput error naming the table", err)
	}
	if b := p.count("BatchGetItem"); b != readTries {
		t.Errorf("%d BatchGetItem requests, want %d", b, readTries)
	}
}
