package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	bolt "go.etcd.io/bbolt"
)

// Lease is a run's lease: at most one process works for (Run, Name) at a
// time. A run that is not sharded has one lease; each shard of a sharded
// run has its own. The holder renews it while it works; a holder that
// dies lets it expire, and the next holder gets the next epoch (see
// Owner).
type Lease struct {
	Run  string
	Name string
	// Holder names the process (host, pid and a nonce); Host and PID say
	// where it runs, so that a process on the same host can tell that the
	// holder is gone.
	Holder string
	Host   string
	PID    int
	// Epoch counts acquisitions; it never decreases.
	Epoch    int64
	Acquired time.Time
	Expires  time.Time
}

// Owner returns the claim owner of a process holding l.
func (l Lease) Owner() Owner {
	return Owner{Run: l.Run, Lease: l.Name, Epoch: l.Epoch, Holder: l.Holder}
}

// LeaseHeldError is returned by AcquireLease when another process holds the
// lease. It matches ErrLeaseHeld.
type LeaseHeldError struct{ Lease Lease }

func (e *LeaseHeldError) Error() string {
	l := e.Lease
	return fmt.Sprintf("ledger: run %s (lease %s) is held by %s (pid %d on %s) until %s", l.Run, l.Name, l.Holder, l.PID, l.Host,
		l.Expires.UTC().Format(time.RFC3339))
}

// Is makes a *LeaseHeldError match ErrLeaseHeld.
func (e *LeaseHeldError) Is(target error) bool { return target == ErrLeaseHeld }

func checkLease(l Lease, ttl time.Duration) error {
	if err := validRunID(l.Run); err != nil {
		return err
	}
	if err := validOp(l.Name); err != nil {
		return fmt.Errorf("%w: lease name %q: only [a-z0-9+_-] allowed", ErrInvalid, l.Name)
	}
	if l.Holder == "" || len(l.Holder) > 256 || !validHolder(l.Holder) {
		return fmt.Errorf("%w: lease holder %q: want 1 to 256 characters, no '/'", ErrInvalid, l.Holder)
	}
	if ttl <= 0 {
		return fmt.Errorf("%w: lease ttl %v", ErrInvalid, ttl)
	}
	return validStrings(l.Host)
}

func validHolder(h string) bool {
	for _, c := range h {
		if c == '/' || c < ' ' {
			return false
		}
	}
	return validStrings(h) == nil
}

// leaseRecord is a Lease as both backends store it.
type leaseRecord struct {
	Run      string `json:"run_id" dynamodbav:"run_id"`
	Name     string `json:"name" dynamodbav:"name"`
	Holder   string `json:"holder,omitempty" dynamodbav:"holder,omitempty"`
	Host     string `json:"host,omitempty" dynamodbav:"host,omitempty"`
	PID      int    `json:"pid,omitempty" dynamodbav:"pid,omitempty"`
	Epoch    int64  `json:"epoch" dynamodbav:"epoch"`
	Acquired int64  `json:"acquired_unix_ms" dynamodbav:"acquired"`
	Expires  int64  `json:"expires_unix_ms" dynamodbav:"expires"`
}

func toLeaseRecord(l Lease) leaseRecord {
	return leaseRecord{Run: l.Run, Name: l.Name, Holder: l.Holder, Host: l.Host, PID: l.PID, Epoch: l.Epoch,
		Acquired: l.Acquired.UnixMilli(), Expires: l.Expires.UnixMilli()}
}

func (r leaseRecord) lease() Lease {
	return Lease{Run: r.Run, Name: r.Name, Holder: r.Holder, Host: r.Host, PID: r.PID, Epoch: r.Epoch,
		Acquired: time.UnixMilli(r.Acquired).UTC(), Expires: time.UnixMilli(r.Expires).UTC()}
}

// nextLease decides an acquisition: cur is the stored lease (found false:
// none). It returns the lease to store, or the error to return.
func nextLease(cur Lease, found bool, want Lease, now time.Time, ttl time.Duration, takeOver func(Lease) bool) (Lease, error) {
	want.Acquired, want.Expires = now.UTC(), now.Add(ttl).UTC()
	switch {
	case !found:
		want.Epoch = 1
	case cur.Holder == want.Holder && cur.Expires.After(now):
		want.Epoch, want.Acquired = cur.Epoch, cur.Acquired
	case cur.Holder == "" || !cur.Expires.After(now) || takeOver != nil && takeOver(cur):
		want.Epoch = cur.Epoch + 1
	default:
		return Lease{}, &LeaseHeldError{Lease: cur}
	}
	return want, nil
}

