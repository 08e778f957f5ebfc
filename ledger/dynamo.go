package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
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
// layout is in SCHEMA.md; the package documentation says how a rewrap is
// two writes of its object's item (Begin, Commit) and a share of a journal
// write (dynamojournal.go). Every write is a single-item conditional write;
// there are no transactions (dynalite has none, and they cost twice as
// much). When a condition fails, a strongly consistent read of the item
// tells why and the write is tried again with what it found, or the
// caller is told (ErrClaimed, ErrNotClaimed, ErrConflict).

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
	dynamoSchema  = 2
	typeObject    = "object"
	typeEvent     = "event"
	typeRun       = "run"
	defaultTries  = 10 // SDK attempts per request, unless configured
	createTimeout = 5 * time.Minute
)

type dynamoLedger struct {
	c     *dynamodb.Client
	table string
	o     options

	mu    sync.Mutex
	keys  map[string]bool    // wrap keys known to be in the registry
	regMu sync.Mutex         // held while a key is registered
	refs  map[[8]byte]string // the key reference registry as known (dynamocodec.go)

	j *journal
	r *reads // every read of an item by key (dynamoread.go)
	// fromSchema1: the table was upgraded from schema 1, whose prepared
	// events lived in the runs' partitions.
	fromSchema1 bool
}

var _ Ledger = (*dynamoLedger)(nil)

// WithAWSConfig sets the AWS configuration of the DynamoDB client instead of
// the default chain.
func WithAWSConfig(cfg aws.Config) Option { return func(o *options) { o.awsCfg = &cfg } }

// WithIOTimeout sets the I/O timeout of the DynamoDB ledger's connections
// (awsx.Options.IOTimeout), when it loads its AWS configuration itself
// (no WithAWSConfig).
func WithIOTimeout(d time.Duration) Option { return func(o *options) { o.ioTimeout = d } }

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
	} else if cfg, err = awsx.Load(ctx, awsx.Options{MaxAttempts: defaultTries, IOTimeout: o.ioTimeout}); err != nil {
		return nil, fmt.Errorf("ledger: open dynamodb://%s: %w", table, err)
	}
	client := awsx.DynamoDB(cfg)
	if o.segments <= 0 {
		o.segments = 4
	}
	d := &dynamoLedger{c: client, table: table, o: o, keys: map[string]bool{}, refs: map[[8]byte]string{}}
	d.r = newReads(d)
	if create {
		if err := d.createTable(ctx); err != nil {
			return nil, err
		}
	}
	if err := d.checkTable(ctx); err != nil {
		return nil, err
	}
	d.j = newJournal(d)
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
	// The schema record is read before it is written: a conditional
	// PutItem that fails still costs a write, and every process that
	// opens the table would pay it.
	item, err := d.getItem(ctx, pkMeta, skSchema)
	if err != nil {
		return err
	}
	if len(item) == 0 {
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
		// Another process recorded it since.
		if item, err = d.getItem(ctx, pkMeta, skSchema); err != nil {
			return err
		}
	}
	switch v := numAttr(item, "version"); v {
	case dynamoSchema:
		d.fromSchema1 = numAttr(item, "upgraded_from") == 1
		return nil
	case 1:
		return d.upgradeSchema1(ctx)
	default:
		return bad(fmt.Sprintf("schema version %d, this rotator knows 1 and %d (hint: use the rotator version that wrote it, or a newer one)", v, dynamoSchema))
	}
}

// upgradeSchema1 marks a schema 1 table as schema 2 (so that a rotator
// that knows only schema 1 refuses it from then on), unless a run holds
// prepared events of schema 1: those only the version that wrote them
// settles. Records, events and runs of schema 1 are read as they are.
func (d *dynamoLedger) upgradeSchema1(ctx context.Context) error {
	runs, err := d.ListRuns(ctx)
	if err != nil {
		return err
	}
	for _, r := range runs {
		if r.State == RunDone || r.State == RunFailed {
			continue
		}
		if err := d.noSchema1Intents(ctx, r.ID); err != nil {
			return fmt.Errorf("ledger: dynamodb table %s is of schema 1: %w", d.table, err)
		}
	}
	_, err = d.c.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(d.table),
		Key:                       key(pkMeta, skSchema),
		UpdateExpression:          aws.String("SET version = :v, upgraded_from = :one"),
		ConditionExpression:       aws.String("version = :one OR version = :v"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":v": n(dynamoSchema), ":one": n(1)},
	})
	if err != nil {
		return d.wrap("upgrade the ledger schema from 1 to 2", err)
	}
	d.fromSchema1 = true
	return nil
}

// Close stops the journal's writer and deletes this process's journal
// items whose intents are all settled.
func (d *dynamoLedger) Close() error {
	if d == nil || d.j == nil {
		return nil
	}
	d.j.close()
	d.r.close()
	return nil
}

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

func shardOf(wrapKey string, i int) string {
	r := keyRef(wrapKey)
	return "#" + hex.EncodeToString(r[:]) + "#" + strconv.FormatInt(int64(i), 16)
}

// legacyShardOf is shardOf in schema 1: the wrap key itself.
func legacyShardOf(wrapKey string, i int) string {
	return wrapKey + "#" + strconv.FormatInt(int64(i), 16)
}

// shardForms are the forms of the index key ByKey and CountsByKey query:
// schema 2's, and schema 1's on a table upgraded from it.
func (d *dynamoLedger) shardForms() []func(string, int) string {
	if d.fromSchema1 {
		return []func(string, int) string{shardOf, legacyShardOf}
	}
	return []func(string, int) string{shardOf}
}

