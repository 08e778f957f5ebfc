package awsx

import (
	"testing"
	"time"
)

// TestHardCap: the hard cap spaces attempts 1/RPS apart (after its burst),
// whatever the adaptive rate, with times given (no wall clock).
func TestHardCap(t *testing.T) {
	p := NewPacer(PacerOptions{RPS: 10, Burst: 2})
	now := simStart
	var got []time.Duration
	for range 5 {
		got = append(got, p.reserve(now).delay(now))
	}
	want := []time.Duration{0, 0, 100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond}
	for i := range want {
		if d := got[i] - want[i]; d < -time.Millisecond || d > time.Millisecond {
			t.Fatalf("delays %v, want %v", got, want)
		}
	}
}

// TestThrottleDelay: full jitter over ThrottleBackoff * 2^(retry-1), capped
// at MaxBackoff.
func TestThrottleDelay(t *testing.T) {
	p := NewPacer(PacerOptions{MaxBackoff: time.Second})
	for _, c := range []struct {
		attempt int
		u       float64
		want    time.Duration
	}{
		{1, 0, 0},
		{1, 0.5, 5 * time.Millisecond},
		{2, 0.5, 10 * time.Millisecond},
		{4, 1, 80 * time.Millisecond},
		{0, 1, 10 * time.Millisecond}, // the SDK's 2026 retry mode counts from 0
		{20, 0.5, 500 * time.Millisecond},
		{1000, 1, time.Second},
	} {
		if got := p.throttleDelay(c.attempt, c.u); got != c.want {
			t.Errorf("throttleDelay(%d, %g) = %v, want %v", c.attempt, c.u, got, c.want)
		}
	}
}
