package awsx

import (
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"

	"github.com/rotator-dev/rotator/internal/buildinfo"
)

// WithAppID makes every request of the clients built from cfg carry
// rotator's application id: the SDK's AppID, which it writes into the
// User-Agent as app/rotator-<version>, and rotator/<version> itself, so
// that CloudTrail (userAgent) tells rotator's calls from an application's
// under the same role. Load applies it; call it on an aws.Config built
// otherwise.
func WithAppID(cfg aws.Config) aws.Config {
	cfg.AppID = buildinfo.AppID()
	cfg.APIOptions = append(slices.Clip(cfg.APIOptions),
		awsmiddleware.AddUserAgentKeyValue("rotator", buildinfo.Version()))
	return cfg
}
