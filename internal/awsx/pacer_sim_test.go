package awsx

import (
	"container/heap"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// The simulation: workers rewrap objects one after another, each object one
// request retried until it is not throttled, against a simulated KMS that
// throttles a random fraction of requests and/or caps the rate. Time is
// simulated (an event queue), so the test is deterministic and asserts rates
// without a wall clock.

// policy is the client-side pacing under test.
type policy interface {
	// admit asks, at now, to send an attempt. granted: the attempt is sent
	// at now+wait (its token is taken). Not granted: ask again at now+wait.
	admit(now time.Time) (wait time.Duration, granted bool)
	// observe reports an attempt's outcome when its answer arrives.
	observe(now time.Time, throttled bool)
	// retryDelay is the pause before retry number attempt (1 for the first
	// retry) of a throttled request, for a uniform draw u.
	retryDelay(attempt int, u float64) time.Duration
	maxAttempts() int
}

// pacerPolicy is Pacer, driven with simulated time.
type pacerPolicy struct{ p *Pacer }

func (pp pacerPolicy) admit(now time.Time) (time.Duration, bool) {
	return pp.p.reserve(now).delay(now), true
}
func (pp pacerPolicy) observe(now time.Time, throttled bool) { pp.p.observe(now, throttled) }
func (pp pacerPolicy) retryDelay(attempt int, u float64) time.Duration {
	return pp.p.throttleDelay(attempt, u)
}
func (pp pacerPolicy) maxAttempts() int { return pp.p.opts.MaxThrottleAttempts }

// scenario is a simulated server and workload.
type scenario struct {
	workers  int
	latency  time.Duration // per request, plus up to jitter
	jitter   time.Duration
	duration time.Duration
	// settled is when throttles start to be counted (default: half of
	// duration).
	settled time.Duration
	// throttle is the fraction of requests throttled at random; capRPS a
	// true rate cap (token bucket of one second's worth), 0 for none.
	throttle float64
	capRPS   float64
	// change, if set, changes the cap to capRPS2 and the random fraction
	// to throttle2 at that time.
	change    time.Duration
	capRPS2   float64
	throttle2 float64
}

// result is what a simulation measured: objects done and failed over the
// whole run, attempts and throttled attempts once the rate has settled
// (scenario.settled).
type result struct {
	objects, failed, attempts, throttled int
	rate                                 float64 // objects per simulated second
}

func (r result) throttledFraction() float64 {
	return float64(r.throttled) / float64(max(r.attempts, 1))
}

type event struct {
	at     time.Time
	seq    int
	worker int
}

type eventQueue []event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// worker states
const (
	wantSend = iota // waiting to be admitted
	sending         // admitted, sends at the event's time
	inFlight        // the answer arrives at the event's time
)

type worker struct {
	state     int
	attempt   int // of the current object, from 1
	throttled bool
}

// simStart is when simulations start.
var simStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// simulate runs sc against the policy, seeded.
func simulate(sc scenario, pol policy, seed uint64) result {
	rng := rand.New(rand.NewPCG(seed, 1))
	server := rand.New(rand.NewPCG(seed, 2))
	start := simStart
	end := start.Add(sc.duration)
	settled := start.Add(sc.duration / 2)
	if sc.settled > 0 {
		settled = start.Add(sc.settled)
	}
	var capLim *rate.Limiter
	if sc.capRPS > 0 {
		capLim = rate.NewLimiter(rate.Limit(sc.capRPS), int(math.Ceil(sc.capRPS)))
	}
	changed := false

	var q eventQueue
	seq := 0
	push := func(at time.Time, w int) {
		seq++
		heap.Push(&q, event{at: at, seq: seq, worker: w})
	}
	ws := make([]worker, sc.workers)
	for i := range ws {
		ws[i] = worker{state: wantSend, attempt: 1}
		push(start, i)
	}
	var res result
	for q.Len() > 0 {
		ev := heap.Pop(&q).(event)
		now := ev.at
		if now.After(end) {
			break
		}
		if sc.change > 0 && !changed && !now.Before(start.Add(sc.change)) {
			changed = true
			sc.throttle = sc.throttle2
			switch {
			case sc.capRPS2 > 0 && capLim == nil:
				capLim = rate.NewLimiter(rate.Limit(sc.capRPS2), int(math.Ceil(sc.capRPS2)))
			case sc.capRPS2 > 0:
				capLim.SetLimitAt(now, rate.Limit(sc.capRPS2))
				capLim.SetBurstAt(now, int(math.Ceil(sc.capRPS2)))
			default:
				capLim = nil
			}
		}
		w := &ws[ev.worker]
		switch w.state {
		case wantSend:
			wait, granted := pol.admit(now)
			if granted {
				w.state = sending
			}
			push(now.Add(wait), ev.worker)
		case sending:
			w.throttled = server.Float64() < sc.throttle || capLim != nil && !capLim.AllowN(now, 1)
			if !now.Before(settled) {
				res.attempts++
				if w.throttled {
					res.throttled++
				}
			}
			w.state = inFlight
			d := sc.latency
			if sc.jitter > 0 {
				d += time.Duration(rng.Int64N(int64(sc.jitter)))
			}
			push(now.Add(d), ev.worker)
		case inFlight:
			pol.observe(now, w.throttled)
			w.state = wantSend
			switch {
			case !w.throttled:
				res.objects++
				w.attempt = 1
				push(now, ev.worker)
			case w.attempt >= pol.maxAttempts():
				res.failed++
				w.attempt = 1
				push(now, ev.worker)
			default:
				push(now.Add(pol.retryDelay(w.attempt, rng.Float64())), ev.worker)
				w.attempt++
			}
		}
	}
	res.rate = float64(res.objects) / sc.duration.Seconds()
	return res
}

// The workload of the issue: 32 rewraps in flight, 5ms per KMS request.
var base = scenario{workers: 32, latency: 5 * time.Millisecond, jitter: time.Millisecond, duration: 30 * time.Second}

// kmsPolicy is the pacing of every KMS client (awsx.KMS), as the simulation
// drives it.
func kmsPolicy(t *testing.T, trace bool) policy {
	p := NewPacer(PacerOptions{})
	if trace {
		p.ctl.trace = func(w window, limit float64, why string) {
			t.Logf("window %5d attempts at %7.1f/s, %.3f throttled (success %7.1f/s) -> limit %7.1f: %s",
				w.n, w.rate(), w.frac(), w.success(), limit, why)
		}
	}
	return pacerPolicy{p}
}

// goal is one scenario and what must hold of its result; check returns
// what does not.
type goal struct {
	name  string
	sc    scenario
	seeds int
	check func(r, unthrottled result) []string
}

func goals() []goal {
	random := base
	random.throttle = 0.3
	gs := []goal{{"random 30%", random, 3, func(r, u result) []string {
		var bad []string
		if ratio := r.rate / u.rate; ratio < 0.3 {
			bad = append(bad, fmt.Sprintf("%.1f objects/s is %.3f of the unthrottled rate, want at least 0.3", r.rate, ratio))
		}
		return append(bad, noFailures(r)...)
	}}}
	for _, c := range []float64{40, 400, 3000} {
		sc := base
		sc.capRPS = c
		if c < 100 {
			sc.duration = 120 * time.Second // windows of 100 attempts take seconds
		}
		gs = append(gs, goal{"cap " + ftoa(c), sc, 2, func(r, _ result) []string { return nearCap(r, c, 0.1) }})
	}
	later := base
	later.change, later.throttle2 = base.duration/2, 0.3
	gs = append(gs, goal{"random 30% from mid-run", later, 2, func(r, u result) []string {
		var bad []string
		if ratio := r.rate / u.rate; ratio < (1+0.3)/2 {
			bad = append(bad, fmt.Sprintf("%.1f objects/s is %.3f of the unthrottled rate, want at least (1+0.3)/2", r.rate, ratio))
		}
		return append(bad, noFailures(r)...)
	}})
	halves := base
	halves.capRPS, halves.change, halves.capRPS2 = 800, 15*time.Second, 400
	halves.duration, halves.settled = 45*time.Second, 30*time.Second
	both := base
	both.throttle, both.capRPS = 0.3, 400
	return append(gs,
		goal{"cap halves mid-run", halves, 2, func(r, _ result) []string { return nearCap(r, (800+2*400)/3, 0.1) }},
		goal{"random 30% under a cap", both, 2, func(r, _ result) []string { return nearCap(r, 400, 0.3+0.1) }},
	)
}

// nearCap: the success rate is within 20% of the cap (a little above it
// too: the bucket's burst), and once settled, at most maxThrottled of the
// attempts are throttled.
func nearCap(r result, capRPS, maxThrottled float64) []string {
	var bad []string
	if r.rate < 0.8*capRPS || r.rate > 1.05*capRPS {
		bad = append(bad, fmt.Sprintf("%.1f objects/s under a cap of %.0f rps, want within 20%%", r.rate, capRPS))
	}
	if f := r.throttledFraction(); f > maxThrottled {
		bad = append(bad, fmt.Sprintf("%.3f of the attempts throttled under a cap of %.0f rps, want at most %.2f", f, capRPS, maxThrottled))
	}
	return append(bad, noFailures(r)...)
}

func noFailures(r result) []string {
	if r.failed > 0 {
		return []string{fmt.Sprintf("%d objects failed after all their attempts", r.failed)}
	}
	return nil
}

// TestPacerSimulation holds the KMS pacing to its goals: with 30% of the
// requests throttled at random it keeps at least 30% of the unthrottled
// rate; under a true cap it settles near the cap with few throttles.
func TestPacerSimulation(t *testing.T) {
	unthrottled := simulate(base, kmsPolicy(t, false), 1)
	t.Logf("unthrottled: %.0f objects/s", unthrottled.rate)
	if unthrottled.throttled != 0 || unthrottled.rate < 0.8*float64(base.workers)/(base.latency+base.jitter).Seconds() {
		t.Fatalf("unthrottled: %+v", unthrottled)
	}
	for _, g := range goals() {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			seeds := uint64(g.seeds)
			if testing.Short() {
				seeds = 1
			}
			for seed := range seeds {
				r := simulate(g.sc, kmsPolicy(t, false), seed)
				t.Logf("seed %d: %.1f objects/s (%.3f of unthrottled), %.3f of the attempts throttled once settled, %d failed",
					seed, r.rate, r.rate/unthrottled.rate, r.throttledFraction(), r.failed)
				if bad := g.check(r, unthrottled); len(bad) > 0 {
					for _, b := range bad {
						t.Errorf("seed %d: %s", seed, b)
					}
					simulate(g.sc, kmsPolicy(t, true), seed) // log its decisions
				}
			}
		})
	}
}

// TestSDKAdaptiveMissesTheGoals: the SDK's adaptive retry mode, which the
// KMS clients used before Pacer, fails the goal under random throttling
// (its rate collapses: every throttle cuts it by 30%), so the goals above
// do tell the two apart.
func TestSDKAdaptiveMissesTheGoals(t *testing.T) {
	unthrottled := simulate(base, newSDKAdaptive(simStart), 1)
	for _, g := range goals() {
		if g.name != "random 30%" && g.name != "cap 400" {
			continue
		}
		r := simulate(g.sc, newSDKAdaptive(simStart), 0)
		bad := g.check(r, unthrottled)
		t.Logf("%s: %.1f objects/s (%.4f of unthrottled %.0f/s), %.3f throttled, %d failed: %q",
			g.name, r.rate, r.rate/unthrottled.rate, unthrottled.rate, r.throttledFraction(), r.failed, bad)
		if g.name == "random 30%" && len(bad) == 0 {
			t.Errorf("the SDK's adaptive mode meets the random-throttling goal: the simulation no longer shows the collapse")
		}
	}
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
