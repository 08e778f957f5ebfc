// Package awsx builds the AWS configuration every rotator command shares: the
// standard credential and config chain (environment, shared files, SSO,
// instance roles), AWS_ENDPOINT_URL_<SERVICE> overrides, and retries and
// pacing chosen deliberately for long runs against throttling services.
//
// Terms:
//   - Adaptive retry: the SDK's client-side rate limiting retry mode
//     (aws/retry.AdaptiveMode), which slows the client down when a service
//     answers with throttling errors instead of failing the request. S3 and
//     DynamoDB clients use it (NewRetryer); KMS clients do not (see below).
//   - Retry quota: the SDK's token bucket that stops retrying after many
//     failures (500 tokens, 5 per retry by default). A run that is throttled
//     on purpose would exhaust it and fail objects that would succeed a
//     moment later, so rotator turns it off and relies on its own request
//     budgets (rate limits per service) and the adaptive limiter.
//   - Pacer: retries and pacing of the clients that share one quota, in one
//     place, as rclone's lib/pacer keeps them. Every KMS client of rotator
//     is built by KMS with its region's Pacer (KMS quotas are per account
//     and region). Each attempt, retries included, waits for the hard cap
//     (PacerOptions.RPS, rotator's --kms-rps) and then for the adaptive
//     rate, and reports whether it was throttled.
//   - Background throttling: throttles that do not depend on our rate,
//     because other applications of the account spend the shared quota.
//     Sending slower does not make them go away; it only makes the run
//     slower.
//   - Rate cap: throttling that grows with our rate: above the quota left
//     to us, every extra request is throttled.
//   - Expected bucket owner: the account id S3 checks a bucket against
//     (x-amz-expected-bucket-owner) before it serves a request, so that a
//     bucket deleted and re-created under the same name by another account
//     is refused (403 AccessDenied) rather than read or written.
//     ExpectedBucketOwner sends it on every request that takes it.
//   - Observer: what a context carries (WithObserver) to be told of every
//     AWS call made with it: service, operation, latency, attempts,
//     throttled attempts and error class (ErrorClass: from the error code
//     and HTTP status, never the message). The Observe middleware is on
//     every client rotator builds (Load's configuration, S3, KMS,
//     DynamoDB); without an Observer in the context it does nothing. The
//     metrics of a run (internal/metrics) are its Observer.
//
// # Why not the SDK's adaptive mode for KMS
//
// The SDK's adaptive mode cuts its rate to 70% of the measured rate on every
// throttle (CUBIC's multiplicative decrease) and grows it back along a cubic
// curve. That is right for a cap: the throttles stop once the rate is below
// it. Against background throttling it collapses: with 30% of the requests
// throttled whatever the rate, each second at R requests brings 0.3*R cuts,
// so the rate falls to the SDK's floor of half a request per second. 200
// rewraps then took 134 s instead of under one, and the throttling went on.
// Its legacy backoff (a random fraction of 1s, 2s, 4s, ... before each
// retry) makes it worse: a third of the requests wait a second or more.
//
// # What Pacer does
//
// A throttled attempt is retried after a short jittered pause (a random
// fraction of 10ms * 2^(retry-1), PacerOptions.ThrottleBackoff), and it may
// be retried more often than other failures (MaxThrottleAttempts, twice
// MaxAttempts), so that the patience of a request stays about what it was.
// The pause only spreads the retries out: the rate is kept down by the
// pacing, which every retry waits for too.
//
// The shared rate is decided once per window (at least 500ms and 100
// answers), never on one throttle, by whether the throttling depends on
// our rate:
//
//  1. Unlimited until the first window with throttles. Then cut to that
//     window's success rate: assume the throttles are ours until shown
//     otherwise.
//  2. After a cut, compare the window at the lower rate with the one
//     before by the marginal yield: the success rate of the attempts cut,
//     (successes before - after) / (attempts before - after). Under a cap
//     the successes stay at the cap whatever we send, so the attempts cut
//     were all throttled (yield 0): it was a cap, keep the lower rate (cut
//     again if the fraction is still high). Under background throttling
//     they would have succeeded as often as the others (yield 1 - the
//     fraction): after a second cut that finds the same (the first may
//     compare with a lucky window, say one in which a quota's bucket let a
//     burst through), the fraction is background. Go back to the rate
//     before the cuts and remember it. When the windows are too small to
//     tell, the lower rate is held and measured longer, or cut further if
//     most attempts are still throttled.
//  3. Otherwise raise the rate by 25% a window (5% once above a cap found
//     before), but never beyond twice the rate actually sent: a limit that
//     does not bind teaches nothing. Compare each window with the anchor,
//     the first window of the raise: if the throttled fraction rose
//     significantly above it (a two-proportion z-test at 3 standard
//     errors), or the attempts added since were mostly throttled, cut to
//     the success rate over (1 - the background fraction) and go to 2.
//  4. Every 20 windows with throttles (4 while no background explains
//     them), cut by a quarter for a window to check that the throttling
//     still does not depend on our rate.
//
// Under 30% background throttling this keeps the rate where the workers
// put it: about the rate that retries alone allow. Under a cap it settles
// within a few percent of it with a few percent of the attempts throttled.
// The simulation in the tests holds it to both (pacer_sim_test.go), and
// runs the SDK's algorithm through the same scenarios to show the
// difference. After a change of the rate, the next window starts once the
// attempts granted at the old rate have been sent, so that it measures the
// new one.
package awsx
