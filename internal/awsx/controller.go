package awsx

import (
	"math"
	"time"
)

// Tuning of the controller (see the package documentation).
const (
	// A window closes after windowTime and windowAttempts, whichever is
	// later, or after windowMaxTime with at least windowMinAttempts.
	windowTime        = 500 * time.Millisecond
	windowAttempts    = 100
	windowMaxTime     = 10 * time.Second
	windowMinAttempts = 20
	// A window closes early (after a fifth of windowTime) when
	// overloadThrottles of its attempts, and more than half, were
	// throttled: no need to measure longer to know that the rate is far
	// too high.
	overloadThrottles = 50
	// A throttled fraction is above another when the gap exceeds both
	// minGap and zScore standard errors (two-proportion z-test).
	zScore = 3.0
	minGap = 0.02
	// A cut's verdict (cap or background) is taken when the marginal yield
	// is at least zVerdict standard errors away from the midpoint between
	// the two; otherwise the window after the cut is extended, up to
	// maxPool more windows, and then the midpoint decides.
	zVerdict = 1.5
	maxPool  = 3
	// Raise the rate by fastStep per window, or by slowStep once above the
	// success rate of the last cut that proved to be a cap.
	fastStep = 1.25
	slowStep = 1.05
	// A cut lowers the rate to at most cutAtMost times the measured rate,
	// so that the window after it is at a rate distinct enough to compare.
	cutAtMost = 0.85
	// A cut whose window runs at more than 1/yieldSpan of the rate cut
	// from did not bind; marginal yields are judged only between windows
	// whose rates differ by at least yieldSpan times.
	yieldSpan = 1.15
	// Every retestEvery windows under background throttling (retestUnknown
	// when no background is known), the rate is cut to testCut times the
	// measured rate, to check that the throttling still does not depend on
	// it. A background is also confirmed by a
	// second such cut before it is believed.
	retestEvery   = 20
	retestUnknown = 4
	testCut       = 0.75
	// After a cut found a cap, with no background known, a fraction
	// above unexplained is cut again at once; below it, the rate holds
	// and the next test tells (a background of up to that much is not
	// mistaken for a cap).
	unexplained = 0.5
	// One cut divides the rate by maxCut at most (a window of nothing but
	// throttles says how far down to go only that far).
	maxCut = 10
	// The rate never goes below minRate attempts per second.
	minRate = 1.0
)

// window is the outcome of the attempts answered in one measurement window.
type window struct {
	n         int           // attempts
	throttled int           // of which throttled
	dur       time.Duration // how long the window lasted
	valid     bool
}

// rate is the rate of attempts answered, per second.
func (w window) rate() float64 { return float64(w.n) / w.dur.Seconds() }

func (w window) frac() float64 { return float64(w.throttled) / float64(w.n) }

// success is the rate of attempts that were not throttled.
func (w window) success() float64 { return float64(w.n-w.throttled) / w.dur.Seconds() }

// successVar is the variance of success as a binomial count would give it
// (an upper bound under a cap, whose successes vary less).
func (w window) successVar() float64 {
	f := w.frac()
	return float64(w.n) * f * (1 - f) / (w.dur.Seconds() * w.dur.Seconds())
}

// merge pools two windows at the same limit.
func merge(a, b window) window {
	return window{n: a.n + b.n, throttled: a.throttled + b.throttled, dur: a.dur + b.dur, valid: true}
}

// above reports whether w's throttled fraction is significantly above b's
// (a two-proportion z-test, plus a minimum gap).
func (w window) above(b window) bool {
	gap := w.frac() - b.frac()
	if gap <= minGap {
		return false
	}
	pooled := float64(w.throttled+b.throttled) / float64(w.n+b.n)
	se := math.Sqrt(pooled * (1 - pooled) * (1/float64(w.n) + 1/float64(b.n)))
	return gap > zScore*se
}

// verdict of a cut.
type verdict int

const (
	inconclusive verdict = iota
	rateCap              // the attempts cut were mostly throttled
	background           // the attempts cut succeeded as often as the others
)

// judgeCut compares the window before a cut (hi) with the one after it (lo)
// by the marginal yield: the success rate of the attempts cut, (hi's
// successes - lo's) / (hi's attempts - lo's). Under a rate cap the
// successes stay at the cap whatever the attempts, so the attempts cut were
// all throttled: yield 0. Under background throttling they succeeded as
// often as the others: yield 1 - lo's fraction. The verdict is the nearer
// one, when it is clear of the midpoint by zVerdict standard errors.
func judgeCut(hi, lo window) (verdict, bool) {
	dr := hi.rate() - lo.rate()
	m := (hi.success() - lo.success()) / dr
	mid := (1 - lo.frac()) / 2
	se := math.Sqrt(hi.successVar()+lo.successVar()) / dr
	v := background
	if m < mid || hi.above(lo) {
		v = rateCap
	}
	return v, math.Abs(m-mid) > zVerdict*se || hi.above(lo)
}