func (d *dynamoLedger) getItem(ctx context.Context, pk, sk string) (map[string]types.AttributeValue, error) {
	return d.r.get(ctx, pk, sk)
}

// readItem reads the object item of id (strongly consistent).
func (d *dynamoLedger) readItem(ctx context.Context, id ObjectID) (map[string]types.AttributeValue, error) {
	return d.getItem(ctx, objectPK(id.Bucket, id.Key), versionSK(id.VersionID))
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
			got := Claimed{NoIntents: !holdsIntents(out.Attributes)}
			if prev := strAttr(out.Attributes, attrClaimOwner); prev != owner {
				got.Prev = prev
			}
			if strAttr(out.Attributes, attrUpdatedAt) != "" {
				rec, err := decodeObject(out.Attributes, &id, d.resolveKey)
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
		item, err := d.readItem(ctx, id)
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

// Renew extends owner's claim on id (Ledger.Renew): one UpdateItem of
// claim_expires on condition claim_owner = owner, and when the condition
// fails a read that says whose the claim is, if anyone's.
func (d *dynamoLedger) Renew(ctx context.Context, id ObjectID, owner string, lease time.Duration) error {
	if err := checkClaimArgs(id, owner, lease); err != nil {
		return err
	}
	_, err := d.c.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:           aws.String(d.table),
		Key:                 objectKey(id),
		UpdateExpression:    aws.String("SET claim_expires = :e"),
		ConditionExpression: aws.String("claim_owner = :o"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":o": s(owner), ":e": n(d.o.now().Add(lease).UnixMilli()),
		},
	})
	if err == nil {
		return nil
	}
	if !isCondFailed(err) {
		return d.wrap("renew the claim on "+id.String(), err)
	}
	item, err := d.readItem(ctx, id)
	if err != nil {
		return err
	}
	switch holder := strAttr(item, attrClaimOwner); holder {
	case "":
		return fmt.Errorf("%w: renew the claim on %s: it was released", ErrNotClaimed, id)
	case owner:
		return nil // claimed again in between, by owner itself
	default:
		return &ClaimedError{ID: id, Owner: holder, Expires: time.UnixMilli(numAttr(item, attrClaimExpires)).UTC()}
	}
}

// settleIfAbsent drops ev's identity from the journal's accounts when a
// strongly consistent read shows no intent of it on its item (see Begin).
func (d *dynamoLedger) settleIfAbsent(ctx context.Context, ev Event) error {
	item, err := d.readItem(ctx, ev.ID)
	if err != nil {
		return err
	}
	if _, ok := item[intentAttr(ev.RunID, ev.Op)]; !ok {
		d.j.settle(ev.ID, ev.RunID, ev.Op)
	}
	return nil
}

// holdsIntents says whether an object item holds an intent of any run.
func holdsIntents(item map[string]types.AttributeValue) bool {
	for name := range item {
		if strings.HasPrefix(name, attrIntentPrefix) {
			return true
		}
	}
	return false
}

// Announce names the objects of ids (every version of each) in the run's
// intent journal with one write, before the run begins them, so that their
// Begins need no journal write of their own: a run announces what it lists
// in groups (pipeline), which takes the journal's share of a rewrap from
// one write per group of objects begun together to one per group listed.
// Done ends an announcement. An error leaves the objects to be journaled
// one group commit at a time, as if never announced.
func (d *dynamoLedger) Announce(ctx context.Context, runID string, ids []ObjectID) error {
	if err := validRunID(runID); err != nil {
		return err
	}
	for _, id := range ids {
		if err := validID(id); err != nil {
			return err
		}
	}
	return d.j.announce(ctx, runID, ids)
}

// Done ends the announcement of id's object by run runID (see Announce):
// the run is through with it, whatever the outcome. An intent the run left
// on it keeps it journaled until the intent is settled.
func (d *dynamoLedger) Done(runID string, id ObjectID) { d.j.done(runID, id) }

