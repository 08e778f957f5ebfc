package ledger

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Coalesced reads. Every item the DynamoDB ledger reads by key goes
// through a reads: a read asked for while no request of the ledger's is
// reading items is sent at once, as a GetItem; reads asked for while one
// is (the workers of a run ask for an object's record at about the same
// moments) wait for it and go together, as one BatchGetItem of up to 100
// items. Each read is strongly consistent and sent after it was asked
// for, so it sees every write that completed before: what GetItem alone
// gives, in fewer requests. Read request units are the same (one per
// item); what is saved is requests, and the CPU and connections they
// cost on both ends.
const (
	// readBatchMax is BatchGetItem's limit of keys per request.
	readBatchMax = 100
	// readsInFlight is how many requests of a ledger read items at once.
	// One: a read waits for at most the request in flight (or readStall)
	// and its own, and reads batch as soon as two overlap.
	readsInFlight = 1
	// readTries is how many times a key BatchGetItem left unprocessed
	// (throttled, or over the response's 16 MB) is asked for before the
	// read fails as throttled, as GetItem does after the SDK's retries.
	readTries = 8
	// readStall is how long a read request may hold back the reads that
	// queue behind it: past it they go without waiting for it, so that a
	// request whose connection stalled (dropped only after the I/O
	// timeout, minutes) holds back nothing more than itself.
	readStall = time.Second
)

type reads struct {
	d     *dynamoLedger
	stall time.Duration // readStall (tests set their own)
	// base is cancelled by close: a batch, sent on behalf of several
	// callers, does not stop when one of them gives up.
	base   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	queue    []*readReq
	inFlight int
	closed   bool
}

// flight is a read request in flight: it counts in inFlight until it ends
// or stalls.
type flight struct {
	counted bool
	stall   *time.Timer
}

// start counts a request in flight. r.mu is held.
func (r *reads) start() *flight {
	r.inFlight++
	f := &flight{counted: true}
	f.stall = time.AfterFunc(r.stall, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.uncount(f)
	})
	return f
}

// uncount stops counting f in flight, once (it ended or stalled), and
// sends what waits, if anything. r.mu is held.
func (r *reads) uncount(f *flight) {
	if f.counted {
		f.counted = false
		r.inFlight--
	}
	r.dispatch()
}

type readReq struct {
	key   [2]string
	ctx   context.Context // the caller's: its values go with the batch
	tries int
	done  chan struct{}
	item  map[string]types.AttributeValue
	err   error
}

func newReads(d *dynamoLedger) *reads {
	r := &reads{d: d, stall: readStall}
	r.base, r.cancel = context.WithCancel(context.Background())
	return r
}

// get reads the item (pk, sk), nil when there is none.
func (r *reads) get(ctx context.Context, pk, sk string) (map[string]types.AttributeValue, error) {
	r.mu.Lock()
	if r.inFlight < readsInFlight && len(r.queue) == 0 {
		f := r.start()
		r.mu.Unlock()
		item, err := r.getOne(ctx, pk, sk)
		r.finished(f)
		return item, err
	}
	req := &readReq{key: [2]string{pk, sk}, ctx: ctx, done: make(chan struct{})}
	r.queue = append(r.queue, req)
	r.mu.Unlock()
	select {
	case <-req.done:
		return req.item, req.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (r *reads) getOne(ctx context.Context, pk, sk string) (map[string]types.AttributeValue, error) {
	out, err := r.d.c.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(r.d.table), Key: key(pk, sk), ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return nil, r.d.wrap("get item", err)
	}
	return out.Item, nil
}

// finished ends a request in flight and sends what waits, if anything.
func (r *reads) finished(f *flight) {
	f.stall.Stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.uncount(f)
}

// dispatch sends the reads that wait, up to readBatchMax distinct keys, if
// a request may start. r.mu is held.
func (r *reads) dispatch() {
	if r.inFlight >= readsInFlight || len(r.queue) == 0 {
		return
	}
	if r.closed {
		for _, q := range r.queue {
			q.err = errors.New("ledger: closed")
			close(q.done)
		}
		r.queue = nil
		return
	}
	byKey := make(map[[2]string][]*readReq)
	var keys [][2]string
	rest := r.queue[:0]
	for _, q := range r.queue {
		if q.ctx.Err() != nil {
			continue // its caller has gone
		}
		if _, ok := byKey[q.key]; !ok {
			if len(keys) == readBatchMax {
				rest = append(rest, q)
				continue
			}
			keys = append(keys, q.key)
		}
		byKey[q.key] = append(byKey[q.key], q)
	}
	clear(r.queue[len(rest):])
	r.queue = rest
	if len(keys) == 0 {
		return
	}
	f := r.start()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.send(f, keys, byKey)
	}()
}