// controller sets the adaptive rate from the outcomes of attempts, one
// window at a time, all times given by the caller (so tests drive it with a
// fake clock). It is not safe for concurrent use (Pacer locks it).
type controller struct {
	limit float64 // attempts per second; +Inf: not limited

	// start is when the current window starts (zero before the first
	// attempt): after a change of the limit, once the attempts granted
	// under the old one have been sent (restart).
	start time.Time
	cur   window // counts of the current window

	// anchor is the window the current one is compared with: the first one
	// at the rate the raises started from (after a cut, a hold or at the
	// first throttle), so that a fraction that creeps up with the rate is
	// measured against where it started, not against the previous step.
	anchor window
	// cutFrom is the window that triggered the last cut, while the window
	// after it (at the lower rate) has not been judged; pending holds that
	// window while it is extended (pooled times) for a clear verdict.
	cutFrom window
	pending window
	pooled  int
	// restore is the rate measured before the cuts that are being tested:
	// where the rate goes back to if they prove to be needless.
	restore float64
	// background is the window whose throttled fraction proved not to
	// depend on our rate (it did not fall when we slowed down, twice); the
	// rate is never cut below what that fraction explains.
	background window
	// confirmed: one cut has already found the attempts it removed not
	// wasted; a second such finding establishes the background.
	confirmed bool
	// sinceTest counts the windows since the background was last tested.
	sinceTest int
	// capRate is the success rate after the last cut that proved to be a
	// cap, 0 when none: raises above it are gentle.
	capRate float64

	// trace, if set, receives every judged window and the limit after it
	// (tests).
	trace func(w window, limit float64, why string)
}

func newController() controller { return controller{limit: math.Inf(1)} }

// observe counts one answered attempt at now and reports whether the limit
// changed.
func (c *controller) observe(now time.Time, throttled bool) bool {
	if c.start.IsZero() {
		c.start = now
	}
	if now.Before(c.start) {
		return false // sent before the last change took effect
	}
	c.cur.n++
	if throttled {
		c.cur.throttled++
	}
	dt := now.Sub(c.start)
	full := dt >= windowTime && c.cur.n >= windowAttempts || dt >= windowMaxTime && c.cur.n >= windowMinAttempts
	overloaded := c.cur.throttled >= overloadThrottles && 2*c.cur.throttled > c.cur.n && dt >= windowTime/5
	if !full && !overloaded {
		return false
	}
	w := c.cur
	w.dur, w.valid = dt, true
	c.cur, c.start = window{}, now
	before := c.limit
	why := c.judge(w)
	if c.trace != nil {
		c.trace(w, c.limit, why)
	}
	return c.limit != before
}

// restart starts a new window at t, discarding the current one: answers
// that arrive before t are not counted.
func (c *controller) restart(t time.Time) { c.start, c.cur = t, window{} }

// judge decides the limit after window w and says why.
func (c *controller) judge(w window) string {
	c.sinceTest++
	switch {
	case math.IsInf(c.limit, 1) && w.throttled == 0:
		return "not limited"
	case math.IsInf(c.limit, 1):
		// The first throttles: assume they are ours, and cut.
		c.restore = w.rate()
		c.cut(w)
		return "first throttles: cut"
	case c.cutFrom.valid:
		return c.afterCut(w)
	case c.anchor.valid && w.above(c.anchor):
		// The fraction rose above what it was at the anchor's (lower or
		// equal) rate: the throttling grows with our rate, or someone took
		// more of the quota. Cut; the next window tells which.
		c.restore = w.rate()
		c.cut(w)
		return "fraction rose above the anchor's: cut"
	case c.anchor.valid && w.rate() >= yieldSpan*c.anchor.rate():
		// Raised well above the anchor: were the attempts added mostly
		// throttled?
		if v, sure := judgeCut(w, c.anchor); v == rateCap && sure {
			c.restore = w.rate()
			c.cut(w)
			return "the attempts added were wasted: cut"
		}
		c.raise(w)
		return "raise"
	case w.frac() > minGap && (c.sinceTest >= retestEvery || !c.background.valid && c.sinceTest >= retestUnknown):
		// Check now and then that throttling which goes on does not
		// depend on our rate (soon, if no background explains it): slow
		// down for one window.
		c.limit = max(minRate, testCut*w.rate())
		c.cutFrom, c.anchor, c.sinceTest, c.confirmed, c.restore = w, window{}, 0, true, w.rate()
		return "test the background: cut"
	default:
		if !c.anchor.valid {
			c.anchor = w
		}
		c.raise(w)
		return "raise"
	}
}

