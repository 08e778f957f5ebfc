package metrics

import (
	"sync"

	"github.com/rotator-dev/rotator/pipeline"
)

// maxCodes bounds the distinct code label values of a run.
const maxCodes = 100

// maxCodeLen bounds a code label value's length.
const maxCodeLen = 64

// other stands for a label value outside its bounded set.
const other = "other"

// labelSet admits at most max distinct values, each shaped like an error
// code (letters, digits, '_', '.', '-'; at most maxCodeLen bytes): an
// ErrorCode that is anything else (a message, a path) is never exported.
type labelSet struct {
	mu   sync.Mutex
	max  int
	seen map[string]bool
}

func (s *labelSet) label(v string) string {
	if v == "" {
		return ""
	}
	if !codeShaped(v) {
		return other
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen[v] {
		return v
	}
	if len(s.seen) >= s.max {
		return other
	}
	if s.seen == nil {
		s.seen = map[string]bool{}
	}
	s.seen[v] = true
	return v
}

func codeShaped(v string) bool {
	if len(v) > maxCodeLen {
		return false
	}
	for _, c := range []byte(v) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '.', c == '-':
		default:
			return false
		}
	}
	return true
}

func statusLabel(s pipeline.Status) string {
	switch s {
	case pipeline.StatusSucceeded, pipeline.StatusSkipped, pipeline.StatusChanged, pipeline.StatusFailed,
		pipeline.StatusPending, pipeline.StatusUnfinished:
		return string(s)
	}
	return other
}

func actionLabel(a string) string {
	switch a {
	case "", pipeline.ActionRewrap, pipeline.ActionReencrypt, pipeline.ActionDeleteVersion, pipeline.ActionSkip:
		return a
	}
	return other
}