// Begin journals ev's item (a share of a group-committed journal write),
// then claims the version and records the intent in one UpdateItem, on
// condition that the claim is free or owner's and that no intent or event
// of ev's identity is on the item. When the condition fails nothing was
// written and Begin is Claim; when the item turns out to hold another
// intent of the run, the new one is taken back (the caller settles the
// earlier one first).
func (d *dynamoLedger) Begin(ctx context.Context, owner string, lease time.Duration, ev Event) (Claimed, error) {
	ev, err := prepBegin(ev, owner, lease, d.o.now())
	if err != nil {
		return Claimed{}, err
	}
	d.j.enter()
	defer d.j.leave()
	if !d.j.covered(ev.ID, ev.RunID, ev.Op) {
		if err := d.j.add(ctx, ev.ID, ev.RunID, ev.Op); err != nil {
			return Claimed{}, err
		}
	}
	blob, err := d.eventBlob(ctx, ev)
	if err != nil {
		return Claimed{}, err
	}
	now := d.o.now()
	if !d.j.fresh(ev.ID, ev.RunID, ev.Op) {
		// Stalled since the journal write: journal again (see journalQuiet).
		if err := d.j.add(ctx, ev.ID, ev.RunID, ev.Op); err != nil {
			return Claimed{}, err
		}
	}
	names := map[string]string{"#p": intentAttr(ev.RunID, ev.Op), "#e": eventAttr(ev.RunID, ev.Op)}
	vals := map[string]types.AttributeValue{
		":o": s(owner), ":r": s(ev.RunID), ":x": n(now.Add(lease).UnixMilli()),
		":blob": &types.AttributeValueMemberB{Value: blob}, ":one": n(1),
	}
	update := "SET claim_owner = :o, claim_run = :r, claim_expires = :x, #p = :blob, " + attrExtras + " = :one, " + idSets(ev.ID, names, vals)
	if group, epoch := ownerFence(owner); group != "" {
		update += ", claim_group = :g, claim_epoch = :ep"
		vals[":g"], vals[":ep"] = s(group), n(epoch)
	} else {
		update += " REMOVE claim_group, claim_epoch"
	}
	out, err := d.c.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(d.table),
		Key:                       objectKey(ev.ID),
		UpdateExpression:          aws.String(update),
		ConditionExpression:       aws.String("(attribute_not_exists(claim_owner) OR claim_owner = :o) AND attribute_not_exists(#p) AND attribute_not_exists(#e)"),
		ExpressionAttributeNames:  names,
		ExpressionAttributeValues: vals,
		ReturnValues:              types.ReturnValueAllOld,
	})
	if isCondFailed(err) {
		// The item holds something of the run, or another's claim. The
		// journal entry is dropped only when a read shows no intent of
		// this identity on it: a retried request whose first attempt
		// landed fails this condition on its own intent.
		if err := d.settleIfAbsent(ctx, ev); err != nil {
			return Claimed{}, err
		}
		return d.Claim(ctx, ev.ID, owner, lease)
	}
	if err != nil {
		// It may have landed: the journal entry stays.
		return Claimed{}, d.wrap(fmt.Sprintf("begin %s of %s", ev.Op, ev.ID), err)
	}
	var got Claimed
	if strAttr(out.Attributes, attrUpdatedAt) != "" {
		if got.Record, err = decodeObject(out.Attributes, &ev.ID, d.resolveKey); err != nil {
			return got, err
		}
	}
	others, err := itemEvents(out.Attributes, attrIntentPrefix, ev.RunID, d.resolveKey)
	if err != nil {
		return got, err
	}
	if len(others) > 0 {
		// Another change of the run is prepared on the version (its
		// claim released): take this intent back; the caller settles
		// that one first.
		return got, d.unprepare(ctx, owner, ev, blob)
	}
	d.j.remember(ev.ID, ev.RunID, ev.Op, blob)
	got.Prepared = true
	return got, d.o.at(pointPrepared)
}

// idSets returns the SET clauses that give an item its object id in clear
// (bucket, object_key, version_id) unless it has them, adding their values.
func idSets(id ObjectID, names map[string]string, vals map[string]types.AttributeValue) string {
	names["#bk"], names["#ok"] = "bucket", "object_key"
	vals[":bk"], vals[":ok"] = s(id.Bucket), s(id.Key)
	set := "#bk = if_not_exists(#bk, :bk), #ok = if_not_exists(#ok, :ok)"
	if id.VersionID != "" {
		names["#vi"], vals[":vi"] = "version_id", s(id.VersionID)
		set += ", #vi = if_not_exists(#vi, :vi)"
	}
	return set
}

// unprepare removes the intent blob of ev's identity that owner just wrote.
func (d *dynamoLedger) unprepare(ctx context.Context, owner string, ev Event, blob []byte) error {
	_, err := d.c.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                aws.String(d.table),
		Key:                      objectKey(ev.ID),
		UpdateExpression:         aws.String("REMOVE #p"),
		ConditionExpression:      aws.String("claim_owner = :o AND #p = :blob"),
		ExpressionAttributeNames: map[string]string{"#p": intentAttr(ev.RunID, ev.Op)},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":o": s(owner), ":blob": &types.AttributeValueMemberB{Value: blob},
		},
	})
	if err != nil && !isCondFailed(err) {
		return d.wrap(fmt.Sprintf("take back the intent %s of %s", ev.Op, ev.ID), err)
	}
	if err == nil {
		d.j.settle(ev.ID, ev.RunID, ev.Op)
	}
	return nil
}

// held checks that owner holds the claim on id (a strongly consistent
// read: see the package documentation for what it fences).
func (d *dynamoLedger) held(ctx context.Context, id ObjectID, owner, verb string) error {
	item, err := d.readItem(ctx, id)
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
		ConditionExpression:       aws.String(cond + " AND attribute_not_exists(updated_at) AND attribute_not_exists(" + attrExtras + ")"),
		ExpressionAttributeValues: vals,
	})
	if err == nil {
		return nil
	}
	if !isCondFailed(err) {
		return d.wrap("release "+id.String(), err)
	}
	return d.releaseClaim(ctx, id, cond, v)
}

