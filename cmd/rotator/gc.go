package main

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

// The garbage collector's pacing for a process whose live heap is small
// and whose allocation rate is high: a rewrap run keeps about 7 MiB live
// while every object allocates some 150 KiB, most of it in the SDK's
// requests. With Go's default (GOGC=100: collect when the heap has grown
// by as much as is live) such a run collects every few dozen objects, 265
// times for 10,000 objects, and spends a fifth of its CPU there.
//
// minHeapHeadroom gives the heap at least that much room to grow between
// collections, as if GOGC were raised while the live heap is small: after
// each collection GOGC is set to headroom / live heap (at least 100, Go's
// default, and at most maxGCPercent). A process whose live heap is large
// already (a re-encryption's part buffers) keeps GOGC=100, so its peak
// memory is what it was; a small one trades at most minHeapHeadroom of
// memory for fewer collections. GOGC or GOMEMLIMIT in the environment
// turn this off: the operator's setting wins.
const (
	minHeapHeadroom = 24 << 20
	maxGCPercent    = 800
)

// tuneGC starts adjusting GOGC after each collection (see
// minHeapHeadroom), unless the environment sets the collector's pacing.
func tuneGC() {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	t := &gcTuner{sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}, percent: 100}
	t.arm()
}

type gcTuner struct {
	sample  []metrics.Sample
	percent int
}

// gcSentinel is allocated for its finalizer, which runs once the
// collection that found it unreachable is over.
type gcSentinel struct {
	t *gcTuner
	_ [2]uint64 // not a tiny allocation: finalizers of those may never run
}

func (t *gcTuner) arm() {
	runtime.SetFinalizer(&gcSentinel{t: t}, func(s *gcSentinel) {
		s.t.adjust()
		s.t.arm()
	})
}

// adjust sets GOGC from the live heap the last collection measured.
func (t *gcTuner) adjust() {
	metrics.Read(t.sample)
	if t.sample[0].Value.Kind() != metrics.KindUint64 {
		return
	}
	live := max(t.sample[0].Value.Uint64(), 1)
	p := int(min(max(minHeapHeadroom*100/live, 100), maxGCPercent))
	if p != t.percent && (p > t.percent*11/10 || p < t.percent*9/10 || p == 100) {
		t.percent = p
		debug.SetGCPercent(p)
	}
}
