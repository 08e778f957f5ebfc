package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/rewrap"
)

// Runs is the part of the ledger that keeps run records.
type Runs interface {
	GetRun(ctx context.Context, id string) (ledger.Run, error)
	UpdateRun(ctx context.Context, r *ledger.Run) error
}

// Checkpoint is what a run stores in its ledger record (Run.Checkpoint) to
// be resumed: the inventory positions done and why it stopped. It never
// holds key material.
type Checkpoint struct {
	// Positions are inventory.Progress positions: Options.After of the
	// resumed run's source.
	Positions []string `json:"positions,omitempty"`
	// Error is the systemic failure that stopped the run, if any.
	Error string `json:"error,omitempty"`
	// Revisit are objects recovery began with and did not finish (see
	// RecoverOptions.Save): the next resume processes them first.
	Revisit []RevisitItem `json:"revisit,omitempty"`
	// Recovered are the outcomes recovery counted for objects the listing
	// may reach again (their status only): a listing outcome for one of
	// them replaces it in the counts.
	Recovered []Counted `json:"recovered,omitempty"`
}

// Counted is an outcome as the counters saw it.
type Counted struct {
	Bucket    string    `json:"bucket"`
	Key       string    `json:"key"`
	VersionID string    `json:"version,omitempty"`
	Status    Status    `json:"status"`
	Action    string    `json:"action,omitempty"`
	ErrorCode string    `json:"code,omitempty"`
	Also      []Counted `json:"also,omitempty"`
}

func countedOf(o Outcome) Counted {
	c := Counted{Bucket: o.Bucket, Key: o.Key, VersionID: o.VersionID, Status: o.Status, Action: o.Action, ErrorCode: o.ErrorCode}
	for _, a := range o.Also {
		c.Also = append(c.Also, countedOf(a))
	}
	return c
}

func (c Counted) outcome() Outcome {
	o := Outcome{Bucket: c.Bucket, Key: c.Key, VersionID: c.VersionID, Status: c.Status, Action: c.Action, ErrorCode: c.ErrorCode}
	for _, a := range c.Also {
		o.Also = append(o.Also, a.outcome())
	}
	return o
}

// maxRecovered bounds Checkpoint.Recovered (beyond it the oldest are
// forgotten, and the counts of those objects may be counted twice).
const maxRecovered = 2000

// DecodeCheckpoint reads a run's checkpoint (empty: none).
func DecodeCheckpoint(b []byte) (Checkpoint, error) {
	var cp Checkpoint
	if len(b) == 0 {
		return cp, nil
	}
	if err := json.Unmarshal(b, &cp); err != nil {
		return cp, fmt.Errorf("run checkpoint is not valid JSON: %w", err)
	}
	return cp, nil
}

// Defaults of a Runner.
const (
	DefaultWorkers            = 32
	DefaultCheckpointInterval = 5 * time.Second
	// DefaultBreaker is how many objects in a row may fail with the same
	// configuration-like error before the run stops.
	DefaultBreaker = 50
)

// Workers is the number of workers of a run of c. Where an object's work
// is one request after another (every mode but re-encryption), the
// requests in flight are bounded at Concurrency (awsx.Slots, see Open)
// and there are more workers than that (extraWorkers), so that objects
// waiting for the ledger (the fsync of a group commit, a DynamoDB write)
// do not keep the others' requests from being sent. Not where objects
// wait for something else: a re-encryption moves each object's parts in
// parallel (PartsInFlight) under its memory budget, and with an HSM key
// the workers queue for the session pool (at twice the workers KMS -> HSM
// measured 0.68 of its bare loop instead of 0.75): there Concurrency
// objects are in progress, their requests unbounded by slots.
func (c Config) Workers() int {
	n := c.Concurrency
	if n <= 0 {
		n = DefaultWorkers
	}
	if c.slotted() {
		return n + extraWorkers(n)
	}
	return n
}

