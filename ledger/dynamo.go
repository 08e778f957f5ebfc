package ledger

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/rotator-dev/rotator/internal/awsx"
	"golang.org/x/sync/errgroup"
)

// The DynamoDB backend: one table shared by every worker and shard. The
// layout is in SCHEMA.md. Every write is a single-item conditional write;
// there are no transactions (dynalite has none, and they cost twice as much).
// A Commit is four or five requests in an order that makes a retry
// converge:
//
//  1. read the claim on ev.ID (strongly consistent);
//  2. read the prepared event of ev's identity, if any (strongly
//     consistent): ev must complete it;
//  3. put the event if it does not exist (an identical one is success);
//  4. update the object record and drop the claim, on condition that the
//     claim is still held by the run;
//  5. delete the prepared event, if step 2 found one.
//
// Step 4 is the fence: a worker whose claim was taken over cannot overwrite
// the new holder's record. The event written in step 3 records an S3 change
// that did happen, so it stays even then.
//
// A prepared event is one item in a partition of its run (see SCHEMA.md),
// so Prepare is one conditional PutItem after two reads, and Abandon one
// DeleteItem. A crash between steps 3 and 5 leaves a prepared event whose
// event is recorded: while the run still holds the claim (crash before step
// 4) Prepared lists it and the resumed run's Commit finishes the job; once
// the claim is released Prepared and Commit drop it.

// Attribute and index names (see SCHEMA.md).
const (
	attrPK           = "PK"
	attrSK           = "SK"
	attrType         = "t"
	attrShard        = "wk_shard"
	attrClaimOwner   = "claim_owner"
	attrClaimRun     = "claim_run"
	attrClaimExpires = "claim_expires"
	attrClaimGroup   = "claim_group"
	attrClaimEpoch   = "claim_epoch"
	attrUpdatedAt    = "updated_at"
	attrRevision     = "revision"
	gsiByKey         = "by_wrap_key"
	// gsiShards spreads each wrap key over this many GSI partition key
	// values, so that moving millions of objects to one new key does not
	// throttle on a single GSI partition (about 1,000 writes/s each).
	// Fixed for the life of a table.
	gsiShards     = 16
	pkRuns        = "run"
	pkMeta        = "meta"
	skWrapKeys    = "wrap_keys"
	skSchema      = "schema"
	dynamoSchema  = 1
	typeObject    = "object"
	typeEvent     = "event"
	typePrepared  = "prepared"
	typeRun       = "run"
	defaultTries  = 10 // SDK attempts per request, unless configured
	createTimeout = 5 * time.Minute
)

type dynamoLedger struct {
	c     *dynamodb.Client
	table string
	o     options

	mu   sync.Mutex
	keys map[string]bool // wrap keys known to be in the registry
}

var _ Ledger = (*dynamoLedger)(nil)

// WithAWSConfig sets the AWS configuration of the DynamoDB client instead of
// the default chain.
func WithAWSConfig(cfg aws.Config) Option { return func(o *options) { o.awsCfg = &cfg } }

func openDynamo(ctx context.Context, spec string, o options) (*dynamoLedger, error) {
	table, query, _ := strings.Cut(spec, "?")
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, fmt.Errorf("ledger: open dynamodb://%s: %w", spec, err)
	}
	create := false
	for k, v := range q {
		switch {
		case k == "create" && len(v) == 1 && (v[0] == "true" || v[0] == "false"):
			create = v[0] == "true"
		default:
			return nil, fmt.Errorf("ledger: open dynamodb://%s: unknown option %s=%s (hint: the only option is create=true)", spec, k, strings.Join(v, ","))
		}
	}
	if err := validTableName(table); err != nil {
		return nil, err
	}
	var cfg aws.Config
	if o.awsCfg != nil {
		cfg = *o.awsCfg
	} else if cfg, err = awsx.Load(ctx, awsx.Options{MaxAttempts: defaultTries}); err != nil {
		return nil, fmt.Errorf("ledger: open dynamodb://%s: %w", table, err)
	}
	client := awsx.DynamoDB(cfg)
	if o.segments <= 0 {
		o.segments = 4
	}
	d := &dynamoLedger{c: client, table: table, o: o, keys: map[string]bool{}}
	if create {
		if err := d.createTable(ctx); err != nil {
			return nil, err
		}
	}
	if err := d.checkTable(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

func validTableName(t string) error {
	if len(t) < 3 || len(t) > 255 {
		return fmt.Errorf("%w: dynamodb table name %q: want 3 to 255 characters", ErrInvalid, t)
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return fmt.Errorf("%w: dynamodb table name %q: only [A-Za-z0-9_.-] allowed", ErrInvalid, t)
		}
	}
	return nil
}

func (d *dynamoLedger) createTable(ctx context.Context) error {
	s := types.ScalarAttributeTypeS
	_, err := d.c.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:   aws.String(d.table),
		BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(attrPK), AttributeType: s},
			{AttributeName: aws.String(attrSK), AttributeType: s},
			{AttributeName: aws.String(attrShard), AttributeType: s},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(attrPK), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(attrSK), KeyType: types.KeyTypeRange},
		},
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{{
			IndexName: aws.String(gsiByKey),
			KeySchema: []types.KeySchemaElement{{AttributeName: aws.String(attrShard), KeyType: types.KeyTypeHash}},
			// Only the object record's own attributes: claim writes then
			// cost no index write.
			Projection: &types.Projection{ProjectionType: types.ProjectionTypeInclude, NonKeyAttributes: objectAttrs},
		}},
	})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("ledger: create dynamodb table %s: %w", d.table, err)
	}
	w := dynamodb.NewTableExistsWaiter(d.c, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = time.Second, 10*time.Second
	})
	if err := w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(d.table)}, createTimeout); err != nil {
		return fmt.Errorf("ledger: create dynamodb table %s: waiting for it to become active: %w", d.table, err)
	}
	return nil
}

