package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/rs/zerolog"
	"golang.org/x/term"

	"github.com/rotator-dev/rotator/internal/logs"
)

// Environment variables that set the defaults of --log-level and
// --log-format (for containers and schedulers, where flags are fixed in a
// job definition).
const (
	envLogLevel  = "ROTATOR_LOG_LEVEL"
	envLogFormat = "ROTATOR_LOG_FORMAT"
)

// session is one invocation's output: stdout (text, or --json messages),
// and stderr, shared by the log lines and the progress line through one
// sink so that neither tears the other.
type session struct {
	stdout io.Writer
	out    *jsonLines
	sink   *sink
	// terminal: stderr is a terminal.
	terminal bool
	opts     logs.Options
	levelSet bool // --log-level or ROTATOR_LOG_LEVEL given
	json     bool // --json given
	log      zerolog.Logger
}

type sessionKey struct{}

// sessionOf returns the session of ctx (one that logs nowhere if none).
func sessionOf(ctx context.Context) *session {
	if s, ok := ctx.Value(sessionKey{}).(*session); ok {
		return s
	}
	return &session{stdout: io.Discard, out: &jsonLines{w: io.Discard}, sink: &sink{w: io.Discard}, log: zerolog.Nop()}
}

// newSession reads the output flags from args before the command parses
// them (so that its own errors are logged as asked), and builds the
// logger. A bad --log-level or --log-format is returned as a usage error
// along with a working session.
func newSession(args []string, stdout, stderr io.Writer) (*session, error) {
	s := &session{stdout: stdout, out: &jsonLines{w: stdout}, sink: &sink{w: stderr}, terminal: isTerminal(stderr)}
	s.opts = logs.Options{Level: os.Getenv(envLogLevel), Format: os.Getenv(envLogFormat), Terminal: s.terminal}
	s.levelSet = s.opts.Level != ""
	noProgress := false
	for i := 1; i < len(args); i++ {
		name, val, hasVal := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		if !strings.HasPrefix(args[i], "-") {
			continue
		}
		next := func() string {
			if hasVal {
				return val
			}
			if i+1 < len(args) {
				i++
				return args[i]
			}
			return ""
		}
		switch name {
		case "log-level":
			s.opts.Level, s.levelSet = next(), true
		case "log-format":
			s.opts.Format = next()
		case "json":
			s.json = !hasVal || val == "true" || val == "1"
		case "no-progress":
			noProgress = !hasVal || val == "true" || val == "1"
		}
	}
	// The progress line shows the counts on a terminal: there, object
	// outcomes are logged only when they need attention, unless asked.
	cmd := ""
	if len(args) > 0 {
		cmd = args[0]
	}
	if !s.levelSet && s.terminal && !s.json && !noProgress && (cmd == "run" || cmd == "resume") {
		s.opts.Level = "warn"
	}
	var err error
	if s.log, err = logs.New(s.sink, s.opts); err != nil {
		s.opts = logs.Options{Terminal: s.terminal}
		s.log, _ = logs.New(s.sink, s.opts)
		return s, usageError{err.Error()}
	}
	return s, nil
}

// context returns ctx carrying the session and its logger.
func (s *session) context(ctx context.Context) context.Context {
	return s.log.WithContext(context.WithValue(ctx, sessionKey{}, s))
}

// finish reports err (how the command ended) and returns the exit code:
// an exit_error message with --json, and a log line (JSON), or on a
// console the classic 'rotator: error: ...' lines.
func (s *session) finish(err error) int {
	if err == nil {
		return exitOK
	}
	code, msg, hint := exitOf(err)
	if s.json {
		m := msg
		if m == "" {
			m = fmt.Sprintf("exit %d", code)
		}
		_ = s.out.emit(exitErrorMsg{MessageType: msgExitError, ExitCode: code, Message: m, Hint: hint})
	}
	if msg == "" {
		return code
	}
	if !s.opts.JSON() {
		if code == exitFatal || code == exitUsage {
			fmt.Fprintf(s.sink, "rotator: error: %s\n", msg)
		} else {
			fmt.Fprintf(s.sink, "rotator: %s\n", msg)
		}
		if hint != "" {
			fmt.Fprintf(s.sink, "rotator: hint: %s\n", hint)
		}
		return code
	}
	e := s.log.Error()
	switch code {
	case exitPartial, exitUnfinished, exitInterrupted:
		e = s.log.Warn()
	}
	e = e.Int(logs.ExitCode, code)
	if hint != "" {
		e = e.Str(logs.Hint, hint)
	}
	e.Msg(msg)
	return code
}

// isTerminal reports whether w is a terminal (not merely a character
// device: /dev/null is one too).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// termWidth returns the width of the terminal w is, or 80.
func termWidth(w io.Writer) int {
	if f, ok := w.(*os.File); ok {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 0 {
			return cols
		}
	}
	return 80
}

// sink is stderr, shared by log lines and the progress line: a log line
// first erases the progress line, which is drawn again after it, so that
// the progress line stays the last line and is redrawn in place.
type sink struct {
	mu   sync.Mutex
	w    io.Writer
	line string // the progress line on screen ("" if none)
}

// eraseLine moves to the start of the line and clears it.
const eraseLine = "\r\x1b[K"

func (s *sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.line != "" {
		_, _ = io.WriteString(s.w, eraseLine)
	}
	n, err := s.w.Write(p)
	if s.line != "" {
		_, _ = io.WriteString(s.w, s.line)
	}
	return n, err
}

// draw replaces the progress line with line (no line break: it must fit
// the terminal's width, or the terminal wraps it and the next draw starts
// a line lower).
func (s *sink) draw(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _ = io.WriteString(s.w, eraseLine+line)
	s.line = line
}

// done ends the progress line, leaving it on screen.
func (s *sink) done() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.line != "" {
		_, _ = io.WriteString(s.w, "\n")
	}
	s.line = ""
}