// extraWorkers is how many workers a slotted run of n requests in flight
// adds for the objects waiting for the ledger: n up to 64, then 64, then
// a quarter of n from 256. Those objects are the run's rate times the
// ledger's latency (on the embedded ledger, some 1,000 objects/s and 10
// to 30 ms), not a multiple of n; a quarter of n keeps the slots busy
// where the ledger's writes are a fifth of an object's time (DynamoDB
// against S3's tens of milliseconds). Twice the workers, as before,
// cost memory and CPU at large n: 1,024 workers at --concurrency 512,
// whose stacks the collector scans and shrinks and the runtime grows
// again (copystack and scanstack, a fifth of the CPU). Alternating on
// the same 4,000 objects, KMS answering in 30 ms, 512 in flight, on a
// busy machine: 64 more workers (7 runs) and 128 more (2 runs) rewrapped
// 674 and 704 objects/s against 630 with 512 more (7 runs), at 1.20 and
// 1.17 against 1.35 ms of CPU per object and 150 to 169 against 217 to
// 234 MiB of peak RSS; at 128 in flight 64 more did as 128 more did.
// The quiet make bench that followed kept the memory gain (162 MiB) but
// not the throughput gain (0.75 of the bare loop; 0.74 with 2N).
func extraWorkers(n int) int {
	return min(n, max(64, n/4))
}

// slotted says whether the requests of a run of c hold slots (Workers):
// not for a re-encryption, nor with an HSM key among the target, --from
// and escrow keys (a spec that does not parse is refused before a run).
func (c Config) slotted() bool {
	if c.mode() == ModeReencrypt {
		return false
	}
	for _, k := range append([]string{c.To, c.Escrow}, c.From...) {
		if s, err := rewrap.ParseSpec(k); err == nil && s.Kind == rewrap.KindPKCS11 {
			return false
		}
	}
	return true
}

// Stats are a run's live counters, safe to read while it runs.
type Stats struct {
	Listed    atomic.Int64
	Done      atomic.Int64
	Succeeded atomic.Int64
	Skipped   atomic.Int64
	Failed    atomic.Int64
	Changed   atomic.Int64
	Pending   atomic.Int64
	// Unfinished counts changes whose outcome is not known yet (their
	// intents stay in the ledger); at the end of a run, the intents the
	// run still holds.
	Unfinished atomic.Int64
	// Deleted counts older versions deleted (--delete-old-versions), also
	// counted in Succeeded.
	Deleted atomic.Int64
	// Left counts older versions under a --from key a re-encryption run
	// left in place although they are not under Object Lock (their current
	// version is not re-encrypted, their key cannot be told): the incident
	// is not closed while any is left.
	Left atomic.Int64
	// Bytes is the size of the objects listed, when the source knows it.
	Bytes atomic.Int64
	// ListingDone is set when the source has delivered every item.
	ListingDone atomic.Bool
}

func (s *Stats) add(o Outcome) { s.count(o, 1) }

// count adds d to the counters of o's status.
func (s *Stats) count(o Outcome, d int64) {
	s.Done.Add(d)
	switch o.Status {
	case StatusSucceeded:
		s.Succeeded.Add(d)
	case StatusSkipped:
		s.Skipped.Add(d)
	case StatusFailed:
		s.Failed.Add(d)
	case StatusChanged:
		s.Changed.Add(d)
	case StatusPending:
		s.Pending.Add(d)
	case StatusUnfinished:
		s.Unfinished.Add(d)
	}
	if o.Status == StatusSucceeded && o.Action == ActionDeleteVersion {
		s.Deleted.Add(d)
	}
	if o.Status == StatusPending && o.Action == ActionDeleteVersion && o.ErrorCode != CodeObjectLocked && o.ErrorCode != CodeDryRun {
		s.Left.Add(d)
	}
}

// countAll adds d to the counters of o and the rows it carries
// (Outcome.Also).
func (s *Stats) countAll(o Outcome, d int64) {
	s.count(o, d)
	for _, a := range o.Also {
		s.countAll(a, d)
	}
}

// Seed starts the counters from a run record's counts (a resumed run
// goes on counting where the run stopped; unfinished is recounted).
func (s *Stats) Seed(c map[string]int64) {
	for name, v := range map[string]*atomic.Int64{"listed": &s.Listed, "done": &s.Done, "succeeded": &s.Succeeded,
		"skipped": &s.Skipped, "failed": &s.Failed, "changed": &s.Changed, "pending": &s.Pending, "deleted": &s.Deleted,
		"left": &s.Left} {
		v.Store(c[name])
	}
}

