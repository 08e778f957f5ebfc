package ledger

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/rotator-dev/rotator/internal/testenv"
	"golang.org/x/sync/errgroup"
)

// opCounter counts DynamoDB requests by operation (X-Amz-Target).
type opCounter struct {
	next aws.HTTPClient
	mu   sync.Mutex
	n    map[string]int
}

func (c *opCounter) Do(r *http.Request) (*http.Response, error) {
	_, op, _ := strings.Cut(r.Header.Get("X-Amz-Target"), ".")
	c.mu.Lock()
	c.n[op]++
	c.mu.Unlock()
	return c.next.Do(r)
}

func (c *opCounter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.n
	c.n = map[string]int{}
	return n
}

func countingConfig(t testing.TB) (aws.Config, *opCounter) {
	cfg := testenv.AWSConfig(t)
	c := &opCounter{next: cfg.HTTPClient, n: map[string]int{}}
	if c.next == nil {
		c.next = http.DefaultClient
	}
	cfg.HTTPClient = c
	return cfg, c
}

// journalItemsOf counts the journal items of run.
func journalItemsOf(t testing.TB, l Ledger, run string) int {
	t.Helper()
	d := l.(*dynamoLedger)
	n := 0
	for i := range gsiShards {
		out, err := d.c.Query(ctx, &dynamodb.QueryInput{
			TableName:              aws.String(d.table),
			KeyConditionExpression: aws.String("PK = :pk AND begins_with(SK, :j)"),
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":pk": s(preparedShard(run, strconv.FormatInt(int64(i), 16))), ":j": s(journalPrefix),
			},
			ConsistentRead: aws.Bool(true),
		})
		if err != nil {
			t.Fatal(err)
		}
		n += len(out.Items)
	}
	return n
}

