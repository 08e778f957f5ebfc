package logs

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Fixed field names of rotator's log lines.
const (
	RunID     = "run_id"
	Shard     = "shard"
	Bucket    = "bucket"
	Key       = "key"
	VersionID = "version_id"
	FromKey   = "from_key"
	ToKey     = "to_key"
	// Op is what was done to an object: rewrap, reencrypt, delete-version,
	// skip.
	Op = "op"
	// Outcome is how it ended: succeeded, skipped, pending, failed,
	// changed, unfinished.
	Outcome = "outcome"
	// Code is an outcome's or an error's code (AccessDenied,
	// ThrottlingException, BadEnvelope, ...).
	Code = "code"
	// Attempt numbers the attempts of one request, the first being 1.
	Attempt    = "attempt"
	DurationMS = "duration_ms"
	// Service and Operation name an AWS call (kms, ReEncrypt) or an HSM
	// (pkcs11, session).
	Service   = "service"
	Operation = "operation"
	// Throttled marks a failed attempt the service throttled.
	Throttled = "throttled"
	// ExitCode is rotator's exit code, on the line that ends a command
	// that failed.
	ExitCode = "exit_code"
	// Hint says what to do next.
	Hint = "hint"
)

// Formats of Options.Format.
const (
	FormatAuto    = "auto"
	FormatJSON    = "json"
	FormatConsole = "console"
)

// Options configure New.
type Options struct {
	// Level is trace, debug, info, warn, error or off ("" is info).
	Level string
	// Format is auto (console on a terminal, JSON otherwise), json or
	// console ("" is auto).
	Format string
	// Terminal tells whether Out is a terminal (for auto and for colours).
	Terminal bool
}

// ParseLevel reads a --log-level value.
func ParseLevel(s string) (zerolog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "":
		return zerolog.InfoLevel, nil
	case "off", "none", "disabled":
		return zerolog.Disabled, nil
	case "warning":
		return zerolog.WarnLevel, nil
	}
	l, err := zerolog.ParseLevel(strings.ToLower(s))
	if err != nil || l == zerolog.NoLevel || l > zerolog.ErrorLevel && l != zerolog.Disabled {
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn, error or off", s)
	}
	return l, nil
}

// CheckFormat checks a --log-format value.
func CheckFormat(s string) error {
	switch s {
	case "", FormatAuto, FormatJSON, FormatConsole:
		return nil
	}
	return fmt.Errorf("--log-format %q: want auto, json or console", s)
}

// JSON reports whether o writes JSON lines.
func (o Options) JSON() bool {
	switch o.Format {
	case FormatJSON:
		return true
	case FormatConsole:
		return false
	}
	return !o.Terminal
}

// New returns the logger of o writing to out.
func New(out io.Writer, o Options) (zerolog.Logger, error) {
	lvl, err := ParseLevel(o.Level)
	if err != nil {
		return zerolog.Nop(), err
	}
	if err := CheckFormat(o.Format); err != nil {
		return zerolog.Nop(), err
	}
	w := out
	if !o.JSON() {
		w = zerolog.ConsoleWriter{Out: out, NoColor: !o.Terminal, TimeFormat: "15:04:05"}
	}
	setGlobals.Do(func() {
		zerolog.TimeFieldFormat = TimeFormat
		zerolog.TimestampFunc = func() time.Time { return time.Now().UTC() }
	})
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

var setGlobals sync.Once

// TimeFormat is the format of the time field of JSON lines: RFC 3339 in
// UTC with milliseconds.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// Duration adds d as DurationMS (milliseconds, to the microsecond).
func Duration(e *zerolog.Event, d time.Duration) *zerolog.Event {
	return e.Float64(DurationMS, float64(d.Microseconds())/1000)
}
