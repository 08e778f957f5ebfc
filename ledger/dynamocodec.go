package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// DynamoDB schema 2 keeps a version's intents and lineage events on its
// object record's item, one attribute each, so that a rewrap writes that
// one item twice (Begin, Commit) and nothing else but its share of a
// journal item (see dynamojournal.go):
//
//	p#<run>#<op>   B   the prepared event (intent) of identity (version, run, op)
//	e#<run>#<op>   B   the lineage event of that identity
//	lx             N   1 on an item that holds (or held) either: such an
//	                   item is never deleted as a claim-only item
//
// Run ids ([A-Za-z0-9._:-]) and operations ([a-z0-9+_-]) hold no '#', so
// the attribute name gives the identity. The value is compact: a version
// byte and the event's fields in binary (as the embedded store's records),
// without what the item and the name hold (bucket, key, version, run, op),
// keys as 8-byte references into a registry (keyRef).

const (
	attrIntentPrefix = "p#"
	attrEventPrefix  = "e#"
	attrExtras       = "lx"
	eventBlobV2      = 2 // the first byte of an event's stored form
)

// intentAttr and eventAttr name the attributes of identity (run, op).
func intentAttr(run, op string) string { return attrIntentPrefix + run + "#" + op }
func eventAttr(run, op string) string  { return attrEventPrefix + run + "#" + op }

// splitIdentityAttr returns the run and op of an intent or event attribute
// name with the given prefix; ok is false for any other attribute.
func splitIdentityAttr(name, prefix string) (run, op string, ok bool) {
	rest, found := strings.CutPrefix(name, prefix)
	if !found {
		return "", "", false
	}
	i := strings.LastIndexByte(rest, '#')
	if i <= 0 || i == len(rest)-1 {
		return "", "", false
	}
	return rest[:i], rest[i+1:], true
}

// keyRef is how an event names a key: the first 8 bytes of its SHA-256,
// resolved through the key reference registry (meta/key_refs), where every
// key an event names is added before the event is written.
func keyRef(k string) [8]byte {
	sum := sha256.Sum256([]byte(k))
	var r [8]byte
	copy(r[:], sum[:8])
	return r
}

// encodeEventBlob returns the stored form of an event or a prepared event;
// its keys must be in the key reference registry (dynamoLedger.eventBlob).
func encodeEventBlob(ev Event) []byte {
	e := encoder{b: make([]byte, 0, 96+len(ev.Method)+len(ev.VersionAfter))}
	e.b = append(e.b, eventBlobV2)
	e.str(ev.Method)
	for _, k := range []string{ev.FromKey, ev.ToKey} {
		if k == "" {
			e.b = append(e.b, 0)
			continue
		}
		r := keyRef(k)
		e.b = append(append(e.b, 1), r[:]...)
	}
	e.eventTail(ev)
	return e.b
}

// decodeEventBlob reads an event of identity (id, run, op) stored as v;
// resolve names the key of a reference.
func decodeEventBlob(id ObjectID, run, op string, v []byte, resolve func([8]byte) (string, error)) (Event, error) {
	if len(v) == 0 || v[0] != eventBlobV2 {
		return Event{}, fmt.Errorf("ledger: event %s of %s by run %s: unknown encoding (hint: written by a newer rotator?)", op, id, run)
	}
	d := decoder{b: v[1:]}
	ev := Event{ID: id, RunID: run, Op: op, VersionBefore: id.VersionID}
	ev.Method = d.str()
	for _, k := range []*string{&ev.FromKey, &ev.ToKey} {
		switch d.byte1() {
		case 0:
		case 1:
			var r [8]byte
			copy(r[:], d.take(8))
			if d.err == nil {
				*k, d.err = resolve(r)
			}
		default:
			if d.err == nil {
				d.err = errors.New("ledger: corrupt record: bad key reference")
			}
		}
	}
	d.eventTail(&ev)
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("ledger: corrupt record: %d bytes too many", len(d.b))
	}
	if d.err != nil {
		return Event{}, fmt.Errorf("ledger: event %s of %s by run %s: %w", op, id, run, d.err)
	}
	return ev, nil
}

// itemID returns the object version an object item holds, from its clear
// bucket, object_key and version_id attributes (set by every write that
// stores an intent or an event, and by object records).
func itemID(item map[string]types.AttributeValue) (ObjectID, bool) {
	id := ObjectID{Bucket: strAttr(item, "bucket"), Key: strAttr(item, "object_key"), VersionID: strAttr(item, "version_id")}
	return id, id.Bucket != "" && id.Key != ""
}