var bucketLeases = []byte("leases") // tuple(run, name) -> leaseRecord JSON

func (b *boltLedger) AcquireLease(ctx context.Context, want Lease, ttl time.Duration, takeOver func(Lease) bool) (Lease, error) {
	if err := checkLease(want, ttl); err != nil {
		return Lease{}, err
	}
	if err := ctx.Err(); err != nil {
		return Lease{}, err
	}
	var got Lease
	var res error
	err := b.write(func(tx *bolt.Tx) error {
		res = nil
		bk := tx.Bucket(bucketLeases)
		k := tupleKey(want.Run, want.Name)
		var rec leaseRecord
		found, err := getJSON(bk, k, &rec)
		if err != nil {
			return err
		}
		got, res = nextLease(rec.lease(), found, want, b.o.now(), ttl, takeOver)
		if res != nil {
			return nil
		}
		return putJSON(bk, k, toLeaseRecord(got))
	})
	if err != nil {
		return Lease{}, fmt.Errorf("ledger: acquire the lease of run %s: %w", want.Run, err)
	}
	return got, res
}

func (b *boltLedger) RenewLease(ctx context.Context, l Lease, ttl time.Duration) (Lease, error) {
	return b.updateLease(ctx, l, func(now time.Time) time.Time { return now.Add(ttl) })
}

func (b *boltLedger) ReleaseLease(ctx context.Context, l Lease) error {
	_, err := b.updateLease(ctx, l, func(now time.Time) time.Time { return now })
	if err != nil && !isLeaseLost(err) {
		return err
	}
	return nil
}

func isLeaseLost(err error) bool { return errors.Is(err, ErrLeaseLost) }

// updateLease sets the expiry of l if its holder and epoch still hold it.
func (b *boltLedger) updateLease(ctx context.Context, l Lease, until func(time.Time) time.Time) (Lease, error) {
	if err := checkLease(l, time.Second); err != nil {
		return Lease{}, err
	}
	if err := ctx.Err(); err != nil {
		return Lease{}, err
	}
	var res error
	var got Lease
	err := b.write(func(tx *bolt.Tx) error {
		res = nil
		bk := tx.Bucket(bucketLeases)
		k := tupleKey(l.Run, l.Name)
		var rec leaseRecord
		found, err := getJSON(bk, k, &rec)
		if err != nil {
			return err
		}
		now := b.o.now()
		if !found || rec.Holder != l.Holder || rec.Epoch != l.Epoch {
			res = leaseLost(l, rec.lease())
			return nil
		}
		rec.Expires = until(now).UnixMilli()
		got = rec.lease()
		return putJSON(bk, k, rec)
	})
	if err != nil {
		return Lease{}, fmt.Errorf("ledger: lease of run %s: %w", l.Run, err)
	}
	return got, res
}

func leaseLost(l, cur Lease) error {
	if cur.Holder == "" || cur.Holder == l.Holder {
		return fmt.Errorf("%w: run %s (lease %s, epoch %d) was released", ErrLeaseLost, l.Run, l.Name, l.Epoch)
	}
	return fmt.Errorf("%w: run %s (lease %s) is now held by %s (pid %d on %s, epoch %d)", ErrLeaseLost, l.Run, l.Name, cur.Holder, cur.PID, cur.Host, cur.Epoch)
}

func (b *boltLedger) Leases(ctx context.Context, runID string) ([]Lease, error) {
	if err := validRunID(runID); err != nil {
		return nil, err
	}
	var out []Lease
	err := b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketLeases).Cursor()
		prefix := tupleKey(runID)
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var rec leaseRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("ledger: corrupt lease: %w", err)
			}
			out = append(out, rec.lease())
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// DynamoDB: a lease is one item, PK "lease#<run>", SK <name>; an
// acquisition reads it (strongly consistent) and writes it on condition
// that it is still what was read (holder and epoch), so that two processes
// never both acquire it.

func leaseKey(run, name string) map[string]types.AttributeValue {
	return key("lease#"+run, name)
}