// checkTable verifies the key schema and the index, and records or checks
// the schema version.
func (d *dynamoLedger) checkTable(ctx context.Context) error {
	out, err := d.c.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(d.table)})
	var nf *types.ResourceNotFoundException
	if errors.As(err, &nf) {
		return fmt.Errorf("ledger: dynamodb table %s does not exist (hint: open dynamodb://%s?create=true, or create it as SCHEMA.md describes)", d.table, d.table)
	}
	if err != nil {
		return fmt.Errorf("ledger: describe dynamodb table %s: %w", d.table, err)
	}
	bad := func(what string) error {
		return fmt.Errorf("ledger: dynamodb table %s is not a rotator ledger: %s (hint: see ledger/SCHEMA.md)", d.table, what)
	}
	ks := out.Table.KeySchema
	if len(ks) != 2 || aws.ToString(ks[0].AttributeName) != attrPK || aws.ToString(ks[1].AttributeName) != attrSK {
		return bad("want key schema PK (hash), SK (range)")
	}
	found := false
	for _, g := range out.Table.GlobalSecondaryIndexes {
		if aws.ToString(g.IndexName) == gsiByKey {
			found = len(g.KeySchema) > 0 && aws.ToString(g.KeySchema[0].AttributeName) == attrShard
		}
	}
	if !found {
		return bad("no global secondary index " + gsiByKey + " on " + attrShard)
	}
	_, err = d.c.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(d.table),
		Item: map[string]types.AttributeValue{
			attrPK: s(pkMeta), attrSK: s(skSchema), "version": n(dynamoSchema),
		},
		ConditionExpression: aws.String("attribute_not_exists(PK)"),
	})
	if err == nil || !isCondFailed(err) {
		return d.wrap("record schema version", err)
	}
	item, err := d.getItem(ctx, pkMeta, skSchema)
	if err != nil {
		return err
	}
	if v := numAttr(item, "version"); v != dynamoSchema {
		return bad(fmt.Sprintf("schema version %d, this rotator knows %d", v, dynamoSchema))
	}
	return nil
}

func (d *dynamoLedger) Close() error { return nil }

func s(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }

func n(v int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}
}

func strAttr(item map[string]types.AttributeValue, name string) string {
	if v, ok := item[name].(*types.AttributeValueMemberS); ok {
		return v.Value
	}
	return ""
}

func numAttr(item map[string]types.AttributeValue, name string) int64 {
	if v, ok := item[name].(*types.AttributeValueMemberN); ok {
		i, _ := strconv.ParseInt(v.Value, 10, 64)
		return i
	}
	return 0
}

func isCondFailed(err error) bool {
	var c *types.ConditionalCheckFailedException
	return errors.As(err, &c)
}

// wrap adds the table and a hint to an SDK error.
func (d *dynamoLedger) wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	var nf *types.ResourceNotFoundException
	if errors.As(err, &nf) {
		return fmt.Errorf("ledger: %s: dynamodb table %s: %w (hint: create it with dynamodb://%s?create=true)", what, d.table, err, d.table)
	}
	return fmt.Errorf("ledger: %s: dynamodb table %s: %w", what, d.table, err)
}

func key(pk, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{attrPK: s(pk), attrSK: s(sk)}
}

func objectKey(id ObjectID) map[string]types.AttributeValue {
	return key(objectPK(id.Bucket, id.Key), versionSK(id.VersionID))
}

// shardValue is the GSI partition key of an object record: the wrap key and
// one hex digit picked by a hash of the object version.
func shardValue(wrapKey string, id ObjectID) string {
	h := sha256.Sum256([]byte(objectPK(id.Bucket, id.Key) + versionSK(id.VersionID)))
	return shardOf(wrapKey, int(h[0]%gsiShards))
}

func shardOf(wrapKey string, i int) string { return wrapKey + "#" + strconv.FormatInt(int64(i), 16) }

func (d *dynamoLedger) getItem(ctx context.Context, pk, sk string) (map[string]types.AttributeValue, error) {
	out, err := d.c.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(d.table), Key: key(pk, sk), ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return nil, d.wrap("get item", err)
	}
	return out.Item, nil
}

func (d *dynamoLedger) Claim(ctx context.Context, id ObjectID, owner string, lease time.Duration) (Claimed, error) {
	if err := checkClaimArgs(id, owner, lease); err != nil {
		return Claimed{}, err
	}
	group, epoch := ownerFence(owner)
	for range 5 {
		now := d.o.now()
		vals := map[string]types.AttributeValue{
			":o": s(owner), ":r": s(runOf(owner)),
			":e": n(now.Add(lease).UnixMilli()), ":now": n(now.UnixMilli()),
		}
		cond := "attribute_not_exists(claim_owner) OR claim_expires <= :now OR claim_owner = :o"
		update := "SET claim_owner = :o, claim_run = :r, claim_expires = :e"
		if group != "" {
			cond += " OR (claim_group = :g AND claim_epoch < :ep)"
			update += ", claim_group = :g, claim_epoch = :ep"
			vals[":g"], vals[":ep"] = s(group), n(epoch)
		} else {
			update += " REMOVE claim_group, claim_epoch"
		}
		out, err := d.c.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:                 aws.String(d.table),
			Key:                       objectKey(id),
			UpdateExpression:          aws.String(update),
			ConditionExpression:       aws.String(cond),
			ExpressionAttributeValues: vals,
			ReturnValues:              types.ReturnValueAllOld,
		})
		if err == nil {
			var got Claimed
			if prev := strAttr(out.Attributes, attrClaimOwner); prev != owner {
				got.Prev = prev
			}
			if strAttr(out.Attributes, attrUpdatedAt) != "" {
				rec, err := decodeObject(out.Attributes, &id)
				if err != nil {
					return Claimed{}, err
				}
				got.Record = rec
			}
			return got, nil
		}
		if !isCondFailed(err) {
			return Claimed{}, d.wrap("claim "+id.String(), err)
		}
		item, err := d.getItem(ctx, objectPK(id.Bucket, id.Key), versionSK(id.VersionID))
		if err != nil {
			return Claimed{}, err
		}
		exp := numAttr(item, attrClaimExpires)
		if holder := strAttr(item, attrClaimOwner); holder != "" && exp > d.o.now().UnixMilli() && !mayTakeOver(holder, owner) {
			return Claimed{}, &ClaimedError{ID: id, Owner: holder, Expires: time.UnixMilli(exp).UTC()}
		}
		// Released or expired in between: try again.
	}
	return Claimed{}, fmt.Errorf("%w: claim %s: the claim keeps changing hands", ErrConflict, id)
}

