package pipeline

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"
	"golang.org/x/time/rate"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/escrow"
	"github.com/rotator-dev/rotator/internal/awsx"
	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/reencrypt"
	"github.com/rotator-dev/rotator/rewrap"
)

// Config is a run's whole configuration: what the CLI's flags say, and what
// the run record keeps (as JSON) so that 'rotator resume' rebuilds the same
// run. It holds key specs and file names, never secrets: key specs name
// where PINs and keys are read from (files, environment), not their values.
type Config struct {
	// One of Source (s3://BUCKET[/PREFIX]), Inventory (an S3 Inventory
	// manifest.json URL) and List (a CSV file or s3:// URL).
	Source      string `json:"source,omitempty"`
	Inventory   string `json:"inventory,omitempty"`
	List        string `json:"list,omitempty"`
	AllVersions bool   `json:"all_versions,omitempty"`
	// ListRawKeys: the keys of List are not URL-encoded (see
	// inventory.CSVList.RawKeys).
	ListRawKeys bool `json:"list_raw_keys,omitempty"`
	// To is the target key spec; From restricts the run to objects under
	// these keys.
	To   string   `json:"to"`
	From []string `json:"from,omitempty"`
	Mode Mode     `json:"mode,omitempty"`
	// Ledger is the ledger URL (ledger.Open).
	Ledger string `json:"ledger"`
	// Concurrency is the number of requests to S3 and KMS in flight at
	// once, with up to twice as many objects in progress (Workers); for a
	// re-encryption, the number of objects in progress.
	Concurrency int `json:"concurrency,omitempty"`
	// Request budgets: requests per second to KMS (per region) and to S3;
	// HSMSessions is the PKCS#11 session pool size.
	KMSRPS      float64 `json:"kms_rps,omitempty"`
	S3RPS       float64 `json:"s3_rps,omitempty"`
	HSMSessions int     `json:"hsm_sessions,omitempty"`
	// IOTimeout: a connection to S3, KMS or DynamoDB on which nothing is
	// read or written for this long is dropped and its request retried
	// (0: awsx.DefaultIOTimeout; negative: never).
	IOTimeout time.Duration `json:"io_timeout,omitempty"`
	// Shard is "i/N": this process handles one of N disjoint parts
	// (resolved from --shard i/N or --shard auto: see ResolveShard).
	Shard string `json:"shard,omitempty"`
	// ShardCount N > 0 makes the run a sharded job: N processes, one per
	// shard, share the run id, each with a run record of its own (see
	// JoinJob). The run's own record keeps the job's configuration with
	// ShardCount and no Shard. 0 with a Shard is a run of one shard under
	// a run id of its own (as earlier versions ran shards).
	ShardCount int `json:"shard_count,omitempty"`
	// ListWorkers bounds the partitions listed at once.
	ListWorkers int `json:"list_workers,omitempty"`
	// InventoryMaxFileBytes bounds each Parquet data file of an S3
	// Inventory report, copied to disk while it is read (default
	// inventory.DefaultMaxFileBytes).
	InventoryMaxFileBytes int64 `json:"inventory_max_file_bytes,omitempty"`
	// InstructionSuffix of instruction files (default ".instruction").
	InstructionSuffix string `json:"instruction_suffix,omitempty"`
	// Placement is PlacementInstructionFile (--placement
	// instruction-file) to move the envelope of every object a rewrap
	// changes from its metadata into an instruction file; empty keeps
	// each envelope where it is.
	Placement string `json:"placement,omitempty"`
	// Commit options (see commit.Options).
	MultipartThreshold   int64 `json:"multipart_threshold,omitempty"`
	NoMultipartChecksum  bool  `json:"no_multipart_checksum,omitempty"`
	NoDestinationIfMatch bool  `json:"no_destination_if_match,omitempty"`
	CopyObjectLock       bool  `json:"copy_object_lock,omitempty"`
	DryRun               bool  `json:"dry_run,omitempty"`
	// Re-encryption (ModeReencrypt): Format is "v3" to upgrade objects to
	// key-committing content (empty keeps each object's format; V1 is
	// always upgraded); PartSize, PartsInFlight and ReencryptMemory tune
	// the engine (see reencrypt.Engine).
	Format          string `json:"format,omitempty"`
	PartSize        int64  `json:"part_size,omitempty"`
	PartsInFlight   int    `json:"parts_in_flight,omitempty"`
	ReencryptMemory int64  `json:"reencrypt_memory,omitempty"`
	// DeleteOldVersions (ModeReencrypt with AllVersions): older versions
	// under a --from key are deleted once the key's current version is
	// re-encrypted, unless Object Lock protects them.
	DeleteOldVersions bool `json:"delete_old_versions,omitempty"`
	// ExpectedBucketOwner is the AWS account id (12 digits) every bucket
	// the run reads or writes must belong to: it is sent on every S3
	// request (awsx.ExpectedBucketOwner), and S3 answers AccessDenied for
	// a bucket of another account. Empty sends none.
	ExpectedBucketOwner string `json:"expected_bucket_owner,omitempty"`
	// CheckACL reads the ACL of every object (and instruction file) before
	// it is rewritten, and leaves untouched those with grants beyond the
	// owner's FULL_CONTROL, which a rewrite would drop
	// (CodeACLWouldBeDropped).
	CheckACL bool `json:"check_acl,omitempty"`
	// Escrow is the escrow key spec (pipeline/escrow.go): with ModeRewrap
	// (run --escrow) every selected object is escrowed under it before it
	// is rewrapped; with ModeRestore (restore --from-escrow) the key the
	// objects are restored from. ModeEscrow escrows under To. EscrowSuffix
	// names the escrow files (default escrow.DefaultSuffix).
	Escrow       string `json:"escrow,omitempty"`
	EscrowSuffix string `json:"escrow_suffix,omitempty"`
}

