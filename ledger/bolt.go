package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// The embedded backend: one bbolt file, safe for any number of goroutines in
// one process. bbolt locks the file, so a second process (another shard, a
// second `rotator run`) cannot open it: use DynamoDB for those.
//
// Every operation is one bbolt transaction, so a Commit is atomic here (the
// DynamoDB backend gets the same guarantees from its write order), and a
// prepared event and its committed event never exist together. Concurrent
// writers are grouped into shared transactions (bbolt's Batch) so that one
// fsync serves many commits.

// Buckets and their keys; bucket, run and op are names (boltCodec.name:
// dictionary numbers in schema 3, the strings in schema 2), wrap key ref
// a dictionary number (boltCodec.indexRef). Values of schema 1 are JSON,
// of schemas 2 and 3 compact (boltcodec.go).
var (
	bucketObjects = []byte("objects")         // tuple(bucket, key, version) -> object record
	bucketClaims  = []byte("claims")          // tuple(bucket, key, version) -> boltClaim JSON
	bucketEvents  = []byte("events")          // tuple(bucket, key, version, run, op) -> event
	bucketPrep    = []byte("prepared")        // tuple(run, bucket, key, version, op) -> prepared event
	bucketUploads = []byte("uploads")         // tuple(run id, bucket name, key, version) -> uploadRecord JSON
	bucketByKey   = []byte("by_wrap_key")     // tuple(wrap key ref, bucket, key, version) -> empty
	bucketCounts  = []byte("wrap_key_counts") // wrap key -> int64, big endian
	bucketRuns    = []byte("runs")            // run id -> runRecord JSON
	bucketMeta    = []byte("meta")            // "schema" -> "2" or "3" (boltSchema)
)

// boltSchema is the schema of the files this code creates: 3, compact
// records (see boltcodec.go) under keys that name buckets, run ids and
// operations by dictionary id. Files of schema 2 (the same records, keys
// with the names themselves) are read and written in their own form; files
// of schema 1 (JSON records) are read as they are and marked 2 when it
// opens them, so that a rotator that knows only 1 refuses them.
const boltSchema = "3"

type boltClaim struct {
	Owner   string `json:"owner"`
	Run     string `json:"run"`
	Expires int64  `json:"expires_unix_ms"`
}

type boltLedger struct {
	db     *bolt.DB
	o      options
	v3     bool         // the file is of schema 3 (boltCodec.name)
	writes atomic.Int64 // writes asked for (tests count them)
	txs    atomic.Int64 // write transactions committed or tried
	trim   *rssTrimmer  // keeps the file's pages out of the resident set (boltrss.go)

	// Group commit (see write): writes waiting for the next transaction,
	// and whether a committer is running.
	mu      sync.Mutex
	queue   []*boltWrite
	running bool
	// linger is how long the committer waits for more writes before a
	// transaction while others are coming (see commitLoop); lastGroup the
	// number of writes of the last transaction. The committer's own.
	linger    time.Duration
	lastGroup int
}

// boltWrite is one write waiting for its transaction.
type boltWrite struct {
	fn   func(*bolt.Tx) error
	done chan error
}

// maxGroup bounds the writes of one transaction.
const maxGroup = 4096

var _ Ledger = (*boltLedger)(nil)

func openBolt(path string, o options) (*boltLedger, error) {
	if path == "" {
		return nil, errors.New("ledger: open bolt: empty path (hint: bolt:///path/to/ledger.db)")
	}
	// The freelist is not written at every commit (NoFreelistSync): bbolt
	// rebuilds it when it opens the file, and commits write less.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: o.lockWait, FreelistType: bolt.FreelistMapType, NoFreelistSync: true})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("ledger: open %s: locked by another process (hint: the embedded ledger serves one process at a time; use dynamodb://TABLE for shards and concurrent jobs)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("ledger: open %s: %w", path, err)
	}
	db.AllocSize = minGrow // growBy sets it for every later write
	var v3 bool
	err = db.Update(func(tx *bolt.Tx) error {
		// Every open creates the buckets a file lacks: one written before a
		// bucket existed (uploads, prepared) gains it, schema still 1.
		for _, name := range [][]byte{bucketObjects, bucketClaims, bucketEvents, bucketPrep, bucketByKey, bucketCounts, bucketRuns, bucketMeta, bucketUploads, bucketLeases, bucketDict} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch v := string(meta.Get([]byte("schema"))); {
		case v == "" && empty(tx):
			v3 = true
			return meta.Put([]byte("schema"), []byte(boltSchema))
		case v == "", v == "1":
			// Written before compact records: its JSON records are read
			// as they are, and new ones are compact, under keys of
			// schema 2.
			return meta.Put([]byte("schema"), []byte("2"))
		case v == "2":
			return nil
		case v == boltSchema:
			v3 = true
			return nil
		default:
			return fmt.Errorf("schema version %s, this rotator knows 1 to %s (hint: use the rotator version that wrote it, or a newer one)", v, boltSchema)
		}
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("ledger: open %s: %w", path, err)
	}
	if o.pageSize <= 0 {
		o.pageSize = 1000
	}
	return &boltLedger{db: db, o: o, v3: v3, trim: startRSSTrimmer(db, rssTrimInterval)}, nil
}

