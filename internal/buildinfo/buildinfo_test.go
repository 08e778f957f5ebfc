package buildinfo

import (
	"strings"
	"testing"
)

func TestAppIDNamesRotatorAndItsVersion(t *testing.T) {
	old := version
	t.Cleanup(func() { version = old })
	version = "v1.4.2"
	if got := AppID(); got != "rotator/v1.4.2" {
		t.Errorf("AppID() = %q, want rotator/v1.4.2", got)
	}
	version = strings.Repeat("x", 80)
	if got := AppID(); len(got) > 50 || !strings.HasPrefix(got, "rotator/x") {
		t.Errorf("AppID() = %q: want rotator/ and at most 50 characters", got)
	}
	version = ""
	if v := Version(); v == "" || v == "(devel)" {
		t.Errorf("Version() = %q: want a version or devel[-REV]", v)
	}
}