// format returns the envelope format Format names (0: keep).
func (c *Config) format() (envelope.Format, error) {
	switch strings.ToLower(c.Format) {
	case "", "keep":
		return 0, nil
	case "v3":
		return envelope.V3, nil
	}
	return 0, fmt.Errorf("--format %q: want v3 (upgrade to key-committing content) or keep", c.Format)
}

// Validate checks what can be checked without network calls.
func (c *Config) Validate() error {
	n := 0
	for _, s := range []string{c.Source, c.Inventory, c.List} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return errors.New("give exactly one of --source s3://BUCKET[/PREFIX], --inventory s3://BUCKET/.../manifest.json and --list FILE")
	}
	if c.To == "" {
		return errors.New("give the target key with --to (for example --to kms:alias/data-key-2026)")
	}
	if _, err := rewrap.ParseSpec(c.To); err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	for _, f := range c.From {
		if _, err := rewrap.ParseSpec(f); err != nil {
			return fmt.Errorf("--from: %w", err)
		}
	}
	switch c.Mode {
	case "", ModeRewrap, ModeReencrypt, ModeEscrow, ModeRestore:
	default:
		return fmt.Errorf("--mode %q: want rewrap or reencrypt", c.Mode)
	}
	if err := c.validateEscrow(); err != nil {
		return err
	}
	if _, err := c.format(); err != nil {
		return err
	}
	if c.Format != "" && c.mode() != ModeReencrypt {
		return errors.New("--format applies to --mode reencrypt only (a rewrap keeps the object's content and format)")
	}
	if c.mode() == ModeReencrypt && len(c.From) == 0 {
		return errors.New("--mode reencrypt decrypts each object's data key: name the keys the objects are wrapped under with --from (one or more; with --list too)")
	}
	switch c.Placement {
	case "":
	case PlacementInstructionFile:
		if c.mode() != ModeRewrap {
			return errors.New("--placement instruction-file applies to --mode rewrap (a re-encryption keeps each envelope where it is)")
		}
		if c.InstructionSuffix != "" && c.InstructionSuffix != envelope.DefaultInstructionSuffix {
			return fmt.Errorf("--placement instruction-file writes %s files: the official Go clients read no other suffix (drop --instruction-suffix %s)", envelope.DefaultInstructionSuffix, c.InstructionSuffix)
		}
		if c.CheckACL {
			return errors.New("--placement instruction-file cannot be combined with --check-acl yet: run --check-acl without it first")
		}
	default:
		return fmt.Errorf("--placement %q: want instruction-file (or leave it out to keep each envelope where it is)", c.Placement)
	}
	if c.ListRawKeys && c.List == "" {
		return errors.New("--list-raw-keys applies to --list only")
	}
	if c.DeleteOldVersions && (c.mode() != ModeReencrypt || !c.AllVersions) {
		return errors.New("--delete-old-versions needs --mode reencrypt and --all-versions (run it with --dry-run first to see the versions it would delete)")
	}
	if c.PartSize < 0 || c.PartsInFlight < 0 || c.ReencryptMemory < 0 {
		return errors.New("--part-size, --parts-in-flight and --reencrypt-memory must not be negative")
	}
	if c.PartSize > 0 && c.PartSize < reencrypt.MinPartSize {
		return fmt.Errorf("--part-size %d: S3 parts are at least %d bytes (5 MiB)", c.PartSize, reencrypt.MinPartSize)
	}
	if c.Shard != "" {
		sh, err := inventory.ParseShard(c.Shard)
		if err != nil {
			return fmt.Errorf("--shard: %w", err)
		}
		if c.ShardCount != 0 && c.ShardCount != sh.Count {
			return fmt.Errorf("--shard %s and --shard-count %d disagree", c.Shard, c.ShardCount)
		}
	}
	if c.ShardCount < 0 {
		return fmt.Errorf("--shard-count %d: want the number of shards", c.ShardCount)
	}
	if c.ExpectedBucketOwner != "" {
		if err := awsx.CheckAccountID(c.ExpectedBucketOwner); err != nil {
			return fmt.Errorf("--expected-bucket-owner: %w (the account that owns the buckets, as in arn:aws:iam::ACCOUNT:root)", err)
		}
	}
	if c.Concurrency < 0 || c.KMSRPS < 0 || c.S3RPS < 0 || c.HSMSessions < 0 || c.InventoryMaxFileBytes < 0 {
		return errors.New("--concurrency, --kms-rps, --s3-rps, --hsm-sessions and --inventory-max-file-bytes must not be negative")
	}
	return nil
}