// itemEvents returns the events (prefix attrEventPrefix) or intents
// (attrIntentPrefix) stored on an object item, of run run only when run is
// not empty.
func itemEvents(item map[string]types.AttributeValue, prefix, run string, resolve func([8]byte) (string, error)) ([]Event, error) {
	var evs []Event
	var id ObjectID
	for name, v := range item {
		r, op, ok := splitIdentityAttr(name, prefix)
		if !ok || (run != "" && r != run) {
			continue
		}
		b, isB := v.(*types.AttributeValueMemberB)
		if !isB {
			return nil, fmt.Errorf("ledger: item %s/%s: attribute %s is not binary", strAttr(item, attrPK), strAttr(item, attrSK), name)
		}
		if id.Bucket == "" {
			var found bool
			if id, found = itemID(item); !found {
				return nil, fmt.Errorf("ledger: item %s/%s holds %s but no object id", strAttr(item, attrPK), strAttr(item, attrSK), name)
			}
		}
		ev, err := decodeEventBlob(id, r, op, b.Value, resolve)
		if err != nil {
			return nil, err
		}
		evs = append(evs, ev)
	}
	return evs, nil
}

// itemEvent returns the event or intent of attribute name on item.
func itemEvent(item map[string]types.AttributeValue, name string, resolve func([8]byte) (string, error)) (Event, []byte, bool, error) {
	v, ok := item[name].(*types.AttributeValueMemberB)
	if !ok {
		return Event{}, nil, false, nil
	}
	prefix := attrEventPrefix
	if strings.HasPrefix(name, attrIntentPrefix) {
		prefix = attrIntentPrefix
	}
	run, op, _ := splitIdentityAttr(name, prefix)
	id, found := itemID(item)
	if !found {
		return Event{}, nil, false, fmt.Errorf("ledger: item %s/%s holds %s but no object id", strAttr(item, attrPK), strAttr(item, attrSK), name)
	}
	ev, err := decodeEventBlob(id, run, op, v.Value, resolve)
	return ev, v.Value, err == nil, err
}

// Object records of schema 2 are the attributes of schema 1 (SCHEMA.md)
// written shorter, and read in either form:
//
//   - no wrap_key: the index key wk_shard names it: '#', the key's
//     reference (keyRef) in hex, '#', a hex digit (schema 1: the wrap key
//     itself, '#', the digit); a record without a wrap key has neither;
//   - etag, when it is a quoted MD5, as B, its 16 bytes;
//   - wrapped_key_sha256 as B, its 32 bytes (schema 1: S, 64 hex digits);
//   - format, placement, cek_alg and state, when their value is one of
//     shortValues, as '~' and its index in base 36 (no value written in
//     full starts with '~').

// shortValues may only grow: an index, once written, means its value.
var shortValues = []string{
	"current", "rewrapped", "reencrypted", "failed", "changed", "deleted",
	"object metadata", "instruction file", "metadata", "instruction-file",
	"AES/GCM/NoPadding", "AES/CBC/PKCS5Padding", "115",
	"V1", "V2", "V3",
}

var shortIndex = func() map[string]string {
	m := make(map[string]string, len(shortValues))
	for i, v := range shortValues {
		m[v] = "~" + strconv.FormatInt(int64(i), 36)
	}
	return m
}()

// shortAttrs are the record attributes written with shortValues.
var shortAttrs = []string{"format", "placement", "cek_alg", "state"}

// recordAV returns the item attributes of an object record (schema 2).
func recordAV(obj Object) (map[string]types.AttributeValue, error) {
	av, err := attributevalue.MarshalMap(toObjectRecord(obj))
	if err != nil {
		return nil, err
	}
	delete(av, "wrap_key")
	if e := obj.ETag; len(e) == 34 && e[0] == '"' && e[33] == '"' && isLowerHex(e[1:33]) {
		raw, _ := hex.DecodeString(e[1:33])
		av["etag"] = &types.AttributeValueMemberB{Value: raw}
	}
	if fp := obj.WrappedKeySHA256; len(fp) == 64 && isLowerHex(fp) {
		raw, _ := hex.DecodeString(fp)
		av["wrapped_key_sha256"] = &types.AttributeValueMemberB{Value: raw}
	}
	for _, a := range shortAttrs {
		if v, ok := av[a].(*types.AttributeValueMemberS); ok {
			if code, ok := shortIndex[v.Value]; ok {
				av[a] = s(code)
			}
		}
	}
	return av, nil
}

