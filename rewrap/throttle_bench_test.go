package rewrap

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/kmsserver"
)

// BenchmarkKMSThrottle measures KMS ReEncrypt rewraps per second through
// Deps' KMS client (the real SDK, with the production retry settings) against
// an in-process KMS test server, 32 rewraps in flight, in three scenarios run
// one after the other in the same process, each with fresh Deps (so a fresh
// client and rate state):
//
//   - unthrottled: the baseline;
//   - random: 30% of the requests throttled at random whatever the rate
//     (kmsserver.Options.ThrottleFraction), as other applications sharing
//     the account's quota cause;
//   - capped: the server allows 400 requests per second, a true rate cap.
//
// It reports the rate of each, random/unthrottled, capped/cap, and the
// fraction of requests throttled under the cap. A scenario stops after
// throttleBenchBudget, and its rate counts the rewraps done by then. It
// asserts nothing about speed. Run it with
//
//	go test -run '^$' -bench KMSThrottle -benchtime 1x ./rewrap
func BenchmarkKMSThrottle(b *testing.B) {
	const (
		objects  = 4000
		inFlight = 32
		capRPS   = 400
		fraction = 0.3
	)
	env := inProcessKMS(b, kmsserver.Options{Latency: 5 * time.Millisecond, ThrottleSeed: 1})
	setup := &Deps{AWS: env.cfg}
	defer setup.Close()
	ctx := context.Background()
	from := mustOpen(b, setup, "kms:"+env.createKey(b, nil, "bench from"))
	toSpec := "kms:" + env.createKey(b, nil, "bench to")
	wrapped := make([]Wrapped, objects)
	var wg sync.WaitGroup
	for w := range inFlight {
		wg.Go(func() {
			for i := w; i < objects; i += inFlight {
				dek := newDEK(b)
				var err error
				wrapped[i], err = from.Wrap(ctx, dek, envelope.ContentAESGCM, map[string]string{"i": fmt.Sprint(i)})
				dek.Clear()
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}

	// run rewraps every wrapped key with fresh Deps and returns the rate, the
	// number done, failed, and the server's ReEncrypt requests.
	run := func(name string) (rate float64, done, failed, requests int64) {
		d := &Deps{AWS: env.cfg} // production retry settings
		defer d.Close()
		to := mustOpen(b, d, toSpec)
		src := mustOpen(b, d, "kms:"+from.ID())
		env.srv.ResetCounts()
		rctx, cancel := context.WithTimeout(ctx, throttleBenchBudget)
		defer cancel()
		var next, ok, bad atomic.Int64
		start := time.Now()
		var wg sync.WaitGroup
		for range inFlight {
			wg.Go(func() {
				for {
					i := next.Add(1) - 1
					if i >= objects {
						return
					}
					_, err := Rewrap(rctx, src, to, wrapped[i], envelope.ContentAESGCM)
					switch {
					case err == nil:
						ok.Add(1)
					case rctx.Err() != nil:
						return
					default:
						bad.Add(1)
						var e *Error
						if bad.Load() <= 3 && errors.As(err, &e) {
							b.Logf("%s: %v", name, err)
						}
					}
				}
			})
		}
		wg.Wait()
		took := time.Since(start)
		done, failed = ok.Load(), bad.Load()
		requests = env.srv.Count("ReEncrypt")
		rate = float64(done) / took.Seconds()
		b.Logf("%-11s %5d rewraps in %6.2fs: %7.1f/s, %d failed, %d ReEncrypt requests (%.2f per rewrap)",
			name, done, took.Seconds(), rate, failed, requests, float64(requests)/float64(max(done, 1)))
		return rate, done, failed, requests
	}

	for range b.N {
		env.srv.SetThrottleFraction(0)
		env.srv.SetRateLimit(0)
		base, _, _, _ := run("unthrottled")

		env.srv.SetThrottleFraction(fraction)
		random, _, _, _ := run("random 30%")
		env.srv.SetThrottleFraction(0)

		env.srv.SetRateLimit(capRPS)
		capped, done, _, requests := run("capped 400")
		env.srv.SetRateLimit(0)

		b.ReportMetric(base, "unthrottled-rewraps/s")
		b.ReportMetric(random, "random30-rewraps/s")
		b.ReportMetric(random/base, "random30/unthrottled")
		b.ReportMetric(capped, "capped400-rewraps/s")
		b.ReportMetric(capped/capRPS, "capped/cap")
		b.ReportMetric(float64(requests-done)/float64(max(requests, 1)), "capped-throttled-fraction")
	}
}

// throttleBenchBudget is how long one scenario of BenchmarkKMSThrottle may
// run.
const throttleBenchBudget = 60 * time.Second
