// Package ledger records key lineage: for every object version, which key
// wraps its data key now, and every change rotator made to it.
//
// Terms:
//   - Object record: per object version, its current wrapping key, format,
//     placement and state.
//   - Lineage event: one change to an object: run id, operation, from key,
//     to key, time, ETag and version id before and after. Its identity is
//     (object version, run id, operation): a run records an operation on a
//     version at most once.
//   - Run record: a run's configuration, counts and checkpoint.
//   - Claim: a conditional write that makes one process the only one allowed
//     to record anything on an object version (Prepare, Commit, Abandon,
//     SaveUpload, DeleteUpload all take the owner and check it), so that
//     concurrent processes and resumed runs never change an object twice.
//   - Owner: who holds a claim: one process working for one lease of a run,
//     "run/lease/epoch/holder" (Owner). A later epoch of the same run and
//     lease takes a claim over at once (the earlier process died or lost
//     the lease, and is fenced); other runs and other leases (shards) of
//     the run only once the claim has expired. Claim reports the owner it
//     took over and the object record, so that the caller can settle what
//     that owner left and read the object again if the ledger moved.
//   - Claim lease: how long a claim holds without a renewal. It is compared
//     with the clocks of the workers: keep it far longer than the clock skew
//     between machines; holders renew it while they work.
//   - Run lease: per run and lease name ("all", or one per shard), the
//     process allowed to work for the run (AcquireLease, RenewLease,
//     ReleaseLease). Every acquisition increments its epoch, which never
//     decreases (a release keeps it), so that claim owners of earlier
//     processes are told apart.
//   - Prepared event (intent): a change recorded before its S3 write, so
//     that whoever finds it (a resumed run) can settle it from the object.
//     A prepared event is never replaced by another: the second Prepare of
//     an identity fails with ErrConflict until the first is committed or
//     abandoned (only the object can tell whether its write landed).
//   - Begin: a claim and a prepared event in one call, for an object
//     nobody left anything on (one transaction on the embedded store; two
//     item writes on DynamoDB). Where something was left, it only claims,
//     and the caller settles and prepares the long way.
//   - Commit: recording one change: the event exactly once, then the object
//     record, then releasing the claim. A retried Commit converges. A
//     rewrap costs two writes: Begin and Commit.
//   - Observation: recording an object version seen without a change; of two
//     observations the later (by UpdatedAt) wins.
//   - Wrap key: the canonical id of a wrapping key (KMS key ARN,
//     "pkcs11:token=T;object=L", "aes:<sha256 fingerprint>"). The ledger
//     answers "which objects are still under key X" and "how many objects
//     under each key" from an index, never from a scan.
//   - Fingerprint: the SHA-256 of a wrapped data key, which names the data
//     key an event replaced (WrappedKeyFingerprint).
//   - Upload checkpoint: per run and object version being re-encrypted, the
//     S3 multipart upload it writes and an opaque state (parts done and
//     their ETags, sealed GHASH states, the new data key in wrapped form
//     only), so that a resumed run continues the upload instead of starting
//     over, or aborts it. Saving one needs the claim, as Prepare does;
//     deleting one does not. It is not lineage, and Commit leaves it alone.
//
// Two backends share one interface: DynamoDB for production (many workers)
// and an embedded store (pure Go, no server) as the default. Writes are
// single-item conditional writes, never transactions. No record ever holds a
// plaintext data key.
//
// # Backends
//
// Open("/path/ledger.db") or Open("bolt:///path/ledger.db") opens the embedded
// backend, a bbolt file. It is safe for any number of goroutines in one
// process, and for one process only: bbolt locks the file, so a second
// process waits two seconds and fails. Shards (`--shard i/N`) and concurrent
// jobs must use DynamoDB. Every operation is one bbolt transaction, and
// writes commit in groups: one writer at a time runs transactions back to
// back, each taking every write that queued up while the previous one
// committed, so that one fsync serves every waiting worker and a write
// waits for at most the transaction in progress and its own. A write that
// fails is rolled back with its group, which commits again without it.
// bbolt reads the file through a memory map; the pages a run touches are
// dropped from the process's resident set every second (boltrss.go), so
// the process's RSS does not grow with the file.
//
// Open("dynamodb://TABLE") opens a DynamoDB table (add ?create=true to create
// it, pay per request). The client comes from the default AWS configuration
// chain (AWS_ENDPOINT_URL_DYNAMODB for a local server); unless the chain sets
// a retry mode, requests use the SDK's adaptive retry mode, 10 attempts, with
// no retry quota, so that throttling (ProvisionedThroughputExceeded) slows the
// workers down instead of failing them. Every write is a single-item
// conditional write: no transactions (dynalite has none; they also cost
// twice). BatchWriteItem is not used: every ledger write needs a condition
// (the claim, exactly-once, later-wins), which a batch cannot carry. Reads
// by key are coalesced (dynamoread.go): reads asked for while one is in
// flight go together as one strongly consistent BatchGetItem, each still
// sent after it was asked for.
//
// On DynamoDB (schema 2) a version's intents and lineage events are
// attributes of its object record's item (p#<run>#<op>, e#<run>#<op>), so
// that a rewrap writes that one item twice: Begin, one UpdateItem that
// takes the claim and records the intent on condition that the claim is
// free or the caller's and the identity has no intent and no event; Commit,
// one UpdateItem that records the event and the record, releases the claim
// and drops the intent, on condition that the claim is still the caller's
// (the fence: a worker whose lease was taken over cannot overwrite the new
// holder's record), the event is not recorded (exactly once) and the intent
// is the one the caller completes. Each is all or nothing, so no crash falls
// between an event and its record. A Commit that created a version writes
// the new version's record first (like an observation), then that
// UpdateItem on the old one.
//
// Prepared must find every intent of a run with a strongly consistent read,
// which an attribute of an object's item does not allow (a secondary index
// is eventually consistent). So before an intent is written its item is
// named in the run's intent journal (dynamojournal.go): journal items in
// the run's partitions, written ahead for each group of up to 1,000 objects
// (a listing page) the pipeline lists (Announce), or as group commits (every Begin and Prepare
// waiting at that moment in one PutItem), into slots that are overwritten,
// not deleted, once their intents are settled. Prepared reads the journal
// and the items it names. SCHEMA.md has the details and the requests of
// every operation.
//
// ByKey and CountsByKey read a global secondary index, which is eventually
// consistent: a record written a moment ago may still be listed under its
// previous key. Lineage, Get and the run calls read strongly consistently.
//
// # DynamoDB table
//
// One table, string keys PK (hash) and SK (range). Attribute names are the
// same in both backends. SCHEMA.md has the full description.
//
//	item           PK             SK                                attributes besides PK, SK
//	object record  obj#<h>        ver#<esc(version id)>             t=object, bucket, object_key, version_id,
//	                                                                wk_shard (wrap_key in schema 1), format, placement,
//	                                                                cek_alg, state, etag, run_id, updated_at,
//	                                                                claim_owner, claim_run, claim_group,
//	                                                                claim_epoch, claim_expires
//	               (same item)                                      p#<run>#<op> (intent), e#<run>#<op> (event), lx
//	journal        run#<run>#<d>  jrn#<process>#<slot>              t=journal, e (entries), g (generation), at
//	event (1)      obj#<h>        evt#<esc(version id)>#<run>#<op>  t=event, bucket, object_key, version_id,
//	                                                                run_id, op, method, from_key, to_key, at,
//	                                                                etag_before, etag_after, version_before,
//	                                                                version_after, old_wrapped_key_sha256,
//	                                                                new_wrapped_key_sha256
//	prepared (1)   run#<run>#<d>  prep#<h>#<esc(version id)>#<op>   t=prepared, the event's attributes
//	upload         run#<run>#<d>  upl#<h>#<esc(version id)>         t=upload, bucket, object_key, version_id,
//	                                                                run_id, upload_id, state (B), updated_at
//	run            run            <run id>                          t=run, run_id, config, state, counts,
//	                                                                checkpoint, revision, created_at, updated_at
//	run lease      lease#<run>    <lease name>                      t=lease, run_id, name, holder, host, pid,
//	                                                                epoch, acquired, expires
//	key registry   meta           wrap_keys                         keys (string set)
//	schema         meta           schema                            version (2)
//
// (1): schema 1's items, read and never written (SCHEMA.md: "Schema 1
// tables").
//
// <h> is the first 16 bytes, in hex, of SHA-256(len(bucket) ":"
// bucket len(key) ":" key), lengths in decimal bytes: any characters are safe,
// the length prefixes keep the input unambiguous, and Get checks the clear
// bucket and object_key attributes against a (128-bit) hash collision. esc() writes '%' as %25 and '#' as %23, so '#'
// only separates fields; run ids ([A-Za-z0-9._:-]) and operations
// ([a-z0-9+_-]) hold no '#'. <d> is the first hex digit of <h> for upload
// checkpoints, and the slot number's last hex digit for journal items: a
// run's items spread over 16 partitions of the run, and Prepared and
// Uploads query those 16 (with begins_with on "jrn#" or "upl#"). An item
// that holds only claim attributes (a version claimed and never recorded)
// is no object record and is deleted on release.
//
// GSI by_wrap_key: hash key wk_shard = wrap_key "#" one hex digit (a hash of
// the object version picks one of 16), projecting the object record's
// attributes (not the claim's, so claims cost no index write). Records
// without a wrap key are not indexed. Sixteen shards per key keep a rotation
// of millions of objects onto one new key below the per-partition write
// limit of the index.
//
// # Embedded store
//
// bbolt buckets: objects and claims (keyed by the tuple bucket, key,
// version), events (bucket, key, version, run, op), prepared (run, bucket,
// key, version, op), uploads (run, bucket, key, version), by_wrap_key
// (wrap key reference, bucket, key, version), wrap_key_counts (wrap key ->
// count), dict (strings <-> numbers), runs, meta. A tuple key writes each
// component with 0x00 as 0x00 0xff and ends it with 0x00 0x01, so
// components never run into each other and keys sort like the tuples.
//
// Schema 3 (the files this version creates): the bucket, run id and op
// components of those keys (except uploads') are names, each its dict
// number as a uvarint, and by_wrap_key names a wrap key by its dict number
// the same way; a name the dict lacks is never stored, so a read of it
// finds nothing (boltcodec.go). Schema 2 files keep the names themselves
// in their keys (by_wrap_key: "#" and the number in base 36) and are read
// and written in that form, never migrated (one transaction over a whole
// file would hold all of it in memory).
//
// Records (schemas 2 and 3) are compact (see boltcodec.go): a version
// byte, then their fields in binary, without what the key holds; repeated
// strings (wrap keys, formats, states, methods, run ids) as numbers from
// the dict bucket, ETags and fingerprints as raw bytes. Pages that grow
// with every object are split 90% full (fillPercent in bolt.go), and the
// file grows by an eighth of its size (growBy), not to bbolt's power of
// two or 16 MiB beyond its data. SCHEMA.md has the figures measured.
//
// Schema 1 files (JSON records, by_wrap_key by the wrap key itself) are
// read as they are: a record starting with '{' is JSON, index entries of
// both forms are read and removed. Opening one marks it schema 2 (its old
// records stay, new ones are compact), so that a rotator that knows only
// schema 1 refuses it ("schema version 2 ... use the rotator version that
// wrote it"). A file of a schema newer than 3 is refused the same way.
// Opening creates the buckets a file lacks.
package ledger
