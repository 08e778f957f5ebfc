package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		code     int
		stdout   string
		stderror string
	}{
		{[]string{"help"}, exitOK, "exit codes:", ""},
		{[]string{"help"}, exitOK, "--mode reencrypt", ""},
		{[]string{"version"}, exitOK, "rotator ", ""},
		{nil, exitUsage, "", "no command given"},
		{[]string{"frobnicate"}, exitUsage, "", `unknown command "frobnicate"`},
	} {
		var out, errb bytes.Buffer
		if got := run(tc.args, &out, &errb); got != tc.code {
			t.Errorf("rotator %v: exit %d, want %d", tc.args, got, tc.code)
		}
		if !strings.Contains(out.String(), tc.stdout) {
			t.Errorf("rotator %v: stdout %q lacks %q", tc.args, out.String(), tc.stdout)
		}
		if !strings.Contains(errb.String(), tc.stderror) {
			t.Errorf("rotator %v: stderr %q lacks %q", tc.args, errb.String(), tc.stderror)
		}
	}
}
