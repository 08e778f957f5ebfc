package inventory

import (
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"
)

// A position is "PARTITION#CURSOR". PARTITION names the source and the
// partition (listing: bucket, root prefix, mode, delimiter, depth, scope
// and prefix; report: manifest and data file; list: file), CURSOR the
// point reached in it (listing: key and version; report: row; list: line,
// byte offset and the CRC-32C of the bytes before it). Fields are separated by spaces and query-escaped, so
// neither '#' nor ' ' occurs inside one. The first field is the format
// version.
const positionVersion = "1"

// Kinds of source in positions.
const (
	kindListing   = "l"
	kindInventory = "i"
	kindList      = "c"
)

func joinFields(fields ...string) string {
	var b strings.Builder
	for i, f := range fields {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(url.QueryEscape(f))
	}
	return b.String()
}

func splitFields(s string) ([]string, error) {
	parts := strings.Split(s, " ")
	for i, p := range parts {
		u, err := url.QueryUnescape(p)
		if err != nil {
			return nil, err
		}
		parts[i] = u
	}
	return parts, nil
}

// partitionID returns the partition of a position ("" when pos is not one).
func partitionID(pos string) string {
	i := strings.LastIndexByte(pos, '#')
	if i < 0 {
		return ""
	}
	return pos[:i]
}

// position is a decoded position.
type position struct {
	part   string   // the partition id, as encoded
	fields []string // the partition's fields after version and kind
	cursor []string
}

// parsePositions decodes the positions of Options.After that belong to
// sources of kind, keyed by partition id. Two positions for one partition
// and positions of other kinds are errors.
func parsePositions(after []string, kind string) (map[string]position, error) {
	out := make(map[string]position, len(after))
	for _, pos := range after {
		p, err := parsePosition(pos)
		if err != nil {
			return nil, err
		}
		if p.fields == nil || p.kind() != kind {
			return nil, fmt.Errorf("%w: %q belongs to another kind of source", ErrPosition, pos)
		}
		if _, dup := out[p.part]; dup {
			return nil, fmt.Errorf("%w: two positions for one partition: %q", ErrPosition, p.part)
		}
		out[p.part] = p
	}
	return out, nil
}

func parsePosition(pos string) (position, error) {
	i := strings.LastIndexByte(pos, '#')
	if i < 0 {
		return position{}, fmt.Errorf("%w: %q is not a position", ErrPosition, pos)
	}
	f, err1 := splitFields(pos[:i])
	c, err2 := splitFields(pos[i+1:])
	if err1 != nil || err2 != nil || len(f) < 2 || f[0] != positionVersion {
		return position{}, fmt.Errorf("%w: %q is not a position of this version of rotator", ErrPosition, pos)
	}
	return position{part: pos[:i], fields: f[1:], cursor: c}, nil
}

func (p position) kind() string { return p.fields[0] }

// Progress turns completions that arrive in any order into resume
// positions: one per partition, the position of the last item such that it
// and every item before it in its partition are done. Items must be begun
// in the order the source delivered them; they may be done in any order.
// It is safe for concurrent use.
//
// Memory grows with the items begun and not yet accounted for: those in
// flight and those done behind the oldest one still in flight of their
// partition.
type Progress struct {
	mu    sync.Mutex
	parts map[string]*progressPart
}

type progressPart struct {
	queue []*Ticket // begun and not yet folded into mark, in order
	mark  string
}

// Ticket is one begun item.
type Ticket struct {
	part *progressPart
	pos  string
	done bool
	fold func()
}

// NewProgress starts tracking from the positions a run resumed from (nil
// for a fresh run), so that a partition with nothing new keeps its
// position.
func NewProgress(after []string) *Progress {
	p := &Progress{parts: map[string]*progressPart{}}
	for _, pos := range after {
		if id := partitionID(pos); id != "" {
			p.parts[id] = &progressPart{mark: pos}
		}
	}
	return p
}

// Begin records that it is being processed. Call it in delivery order.
func (p *Progress) Begin(it Item) *Ticket {
	id := partitionID(it.Position)
	if id == "" {
		return &Ticket{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	part := p.parts[id]
	if part == nil {
		part = &progressPart{}
		p.parts[id] = part
	}
	t := &Ticket{part: part, pos: it.Position}
	part.queue = append(part.queue, t)
	return t
}

// Done records that the item of t needs no more work (succeeded, skipped or
// failed and reported). Calling it again has no effect.
func (p *Progress) Done(t *Ticket) { p.DoneThen(t, nil) }

// DoneThen is Done, and calls fold once the item of t is behind the resume
// positions: at once, or when the items begun before it in its partition
// are done. fold runs under the lock Snapshot holds, so what the folds
// count is what Snapshot's positions account for (a resumed run counts
// each item once). fold must not call p.
func (p *Progress) DoneThen(t *Ticket, fold func()) {
	if t == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if t.done {
		return
	}
	t.done, t.fold = true, fold
	part := t.part
	if part == nil {
		// An item without a position: nothing to resume after.
		if fold != nil {
			fold()
		}
		return
	}
	for len(part.queue) > 0 && part.queue[0].done {
		q := part.queue[0]
		part.mark = q.pos
		if q.fold != nil {
			q.fold()
		}
		part.queue[0] = nil
		part.queue = part.queue[1:]
	}
}

// Snapshot calls f with the resume positions (as Positions returns them)
// under the lock the folds of DoneThen run under. f must not call p.
func (p *Progress) Snapshot(f func(positions []string)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p.positions())
}

// Positions returns the resume positions, sorted: Options.After of the run
// that resumes this one.
func (p *Progress) Positions() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.positions()
}

func (p *Progress) positions() []string {
	out := make([]string, 0, len(p.parts))
	for _, part := range p.parts {
		if part.mark != "" {
			out = append(out, part.mark)
		}
	}
	sort.Strings(out)
	return out
}