// Begin is Claim then, when nothing is in the way, Prepare: two writes
// (the claim on the object record's item, the prepared event in the run's
// partition), since the prepared event must be found by a strongly
// consistent query of the run (Prepared) and DynamoDB has no multi-item
// write without transactions. It saves the reads Prepare would repeat.
func (d *dynamoLedger) Begin(ctx context.Context, owner string, lease time.Duration, ev Event) (Claimed, error) {
	ev, err := prepPrepare(ev, d.o.now())
	if err == nil {
		err = checkOwnerRun(owner, ev.RunID)
	}
	if err != nil {
		return Claimed{}, err
	}
	got, err := d.Claim(ctx, ev.ID, owner, lease)
	if err != nil || got.Prev != "" {
		return got, err
	}
	prior, err := d.PreparedOn(ctx, ev.RunID, ev.ID)
	if err != nil || len(prior) > 0 {
		return got, err
	}
	pk := objectPK(ev.ID.Bucket, ev.ID.Key)
	if _, found, err := d.getEvent(ctx, pk, eventSK(ev.ID.VersionID, ev.RunID, ev.Op), ev.ID); err != nil || found {
		return got, err
	}
	if err := d.putPrepared(ctx, ev); err != nil {
		if errors.Is(err, ErrConflict) {
			return got, nil
		}
		return got, err
	}
	got.Prepared = true
	return got, nil
}

// held checks that owner holds the claim on id (a strongly consistent
// read: see the package documentation for what it fences).
func (d *dynamoLedger) held(ctx context.Context, id ObjectID, owner, verb string) error {
	item, err := d.getItem(ctx, objectPK(id.Bucket, id.Key), versionSK(id.VersionID))
	if err != nil {
		return err
	}
	if holder := strAttr(item, attrClaimOwner); holder != owner {
		return notHeld(verb, id, owner, holder)
	}
	return nil
}

func (d *dynamoLedger) Release(ctx context.Context, id ObjectID, owner string) error {
	if err := validID(id); err != nil {
		return err
	}
	return d.release(ctx, id, "claim_owner = :v", owner)
}

// release drops a claim on the condition cond (on :v). An item that holds
// only the claim is deleted.
func (d *dynamoLedger) release(ctx context.Context, id ObjectID, cond, v string) error {
	vals := map[string]types.AttributeValue{":v": s(v)}
	_, err := d.c.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName: aws.String(d.table), Key: objectKey(id),
		ConditionExpression:       aws.String(cond + " AND attribute_not_exists(updated_at)"),
		ExpressionAttributeValues: vals,
	})
	if err == nil {
		return nil
	}
	if !isCondFailed(err) {
		return d.wrap("release "+id.String(), err)
	}
	_, err = d.c.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.table), Key: objectKey(id),
		UpdateExpression:          aws.String("REMOVE claim_owner, claim_run, claim_expires, claim_group, claim_epoch"),
		ConditionExpression:       aws.String(cond),
		ExpressionAttributeValues: vals,
	})
	if err != nil && !isCondFailed(err) {
		return d.wrap("release "+id.String(), err)
	}
	return nil
}

// preparedKey returns the partition and sort key of the prepared event of
// an identity.
func preparedKey(id ObjectID, run, op string) (pk, sk string) {
	opk := objectPK(id.Bucket, id.Key)
	return preparedPK(run, opk), preparedSK(opk, id.VersionID, op)
}

// getEvent reads the event or prepared event stored at pk, sk (strongly
// consistent), which must be one on want; found is false when there is none.
func (d *dynamoLedger) getEvent(ctx context.Context, pk, sk string, want ObjectID) (ev Event, found bool, err error) {
	item, err := d.getItem(ctx, pk, sk)
	if err != nil || item == nil {
		return Event{}, false, err
	}
	if ev, err = decodeEvent(item); err != nil {
		return Event{}, false, err
	}
	if ev.ID != want {
		return Event{}, false, fmt.Errorf("ledger: event %s/%s is on %s, not %s", pk, sk, ev.ID, want)
	}
	return ev, true, nil
}

func (d *dynamoLedger) Prepare(ctx context.Context, owner string, ev Event) error {
	ev, err := prepPrepare(ev, d.o.now())
	if err != nil {
		return err
	}
	if err := checkOwnerRun(owner, ev.RunID); err != nil {
		return err
	}
	pk := objectPK(ev.ID.Bucket, ev.ID.Key)
	// The claim before the event: a Commit records the event before it
	// releases the claim, so a released claim comes with its event.
	item, err := d.getItem(ctx, pk, versionSK(ev.ID.VersionID))
	if err != nil {
		return err
	}
	committed, found, err := d.getEvent(ctx, pk, eventSK(ev.ID.VersionID, ev.RunID, ev.Op), ev.ID)
	if err != nil {
		return err
	}
	if found {
		if !completes(committed, ev) {
			return committedOtherwise(ev)
		}
		return nil
	}
	if strAttr(item, attrClaimOwner) != owner {
		return notClaimed("prepare", ev, owner, strAttr(item, attrClaimOwner))
	}
	return d.putPrepared(ctx, ev)
}