// send reads keys with one BatchGetItem and answers their callers; the
// keys left unprocessed wait again, after a pause that grows with their
// tries.
func (r *reads) send(f *flight, keys [][2]string, byKey map[[2]string][]*readReq) {
	first := byKey[keys[0]][0]
	ctx, cancel := context.WithCancel(context.WithoutCancel(first.ctx))
	stop := context.AfterFunc(r.base, cancel)
	defer func() { stop(); cancel() }()
	batch := make([]map[string]types.AttributeValue, len(keys))
	for i, k := range keys {
		batch[i] = key(k[0], k[1])
	}
	out, err := r.d.c.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{
		RequestItems: map[string]types.KeysAndAttributes{r.d.table: {Keys: batch, ConsistentRead: aws.Bool(true)}},
	})
	answer := func(k [2]string, item map[string]types.AttributeValue, err error) {
		for _, q := range byKey[k] {
			q.item, q.err = item, err
			close(q.done)
		}
		delete(byKey, k)
	}
	if err != nil {
		err = r.d.wrap("read items", err)
		for _, k := range keys {
			answer(k, nil, err)
		}
		r.finished(f)
		return
	}
	for _, item := range out.Responses[r.d.table] {
		answer([2]string{strAttr(item, attrPK), strAttr(item, attrSK)}, item, nil)
	}
	var again []*readReq
	for _, k := range out.UnprocessedKeys[r.d.table].Keys {
		uk := [2]string{strAttr(k, attrPK), strAttr(k, attrSK)}
		for _, q := range byKey[uk] {
			q.tries++
			if q.tries >= readTries {
				q.err = r.d.errUnprocessed("read items")
				close(q.done)
				continue
			}
			again = append(again, q)
		}
		delete(byKey, uk)
	}
	for k := range byKey {
		answer(k, nil, nil) // read, and not there
	}
	if len(again) == 0 {
		r.finished(f)
		return
	}
	tries := 0
	for _, q := range again {
		tries = max(tries, q.tries)
	}
	pause := unprocessedPause(tries)
	// Free the slot now: reads that queued meanwhile go without waiting
	// for the pause.
	r.finished(f)
	requeue := func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.queue = append(again, r.queue...)
		r.dispatch()
	}
	if pause == 0 {
		requeue()
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		select {
		case <-time.After(pause):
		case <-r.base.Done():
		}
		requeue()
	}()
}

// unprocessedPause is how long keys BatchGetItem left unprocessed tries
// times wait before they are asked for again: none the first time (the
// answer's 16 MB, or a throttle), then 25 ms doubling up to a second.
func unprocessedPause(tries int) time.Duration {
	if tries <= 1 {
		return 0
	}
	return min(25*time.Millisecond<<min(tries-2, 6), time.Second)
}

// errUnprocessed is the error of a key BatchGetItem left unprocessed in
// each of readTries tries: throttled, as GetItem fails once the SDK's
// retries are spent.
func (d *dynamoLedger) errUnprocessed(what string) error {
	return d.wrap(what, &types.ProvisionedThroughputExceededException{
		Message: aws.String("BatchGetItem left the item unprocessed in every try (throttled)"),
	})
}

// close answers what waits with an error and waits for the requests in
// flight, which it cancels.
func (r *reads) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	r.mu.Lock()
	closed := r.queue
	r.queue = nil
	r.mu.Unlock()
	for _, q := range closed {
		q.err = errors.New("ledger: closed")
		close(q.done)
	}
}
