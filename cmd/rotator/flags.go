package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/rotator-dev/rotator/internal/awsx"
	"github.com/rotator-dev/rotator/internal/metrics"
	"github.com/rotator-dev/rotator/pipeline"
)

// DefaultLedger is the embedded ledger's file when --ledger is not given.
const DefaultLedger = "rotator-ledger.db"

// ioTimeoutFlag binds --io-timeout (run, plan, verify, escrow, restore,
// and iam-policy, which takes a run's flags), default
// awsx.DefaultIOTimeout; resume binds its own.
func ioTimeoutFlag(fs *flag.FlagSet, c *pipeline.Config) {
	c.IOTimeout = awsx.DefaultIOTimeout
	fs.Var(ioTimeout{&c.IOTimeout}, "io-timeout", "a connection to S3, KMS or DynamoDB on which nothing is read or written for this `DURATION` is dropped and its request retried, so that a stalled connection cannot hold a worker for ever (0: never)")
}

// ioTimeout is --io-timeout: a duration, where 0 (never) is stored as
// negative, since pipeline.Config's 0 is the default.
type ioTimeout struct{ d *time.Duration }

func (f ioTimeout) String() string {
	if f.d == nil || *f.d < 0 {
		return "0s"
	}
	return f.d.String()
}

func (f ioTimeout) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("not a duration such as 30s or 5m")
	}
	if d <= 0 {
		d = -1
	}
	*f.d = d
	return nil
}

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}

// newFlagSet returns a flag set that reports errors as usage errors.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	// Read before the command runs (newSession); bound here so that they
	// parse and show in -h.
	fs.String("log-level", "info", "log lines on stderr at this `LEVEL` and above: debug, info, warn, error or off (default info; warn while a progress line shows; or $"+envLogLevel+")")
	fs.String("log-format", "auto", "log lines as json, console, or auto: console on a terminal, JSON lines otherwise (or $"+envLogFormat+")")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: rotator %s %s\n\nflags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args and turns flag errors into usage errors; -h is not an
// error.
func parse(fs *flag.FlagSet, args []string) (help bool, err error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return true, nil
		}
		return false, usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return false, usageError{fmt.Sprintf("unexpected argument %q (flags come as --name value)", fs.Arg(0))}
	}
	return false, nil
}

// sourceFlags binds the flags that select objects and keys.
func sourceFlags(fs *flag.FlagSet, c *pipeline.Config) {
	fs.StringVar(&c.Source, "source", "", "list the objects of `s3://BUCKET[/PREFIX]`")
	fs.StringVar(&c.Inventory, "inventory", "", "read the objects from an S3 Inventory report: `s3://BUCKET/.../manifest.json`")
	fs.Var(byteSize{&c.InventoryMaxFileBytes}, "inventory-max-file-bytes", "with --inventory: the largest Parquet data file read, in bytes or with a unit such as 2GiB (default 1GiB); each is copied to TMPDIR while it is read, --list-workers at once")
	fs.StringVar(&c.List, "list", "", "read the objects from a CSV `FILE` (or s3://BUCKET/KEY) of bucket,key[,version] lines, keys URL-encoded like S3 Batch Operations manifests")
	fs.BoolVar(&c.ListRawKeys, "list-raw-keys", false, "with --list: the keys are written as they are, not URL-encoded (a key with a comma or a quote is then quoted as in CSV: \"a,b\")")
	fs.BoolVar(&c.AllVersions, "all-versions", false, "consider every version of every key (older versions are reported, never changed in place)")
	fs.Var((*stringList)(&c.From), "from", "only objects wrapped under this key `SPEC` (repeatable); needed to unwrap local, HSM and cross-region KMS keys")
	fs.StringVar(&c.Shard, "shard", "", "process shard `i/N` of the objects (disjoint by a hash of bucket and key), or auto: the index of a Kubernetes Indexed Job (JOB_COMPLETION_INDEX) or an AWS Batch array job (AWS_BATCH_JOB_ARRAY_INDEX); the shards of a job share one --run-id")
	fs.IntVar(&c.ShardCount, "shard-count", 0, "with --shard auto: the number of shards, where the environment does not give it (or ROTATOR_SHARD_COUNT; AWS Batch sets AWS_BATCH_JOB_ARRAY_SIZE)")
	fs.StringVar(&c.InstructionSuffix, "instruction-suffix", "", "suffix of instruction files (default .instruction)")
	fs.StringVar(&c.Placement, "placement", "", "`instruction-file`: move the envelope of each object a rewrap changes from its metadata into an instruction file, in the same copy, so later rotations rewrite one small file and never copy the body (default: keep each envelope where it is)")
	fs.IntVar(&c.ListWorkers, "list-workers", 0, "prefixes or report files listed at once (default 8)")
	fs.IntVar(&c.Concurrency, "concurrency", pipeline.DefaultWorkers, "requests to S3 and KMS in flight at once; up to twice as many objects are in progress, those waiting for the ledger holding no request (--mode reencrypt, or an HSM key: objects in progress)")
	fs.Float64Var(&c.S3RPS, "s3-rps", 0, "cap on S3 requests per second (0: none)")
	fs.StringVar(&c.ExpectedBucketOwner, "expected-bucket-owner", "", "the AWS `ACCOUNT` id (12 digits) that must own every bucket read or written (the --source bucket, the report's and the list's): sent on every S3 request, a bucket of another account answers AccessDenied")
}