// Env is everything a run works with, built from a Config by Open.
type Env struct {
	Config  Config
	AWS     aws.Config
	S3      *s3.Client
	Deps    *rewrap.Deps
	To      rewrap.Keyring
	From    []rewrap.Keyring
	Escrow  rewrap.Keyring // the escrow key (Config.Escrow), nil without one
	Ledger  ledger.Ledger  // nil when opened without one
	Commit  *commit.Committer
	S3Limit *rate.Limiter

	// engine is the process's re-encryption engine; its memory budget is
	// shared by all workers.
	engineMu sync.Mutex
	engine   *reencrypt.Engine
	wrapKey  func(rewrap.Keyring) rewrap.Keyring
}

// OpenOptions adjust Open.
type OpenOptions struct {
	// NoLedger opens no ledger (plan, verify).
	NoLedger bool
	// NoKeys opens no keyring (plan without key access).
	NoKeys bool
	// AWS, when set, is the AWS configuration every client is built from
	// instead of the standard chain (its APIOptions reach the S3, KMS and
	// DynamoDB clients alike).
	AWS *aws.Config
	// KMSMaxAttempts and KMSMaxBackoff shape the KMS clients' retries
	// (0: rewrap's defaults).
	KMSMaxAttempts int
	KMSMaxBackoff  time.Duration
	// APIOptions are added to every AWS client (S3, KMS, DynamoDB) after
	// the configuration is loaded.
	APIOptions []func(*middleware.Stack) error
	// WrapLedger and WrapKeyring, when set, wrap the ledger and every
	// keyring Open opens (the fault-injection tests go through them).
	WrapLedger  func(ledger.Ledger) ledger.Ledger
	WrapKeyring func(rewrap.Keyring) rewrap.Keyring
}

