// Command rotator re-keys client-side encrypted S3 objects (AWS S3
// Encryption Client formats) at scale.
//
// main maps errors to the exit codes below and nothing else: every
// subcommand lives in its own file with an options struct and a runX
// function.
//
// Exit codes (a contract for runbooks and automation):
//
//	0    done
//	1    fatal error
//	2    usage error
//	3    finished with per-object failures (see the report)
//	130  interrupted (SIGINT); the run can be resumed
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

// Exit codes.
const (
	exitOK          = 0
	exitFatal       = 1
	exitUsage       = 2
	exitPartial     = 3
	exitInterrupted = 130
)

// usageError marks errors in how rotator was called.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

const usage = `rotator re-keys client-side encrypted S3 objects.

usage: rotator <command> [flags]

commands:
  version   print the version
  help      print this help

exit codes:
  0    done
  1    fatal error
  2    usage error
  3    finished with per-object failures (see the report)
  130  interrupted; resume the run with 'rotator resume'
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	err := dispatch(args, stdout)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "rotator: error: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "rotator: hint: run 'rotator help' for usage\n")
		return exitUsage
	}
	return exitFatal
}

func dispatch(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usageError{"no command given"}
	}
	switch args[0] {
	case "help", "-h", "--help":
		_, err := io.WriteString(stdout, usage)
		return err
	case "version", "--version":
		_, err := fmt.Fprintln(stdout, "rotator", version())
		return err
	default:
		return usageError{fmt.Sprintf("unknown command %q", args[0])}
	}
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
