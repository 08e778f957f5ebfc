package metrics

import (
	"sort"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rotator-dev/rotator/hsmpool"
	"github.com/rotator-dev/rotator/pipeline"
)

// WatchStats exports a run's live counters as gauges: the run's totals
// so far (a resumed run's start from its record's counts).
func (m *Metrics) WatchStats(s *pipeline.Stats) {
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	m.reg.MustRegister(
		gauge("rotator_run_objects_listed", "Objects the run's listing delivered so far.",
			func() float64 { return float64(s.Listed.Load()) }),
		gauge("rotator_run_objects_done", "Objects the run finished so far (report rows).",
			func() float64 { return float64(s.Done.Load()) }),
		gauge("rotator_run_listed_bytes", "Size of the objects listed so far, where the source tells it.",
			func() float64 { return float64(s.Bytes.Load()) }),
		gauge("rotator_run_listing_done", "1 once the listing has delivered every object, else 0.",
			func() float64 {
				if s.ListingDone.Load() {
					return 1
				}
				return 0
			}),
		gauge("rotator_run_unfinished", "Changes whose outcome is not known yet; at the end of the run, the intents still held in the ledger ('rotator resume' settles them).",
			func() float64 { return float64(s.Unfinished.Load()) }),
	)
}

// HSMPools are the HSM session pools of a run (rewrap.Deps).
type HSMPools interface {
	HSMPools() []*hsmpool.Pool
}

// hsmPool is what the metrics read from an hsmpool.Pool.
type hsmPool interface {
	TokenLabel() string
	Stats() hsmpool.Stats
}

var _ hsmPool = (*hsmpool.Pool)(nil)

// WatchHSM exports the state of src's pools, read when scraped (pools
// opened during the run included).
func (m *Metrics) WatchHSM(src HSMPools) {
	m.reg.MustRegister(&hsmCollector{pools: func() []hsmPool {
		var ps []hsmPool
		for _, p := range src.HSMPools() {
			ps = append(ps, p)
		}
		return ps
	}})
}

// hsmCollector reads hsmpool.Stats per token at each scrape.
type hsmCollector struct {
	pools func() []hsmPool
}

var (
	hsmLabels   = []string{"token"}
	hsmSessions = prometheus.NewDesc("rotator_hsm_sessions", "HSM sessions the pool may hold (its budget, --hsm-sessions).", hsmLabels, nil)
	hsmOpen     = prometheus.NewDesc("rotator_hsm_sessions_open", "HSM sessions open now.", hsmLabels, nil)
	hsmInUse    = prometheus.NewDesc("rotator_hsm_sessions_in_use", "HSM sessions lent out to workers now.", hsmLabels, nil)
	hsmWaits    = prometheus.NewDesc("rotator_hsm_session_waits_total", "Session requests that found every session busy and waited.", hsmLabels, nil)
	hsmWaitSecs = prometheus.NewDesc("rotator_hsm_session_wait_seconds_total", "Time session requests spent waiting for a free session.", hsmLabels, nil)
	hsmTimeouts = prometheus.NewDesc("rotator_hsm_session_timeouts_total", "Session requests that waited in vain (the pool was exhausted).", hsmLabels, nil)
	hsmReopens  = prometheus.NewDesc("rotator_hsm_session_reopens_total", "Sessions opened to replace ones the HSM invalidated.", hsmLabels, nil)
	hsmErrors   = prometheus.NewDesc("rotator_hsm_errors_total", "PKCS#11 calls that failed (recovered ones included; failed integrity checks not).", hsmLabels, nil)
)

func (c *hsmCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{hsmSessions, hsmOpen, hsmInUse, hsmWaits, hsmWaitSecs, hsmTimeouts, hsmReopens, hsmErrors} {
		ch <- d
	}
}

func (c *hsmCollector) Collect(ch chan<- prometheus.Metric) {
	// Pools of one token (another module path or PIN source) add up.
	byToken := map[string]hsmpool.Stats{}
	for _, p := range c.pools() {
		s, t := p.Stats(), byToken[p.TokenLabel()]
		t.Size += s.Size
		t.Open += s.Open
		t.InUse += s.InUse
		t.Waits += s.Waits
		t.WaitTime += s.WaitTime
		t.Timeouts += s.Timeouts
		t.Reopens += s.Reopens
		t.Errors += s.Errors
		byToken[p.TokenLabel()] = t
	}
	tokens := make([]string, 0, len(byToken))
	for t := range byToken {
		tokens = append(tokens, t)
	}
	sort.Strings(tokens)
	for _, tok := range tokens {
		s := byToken[tok]
		for _, v := range []struct {
			d *prometheus.Desc
			t prometheus.ValueType
			v float64
		}{
			{hsmSessions, prometheus.GaugeValue, float64(s.Size)},
			{hsmOpen, prometheus.GaugeValue, float64(s.Open)},
			{hsmInUse, prometheus.GaugeValue, float64(s.InUse)},
			{hsmWaits, prometheus.CounterValue, float64(s.Waits)},
			{hsmWaitSecs, prometheus.CounterValue, s.WaitTime.Seconds()},
			{hsmTimeouts, prometheus.CounterValue, float64(s.Timeouts)},
			{hsmReopens, prometheus.CounterValue, float64(s.Reopens)},
			{hsmErrors, prometheus.CounterValue, float64(s.Errors)},
		} {
			ch <- prometheus.MustNewConstMetric(v.d, v.t, v.v, tok)
		}
	}
}
