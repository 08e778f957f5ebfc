// Command rotator re-keys client-side encrypted S3 objects (AWS S3
// Encryption Client formats) at scale.
//
// main maps errors to the exit codes below and nothing else: every
// subcommand lives in its own file with its flags and a cmdX function; the
// work is done by the pipeline package.
//
// Exit codes (a contract for runbooks and automation):
//
//	0    done
//	1    fatal error
//	2    usage error
//	3    finished with per-object failures (see the report)
//	4    unfinished: changes whose outcome is not known yet are kept in the
//	     ledger; 'rotator resume' settles them (and exits 0 once none is left)
//	5    busy: another process is working on the run (its lease is held)
//	130  interrupted (SIGINT, SIGTERM); the run can be resumed
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/rotator-dev/rotator/internal/buildinfo"
)

// Exit codes.
const (
	exitOK          = 0
	exitFatal       = 1
	exitUsage       = 2
	exitPartial     = 3
	exitUnfinished  = 4
	exitBusy        = 5
	exitInterrupted = 130
)

// usageError marks errors in how rotator was called.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// exitError carries an exit code other than 1 (per-object failures,
// interrupted).
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

// exitOf is how a command that returned err ends: its exit code, the
// message to print (none for an exitError without one) and a hint.
func exitOf(err error) (code int, msg, hint string) {
	var ee exitError
	var ue usageError
	switch {
	case err == nil:
		return exitOK, "", ""
	case errors.As(err, &ee):
		return ee.code, ee.msg, ""
	case errors.As(err, &ue):
		return exitUsage, err.Error(), "run 'rotator help' for usage"
	}
	return exitFatal, err.Error(), ""
}

const usage = `rotator re-keys client-side encrypted S3 objects (S3 Encryption Client formats).

usage: rotator <command> [flags]     (rotator <command> -h for its flags)

commands:
  plan      count objects by current key, format and action; estimate requests, cost and duration
  run       bring the selected objects under the target key: rewrap each data key (--mode rewrap, the
            default; bodies are never read) or re-encrypt each object under a fresh data key
            (--mode reencrypt, for data keys that may be exposed)
  resume    finish an interrupted run (--run-id ID)
  status    show a run's state and counts (--run-id ID)
  verify    decrypt objects with a key and check their tags before the old key is retired
            (--escrow: open each object through its escrow file alone)
  escrow    wrap each object's data key a second time, under an escrow key, into its escrow
            file KEY.escrow.instruction (run --escrow does it as it rewraps)
  restore   rewrap objects from their escrow files to a new key, when the primary key is lost
  ledger    query the key-lineage ledger: lineage, counts, runs, objects, export, intents
  iam-policy  print the least-privilege IAM policy of a run (the same flags as run)
  version   print the version (and the application id AWS requests carry)
  help      print this help

examples:
  rotator plan   --source s3://bucket/prefix --to kms:alias/data-2026 --json > plan.json
  rotator run    --source s3://bucket/prefix --from kms:alias/data-2025 --to kms:alias/data-2026 --plan plan.json
  rotator run    --mode reencrypt --source s3://bucket --from kms:alias/data-2025 --to kms:alias/data-2026 --dry-run
  rotator run    --source s3://bucket --from kms:alias/data-2025 --to 'pkcs11:token=prod;object=s3-kek'
  rotator verify --source s3://bucket/prefix --key kms:alias/data-2026 --sample 1000
  rotator escrow --source s3://bucket --from kms:alias/data-2025 --escrow kms:alias/backup-2026
  rotator restore --source s3://bucket --from-escrow kms:alias/backup-2026 --to kms:alias/data-2027
  rotator ledger counts --ledger dynamodb://rotator-ledger

output (every command):
  --json              JSON lines on stdout, one schema for every command (docs/json.md)
  --log-level LEVEL   logs on stderr: debug, info (default), warn, error, off; debug adds each
                      retried AWS attempt, throttle and wait for an HSM session
  --log-format F      json, console, or auto (default): console on a terminal, JSON lines otherwise

environment:
  AWS_REGION, AWS_PROFILE, ...  the standard AWS chain (environment, shared files, SSO, instance
                                roles); AWS_ENDPOINT_URL_S3, _KMS and _DYNAMODB are honoured
  ROTATOR_PKCS11_MODULE         the PKCS#11 library of pkcs11: keys without module-path= (for
                                CloudHSM /opt/cloudhsm/lib/libcloudhsm_pkcs11.so)
  ROTATOR_PKCS11_PIN_FILE       the file holding the HSM user PIN of pkcs11: keys without
                                pin-source= (same as pin-source=file:PATH)
  ROTATOR_LOG_LEVEL, ROTATOR_LOG_FORMAT   defaults of --log-level and --log-format

Secrets (HSM PINs, local keys) are read from files or the environment named
in key specs, never from flags. The ledger is a local file by default
(rotator-ledger.db); dynamodb://TABLE?create=true creates a DynamoDB table
(schema: ledger/SCHEMA.md) on first use.

exit codes:
  0    done
  1    fatal error
  2    usage error
  3    finished with per-object failures (see the report)
  4    unfinished: some changes' outcome is not known yet; run 'rotator resume --run-id ID'
  5    busy: another process is working on the run (--wait waits for it)
  130  interrupted; resume the run with 'rotator resume --run-id ID'
`

func main() {
	setUp()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// setUp tunes the process before any command runs: the collector's room
// (gc.go), no memory-profile sample of the block reserveHeap allocates,
// and the heap advised for huge pages (hugepages.go). The CLI tests'
// child processes call it as main does, so that they run as users' do.
func setUp() {
	tuneGC()
	noMemProfile()
	reserveHeap()
}

func run(args []string, stdout, stderr io.Writer) int {
	defer startProfiles(stderr)()
	sess, err := newSession(args, stdout, stderr)
	if err == nil {
		err = dispatch(sess.context(context.Background()), args, stdout, stderr)
	}
	return sess.finish(err)
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{"no command given"}
	}
	rest := args[1:]
	switch args[0] {
	case "help", "-h", "--help":
		_, err := io.WriteString(stdout, usage)
		return err
	case "version", "--version":
		if sessionOf(ctx).json {
			return sessionOf(ctx).out.emit(versionMsg{MessageType: msgVersionMsg, Version: version(), AppID: buildinfo.AppID()})
		}
		_, err := fmt.Fprintln(stdout, "rotator", version())
		return err
	case "plan":
		return cmdPlan(ctx, rest, stdout, stderr)
	case "run":
		return cmdRun(ctx, rest, stdout, stderr)
	case "resume":
		return cmdResume(ctx, rest, stdout, stderr)
	case "status":
		return cmdStatus(ctx, rest, stdout, stderr)
	case "verify":
		return cmdVerify(ctx, rest, stdout, stderr)
	case "escrow":
		return cmdEscrow(ctx, rest, stdout, stderr)
	case "restore":
		return cmdRestore(ctx, rest, stdout, stderr)
	case "ledger":
		return cmdLedger(ctx, rest, stdout, stderr)
	case "iam-policy":
		return cmdIAMPolicy(ctx, rest, stdout, stderr)
	default:
		return usageError{fmt.Sprintf("unknown command %q", args[0])}
	}
}

func version() string { return buildinfo.Version() }
