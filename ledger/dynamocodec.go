package ledger

import (
	"fmt"
	"strings"

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
// byte and the event's fields in binary (as the embedded store's records,
// but with strings written out: DynamoDB has no dictionary), without what
// the item and the name hold (bucket, key, version, run, op).

const (
	attrIntentPrefix = "p#"
	attrEventPrefix  = "e#"
	attrExtras       = "lx"
	eventBlobV1      = 1
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

// encodeEventBlob returns the stored form of an event or a prepared event.
func encodeEventBlob(ev Event) []byte {
	e := encoder{b: make([]byte, 0, 96+len(ev.Method)+len(ev.FromKey)+len(ev.ToKey)+len(ev.VersionAfter))}
	e.b = append(e.b, eventBlobV1)
	e.str(ev.Method)
	e.str(ev.FromKey)
	e.str(ev.ToKey)
	e.time(ev.At)
	e.etag(ev.ETagBefore)
	if ev.ETagAfter != "" && ev.ETagAfter == ev.ETagBefore {
		e.b = append(e.b, 2) // a metadata-only self-copy keeps the ETag
	} else {
		e.etag(ev.ETagAfter)
	}
	e.str(ev.VersionAfter)
	e.sum(ev.OldWrappedKeySHA256)
	e.sum(ev.NewWrappedKeySHA256)
	return e.b
}

// decodeEventBlob reads an event of identity (id, run, op) stored as v.
func decodeEventBlob(id ObjectID, run, op string, v []byte) (Event, error) {
	if len(v) == 0 || v[0] != eventBlobV1 {
		return Event{}, fmt.Errorf("ledger: event %s of %s by run %s: unknown encoding (hint: written by a newer rotator?)", op, id, run)
	}
	d := decoder{b: v[1:]}
	ev := Event{ID: id, RunID: run, Op: op, VersionBefore: id.VersionID}
	ev.Method = d.str()
	ev.FromKey = d.str()
	ev.ToKey = d.str()
	ev.At = d.time()
	ev.ETagBefore = d.etag()
	if len(d.b) > 0 && d.b[0] == 2 {
		d.b = d.b[1:]
		ev.ETagAfter = ev.ETagBefore
	} else {
		ev.ETagAfter = d.etag()
	}
	ev.VersionAfter = d.str()
	ev.OldWrappedKeySHA256 = d.sum()
	ev.NewWrappedKeySHA256 = d.sum()
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
func itemEvents(item map[string]types.AttributeValue, prefix, run string) ([]Event, error) {
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
		ev, err := decodeEventBlob(id, r, op, b.Value)
		if err != nil {
			return nil, err
		}
		evs = append(evs, ev)
	}
	return evs, nil
}

// itemEvent returns the event or intent of attribute name on item.
func itemEvent(item map[string]types.AttributeValue, name string) (Event, []byte, bool, error) {
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
	ev, err := decodeEventBlob(id, run, op, v.Value)
	return ev, v.Value, err == nil, err
}
