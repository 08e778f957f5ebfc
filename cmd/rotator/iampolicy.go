package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/rotator-dev/rotator/iampolicy"
	"github.com/rotator-dev/rotator/pipeline"
)

// cmdIAMPolicy prints the least-privilege IAM policy of a run: the same
// flags as run, plus where keys named without an ARN live. --mode escrow
// and --mode restore take the flags of rotator escrow and rotator restore.
func cmdIAMPolicy(_ context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg pipeline.Config
	var o iampolicy.Options
	var out outputFlags
	var runID, fromEscrow string
	var buckets, with stringList
	fs := newFlagSet("iam-policy", "[the flags of run | --mode escrow and those of rotator escrow | --mode restore and those of rotator restore] [--account ID] [--region R] [--with verify,verify-escrow,ledger,plan]", stderr)
	sourceFlags(fs, &cfg)
	runFlags(fs, &cfg)
	ioTimeoutFlag(fs, &cfg) // accepted so that a run's command line works as it is
	escrowFlags(fs, &cfg, "escrow")
	fs.StringVar(&fromEscrow, "from-escrow", "", "with --mode restore: the escrow key `SPEC` the objects are restored from, as rotator restore takes it")
	out.bind(fs) // accepted so that a run's command line works as it is
	fs.StringVar(&cfg.Ledger, "ledger", DefaultLedger, "the ledger: a `FILE` for the embedded store, or dynamodb://TABLE[?create=true]")
	fs.StringVar(&runID, "run-id", "", "accepted and ignored (a run's flags work as they are)")
	fs.BoolVar(&cfg.DryRun, "dry-run", false, "the policy of a dry run: reads only")
	fs.StringVar(&o.Account, "account", "", "the AWS account `ID` of keys named by id or alias and of the ledger table (default: *)")
	fs.StringVar(&o.Region, "region", os.Getenv("AWS_REGION"), "the `REGION` of keys named by id or alias and of the ledger table (default: $AWS_REGION, else *)")
	fs.StringVar(&o.Partition, "partition", "aws", "the ARN `PARTITION` (aws, aws-cn, aws-us-gov)")
	fs.Var(&buckets, "bucket", "a `BUCKET` the objects of an S3 --list or an --inventory are in (repeatable; a local --list is read for them)")
	fs.Var(&with, "with", "also what these commands need: `verify` (rotator verify --key TO), verify-escrow (rotator verify --escrow --key ESCROW), ledger (rotator ledger and status on DynamoDB), plan (rotator plan: the buckets' versioning, replication and lifecycle configuration); repeatable or comma-separated")
	if help, err := parse(fs, args); help || err != nil {
		return err
	}
	if err := iamPolicyMode(&cfg, fromEscrow); err != nil {
		return err
	}
	o.Buckets = buckets
	o.Report = out.report
	for _, w := range with {
		for _, c := range splitComma(w) {
			switch c {
			case "verify":
				o.Verify = true
			case "verify-escrow":
				o.VerifyEscrow = true
			case "ledger":
				o.Ledger = true
			case "plan":
				o.Plan = true
			default:
				return usageError{fmt.Sprintf("--with %q: want verify, verify-escrow, ledger or plan", c)}
			}
		}
	}
	res, err := iampolicy.For(cfg, o)
	if err != nil {
		return usageError{err.Error()}
	}
	for _, n := range res.Notes {
		fmt.Fprintf(stderr, "rotator: note: %s\n", n)
	}
	_, err = stdout.Write(res.Policy.JSON())
	return err
}

// iamPolicyMode takes the command lines of rotator escrow and rotator
// restore as they are: with --mode escrow, --escrow is the escrow key
// (rotator escrow's, the run's To); with --mode restore, --from-escrow.
func iamPolicyMode(cfg *pipeline.Config, fromEscrow string) error {
	switch cfg.Mode {
	case pipeline.ModeEscrow:
		if cfg.To != "" || cfg.Escrow == "" || fromEscrow != "" {
			return usageError{"--mode escrow: give the escrow key with --escrow, as rotator escrow takes it (it takes no --to and no --from-escrow)"}
		}
		cfg.To, cfg.Escrow = cfg.Escrow, ""
	case pipeline.ModeRestore:
		if cfg.Escrow != "" || fromEscrow == "" {
			return usageError{"--mode restore: give the escrow key with --from-escrow, as rotator restore takes it (not --escrow)"}
		}
		cfg.Escrow = fromEscrow
	default:
		if fromEscrow != "" {
			return usageError{"--from-escrow applies to --mode restore (rotator restore)"}
		}
		return checkRunMode(*cfg)
	}
	return nil
}

func splitComma(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	return out
}
