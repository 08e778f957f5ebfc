package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/escrow"
	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/rewrap"
)

// KeyUnknown is the plan's name for KMS-wrapped keys whose KMS key is not
// known yet: the official clients store no key id beside a KMS ciphertext
// blob, so only KMS can tell (the run asks it with ReEncrypt, which also
// rewraps), unless the ledger remembers the object from an earlier run.
const KeyUnknown = "kms:(unknown until the run asks KMS)"

// Prices are the prices plan estimates with, in USD: per request, and per
// GB for storage and replication. The defaults are AWS's public list
// prices in us-east-1 (S3 Standard requests and storage, KMS requests,
// DynamoDB on-demand request units, data transfer to another region);
// --price overrides them.
type Prices struct {
	S3Put    float64 `json:"s3_put"`    // PUT, COPY, POST, LIST
	S3Get    float64 `json:"s3_get"`    // GET, HEAD and others
	KMS      float64 `json:"kms"`       // any KMS request
	DDBWrite float64 `json:"ddb_write"` // one write request unit
	DDBRead  float64 `json:"ddb_read"`  // one read request unit
	// StorageGBMonth is the storage price of one GB (2^30 bytes) for a
	// month: what a noncurrent version costs while it is kept (S3
	// Standard's first 50 TB).
	StorageGBMonth float64 `json:"storage_gb_month"`
	// ReplicationGB is the price of one GB replication ships: data
	// transfer to another region (0 for replication within a region; S3
	// Replication Time Control adds $0.015). Each replicated write is
	// also a PUT request at the destination (S3Put).
	ReplicationGB float64 `json:"replication_gb"`
	// CloudHSM is billed per instance hour, not per request.
}

// DefaultPrices are the us-east-1 list prices.
var DefaultPrices = Prices{
	S3Put:          0.005 / 1000,
	S3Get:          0.0004 / 1000,
	KMS:            0.03 / 10000,
	DDBWrite:       0.625 / 1e6,
	DDBRead:        0.125 / 1e6,
	StorageGBMonth: 0.023,
	ReplicationGB:  0.02,
}

// Set parses one override, NAME=USD (s3-put, s3-get, kms, ddb-write,
// ddb-read: per request; storage-gb-month: per GB-month; replication-gb:
// per GB replicated).
func (p *Prices) Set(s string) error {
	name, val, ok := strings.Cut(s, "=")
	var v float64
	if _, err := fmt.Sscanf(val, "%g", &v); !ok || err != nil || v < 0 {
		return fmt.Errorf("--price %q: want NAME=USD, e.g. kms=0.000003 or storage-gb-month=0.0125", s)
	}
	switch name {
	case "s3-put":
		p.S3Put = v
	case "s3-get":
		p.S3Get = v
	case "kms":
		p.KMS = v
	case "ddb-write":
		p.DDBWrite = v
	case "ddb-read":
		p.DDBRead = v
	case "storage-gb-month":
		p.StorageGBMonth = v
	case "replication-gb":
		p.ReplicationGB = v
	default:
		return fmt.Errorf("--price %q: unknown name %q (s3-put, s3-get, kms, ddb-write, ddb-read, storage-gb-month, replication-gb)", s, name)
	}
	return nil
}