// putPrepared writes the prepared event ev: one conditional put of a new
// item; an event already prepared for the identity must be the same one
// (a retried Prepare), never replaced: its write may have landed.
func (d *dynamoLedger) putPrepared(ctx context.Context, ev Event) error {
	prep, err := attributevalue.MarshalMap(toEventRecord(ev))
	if err != nil {
		return err
	}
	ppk, psk := preparedKey(ev.ID, ev.RunID, ev.Op)
	prep[attrPK], prep[attrSK], prep[attrType] = s(ppk), s(psk), s(typePrepared)
	in := &dynamodb.PutItemInput{TableName: aws.String(d.table), Item: prep,
		ConditionExpression: aws.String("attribute_not_exists(PK)")}
	_, err = d.c.PutItem(ctx, in)
	if isCondFailed(err) {
		cur, found, gerr := d.getEvent(ctx, ppk, psk, ev.ID)
		if gerr != nil {
			return gerr
		}
		if found && sameEvent(cur, ev) {
			return d.o.at(pointPrepared)
		}
		if !found {
			// Dropped since: by the Commit of this very change (a
			// concurrent duplicate), which recorded it first?
			pk := objectPK(ev.ID.Bucket, ev.ID.Key)
			committed, done, err := d.getEvent(ctx, pk, eventSK(ev.ID.VersionID, ev.RunID, ev.Op), ev.ID)
			if err != nil {
				return err
			}
			if done && completes(committed, ev) {
				return nil
			}
		}
		return preparedElsewhere(ev)
	}
	if err != nil {
		return d.wrap(fmt.Sprintf("prepare %s of %s", ev.Op, ev.ID), err)
	}
	return d.o.at(pointPrepared)
}

func (d *dynamoLedger) Commit(ctx context.Context, owner string, obj Object, ev Event) error {
	obj, ev, err := prepCommit(obj, ev, d.o.now())
	if err != nil {
		return err
	}
	if err := checkOwnerRun(owner, ev.RunID); err != nil {
		return err
	}
	what := fmt.Sprintf("commit %s of %s", ev.Op, ev.ID)
	pk := objectPK(ev.ID.Bucket, ev.ID.Key)
	esk := eventSK(ev.ID.VersionID, ev.RunID, ev.Op)

	// 1. The claim.
	item, err := d.getItem(ctx, pk, versionSK(ev.ID.VersionID))
	if err != nil {
		return err
	}
	if strAttr(item, attrClaimOwner) != owner {
		// Not (or no longer) ours: fine if this very event is recorded,
		// which is what a retry after a complete commit sees. Drop the
		// prepared event a crash may have left behind.
		if done, err := d.recorded(ctx, pk, esk, ev); done || err != nil {
			if err != nil {
				return err
			}
			return d.dropPrepared(ctx, ev)
		}
		return notClaimed("commit", ev, owner, strAttr(item, attrClaimOwner))
	}

	// 2. The prepared event, if any, is this change.
	ppk, psk := preparedKey(ev.ID, ev.RunID, ev.Op)
	prep, prepared, err := d.getEvent(ctx, ppk, psk, ev.ID)
	if err != nil {
		return err
	}
	if prepared && !completes(ev, prep) {
		return notPrepared(ev)
	}

	// 3. The event, exactly once.
	evItem, err := attributevalue.MarshalMap(toEventRecord(ev))
	if err != nil {
		return err
	}
	evItem[attrPK], evItem[attrSK], evItem[attrType] = s(pk), s(esk), s(typeEvent)
	_, err = d.c.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(d.table), Item: evItem,
		ConditionExpression: aws.String("attribute_not_exists(PK)"),
	})
	if err != nil && !isCondFailed(err) {
		return d.wrap(what+": put event", err)
	}
	if err != nil {
		if _, err := d.recorded(ctx, pk, esk, ev); err != nil {
			return err
		}
	}
	if err := d.o.at(pointEvent); err != nil {
		return err
	}

	// 4. The object record and the claim.
	if err := d.register(ctx, obj.WrapKey); err != nil {
		return err
	}
	if obj.ID != ev.ID {
		// A new version: guarded like an observation; then release the
		// claim on the old one.
		if err := d.putObject(ctx, obj, ""); err != nil && !isCondFailed(err) {
			return d.wrap(what+": update object record", err)
		}
		if err := d.o.at(pointRecord); err != nil {
			return err
		}
		if err := d.release(ctx, ev.ID, "claim_owner = :v", owner); err != nil {
			return err
		}
		if err := d.o.at(pointReleased); err != nil {
			return err
		}
	} else if err := d.putObject(ctx, obj, owner); err == nil {
		if err := d.o.at(pointRecord); err != nil {
			return err
		}
		if err := d.o.at(pointReleased); err != nil {
			return err
		}
	} else {
		if !isCondFailed(err) {
			return d.wrap(what+": update object record", err)
		}
		item, err = d.getItem(ctx, pk, versionSK(ev.ID.VersionID))
		if err != nil {
			return err
		}
		if holder := strAttr(item, attrClaimOwner); holder != "" {
			// The event is recorded: nothing is left to resume.
			if err := d.dropPrepared(ctx, ev); err != nil {
				return err
			}
			return fmt.Errorf("%w (the event is recorded; the object record is left to the new holder)", notClaimed("commit", ev, owner, holder))
		}
		// A concurrent duplicate of this Commit finished first.
	}

	// 5. The prepared event.
	if prepared {
		if err := d.dropPrepared(ctx, ev); err != nil {
			return err
		}
	}
	return d.o.at(pointDropped)
}

