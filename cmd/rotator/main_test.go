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
		{[]string{"frobnicate"}, exitUsage, "", `unknown command \"frobnicate\"`},
		{[]string{"frobnicate", "--log-format", "console"}, exitUsage, "", `rotator: error: unknown command "frobnicate"`},
		{[]string{"frobnicate", "--log-format", "console"}, exitUsage, "", `rotator: hint: run 'rotator help'`},
		{[]string{"frobnicate", "--json"}, exitUsage, `{"message_type":"exit_error","exit_code":2,"message":"unknown command \"frobnicate\"","hint":"run 'rotator help' for usage"}`, `"exit_code":2`},
		{[]string{"version", "--json"}, exitOK, `"message_type":"version"`, ""},
		{[]string{"help", "--log-level", "loud"}, exitUsage, "", `--log-level \"loud\"`},
		{[]string{"help", "--log-format", "xml"}, exitUsage, "", `--log-format \"xml\"`},
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