// empty reports whether a file holds no records nor runs: a new one.
func empty(tx *bolt.Tx) bool {
	for _, name := range [][]byte{bucketObjects, bucketClaims, bucketEvents, bucketPrep, bucketUploads, bucketByKey, bucketRuns} {
		if k, _ := tx.Bucket(name).Cursor().First(); k != nil {
			return false
		}
	}
	return true
}

// codec returns the codec of tx for the file's schema.
func (b *boltLedger) codec(tx *bolt.Tx) boltCodec { return boltCodec{tx: tx, v3: b.v3} }

func (b *boltLedger) Close() error {
	b.trim.Stop()
	terr := b.truncateTail()
	if err := b.db.Close(); err != nil {
		return err
	}
	return terr
}

// truncateTail gives back the room the file grew by and did not fill
// (growBy: up to an eighth of it), so that a file at rest is no larger
// than its pages. It runs in a write transaction: under bbolt's writer
// lock no page past tx.Size() is allocated, and no reader touches one, so
// cutting there loses nothing, even with other writes in the same
// transaction (a commit that allocates past it grows the file again, as
// bbolt checks the file's size before writing). A crash leaves the file
// at its old size or its new one, both whole.
func (b *boltLedger) truncateTail() error {
	err := b.db.Update(func(tx *bolt.Tx) error {
		fi, err := os.Stat(b.db.Path())
		if err != nil {
			return err
		}
		if end := tx.Size(); fi.Size() > end {
			return os.Truncate(b.db.Path(), end)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ledger: close %s: giving back unused room failed, the ledger is intact: %w", b.db.Path(), err)
	}
	return nil
}

// write runs fn in a write transaction, shared with the writes that
// queued up while the previous one committed (group commit): one writer
// at a time runs transactions back to back, each taking every write
// waiting, so that one fsync serves them all and a write waits for the
// transaction in progress, the committer's linger and its own (see
// commitLoop). fn may run more than once (its transaction may
// be rolled back for another write's failure), so it must set its results
// afresh each time. A write whose fn fails is rolled back with its group,
// which is run again without it; its error is returned to it alone.
func (b *boltLedger) write(fn func(*bolt.Tx) error) error {
	b.writes.Add(1)
	w := &boltWrite{fn: fn, done: make(chan error, 1)}
	b.mu.Lock()
	b.queue = append(b.queue, w)
	lead := !b.running
	b.running = true
	b.mu.Unlock()
	if lead {
		// A goroutine of its own: under a steady load the queue never
		// runs dry, and the committer must not be a worker held back
		// from its object by everyone else's writes.
		go b.commitLoop()
	}
	return <-w.done
}

// commitLoop commits the queued writes, group by group, until none is
// left; the next write then starts another.
//
// While writes come from many goroutines (the last transaction served
// more than one), it lingers before each transaction for as long as the
// last one took, up to maxLinger, so that the writes arriving meanwhile
// share it: every transaction costs two fdatasyncs and the pages it
// touches whatever it holds. A write then waits for the transaction in
// progress, the linger and its own transaction (more only behind over
// maxGroup writes, or when writes of its group fail and it is run
// again). Postgres' commit_delay does the same for the same reason. A
// writer alone does not wait, but for one linger after the last group of
// several writes (the committer that follows keeps its length).
func (b *boltLedger) commitLoop() {
	for {
		if b.lastGroup > 1 && b.linger > 0 {
			time.Sleep(b.linger)
		}
		b.mu.Lock()
		group := b.queue
		if len(group) > maxGroup {
			group = group[:maxGroup:maxGroup]
		}
		b.queue = b.queue[len(group):]
		if len(group) == 0 {
			b.queue, b.running = nil, false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		began := time.Now()
		b.commitGroup(group)
		b.linger, b.lastGroup = min(time.Since(began), maxLinger), len(group)
	}
}

// maxLinger bounds the committer's wait for more writes. A transaction
// (two fdatasyncs) took 1.6 ms at the median in a 3,000-object rewrap
// here, 0.5 to 5.9 ms from the 10th to the 90th percentile, with 11
// writes each, so the linger is mostly the last one's length. Measured
// by alternating binaries on the same 3,000 rewraps (bench/README.md,
// 2026-12-06 10:50): lingering the last transaction's length up to 3 ms
// took 5.7% off rotator's CPU at 32 in flight (6 rounds) and 4% off its
// wall time, and did not slow the latency-bound runs (KMS answering in
// 30 ms: 4.14 s against 4.26 s at 32 in flight, 3.35 against 3.45 at
// 512); lingering a third of it up to 3 ms, or all of it up to 1 ms, did
// no better than before.
const maxLinger = 3 * time.Millisecond

// commitGroup commits group in one transaction. A write whose fn fails
// gets its error (the transaction rolled back: nothing of it was
// written), and the others are committed without it.
func (b *boltLedger) commitGroup(group []*boltWrite) {
	for len(group) > 0 {
		failed := -1
		var ferr error
		b.txs.Add(1)
		err := b.db.Update(func(tx *bolt.Tx) error {
			fill(tx)
			growBy(tx)
			for i, w := range group {
				if ferr = safely(w.fn, tx); ferr != nil {
					failed = i
					return ferr
				}
			}
			return nil
		})
		if failed < 0 {
			for _, w := range group {
				w.done <- err
			}
			return
		}
		group[failed].done <- ferr
		group = append(group[:failed:failed], group[failed+1:]...)
	}
}

// fill sets how full bbolt packs the pages it splits, for the buckets
// that grow with every object. Their keys arrive nearly in order (the
// listing's, a few hundred workers apart): split half full, bbolt's
// default, pages of keys written in order stay half empty.
func fill(tx *bolt.Tx) {
	for _, name := range [][]byte{bucketObjects, bucketEvents, bucketByKey} {
		if bk := tx.Bucket(name); bk != nil {
			bk.FillPercent = fillPercent
		}
	}
}

// growBy sets by how much the file grows when tx needs more room: an
// eighth of what the file holds, at least minGrow. bbolt's default
// (AllocSize 16 MiB) keeps the file at the size of its memory map, a power
// of two, while the map is under 16 MiB, and 16 MiB beyond what it needs
// after that: a file up to twice its data, or 16 MiB more. An eighth keeps
// the file within 12.5% of its pages, for one growth (a truncate and an
// fsync) each time the data grows by an eighth: about 70 growths from 32
// KiB to 100 MiB. bbolt reads AllocSize only in the commit of a write
// transaction, under its writer lock, which this transaction holds.
func growBy(tx *bolt.Tx) {
	tx.DB().AllocSize = max(int(tx.Size()/8), minGrow)
}

// minGrow is the least the file grows by (files under it grow to the
// size of their memory map, 32 KiB). 128 KiB cost a file of 1,000 objects
// up to 130 bytes per object: make bench's scale scenario measured 549
// and 413 bytes of file per object at 1,000 and 10,000 objects with it,
// 451 and 390 with 32 KiB.
const minGrow = 32 << 10

// fillPercent is how full a page split in order is left. Keys arrive
// nearly in order in a first rotation (the listing's, a few hundred
// workers apart); a later rotation inserts its events between the
// earlier ones of each object, where a page split full would split
// again at every insert. Measured once the file grows by an eighth
// (growBy): in RewrapFlowBolt (10,000 objects at 32, 128 and 512
// workers; pages in use per object, first rotation and second) 0.7 565
// and 262, 0.8 486 and 227 to 260, 0.85 455 and 224 to 275, 0.9 434 to
// 440 and 211 to 264, 1.0 395 to 402 but 349 to 406; in make bench's
// scale scenario (file per object at 1,000 and 10,000 objects) 0.7 541
// and 456, 0.85 557 and 423, 0.9 549 and 413. (Measured before growBy,
// the file's powers of two hid the difference: 0.7 seemed best.)
var fillPercent = 0.9

// safely runs fn, turning a panic into an error (it would otherwise
// kill the committer with the other writes of its group waiting).
func safely(fn func(*bolt.Tx) error, tx *bolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("ledger: panic in a write: %v", p)
		}
	}()
	return fn(tx)
}

func getJSON(bk *bolt.Bucket, key []byte, v any) (bool, error) {
	data := bk.Get(key)
	if data == nil {
		return false, nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("ledger: corrupt record %q: %w", key, err)
	}
	return true, nil
}

func putJSON(bk *bolt.Bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return bk.Put(key, data)
}

func (b *boltLedger) Claim(ctx context.Context, id ObjectID, owner string, lease time.Duration) (Claimed, error) {
	if err := checkClaimArgs(id, owner, lease); err != nil {
		return Claimed{}, err
	}
	if err := ctx.Err(); err != nil {
		return Claimed{}, err
	}
	now := b.o.now()
	var res error
	var got Claimed
	err := b.write(func(tx *bolt.Tx) error {
		var err error
		got, res, err = claimTx(b.codec(tx), id, owner, lease, now)
		return err
	})
	if err != nil {
		return Claimed{}, fmt.Errorf("ledger: claim %s: %w", id, err)
	}
	return got, res
}

// Renew extends owner's claim on id (Ledger.Renew).
func (b *boltLedger) Renew(ctx context.Context, id ObjectID, owner string, lease time.Duration) error {
	if err := checkClaimArgs(id, owner, lease); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	now := b.o.now()
	var res error
	err := b.write(func(tx *bolt.Tx) error {
		c := b.codec(tx)
		cur, err := getClaim(c, id)
		switch {
		case err != nil:
			return err
		case cur.Owner == "":
			res = fmt.Errorf("%w: renew the claim on %s: it was released", ErrNotClaimed, id)
		case cur.Owner != owner:
			res = &ClaimedError{ID: id, Owner: cur.Owner, Expires: time.UnixMilli(cur.Expires).UTC()}
		default:
			cur.Expires = now.Add(lease).UnixMilli()
			return putJSON(tx.Bucket(bucketClaims), c.idKey(id), cur)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ledger: renew the claim on %s: %w", id, err)
	}
	return res
}

// claimTx is Claim inside tx. res is the refusal (a *ClaimedError), err a
// failure of the transaction.
func claimTx(c boltCodec, id ObjectID, owner string, lease time.Duration, now time.Time) (got Claimed, res, err error) {
	claims := c.tx.Bucket(bucketClaims)
	k := c.idKey(id)
	var cur boltClaim
	found, err := getJSON(claims, k, &cur)
	if err != nil {
		return got, nil, err
	}
	if found && now.UnixMilli() < cur.Expires && !mayTakeOver(cur.Owner, owner) {
		return got, &ClaimedError{ID: id, Owner: cur.Owner, Expires: time.UnixMilli(cur.Expires).UTC()}, nil
	}
	if found && cur.Owner != owner {
		got.Prev = cur.Owner
	}
	if got.Record, _, err = c.getObjectRecord(id); err != nil {
		return got, nil, err
	}
	return got, nil, putJSON(claims, k, boltClaim{Owner: owner, Run: runOf(owner), Expires: now.Add(lease).UnixMilli()})
}

func (b *boltLedger) Begin(ctx context.Context, owner string, lease time.Duration, ev Event) (Claimed, error) {
	ev, err := prepBegin(ev, owner, lease, b.o.now())
	if err != nil {
		return Claimed{}, err
	}
	if err := ctx.Err(); err != nil {
		return Claimed{}, err
	}
	now := b.o.now()
	var res error
	var got Claimed
	err = b.write(func(tx *bolt.Tx) error {
		var err error
		c := b.codec(tx)
		got, res, err = claimTx(c, ev.ID, owner, lease, now)
		if err != nil || res != nil || got.Prev != "" {
			return err
		}
		// Anything of the run on the version (an intent of any operation,
		// or this change committed already): the long way.
		prefix := c.prepIDPrefix(ev.RunID, ev.ID)
		if k, _ := tx.Bucket(bucketPrep).Cursor().Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) {
			return nil
		}
		if tx.Bucket(bucketEvents).Get(c.eventKey(ev.ID, ev.RunID, ev.Op)) != nil {
			return nil
		}
		if err := c.putStoredEvent(bucketPrep, c.prepKey(ev.ID, ev.RunID, ev.Op), ev); err != nil {
			return err
		}
		got.Prepared = true
		return b.o.at(pointPrepared)
	})
	if err != nil {
		return Claimed{}, fmt.Errorf("ledger: begin %s of %s: %w", ev.Op, ev.ID, err)
	}
	return got, res
}

func (b *boltLedger) Release(ctx context.Context, id ObjectID, owner string) error {
	if err := validID(id); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err := b.write(func(tx *bolt.Tx) error { return release(b.codec(tx), id, owner) })
	if err != nil {
		return fmt.Errorf("ledger: release %s: %w", id, err)
	}
	return nil
}

// release drops owner's claim on id, if owner holds it.
func release(c boltCodec, id ObjectID, owner string) error {
	claims := c.tx.Bucket(bucketClaims)
	k := c.idKey(id)
	var cur boltClaim
	found, err := getJSON(claims, k, &cur)
	if err != nil || !found || cur.Owner != owner {
		return err
	}
	return claims.Delete(k)
}

// getEvent reads the event (bucket events) or prepared event (bucket
// prepared) stored at key; false when there is none.
func getEvent(c boltCodec, bucket, key []byte) (Event, bool, error) {
	v := c.tx.Bucket(bucket).Get(key)
	if v == nil {
		return Event{}, false, nil
	}
	var ev Event
	var err error
	if bytes.Equal(bucket, bucketPrep) {
		ev, err = c.preparedAt(key, v)
	} else {
		ev, err = c.eventAt(key, v)
	}
	return ev, err == nil, err
}

// getClaim returns the claim on id, or a zero boltClaim.
func getClaim(c boltCodec, id ObjectID) (boltClaim, error) {
	var cl boltClaim
	_, err := getJSON(c.tx.Bucket(bucketClaims), c.idKey(id), &cl)
	return cl, err
}

func (b *boltLedger) Prepare(ctx context.Context, owner string, ev Event) error {
	ev, err := prepPrepare(ev, b.o.now())
	if err == nil {
		err = checkOwnerRun(owner, ev.RunID)
	}
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var res error
	err = b.write(func(tx *bolt.Tx) error {
		res = nil
		c := b.codec(tx)
		cl, err := getClaim(c, ev.ID)
		if err != nil {
			return err
		}
		committed, found, err := getEvent(c, bucketEvents, c.eventKey(ev.ID, ev.RunID, ev.Op))
		if err != nil {
			return err
		}
		if found {
			if !completes(committed, ev) {
				res = committedOtherwise(ev)
			}
			return nil
		}
		if cl.Owner != owner {
			res = notClaimed("prepare", ev, owner, cl.Owner)
			return nil
		}
		pKey := c.prepKey(ev.ID, ev.RunID, ev.Op)
		prep, found, err := getEvent(c, bucketPrep, pKey)
		if err != nil {
			return err
		}
		if found && !sameEvent(prep, ev) {
			res = preparedElsewhere(ev)
			return nil
		}
		if err := c.putStoredEvent(bucketPrep, pKey, ev); err != nil {
			return err
		}
		return b.o.at(pointPrepared)
	})
	if err != nil {
		return fmt.Errorf("ledger: prepare %s of %s: %w", ev.Op, ev.ID, err)
	}
	return res
}

func (b *boltLedger) Commit(ctx context.Context, owner string, obj Object, ev Event) error {
	obj, ev, err := prepCommit(obj, ev, b.o.now())
	if err == nil {
		err = checkOwnerRun(owner, ev.RunID)
	}
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var res error
	err = b.write(func(tx *bolt.Tx) error {
		res = nil
		c := b.codec(tx)
		evKey, pKey := c.eventKey(ev.ID, ev.RunID, ev.Op), c.prepKey(ev.ID, ev.RunID, ev.Op)
		cl, err := getClaim(c, ev.ID)
		if err != nil {
			return err
		}
		held := cl.Owner == owner
		prep, prepared, err := getEvent(c, bucketPrep, pKey)
		if err != nil {
			return err
		}
		// drop drops the prepared event if it is the one ev completes.
		drop := func() error {
			if !prepared || !completes(ev, prep) {
				return nil
			}
			return tx.Bucket(bucketPrep).Delete(pKey)
		}
		old, found, err := getEvent(c, bucketEvents, evKey)
		if err != nil {
			return err
		}
		// Recorded before, and the run holds the claim again (it
		// re-claimed after resuming): write the record and release, as the
		// DynamoDB backend does.
		switch {
		case found && !sameEvent(old, ev):
			res = conflictingEvent(ev)
			return nil
		case found && !held:
			return drop() // a retry of a complete commit
		case !held:
			res = notClaimed("commit", ev, owner, cl.Owner)
			return nil
		case prepared && !completes(ev, prep):
			res = notPrepared(ev)
			return nil
		case !found:
			if err := c.putStoredEvent(bucketEvents, evKey, ev); err != nil {
				return err
			}
		}
		if err := b.o.at(pointEvent); err != nil {
			return err
		}
		// The claim guards ev.ID; a new version (obj.ID != ev.ID) is
		// guarded like an observation: a later record wins.
		if _, err := putObject(c, obj, obj.ID != ev.ID); err != nil {
			return err
		}
		if err := b.o.at(pointRecord); err != nil {
			return err
		}
		if err := tx.Bucket(bucketClaims).Delete(c.idKey(ev.ID)); err != nil {
			return err
		}
		if err := b.o.at(pointReleased); err != nil {
			return err
		}
		if err := drop(); err != nil {
			return err
		}
		return b.o.at(pointDropped)
	})
	if err != nil {
		return fmt.Errorf("ledger: commit %s of %s: %w", ev.Op, ev.ID, err)
	}
	return res
}

func (b *boltLedger) Abandon(ctx context.Context, owner string, id ObjectID, runID, op string) error {
	if err := checkIdentity(id, runID, op); err != nil {
		return err
	}
	if err := checkOwnerRun(owner, runID); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var res error
	err := b.write(func(tx *bolt.Tx) error {
		res = nil
		c := b.codec(tx)
		k := c.prepKey(id, runID, op)
		if tx.Bucket(bucketPrep).Get(k) == nil {
			return nil
		}
		cl, err := getClaim(c, id)
		if err != nil {
			return err
		}
		if cl.Owner != owner {
			res = notHeld("abandon "+op+" of", id, owner, cl.Owner)
			return nil
		}
		return tx.Bucket(bucketPrep).Delete(k)
	})
	if err != nil {
		return fmt.Errorf("ledger: abandon %s of %s by run %s: %w", op, id, runID, err)
	}
	return res
}

func (b *boltLedger) PreparedOn(ctx context.Context, runID string, id ObjectID) ([]Event, error) {
	if err := checkUploadID(runID, id); err != nil {
		return nil, err
	}
	var out []Event
	err := b.db.View(func(tx *bolt.Tx) error {
		codec := b.codec(tx)
		c := tx.Bucket(bucketPrep).Cursor()
		prefix := codec.prepIDPrefix(runID, id)
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			ev, err := codec.preparedAt(k, v)
			if err != nil {
				return err
			}
			if ev.ID == id {
				out = append(out, ev)
			}
		}
		return nil
	})
	return out, err
}

// prepItem is a prepared event as Prepared reads it.
type prepItem struct {
	ev    Event
	stale bool // see staleMarker
}

func (b *boltLedger) Prepared(ctx context.Context, runID string, fn func(Event) error) error {
	if err := validRunID(runID); err != nil {
		return err
	}
	var prefix []byte
	if err := b.db.View(func(tx *bolt.Tx) error { prefix = b.codec(tx).prepRunPrefix(runID); return nil }); err != nil {
		return err
	}
	return pages(ctx, b, bucketPrep, prefix, func(tx *bolt.Tx, k, v []byte) (prepItem, error) {
		c := b.codec(tx)
		ev, err := c.preparedAt(k, v)
		if err != nil {
			return prepItem{}, err
		}
		// Never the case here (every operation is one transaction), but
		// the rule is the DynamoDB backend's.
		committed, found, err := getEvent(c, bucketEvents, c.eventKey(ev.ID, ev.RunID, ev.Op))
		if err != nil || !found {
			return prepItem{ev: ev}, err
		}
		cl, err := getClaim(c, ev.ID)
		return prepItem{ev: ev, stale: staleMarker(ev, &committed, cl.Run)}, err
	}, func(it prepItem) error {
		if !it.stale {
			return fn(it.ev)
		}
		return b.write(func(tx *bolt.Tx) error {
			c := b.codec(tx)
			k := c.prepKey(it.ev.ID, it.ev.RunID, it.ev.Op)
			cur, found, err := getEvent(c, bucketPrep, k)
			if err != nil || !found || !sameEvent(cur, it.ev) {
				return err
			}
			return tx.Bucket(bucketPrep).Delete(k)
		})
	})
}

func notClaimed(verb string, ev Event, owner, holder string) error {
	return notHeld(verb+" "+ev.Op+" of", ev.ID, owner, holder)
}

// checkOwnerRun checks that owner is a claim owner of run runID.
func checkOwnerRun(owner, runID string) error {
	if err := validOwner(owner); err != nil {
		return err
	}
	if runOf(owner) != runID {
		return fmt.Errorf("%w: owner %q does not work for run %s", ErrInvalid, owner, runID)
	}
	return nil
}

// putObject writes an object record and keeps the key index and counts in
// step. With newerWins it leaves a record with a later UpdatedAt alone and
// reports false.
func putObject(c boltCodec, obj Object, newerWins bool) (bool, error) {
	tx := c.tx
	if err := validWrapKey(obj.WrapKey); err != nil {
		return false, err
	}
	old, found, err := c.getObjectRecord(obj.ID)
	if err != nil {
		return false, err
	}
	if found {
		if newerWins && old.UpdatedAt.After(obj.UpdatedAt) {
			return false, nil
		}
		if newerWins && keepsKey(toObjectRecord(obj), toObjectRecord(old)) {
			obj.WrapKey, obj.WrappedKeySHA256 = old.WrapKey, old.WrappedKeySHA256
		}
		if old.WrapKey != "" {
			if err := unindex(c, old.WrapKey, obj.ID); err != nil {
				return false, err
			}
			if err := addCount(tx, old.WrapKey, -1); err != nil {
				return false, err
			}
		}
	}
	if obj.WrapKey != "" {
		id, err := c.intern(obj.WrapKey)
		if err != nil {
			return false, err
		}
		if err := tx.Bucket(bucketByKey).Put(c.indexKey(id, obj.ID), nil); err != nil {
			return false, err
		}
		if err := addCount(tx, obj.WrapKey, 1); err != nil {
			return false, err
		}
	}
	return true, c.putObjectRecord(c.idKey(obj.ID), obj)
}

// unindex removes id from wrapKey's entries in by_wrap_key: the entry by
// the key's dictionary id, and in a file of schema 2 the entry by the key
// itself that schema 1 wrote.
func unindex(c boltCodec, wrapKey string, id ObjectID) error {
	bk := c.tx.Bucket(bucketByKey)
	if ref, ok := c.lookup(wrapKey); ok {
		if err := bk.Delete(c.indexKey(ref, id)); err != nil {
			return err
		}
	}
	if c.v3 {
		return nil
	}
	return bk.Delete(tupleKey(wrapKey, id.Bucket, id.Key, id.VersionID))
}

func addCount(tx *bolt.Tx, wrapKey string, d int64) error {
	counts := tx.Bucket(bucketCounts)
	var n int64
	if v := counts.Get([]byte(wrapKey)); len(v) == 8 {
		n = int64(binary.BigEndian.Uint64(v))
	}
	return counts.Put([]byte(wrapKey), binary.BigEndian.AppendUint64(nil, uint64(n+d)))
}

func (b *boltLedger) Observe(ctx context.Context, obj Object) error {
	return b.observe(ctx, obj, "")
}

func (b *boltLedger) ObserveRelease(ctx context.Context, owner string, obj Object) error {
	return b.observe(ctx, obj, owner)
}

// observe writes the observation obj and, with owner set, drops owner's
// claim on it in the same transaction.
func (b *boltLedger) observe(ctx context.Context, obj Object, owner string) error {
	obj, err := prepObject(obj, b.o.now())
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err = b.write(func(tx *bolt.Tx) error {
		codec := b.codec(tx)
		if _, err := putObject(codec, obj, true); err != nil || owner == "" {
			return err
		}
		return release(codec, obj.ID, owner)
	})
	if err != nil {
		return fmt.Errorf("ledger: observe %s: %w", obj.ID, err)
	}
	return nil
}

func (b *boltLedger) Get(ctx context.Context, id ObjectID) (Object, error) {
	if err := validID(id); err != nil {
		return Object{}, err
	}
	var obj Object
	var found bool
	err := b.db.View(func(tx *bolt.Tx) error {
		var err error
		obj, found, err = b.codec(tx).getObjectRecord(id)
		return err
	})
	if err != nil {
		return Object{}, fmt.Errorf("ledger: get %s: %w", id, err)
	}
	if !found {
		return Object{}, objectNotFound(id)
	}
	return obj, nil
}

func (b *boltLedger) Lineage(ctx context.Context, id ObjectID) ([]Event, error) {
	if err := validID(id); err != nil {
		return nil, err
	}
	var all []Event
	err := b.db.View(func(tx *bolt.Tx) error {
		codec := b.codec(tx)
		prefix := codec.lineagePrefix(id)
		c := tx.Bucket(bucketEvents).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			e, err := codec.eventAt(k, v)
			if err != nil {
				return err
			}
			all = append(all, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: lineage of %s: %w", id, err)
	}
	return lineage(id.VersionID, all), nil
}

// pages walks the keys of a bucket under prefix, pageSize at a time, each
// page in its own read transaction: visit runs inside the transaction, fn
// outside it, so that fn may write to the ledger.
func pages[T any](ctx context.Context, b *boltLedger, bucket, prefix []byte, visit func(tx *bolt.Tx, k, v []byte) (T, error), fn func(T) error) error {
	start := prefix
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var page []T
		var last []byte
		err := b.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucket).Cursor()
			for k, v := c.Seek(start); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
				if len(page) == b.o.pageSize {
					break
				}
				item, err := visit(tx, k, v)
				if err != nil {
					return err
				}
				page = append(page, item)
				last = append(last[:0], k...)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, item := range page {
			if err := fn(item); err != nil {
				return err
			}
		}
		if len(page) < b.o.pageSize {
			return nil
		}
		start = append(last, 0) // the smallest key after last
	}
}

func (b *boltLedger) ByKey(ctx context.Context, wrapKey string, fn func(Object) error) error {
	if wrapKey == "" {
		return fmt.Errorf("%w: by key: empty wrap key", ErrInvalid)
	}
	// Entries by the key's dictionary id, then in a file of schema 2 any
	// by the key itself (schema 1's).
	var prefixes [][]byte
	if err := b.db.View(func(tx *bolt.Tx) error {
		c := b.codec(tx)
		if ref, known := c.lookup(wrapKey); known {
			prefixes = append(prefixes, c.indexPrefix(ref))
		}
		if !c.v3 {
			prefixes = append(prefixes, tupleKey(wrapKey))
		}
		return nil
	}); err != nil {
		return err
	}
	for _, prefix := range prefixes {
		err := pages(ctx, b, bucketByKey, prefix, func(tx *bolt.Tx, k, _ []byte) (Object, error) {
			c := b.codec(tx)
			id, err := c.indexedID(k[len(prefix):])
			if err != nil {
				return Object{}, fmt.Errorf("ledger: by key %s: %w", wrapKey, err)
			}
			obj, found, err := c.getObjectRecord(id)
			if err != nil {
				return Object{}, err
			}
			if !found {
				return Object{}, fmt.Errorf("ledger: by key %s: index entry without record: %q", wrapKey, k)
			}
			return obj, nil
		}, fn)
		if err != nil {
			return err
		}
	}
	return nil
}

func (b *boltLedger) CountsByKey(ctx context.Context) (map[string]int64, error) {
	counts := map[string]int64{}
	err := b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCounts).ForEach(func(k, v []byte) error {
			if len(v) != 8 {
				return fmt.Errorf("ledger: corrupt count for %q", k)
			}
			counts[string(k)] = int64(binary.BigEndian.Uint64(v))
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return counts, nil
}

func (b *boltLedger) Events(ctx context.Context, fn func(Event) error) error {
	return pages(ctx, b, bucketEvents, nil, func(tx *bolt.Tx, k, v []byte) (Event, error) {
		return b.codec(tx).eventAt(k, v)
	}, fn)
}

func (b *boltLedger) CreateRun(ctx context.Context, r *Run) error {
	if err := prepRun(r); err != nil {
		return err
	}
	now := b.o.now().UTC()
	nr := *r
	nr.Revision = 1
	if nr.CreatedAt.IsZero() {
		nr.CreatedAt = now
	}
	nr.UpdatedAt = now
	var res error
	err := b.write(func(tx *bolt.Tx) error {
		res = nil
		runs := tx.Bucket(bucketRuns)
		if runs.Get([]byte(r.ID)) != nil {
			res = fmt.Errorf("%w: %s", ErrRunExists, r.ID)
			return nil
		}
		return putJSON(runs, []byte(r.ID), toRunRecord(nr))
	})
	if err != nil {
		return fmt.Errorf("ledger: create run %s: %w", r.ID, err)
	}
	if res == nil {
		*r = nr
		r.CreatedAt, r.UpdatedAt = r.CreatedAt.UTC(), r.UpdatedAt.UTC()
	}
	return res
}

func (b *boltLedger) GetRun(ctx context.Context, id string) (Run, error) {
	var rec runRecord
	var found bool
	err := b.db.View(func(tx *bolt.Tx) error {
		var err error
		found, err = getJSON(tx.Bucket(bucketRuns), []byte(id), &rec)
		return err
	})
	if err != nil {
		return Run{}, fmt.Errorf("ledger: get run %s: %w", id, err)
	}
	if !found {
		return Run{}, fmt.Errorf("%w: run %s", ErrNotFound, id)
	}
	return rec.run()
}

func (b *boltLedger) UpdateRun(ctx context.Context, r *Run) error {
	if err := prepRun(r); err != nil {
		return err
	}
	now := b.o.now().UTC()
	var res error
	var next Run
	err := b.write(func(tx *bolt.Tx) error {
		res = nil
		runs := tx.Bucket(bucketRuns)
		var cur runRecord
		found, err := getJSON(runs, []byte(r.ID), &cur)
		if err != nil {
			return err
		}
		if !found {
			res = fmt.Errorf("%w: run %s", ErrNotFound, r.ID)
			return nil
		}
		if cur.Revision != r.Revision {
			res = runConflict(r, cur.Revision)
			return nil
		}
		next = *r
		next.Revision = r.Revision + 1
		next.CreatedAt, err = parseTime(cur.CreatedAt)
		if err != nil {
			return err
		}
		next.UpdatedAt = now
		return putJSON(runs, []byte(r.ID), toRunRecord(next))
	})
	if err != nil {
		return fmt.Errorf("ledger: update run %s: %w", r.ID, err)
	}
	if res == nil {
		*r = next
	}
	return res
}

func runConflict(r *Run, stored int64) error {
	return fmt.Errorf("%w: run %s: updated by someone else (revision %d, expected %d; hint: GetRun and apply the change again)", ErrConflict, r.ID, stored, r.Revision)
}

func (b *boltLedger) ListRuns(ctx context.Context) ([]Run, error) {
	var runs []Run
	err := b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRuns).ForEach(func(_, v []byte) error {
			var rec runRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return err
			}
			r, err := rec.run()
			if err != nil {
				return err
			}
			runs = append(runs, r)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: list runs: %w", err)
	}
	sortRuns(runs)
	return runs, nil
}

func sortRuns(runs []Run) {
	sort.Slice(runs, func(i, j int) bool {
		if !runs[i].CreatedAt.Equal(runs[j].CreatedAt) {
			return runs[i].CreatedAt.Before(runs[j].CreatedAt)
		}
		return runs[i].ID < runs[j].ID
	})
}

// checkIdentity validates the identity of an event (Abandon).
func checkIdentity(id ObjectID, runID, op string) error {
	if err := validID(id); err != nil {
		return err
	}
	if err := validRunID(runID); err != nil {
		return err
	}
	return validOp(op)
}

func checkClaimArgs(id ObjectID, owner string, lease time.Duration) error {
	if err := validID(id); err != nil {
		return err
	}
	if err := validOwner(owner); err != nil {
		return err
	}
	if lease <= 0 {
		return fmt.Errorf("%w: claim %s: lease must be positive", ErrInvalid, id)
	}
	return nil
}