// recordOfItem returns item's object record attributes in schema 1's form
// (a copy: item is left as it is).
func recordOfItem(item map[string]types.AttributeValue, resolve func([8]byte) (string, error)) (map[string]types.AttributeValue, error) {
	out := make(map[string]types.AttributeValue, len(item)+1)
	for k, v := range item {
		out[k] = v
	}
	if _, ok := out["wrap_key"]; !ok {
		if sh := strAttr(item, attrShard); sh != "" {
			i := strings.LastIndexByte(sh, '#')
			wk := sh[:max(i, 0)]
			if len(wk) == 17 && wk[0] == '#' {
				var r [8]byte
				if _, err := hex.Decode(r[:], []byte(wk[1:])); err != nil {
					return nil, fmt.Errorf("ledger: corrupt record: index key %q", sh)
				}
				k, err := resolve(r)
				if err != nil {
					return nil, err
				}
				wk = k
			}
			out["wrap_key"] = s(wk)
		}
	}
	if b, ok := item["etag"].(*types.AttributeValueMemberB); ok {
		out["etag"] = s(`"` + hex.EncodeToString(b.Value) + `"`)
	}
	if b, ok := item["wrapped_key_sha256"].(*types.AttributeValueMemberB); ok {
		out["wrapped_key_sha256"] = s(hex.EncodeToString(b.Value))
	}
	for _, a := range shortAttrs {
		v := strAttr(item, a)
		if len(v) > 1 && v[0] == '~' {
			if i, err := strconv.ParseInt(v[1:], 36, 32); err == nil && int(i) < len(shortValues) {
				out[a] = s(shortValues[i])
			}
		}
	}
	return out, nil
}

// skKeyRefs is the key reference registry's item (PK meta): refs, a string
// set of every key an event or intent names.
const skKeyRefs = "key_refs"

// eventBlob adds ev's keys to the key reference registry (once per key and
// process) and returns ev's stored form.
func (d *dynamoLedger) eventBlob(ctx context.Context, ev Event) ([]byte, error) {
	for _, k := range []string{ev.FromKey, ev.ToKey} {
		if k == "" {
			continue
		}
		r := keyRef(k)
		known := func() string {
			d.mu.Lock()
			defer d.mu.Unlock()
			return d.refs[r]
		}
		if k2 := known(); k2 != "" {
			if k2 != k {
				return nil, fmt.Errorf("ledger: keys %q and %q share a reference (the first 8 bytes of their SHA-256)", k2, k)
			}
			continue
		}
		// The workers that meet a new key at once wait for the first.
		d.regMu.Lock()
		if known() != "" {
			d.regMu.Unlock()
			continue
		}
		_, err := d.c.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName: aws.String(d.table), Key: key(pkMeta, skKeyRefs),
			UpdateExpression:          aws.String("ADD #k :k"),
			ExpressionAttributeNames:  map[string]string{"#k": "refs"},
			ExpressionAttributeValues: map[string]types.AttributeValue{":k": &types.AttributeValueMemberSS{Value: []string{k}}},
		})
		if err == nil {
			d.mu.Lock()
			d.refs[r] = k
			d.mu.Unlock()
		}
		d.regMu.Unlock()
		if err != nil {
			return nil, d.wrap("register key reference "+k, err)
		}
	}
	return encodeEventBlob(ev), nil
}

// resolveKey returns the key of reference r, reading the registry again
// (strongly consistent) when r is not known yet.
func (d *dynamoLedger) resolveKey(r [8]byte) (string, error) {
	d.mu.Lock()
	k := d.refs[r]
	d.mu.Unlock()
	if k != "" {
		return k, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var all []string
	for _, reg := range [][2]string{{skKeyRefs, "refs"}, {skWrapKeys, "keys"}} {
		item, err := d.getItem(ctx, pkMeta, reg[0])
		if err != nil {
			return "", err
		}
		if ss, ok := item[reg[1]].(*types.AttributeValueMemberSS); ok {
			all = append(all, ss.Value...)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, key := range all {
		d.refs[keyRef(key)] = key
	}
	if k := d.refs[r]; k != "" {
		return k, nil
	}
	return "", fmt.Errorf("ledger: corrupt record: key reference %x is not in the registry (meta/%s)", r, skKeyRefs)
}