// Counts returns the counters as the run record stores them.
func (s *Stats) Counts() map[string]int64 {
	return map[string]int64{
		"listed":     s.Listed.Load(),
		"done":       s.Done.Load(),
		"succeeded":  s.Succeeded.Load(),
		"skipped":    s.Skipped.Load(),
		"failed":     s.Failed.Load(),
		"changed":    s.Changed.Load(),
		"pending":    s.Pending.Load(),
		"unfinished": s.Unfinished.Load(),
		"deleted":    s.Deleted.Load(),
		"left":       s.Left.Load(),
	}
}

// Runner runs the pipeline: the source lists items, Workers goroutines run
// the Core on each, and one collector writes the report, tracks progress
// and checkpoints the run in the ledger.
//
//	source --items--> workers (Core.Process) --outcomes--> collector
//
// Every stage is an errgroup goroutine; every send selects on the context.
type Runner struct {
	Core   *Core
	Source inventory.Source
	// Workers bounds the objects processed at once (default
	// DefaultWorkers).
	Workers int
	// Runs and Run: the run record to checkpoint (nil: no checkpoints).
	Runs Runs
	Run  *ledger.Run
	// Progress turns completions into resume positions; make it with
	// inventory.NewProgress(positions the run resumes from).
	Progress *inventory.Progress
	Report   *Report
	Stats    *Stats
	// OnOutcome, if set, is called by the collector for every outcome.
	OnOutcome func(Outcome)
	// CheckpointInterval is how often the run record is updated (default
	// DefaultCheckpointInterval).
	CheckpointInterval time.Duration
	// Breaker stops the run after this many objects in a row failed with
	// the same configuration-like error (default DefaultBreaker; negative
	// turns it off).
	Breaker int
	// Intents lists the run's recovery state (the ledger). With Resume,
	// the intents a crash left are settled before the listing starts (a
	// re-encryption goes on from its checkpoint); at the end of a run that
	// was not interrupted, those still held are settled once more, giving
	// up re-encryptions that did not land. Stats.Unfinished is then the
	// number still held: the run is done only when it is 0.
	Intents IntentLister
	Resume  bool

	mu      sync.Mutex
	revisit []RevisitItem // Checkpoint.Revisit
	// folded counts the outcomes the checkpoint's positions account for
	// (inventory.Progress.DoneThen): a resumed run goes on from them and
	// counts the objects it lists again once.
	folded Stats
	// recovered holds the outcomes recovery counted at the start, by
	// object: when the listing reaches one of those objects again, its
	// outcome replaces the recovered one in the counters.
	recovered map[RevisitItem]Outcome
	// recoveredOrder is recovered's keys, oldest first.
	recoveredOrder []RevisitItem
}

// ErrInterrupted is returned by Execute when the run stopped on an
// interrupt after finishing the objects in flight.
var ErrInterrupted = errors.New("interrupted: the objects in flight were finished and the run checkpointed")

// announcer is a ledger that journals the objects a run is about to
// process ahead of their intents (ledger.Announce: DynamoDB).
type announcer interface {
	Announce(ctx context.Context, runID string, ids []ledger.ObjectID) error
	Done(runID string, id ledger.ObjectID)
}

// announceGroup is the most objects announced at once: one journal write
// per group (ledger/SCHEMA.md, "Intent journal"), as many as one page of
// an S3 listing. An entry is 17 bytes, so a group is one write of at most
// 17 KB; a larger group saves writes (128 cost 2.008 writes per rewrapped
// object, 1,000 cost 2.001) at the price of reading more objects after a
// crash: resume queries the partition of every object a live group names.
const announceGroup = 1000

func itemID(it inventory.Item) ledger.ObjectID {
	return ledger.ObjectID{Bucket: it.Bucket, Key: it.Key, VersionID: it.VersionID}
}

type job struct {
	it     inventory.Item
	ticket *inventory.Ticket
}