// dropPrepared deletes the prepared event of ev's identity if ev completes
// it (same wrapped key fingerprints; Prepare never lets two prepared events
// of one identity differ in less), so that a concurrent Prepare of another
// change survives. A missing one is no error.
func (d *dynamoLedger) dropPrepared(ctx context.Context, ev Event) error {
	var conds []string
	vals := map[string]types.AttributeValue{}
	for name, v := range map[string]string{"old_wrapped_key_sha256": ev.OldWrappedKeySHA256, "new_wrapped_key_sha256": ev.NewWrappedKeySHA256} {
		if v == "" {
			conds = append(conds, "attribute_not_exists("+name+")")
		} else {
			conds = append(conds, name+" = :"+name)
			vals[":"+name] = s(v)
		}
	}
	in := &dynamodb.DeleteItemInput{
		TableName: aws.String(d.table), Key: key(preparedKey(ev.ID, ev.RunID, ev.Op)),
		ConditionExpression: aws.String(strings.Join(conds, " AND ")),
	}
	if len(vals) > 0 {
		in.ExpressionAttributeValues = vals
	}
	_, err := d.c.DeleteItem(ctx, in)
	if err != nil && !isCondFailed(err) {
		return d.wrap(fmt.Sprintf("drop prepared %s of %s", ev.Op, ev.ID), err)
	}
	return nil
}

func (d *dynamoLedger) Abandon(ctx context.Context, owner string, id ObjectID, runID, op string) error {
	if err := checkIdentity(id, runID, op); err != nil {
		return err
	}
	if err := checkOwnerRun(owner, runID); err != nil {
		return err
	}
	pk, sk := preparedKey(id, runID, op)
	if item, err := d.getItem(ctx, pk, sk); err != nil || item == nil {
		return err
	}
	if err := d.held(ctx, id, owner, "abandon "+op+" of"); err != nil {
		return err
	}
	_, err := d.c.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName: aws.String(d.table), Key: key(pk, sk),
	})
	return d.wrap(fmt.Sprintf("abandon %s of %s by run %s", op, id, runID), err)
}

