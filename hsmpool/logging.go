package hsmpool

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/rotator-dev/rotator/internal/logs"
)

// logWait logs, at debug level through the logger of ctx (zerolog.Ctx),
// an Acquire that found every session busy and waited: how long, for
// which token and pool size, and how the wait ended. The package logs
// nothing else (errors are returned), and nothing without a logger in the
// context.
func (p *Pool) logWait(ctx context.Context, waited time.Duration, err error) {
	e := zerolog.Ctx(ctx).Debug()
	if !e.Enabled() {
		return
	}
	e.Str(logs.Service, "pkcs11").Str(logs.Operation, "acquire session").Str("token", p.token).Int("sessions", p.cfg.Size)
	logs.Duration(e, waited).Err(err).Msg("waited for an HSM session: all were busy")
}
