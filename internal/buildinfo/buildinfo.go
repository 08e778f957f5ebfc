// Package buildinfo tells which rotator this is: its version, and the
// application id every AWS request carries (AppID) so that CloudTrail can
// tell rotator's calls from an application's.
//
// Terms:
//   - Version: the module version the binary was built from (v1.2.3 for
//     'go install github.com/rotator-dev/rotator/cmd/rotator@v1.2.3'), or
//     the one a release build sets with
//     -ldflags '-X github.com/rotator-dev/rotator/internal/buildinfo.version=v1.2.3';
//     a build from a work tree says "devel", with the commit when Go
//     recorded it ("devel-0123abcdef01", "-dirty" for uncommitted changes).
//   - AppID: "rotator/<version>", the SDK's application id. The SDK writes
//     it into the User-Agent as app/rotator-<version> (it turns '/' into
//     '-'); rotator adds rotator/<version> too, which is what CloudTrail's
//     userAgent field shows and what a query can match.
package buildinfo

import (
	"runtime/debug"
	"strings"
)

// version is set by release builds (-ldflags -X); empty otherwise.
var version string

// Version returns the version of this binary (see the package terms).
func Version() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	v := "devel"
	var rev string
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev != "" {
		v += "-" + rev[:min(12, len(rev))]
		if dirty {
			v += "-dirty"
		}
	}
	return v
}

// AppID returns "rotator/<version>", at most 50 characters (the SDK's
// limit for an application id).
func AppID() string {
	id := "rotator/" + Version()
	if len(id) > 50 {
		id = id[:50]
	}
	return strings.TrimRight(id, "-")
}