// runFlags binds the flags of run (and plan's budget flags).
func runFlags(fs *flag.FlagSet, c *pipeline.Config) {
	fs.StringVar(&c.To, "to", "", "the target key `SPEC`: kms:KEY-ID|ARN|alias/NAME, pkcs11:token=T;object=L?pin-source=file:/path, aes:/path/key, rsa:/path/key.pem")
	fs.StringVar((*string)(&c.Mode), "mode", string(pipeline.ModeRewrap), "rewrap (the data key moves to the target key; the body is never read) or reencrypt (the content is re-encrypted under a fresh data key wrapped by --to: for data keys that may be exposed; needs --from)")
	fs.StringVar(&c.Format, "format", "", "with --mode reencrypt: v3 upgrades objects to key-committing content (default: keep each object's format)")
	fs.Var(byteSize{&c.PartSize}, "part-size", "with --mode reencrypt: `SIZE` of the parts of large objects, such as 64MiB (default 16MiB, at least 5MiB; raised to keep within 10,000 parts)")
	fs.IntVar(&c.PartsInFlight, "parts-in-flight", 0, "with --mode reencrypt: parts of one object read, re-encrypted and uploaded at once (default 4)")
	fs.BoolVar(&c.DeleteOldVersions, "delete-old-versions", false, "with --mode reencrypt --all-versions: permanently delete older versions still under a --from key, once the key's current version is re-encrypted; Object Lock is respected (locked versions are reported, never deleted). Dry run first")
	fs.Var(byteSize{&c.ReencryptMemory}, "reencrypt-memory", "with --mode reencrypt: `SIZE` of the part buffers held by all objects at once, such as 1GiB (default 128MiB)")
	fs.Float64Var(&c.KMSRPS, "kms-rps", 0, "cap on KMS requests per second per region, retries included (0: none; below it rotator slows down only when the throttling grows with its rate, since the account's quota is shared with everything else)")
	fs.IntVar(&c.HSMSessions, "hsm-sessions", 0, "PKCS#11 sessions in the pool (default 16)")
	fs.Var(byteSize{&c.MultipartThreshold}, "multipart-threshold", "objects larger than this `SIZE` are copied with a multipart copy, such as 1GiB (default and maximum 5GiB)")
	fs.BoolVar(&c.NoMultipartChecksum, "s3-no-multipart-checksum", false, "create multipart copies without a checksum algorithm (for S3-compatible servers that compute part checksums wrongly)")
	fs.BoolVar(&c.NoDestinationIfMatch, "s3-no-destination-if-match", false, "leave out If-Match on copy destinations (for S3-compatible servers that reject it)")
	fs.BoolVar(&c.CopyObjectLock, "copy-object-lock", false, "give rewritten objects the Object Lock retention and legal hold of the original")
	fs.BoolVar(&c.CheckACL, "check-acl", false, "read each object's ACL (s3:GetObjectAcl) before rewriting it, and leave untouched those that grant more than their owner's FULL_CONTROL: a rewrite gives an object the bucket's default ACL (not needed where ACLs are disabled, the default since 2023)")
}

// metricsFlags are --metrics-addr and --metrics-push (run, resume).
type metricsFlags struct {
	addr checkedString // HOST:PORT to serve /metrics on while the run lasts
	push checkedString // Pushgateway URL to push to when the run ends
}

func (m *metricsFlags) bind(fs interface {
	Var(flag.Value, string, string)
}) {
	m.addr.check = metrics.CheckAddr
	m.push.check = func(s string) error { _, err := metrics.ParsePushURL(s); return err }
	fs.Var(&m.addr, "metrics-addr", "serve Prometheus metrics on http://`HOST:PORT`/metrics while the run lasts (127.0.0.1:PORT for this machine only; port 0 picks one and prints it)")
	fs.Var(&m.push, "metrics-push", "when the run ends, push its metrics to the Pushgateway at `URL` (http://HOST:9091, job rotator; or http://HOST:9091/metrics/job/JOB[/LABEL/VALUE]... to name the group)")
}

// checkedString is a string flag whose value check refuses at parse time.
type checkedString struct {
	v     string
	check func(string) error
}

func (c *checkedString) String() string { return c.v }
func (c *checkedString) Set(v string) error {
	if c.check != nil {
		if err := c.check(v); err != nil {
			return err
		}
	}
	c.v = v
	return nil
}
