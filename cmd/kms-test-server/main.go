// Command kms-test-server runs the project's KMS test server (package
// kmsserver) on a loopback address, for the local stack and manual testing.
//
// usage:
//
//	kms-test-server [-addr 127.0.0.1:7071] [-region us-east-1] [-account 111122223333]
//	                [-seed FILE] [-state FILE] [-rps N] [-burst N]
//	                [-throttle-fraction F] [-throttle-seed N]
//	                [-latency 5ms] [-jitter 2ms] [-pid-file FILE]
//	                [-allow-cross-region] [-v]
//
// It logs one line when it listens, then serves until SIGINT or SIGTERM and
// shuts down gracefully. Exit codes: 0 after a clean shutdown, 1 on a fatal
// error, 2 on a usage error (including a non-loopback -addr).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/rotator-dev/rotator/kmsserver"
)

const (
	exitOK    = 0
	exitFatal = 1
	exitUsage = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

// usageError marks errors in how the command was called.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// options holds the command line.
type options struct {
	server  kmsserver.Options
	pidFile string
	verbose bool
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("kms-test-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.server.Addr, "addr", "127.0.0.1:7071", "listen `address` (loopback only)")
	fs.StringVar(&o.server.Region, "region", kmsserver.DefaultRegion, "default `region` (for requests without a credential scope)")
	fs.StringVar(&o.server.Account, "account", kmsserver.DefaultAccount, "`account` ID every caller belongs to")
	fs.StringVar(&o.server.SeedFile, "seed", "", "seed `file` of keys to create at start (JSON, see package kmsserver)")
	fs.StringVar(&o.server.StateFile, "state", "", "state `file`: loaded at start, rewritten atomically after every change")
	fs.Float64Var(&o.server.RPS, "rps", 0, "request-rate cap of the cryptographic operations per account and region (0: none)")
	fs.IntVar(&o.server.Burst, "burst", 0, "token bucket size for -rps (default: one second's worth)")
	fs.Float64Var(&o.server.ThrottleFraction, "throttle-fraction", 0, "throttle this `fraction` (0 to 1) of the cryptographic operations at random, whatever the rate (other applications sharing the quota)")
	fs.Uint64Var(&o.server.ThrottleSeed, "throttle-seed", 0, "`seed` of the random throttling (0: random)")
	fs.DurationVar(&o.server.Latency, "latency", 0, "latency added to every request")
	fs.DurationVar(&o.server.Jitter, "jitter", 0, "random extra latency, up to this `duration`")
	fs.StringVar(&o.pidFile, "pid-file", "", "write the process ID to this `file` while running")
	fs.BoolVar(&o.server.AllowCrossRegion, "allow-cross-region", false, "let key ARNs reach keys in other regions (real KMS refuses)")
	fs.BoolVar(&o.verbose, "v", false, "log one line per request (never key material or plaintext)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return o, usageError{fmt.Sprintf("unexpected arguments: %q", fs.Args())}
	}
	if err := kmsserver.CheckLoopback(o.server.Addr); err != nil {
		return o, usageError{err.Error()}
	}
	if o.server.RPS < 0 || o.server.Burst < 0 || o.server.Latency < 0 || o.server.Jitter < 0 {
		return o, usageError{"-rps, -burst, -latency and -jitter must not be negative"}
	}
	if !(o.server.ThrottleFraction >= 0 && o.server.ThrottleFraction <= 1) {
		return o, usageError{fmt.Sprintf("-throttle-fraction %g is not between 0 and 1", o.server.ThrottleFraction)}
	}
	return o, nil
}

// run serves until ctx is cancelled and returns the exit code.
func run(ctx context.Context, args []string, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "kms-test-server: error: %v\n", err)
		fmt.Fprintf(stderr, "kms-test-server: hint: run 'kms-test-server -h' for usage\n")
		return exitUsage
	}
	if o.verbose {
		o.server.Logf = func(format string, args ...any) {
			fmt.Fprintf(stderr, "kms-test-server: "+format+"\n", args...)
		}
	}
	if err := serve(ctx, o, stderr); err != nil {
		fmt.Fprintf(stderr, "kms-test-server: error: %v\n", err)
		return exitFatal
	}
	return exitOK
}

func serve(ctx context.Context, o options, stderr io.Writer) error {
	srv, err := kmsserver.Start(o.server)
	if err != nil {
		return err
	}
	defer srv.Close()
	if o.pidFile != "" {
		if err := os.WriteFile(o.pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			return fmt.Errorf("write pid file: %w", err)
		}
		defer os.Remove(o.pidFile)
	}
	fmt.Fprintf(stderr, "kms-test-server: listening on %s (region %s, account %s, rps %s, throttled at random %g, latency %s+%s, state %s)\n",
		srv.URL, srv.Region(), srv.Account(), rpsString(o.server.RPS), o.server.ThrottleFraction, o.server.Latency, o.server.Jitter, orNone(o.server.StateFile))
	select {
	case <-ctx.Done():
	case <-srv.Done():
		return fmt.Errorf("server stopped: %v", srv.Err())
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	fmt.Fprintf(stderr, "kms-test-server: stopped\n")
	return nil
}

func rpsString(rps float64) string {
	if rps <= 0 {
		return "unlimited"
	}
	return strconv.FormatFloat(rps, 'g', -1, 64)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