// A rewrap writes its object's item twice (Begin, Commit) and reads
// nothing; journal writes are shared by the objects in flight, and a
// closed ledger leaves no journal item behind.
func TestDynamoDBWritesPerRewrap(t *testing.T) {
	open := dynamoStore(t)
	cfg, cnt := countingConfig(t)
	l := open(WithAWSConfig(cfg))
	const objects, workers = 480, 32
	cnt.take()
	var g errgroup.Group
	g.SetLimit(workers)
	for i := range objects {
		g.Go(func() error {
			processLean(t, l, newS3Object(fmt.Sprintf("w/%03d", i), false), ownr("runW"), 1)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	n := cnt.take()
	// Three UpdateItems more, once per process: the wrap key's
	// registration, and the two keys' in the key reference registry.
	if got, want := n["UpdateItem"], 2*objects+3; got != want {
		t.Errorf("UpdateItem: %d, want %d (Begin and Commit per object, three registrations): %v", got, want, n)
	}
	for _, op := range []string{"GetItem", "Query", "BatchGetItem", "DeleteItem"} {
		if n[op] != 0 {
			t.Errorf("%s: %d, want none: %v", op, n[op], n)
		}
	}
	if n["PutItem"] > objects/4 {
		t.Errorf("%d journal writes for %d objects, %d in flight: the group commit does not group", n["PutItem"], objects, workers)
	}
	t.Logf("%d objects, %d in flight: %.3f writes per object (%d journal writes, %.1f objects each): %v",
		objects, workers, float64(n["UpdateItem"]+n["PutItem"])/objects, n["PutItem"], float64(objects)/float64(n["PutItem"]), n)
	if got := listPrepared(t, l, "runW"); len(got) != 0 {
		t.Fatalf("prepared after the commits: %+v", got)
	}

	// Announced in groups (here of 128) as the pipeline lists them: one journal
	// write per group, none per Begin.
	d := l.(*dynamoLedger)
	cnt.take()
	for start := 0; start < objects; start += 128 {
		end := min(start+128, objects)
		var ids []ObjectID
		for i := start; i < end; i++ {
			ids = append(ids, newS3Object(fmt.Sprintf("a/%03d", i), false).id())
		}
		if err := d.Announce(ctx, "runA", ids); err != nil {
			t.Fatal(err)
		}
		for i := start; i < end; i++ {
			g.Go(func() error {
				o := newS3Object(fmt.Sprintf("a/%03d", i), false)
				processLean(t, l, o, ownr("runA"), 1)
				d.Done("runA", o.id())
				return nil
			})
		}
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	n = cnt.take()
	if got, want := n["PutItem"], (objects+127)/128; got != want || n["UpdateItem"] != 2*objects {
		t.Errorf("announced: %d journal writes (want %d), %d UpdateItems (want %d): %v", got, want, n["UpdateItem"], 2*objects, n)
	}
	t.Logf("announced: %.3f writes per object: %v", float64(n["UpdateItem"]+n["PutItem"])/objects, n)
	if got := listPrepared(t, l, "runA"); len(got) != 0 {
		t.Fatalf("prepared after the commits: %+v", got)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, run := range []string{"runW", "runA"} {
		if n := journalItemsOf(t, open(), run); n != 0 {
			t.Fatalf("%d journal items of %s left after Close", n, run)
		}
	}
}

// An object announced and begun by a process that dies is found by the
// next one's Prepared whatever version its intent is on, among the 1,000
// objects of a group as large as the pipeline announces (a listing page),
// most of them never begun.
func TestDynamoDBAnnouncedIntentsAreFound(t *testing.T) {
	open := dynamoStore(t)
	l := open()
	d := l.(*dynamoLedger)
	const run = "runN"
	var objs []*s3Object
	var ids []ObjectID
	for i := range 1000 {
		o := newS3Object(fmt.Sprintf("n/%04d", i), i%2 == 1)
		ids = append(ids, ObjectID{Bucket: o.bucket, Key: o.key})
		if i%100 == 7 || i%100 == 50 {
			objs = append(objs, o)
		}
	}
	if err := d.Announce(ctx, run, ids); err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		ev, _ := o.rewrapEvent(run, 1)
		if got, err := l.Begin(ctx, ownr(run), time.Hour, ev); err != nil || !got.Prepared {
			t.Fatalf("begin: %+v, %v", got, err)
		}
	}
	// kill -9; the next process.
	l2 := open()
	got := listPrepared(t, l2, run)
	if raw := rawPrepared(t, l2, run); len(got) != len(objs) || raw != len(objs) {
		t.Fatalf("Prepared lists %d intents, the table holds %d, want %d", len(got), raw, len(objs))
	}
	want := map[ObjectID]bool{}
	for _, o := range objs {
		want[o.id()] = true
	}
	for _, ev := range got {
		if !want[ev.ID] {
			t.Errorf("Prepared lists %s, which was never begun", ev.ID)
		}
		delete(want, ev.ID)
	}
	if len(want) > 0 {
		t.Errorf("Prepared missed %v", want)
	}
}

// A process that dies with intents in flight leaves them journaled: the
// next process lists every intent the table holds (a scan finds no other),
// settles them, and Prepared deletes the dead process's journal items once
// they are older than journalQuiet and name no intent.
func TestDynamoDBJournalCoversEveryIntent(t *testing.T) {
	open := dynamoStore(t)
	clk := newClock()
	l := open(WithClock(clk.Now))
	const objects, run = 200, "runJ"
	objs := make([]*s3Object, objects)
	var g errgroup.Group
	g.SetLimit(32)
	for i := range objects {
		objs[i] = newS3Object(fmt.Sprintf("j/%03d", i), i%3 == 0)
		g.Go(func() error {
			o := objs[i]
			ev, nw := o.rewrapEvent(run, 1)
			got, err := l.Begin(ctx, ownr(run), time.Hour, ev)
			if err != nil || !got.Prepared {
				return fmt.Errorf("begin %s: %+v, %v", o.id(), got, err)
			}
			if i%2 == 1 {
				return nil // in flight when the process dies
			}
			o.write(nw, keyB)
			obj, cev := o.completed(ev)
			return l.Commit(ctx, ownr(run), obj, cev)
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	// kill -9: no Close. A new process of the run, next epoch.
	l2 := open(WithClock(clk.Now))
	left := listPrepared(t, l2, run)
	if raw := rawPrepared(t, l2, run); len(left) != objects/2 || raw != objects/2 {
		t.Fatalf("Prepared lists %d intents, the table holds %d, want %d", len(left), raw, objects/2)
	}
	next := epochOwner(run, 2, "p2")
	for _, ev := range left {
		if _, err := l2.Claim(ctx, ev.ID, next, time.Hour); err != nil {
			t.Fatal(err)
		}
		if err := l2.Abandon(ctx, next, ev.ID, run, ev.Op); err != nil {
			t.Fatal(err)
		}
		if err := l2.Release(ctx, ev.ID, next); err != nil {
			t.Fatal(err)
		}
	}
	if got := listPrepared(t, l2, run); len(got) != 0 {
		t.Fatalf("%d intents after settling", len(got))
	}
	if n := journalItemsOf(t, l2, run); n == 0 {
		t.Fatal("Prepared deleted journal items younger than journalQuiet")
	}
	clk.Advance(journalQuiet + time.Minute)
	if got := listPrepared(t, l2, run); len(got) != 0 {
		t.Fatalf("%d intents", len(got))
	}
	if n := journalItemsOf(t, l2, run); n != 0 {
		t.Fatalf("%d journal items left an hour after their intents were settled", n)
	}
	// The committed half is lineage.
	for i, o := range objs {
		if evs := lineageOf(t, l2, o.id()); (len(evs) == 1) != (i%2 == 0) {
			t.Fatalf("%s: %d events", o.id(), len(evs))
		}
	}
}

// A table of schema 1 is upgraded on open once no unfinished run holds
// schema 1 intents; its events are still lineage.
func TestDynamoDBUpgradesSchema1(t *testing.T) {
	open := dynamoStore(t)
	l := open()
	d := l.(*dynamoLedger)
	put := func(item map[string]types.AttributeValue) {
		t.Helper()
		if _, err := d.c.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(d.table), Item: item}); err != nil {
			t.Fatal(err)
		}
	}
	id := ObjectID{Bucket: "b", Key: "old/doc", VersionID: "v1"}
	put(map[string]types.AttributeValue{attrPK: s(pkMeta), attrSK: s(skSchema), "version": n(1)})
	put(map[string]types.AttributeValue{
		attrPK: s(objectPK(id.Bucket, id.Key)), attrSK: s(eventSK(id.VersionID, "old-run", OpRewrap)), attrType: s(typeEvent),
		"bucket": s(id.Bucket), "object_key": s(id.Key), "version_id": s(id.VersionID), "run_id": s("old-run"), "op": s(OpRewrap),
		"method": s("kms-reencrypt"), "from_key": s(keyA), "to_key": s(keyB), "at": s(formatTime(time.Now())),
		"version_before": s(id.VersionID),
	})
	r := &Run{ID: "old-run", State: RunInterrupted}
	if err := l.CreateRun(ctx, r); err != nil {
		t.Fatal(err)
	}
	pk := preparedPK("old-run", objectPK(id.Bucket, id.Key))
	put(map[string]types.AttributeValue{attrPK: s(pk), attrSK: s("prep#x"), attrType: s("prepared")})
	if _, err := Open(ctx, "dynamodb://"+d.table); err == nil || !strings.Contains(err.Error(), "old-run") || !strings.Contains(err.Error(), "hint") {
		t.Fatalf("open with a schema 1 intent: got %v, want a refusal naming the run", err)
	}
	if _, err := d.c.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(d.table), Key: key(pk, "prep#x")}); err != nil {
		t.Fatal(err)
	}
	l2, err := Open(ctx, "dynamodb://"+d.table)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	item, err := d.getItem(ctx, pkMeta, skSchema)
	if err != nil || numAttr(item, "version") != dynamoSchema || numAttr(item, "upgraded_from") != 1 {
		t.Fatalf("schema item after the upgrade: %v, %v", item, err)
	}
	if evs := lineageOf(t, l2, id); len(evs) != 1 || evs[0].RunID != "old-run" || evs[0].ToKey != keyB {
		t.Fatalf("schema 1 lineage: %+v", evs)
	}
	// A schema 1 object record (wrap_key beside wk_shard, the fingerprint
	// in hex, values in full) reads as it was written, and an observation
	// that does not know the key keeps it.
	old := ObjectID{Bucket: "b", Key: "old/record"}
	fp := WrappedKeyFingerprint([]byte("old wrapped"))
	put(map[string]types.AttributeValue{
		attrPK: s(objectPK(old.Bucket, old.Key)), attrSK: s(versionSK("")), attrType: s(typeObject),
		"bucket": s(old.Bucket), "object_key": s(old.Key), "wrap_key": s(keyA), attrShard: s(shardValue(keyA, old)),
		"format": s("V2"), "placement": s("object metadata"), "cek_alg": s("AES/GCM/NoPadding"), "state": s("current"),
		"etag": s(`"e0"`), "run_id": s("old-run"), "updated_at": s(formatTime(time.Now().Add(-time.Hour))),
		"wrapped_key_sha256": s(fp),
	})
	put(map[string]types.AttributeValue{attrPK: s(pkMeta), attrSK: s(skWrapKeys), "keys": &types.AttributeValueMemberSS{Value: []string{keyA}}})
	want := Object{ID: old, WrapKey: keyA, Format: "V2", Placement: "object metadata", CEKAlg: "AES/GCM/NoPadding",
		State: StateCurrent, ETag: `"e0"`, RunID: "old-run", WrappedKeySHA256: fp}
	got := mustGet(t, l2, old)
	got.UpdatedAt = time.Time{}
	if got != want {
		t.Fatalf("schema 1 record:\n got %+v\nwant %+v", got, want)
	}
	mustObserve(t, l2, Object{ID: old, State: StateCurrent, Format: "V2", RunID: "new-run", WrappedKeySHA256: fp})
	if got := mustGet(t, l2, old); got.WrapKey != keyA || got.WrappedKeySHA256 != fp {
		t.Fatalf("an observation without the key dropped the schema 1 record's: %+v", got)
	}
	if got := byKey(t, l2, keyA); len(got) != 1 || got[0] != old.Key+"@" {
		t.Fatalf("ByKey finds the schema 1 record under its index key's old form: %+v", got)
	}
	if c := counts(t, l2); c[keyA] != 1 {
		t.Fatalf("counts of the upgraded table: %v", c)
	}
	item, err = d.getItem(ctx, objectPK(old.Bucket, old.Key), versionSK(""))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := item["wrapped_key_sha256"].(*types.AttributeValueMemberS); !ok || strAttr(item, "state") != "~0" {
		t.Fatalf("the observation rewrote the record as %v", item)
	}

	// New changes of the upgraded table take schema 2's form beside it.
	processLean(t, l2, &s3Object{bucket: id.Bucket, key: id.Key, version: id.VersionID, wrapped: "w", wrapKey: keyB, etag: `"e0"`}, ownr("new-run"), 1)
	if evs := lineageOf(t, l2, id); len(evs) != 2 {
		t.Fatalf("lineage after a schema 2 change: %+v", evs)
	}
	// Schema 2's record: no wrap_key (wk_shard has it), the fingerprint
	// in binary, short values.
	mustObserve(t, l2, Object{ID: old, WrapKey: keyB, State: StateRewrapped, Format: "V3", Placement: "instruction file",
		CEKAlg: "AES/GCM/NoPadding", RunID: "new-run", WrappedKeySHA256: fp})
	item, err = d.getItem(ctx, objectPK(old.Bucket, old.Key), versionSK(""))
	if err != nil {
		t.Fatal(err)
	}
	if _, has := item["wrap_key"]; has || strAttr(item, attrShard) != shardValue(keyB, old) {
		t.Fatalf("schema 2 record keeps wrap_key: %v", item)
	}
	if b, ok := item["wrapped_key_sha256"].(*types.AttributeValueMemberB); !ok || len(b.Value) != 32 {
		t.Fatalf("schema 2 fingerprint: %v", item["wrapped_key_sha256"])
	}
	for _, a := range shortAttrs {
		if v := strAttr(item, a); len(v) > 3 {
			t.Errorf("%s written in full: %q", a, v)
		}
	}
	if got := mustGet(t, l2, old); got.WrapKey != keyB || got.Placement != "instruction file" || got.State != StateRewrapped || got.WrappedKeySHA256 != fp {
		t.Fatalf("schema 2 record read back: %+v", got)
	}
	if got := byKey(t, l2, keyB); len(got) != 1 {
		t.Logf("ByKey (eventually consistent index): %v", got)
	}
}

// A process's Prepared reads, of its own announcement, only the objects
// that may still hold an intent; its Close rewrites the announcement down
// to those, so that the next process's Prepared does the same. Both list
// every intent. (After a kill -9 the next process reads every entry:
// TestDynamoDBAnnouncedIntentsAreFound.)
func TestDynamoDBLiveAnnouncementReadsOnlyWhatMayHoldAnIntent(t *testing.T) {
	open := dynamoStore(t)
	cfg, cnt := countingConfig(t)
	l := open(WithAWSConfig(cfg))
	d := l.(*dynamoLedger)
	const run = "runL"
	var ids []ObjectID
	var begun []*s3Object
	for i := range 1000 {
		o := newS3Object(fmt.Sprintf("l/%04d", i), i%2 == 1)
		ids = append(ids, ObjectID{Bucket: o.bucket, Key: o.key})
		if i == 5 || i == 500 || i == 999 {
			begun = append(begun, o)
		}
	}
	if err := d.Announce(ctx, run, ids); err != nil {
		t.Fatal(err)
	}
	for _, o := range begun {
		ev, _ := o.rewrapEvent(run, 1)
		if got, err := l.Begin(ctx, ownr(run), time.Hour, ev); err != nil || !got.Prepared {
			t.Fatalf("begin: %+v, %v", got, err)
		}
	}
	for _, id := range ids {
		d.Done(run, id) // the run is through with every object; three intents stay
	}
	check := func(l Ledger, who string) {
		t.Helper()
		cnt.take()
		got := listPrepared(t, l, run)
		n := cnt.take()
		if len(got) != len(begun) {
			t.Fatalf("%s: Prepared lists %d intents, want %d", who, len(got), len(begun))
		}
		for i, ev := range got {
			if ev.ID != begun[i].id() {
				t.Errorf("%s: intent %d on %s, want %s", who, i, ev.ID, begun[i].id())
			}
		}
		// 16 Queries of the run's journal partitions, and one of each
		// object that may hold an intent: not the 1,000 announced.
		if q := n["Query"]; q > gsiShards+len(begun) {
			t.Errorf("%s: %d Queries, want at most %d: %v", who, q, gsiShards+len(begun), n)
		}
		t.Logf("%s: %v", who, n)
	}
	check(l, "the process that announced")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	check(open(WithAWSConfig(cfg)), "the next process")
}

// loseOnce forwards every request and, for the first UpdateItem whose body
// contains match, throws the answer away and says 500: the write landed,
// its response was lost, and the SDK sends it again.
type loseOnce struct {
	next  aws.HTTPClient
	match string
	lost  atomic.Bool
}

func (c *loseOnce) Do(r *http.Request) (*http.Response, error) {
	if !strings.HasSuffix(r.Header.Get("X-Amz-Target"), ".UpdateItem") || c.lost.Load() || r.Body == nil {
		return c.next.Do(r)
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	resp, err := c.next.Do(r)
	if err != nil || !bytes.Contains(body, []byte(c.match)) || !c.lost.CompareAndSwap(false, true) {
		return resp, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	msg := `{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"injected: the response was lost"}`
	return &http.Response{StatusCode: 500, Status: "500 Internal Server Error", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"application/x-amz-json-1.0"}}, Body: io.NopCloser(strings.NewReader(msg)),
		ContentLength: int64(len(msg)), Request: r}, nil
}

// A Begin (or a Prepare) whose write landed but whose response was lost is
// sent again and fails its own condition (its intent is there): the
// journal keeps counting it, so Prepared lists it, in this process and the
// next, even when the announcement is read through the process's accounts
// (another object's intent keeps it live).
func TestDynamoDBBeginRetriedAfterItLandedStaysJournaled(t *testing.T) {
	for _, prepare := range []bool{false, true} {
		name := "Begin"
		if prepare {
			name = "Prepare"
		}
		t.Run(name, func(t *testing.T) { retriedAfterLanding(t, prepare) })
	}
}

func retriedAfterLanding(t *testing.T, prepare bool) {
	open := dynamoStore(t)
	a, b := newS3Object("r/a", false), newS3Object("r/b", false)
	cfg := testenv.AWSConfig(t)
	next := cfg.HTTPClient
	if next == nil {
		next = http.DefaultClient
	}
	lose := &loseOnce{next: next, match: objectPK(a.bucket, a.key)}
	cfg.HTTPClient = lose
	l := open(WithAWSConfig(cfg))
	d := l.(*dynamoLedger)
	const run = "runR"
	ids := []ObjectID{{Bucket: a.bucket, Key: a.key}, {Bucket: b.bucket, Key: b.key}}
	if err := d.Announce(ctx, run, ids); err != nil {
		t.Fatal(err)
	}
	for _, o := range []*s3Object{b, a} {
		ev, _ := o.rewrapEvent(run, 1)
		if prepare && o == a {
			if _, err := l.Claim(ctx, a.id(), ownr(run), time.Hour); err != nil {
				t.Fatal(err)
			}
			lose.lost.Store(false) // lose the Prepare's answer, not the Claim's
			if err := l.Prepare(ctx, ownr(run), ev); err != nil {
				t.Fatalf("prepare %s: %v", o.key, err)
			}
			continue
		}
		got, err := l.Begin(ctx, ownr(run), time.Hour, ev)
		if err != nil {
			t.Fatalf("begin %s: %v", o.key, err)
		}
		t.Logf("begin %s: prepared %v", o.key, got.Prepared)
	}
	if !lose.lost.Load() {
		t.Fatal("no response was lost")
	}
	for _, id := range ids {
		d.Done(run, id)
	}
	if got, raw := listPrepared(t, l, run), rawPrepared(t, l, run); len(got) != 2 || raw != 2 {
		t.Fatalf("this process: Prepared lists %d intents, the table holds %d, want 2", len(got), raw)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := listPrepared(t, open(), run); len(got) != 2 {
		t.Fatalf("the next process: Prepared lists %d intents, want 2", len(got))
	}
}

// TestDynamoDBOpenWritesOnlyOnce: the first open of a table records its
// schema (one PutItem); a later open only reads it, since a conditional
// PutItem that fails still costs a write unit.
func TestDynamoDBOpenWritesOnlyOnce(t *testing.T) {
	open := dynamoStore(t)
	cfg, cnt := countingConfig(t)
	open(WithAWSConfig(cfg))
	if n := cnt.take(); n["PutItem"] != 1 || n["UpdateItem"]+n["DeleteItem"] != 0 {
		t.Errorf("the first open of a table wrote %v, want one PutItem (its schema record)", n)
	}
	for range 2 {
		open(WithAWSConfig(cfg))
		if n := cnt.take(); n["PutItem"]+n["UpdateItem"]+n["DeleteItem"]+n["BatchWriteItem"] != 0 {
			t.Errorf("an open of a table of this schema wrote %v, want nothing", n)
		}
	}
}
