package ledger

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// The intent journal (DynamoDB schema 2). An intent lives on its object's
// item (p#<run>#<op>), where no strongly consistent query of the run can
// find it: DynamoDB's only way to list items by an attribute, a secondary
// index, is eventually consistent. So before an intent is written, the
// item that will hold it is named in a journal item of the run:
//
//	PK run#<run>#<d>   SK jrn#<process>#<slot>
//	t=journal, e (B: the entries), g (S: a random generation), at (S)
//
// An entry is the 16 bytes of the object's <h> and its version id; the
// journal item's partition spreads over the run's 16 (<d>, as prepared
// events and uploads did in schema 1). Prepared(run) queries the run's
// journal items, reads every item they name (strongly consistent) and lists
// the intents of the run it finds there.
//
// Journal writes are group commits: the intents that workers begin while
// one journal write is in flight go into the next one, a single PutItem,
// so that a journal write is shared by every object in flight. A process
// counts, per journal item (a slot), the entries whose intent may still be
// on their item; once none is left (committed, abandoned, or never
// written) the slot is free and the next group overwrites it: no delete
// per group. On Close a process deletes its free slots; slots whose
// intents it could not settle stay for Prepared, which deletes a slot once
// none of its entries holds an intent, on condition that the slot's
// generation is still the one it read, and only slots older than
// journalQuiet (a Begin re-journals an intent it was about to write after
// half of that, so no intent can land behind a deleted slot).

const (
	journalPrefix = "jrn#"
	typeJournal   = "journal"
	// journalQuiet: Prepared deletes only journal items at least this old.
	journalQuiet = time.Hour
	// journalMaxEntries bounds a group (a journal item stays far below
	// DynamoDB's 400 KB: an entry is at most 16 + 5 + 1024 bytes).
	journalMaxEntries = 256
	// journalKeepFree bounds the free slots a process keeps per run.
	journalKeepFree = 8
)

type jslot struct {
	run     string
	pk, sk  string
	gen     string
	written time.Time
	entries int  // entries of the last write
	live    int  // entries whose intent may be on their item
	inGroup bool // being written
}

type jreq struct {
	run   string
	entry []byte
	done  chan struct{}
	slot  *jslot
	err   error
	gone  bool // the caller stopped waiting (under journal.mu)
}

type journal struct {
	d    *dynamoLedger
	proc string

	mu     sync.Mutex
	queue  []*jreq
	free   map[string][]*jslot // run -> free slots
	next   int                 // slot numbers of this process
	closed bool
	kick   chan struct{}
	quit   chan struct{}
	wg     sync.WaitGroup
	// live maps an identity to the slots whose entry names it while its
	// intent may be on the item (a retried Begin may have journaled it
	// twice).
	live map[string][]*jslot
	// blobs holds the intents this process wrote or read, by identity,
	// for the condition of their Commit.
	blobs map[string][]byte
	// slots are this process's journal items, by sort key.
	slots map[string]*jslot
	// announced maps (run, bucket, key) to the slots of Announce that
	// name the object, one per announcement not yet Done.
	announced map[string][]*jslot
	// busy counts the Begins and Prepares in flight (enter, leave).
	busy int
}

func newJournal(d *dynamoLedger) *journal {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	j := &journal{d: d, proc: hex.EncodeToString(b[:]), free: map[string][]*jslot{},
		kick: make(chan struct{}, 1), quit: make(chan struct{}), live: map[string][]*jslot{},
		blobs: map[string][]byte{}, slots: map[string]*jslot{}, announced: map[string][]*jslot{}}
	j.wg.Add(1)
	go j.flusher()
	return j
}

// journalEntry encodes the item an intent of id is written to: the 16
// bytes of <h>, then the version id's length plus one and the version id;
// with anyVersion, a 0 instead (every version of the object: an announced
// object whose version the run does not know yet).
func journalEntry(id ObjectID, anyVersion bool) []byte {
	pk := objectPK(id.Bucket, id.Key)
	h, _ := hex.DecodeString(pk[len("obj#"):])
	b := make([]byte, 0, len(h)+binary.MaxVarintLen64+len(id.VersionID))
	b = append(b, h...)
	if anyVersion {
		return append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(id.VersionID))+1)
	return append(b, id.VersionID...)
}