// afterCut judges the window after a cut.
func (c *controller) afterCut(w window) string {
	from := c.cutFrom
	if c.pending.valid {
		w = merge(c.pending, w)
	}
	c.cutFrom, c.pending = window{}, window{}
	pooled := c.pooled
	c.pooled = 0
	switch {
	case w.rate()*yieldSpan > from.rate():
		// The cut did not bind: about as many attempts were sent (pauses
		// between retries set the pace). Cut from the measured rate.
		c.cut(w)
		return "cut did not bind: cut from the measured rate"
	case w.above(from):
		// We slowed down and the fraction rose: the conditions changed
		// (a quota's bucket ran dry, or others took more of it). Cut
		// again, and compare the next window with this one.
		c.cut(w)
		return "the fraction rose although we slowed down: cut again"
	}
	v, sure := judgeCut(from, w)
	if !sure && w.frac() > unexplained && !(c.background.valid && !w.above(c.background)) {
		// Most attempts are still throttled, and no background explains
		// it: whatever the cause, slowing down more is the safe move.
		c.cut(w)
		return "cut: not clear, but still mostly throttled: cut again"
	}
	if !sure && pooled < maxPool {
		// Too few attempts to tell: stay at this rate for another window
		// and judge the two together.
		c.cutFrom, c.pending, c.pooled = from, w, pooled+1
		return "cut: not clear yet, measure longer"
	}
	if v == rateCap {
		// The attempts cut were mostly throttled: the throttling follows
		// our rate, a cap, whose success rate this is.
		c.capRate, c.confirmed, c.sinceTest, c.restore = w.success(), false, 0, 0
		if c.background.valid && c.background.above(w) {
			c.background = window{} // it was not background after all
		}
		if c.background.valid && w.above(c.background) || !c.background.valid && w.frac() > unexplained {
			c.cut(w)
			return "the attempts cut were wasted, still above background: cut again"
		}
		// Hold: the next window, at the same rate, is the anchor to raise
		// from (this one may still carry throttles of the higher rate).
		c.anchor = window{}
		return "the attempts cut were wasted: hold"
	}
	if !c.confirmed {
		// The attempts cut would have succeeded as often as the others.
		// The window cut from may have been lucky (a quota's bucket that
		// let a burst through, a cap that fell in its middle): slow down
		// once more to be sure.
		c.limit = max(minRate, min(c.limit, testCut*w.rate()))
		c.cutFrom, c.anchor, c.confirmed = w, window{}, true
		return "the attempts cut were not wasted: cut again, to confirm"
	}
	// Twice: the throttling does not depend on our rate. Go back to the
	// rate before the cuts, and do not cut below this fraction again
	// (until a test says otherwise).
	c.background, c.sinceTest, c.confirmed = w, 0, false
	c.anchor = w
	c.raise(w)
	c.limit = max(c.limit, fastStep*c.restore)
	c.restore = 0
	return "the attempts cut were not wasted: background, back up"
}

// cut lowers the limit to the rate at which w's successes would have come
// with the background fraction (0 when none is known): under a cap, the
// cap itself.
func (c *controller) cut(w window) {
	bg := 0.0
	if c.background.valid {
		bg = c.background.frac()
	}
	target := max(w.success()/(1-bg), w.rate()/maxCut)
	c.limit = max(minRate, min(c.limit, target, cutAtMost*w.rate()))
	c.cutFrom, c.anchor = w, window{}
}

// raise lifts the limit by one step, fast below a known cap and gently
// above it, but never beyond twice the measured rate: when the limit does
// not bind (fewer requests are made than it allows), raising it teaches
// nothing.
func (c *controller) raise(w window) {
	if math.IsInf(c.limit, 1) {
		return
	}
	if c.capRate > 0 && c.limit > 2*c.capRate {
		c.capRate = 0 // far above the old cap without throttling: it is gone
	}
	next := c.limit * fastStep
	switch {
	case c.capRate > 0 && c.limit < c.capRate:
		next = min(next, c.capRate)
	case c.capRate > 0:
		next = c.limit * slowStep
	}
	c.limit = max(c.limit, min(next, 2*w.rate()))
}