// Open builds the clients, keyrings and ledger of cfg. AWS configuration
// comes from the standard chain; AWS_ENDPOINT_URL_S3/KMS/DYNAMODB are
// honoured and a custom S3 endpoint gets path-style addressing.
func Open(ctx context.Context, cfg Config, o OpenOptions) (*Env, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var awsCfg aws.Config
	var err error
	if o.AWS != nil {
		awsCfg = *o.AWS
	} else if awsCfg, err = awsx.Load(ctx, awsx.Options{IdleConnsPerHost: awsx.IdleConnsFor(cfg.Concurrency), IOTimeout: cfg.IOTimeout}); err != nil {
		return nil, err
	}
	if len(o.APIOptions) > 0 {
		awsCfg = awsCfg.Copy()
		awsCfg.APIOptions = append(awsCfg.APIOptions, o.APIOptions...)
		o.AWS = &awsCfg // the ledger's client is built from it too
	}
	e := &Env{Config: cfg, AWS: awsCfg, wrapKey: o.WrapKeyring}
	var s3Opts []func(*s3.Options)
	if cfg.S3RPS > 0 {
		e.S3Limit = rate.NewLimiter(rate.Limit(cfg.S3RPS), max(1, int(cfg.S3RPS)))
		s3Opts = append(s3Opts, func(o *s3.Options) { o.APIOptions = append(o.APIOptions, awsx.RateLimit(e.S3Limit)) })
	}
	if cfg.ExpectedBucketOwner != "" {
		s3Opts = append(s3Opts, func(o *s3.Options) {
			o.APIOptions = append(o.APIOptions, awsx.ExpectedBucketOwner(cfg.ExpectedBucketOwner))
		})
	}
	// Requests in flight, S3 and KMS together, are --concurrency; the
	// workers are more (Config.Workers), so that objects waiting for the
	// ledger do not keep requests from being sent. Not for a
	// re-encryption, whose objects each send parts in parallel, nor with
	// an HSM key, whose workers queue for its sessions (Config.slotted).
	var slots *awsx.Slots
	if cfg.slotted() {
		slots = awsx.NewSlots(cmp.Or(cfg.Concurrency, DefaultWorkers))
	}
	s3Opts = append(s3Opts, func(o *s3.Options) { o.APIOptions = append(o.APIOptions, slots.Middleware) })
	e.S3 = awsx.S3(awsCfg, s3Opts...)
	e.Commit = commit.New(e.S3, commit.Options{
		MultipartThreshold:   cfg.MultipartThreshold,
		NoMultipartChecksum:  cfg.NoMultipartChecksum,
		NoDestinationIfMatch: cfg.NoDestinationIfMatch,
		CopyObjectLock:       cfg.CopyObjectLock,
	})
	ok := false
	defer func() {
		if !ok {
			e.Close()
		}
	}()
	if !o.NoKeys {
		e.Deps = &rewrap.Deps{AWS: awsCfg, Limits: rewrap.Limits{KMSRPS: cfg.KMSRPS}, PKCS11PoolSize: cfg.HSMSessions,
			KMSMaxAttempts: o.KMSMaxAttempts, KMSMaxBackoff: o.KMSMaxBackoff, Slots: slots}
		if e.To, err = e.openKey(ctx, cfg.To); err != nil {
			return nil, fmt.Errorf("--to: %w", err)
		}
		for _, f := range cfg.From {
			k, err := e.openKey(ctx, f)
			if err != nil {
				return nil, fmt.Errorf("--from: %w", err)
			}
			e.From = append(e.From, k)
		}
		if cfg.Escrow != "" && cfg.mode() != ModeEscrow {
			if e.Escrow, err = e.openKey(ctx, cfg.Escrow); err != nil {
				return nil, fmt.Errorf("--escrow: %w", err)
			}
		}
	}
	if !o.NoLedger {
		if cfg.Ledger == "" {
			return nil, errors.New("no ledger: give --ledger (a file path or dynamodb://TABLE)")
		}
		lopts := []ledger.Option{ledger.WithIOTimeout(cfg.IOTimeout)}
		if o.AWS != nil {
			lopts = append(lopts, ledger.WithAWSConfig(awsCfg))
		}
		if e.Ledger, err = ledger.Open(ctx, cfg.Ledger, lopts...); err != nil {
			return nil, err
		}
		if o.WrapLedger != nil {
			e.Ledger = o.WrapLedger(e.Ledger)
		}
	}
	ok = true
	return e, nil
}