// journalItems decodes a journal item's entries into item keys (PK, SK);
// SK is "" for an entry that names every version of the object.
func journalItems(b []byte) ([][2]string, error) {
	var out [][2]string
	for len(b) > 0 {
		if len(b) < 17 {
			return nil, errors.New("ledger: corrupt journal entry")
		}
		pk := "obj#" + hex.EncodeToString(b[:16])
		b = b[16:]
		n, k := binary.Uvarint(b)
		if k <= 0 || (n > 0 && n-1 > uint64(len(b)-k)) {
			return nil, errors.New("ledger: corrupt journal entry")
		}
		b = b[k:]
		if n == 0 {
			out = append(out, [2]string{pk, ""})
			continue
		}
		v := string(b[:n-1])
		b = b[n-1:]
		out = append(out, [2]string{pk, versionSK(v)})
	}
	return out, nil
}

func identityKey(id ObjectID, run, op string) string {
	return string(tupleKey(id.Bucket, id.Key, id.VersionID, run, op))
}

// add journals the item of id for an intent of (run, op) and returns once
// the journal item that names it is written.
func (j *journal) add(ctx context.Context, id ObjectID, run, op string) error {
	r := &jreq{run: run, entry: journalEntry(id, false), done: make(chan struct{})}
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return errors.New("ledger: closed")
	}
	j.queue = append(j.queue, r)
	j.mu.Unlock()
	select {
	case j.kick <- struct{}{}:
	default:
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		j.mu.Lock()
		select {
		case <-r.done:
		default:
			r.gone = true // write leaves it out of the slot's count
		}
		gone := r.gone
		j.mu.Unlock()
		if gone {
			return ctx.Err()
		}
	}
	if r.err != nil {
		return r.err
	}
	j.mu.Lock()
	k := identityKey(id, run, op)
	j.live[k] = append(j.live[k], r.slot)
	j.mu.Unlock()
	return nil
}

// fresh reports whether the journal item of id's latest entry for (run,
// op) was written less than half of journalQuiet ago (see the package
// comment above): a Begin whose journal write is older journals again.
func (j *journal) fresh(id ObjectID, run, op string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	s := j.live[identityKey(id, run, op)]
	return len(s) > 0 && j.d.o.now().Sub(s[len(s)-1].written) < journalQuiet/2
}

func announceKey(run string, id ObjectID) string { return string(tupleKey(run, id.Bucket, id.Key)) }

// covered reports whether an announcement of this process names id's
// object in a journal item written less than half of journalQuiet ago;
// if so the intent of identity (id, run, op) is counted on that item, as
// add would count it on its own.
func (j *journal) covered(id ObjectID, run, op string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return false // add refuses: close has rewritten the announcements
	}
	a := j.announced[announceKey(run, id)]
	if len(a) == 0 {
		return false
	}
	sl := a[len(a)-1]
	if j.d.o.now().Sub(sl.written) >= journalQuiet/2 {
		return false
	}
	k := identityKey(id, run, op)
	sl.live++
	j.live[k] = append(j.live[k], sl)
	return true
}

// announce journals the objects of ids (every version of each) in a slot
// of its own, counted until done is called for each.
func (j *journal) announce(ctx context.Context, run string, ids []ObjectID) error {
	if len(ids) == 0 {
		return nil
	}
	var b []byte
	for _, id := range ids {
		b = append(b, journalEntry(id, true)...)
	}
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return errors.New("ledger: closed")
	}
	sl := j.takeSlot(run)
	j.mu.Unlock()
	gen, now, err := j.put(ctx, sl, b)
	j.mu.Lock()
	defer j.mu.Unlock()
	sl.inGroup = false
	if err != nil {
		return err // the slot is left alone: it may have landed
	}
	sl.gen, sl.written, sl.entries = gen, now, len(ids)
	for _, id := range ids {
		k := announceKey(run, id)
		j.announced[k] = append(j.announced[k], sl)
		sl.live++
	}
	return nil
}

// done ends the announcement of id's object (the run is through with it).
func (j *journal) done(run string, id ObjectID) {
	j.mu.Lock()
	defer j.mu.Unlock()
	k := announceKey(run, id)
	a := j.announced[k]
	if len(a) == 0 {
		return
	}
	sl := a[0]
	if len(a) == 1 {
		delete(j.announced, k)
	} else {
		j.announced[k] = a[1:]
	}
	sl.live--
	j.maybeFree(sl)
}

// settle records that no intent of identity (id, run, op) is on its item
// any more (committed, abandoned, or never written).
func (j *journal) settle(id ObjectID, run, op string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	k := identityKey(id, run, op)
	for _, s := range j.live[k] {
		s.live--
		j.maybeFree(s)
	}
	delete(j.live, k)
	delete(j.blobs, k)
}

// remember keeps the stored form of an intent for its Commit's condition.
func (j *journal) remember(id ObjectID, run, op string, blob []byte) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.blobs) >= 1<<16 {
		clear(j.blobs) // intents left behind: a Commit reads them again
	}
	j.blobs[identityKey(id, run, op)] = blob
}

