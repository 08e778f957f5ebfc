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
// flags as run, plus where keys named without an ARN live.
func cmdIAMPolicy(_ context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg pipeline.Config
	var o iampolicy.Options
	var out outputFlags
	var runID string
	var buckets, with stringList
	fs := newFlagSet("iam-policy", "[the flags of run] [--account ID] [--region R] [--with verify,ledger]", stderr)
	sourceFlags(fs, &cfg)
	runFlags(fs, &cfg)
	escrowFlags(fs, &cfg, "escrow")
	out.bind(fs) // accepted so that a run's command line works as it is
	fs.StringVar(&cfg.Ledger, "ledger", DefaultLedger, "the ledger: a `FILE` for the embedded store, or dynamodb://TABLE[?create=true]")
	fs.StringVar(&runID, "run-id", "", "accepted and ignored (a run's flags work as they are)")
	fs.BoolVar(&cfg.DryRun, "dry-run", false, "the policy of a dry run: reads only")
	fs.StringVar(&o.Account, "account", "", "the AWS account `ID` of keys named by id or alias and of the ledger table (default: *)")
	fs.StringVar(&o.Region, "region", os.Getenv("AWS_REGION"), "the `REGION` of keys named by id or alias and of the ledger table (default: $AWS_REGION, else *)")
	fs.StringVar(&o.Partition, "partition", "aws", "the ARN `PARTITION` (aws, aws-cn, aws-us-gov)")
	fs.Var(&buckets, "bucket", "a `BUCKET` the objects of an S3 --list or an --inventory are in (repeatable; a local --list is read for them)")
	fs.Var(&with, "with", "also what these commands need: `verify` (rotator verify --key TO), ledger (rotator ledger and status on DynamoDB), plan (rotator plan: the buckets' versioning, replication and lifecycle configuration); repeatable or comma-separated")
	if help, err := parse(fs, args); help || err != nil {
		return err
	}
	if err := checkRunMode(cfg); err != nil {
		return err
	}
	o.Buckets = buckets
	o.Report = out.report
	for _, w := range with {
		for _, c := range splitComma(w) {
			switch c {
			case "verify":
				o.Verify = true
			case "ledger":
				o.Ledger = true
			case "plan":
				o.Plan = true
			default:
				return usageError{fmt.Sprintf("--with %q: want verify, ledger or plan", c)}
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
