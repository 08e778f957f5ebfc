package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/rotator-dev/rotator/internal/logs"
	"github.com/rotator-dev/rotator/pipeline"
)

// progressUI shows a run's progress: a line redrawn in place on a
// terminal, status messages every second with --json, or nothing (output
// redirected, --no-progress); and it reports every object outcome: a log
// line each, and an object message with --json (for the outcomes that
// need attention, or every one with --json-objects all).
type progressUI struct {
	sess    *session
	log     zerolog.Logger
	json    bool
	bar     bool
	all     bool // object messages for every outcome
	runID   string
	stats   *pipeline.Stats
	verb    string // what a success did: "rewrapped" or "re-encrypted"
	command string
	// total, when set, returns the number of objects the run will list
	// before the listing has finished, and where it comes from (plan,
	// inventory); ok is false while not known.
	total func() (n int64, source string, ok bool)
	width func() int

	mu       sync.Mutex
	began    time.Time
	doneAt0  int64 // objects done before this process (a resumed run)
	lastLine string
}

func newProgressUI(sess *session, log zerolog.Logger, o outputFlags, s *pipeline.Stats) *progressUI {
	u := &progressUI{sess: sess, log: log, json: o.json, all: o.jsonObjects == "all", stats: s, verb: "rewrapped", command: "run"}
	u.bar = !o.json && !o.noProgress && sess.terminal
	u.width = func() int { return termWidth(sess.sink.w) }
	return u
}

// note tells of an event of the run (an interrupt): a log line, and a
// status message with --json.
func (u *progressUI) note(msg string) {
	u.log.Warn().Msg(msg)
	if u.json {
		st := u.status()
		st.Message = msg
		_ = u.sess.out.emit(st)
	}
}

// outcome is called for every object.
func (u *progressUI) outcome(o pipeline.Outcome) {
	logOutcome(u.log, o)
	if u.json && (u.all || needsAttention(o.Status)) {
		_ = u.sess.out.emit(objectOf(u.runID, o))
	}
}

// needsAttention: the outcomes an operator must look at.
func needsAttention(s pipeline.Status) bool {
	return s == pipeline.StatusFailed || s == pipeline.StatusChanged || s == pipeline.StatusUnfinished
}

// logOutcome writes an object's log line: warn for the outcomes that need
// attention, info for the others.
func logOutcome(log zerolog.Logger, o pipeline.Outcome) {
	e := log.Info()
	if needsAttention(o.Status) {
		e = log.Warn()
	}
	if !e.Enabled() {
		return
	}
	e = e.Str(logs.Bucket, o.Bucket).Str(logs.Key, o.Key)
	if o.VersionID != "" {
		e = e.Str(logs.VersionID, o.VersionID)
	}
	if o.Action != "" {
		e = e.Str(logs.Op, o.Action)
	}
	e = e.Str(logs.Outcome, string(o.Status))
	if o.ErrorCode != "" {
		e = e.Str(logs.Code, o.ErrorCode)
	}
	if o.FromKey != "" {
		e = e.Str(logs.FromKey, o.FromKey)
	}
	if o.ToKey != "" {
		e = e.Str(logs.ToKey, o.ToKey)
	}
	if o.Duration > 0 {
		e = logs.Duration(e, o.Duration)
	}
	msg := o.Message
	if msg == "" {
		msg = string(o.Status)
	}
	e.Msg(msg)
}

// start shows progress every second until the returned function is
// called.
func (u *progressUI) start() func() {
	u.began = time.Now()
	u.doneAt0 = u.stats.Done.Load()
	done := make(chan struct{})
	var wg sync.WaitGroup
	if u.bar || u.json {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					u.tick()
				case <-done:
					return
				}
			}
		}()
	}
	return func() {
		close(done)
		wg.Wait()
		if u.bar {
			u.tick()
			u.sess.sink.done()
		}
	}
}

// progress is a snapshot of a run's progress.
type progress struct {
	elapsed     time.Duration
	listed      int64
	listingDone bool
	done        int64
	total       int64  // 0: not known
	source      string // of total: listing, plan, inventory
	rate        float64
	eta         time.Duration // -1: not known
	c           counts
}

func (u *progressUI) snapshot() progress {
	s := u.stats
	p := progress{elapsed: time.Since(u.began), listed: s.Listed.Load(), listingDone: s.ListingDone.Load(), done: s.Done.Load(), eta: -1, c: countsOf(s)}
	if sec := p.elapsed.Seconds(); sec > 0 {
		p.rate = float64(p.done-u.doneAt0) / sec
	}
	switch {
	case p.listingDone:
		p.total, p.source = p.listed, "listing"
	case u.total != nil:
		if n, src, ok := u.total(); ok {
			p.total, p.source = max(n, p.listed), src
		}
	}
	if p.total > 0 && p.rate > 0 && p.done < p.total {
		p.eta = time.Duration(float64(max(p.total-p.done, 0)) / p.rate * float64(time.Second)).Round(time.Second)
	}
	return p
}