// intentBlob returns the stored form of an intent remembered, or nil.
func (j *journal) intentBlob(id ObjectID, run, op string) []byte {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.blobs[identityKey(id, run, op)]
}

// enter and leave bracket a Begin or a Prepare: while one is in flight,
// Prepared reads every entry of this process's journal items (liveItems),
// since an intent being written may not be in the accounts yet.
func (j *journal) enter() {
	j.mu.Lock()
	j.busy++
	j.mu.Unlock()
}

func (j *journal) leave() {
	j.mu.Lock()
	j.busy--
	j.mu.Unlock()
}

// liveItems returns, for this process's journal item sk written with
// generation gen, the item keys Prepared must read: those of the objects
// whose intent may still be on their item, each in the form naming every
// version of its object. ok is false when sk is not such an item, or when
// the process's accounts do not explain every live entry of it (a journal
// write that landed while its caller was still recording it); Prepared
// then reads every entry the item was written with. After a run whose
// last objects left an intent, a slot of 1,000 announced objects costs
// Prepared the few Queries of those objects instead of 1,000.
func (j *journal) liveItems(sk, gen string) (items [][2]string, ok bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	sl := j.slots[sk]
	if sl == nil || sl.gen != gen || sl.inGroup || j.busy > 0 {
		return nil, false
	}
	objs, ok := j.narrower(sl)
	if !ok {
		return nil, false
	}
	for _, o := range objs {
		items = append(items, [2]string{objectPK(o.Bucket, o.Key), ""})
	}
	return items, ok
}

// narrower returns liveObjects(sl) when they explain every live entry of
// sl and are fewer than the entries it was written with; otherwise sl is
// best read (and kept) as written, exact versions batched (under j.mu).
func (j *journal) narrower(sl *jslot) ([]ObjectID, bool) {
	objs, ok := j.liveObjects(sl)
	if !ok || len(objs) >= sl.entries {
		return nil, false
	}
	return objs, true
}

// liveObjects returns the objects of sl's entries whose intent may still
// be on their item, from this process's accounts (j.live, j.announced),
// and whether they account for every live entry of sl (under j.mu).
func (j *journal) liveObjects(sl *jslot) ([]ObjectID, bool) {
	var objs []ObjectID
	seen := map[ObjectID]bool{}
	counted := 0
	add := func(k string, slots []*jslot, bucketAt int) bool {
		n := 0
		for _, s := range slots {
			if s == sl {
				n++
			}
		}
		if n == 0 {
			return true
		}
		parts, err := splitTuple([]byte(k))
		if err != nil || len(parts) < bucketAt+2 {
			return false
		}
		counted += n
		o := ObjectID{Bucket: parts[bucketAt], Key: parts[bucketAt+1]}
		if !seen[o] {
			seen[o] = true
			objs = append(objs, o)
		}
		return true
	}
	for k, slots := range j.live {
		if !add(k, slots, 0) { // bucket, key, version, run, op
			return nil, false
		}
	}
	for k, slots := range j.announced {
		if !add(k, slots, 1) { // run, bucket, key
			return nil, false
		}
	}
	return objs, counted == sl.live
}

// ownFree reports whether journal item sk is this process's with
// generation gen and every entry of it settled.
func (j *journal) ownFree(sk, gen string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	sl := j.slots[sk]
	return sl != nil && sl.gen == gen && sl.live == 0 && !sl.inGroup
}

func (j *journal) maybeFree(s *jslot) {
	if s.live == 0 && !s.inGroup {
		j.free[s.run] = append(j.free[s.run], s)
	}
}

func (j *journal) flusher() {
	defer j.wg.Done()
	for {
		select {
		case <-j.quit:
			return
		case <-j.kick:
		}
		for {
			j.mu.Lock()
			if len(j.queue) == 0 {
				j.mu.Unlock()
				break
			}
			run := j.queue[0].run
			var group, rest []*jreq
			for _, r := range j.queue {
				if r.run == run && len(group) < journalMaxEntries && !r.gone {
					group = append(group, r)
				} else if !r.gone {
					rest = append(rest, r)
				}
			}
			j.queue = rest
			slot := j.takeSlot(run)
			j.mu.Unlock()
			if len(group) > 0 {
				j.write(slot, group)
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				j.trimFree(ctx, run)
				cancel()
			} else {
				j.mu.Lock()
				slot.inGroup = false
				j.maybeFree(slot)
				j.mu.Unlock()
			}
		}
	}
}