func (d *dynamoLedger) AcquireLease(ctx context.Context, want Lease, ttl time.Duration, takeOver func(Lease) bool) (Lease, error) {
	if err := checkLease(want, ttl); err != nil {
		return Lease{}, err
	}
	item, err := d.getItem(ctx, "lease#"+want.Run, want.Name)
	if err != nil {
		return Lease{}, err
	}
	var cur leaseRecord
	if item != nil {
		if err := attributevalue.UnmarshalMap(item, &cur); err != nil {
			return Lease{}, fmt.Errorf("ledger: decode the lease of run %s: %w", want.Run, err)
		}
	}
	got, err := nextLease(cur.lease(), item != nil, want, d.o.now(), ttl, takeOver)
	if err != nil {
		return Lease{}, err
	}
	av, err := attributevalue.MarshalMap(toLeaseRecord(got))
	if err != nil {
		return Lease{}, err
	}
	for k, v := range leaseKey(want.Run, want.Name) {
		av[k] = v
	}
	av[attrType] = s("lease")
	in := &dynamodb.PutItemInput{TableName: aws.String(d.table), Item: av}
	if item == nil {
		in.ConditionExpression = aws.String("attribute_not_exists(PK)")
	} else {
		in.ConditionExpression = aws.String("epoch = :e AND holder = :h")
		in.ExpressionAttributeValues = map[string]types.AttributeValue{":e": n(cur.Epoch), ":h": s(cur.Holder)}
	}
	if _, err := d.c.PutItem(ctx, in); err != nil {
		if isCondFailed(err) {
			// Someone else acquired it in between: say who.
			item, gerr := d.getItem(ctx, "lease#"+want.Run, want.Name)
			if gerr == nil && item != nil && attributevalue.UnmarshalMap(item, &cur) == nil {
				return Lease{}, &LeaseHeldError{Lease: cur.lease()}
			}
			return Lease{}, fmt.Errorf("%w: the lease of run %s changed hands while acquiring it", ErrLeaseHeld, want.Run)
		}
		return Lease{}, d.wrap("acquire the lease of run "+want.Run, err)
	}
	return got, nil
}

func (d *dynamoLedger) RenewLease(ctx context.Context, l Lease, ttl time.Duration) (Lease, error) {
	return d.updateLease(ctx, l, d.o.now().Add(ttl))
}

func (d *dynamoLedger) ReleaseLease(ctx context.Context, l Lease) error {
	_, err := d.updateLease(ctx, l, d.o.now())
	if err != nil && !isLeaseLost(err) {
		return err
	}
	return nil
}

func (d *dynamoLedger) updateLease(ctx context.Context, l Lease, until time.Time) (Lease, error) {
	if err := checkLease(l, time.Second); err != nil {
		return Lease{}, err
	}
	out, err := d.c.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.table), Key: leaseKey(l.Run, l.Name),
		UpdateExpression:          aws.String("SET expires = :x"),
		ConditionExpression:       aws.String("holder = :h AND epoch = :e"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":x": n(until.UnixMilli()), ":h": s(l.Holder), ":e": n(l.Epoch)},
		ReturnValues:              types.ReturnValueAllNew,
	})
	if isCondFailed(err) {
		var cur leaseRecord
		if item, gerr := d.getItem(ctx, "lease#"+l.Run, l.Name); gerr == nil && item != nil {
			_ = attributevalue.UnmarshalMap(item, &cur)
		}
		return Lease{}, leaseLost(l, cur.lease())
	}
	if err != nil {
		return Lease{}, d.wrap("renew the lease of run "+l.Run, err)
	}
	var rec leaseRecord
	if err := attributevalue.UnmarshalMap(out.Attributes, &rec); err != nil {
		return Lease{}, fmt.Errorf("ledger: decode the lease of run %s: %w", l.Run, err)
	}
	return rec.lease(), nil
}

func (d *dynamoLedger) Leases(ctx context.Context, runID string) ([]Lease, error) {
	if err := validRunID(runID); err != nil {
		return nil, err
	}
	var out []Lease
	p := dynamodb.NewQueryPaginator(d.c, &dynamodb.QueryInput{
		TableName:                 aws.String(d.table),
		KeyConditionExpression:    aws.String("PK = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": s("lease#" + runID)},
		ConsistentRead:            aws.Bool(true),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, d.wrap("leases of run "+runID, err)
		}
		for _, item := range page.Items {
			var rec leaseRecord
			if err := attributevalue.UnmarshalMap(item, &rec); err != nil {
				return nil, fmt.Errorf("ledger: decode a lease of run %s: %w", runID, err)
			}
			out = append(out, rec.lease())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ShardLeaseName names the lease of shard i of n ("all" for n <= 1).
func ShardLeaseName(i, n int) string {
	if n <= 1 {
		return "all"
	}
	return "shard-" + strconv.Itoa(i) + "-of-" + strconv.Itoa(n)
}
