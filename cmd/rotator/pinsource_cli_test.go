package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// rotatorBinary runs the test binary as rotator (see TestMain) in a
// temporary directory, with nothing but args, and returns its exit code and
// everything it printed.
func rotatorBinary(t *testing.T, args ...string) (int, string) {
	t.Helper()
	c := exec.Command(os.Args[0], args...)
	c.Env = append(os.Environ(), envMain+"=1")
	c.Dir = t.TempDir()
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	err := c.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, out.String()
}

// A PIN typed where its source belongs (pin-source=PIN instead of
// pin-source=file:/path) is refused as a usage error and never printed, by
// any command, whichever flag carries it.
func TestCLIPINTypedAsPINSourceIsNeverPrinted(t *testing.T) {
	const pin = "1234abcdS3cret" // stands for the user's PIN
	bad := []string{
		"pkcs11:token=prod;object=kek?module-path=/opt/cloudhsm/lib/libcloudhsm_pkcs11.so&pin-source=" + pin,
		"pkcs11:token=prod;object=kek?pin-source=env:" + pin + "!",
		"pkcs11:token=prod;object=kek?pin-source=file:" + pin, // not a path
		"pkcs11:token=prod;object=kek;pin-source=" + pin,      // in the path part
		"pkcs11:token=prod?pin-source=" + pin,                 // and no object
	}
	const good = "kms:alias/rotator-test"
	for _, spec := range bad {
		for _, args := range [][]string{
			{"run", "--source", "s3://bucket", "--to", spec, "--from", good},
			{"run", "--source", "s3://bucket", "--to", good, "--from", spec, "--json"},
			{"run", "--source", "s3://bucket", "--mode", "reencrypt", "--to", spec, "--from", spec, "--dry-run"},
			{"plan", "--source", "s3://bucket", "--to", spec},
			{"plan", "--source", "s3://bucket", "--to", good, "--from", spec, "--json"},
			{"verify", "--source", "s3://bucket", "--key", spec},
		} {
			code, out := rotatorBinary(t, args...)
			if strings.Contains(out, pin) || strings.Contains(out, pin[:8]) {
				t.Errorf("rotator %s printed the PIN:\n%s", args[0], out)
			}
			if code != exitUsage {
				t.Errorf("rotator %s exited %d, want %d (usage):\n%s", args[0], code, exitUsage, out)
			}
			if !strings.Contains(out, "pin-source") {
				t.Errorf("rotator %s does not say which attribute is wrong:\n%s", args[0], out)
			}
		}
	}
}