// PreparedOn queries the run's partition of id for its prepared events.
func (d *dynamoLedger) PreparedOn(ctx context.Context, runID string, id ObjectID) ([]Event, error) {
	if err := checkUploadID(runID, id); err != nil {
		return nil, err
	}
	pk, sk := preparedKey(id, runID, "x")
	prefix := strings.TrimSuffix(sk, "x")
	out, err := d.c.Query(ctx, &dynamodb.QueryInput{
		TableName:              aws.String(d.table),
		KeyConditionExpression: aws.String("PK = :pk AND begins_with(SK, :p)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": s(pk), ":p": s(prefix),
		},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return nil, d.wrap("prepared events of run "+runID+" on "+id.String(), err)
	}
	var evs []Event
	for _, item := range out.Items {
		ev, err := decodeEvent(item)
		if err != nil {
			return nil, err
		}
		if ev.ID == id {
			evs = append(evs, ev)
		}
	}
	return evs, nil
}

// Prepared queries the run's 16 partitions of prepared events. For each
// prepared event whose event is recorded it also reads the claim, to tell a
// Commit that crashed before writing the object record (listed) from one
// that crashed after releasing the claim (dropped).
func (d *dynamoLedger) Prepared(ctx context.Context, runID string, fn func(Event) error) error {
	if err := validRunID(runID); err != nil {
		return err
	}
	for i := range gsiShards {
		p := dynamodb.NewQueryPaginator(d.c, &dynamodb.QueryInput{
			TableName:              aws.String(d.table),
			KeyConditionExpression: aws.String("PK = :pk AND begins_with(SK, :prep)"),
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":pk": s(preparedShard(runID, strconv.FormatInt(int64(i), 16))), ":prep": s("prep#"),
			},
			ConsistentRead: aws.Bool(true),
			Limit:          d.limit(),
		})
		for p.HasMorePages() {
			out, err := p.NextPage(ctx)
			if err != nil {
				return d.wrap("prepared events of run "+runID, err)
			}
			for _, item := range out.Items {
				ev, err := decodeEvent(item)
				if err != nil {
					return err
				}
				stale, err := d.stale(ctx, ev)
				if err != nil {
					return err
				}
				if stale {
					err = d.dropPrepared(ctx, ev)
				} else {
					err = fn(ev)
				}
				if err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// stale reports whether the prepared event p is left over from a complete
// Commit (see staleMarker).
func (d *dynamoLedger) stale(ctx context.Context, p Event) (bool, error) {
	pk := objectPK(p.ID.Bucket, p.ID.Key)
	committed, found, err := d.getEvent(ctx, pk, eventSK(p.ID.VersionID, p.RunID, p.Op), p.ID)
	if err != nil || !found {
		return false, err
	}
	item, err := d.getItem(ctx, pk, versionSK(p.ID.VersionID))
	if err != nil {
		return false, err
	}
	return staleMarker(p, &committed, strAttr(item, attrClaimRun)), nil
}

// recorded reports whether the event with sort key esk is recorded: false if
// it is not, true if an identical one is, ErrConflict if another is.
func (d *dynamoLedger) recorded(ctx context.Context, pk, esk string, ev Event) (bool, error) {
	item, err := d.getItem(ctx, pk, esk)
	if err != nil || item == nil {
		return false, err
	}
	var rec eventRecord
	if err := attributevalue.UnmarshalMap(item, &rec); err != nil {
		return false, fmt.Errorf("ledger: decode event %s: %w", esk, err)
	}
	old, err := rec.event()
	if err != nil {
		return false, err
	}
	if !sameEvent(old, ev) {
		return false, conflictingEvent(ev)
	}
	return true, nil
}

// putObject writes an object record with one UpdateItem (so that a claim on
// the item stays). With claimRun: on condition that the claim is held by
// that owner, and the claim is dropped. Without: on condition that the stored
// record is not later than obj.
func (d *dynamoLedger) putObject(ctx context.Context, obj Object, owner string) error {
	av, err := attributevalue.MarshalMap(toObjectRecord(obj))
	if err != nil {
		return err
	}
	av[attrType] = s(typeObject)
	if obj.WrapKey != "" {
		av[attrShard] = s(shardValue(obj.WrapKey, obj.ID))
	}
	names := map[string]string{}
	vals := map[string]types.AttributeValue{}
	var set, remove []string
	for i, a := range append([]string{attrType, attrShard}, objectAttrs...) {
		ph := "#a" + strconv.Itoa(i)
		names[ph] = a
		if v, ok := av[a]; ok {
			vals[":a"+strconv.Itoa(i)] = v
			set = append(set, ph+" = :a"+strconv.Itoa(i))
		} else {
			remove = append(remove, ph)
		}
	}
	var cond string
	if owner != "" {
		remove = append(remove, attrClaimOwner, attrClaimRun, attrClaimExpires, attrClaimGroup, attrClaimEpoch)
		cond = "claim_owner = :owner"
		vals[":owner"] = s(owner)
	} else {
		cond = "attribute_not_exists(updated_at) OR updated_at <= :t"
		vals[":t"] = s(formatTime(obj.UpdatedAt))
	}
	expr := "SET " + strings.Join(set, ", ")
	if len(remove) > 0 {
		expr += " REMOVE " + strings.Join(remove, ", ")
	}
	_, err = d.c.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.table), Key: objectKey(obj.ID),
		UpdateExpression:          aws.String(expr),
		ConditionExpression:       aws.String(cond),
		ExpressionAttributeNames:  names,
		ExpressionAttributeValues: vals,
	})
	return err
}

// register adds a wrap key to the registry item (a string set; ADD is
// idempotent) once per process, before any record under it is written.
func (d *dynamoLedger) register(ctx context.Context, wrapKey string) error {
	if wrapKey == "" {
		return nil
	}
	d.mu.Lock()
	known := d.keys[wrapKey]
	d.mu.Unlock()
	if known {
		return nil
	}
	_, err := d.c.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.table), Key: key(pkMeta, skWrapKeys),
		UpdateExpression:          aws.String("ADD #k :k"),
		ExpressionAttributeNames:  map[string]string{"#k": "keys"},
		ExpressionAttributeValues: map[string]types.AttributeValue{":k": &types.AttributeValueMemberSS{Value: []string{wrapKey}}},
	})
	if err != nil {
		return d.wrap("register wrap key "+wrapKey, err)
	}
	d.mu.Lock()
	d.keys[wrapKey] = true
	d.mu.Unlock()
	return nil
}

func (d *dynamoLedger) Observe(ctx context.Context, obj Object) error {
	obj, err := prepObject(obj, d.o.now())
	if err != nil {
		return err
	}
	if err := d.register(ctx, obj.WrapKey); err != nil {
		return err
	}
	if obj.WrapKey == "" && obj.State != StateChanged && obj.State != StateDeleted {
		// Not knowing the key is no evidence that it changed: keep the
		// recorded one if the record names one for the same wrapped key
		// (keepsKey); otherwise write the record as observed.
		err := d.observeKeepingKey(ctx, obj)
		if err == nil {
			return nil
		}
		if !isCondFailed(err) {
			return d.wrap("observe "+obj.ID.String(), err)
		}
	}
	if err := d.putObject(ctx, obj, ""); err != nil && !isCondFailed(err) {
		return d.wrap("observe "+obj.ID.String(), err)
	}
	return nil
}

// observeKeepingKey writes the observation obj, which does not know the
// wrap key, over a record that names one, leaving the record's key, shard
// and fingerprint as they are. It fails its condition when there is no
// such record, the record is later, or it names another wrapped key.
func (d *dynamoLedger) observeKeepingKey(ctx context.Context, obj Object) error {
	av, err := attributevalue.MarshalMap(toObjectRecord(obj))
	if err != nil {
		return err
	}
	names := map[string]string{"#wk": "wrap_key", "#u": "updated_at"}
	vals := map[string]types.AttributeValue{":t": s(formatTime(obj.UpdatedAt))}
	var set, remove []string
	for i, a := range objectAttrs {
		if a == "wrap_key" || a == "wrapped_key_sha256" {
			continue
		}
		ph := "#a" + strconv.Itoa(i)
		names[ph] = a
		if v, ok := av[a]; ok {
			vals[":a"+strconv.Itoa(i)] = v
			set = append(set, ph+" = :a"+strconv.Itoa(i))
		} else {
			remove = append(remove, ph)
		}
	}
	cond := "attribute_exists(#wk) AND #u <= :t"
	if obj.WrappedKeySHA256 != "" {
		names["#fp"] = "wrapped_key_sha256"
		vals[":fp"] = s(obj.WrappedKeySHA256)
		cond += " AND #fp = :fp"
	}
	expr := "SET " + strings.Join(set, ", ")
	if len(remove) > 0 {
		expr += " REMOVE " + strings.Join(remove, ", ")
	}
	_, err = d.c.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.table), Key: objectKey(obj.ID),
		UpdateExpression:          aws.String(expr),
		ConditionExpression:       aws.String(cond),
		ExpressionAttributeNames:  names,
		ExpressionAttributeValues: vals,
	})
	return err
}

