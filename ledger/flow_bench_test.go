package ledger

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"
	bolt "go.etcd.io/bbolt"

	"github.com/rotator-dev/rotator/internal/testenv"
)

// The ledger's side of a rewrap run, measured: every object goes through
// the calls the pipeline makes, with the S3 write (which the ledger waits
// for) stood in for by a sleep of writeLatency, by conc workers at once.
//
//	legacy: Claim, PreparedOn, Prepare, (write), Commit, Release: the
//	        calls before Begin existed (the same code, for a comparison in
//	        one run)
//	lean:   Begin, (write), Commit
//
// Reported: objects/s, ledger writes per object (embedded: transactions;
// DynamoDB: write requests, failed conditional ones included, as AWS bills
// them), and bytes of ledger per object (embedded: pages in use; DynamoDB:
// item sizes as AWS counts them).

const writeLatency = 30 * time.Millisecond

// flowObject is the rewrap of object i of a run, with realistic sizes.
func flowObject(run string, i int) (Object, Event) {
	// Keys in listing order, as a run meets them.
	id := ObjectID{Bucket: "data-bucket", Key: fmt.Sprintf("tenants/t%03d/2026/12/05/object-%08d.bin", i/1000, i)}
	h := md5.Sum([]byte(id.Key))
	etag := `"` + hex.EncodeToString(h[:]) + `"`
	ev := Event{ID: id, RunID: run, Op: OpRewrap, Method: "kms-reencrypt", FromKey: keyA, ToKey: keyB, ETagBefore: etag,
		OldWrappedKeySHA256: WrappedKeyFingerprint([]byte("old " + id.Key)),
		NewWrappedKeySHA256: WrappedKeyFingerprint([]byte("new " + id.Key + run))}
	obj := Object{ID: id, WrapKey: keyB, Format: "s3ec-v2", Placement: "metadata", CEKAlg: "AES/GCM/NoPadding",
		State: StateRewrapped, ETag: etag, RunID: run, WrappedKeySHA256: ev.NewWrappedKeySHA256}
	return obj, ev
}

func flowOne(l Ledger, lean bool, owner string, obj Object, ev Event) error {
	if lean {
		got, err := l.Begin(ctx, owner, time.Hour, ev)
		if err != nil {
			return err
		}
		if !got.Prepared {
			return fmt.Errorf("begin %s: nothing prepared", ev.ID)
		}
	} else {
		if _, err := l.Claim(ctx, ev.ID, owner, time.Hour); err != nil {
			return err
		}
		if _, err := l.PreparedOn(ctx, ev.RunID, ev.ID); err != nil {
			return err
		}
		if err := l.Prepare(ctx, owner, ev); err != nil {
			return err
		}
	}
	time.Sleep(writeLatency)
	ev.ETagAfter = ev.ETagBefore
	if err := l.Commit(ctx, owner, obj, ev); err != nil {
		return err
	}
	if !lean {
		return l.Release(ctx, ev.ID, owner)
	}
	return nil
}

// flowRun runs n objects through l with conc workers; run names the run.
func flowRun(b *testing.B, l Ledger, lean bool, run string, n, conc int) time.Duration {
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				obj, ev := flowObject(run, i)
				if err := flowOne(l, lean, ownr(run), obj, ev); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start)
}

// boltInUse returns the bytes of the file's pages in use.
func boltInUse(b *testing.B, l *boltLedger) int64 {
	var size int64
	if err := l.db.View(func(tx *bolt.Tx) error { size = tx.Size(); return nil }); err != nil {
		b.Fatal(err)
	}
	st := l.db.Stats()
	return size - int64(st.FreePageN+st.PendingPageN)*int64(l.db.Info().PageSize)
}

// boltFileSize returns the size of the ledger's file, which is what a
// user sees (pages in use, free pages and the room bbolt grew it by).
func boltFileSize(b *testing.B, l *boltLedger) int64 {
	fi, err := os.Stat(l.db.Path())
	if err != nil {
		b.Fatal(err)
	}
	return fi.Size()
}