// openKey opens the keyring of a key spec.
func (e *Env) openKey(ctx context.Context, spec string) (rewrap.Keyring, error) {
	s, err := rewrap.ParseSpec(spec)
	if err != nil {
		return nil, err
	}
	k, err := rewrap.Open(ctx, s, e.Deps)
	if err != nil || e.wrapKey == nil {
		return k, err
	}
	return e.wrapKey(k), nil
}

// Core returns the per-object core of the run runID for this process:
// owner is its claim owner (the ledger.Owner of the run's lease it holds;
// "" for a core that changes nothing, such as a plan's). A dry run's core
// has its writers wrapped (see DryRun).
func (e *Env) Core(runID, owner string) *Core {
	var l Ledger
	if e.Ledger != nil {
		l = e.Ledger
	}
	mode := e.Config.mode()
	var s3c Committer = e.Commit
	if e.Config.CheckACL {
		s3c = ACLGuard(e.Commit, e.Commit)
	}
	c := &Core{
		S3: s3c, Ledger: l, To: e.To, From: e.From, Mode: mode,
		RunID: runID, Owner: owner, InstructionSuffix: e.Config.InstructionSuffix,
		Parse: envelope.ParseOptions{AllowLegacy: true}, KeyFor: e.keyFor,
		Escrow: e.Escrow, EscrowSuffix: e.Config.EscrowSuffix, Creator: e.Commit, Bodies: e.S3,
	}
	if mode == ModeEscrow {
		c.Escrow = e.To
	}
	if e.Config.Placement == PlacementInstructionFile && e.Commit != nil {
		c.Move = e.Commit
	}
	if mode == ModeReencrypt && e.To != nil {
		c.Format, _ = e.Config.format() // validated by Open
		c.Reencrypter = e.Engine()
		if e.Config.DeleteOldVersions {
			c.Versions = e.Commit
		}
	}
	if e.Config.DryRun {
		return DryRun(c)
	}
	return c
}

// keyFor opens the keyring of a canonical key id an intent recorded: a
// KMS key ARN, or an HSM key URI (with the module and PIN of the run's
// configuration). Local keys cannot be opened from their id.
func (e *Env) keyFor(ctx context.Context, id string) (rewrap.Keyring, error) {
	if e.Deps == nil {
		return nil, errors.New("no key backends")
	}
	switch {
	case strings.HasPrefix(id, "arn:"):
		return e.openKey(ctx, "kms:"+id)
	case strings.HasPrefix(id, "pkcs11:"):
		return e.openKey(ctx, id)
	}
	return nil, fmt.Errorf("key %s cannot be opened from its id: name it with --to or --from", id)
}

// Engine returns the re-encryption engine of this process: one, so that
// every worker of every run shares its memory budget.
func (e *Env) Engine() *reencrypt.Engine {
	e.engineMu.Lock()
	defer e.engineMu.Unlock()
	if e.engine == nil {
		var w reencrypt.Writer = e.Commit
		if e.Config.CheckACL {
			w = ACLGuardWriter(e.Commit, e.Commit, e.Config.InstructionSuffix)
		}
		e.engine = &reencrypt.Engine{
			Reader: e.S3, Writer: w,
			PartSize: e.Config.PartSize, PartsInFlight: e.Config.PartsInFlight, Memory: e.Config.ReencryptMemory,
		}
	}
	return e.engine
}