func (d *dynamoLedger) Get(ctx context.Context, id ObjectID) (Object, error) {
	if err := validID(id); err != nil {
		return Object{}, err
	}
	item, err := d.getItem(ctx, objectPK(id.Bucket, id.Key), versionSK(id.VersionID))
	if err != nil {
		return Object{}, err
	}
	if item == nil || strAttr(item, attrUpdatedAt) == "" {
		return Object{}, fmt.Errorf("%w: object %s", ErrNotFound, id)
	}
	return decodeObject(item, &id)
}

// decodeObject decodes an object record; with want, it also checks that the
// record is want's (a hash collision would show here).
func decodeObject(item map[string]types.AttributeValue, want *ObjectID) (Object, error) {
	var rec objectRecord
	if err := attributevalue.UnmarshalMap(item, &rec); err != nil {
		return Object{}, fmt.Errorf("ledger: decode object record %s: %w", strAttr(item, attrPK), err)
	}
	obj, err := rec.object()
	if err != nil {
		return Object{}, err
	}
	if want != nil && obj.ID != *want {
		return Object{}, fmt.Errorf("ledger: object record %s/%s holds %s, not %s", strAttr(item, attrPK), strAttr(item, attrSK), obj.ID, *want)
	}
	return obj, nil
}

func decodeEvent(item map[string]types.AttributeValue) (Event, error) {
	var rec eventRecord
	if err := attributevalue.UnmarshalMap(item, &rec); err != nil {
		return Event{}, fmt.Errorf("ledger: decode event %s/%s: %w", strAttr(item, attrPK), strAttr(item, attrSK), err)
	}
	return rec.event()
}

func (d *dynamoLedger) limit() *int32 {
	if d.o.pageSize <= 0 {
		return nil
	}
	return aws.Int32(int32(min(d.o.pageSize, 1<<20)))
}

func (d *dynamoLedger) Lineage(ctx context.Context, id ObjectID) ([]Event, error) {
	if err := validID(id); err != nil {
		return nil, err
	}
	var all []Event
	p := dynamodb.NewQueryPaginator(d.c, &dynamodb.QueryInput{
		TableName:              aws.String(d.table),
		KeyConditionExpression: aws.String("PK = :pk AND begins_with(SK, :evt)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": s(objectPK(id.Bucket, id.Key)), ":evt": s("evt#"),
		},
		ConsistentRead: aws.Bool(true),
		Limit:          d.limit(),
	})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, d.wrap("lineage of "+id.String(), err)
		}
		for _, item := range out.Items {
			e, err := decodeEvent(item)
			if err != nil {
				return nil, err
			}
			if e.ID.Bucket == id.Bucket && e.ID.Key == id.Key {
				all = append(all, e)
			}
		}
	}
	return lineage(id.VersionID, all), nil
}