func (u *progressUI) status() statusMsg {
	p := u.snapshot()
	m := statusMsg{MessageType: msgStatus, RunID: u.runID, Phase: "listing", SecondsElapsed: math.Round(p.elapsed.Seconds()*1000) / 1000,
		ObjectsListed: p.listed, ListingDone: p.listingDone, ObjectsDone: p.done, ObjectsTotal: p.total, TotalSource: p.source,
		ObjectsPerSecond: math.Round(p.rate*100) / 100, Counts: p.c}
	if p.listingDone {
		m.Phase = "processing"
	}
	if p.total > 0 {
		m.PercentDone = math.Round(float64(p.done)/float64(p.total)*1000) / 10
	}
	if p.eta >= 0 {
		m.ETASeconds = p.eta.Seconds()
	}
	return m
}

func (u *progressUI) tick() {
	if u.json {
		_ = u.sess.out.emit(u.status())
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.lastLine = progressLine(u.snapshot(), u.width())
	u.sess.sink.draw(u.lastLine)
}

// progressLine renders p in fewer than width columns (a line as wide as
// the terminal wraps on some terminals), dropping detail as width shrinks:
// listing and processing apart, a bar and an ETA once the total is known.
func progressLine(p progress, width int) string {
	limit := max(width-1, 10)
	listing := ""
	if !p.listingDone {
		listing = "listing: " + num(p.listed) + " found"
		if p.total > 0 {
			listing += " of ~" + num(p.total) + " (" + p.source + ")"
		}
	}
	doneOf := num(p.done)
	pct := ""
	if p.total > 0 {
		doneOf += "/" + num(p.total)
		pct = fmt.Sprintf(" %d%%", int(float64(p.done)*100/float64(max(p.total, 1))))
	}
	rate := num(int64(math.Round(p.rate))) + "/s"
	eta := ""
	if p.eta >= 0 {
		eta = "ETA " + p.eta.String()
	}
	long := []string{"ok " + num(p.c.Succeeded), "skipped " + num(p.c.Skipped)}
	short := []string{"ok " + num(p.c.Succeeded), "skip " + num(p.c.Skipped)}
	for _, f := range []struct {
		n          int64
		long, abbr string
	}{{p.c.Pending, "pending", "pend"}, {p.c.Failed, "failed", "fail"}, {p.c.Changed, "changed", "chg"}, {p.c.Unfinished, "unfinished", "unf"}} {
		if f.n > 0 {
			long = append(long, f.long+" "+num(f.n))
			short = append(short, f.abbr+" "+num(f.n))
		}
	}
	build := func(barWidth int, withListing, withRate bool, cs []string) string {
		var parts []string
		if withListing && listing != "" {
			parts = append(parts, listing, "|")
		}
		if barWidth > 0 && p.total > 0 {
			fill := int(float64(barWidth) * float64(min(p.done, p.total)) / float64(p.total))
			parts = append(parts, "["+strings.Repeat("#", fill)+strings.Repeat(".", barWidth-fill)+"]")
		}
		parts = append(parts, "done "+doneOf+pct)
		if withRate {
			parts = append(parts, rate)
		}
		if eta != "" {
			parts = append(parts, eta)
		}
		parts = append(parts, strings.Join(cs, " "))
		return strings.Join(parts, "  ")
	}
	for _, try := range []struct {
		bar           int
		listing, rate bool
		compactCounts bool
	}{
		{30, true, true, false}, {20, true, true, false}, {10, true, true, true}, {0, true, true, true},
		{0, true, false, true}, {10, false, true, true}, {0, false, true, true}, {0, false, false, true},
	} {
		cs := long
		if try.compactCounts {
			cs = short
		}
		if l := build(try.bar, try.listing, try.rate, cs); len(l) <= limit {
			return l
		}
	}
	l := build(0, false, false, short)
	return l[:limit]
}

// num formats n with thousands separators.
func num(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// summary prints the run's result: text on stdout, or a summary message;
// and a log line at info.
func (u *progressUI) summary(state, report string, dryRun bool, took time.Duration, err error) {
	s := u.stats
	m := summaryMsg{MessageType: msgSummary, Command: u.command, RunID: u.runID, State: state, DryRun: dryRun, Report: report,
		SecondsElapsed: math.Round(took.Seconds()*1000) / 1000, ObjectsListed: s.Listed.Load(), ObjectsDone: s.Done.Load(), Counts: countsOf(s)}
	if err != nil {
		m.Error = err.Error()
	}
	e := u.log.Info().Str("state", state).Int64("objects_listed", m.ObjectsListed).Int64("objects_done", m.ObjectsDone).
		Interface("counts", m.Counts).Str("report", report)
	logs.Duration(e, took).Msg("run finished")
	if u.json {
		_ = u.sess.out.emit(m)
		return
	}
	w := u.sess.stdout
	fmt.Fprintf(w, "run %s: %d objects in %s: %d %s, %d skipped, %d pending, %d failed, %d changed by others",
		u.runID, s.Done.Load(), took.Round(time.Millisecond), s.Succeeded.Load()-s.Deleted.Load(), u.verb, s.Skipped.Load(), s.Pending.Load(),
		s.Failed.Load(), s.Changed.Load())
	if n := s.Deleted.Load(); n > 0 {
		fmt.Fprintf(w, ", %d older versions deleted", n)
	}
	if n := s.Left.Load(); n > 0 {
		fmt.Fprintf(w, ", %d older versions under a --from key left", n)
	}
	if n := s.Unfinished.Load(); n > 0 {
		fmt.Fprintf(w, ", %d unfinished", n)
	}
	fmt.Fprintf(w, "\nreport: %s\n", report)
}