// takeSlot returns a free slot of run, or a new one (under j.mu).
func (j *journal) takeSlot(run string) *jslot {
	if f := j.free[run]; len(f) > 0 {
		s := f[len(f)-1]
		j.free[run] = f[:len(f)-1]
		s.inGroup = true
		return s
	}
	n := j.next
	j.next++
	d := strconv.FormatInt(int64(n%gsiShards), 16)
	sl := &jslot{run: run, pk: preparedShard(run, d), sk: journalPrefix + j.proc + "#" + strconv.Itoa(n), inGroup: true}
	j.slots[sl.sk] = sl
	return sl
}

func (j *journal) write(sl *jslot, group []*jreq) {
	var b []byte
	for _, r := range group {
		b = append(b, r.entry...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	gen, now, err := j.put(ctx, sl, b)
	cancel()
	j.mu.Lock()
	sl.inGroup = false
	if err == nil {
		sl.gen, sl.written, sl.entries = gen, now, len(group)
		for _, r := range group {
			if !r.gone {
				sl.live++
			}
		}
	}
	// A failed write may have landed: the slot keeps what it held (if
	// anything) until Prepared proves it empty; a new slot takes the next
	// group.
	if err == nil {
		j.maybeFree(sl)
	}
	for _, r := range group {
		r.slot, r.err = sl, err
		close(r.done)
	}
	j.mu.Unlock()
}

// put writes journal item sl with entries b and a new generation.
func (j *journal) put(ctx context.Context, sl *jslot, b []byte) (gen string, now time.Time, err error) {
	var g [8]byte
	_, _ = rand.Read(g[:])
	gen = hex.EncodeToString(g[:])
	now = j.d.o.now()
	_, err = j.d.c.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(j.d.table),
		Item: map[string]types.AttributeValue{
			attrPK: s(sl.pk), attrSK: s(sl.sk), attrType: s(typeJournal),
			"e": &types.AttributeValueMemberB{Value: b}, "g": s(gen), "at": s(formatTime(now)),
		},
	})
	if err != nil {
		err = j.d.wrap("journal intents of run "+sl.run, err)
	}
	return gen, now, err
}

// close stops the flusher, deletes the free slots (best effort: a slot
// left behind is deleted by a later Prepared), and rewrites each slot
// still live down to the objects whose intent may still be on their item
// (liveObjects), so that the next process's Prepared reads those instead
// of every object the slot was written with. A rewrite is one PutItem:
// whether it lands or not, the slot names every object that may hold an
// intent (the old entries are a superset of the new).
func (j *journal) close() {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return
	}
	j.closed = true
	j.mu.Unlock()
	close(j.quit)
	j.wg.Wait()
	j.mu.Lock()
	var del []*jslot
	for _, f := range j.free {
		del = append(del, f...)
	}
	j.free = map[string][]*jslot{}
	type rewrite struct {
		sl *jslot
		b  []byte
	}
	var rw []rewrite
	for _, sl := range j.slots {
		if sl.live == 0 || sl.gen == "" || sl.inGroup {
			continue
		}
		objs, ok := j.narrower(sl)
		if !ok {
			continue
		}
		var b []byte
		for _, o := range objs {
			b = append(b, journalEntry(o, true)...)
		}
		rw = append(rw, rewrite{sl, b})
	}
	j.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, sl := range del {
		if sl.gen == "" {
			continue
		}
		_ = j.d.deleteJournal(ctx, sl.pk, sl.sk, sl.gen)
	}
	for _, r := range rw {
		_, _, _ = j.put(ctx, r.sl, r.b)
	}
}

// trimFree deletes free slots of run beyond journalKeepFree.
func (j *journal) trimFree(ctx context.Context, run string) {
	j.mu.Lock()
	f := j.free[run]
	var del []*jslot
	if len(f) > journalKeepFree {
		del = append(del, f[journalKeepFree:]...)
		j.free[run] = f[:journalKeepFree]
	}
	j.mu.Unlock()
	for _, sl := range del {
		j.mu.Lock()
		delete(j.slots, sl.sk)
		j.mu.Unlock()
		_ = j.d.deleteJournal(ctx, sl.pk, sl.sk, sl.gen)
	}
}

// deleteJournal deletes a journal item if its generation is still gen.
func (d *dynamoLedger) deleteJournal(ctx context.Context, pk, sk, gen string) error {
	_, err := d.c.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName: aws.String(d.table), Key: key(pk, sk),
		ConditionExpression:       aws.String("g = :g"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":g": s(gen)},
	})
	if err != nil && !isCondFailed(err) {
		return d.wrap(fmt.Sprintf("delete journal item %s/%s", pk, sk), err)
	}
	return nil
}