type result struct {
	o      Outcome
	ticket *inventory.Ticket
	size   int64 // the listed size, for the counters
}

// Execute runs until the source is exhausted, a systemic error occurs, ctx
// ends, or interrupt is closed. On interrupt the listing stops, the objects
// already handed to workers are finished, the run is checkpointed and
// ErrInterrupted returned. The run record ends in state done, interrupted
// or failed.
func (r *Runner) Execute(ctx context.Context, interrupt <-chan struct{}) error {
	if r.Stats == nil {
		r.Stats = &Stats{}
	}
	if r.Progress == nil {
		r.Progress = inventory.NewProgress(nil)
	}
	if r.Report == nil {
		r.Report, _ = NewReport(nil)
	}
	workers := r.Workers
	if workers <= 0 {
		workers = DefaultWorkers
	}
	if r.Resume && r.Run != nil {
		r.Stats.Seed(r.Run.Counts)
		r.folded.Seed(r.Run.Counts)
		cp, err := DecodeCheckpoint(r.Run.Checkpoint)
		if err != nil {
			return err
		}
		r.revisit = cp.Revisit
		for _, c := range cp.Recovered {
			r.remember(c.outcome())
		}
	}
	if r.Resume && r.Intents != nil {
		if err := r.recover(ctx, false); err != nil {
			return r.finish(ctx, fmt.Errorf("settle the changes the interrupted run left: %w", err), false)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	listCtx, stopListing := context.WithCancel(gctx)
	defer stopListing()
	var interrupted atomic.Bool
	go func() {
		select {
		case <-interrupt:
			interrupted.Store(true)
			stopListing()
		case <-listCtx.Done():
		}
	}()

	jobs := make(chan job, workers)
	results := make(chan result, workers)

	// A ledger that journals intents (DynamoDB) is told what the run is
	// about to process in groups (announce), so that the objects' Begins
	// need no journal write of their own.
	an, _ := r.Core.Ledger.(announcer)
	g.Go(func() error {
		defer close(jobs)
		var pending []job
		send := func() error {
			if an != nil && len(pending) > 1 {
				ids := make([]ledger.ObjectID, len(pending))
				for i, j := range pending {
					ids[i] = itemID(j.it)
				}
				// On error each Begin journals its own intent.
				_ = an.Announce(listCtx, r.Core.RunID, ids)
			}
			for i, j := range pending {
				select {
				case jobs <- j:
				case <-listCtx.Done():
					// Not handed to a worker: a resumed run lists them again.
					for _, j := range pending[i:] {
						r.Stats.Listed.Add(-1)
						r.Stats.Bytes.Add(-j.it.Size)
						if an != nil {
							an.Done(r.Core.RunID, itemID(j.it))
						}
					}
					pending = pending[:0]
					return listCtx.Err()
				}
			}
			pending = pending[:0]
			return nil
		}
		err := r.Source.Stream(listCtx, func(it inventory.Item) error {
			t := r.Progress.Begin(it)
			r.Stats.Listed.Add(1)
			r.Stats.Bytes.Add(it.Size)
			pending = append(pending, job{it: it, ticket: t})
			// A group as large as announceGroup, or what is listed
			// when the workers run out of work.
			if an == nil || len(pending) >= announceGroup || len(jobs) == 0 {
				return send()
			}
			return nil
		})
		if err == nil {
			err = send()
		}
		if err != nil && interrupted.Load() && errors.Is(err, context.Canceled) && gctx.Err() == nil {
			return nil
		}
		if err == nil {
			r.Stats.ListingDone.Store(true)
		}
		return err
	})

	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		g.Go(func() error {
			defer wg.Done()
			for j := range jobs {
				began := time.Now()
				o, err := r.Core.Process(gctx, j.it)
				o.Duration = time.Since(began)
				if an != nil {
					an.Done(r.Core.RunID, itemID(j.it))
				}
				if err != nil {
					return fmt.Errorf("%s: %w", j.it, err)
				}
				select {
				case results <- result{o: o, ticket: j.ticket, size: j.it.Size}:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
			return nil
		})
	}
	go func() {
		wg.Wait()
		close(results)
	}()

	g.Go(func() error { return r.collect(gctx, results) })

	err := g.Wait()
	if err == nil && interrupted.Load() {
		err = ErrInterrupted
	}
	return r.finish(ctx, err, err == nil)
}

// finish settles the run's leftover intents when it completed, counts
// those still held, and checkpoints the run record.
func (r *Runner) finish(ctx context.Context, err error, completed bool) error {
	r.Core.ReleaseLeft(ctx)
	if completed && r.Intents != nil {
		rerr := r.recover(ctx, true)
		if rerr == nil {
			var left int
			left, rerr = Unfinished(ctx, r.Intents, r.Core.RunID)
			r.Stats.Unfinished.Store(int64(left + len(r.revisits())))
		}
		if rerr != nil {
			err = fmt.Errorf("settle the run's unfinished changes: %w", rerr)
		}
	}
	state := ledger.RunDone
	switch {
	case errors.Is(err, ErrInterrupted), errors.Is(err, context.Canceled):
		state = ledger.RunInterrupted
	case err != nil:
		state = ledger.RunFailed
	case r.Stats.Unfinished.Load() > 0:
		state = ledger.RunUnfinished
	}
	if cerr := r.checkpoint(context.WithoutCancel(ctx), state, err); cerr != nil && err == nil {
		err = cerr
	}
	if ferr := r.Report.Flush(); ferr != nil && err == nil {
		err = ferr
	}
	return err
}

// recover settles the run's intents and processes again the objects an
// earlier recovery left (RecoverWith), keeping the run record's list of
// objects to revisit up to date before anything changes.
func (r *Runner) recover(ctx context.Context, giveUp bool) error {
	n, err := RecoverWith(ctx, r.Core, r.Intents, r.Core.RunID, RecoverOptions{
		GiveUp:  giveUp,
		Revisit: r.revisits(),
		Save: func(items []RevisitItem) error {
			r.setRevisit(items)
			return r.checkpoint(ctx, ledger.RunRunning, nil)
		},
	})
	r.setRevisit(n.Revisit)
	for _, o := range n.Outcomes {
		r.recount(o) // an earlier recovery's outcome for the object
		if aerr := r.emit(o); aerr != nil && err == nil {
			err = aerr
		}
		r.Progress.Snapshot(func([]string) { r.folded.countAll(o, 1) })
		if !giveUp {
			r.remember(o)
		}
	}
	return err
}

// remember keeps the outcome recovery counted for o's object (recount).
func (r *Runner) remember(o Outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.recovered == nil {
		r.recovered = map[RevisitItem]Outcome{}
	}
	k := countKey(o)
	if _, ok := r.recovered[k]; !ok {
		r.recoveredOrder = append(r.recoveredOrder, k)
	}
	r.recovered[k] = o
	for len(r.recoveredOrder) > maxRecovered {
		delete(r.recovered, r.recoveredOrder[0])
		r.recoveredOrder = r.recoveredOrder[1:]
	}
}

// recoveredRows returns what Checkpoint.Recovered holds.
func (r *Runner) recoveredRows() []Counted {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Counted
	for _, k := range r.recoveredOrder {
		if o, ok := r.recovered[k]; ok {
			out = append(out, countedOf(o))
		}
	}
	return out
}

// countKey names the object of an outcome: its key, and the version for
// the deletion of an older one.
func countKey(o Outcome) RevisitItem {
	k := RevisitItem{Bucket: o.Bucket, Key: o.Key}
	if o.Action == ActionDeleteVersion {
		k.VersionID = o.VersionID
	}
	return k
}

// recount takes back the counts of the outcome recovery gave the object of
// o, when it gave one: o, the listing's outcome or a later recovery's, is
// the later word.
func (r *Runner) recount(o Outcome) {
	k := countKey(o)
	r.mu.Lock()
	prev, ok := r.recovered[k]
	delete(r.recovered, k)
	r.mu.Unlock()
	if !ok {
		return
	}
	r.Stats.countAll(prev, -1)
	r.Progress.Snapshot(func([]string) { r.folded.countAll(prev, -1) })
}

func (r *Runner) revisits() []RevisitItem {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.revisit
}

func (r *Runner) setRevisit(items []RevisitItem) {
	r.mu.Lock()
	r.revisit = items
	r.mu.Unlock()
}

// emit records one outcome and the rows it carries: report, counters and
// the OnOutcome callback.
func (r *Runner) emit(o Outcome) error {
	also := o.Also
	o.Also = nil
	if err := r.Report.Add(o); err != nil {
		return err
	}
	r.Stats.add(o)
	if r.OnOutcome != nil {
		r.OnOutcome(o)
	}
	for _, a := range also {
		if err := r.emit(a); err != nil {
			return err
		}
	}
	return nil
}

// collect is the last stage: report, progress, breaker and checkpoints.
func (r *Runner) collect(ctx context.Context, results <-chan result) error {
	interval := r.CheckpointInterval
	if interval <= 0 {
		interval = DefaultCheckpointInterval
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var br breaker
	br.limit = r.Breaker
	if br.limit == 0 {
		br.limit = DefaultBreaker
	}
	for {
		select {
		case res, ok := <-results:
			if !ok {
				return nil
			}
			r.recount(res.o)
			if err := r.emit(res.o); err != nil {
				return err
			}
			o, size := res.o, res.size
			r.Progress.DoneThen(res.ticket, func() {
				r.folded.Listed.Add(1)
				r.folded.Bytes.Add(size)
				r.folded.countAll(o, 1)
			})
			if err := br.add(res.o); err != nil {
				return err
			}
		case <-tick.C:
			if err := r.checkpoint(ctx, ledger.RunRunning, nil); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// checkpoint writes the run record: counts, positions and state.
func (r *Runner) checkpoint(ctx context.Context, state ledger.RunState, runErr error) error {
	if r.Runs == nil || r.Run == nil {
		return nil
	}
	cp := Checkpoint{Revisit: r.revisits(), Recovered: r.recoveredRows()}
	var counts map[string]int64
	r.Progress.Snapshot(func(positions []string) {
		cp.Positions, counts = positions, r.folded.Counts()
	})
	counts["unfinished"] = r.Stats.Unfinished.Load()
	if runErr != nil && !errors.Is(runErr, ErrInterrupted) && !errors.Is(runErr, context.Canceled) {
		cp.Error = runErr.Error()
	}
	b, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		r.Run.State, r.Run.Checkpoint, r.Run.Counts = state, b, counts
		err := r.Runs.UpdateRun(ctx, r.Run)
		if err == nil {
			return nil
		}
		if !errors.Is(err, ledger.ErrConflict) || attempt == 3 {
			return fmt.Errorf("ledger: checkpoint run %s: %w", r.Run.ID, err)
		}
		cur, gerr := r.Runs.GetRun(ctx, r.Run.ID)
		if gerr != nil {
			return fmt.Errorf("ledger: checkpoint run %s: %w", r.Run.ID, gerr)
		}
		r.Run.Revision = cur.Revision
	}
}

// breaker trips when the same configuration-like failure repeats.
type breaker struct {
	limit int
	code  string
	n     int
	last  string
}

// objectCodes are failures that concern the object itself: many of them
// in a row say nothing about the configuration.
var objectCodes = map[string]bool{
	CodeBadEnvelope: true, CodeNeedFromKey: true, CodeNotFromKey: true, CodeChanged: true,
	CodeClaimed: true, CodeUnsupported: true, CodeGone: true,
	"IncorrectKeyException": true, "InvalidCiphertextException": true,
	"AuthenticationFailed": true, "AlgorithmMismatch": true, "BadInput": true,
}

func (b *breaker) add(o Outcome) error {
	if b.limit < 0 {
		return nil
	}
	if o.Status != StatusFailed || objectCodes[o.ErrorCode] {
		if o.Status == StatusSucceeded {
			b.n = 0
		}
		return nil
	}
	if o.ErrorCode != b.code {
		b.code, b.n = o.ErrorCode, 0
	}
	b.n++
	b.last = o.Message
	if b.n >= b.limit {
		return fmt.Errorf("stopping: the last %d objects all failed with %s (last: %s); fix the cause, then run 'rotator resume'", b.n, b.code, b.last)
	}
	return nil
}