// Plan is what a run would do: counts from reading every object's envelope
// (HEAD and instruction files; no key backend is called), the requests the
// run would send per service, their cost and the run's duration at the
// configured budgets.
type Plan struct {
	Objects int64 `json:"objects"`
	Bytes   int64 `json:"bytes"`
	// ByKey counts encrypted objects by the key that wraps them now.
	ByKey map[string]int64 `json:"by_key"`
	// ByFormat counts by envelope format and placement ("V2 metadata").
	ByFormat map[string]int64 `json:"by_format"`
	// ByAction counts by action: "rewrap", "reencrypt", "skip: CODE",
	// "failed: CODE".
	ByAction map[string]int64 `json:"by_action"`
	// UnpairedSuffix counts the keys that end with the instruction suffix
	// although no object KEY exists (inventory.Item.UnpairedSuffix): they
	// are classified as objects, and counted in the maps above too.
	UnpairedSuffix int64 `json:"unpaired_suffix_keys,omitempty"`
	// ACLChecked: the ACLs of what the run would rewrite were read
	// (PlanOptions.ACL); ACLNotChecked says why not when they were asked
	// for and could not be. ACLGrants counts the objects whose ACL grants
	// more than the owner's FULL_CONTROL: a run with --check-acl leaves
	// them untouched (CodeACLWouldBeDropped), one without drops the grants.
	ACLChecked    bool   `json:"acl_checked"`
	ACLNotChecked string `json:"acl_not_checked,omitempty"`
	ACLGrants     int64  `json:"objects_with_acl_grants"`
	// ByEscrow (PlanOptions.CheckEscrow) counts the encrypted current
	// versions by the state of their escrow file: EscrowNone and
	// EscrowMismatch have no valid escrow; EscrowPresent ones have a file
	// that describes their content, whose data key only verify --escrow
	// proves (a plan calls no key backend).
	ByEscrow map[string]int64 `json:"by_escrow,omitempty"`
	// EscrowFiles counts the escrow files a run with --escrow writes: one
	// before each rewrap (and for objects already under the target), one
	// after each re-encryption from the object's new data key.
	EscrowFiles int64 `json:"escrow_files,omitempty"`
	// ReencryptBytes is the content a re-encryption run reads and writes
	// again (each byte once each way).
	ReencryptBytes int64 `json:"reencrypt_bytes,omitempty"`
	// Requests are the run's expected requests by "service:Operation".
	Requests map[string]int64 `json:"requests"`
	// WriteCosts are the bytes the run's writes store and ship beyond
	// their requests (versioning, replication, lifecycle); nil when the
	// buckets' configuration was not read (PlanOptions.Buckets).
	WriteCosts *WriteCosts `json:"write_costs,omitempty"`
	// Placement compares rotations with the envelopes in metadata and in
	// instruction files (--placement instruction-file); nil when no
	// object has its envelope in its metadata.
	Placement *PlacementCosts `json:"placement,omitempty"`
	// CostUSD is the cost of Requests by service ("s3", "kms",
	// "dynamodb"), of WriteCosts ("replication"; "noncurrent_storage"
	// until lifecycle rules expire the noncurrent copies, and
	// "noncurrent_storage_monthly" for the copies no rule expires, per
	// month), and "total": the requests, replication and
	// noncurrent_storage (not the monthly part).
	CostUSD map[string]float64 `json:"cost_usd"`
	// Estimated duration, the bound that sets it, and the measured HEAD
	// latency it builds on.
	Duration    time.Duration `json:"duration_ns"`
	Bound       string        `json:"bound"`
	HeadLatency time.Duration `json:"head_latency_ns"`
}

// PlanOptions are the budgets a plan estimates against.
type PlanOptions struct {
	Concurrency        int
	KMSRPS, S3RPS      float64
	Prices             Prices
	DynamoDBLedger     bool
	MultipartThreshold int64
	// KMSLatency is the assumed latency of one KMS request (default 15ms).
	KMSLatency time.Duration
	// ACL, when set (--check-acl), reads the ACL of what the run would
	// rewrite, and counts the objects whose grants a rewrite would drop.
	ACL ACLReader
	// Buckets, when set, reads each bucket's versioning, replication and
	// lifecycle configuration (Plan.WriteCosts).
	Buckets BucketConfigReader
	// CheckEscrow reads each encrypted current version's escrow file (named
	// by the core's EscrowSuffix) and counts them in Plan.ByEscrow.
	CheckEscrow bool
}

// Escrow states counted in Plan.ByEscrow.
const (
	EscrowNone     = "no escrow file"
	EscrowMismatch = "escrow file of other content (stale or someone else's)"
	EscrowPresent  = "escrow file present (verify --escrow proves its key)"
)

// escrowState reads cl's escrow file and says which Escrow* state it is
// in; "" when it could not be read.
func escrowState(ctx context.Context, c *Core, cl *Classification) string {
	_, body, err := c.S3.ReadInstruction(ctx, cl.Obj.Bucket, escrow.Key(cl.Obj.Key, c.escrowSuffix()), "")
	switch {
	case errors.Is(err, commit.ErrGone):
		return EscrowNone
	case err != nil:
		return ""
	}
	if _, err := escrow.Parse(cl.Env, body); err != nil {
		return EscrowMismatch
	}
	return EscrowPresent
}