func BenchmarkRewrapFlowBolt(b *testing.B) {
	// lean-schema2: the lean calls on a file of schema 2 (names in clear
	// in the keys), as an earlier rotator created it.
	for _, flow := range []string{"legacy", "lean", "lean-schema2"} {
		for _, conc := range []int{32, 128, 512} {
			b.Run(fmt.Sprintf("%s/concurrency=%d", flow, conc), func(b *testing.B) {
				store := boltStore
				if flow == "lean-schema2" {
					store = boltStoreSchema2
				}
				l := store(b)().(*boltLedger)
				n := max(b.N, conc)
				// Two runs over the same objects: bytes per object of the
				// first (records created) and of the second (a rotation of
				// objects the ledger knows).
				var d time.Duration
				var bytes, file [2]int64
				for r := range 2 {
					w0, u0, f0 := l.writes.Load(), boltInUse(b, l), boltFileSize(b, l)
					d = flowRun(b, l, flow != "legacy", fmt.Sprintf("run-%d", r), n, conc)
					bytes[r] = boltInUse(b, l) - u0
					file[r] = boltFileSize(b, l) - f0
					if r == 1 {
						b.ReportMetric(float64(l.writes.Load()-w0)/float64(n), "writes/obj")
					}
				}
				b.ReportMetric(float64(n)/d.Seconds(), "obj/s")
				b.ReportMetric(float64(bytes[0])/float64(n), "B/obj-run1")
				b.ReportMetric(float64(bytes[1])/float64(n), "B/obj-run2")
				b.ReportMetric(float64(file[0])/float64(n), "file-B/obj-run1")
				b.ReportMetric(float64(file[1])/float64(n), "file-B/obj-run2")
			})
		}
	}
}

// writeCounter counts DynamoDB write requests, and the bytes of the
// items they write, by operation.
type writeCounter struct{ puts, updates, deletes atomic.Int64 }

func (c *writeCounter) middleware(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("count-writes",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			switch in.Parameters.(type) {
			case *dynamodb.PutItemInput:
				c.puts.Add(1)
			case *dynamodb.UpdateItemInput:
				c.updates.Add(1)
			case *dynamodb.DeleteItemInput:
				c.deletes.Add(1)
			}
			return next.HandleInitialize(ctx, in)
		}), middleware.After)
}

func (c *writeCounter) total() int64 { return c.puts.Load() + c.updates.Load() + c.deletes.Load() }

// itemSize is an item's size as DynamoDB bills it: attribute names and
// values (strings and binaries by length, numbers about their digits).
func itemSize(item map[string]types.AttributeValue) int {
	n := 0
	for k, v := range item {
		n += len(k)
		switch v := v.(type) {
		case *types.AttributeValueMemberS:
			n += len(v.Value)
		case *types.AttributeValueMemberB:
			n += len(v.Value)
		case *types.AttributeValueMemberN:
			n += (len(v.Value)+1)/2 + 1
		case *types.AttributeValueMemberSS:
			for _, s := range v.Value {
				n += len(s)
			}
		case *types.AttributeValueMemberM:
			n += 3 + itemSize(v.Value)
		default:
			n += 8
		}
	}
	return n
}

func BenchmarkRewrapFlowDynamoDB(b *testing.B) {
	testenv.Need(b, testenv.DynamoDB)
	for _, flow := range []string{"legacy", "lean"} {
		b.Run(flow, func(b *testing.B) {
			var wc writeCounter
			cfg := testenv.AWSConfig(b)
			cfg.APIOptions = append(cfg.APIOptions, wc.middleware)
			l := dynamoStore(b)(WithAWSConfig(cfg)).(*dynamoLedger)
			n := max(b.N, 32)
			w0 := wc.total()
			d := flowRun(b, l, flow == "lean", "run-0", n, 32)
			b.ReportMetric(float64(n)/d.Seconds(), "obj/s")
			b.ReportMetric(float64(wc.total()-w0)/float64(n), "writes/obj")
			// Item sizes: the largest item, and all of them per object.
			var total, largest int
			p := dynamodb.NewScanPaginator(l.c, &dynamodb.ScanInput{TableName: aws.String(l.table)})
			for p.HasMorePages() {
				out, err := p.NextPage(ctx)
				if err != nil {
					b.Fatal(err)
				}
				for _, it := range out.Items {
					sz := itemSize(it)
					total += sz
					largest = max(largest, sz)
				}
			}
			b.ReportMetric(float64(total)/float64(n), "B/obj")
			b.ReportMetric(float64(largest), "B-largest-item")
		})
	}
}
