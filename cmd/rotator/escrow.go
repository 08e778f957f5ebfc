package main

import (
	"context"
	"flag"
	"io"

	"github.com/rotator-dev/rotator/escrow"
	"github.com/rotator-dev/rotator/pipeline"
)

// escrowFlags binds the escrow key flag (named name) and --escrow-suffix.
func escrowFlags(fs *flag.FlagSet, c *pipeline.Config, name string) {
	switch name {
	case "escrow":
		fs.StringVar(&c.Escrow, "escrow", "", "also wrap each object's data key under this escrow key `SPEC` (kms:, rsa:PUBLIC-KEY.pem, pkcs11:) into its escrow file, before the object is rewrapped (docs/escrow.md)")
	case "from-escrow":
		fs.StringVar(&c.Escrow, "from-escrow", "", "the escrow key `SPEC` the objects' escrow files are wrapped under (for rsa: the private key file)")
	}
	fs.StringVar(&c.EscrowSuffix, "escrow-suffix", "", "suffix of escrow files (default "+escrow.DefaultSuffix+")")
}

// checkRunMode refuses the modes of rotator escrow and rotator restore on
// the commands whose --mode takes rewrap or reencrypt only.
func checkRunMode(cfg pipeline.Config) error {
	switch cfg.Mode {
	case "", pipeline.ModeRewrap, pipeline.ModeReencrypt:
		return nil
	}
	return usageError{"--mode " + string(cfg.Mode) + ": want rewrap or reencrypt (escrow files are written by 'rotator escrow' or run --escrow, and read back by 'rotator restore')"}
}

// runCommonFlags binds what escrow and restore share with run.
func runCommonFlags(fs *flag.FlagSet, cfg *pipeline.Config, out *outputFlags, runID *string) {
	sourceFlags(fs, cfg)
	ioTimeoutFlag(fs, cfg)
	out.bind(fs)
	fs.StringVar(&cfg.Ledger, "ledger", DefaultLedger, "the ledger: a `FILE` for the embedded store, or dynamodb://TABLE[?create=true]")
	fs.StringVar(runID, "run-id", "", "the run's id (default: generated); resume an interrupted one with 'rotator resume --run-id ID'")
	fs.BoolVar(&cfg.DryRun, "dry-run", false, "classify and report what would change; change nothing")
	fs.Float64Var(&cfg.KMSRPS, "kms-rps", 0, "cap on KMS requests per second per region, retries included (0: none)")
	fs.IntVar(&cfg.HSMSessions, "hsm-sessions", 0, "PKCS#11 sessions in the pool (default 16)")
	fs.Var(byteSize{&cfg.MultipartThreshold}, "multipart-threshold", "objects larger than this `SIZE` are copied with a multipart copy (default and maximum 5GiB)")
	fs.BoolVar(&cfg.CheckACL, "check-acl", false, "read each object's ACL before rewriting it and leave untouched those that grant more than their owner's FULL_CONTROL")
}

// cmdEscrow writes the escrow file of every selected object: a run of mode
// escrow (resumable like any run).
func cmdEscrow(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg pipeline.Config
	var out outputFlags
	var runID string
	fs := newFlagSet("escrow", "--source s3://BUCKET[/PREFIX] --escrow KEYSPEC [--from KEYSPEC]... [flags]", stderr)
	runCommonFlags(fs, &cfg, &out, &runID)
	fs.StringVar(&cfg.To, "escrow", "", "the escrow key `SPEC`: kms:KEY (KMS ReEncrypt from KMS-wrapped objects: no data key in the process), rsa:PUBLIC-KEY.pem (only the public key), pkcs11:token=T;object=L")
	fs.StringVar(&cfg.EscrowSuffix, "escrow-suffix", "", "suffix of escrow files (default "+escrow.DefaultSuffix+")")
	if help, err := parse(fs, args); help || err != nil {
		return err
	}
	if cfg.To == "" {
		return usageError{"give the escrow key with --escrow (for example --escrow kms:alias/backup-2026 or --escrow rsa:/etc/rotator/escrow.pub.pem)"}
	}
	cfg.Mode = pipeline.ModeEscrow
	return startRun(ctx, cfg, runID, out, stdout, stderr)
}

// cmdRestore rewraps every selected object from its escrow file to a new
// primary key: a run of mode restore.
func cmdRestore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg pipeline.Config
	var out outputFlags
	var runID string
	fs := newFlagSet("restore", "--source s3://BUCKET[/PREFIX] --from-escrow KEYSPEC --to KEYSPEC [flags]", stderr)
	runCommonFlags(fs, &cfg, &out, &runID)
	fs.StringVar(&cfg.To, "to", "", "the new primary key `SPEC` every object is rewrapped to")
	escrowFlags(fs, &cfg, "from-escrow")
	if help, err := parse(fs, args); help || err != nil {
		return err
	}
	if cfg.Escrow == "" {
		return usageError{"give the escrow key the escrow files are wrapped under with --from-escrow (for rsa: the private key file)"}
	}
	cfg.Mode = pipeline.ModeRestore
	return startRun(ctx, cfg, runID, out, stdout, stderr)
}