// MakePlan classifies every item of src with c (which must be a DryRun
// core without ledger writes) and estimates the run.
func MakePlan(ctx context.Context, c *Core, src inventory.Source, o PlanOptions) (*Plan, error) {
	p := &Plan{ByKey: map[string]int64{}, ByFormat: map[string]int64{}, ByAction: map[string]int64{},
		Requests: map[string]int64{}, CostUSD: map[string]float64{}}
	workers := o.Concurrency
	if workers <= 0 {
		workers = DefaultWorkers
	}
	var mu sync.Mutex
	var headNanos, heads atomic.Int64
	var noACLs atomic.Bool
	p.ACLChecked = o.ACL != nil
	bcs := &bucketConfigs{r: o.Buckets, m: map[string]*bucketEntry{}}
	if o.Buckets != nil {
		p.WriteCosts = &WriteCosts{}
	}
	g, gctx := errgroup.WithContext(ctx)
	items := make(chan inventory.Item, workers)
	g.Go(func() error { return inventory.Send(gctx, src, items) })
	for w := 0; w < workers; w++ {
		g.Go(func() error {
			for it := range items {
				start := time.Now()
				cl, out, done := c.Classify(gctx, it, Outcome{Bucket: it.Bucket, Key: it.Key, VersionID: it.VersionID})
				headNanos.Add(int64(time.Since(start)))
				heads.Add(1)
				if err := gctx.Err(); err != nil {
					return err
				}
				var est string
				if o.CheckEscrow && !done && !cl.Obj.Noncurrent {
					if est = escrowState(gctx, c, cl); est == "" {
						est = "escrow file unreadable"
					}
				}
				var acl aclResult
				if o.ACL != nil && !done && !noACLs.Load() {
					acl = checkPlanACL(gctx, c, o.ACL, cl)
					if errors.Is(acl.err, commit.ErrNoACLs) {
						noACLs.Store(true)
					}
				}
				bc, err := bcs.get(gctx, it.Bucket)
				if err != nil {
					return err
				}
				mu.Lock()
				if acl.err != nil && errors.Is(acl.err, commit.ErrNoACLs) {
					p.ACLChecked, p.ACLNotChecked = false, "the S3 server does not implement object ACLs"
				}
				p.Requests["s3:GetObjectAcl"] += acl.reads
				p.add(c, it, cl, out, done, o, acl.err, bc, est)
				if est != "" {
					if p.ByEscrow == nil {
						p.ByEscrow = map[string]int64{}
					}
					p.ByEscrow[est]++
				}
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if n := heads.Load(); n > 0 {
		p.HeadLatency = time.Duration(headNanos.Load() / n)
	}
	p.Requests["s3:ListObjects"] = (p.Objects + 999) / 1000
	if p.WriteCosts != nil {
		p.WriteCosts.Buckets = bcs.all()
	}
	p.estimate(o)
	return p, nil
}

// aclResult is what --check-acl found about one object: how many ACLs were
// read, and the error (commit.ErrACLWouldBeDropped for grants) that would
// leave it untouched.
type aclResult struct {
	reads int64
	err   error
}

// checkPlanACL reads the ACLs of what a run would rewrite for cl, as the
// run's --check-acl does (aclCommitter, aclWriter).
func checkPlanACL(ctx context.Context, c *Core, acl ACLReader, cl *Classification) aclResult {
	action, _, _ := c.Decide(cl)
	if action != ActionRewrap && action != ActionReencrypt || cl.Obj.Noncurrent {
		return aclResult{}
	}
	var r aclResult
	for _, obj := range aclTargets(cl, action) {
		r.reads++
		if r.err = checkGrants(ctx, acl, obj); r.err != nil {
			return r
		}
	}
	return r
}

// add counts one classified item and the requests a run would spend on it.
// aclErr is what --check-acl found (nil: nothing against a rewrite); bc
// is the item's bucket's configuration (nil: not read); est is the state
// of its escrow file (Escrow*; "" when not read: --check-escrow).
func (p *Plan) add(c *Core, it inventory.Item, cl *Classification, out Outcome, done bool, o PlanOptions, aclErr error, bc *BucketConfig, est string) {
	p.Objects++
	if it.UnpairedSuffix {
		p.UnpairedSuffix++
		out = c.NoteUnpairedSuffix(it, out)
	}
	p.Bytes += it.Size
	if it.DeleteMarker {
		p.ByAction["skip: "+CodeDeleteMarker]++
		return
	}
	// ledgerReqs counts one object's ledger requests (see ledgerCost); a
	// zero cost (a classification that asks no ledger) adds no entry.
	ledgerReqs := func(lc ledgerCost) {
		if lc == (ledgerCost{}) {
			return
		}
		p.Requests["ledger:embedded-write"] += lc.embedded
		if o.DynamoDBLedger {
			p.Requests["dynamodb:write"] += lc.writes
			p.Requests["dynamodb:read"] += lc.reads
		}
	}
	ddbWrite := func(n int64) { ledgerReqs(ledgerCost{writes: n, embedded: n}) }
	if done {
		// A classification that decided the outcome (Classify's done):
		// its HEAD, the GET of an instruction file it sent (one missing,
		// unreadable, or holding a bad envelope), the ledger read that
		// failed.
		p.Requests["s3:HeadObject"]++
		if out.instrRead {
			p.Requests["s3:GetObject"]++
		}
		if out.ledgerRead {
			ledgerReqs(costIdentify)
		}
		p.ByAction[string(out.Status)+": "+out.ErrorCode]++
		return
	}
	// Core.identify asks the ledger for every key no keyring recognises
	// offline: unknown KMS keys, and those the ledger knows (a plan finds
	// these with the same read).
	ledgerReqs(p.addClassification(cl, cl.KeySource != "offline"))
	key := cl.Key
	if key == "" {
		key = KeyUnknown
	}
	p.ByKey[key]++
	p.ByFormat[cl.Env.Format.String()+" "+cl.Placement()]++
	switch {
	case aclErr == nil, errors.Is(aclErr, commit.ErrNoACLs):
	case errors.Is(aclErr, commit.ErrACLWouldBeDropped):
		p.ACLGrants++
		p.ByAction[string(StatusFailed)+": "+CodeACLWouldBeDropped]++
		return
	default:
		out = out.fromS3Error("read the ACL", aclErr)
		p.ByAction[string(out.Status)+": "+out.ErrorCode]++
		return
	}
	threshold := o.MultipartThreshold
	if threshold <= 0 {
		threshold = 5 << 30
	}
	action, code, _ := c.Decide(cl)
	if action != ActionDeleteVersion {
		p.comparePlacement(cl, bc, o.Prices, threshold)
	}
	if c.escrowsFirst(cl, action, code) && escrowable(cl) {
		// run --escrow (Core.act): the escrow file before the rewrap, from
		// the object's wrapping now.
		fromKMS, fromHSM := wrappedBy(cl)
		ledgerReqs(p.addEscrow(c, cl, bc, fromKMS, fromHSM, est == EscrowPresent))
	}
	switch action {
	case ActionSkip:
		p.ByAction["skip: "+code]++
		if code != CodeAlreadyTarget || cl.KeySource != "ledger" {
			ddbWrite(1) // an observation; none when the ledger knew it already
		}
		return
	case ActionDeleteVersion:
		// Older versions under a --from key: kept as they are, or
		// deleted with --delete-old-versions.
		if c.Versions != nil {
			// Core.olderVersion classifies the key's current version;
			// met while that version is re-encrypted (the listing gives
			// a key's versions together), the older one is left to the
			// current's worker, whose sweep (Core.sweepVersions)
			// classifies it again and deletes it, unless its envelope
			// is in an instruction file (which version of that file
			// describes it, S3 cannot tell: kept). A run that meets it
			// after the sweep finds it gone and reads less.
			for range 2 {
				ledgerReqs(p.addClassification(cl, cl.KeySource != "offline"))
			}
			if cl.Instr != nil {
				p.ByAction["pending: "+CodeInstructionVersion]++
				return
			}
			p.ByAction["delete older version"]++
			if cl.Key == "" && cl.Wrapped.Alg.IsKMS() {
				p.Requests["kms:Decrypt"]++ // Core.keyByUnwrap, with the first --from key
			}
			ledgerReqs(p.addDeleteVersion())
		} else {
			p.ByAction["older version under a --from key (kept; --delete-old-versions deletes it)"]++
			ddbWrite(1)
		}
		return
	case ActionReencrypt:
		switch {
		case c.Mode != ModeReencrypt || c.Reencrypter == nil:
			p.ByAction["reencrypt (pending: needs --mode reencrypt)"]++
			ddbWrite(1)
		default:
			p.ByAction["reencrypt"]++
			ledgerReqs(p.addReencrypt(c, cl))
			if makesVersion(cl, bc) {
				// The new content is a new version: its Commit writes
				// the new version's record first. With
				// --delete-old-versions the sweep lists the key's
				// versions and deletes the one just replaced.
				ledgerReqs(costNewVersion)
				if c.Versions != nil && !cl.Obj.Noncurrent {
					p.Requests["s3:ListObjectVersions"]++
					ledgerReqs(p.addDeleteVersion())
				}
			}
			p.addWrite(costOfWrite(bc, cl.Obj.Key, cl.Obj.VersionID, cl.Obj.Size, cl.Obj.Size))
			if cl.Instr != nil {
				p.addWrite(costOfWrite(bc, cl.Instr.Key, cl.Instr.VersionID, cl.Instr.Size, cl.Instr.Size))
			}
			if c.escrowing() && !cl.Obj.Noncurrent {
				// Core.escrowAfter: the object classified again (the
				// ledger asked for its key unless --to recognises its
				// wrapping offline: a local AES or RSA key), then its
				// escrow file from the new data key, wrapped under --to.
				// An escrow file of the old content still matches a V3
				// object's new content (same format and content
				// algorithm; a V2 IV is new), so the run checks its
				// lineage.
				toKMS, toHSM := c.To.Kind() == rewrap.KindKMS, c.To.Kind() == rewrap.KindPKCS11
				ledgerReqs(p.addClassification(cl, toKMS || toHSM))
				ledgerReqs(p.addEscrow(c, cl, bc, toKMS, toHSM, est == EscrowPresent && cl.Env.Format == envelope.V3))
			}
		}
		return
	}
	if c.Move != nil && cl.Instr == nil && cl.Env.Placement == envelope.PlacementMetadata {
		// --placement instruction-file: the copy also drops the envelope,
		// which a new instruction file holds.
		p.ByAction["rewrap + move to instruction file"]++
		if _, body, err := cl.Env.InstructionFile(); err == nil {
			p.Requests["s3:PutObject"]++
			p.addWrite(costOfWrite(bc, instructionKey(cl.Obj.Key, c.suffix()), "", int64(len(body)), 0))
		}
	} else {
		p.ByAction["rewrap"]++
	}
	fromKMS, fromHSM := wrappedBy(cl)
	p.addWrapping(fromKMS, fromHSM, c.To)
	switch {
	case cl.Instr != nil:
		p.addWrite(costOfWrite(bc, cl.Instr.Key, cl.Instr.VersionID, cl.Instr.Size, cl.Instr.Size))
	default:
		p.addWrite(costOfWrite(bc, cl.Obj.Key, cl.Obj.VersionID, cl.Obj.Size, cl.Obj.Size))
	}
	switch {
	case cl.Instr != nil:
		p.Requests["s3:GetObjectTagging"]++
		p.Requests["s3:PutObject"]++
	case cl.Obj.Size > threshold:
		parts := (cl.Obj.Size + (128 << 20) - 1) / (128 << 20)
		p.Requests["s3:CreateMultipartUpload"]++
		p.Requests["s3:UploadPartCopy"] += parts
		p.Requests["s3:CompleteMultipartUpload"]++
		p.Requests["s3:GetObjectTagging"]++
	default:
		p.Requests["s3:CopyObject"]++
	}
	ledgerReqs(costRewrap)
	if cl.Instr == nil && makesVersion(cl, bc) {
		// The self-copy makes a new version on AWS (versitygw keeps
		// the version): its Commit writes the new version's record.
		ledgerReqs(costNewVersion)
	}
}

// makesVersion says whether a write of cl's object makes a new version:
// by its bucket's versioning when plan read it (PlanOptions.Buckets),
// else by its version id (a bucket that never had versioning gives
// none, or "null").
func makesVersion(cl *Classification, bc *BucketConfig) bool {
	if bc != nil && bc.Versioning != VersioningUnknown {
		return bc.Versioning == VersioningEnabled
	}
	return cl.Obj.VersionID != "" && cl.Obj.VersionID != "null"
}

// addClassification counts a classification of cl's object that reads
// its envelope (Core.Classify, not done): the HEAD, and the GET of its
// instruction file when its envelope is in one. It returns its ledger
// requests: Core.identify's read of the object's record when askLedger
// (no keyring recognises the wrapping offline), none otherwise. The
// classifications a run repeats (Core.olderVersion's and the sweep's for
// an older version, Core.escrowAfter's) are counted from the first one's
// cl, whose envelope is in the same place.
func (p *Plan) addClassification(cl *Classification, askLedger bool) ledgerCost {
	p.Requests["s3:HeadObject"]++
	if cl.Instr != nil {
		p.Requests["s3:GetObject"]++
	}
	if askLedger {
		return costIdentify
	}
	return ledgerCost{}
}

// addDeleteVersion counts the deletion of an older version
// (Core.deleteOlder): its Object Lock state read, the version read again,
// deleted, and the change through the protocol; it returns the change's
// ledger requests.
func (p *Plan) addDeleteVersion() ledgerCost {
	p.Requests["s3:GetObjectRetention"]++
	p.Requests["s3:GetObjectLegalHold"]++
	p.Requests["s3:HeadObject"]++
	p.Requests["s3:DeleteObject"]++
	return costChange
}

// ledgerCost is what one object costs the ledger: DynamoDB write and read
// requests (each item well under 1 KB: one request unit), and transactions
// of the embedded store (each one shared with concurrent workers: one
// fsync serves many).
type ledgerCost struct{ writes, reads, embedded int64 }

var (
	// Core.identify's read of the object's record, for a key no keyring
	// recognises offline (an item read: a GetItem, or one item of a
	// BatchGetItem when reads overlap).
	costIdentify = ledgerCost{reads: 1}
	// A rewrap: Begin (the claim and the intent, one write of the
	// object's item on DynamoDB too), then Commit (the event, the record,
	// the claim released and the intent dropped: that item again). On
	// DynamoDB a journal write naming the item comes on top, shared by
	// every object that begins while the previous one is in flight (a
	// group commit), so not counted here. See ledger/SCHEMA.md.
	costRewrap = ledgerCost{writes: 2, reads: 0, embedded: 2}
	// A re-encryption or a version deletion: Claim (whose answer says
	// that the object holds no intent: no PreparedOn read, on DynamoDB),
	// Prepare (a read, a write), Commit (no Release: the Commit releases
	// the claim). Checkpoints of re-encryptions come on top
	// (costCheckpoint).
	costChange = ledgerCost{writes: 3, reads: 1, embedded: 3}
	// A change that made a new version of the object (a versioned
	// bucket): its Commit writes the new version's record first.
	costNewVersion = ledgerCost{writes: 1}
	// An escrow: a change whose Commit keeps the object record the
	// ledger holds, read first (Core.escrowRecord); an escrow file that
	// matches the object's content already costs a Query of the object's
	// lineage on top (Core.escrowedByRun).
	costEscrow = costChange.plus(costIdentify, 1)
	// One upload checkpoint saved (SaveUpload: the claim read, the
	// checkpoint put); the last one deleted (DeleteUpload) costs the same
	// write and two reads.
	costCheckpoint = ledgerCost{writes: 1, reads: 1, embedded: 1}
)

func (a ledgerCost) plus(b ledgerCost, n int64) ledgerCost {
	return ledgerCost{writes: a.writes + n*b.writes, reads: a.reads + n*b.reads, embedded: a.embedded + n*b.embedded}
}

// wrappedBy says whether cl's data key is wrapped by KMS or by an HSM
// key (an AES-GCM wrapping whose key is known to be pkcs11:).
func wrappedBy(cl *Classification) (kms, hsm bool) {
	return cl.Wrapped.Alg.IsKMS(), cl.Wrapped.Alg == envelope.WrapAESGCM && strings.HasPrefix(cl.Key, "pkcs11:")
}

// addWrapping counts the requests that wrap an object's data key under
// to: KMS ReEncrypt from a KMS wrapping to a KMS key (no data key in the
// process), otherwise an unwrap (KMS or HSM) and a wrap (KMS or HSM; an
// RSA or AES key wraps locally).
func (p *Plan) addWrapping(fromKMS, fromHSM bool, to rewrap.Keyring) {
	if fromKMS && to.Kind() == rewrap.KindKMS {
		p.Requests["kms:ReEncrypt"]++
		return
	}
	switch {
	case fromKMS:
		p.Requests["kms:Decrypt"]++
	case fromHSM:
		p.Requests["hsm:Decrypt"]++
	}
	switch to.Kind() {
	case rewrap.KindKMS:
		p.Requests["kms:Encrypt"]++
	case rewrap.KindPKCS11:
		p.Requests["hsm:Encrypt"]++
	}
}

// addEscrow counts one escrow file written (Core.escrowObject): the file
// read first, the data key wrapped under the escrow key (from a KMS or
// an HSM wrapping), the file written, and its change through the
// protocol. matching: the escrow file exists and describes the object's
// content (the run looks for this run's escrow event in the object's
// lineage). It returns the change's ledger requests.
func (p *Plan) addEscrow(c *Core, cl *Classification, bc *BucketConfig, fromKMS, fromHSM, matching bool) ledgerCost {
	p.EscrowFiles++
	p.Requests["s3:GetObject"]++
	p.addWrapping(fromKMS, fromHSM, c.Escrow)
	p.Requests["s3:PutObject"]++
	// An escrow file is an instruction file of its own suffix: about the
	// size of the object's envelope as one.
	if _, body, err := cl.Env.InstructionFile(); err == nil {
		p.addWrite(costOfWrite(bc, escrow.Key(cl.Obj.Key, c.escrowSuffix()), "", int64(len(body)), 0))
	}
	if matching {
		return costEscrow.plus(costIdentify, 1)
	}
	return costEscrow
}

func (p *Plan) addWrite(c byteCost) {
	if p.WriteCosts != nil {
		p.WriteCosts.add(c)
	}
}

// comparePlacement adds a current object whose envelope is in its
// metadata to Plan.Placement: what a rotation of it costs now, what the
// move to an instruction file costs once, and what a rotation costs after
// it. KMS and ledger costs are the same either way and left out.
func (p *Plan) comparePlacement(cl *Classification, bc *BucketConfig, pr Prices, threshold int64) {
	if cl.Env == nil || cl.Env.Placement != envelope.PlacementMetadata || cl.Obj.Noncurrent || cl.Env.Format == envelope.V1 {
		return
	}
	_, body, err := cl.Env.InstructionFile()
	if err != nil {
		return
	}
	if p.Placement == nil {
		p.Placement = &PlacementCosts{}
	}
	pc := p.Placement
	size, ilen := cl.Obj.Size, int64(len(body))
	pc.Objects++
	pc.ObjectBytes += size
	pc.InstructionBytes += ilen
	ikey := cl.Obj.Key + ".instruction"
	copyReq := pr.S3Put
	if size > threshold {
		parts := (size + (128 << 20) - 1) / (128 << 20)
		copyReq = float64(2+parts)*pr.S3Put + pr.S3Get
	}
	// A rotation now: the self-copy keeps the old body as a noncurrent
	// version and ships the new one to every replica.
	once, monthly := costOfWrite(bc, cl.Obj.Key, cl.Obj.VersionID, size, size).usd(pr)
	pc.RotationOnceUSD += copyReq + once
	pc.RotationMonthlyUSD += monthly
	// The move: the same self-copy, plus a new instruction file.
	fo, fm := costOfWrite(bc, ikey, "", ilen, 0).usd(pr)
	pc.MoveOnceUSD += copyReq + once + pr.S3Put + fo
	pc.MoveMonthlyUSD += monthly + fm
	// A rotation after it: the instruction file read, its tags read, and
	// rewritten (its old version kept where the bucket keeps versions).
	ro, rm := costOfWrite(bc, ikey, "null", ilen, ilen).usd(pr)
	pc.MovedRotationOnceUSD += 2*pr.S3Get + pr.S3Put + ro
	pc.MovedRotationMonthlyUSD += rm
}

// addReencrypt counts the requests of one re-encryption: the old data key
// unwrapped, the new one wrapped, the content read in parts with ranged
// GETs and written with PutObject (one part) or a multipart upload. It
// returns its ledger requests: a multipart upload (every upload of an
// object whose envelope is in an instruction file) saves a checkpoint
// before it starts, with the upload's id, after each part but the last,
// before its completion and, with its envelope in an instruction file,
// after it (the content landed), and deletes it at the end.
func (p *Plan) addReencrypt(c *Core, cl *Classification) ledgerCost {
	if cl.Wrapped.Alg.IsKMS() {
		p.Requests["kms:Decrypt"]++
	} else if strings.HasPrefix(cl.Key, "pkcs11:") {
		p.Requests["hsm:Decrypt"]++
	}
	switch c.To.Kind() {
	case rewrap.KindKMS:
		p.Requests["kms:Encrypt"]++
	case rewrap.KindPKCS11:
		p.Requests["hsm:Encrypt"]++
	}
	ps := int64(16 << 20)
	if e, ok := c.Reencrypter.(interface{ PartSizeFor(int64) int64 }); ok {
		ps = e.PartSizeFor(cl.Obj.Size)
	}
	parts := max(1, (cl.Obj.Size+ps-1)/ps)
	p.Requests["s3:GetObject"] += parts
	p.Requests["s3:GetObjectTagging"]++
	if parts == 1 && cl.Instr == nil {
		p.Requests["s3:PutObject"]++
	} else {
		// In parts, or with its envelope in an instruction file: a
		// multipart upload, whose checkpoint lets a resume finish it.
		p.Requests["s3:CreateMultipartUpload"]++
		p.Requests["s3:UploadPart"] += parts
		p.Requests["s3:CompleteMultipartUpload"]++
	}
	if cl.Instr != nil {
		p.Requests["s3:PutObject"]++
	}
	p.ReencryptBytes += cl.Obj.Size
	lc := costChange
	if parts > 1 || cl.Instr != nil {
		saves := parts + 2 // the intent, the upload id, the parts but the last, completing
		if cl.Instr != nil {
			saves++ // the content landed; the instruction file is next
		}
		lc = lc.plus(costCheckpoint, saves+1)
		lc.reads++ // DeleteUpload reads the checkpoint, then the claim
	}
	return lc
}

// estimate prices the requests and bounds the duration.
func (p *Plan) estimate(o PlanOptions) {
	var s3Put, s3Get, kmsN, s3All int64
	for op, n := range p.Requests {
		switch {
		case op == "s3:PutObject", op == "s3:CopyObject", op == "s3:ListObjects", op == "s3:CreateMultipartUpload",
			op == "s3:UploadPartCopy", op == "s3:CompleteMultipartUpload":
			s3Put += n
			s3All += n
		case strings.HasPrefix(op, "s3:"):
			s3Get += n
			s3All += n
		case strings.HasPrefix(op, "kms:"):
			kmsN += n
		}
	}
	pr := o.Prices
	p.CostUSD["s3"] = float64(s3Put)*pr.S3Put + float64(s3Get)*pr.S3Get
	p.CostUSD["kms"] = float64(kmsN) * pr.KMS
	p.CostUSD["dynamodb"] = float64(p.Requests["dynamodb:write"])*pr.DDBWrite + float64(p.Requests["dynamodb:read"])*pr.DDBRead
	p.CostUSD["total"] = p.CostUSD["s3"] + p.CostUSD["kms"] + p.CostUSD["dynamodb"]
	if w := p.WriteCosts; w != nil {
		p.CostUSD["replication"] = float64(w.ReplicatedBytes)/gb*pr.ReplicationGB + float64(w.ReplicatedWrites)*pr.S3Put
		p.CostUSD["noncurrent_storage"] = w.NoncurrentGBMonths * pr.StorageGBMonth
		p.CostUSD["noncurrent_storage_monthly"] = float64(w.NoncurrentBytes-w.NoncurrentExpiringBytes) / gb * pr.StorageGBMonth
		p.CostUSD["total"] += p.CostUSD["replication"] + p.CostUSD["noncurrent_storage"]
	}

	// Each worker spends, per object, its requests one after another.
	lat := p.HeadLatency
	if lat <= 0 {
		lat = 20 * time.Millisecond
	}
	kmsLat := o.KMSLatency
	if kmsLat <= 0 {
		kmsLat = 15 * time.Millisecond
	}
	workers := o.Concurrency
	if workers <= 0 {
		workers = DefaultWorkers
	}
	serial := time.Duration(s3All)*lat + time.Duration(kmsN)*kmsLat
	type bound struct {
		name string
		d    time.Duration
	}
	bounds := []bound{{fmt.Sprintf("%d workers at the measured S3 latency", workers), serial / time.Duration(workers)}}
	if o.KMSRPS > 0 {
		bounds = append(bounds, bound{fmt.Sprintf("--kms-rps %g", o.KMSRPS), secs(float64(kmsN) / o.KMSRPS)})
	}
	if o.S3RPS > 0 {
		bounds = append(bounds, bound{fmt.Sprintf("--s3-rps %g", o.S3RPS), secs(float64(s3All) / o.S3RPS)})
	}
	sort.Slice(bounds, func(i, j int) bool { return bounds[i].d > bounds[j].d })
	p.Duration, p.Bound = bounds[0].d, bounds[0].name
}

func secs(s float64) time.Duration {
	if math.IsInf(s, 0) || math.IsNaN(s) {
		return 0
	}
	return time.Duration(s * float64(time.Second))
}