// releaseClaim removes a claim from an item that holds more, on the
// condition cond (on :v); a condition that fails is no error.
func (d *dynamoLedger) releaseClaim(ctx context.Context, id ObjectID, cond, v string) error {
	vals := map[string]types.AttributeValue{":v": s(v)}
	_, err := d.c.UpdateItem(ctx, &dynamodb.UpdateItemInput{
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

func (d *dynamoLedger) Prepare(ctx context.Context, owner string, ev Event) error {
	ev, err := prepPrepare(ev, d.o.now())
	if err != nil {
		return err
	}
	if err := checkOwnerRun(owner, ev.RunID); err != nil {
		return err
	}
	d.j.enter()
	defer d.j.leave()
	pa, ea := intentAttr(ev.RunID, ev.Op), eventAttr(ev.RunID, ev.Op)
	blob, err := d.eventBlob(ctx, ev)
	if err != nil {
		return err
	}
	for range 5 {
		item, err := d.readItem(ctx, ev.ID)
		if err != nil {
			return err
		}
		committed, _, found, err := itemEvent(item, ea, d.resolveKey)
		if err != nil {
			return err
		}
		if found {
			// Committed: no intent of the identity is on the item (a
			// Commit drops it in the same write).
			d.j.settle(ev.ID, ev.RunID, ev.Op)
			if !completes(committed, ev) {
				return committedOtherwise(ev)
			}
			return nil
		}
		if holder := strAttr(item, attrClaimOwner); holder != owner {
			return notClaimed("prepare", ev, owner, holder)
		}
		cur, _, found, err := itemEvent(item, pa, d.resolveKey)
		if err != nil {
			return err
		}
		if found {
			if !sameEvent(cur, ev) {
				return preparedElsewhere(ev)
			}
			return d.o.at(pointPrepared)
		}
		if !d.j.covered(ev.ID, ev.RunID, ev.Op) {
			if err := d.j.add(ctx, ev.ID, ev.RunID, ev.Op); err != nil {
				return err
			}
		}
		vals := map[string]types.AttributeValue{":o": s(owner), ":blob": &types.AttributeValueMemberB{Value: blob}, ":one": n(1)}
		names := map[string]string{"#p": pa, "#e": ea}
		_, err = d.c.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:                 aws.String(d.table),
			Key:                       objectKey(ev.ID),
			UpdateExpression:          aws.String("SET #p = :blob, " + attrExtras + " = :one, " + idSets(ev.ID, names, vals)),
			ConditionExpression:       aws.String("claim_owner = :o AND attribute_not_exists(#p) AND attribute_not_exists(#e)"),
			ExpressionAttributeNames:  names,
			ExpressionAttributeValues: vals,
		})
		if isCondFailed(err) {
			// Changed in between, or a retried request whose first
			// attempt landed: decide again from a read. The journal
			// entry stays until the read shows what is there.
			continue
		}
		if err != nil {
			return d.wrap(fmt.Sprintf("prepare %s of %s", ev.Op, ev.ID), err)
		}
		d.j.remember(ev.ID, ev.RunID, ev.Op, blob)
		return d.o.at(pointPrepared)
	}
	return fmt.Errorf("%w: prepare %s of %s: the object's item keeps changing", ErrConflict, ev.Op, ev.ID)
}

// Commit is one UpdateItem when the change kept the version (the record,
// the event, the claim released and the intent dropped, on condition that
// the claim is owner's, the event is not recorded and the intent is the one
// Commit expects); two when it created a version: the new version's record
// (guarded like an observation), then that same UpdateItem on the old one
// without the record. A failed condition is decided from a strongly
// consistent read, and the write tried again with what it found.
func (d *dynamoLedger) Commit(ctx context.Context, owner string, obj Object, ev Event) error {
	obj, ev, err := prepCommit(obj, ev, d.o.now())
	if err != nil {
		return err
	}
	if err := checkOwnerRun(owner, ev.RunID); err != nil {
		return err
	}
	what := fmt.Sprintf("commit %s of %s", ev.Op, ev.ID)
	if err := d.register(ctx, obj.WrapKey); err != nil {
		return err
	}
	// Nothing is written before this point: a crash here is a Commit that
	// did not happen.
	if err := d.o.at(pointEvent); err != nil {
		return err
	}
	inPlace := obj.ID == ev.ID
	if !inPlace {
		if err := d.putObject(ctx, obj, ""); err != nil && !isCondFailed(err) {
			return d.wrap(what+": update the new version's record", err)
		}
		if err := d.o.at(pointRecord); err != nil {
			return err
		}
	}
	pa, ea := intentAttr(ev.RunID, ev.Op), eventAttr(ev.RunID, ev.Op)
	in := &dynamodb.UpdateItemInput{TableName: aws.String(d.table), Key: objectKey(ev.ID)}
	names := map[string]string{"#p": pa, "#e": ea}
	evBlob, err := d.eventBlob(ctx, ev)
	if err != nil {
		return err
	}
	vals := map[string]types.AttributeValue{
		":o": s(owner), ":ev": &types.AttributeValueMemberB{Value: evBlob}, ":one": n(1),
	}
	set := []string{"#e = :ev", attrExtras + " = :one"}
	remove := []string{"#p", attrClaimOwner, attrClaimRun, attrClaimExpires, attrClaimGroup, attrClaimEpoch}
	if inPlace {
		s2, r2, err := objectSets(obj, names, vals)
		if err != nil {
			return err
		}
		set, remove = append(set, s2...), append(remove, r2...)
	} else {
		set = append(set, idSets(ev.ID, names, vals))
	}
	in.UpdateExpression = aws.String("SET " + strings.Join(set, ", ") + " REMOVE " + strings.Join(remove, ", "))
	in.ExpressionAttributeNames, in.ExpressionAttributeValues = names, vals
	prep := d.j.intentBlob(ev.ID, ev.RunID, ev.Op)
	for range 5 {
		cond := "claim_owner = :o AND attribute_not_exists(#e) AND "
		write := true
		if prep != nil {
			// The write is conditioned on this very intent: ev must
			// complete it, or the item is read to decide.
			p, err := decodeEventBlob(ev.ID, ev.RunID, ev.Op, prep, d.resolveKey)
			if err != nil {
				return err
			}
			write = completes(ev, p)
			cond += "#p = :prep"
			vals[":prep"] = &types.AttributeValueMemberB{Value: prep}
		} else {
			cond += "attribute_not_exists(#p)"
			delete(vals, ":prep")
		}
		if write {
			in.ConditionExpression = aws.String(cond)
			_, err := d.c.UpdateItem(ctx, in)
			if err == nil {
				d.j.settle(ev.ID, ev.RunID, ev.Op)
				for _, p := range []string{pointRecord, pointReleased, pointDropped} {
					if p == pointRecord && !inPlace {
						continue
					}
					if err := d.o.at(p); err != nil {
						return err
					}
				}
				return nil
			}
			if !isCondFailed(err) {
				return d.wrap(what, err)
			}
		}
		item, err := d.readItem(ctx, ev.ID)
		if err != nil {
			return err
		}
		committed, _, found, err := itemEvent(item, ea, d.resolveKey)
		if err != nil {
			return err
		}
		if found {
			// A retry after a complete Commit (its one write carried
			// the claim and the intent away with it).
			if !sameEvent(committed, ev) {
				return conflictingEvent(ev)
			}
			d.j.settle(ev.ID, ev.RunID, ev.Op)
			if strAttr(item, attrClaimOwner) == owner {
				// Re-claimed by a resumed run: a Commit releases.
				return d.release(ctx, ev.ID, "claim_owner = :v", owner)
			}
			return nil
		}
		if holder := strAttr(item, attrClaimOwner); holder != owner {
			return notClaimed("commit", ev, owner, holder)
		}
		p, raw, found, err := itemEvent(item, pa, d.resolveKey)
		if err != nil {
			return err
		}
		if found && !completes(ev, p) {
			return notPrepared(ev)
		}
		prep = raw // nil when none is prepared
	}
	return fmt.Errorf("%w: %s: the object's item keeps changing", ErrConflict, what)
}

// objectSets returns the SET and REMOVE clauses of an object record (its
// type, index shard and objectAttrs), with placeholders added to names and
// vals.
func objectSets(obj Object, names map[string]string, vals map[string]types.AttributeValue) (set, remove []string, err error) {
	av, err := recordAV(obj)
	if err != nil {
		return nil, nil, err
	}
	av[attrType] = s(typeObject)
	if obj.WrapKey != "" {
		av[attrShard] = s(shardValue(obj.WrapKey, obj.ID))
	}
	set, remove = attrSets(av, append([]string{attrType, attrShard}, objectAttrs...), names, vals)
	return set, remove, nil
}

// attrSets returns a SET clause for each of attrs that av holds and a
// REMOVE clause for each it does not, but those in skip, with the
// placeholders #aI and :aI (I the attribute's index in attrs) added to
// names and vals.
func attrSets(av map[string]types.AttributeValue, attrs []string, names map[string]string, vals map[string]types.AttributeValue, skip ...string) (set, remove []string) {
	for i, a := range attrs {
		if slices.Contains(skip, a) {
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
	return set, remove
}

func (d *dynamoLedger) Abandon(ctx context.Context, owner string, id ObjectID, runID, op string) error {
	if err := checkIdentity(id, runID, op); err != nil {
		return err
	}
	if err := checkOwnerRun(owner, runID); err != nil {
		return err
	}
	_, err := d.c.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(d.table),
		Key:                       objectKey(id),
		UpdateExpression:          aws.String("REMOVE #p"),
		ConditionExpression:       aws.String("attribute_exists(#p) AND claim_owner = :o"),
		ExpressionAttributeNames:  map[string]string{"#p": intentAttr(runID, op)},
		ExpressionAttributeValues: map[string]types.AttributeValue{":o": s(owner)},
	})
	if err == nil {
		d.j.settle(id, runID, op)
		return nil
	}
	if !isCondFailed(err) {
		return d.wrap(fmt.Sprintf("abandon %s of %s by run %s", op, id, runID), err)
	}
	item, err := d.readItem(ctx, id)
	if err != nil {
		return err
	}
	if _, found := item[intentAttr(runID, op)]; !found {
		d.j.settle(id, runID, op)
		return nil
	}
	return notHeld("abandon "+op+" of", id, owner, strAttr(item, attrClaimOwner))
}

// PreparedOn reads the version's item for the run's intents.
func (d *dynamoLedger) PreparedOn(ctx context.Context, runID string, id ObjectID) ([]Event, error) {
	if err := checkUploadID(runID, id); err != nil {
		return nil, err
	}
	item, err := d.readItem(ctx, id)
	if err != nil {
		return nil, err
	}
	return d.intentsOn(item, runID, &id)
}

// intentsOn returns the intents of run runID on an object item (and
// remembers them for a Commit), checking that the item is want's.
func (d *dynamoLedger) intentsOn(item map[string]types.AttributeValue, runID string, want *ObjectID) ([]Event, error) {
	evs, err := itemEvents(item, attrIntentPrefix, runID, d.resolveKey)
	if err != nil {
		return nil, err
	}
	var out []Event
	for _, ev := range evs {
		if want != nil && ev.ID != *want {
			return nil, fmt.Errorf("ledger: item %s/%s holds %s, not %s", strAttr(item, attrPK), strAttr(item, attrSK), ev.ID, *want)
		}
		if b, ok := item[intentAttr(ev.RunID, ev.Op)].(*types.AttributeValueMemberB); ok {
			d.j.remember(ev.ID, ev.RunID, ev.Op, b.Value)
		}
		out = append(out, ev)
	}
	return out, nil
}

// Prepared reads the run's journal items, then every object item they name
// (strongly consistent batch reads), and lists the run's intents found
// there. Journal items older than journalQuiet that name no item holding
// an intent of the run any more, after fn has run, are deleted.
func (d *dynamoLedger) Prepared(ctx context.Context, runID string, fn func(Event) error) error {
	if err := validRunID(runID); err != nil {
		return err
	}
	if d.fromSchema1 {
		if err := d.noSchema1Intents(ctx, runID); err != nil {
			return err
		}
	}
	type slotItem struct {
		pk, sk, gen string
		at          time.Time
		items       [][2]string
	}
	var slots []slotItem
	for i := range gsiShards {
		p := dynamodb.NewQueryPaginator(d.c, &dynamodb.QueryInput{
			TableName:              aws.String(d.table),
			KeyConditionExpression: aws.String("PK = :pk AND begins_with(SK, :jrn)"),
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":pk": s(preparedShard(runID, strconv.FormatInt(int64(i), 16))), ":jrn": s(journalPrefix),
			},
			ConsistentRead: aws.Bool(true),
			Limit:          d.limit(),
		})
		for p.HasMorePages() {
			out, err := p.NextPage(ctx)
			if err != nil {
				return d.wrap("intent journal of run "+runID, err)
			}
			for _, item := range out.Items {
				sl := slotItem{pk: strAttr(item, attrPK), sk: strAttr(item, attrSK), gen: strAttr(item, "g")}
				sl.at, _ = parseTime(strAttr(item, "at"))
				if b, ok := item["e"].(*types.AttributeValueMemberB); ok {
					its, err := journalItems(b.Value)
					if err != nil {
						return fmt.Errorf("%w (journal item %s/%s)", err, sl.pk, sl.sk)
					}
					sl.items = its
				}
				if d.j.ownFree(sl.sk, sl.gen) {
					continue // this process's, every entry settled
				}
				if live, ok := d.j.liveItems(sl.sk, sl.gen); ok {
					sl.items = live // this process's: what may still hold an intent
				}
				slots = append(slots, sl)
			}
		}
	}
	var keys [][2]string
	seenKey := map[[2]string]bool{}
	for _, sl := range slots {
		for _, k := range sl.items {
			if !seenKey[k] {
				seenKey[k] = true
				keys = append(keys, k)
			}
		}
	}
	withIntent := map[[2]string]bool{}
	// Entries naming every version of an object (announced): query its
	// partition, partitionQueries at a time, for the versions that hold
	// an intent or an event.
	exact := keys[:0:0]
	var whole []string
	for _, k := range keys {
		if k[1] != "" {
			exact = append(exact, k)
		} else {
			whole = append(whole, k[0])
		}
	}
	held := make([][]string, len(whole))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(partitionQueries)
	for i, pk := range whole {
		g.Go(func() error {
			items, err := d.partition(gctx, pk)
			for _, item := range items {
				if item[attrExtras] != nil {
					held[i] = append(held[i], strAttr(item, attrSK))
				}
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for i, pk := range whole {
		for _, sk := range held[i] {
			ik := [2]string{pk, sk}
			if !seenKey[ik] {
				seenKey[ik] = true
				exact = append(exact, ik)
			}
		}
	}
	keys = exact
	err := d.batchGet(ctx, keys, func(k [2]string, item map[string]types.AttributeValue) error {
		evs, err := d.intentsOn(item, runID, nil)
		if err != nil {
			return err
		}
		if len(evs) > 0 {
			withIntent[k] = true
		}
		for _, ev := range evs {
			if err := fn(ev); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Which items still hold an intent after fn settled them.
	var again [][2]string
	for k := range withIntent {
		again = append(again, k)
	}
	still := map[[2]string]bool{}
	if err := d.batchGet(ctx, again, func(k [2]string, item map[string]types.AttributeValue) error {
		evs, err := itemEvents(item, attrIntentPrefix, runID, d.resolveKey)
		if len(evs) > 0 {
			still[k] = true
		}
		return err
	}); err != nil {
		return err
	}
	stillPK := make(map[string]bool, len(still))
	for k := range still {
		stillPK[k[0]] = true
	}
	now := d.o.now()
	for _, sl := range slots {
		busy := now.Sub(sl.at) < journalQuiet
		for _, k := range sl.items {
			// An entry naming every version is busy while any version of
			// its object holds an intent.
			busy = busy || still[k] || (k[1] == "" && stillPK[k[0]])
		}
		if !busy {
			if err := d.deleteJournal(ctx, sl.pk, sl.sk, sl.gen); err != nil {
				return err
			}
		}
	}
	return nil
}

// partitionQueries bounds the Queries of object partitions that Prepared
// sends at once: an announcement names up to a listing page of objects
// (pipeline), and after a crash each of its entries costs one.
const partitionQueries = 8

// partition reads every object item of an object's partition (strongly
// consistent), without the schema 1 event items.
func (d *dynamoLedger) partition(ctx context.Context, pk string) ([]map[string]types.AttributeValue, error) {
	var out []map[string]types.AttributeValue
	p := dynamodb.NewQueryPaginator(d.c, &dynamodb.QueryInput{
		TableName:                 aws.String(d.table),
		KeyConditionExpression:    aws.String("PK = :pk AND begins_with(SK, :v)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": s(pk), ":v": s("ver#")},
		ConsistentRead:            aws.Bool(true),
		Limit:                     d.limit(),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, d.wrap("versions of "+pk, err)
		}
		out = append(out, page.Items...)
	}
	return out, nil
}

// batchGet reads items by key (strongly consistent, 100 per request) and
// calls fn for each that exists, one at a time, in no particular order.
// Keys left unprocessed are asked for again as the coalesced reads' are
// (unprocessedPause), and fail as throttled after readTries.
func (d *dynamoLedger) batchGet(ctx context.Context, keys [][2]string, fn func([2]string, map[string]types.AttributeValue) error) error {
	for len(keys) > 0 {
		n := min(len(keys), readBatchMax)
		batch := make([]map[string]types.AttributeValue, 0, n)
		for _, k := range keys[:n] {
			batch = append(batch, key(k[0], k[1]))
		}
		keys = keys[n:]
		for left := 0; len(batch) > 0; {
			out, err := d.c.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{
				RequestItems: map[string]types.KeysAndAttributes{d.table: {Keys: batch, ConsistentRead: aws.Bool(true)}},
			})
			if err != nil {
				return d.wrap("read object items", err)
			}
			for _, item := range out.Responses[d.table] {
				if err := fn([2]string{strAttr(item, attrPK), strAttr(item, attrSK)}, item); err != nil {
					return err
				}
			}
			batch = nil
			if u, ok := out.UnprocessedKeys[d.table]; ok && len(u.Keys) > 0 {
				// As the coalesced reads do (reads.send).
				if left++; left >= readTries {
					return d.errUnprocessed("read object items")
				}
				batch = u.Keys
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(unprocessedPause(left)):
				}
			}
		}
	}
	return nil
}

// noSchema1Intents refuses a run that holds prepared events of schema 1
// (items in the run's partitions): only the rotator that wrote them knows
// how to settle them.
func (d *dynamoLedger) noSchema1Intents(ctx context.Context, runID string) error {
	for i := range gsiShards {
		out, err := d.c.Query(ctx, &dynamodb.QueryInput{
			TableName:              aws.String(d.table),
			KeyConditionExpression: aws.String("PK = :pk AND begins_with(SK, :prep)"),
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":pk": s(preparedShard(runID, strconv.FormatInt(int64(i), 16))), ":prep": s("prep#"),
			},
			ConsistentRead: aws.Bool(true),
			Select:         types.SelectCount,
			Limit:          aws.Int32(1),
		})
		if err != nil {
			return d.wrap("prepared events of run "+runID, err)
		}
		if out.Count > 0 {
			return fmt.Errorf("%w: run %s has prepared events of ledger schema 1 (hint: resume it with the rotator version that started it, before this one uses the table)", ErrInvalid, runID)
		}
	}
	return nil
}

// putObject writes an object record with one UpdateItem (so that a claim on
// the item stays). With claimRun: on condition that the claim is held by
// that owner, and the claim is dropped. Without: on condition that the stored
// record is not later than obj.
func (d *dynamoLedger) putObject(ctx context.Context, obj Object, owner string) error {
	names := map[string]string{}
	vals := map[string]types.AttributeValue{}
	set, remove, err := objectSets(obj, names, vals)
	if err != nil {
		return err
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
	return d.updateRecord(ctx, obj.ID, set, remove, cond, names, vals)
}

// updateRecord sets and removes the attributes of id's object item the
// clauses name, on condition cond.
func (d *dynamoLedger) updateRecord(ctx context.Context, id ObjectID, set, remove []string, cond string,
	names map[string]string, vals map[string]types.AttributeValue) error {
	expr := "SET " + strings.Join(set, ", ")
	if len(remove) > 0 {
		expr += " REMOVE " + strings.Join(remove, ", ")
	}
	_, err := d.c.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.table), Key: objectKey(id),
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
	// One registration per key and process: the workers that meet a new
	// key at once wait for the first.
	d.regMu.Lock()
	defer d.regMu.Unlock()
	d.mu.Lock()
	known = d.keys[wrapKey]
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

// ObserveRelease writes the observation and drops owner's claim in one
// conditional write of the object's item (putObject with the owner's
// condition, and Observe's: no later record). An observation that does
// not know the key (Observe's keepsKey path), a claim owner does not
// hold or a later record go the long way: Observe, then Release.
func (d *dynamoLedger) ObserveRelease(ctx context.Context, owner string, obj Object) error {
	o, err := prepObject(obj, d.o.now())
	if err != nil {
		return err
	}
	if o.WrapKey != "" {
		if err := d.register(ctx, o.WrapKey); err != nil {
			return err
		}
		err := d.observeReleasing(ctx, o, owner)
		if err == nil {
			return nil
		}
		if !isCondFailed(err) {
			return d.wrap("observe "+o.ID.String(), err)
		}
	}
	if err := d.Observe(ctx, obj); err != nil {
		return err
	}
	// The item holds a record now: release's DeleteItem, which takes only
	// an item holding nothing but a claim, would fail its condition.
	return d.releaseClaim(ctx, obj.ID, "claim_owner = :v", owner)
}

// observeReleasing writes obj's record and removes owner's claim, on the
// condition that owner holds it and the record there is not later.
func (d *dynamoLedger) observeReleasing(ctx context.Context, obj Object, owner string) error {
	names := map[string]string{}
	vals := map[string]types.AttributeValue{":owner": s(owner), ":t": s(formatTime(obj.UpdatedAt))}
	set, remove, err := objectSets(obj, names, vals)
	if err != nil {
		return err
	}
	remove = append(remove, attrClaimOwner, attrClaimRun, attrClaimExpires, attrClaimGroup, attrClaimEpoch)
	cond := "claim_owner = :owner AND (attribute_not_exists(updated_at) OR updated_at <= :t)"
	return d.updateRecord(ctx, obj.ID, set, remove, cond, names, vals)
}

// observeKeepingKey writes the observation obj, which does not know the
// wrap key, over a record that names one, leaving the record's key, shard
// and fingerprint as they are. It fails its condition when there is no
// such record, the record is later, or it names another wrapped key.
func (d *dynamoLedger) observeKeepingKey(ctx context.Context, obj Object) error {
	av, err := recordAV(obj)
	if err != nil {
		return err
	}
	names := map[string]string{"#wk": attrShard, "#u": "updated_at"}
	vals := map[string]types.AttributeValue{":t": s(formatTime(obj.UpdatedAt))}
	set, remove := attrSets(av, objectAttrs, names, vals, "wrap_key", "wrapped_key_sha256")
	cond := "attribute_exists(#wk) AND #u <= :t"
	if obj.WrappedKeySHA256 != "" {
		// Either form (schema 1 wrote it as hex).
		names["#fp"] = "wrapped_key_sha256"
		vals[":fp"] = s(obj.WrappedKeySHA256)
		cond += " AND (#fp = :fp"
		if b, ok := av["wrapped_key_sha256"].(*types.AttributeValueMemberB); ok {
			vals[":fpb"] = b
			cond += " OR #fp = :fpb"
		}
		cond += ")"
	}
	return d.updateRecord(ctx, obj.ID, set, remove, cond, names, vals)
}

func (d *dynamoLedger) Get(ctx context.Context, id ObjectID) (Object, error) {
	if err := validID(id); err != nil {
		return Object{}, err
	}
	item, err := d.readItem(ctx, id)
	if err != nil {
		return Object{}, err
	}
	if item == nil || strAttr(item, attrUpdatedAt) == "" {
		return Object{}, objectNotFound(id)
	}
	return decodeObject(item, &id, d.resolveKey)
}

// decodeObject decodes an object record; with want, it also checks that the
// record is want's (a hash collision would show here).
func decodeObject(item map[string]types.AttributeValue, want *ObjectID, resolve func([8]byte) (string, error)) (Object, error) {
	norm, err := recordOfItem(item, resolve)
	if err != nil {
		return Object{}, err
	}
	var rec objectRecord
	if err := attributevalue.UnmarshalMap(norm, &rec); err != nil {
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

// storedEvents returns the lineage events an item holds: an event item of
// schema 1, or the e# attributes of an object item.
func (d *dynamoLedger) storedEvents(item map[string]types.AttributeValue) ([]Event, error) {
	switch {
	case strAttr(item, attrType) == typeEvent:
		e, err := decodeEvent(item)
		if err != nil {
			return nil, err
		}
		return []Event{e}, nil
	case item[attrExtras] != nil:
		return itemEvents(item, attrEventPrefix, "", d.resolveKey)
	}
	return nil, nil
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
		KeyConditionExpression: aws.String("PK = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": s(objectPK(id.Bucket, id.Key)),
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
			evs, err := d.storedEvents(item)
			if err != nil {
				return nil, err
			}
			for _, e := range evs {
				if e.ID.Bucket == id.Bucket && e.ID.Key == id.Key {
					all = append(all, e)
				}
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
	for j := range gsiShards * len(d.shardForms()) {
		i, form := j%gsiShards, d.shardForms()[j/gsiShards]
		p := dynamodb.NewQueryPaginator(d.c, &dynamodb.QueryInput{
			TableName:                 aws.String(d.table),
			IndexName:                 aws.String(gsiByKey),
			KeyConditionExpression:    aws.String("wk_shard = :g"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":g": s(form(wrapKey, i))},
			Limit:                     d.limit(),
		})
		for p.HasMorePages() {
			out, err := p.NextPage(ctx)
			if err != nil {
				return d.wrap("objects under key "+wrapKey, err)
			}
			for _, item := range out.Items {
				obj, err := decodeObject(item, nil, d.resolveKey)
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
	forms := d.shardForms()
	per := gsiShards * len(forms)
	counts := make([]int64, len(keys)*per)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := range counts {
		g.Go(func() error {
			p := dynamodb.NewQueryPaginator(d.c, &dynamodb.QueryInput{
				TableName:                 aws.String(d.table),
				IndexName:                 aws.String(gsiByKey),
				KeyConditionExpression:    aws.String("wk_shard = :g"),
				ExpressionAttributeValues: map[string]types.AttributeValue{":g": s(forms[i%per/gsiShards](keys[i/per], i%gsiShards))},
				Select:                    types.SelectCount,
				Limit:                     d.limit(),
			})
			for p.HasMorePages() {
				out, err := p.NextPage(gctx)
				if err != nil {
					return d.wrap("count objects under key "+keys[i/per], err)
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
		m[keys[i/per]] += c
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
				FilterExpression:          aws.String("#t = :evt OR attribute_exists(#x)"),
				ExpressionAttributeNames:  map[string]string{"#t": attrType, "#x": attrExtras},
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
					es, err := d.storedEvents(item)
					if err != nil {
						return err
					}
					evs = append(evs, es...)
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