// Source opens the run's inventory, resuming after positions.
func (e *Env) Source(ctx context.Context, after []string) (inventory.Source, error) {
	suffix := e.Config.InstructionSuffix
	if suffix == "" {
		suffix = inventory.DefaultExcludeSuffix
	}
	spec := inventory.Spec{
		Source: e.Config.Source, Inventory: e.Config.Inventory, List: e.Config.List, RawKeys: e.Config.ListRawKeys,
		AllVersions: e.Config.AllVersions, TempDir: os.TempDir(), MaxParquetBytes: e.Config.InventoryMaxFileBytes,
		// Keys that end with the suffix while no object KEY exists are
		// delivered (flagged) rather than dropped: an encrypted object whose
		// own key ends in the suffix is rotated, not skipped in silence.
		Options: inventory.Options{Workers: e.Config.ListWorkers, ExcludeSuffix: suffix, ReportUnpaired: true, After: after},
	}
	if e.Config.Shard != "" {
		sh, err := inventory.ParseShard(e.Config.Shard)
		if err != nil {
			return nil, err
		}
		spec.Shard = sh
	}
	return inventory.Open(ctx, e.S3, spec)
}

// Close releases the keyrings (clearing local keys, closing HSM sessions)
// and the ledger.
func (e *Env) Close() error {
	var errs []error
	if e.Deps != nil {
		errs = append(errs, e.Deps.Close())
	}
	if e.Ledger != nil {
		errs = append(errs, e.Ledger.Close())
	}
	return errors.Join(errs...)
}

// Describe is a one-line description of a run configuration for logs.
func (c *Config) Describe() string {
	var b strings.Builder
	src := c.Source + c.Inventory + c.List
	fmt.Fprintf(&b, "%s %s -> %s", c.mode(), src, rewrap.RedactSpec(c.To))
	if len(c.From) > 0 {
		from := make([]string, len(c.From))
		for i, f := range c.From {
			from[i] = rewrap.RedactSpec(f)
		}
		fmt.Fprintf(&b, " (from %s)", strings.Join(from, ", "))
	}
	if c.Format != "" {
		fmt.Fprintf(&b, " format %s", c.Format)
	}
	if c.Escrow != "" {
		fmt.Fprintf(&b, " escrow %s", rewrap.RedactSpec(c.Escrow))
	}
	if c.DeleteOldVersions {
		b.WriteString(" deleting older versions")
	}
	if c.Placement != "" {
		fmt.Fprintf(&b, " moving envelopes to %s", c.Placement)
	}
	if c.CheckACL {
		b.WriteString(" checking ACLs")
	}
	if c.ExpectedBucketOwner != "" {
		fmt.Fprintf(&b, " buckets owned by %s", c.ExpectedBucketOwner)
	}
	if c.Shard != "" {
		fmt.Fprintf(&b, " shard %s", c.Shard)
	} else if c.ShardCount > 0 {
		fmt.Fprintf(&b, " in %d shards", c.ShardCount)
	}
	return b.String()
}

// validateEscrow checks the escrow settings.
func (c *Config) validateEscrow() error {
	if c.Escrow != "" {
		if _, err := rewrap.ParseSpec(c.Escrow); err != nil {
			return fmt.Errorf("--escrow: %w", err)
		}
	}
	if c.EscrowSuffix != "" {
		if err := escrow.CheckSuffix(c.EscrowSuffix, c.InstructionSuffix); err != nil {
			return fmt.Errorf("--escrow-suffix: %w", err)
		}
	}
	switch c.mode() {
	case ModeRestore:
		if c.Escrow == "" {
			return errors.New("restore needs the escrow key: --from-escrow KEYSPEC")
		}
		if len(c.From) > 0 {
			return errors.New("restore takes no --from: every object is restored from its escrow file")
		}
	case ModeEscrow:
		if c.Escrow != "" && c.Escrow != c.To {
			return errors.New("escrow mode escrows under --to (the escrow key)")
		}
	}
	return nil
}

func (c *Config) mode() Mode {
	if c.Mode == "" {
		return ModeRewrap
	}
	return c.Mode
}