// ByKey reads the index, which is eventually consistent: a record written a
// moment ago may be missing or still listed under its previous key.
func (d *dynamoLedger) ByKey(ctx context.Context, wrapKey string, fn func(Object) error) error {
	if wrapKey == "" {
		return fmt.Errorf("%w: by key: empty wrap key", ErrInvalid)
	}
	for i := range gsiShards {
		p := dynamodb.NewQueryPaginator(d.c, &dynamodb.QueryInput{
			TableName:                 aws.String(d.table),
			IndexName:                 aws.String(gsiByKey),
			KeyConditionExpression:    aws.String("wk_shard = :g"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":g": s(shardOf(wrapKey, i))},
			Limit:                     d.limit(),
		})
		for p.HasMorePages() {
			out, err := p.NextPage(ctx)
			if err != nil {
				return d.wrap("objects under key "+wrapKey, err)
			}
			for _, item := range out.Items {
				obj, err := decodeObject(item, nil)
				if err != nil {
					return err
				}
				if err := fn(obj); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// CountsByKey counts with Select=COUNT queries on the index, one per key and
// shard, for the keys in the registry item: no table scan. The index is
// eventually consistent.
func (d *dynamoLedger) CountsByKey(ctx context.Context) (map[string]int64, error) {
	item, err := d.getItem(ctx, pkMeta, skWrapKeys)
	if err != nil {
		return nil, err
	}
	var keys []string
	if ss, ok := item["keys"].(*types.AttributeValueMemberSS); ok {
		keys = ss.Value
	}
	counts := make([]int64, len(keys)*gsiShards)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := range counts {
		g.Go(func() error {
			p := dynamodb.NewQueryPaginator(d.c, &dynamodb.QueryInput{
				TableName:                 aws.String(d.table),
				IndexName:                 aws.String(gsiByKey),
				KeyConditionExpression:    aws.String("wk_shard = :g"),
				ExpressionAttributeValues: map[string]types.AttributeValue{":g": s(shardOf(keys[i/gsiShards], i%gsiShards))},
				Select:                    types.SelectCount,
				Limit:                     d.limit(),
			})
			for p.HasMorePages() {
				out, err := p.NextPage(gctx)
				if err != nil {
					return d.wrap("count objects under key "+keys[i/gsiShards], err)
				}
				counts[i] += int64(out.Count)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	m := make(map[string]int64, len(keys))
	for i, c := range counts {
		m[keys[i/gsiShards]] += c
	}
	return m, nil
}

// Events scans the table in parallel segments and hands the events to fn
// from this goroutine.
func (d *dynamoLedger) Events(ctx context.Context, fn func(Event) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	ch := make(chan []Event)
	segs := int32(d.o.segments)
	for seg := range segs {
		g.Go(func() error {
			p := dynamodb.NewScanPaginator(d.c, &dynamodb.ScanInput{
				TableName:                 aws.String(d.table),
				Segment:                   aws.Int32(seg),
				TotalSegments:             aws.Int32(segs),
				FilterExpression:          aws.String("#t = :evt"),
				ExpressionAttributeNames:  map[string]string{"#t": attrType},
				ExpressionAttributeValues: map[string]types.AttributeValue{":evt": s(typeEvent)},
				Limit:                     d.limit(),
			})
			for p.HasMorePages() {
				out, err := p.NextPage(gctx)
				if err != nil {
					return d.wrap("scan events", err)
				}
				evs := make([]Event, 0, len(out.Items))
				for _, item := range out.Items {
					e, err := decodeEvent(item)
					if err != nil {
						return err
					}
					evs = append(evs, e)
				}
				select {
				case ch <- evs:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
			return nil
		})
	}
	var fnErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for evs := range ch {
			for _, e := range evs {
				if fnErr != nil {
					break
				}
				if fnErr = fn(e); fnErr != nil {
					cancel()
				}
			}
		}
	}()
	// fn runs in the collector goroutine above; its first error stops the
	// scanners through the group's context.
	err := func() error {
		defer close(ch)
		return g.Wait()
	}()
	<-done
	if fnErr != nil {
		return fnErr
	}
	return err
}

func (d *dynamoLedger) CreateRun(ctx context.Context, r *Run) error {
	if err := prepRun(r); err != nil {
		return err
	}
	now := d.o.now().UTC()
	nr := *r
	nr.Revision = 1
	if nr.CreatedAt.IsZero() {
		nr.CreatedAt = now
	}
	nr.UpdatedAt = now
	item, err := attributevalue.MarshalMap(toRunRecord(nr))
	if err != nil {
		return err
	}
	item[attrPK], item[attrSK], item[attrType] = s(pkRuns), s(r.ID), s(typeRun)
	_, err = d.c.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(d.table), Item: item,
		ConditionExpression: aws.String("attribute_not_exists(PK)"),
	})
	if isCondFailed(err) {
		return fmt.Errorf("%w: %s", ErrRunExists, r.ID)
	}
	if err != nil {
		return d.wrap("create run "+r.ID, err)
	}
	*r = nr
	r.CreatedAt = r.CreatedAt.UTC()
	return nil
}

func (d *dynamoLedger) GetRun(ctx context.Context, id string) (Run, error) {
	item, err := d.getItem(ctx, pkRuns, id)
	if err != nil {
		return Run{}, err
	}
	if item == nil {
		return Run{}, fmt.Errorf("%w: run %s", ErrNotFound, id)
	}
	return decodeRun(item)
}

func decodeRun(item map[string]types.AttributeValue) (Run, error) {
	var rec runRecord
	if err := attributevalue.UnmarshalMap(item, &rec); err != nil {
		return Run{}, fmt.Errorf("ledger: decode run %s: %w", strAttr(item, attrSK), err)
	}
	return rec.run()
}

func (d *dynamoLedger) UpdateRun(ctx context.Context, r *Run) error {
	if err := prepRun(r); err != nil {
		return err
	}
	next := *r
	next.Revision = r.Revision + 1
	next.UpdatedAt = d.o.now().UTC()
	av, err := attributevalue.MarshalMap(toRunRecord(next))
	if err != nil {
		return err
	}
	names := map[string]string{}
	vals := map[string]types.AttributeValue{":rev": n(r.Revision)}
	var set, remove []string
	for i, a := range []string{"config", "state", "counts", "checkpoint", "revision", "updated_at"} {
		ph := "#a" + strconv.Itoa(i)
		names[ph] = a
		if v, ok := av[a]; ok {
			vals[":a"+strconv.Itoa(i)] = v
			set = append(set, ph+" = :a"+strconv.Itoa(i))
		} else {
			remove = append(remove, ph)
		}
	}
	expr := "SET " + strings.Join(set, ", ")
	if len(remove) > 0 {
		expr += " REMOVE " + strings.Join(remove, ", ")
	}
	out, err := d.c.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.table), Key: key(pkRuns, r.ID),
		UpdateExpression:          aws.String(expr),
		ConditionExpression:       aws.String("attribute_exists(PK) AND revision = :rev"),
		ExpressionAttributeNames:  names,
		ExpressionAttributeValues: vals,
		ReturnValues:              types.ReturnValueAllNew,
	})
	if isCondFailed(err) {
		item, err := d.getItem(ctx, pkRuns, r.ID)
		if err != nil {
			return err
		}
		if item == nil {
			return fmt.Errorf("%w: run %s", ErrNotFound, r.ID)
		}
		return runConflict(r, numAttr(item, attrRevision))
	}
	if err != nil {
		return d.wrap("update run "+r.ID, err)
	}
	stored, err := decodeRun(out.Attributes)
	if err != nil {
		return err
	}
	next.CreatedAt = stored.CreatedAt
	*r = next
	return nil
}

func (d *dynamoLedger) ListRuns(ctx context.Context) ([]Run, error) {
	var runs []Run
	p := dynamodb.NewQueryPaginator(d.c, &dynamodb.QueryInput{
		TableName:                 aws.String(d.table),
		KeyConditionExpression:    aws.String("PK = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": s(pkRuns)},
		ConsistentRead:            aws.Bool(true),
		Limit:                     d.limit(),
	})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, d.wrap("list runs", err)
		}
		for _, item := range out.Items {
			r, err := decodeRun(item)
			if err != nil {
				return nil, err
			}
			runs = append(runs, r)
		}
	}
	sortRuns(runs)
	return runs, nil
}
