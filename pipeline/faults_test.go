package pipeline_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/escrow"
	"github.com/rotator-dev/rotator/internal/awsx"
	"github.com/rotator-dev/rotator/internal/faults"
	"github.com/rotator-dev/rotator/internal/sample"
	"github.com/rotator-dev/rotator/internal/testenv"
	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/pipeline"
	"github.com/rotator-dev/rotator/reencrypt"
	"github.com/rotator-dev/rotator/rewrap"
)

// The fault matrix: every scenario is run once and its calls recorded
// (S3, KMS and DynamoDB requests, the embedded ledger's calls, the HSM's);
// then, for every call k and every kind of fault (the call fails; it is
// carried out but its response is lost; the process dies right after it),
// the scenario runs again from scratch with that fault, followed by fresh
// processes resuming the run until it is done, as an operator would. After
// each: every object is either rotated (it opens under the target key with
// its original plaintext; a rewrapped body is byte for byte the original)
// or reported and left byte for byte as it was; no intent, checkpoint or
// multipart upload is left; each object has at most one lineage event of
// the run; and a second run rotates whatever the first left, exactly once.
//
// ROTATOR_FAULTS=all runs every call of every scenario with every kind of
// fault (make faults); otherwise ROTATOR_FAULTS_SAMPLE (default 10) cases
// of each scenario, chosen afresh at every run by the seed
// ROTATOR_FAULTS_SEED (printed) or the clock.

// scenario is one change to one object.
type scenario struct {
	name      string
	mode      pipeline.Mode
	kind      sample.Kind
	size      int  // plaintext bytes
	toHSM     bool // KMS -> HSM
	versioned bool // an older version too, --all-versions --delete-old-versions
	dynamo    bool // the DynamoDB ledger
	escrow    bool // --escrow on a third KMS key: each object escrowed before it is rewrapped
	move      bool // --placement instruction-file: the envelope moves out of the metadata
	// already: the object is under the target key already (an earlier run
	// on another ledger rewrapped it), and its envelope does not name the
	// key (V3): the run asks KMS under the object's claim, then records
	// it and releases the claim in one write (Ledger.ObserveRelease). No
	// lineage event; nothing, not even a claim, is left.
	already bool
}

func faultScenarios() []scenario {
	meta := func(f envelope.Format) sample.Kind {
		return sample.Kind{Format: f, Placement: envelope.PlacementMetadata}
	}
	instr := func(f envelope.Format) sample.Kind {
		return sample.Kind{Format: f, Placement: envelope.PlacementInstructionFile}
	}
	var out []scenario
	for _, dyn := range []bool{false, true} {
		l := "bolt"
		if dyn {
			l = "dynamodb"
		}
		out = append(out,
			scenario{name: "rewrap-meta-" + l, mode: pipeline.ModeRewrap, kind: meta(envelope.V2), size: 100, dynamo: dyn},
			scenario{name: "rewrap-instr-" + l, mode: pipeline.ModeRewrap, kind: instr(envelope.V3), size: 100, dynamo: dyn},
			scenario{name: "reencrypt-single-meta-" + l, mode: pipeline.ModeReencrypt, kind: meta(envelope.V3), size: 100, dynamo: dyn},
			scenario{name: "reencrypt-single-instr-" + l, mode: pipeline.ModeReencrypt, kind: instr(envelope.V2), size: 100, dynamo: dyn},
			scenario{name: "reencrypt-multipart-meta-" + l, mode: pipeline.ModeReencrypt, kind: meta(envelope.V2), size: 5<<20 + 7, dynamo: dyn},
			scenario{name: "reencrypt-multipart-instr-" + l, mode: pipeline.ModeReencrypt, kind: instr(envelope.V3), size: 5<<20 + 7, dynamo: dyn},
			scenario{name: "kms-to-hsm-meta-" + l, mode: pipeline.ModeRewrap, kind: meta(envelope.V2), size: 100, toHSM: true, dynamo: dyn},
			scenario{name: "kms-to-hsm-instr-" + l, mode: pipeline.ModeRewrap, kind: instr(envelope.V2), size: 100, toHSM: true, dynamo: dyn},
			scenario{name: "delete-version-" + l, mode: pipeline.ModeReencrypt, kind: meta(envelope.V2), size: 100, versioned: true, dynamo: dyn},
			scenario{name: "kms-to-hsm-escrow-meta-" + l, mode: pipeline.ModeRewrap, kind: meta(envelope.V2), size: 100, toHSM: true, dynamo: dyn, escrow: true},
			scenario{name: "rewrap-escrow-instr-" + l, mode: pipeline.ModeRewrap, kind: instr(envelope.V3), size: 100, dynamo: dyn, escrow: true},
			scenario{name: "reencrypt-escrow-instr-" + l, mode: pipeline.ModeReencrypt, kind: instr(envelope.V2), size: 100, dynamo: dyn, escrow: true},
			scenario{name: "rewrap-escrow-meta-" + l, mode: pipeline.ModeRewrap, kind: meta(envelope.V3), size: 100, dynamo: dyn, escrow: true},
			scenario{name: "reencrypt-escrow-meta-" + l, mode: pipeline.ModeReencrypt, kind: meta(envelope.V3), size: 100, dynamo: dyn, escrow: true},
			scenario{name: "reencrypt-escrow-multipart-meta-" + l, mode: pipeline.ModeReencrypt, kind: meta(envelope.V2), size: 5<<20 + 7, dynamo: dyn, escrow: true},
			scenario{name: "reencrypt-escrow-multipart-instr-" + l, mode: pipeline.ModeReencrypt, kind: instr(envelope.V3), size: 5<<20 + 7, dynamo: dyn, escrow: true},
			scenario{name: "move-v2-" + l, mode: pipeline.ModeRewrap, kind: meta(envelope.V2), size: 100, move: true, dynamo: dyn},
			scenario{name: "move-v3-" + l, mode: pipeline.ModeRewrap, kind: meta(envelope.V3), size: 100, move: true, dynamo: dyn},
			scenario{name: "already-target-meta-" + l, mode: pipeline.ModeRewrap, kind: meta(envelope.V3), size: 100, already: true, dynamo: dyn},
			scenario{name: "already-target-instr-" + l, mode: pipeline.ModeRewrap, kind: instr(envelope.V3), size: 100, already: true, dynamo: dyn},
		)
	}
	return out
}

func TestFaultMatrix(t *testing.T) {
	testenv.Need(t, testenv.S3, testenv.KMS, testenv.DynamoDB, testenv.PKCS11)
	all := os.Getenv("ROTATOR_FAULTS") == "all"
	seed := time.Now().UnixNano()
	if s := os.Getenv("ROTATOR_FAULTS_SEED"); s != "" {
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	per := 10
	if s := os.Getenv("ROTATOR_FAULTS_SAMPLE"); s != "" {
		per, _ = strconv.Atoi(s)
	}
	t.Logf("fault matrix: all=%v, sample %d per scenario, seed %d (ROTATOR_FAULTS_SEED reproduces the sample)", all, per, seed)
	var mu sync.Mutex
	var total, cases int
	for _, sc := range faultScenarios() {
		t.Run(sc.name, func(t *testing.T) {
			h := newFaultHarness(t, sc)
			calls := h.record(t)
			t.Logf("%d calls: %s", len(calls), strings.Join(calls, ", "))
			var picked []faults.Fault
			for k := 1; k <= len(calls); k++ {
				for _, kind := range faults.Kinds {
					picked = append(picked, faults.Fault{At: k, Kind: kind})
				}
			}
			if !all {
				// A sample, different at every run (the seed is printed).
				r := rand.New(rand.NewPCG(uint64(seed), uint64(len(sc.name))))
				r.Shuffle(len(picked), func(i, j int) { picked[i], picked[j] = picked[j], picked[i] })
				picked = picked[:min(per, len(picked))]
			}
			n := 0
			for _, f := range picked {
				n++
				t.Run(fmt.Sprintf("%s-%s", f, strings.ReplaceAll(calls[f.At-1], " ", ".")), func(t *testing.T) {
					h.runCase(t, f)
				})
			}
			mu.Lock()
			total += len(calls) * len(faults.Kinds)
			cases += n
			mu.Unlock()
		})
	}
	t.Logf("fault matrix: %d cases run of %d (calls x %d kinds, %d scenarios)", cases, total, len(faults.Kinds), len(faultScenarios()))
}

// faultHarness runs one scenario's processes against the stack.
type faultHarness struct {
	sc     scenario
	s3     *s3.Client
	kms    *kms.Client
	base   aws.Config
	arnA   string
	arnB   string
	arnC   string         // the escrow key (escrow)
	escrow rewrap.Keyring // its keyring
	hsm    string         // the HSM key spec (toHSM)
	table  string         // the DynamoDB table
	deps   *rewrap.Deps
	a, to  rewrap.Keyring
	caseNo int
	dir    string

	// extra API options every process's AWS clients get (a test's own
	// faults).
	extra []func(*middleware.Stack) error

	mu   sync.Mutex
	pids int          // simulated processes started: each gets its own pid
	gone map[int]bool // pids of the processes that ended (or died)
}

func newFaultHarness(t *testing.T, sc scenario) *faultHarness {
	t.Helper()
	base, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h := &faultHarness{sc: sc, base: base, s3: awsx.S3(base), kms: kms.NewFromConfig(base), dir: t.TempDir(), gone: map[int]bool{}}
	h.arnA = createKey(t, h.kms, "faults A")
	h.arnB = createKey(t, h.kms, "faults B")
	h.deps = &rewrap.Deps{AWS: base}
	t.Cleanup(func() { h.deps.Close() })
	h.a = openKey(t, h.deps, "kms:"+h.arnA)
	if sc.escrow {
		h.arnC = createKey(t, h.kms, "faults escrow C")
		h.escrow = openKey(t, h.deps, "kms:"+h.arnC)
	}
	if sc.toHSM {
		h.hsm = newHSMKeySpec(t)
		h.deps.PKCS11Module, h.deps.PKCS11PINSource = os.Getenv(testenv.EnvPKCS11Module), "file:"+os.Getenv(testenv.EnvPKCS11PinFile)
		h.to = openKey(t, h.deps, h.hsm)
	} else {
		h.to = openKey(t, h.deps, "kms:"+h.arnB)
	}
	if sc.dynamo {
		h.table = "faults-" + strings.ToLower(strings.ReplaceAll(testenv.Name(t), "/", "-"))
		if len(h.table) > 200 {
			h.table = h.table[:200]
		}
	}
	return h
}

// faultCase is one case's bucket, objects and run.
type faultCase struct {
	bucket string
	runID  string
	ledger string
	objs   []sample.Object
	orig   map[string][]byte // ciphertext bodies as written (version -> body for versioned)
	plain  map[string][]byte
	older  []string // version ids of the older versions (versioned)
}

// setup writes the case's objects: one object, and for a versioned
// scenario an older version of it under the same key A.
func (h *faultHarness) setup(t *testing.T) *faultCase {
	t.Helper()
	h.caseNo++
	c := &faultCase{bucket: testenv.Name(t), runID: fmt.Sprintf("faults-%d", h.caseNo), orig: map[string][]byte{}, plain: map[string][]byte{}}
	if _, err := h.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &c.bucket}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testenv.EmptyBucket(h.s3, c.bucket) })
	if h.sc.versioned {
		if _, err := h.s3.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: &c.bucket,
			VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled}}); err != nil {
			t.Fatal(err)
		}
	}
	gens := 1
	if h.sc.versioned {
		gens = 2
	}
	for range gens {
		objs, err := sample.Seed(ctx, h.s3, h.kms, sample.Options{Bucket: c.bucket, KMSKeyID: h.arnA, Count: 1,
			MinSize: h.sc.size, MaxSize: h.sc.size, Kinds: []sample.Kind{h.sc.kind}})
		if err != nil {
			t.Fatal(err)
		}
		c.objs = objs
	}
	for _, o := range c.objs {
		c.orig[o.Key] = h.raw(t, c.bucket, o.Key)
		pt, _, err := sample.Open(ctx, h.s3, c.bucket, o.Key, h.a)
		if err != nil {
			t.Fatal(err)
		}
		c.plain[o.Key] = pt
	}
	if h.sc.versioned {
		for _, v := range h.versions(t, c.bucket) {
			if !v.latest {
				c.older = append(c.older, v.id)
			}
		}
	}
	if h.sc.escrow && h.sc.mode == pipeline.ModeReencrypt {
		// An escrow file under the old data key, which the re-encryption
		// must replace.
		l, err := ledger.Open(ctx, filepath.Join(h.dir, fmt.Sprintf("pre-escrow-%d.db", h.caseNo)))
		if err != nil {
			t.Fatal(err)
		}
		cm := commit.New(h.s3, commit.Options{})
		pre := &pipeline.Core{S3: cm, Ledger: l, To: h.escrow, Escrow: h.escrow, Creator: cm, From: []rewrap.Keyring{h.a},
			Mode: pipeline.ModeEscrow, RunID: "pre-escrow"}
		for _, o := range c.objs {
			if out, err := pre.Process(ctx, inventory.Item{Bucket: c.bucket, Key: o.Key}); err != nil || out.Status != pipeline.StatusSucceeded {
				t.Fatalf("escrow before the re-encryption: %+v %v", out, err)
			}
		}
		l.Close()
	}
	if h.sc.already {
		// Rewrapped to the target key by a run of its own ledger.
		l, err := ledger.Open(ctx, filepath.Join(h.dir, fmt.Sprintf("pre-rewrap-%d.db", h.caseNo)))
		if err != nil {
			t.Fatal(err)
		}
		pre := &pipeline.Core{S3: commit.New(h.s3, commit.Options{}), Ledger: l, To: h.to, From: []rewrap.Keyring{h.a},
			Mode: pipeline.ModeRewrap, RunID: "pre-rewrap"}
		for _, o := range c.objs {
			if out, err := pre.Process(ctx, inventory.Item{Bucket: c.bucket, Key: o.Key}); err != nil || out.Status != pipeline.StatusSucceeded {
				t.Fatalf("rewrap before the run: %+v %v", out, err)
			}
		}
		l.Close()
	}
	if h.sc.dynamo {
		c.ledger = "dynamodb://" + h.table + "?create=true"
	} else {
		c.ledger = filepath.Join(h.dir, c.runID+".db")
	}
	return c
}

func (h *faultHarness) config(c *faultCase) pipeline.Config {
	cfg := pipeline.Config{Source: "s3://" + c.bucket, To: h.to.ID(), From: []string{"kms:" + h.arnA}, Mode: h.sc.mode,
		Ledger: c.ledger, Concurrency: 1, ListWorkers: 1, PartSize: reencrypt.MinPartSize, PartsInFlight: 1}
	if h.sc.toHSM {
		cfg.To = h.hsm
	} else {
		cfg.To = "kms:" + h.arnB
	}
	if h.sc.versioned {
		cfg.AllVersions, cfg.DeleteOldVersions = true, true
	}
	if h.sc.escrow {
		cfg.Escrow = "kms:" + h.arnC
	}
	if h.sc.move {
		cfg.Placement = pipeline.PlacementInstructionFile
	}
	return cfg
}

// processResult is how one simulated 'rotator run' or 'resume' ended.
type processResult struct {
	err        error
	dead       bool
	unfinished int64
	failed     int64
	report     string
	calls      []string
	started    bool // the run record exists
}

// process runs one simulated rotator process over the case with fault,
// as cmd/rotator's run (resume false) or resume does.
func (h *faultHarness) process(t *testing.T, c *faultCase, fault faults.Fault, resume bool) processResult {
	t.Helper()
	return h.processWith(t, c, faults.New(fault), h.config(c), resume)
}

// processWith runs one simulated process proc with configuration cfg.
func (h *faultHarness) processWith(t *testing.T, c *faultCase, proc *faults.Process, cfg pipeline.Config, resume bool) processResult {
	t.Helper()
	cfgAWS := h.base.Copy()
	cfgAWS.APIOptions = append(append(cfgAWS.APIOptions, proc.Middleware()), h.extra...)
	cfgAWS.Retryer = func() aws.Retryer { return awsx.NewRetryer(3, 5*time.Millisecond) }
	opts := pipeline.OpenOptions{AWS: &cfgAWS, KMSMaxAttempts: 3, KMSMaxBackoff: 5 * time.Millisecond, WrapKeyring: proc.Keyring}
	if !h.sc.dynamo {
		opts.WrapLedger = proc.Ledger
	}
	res := processResult{}
	defer func() { res.calls = proc.Calls() }()
	env, err := pipeline.Open(ctx, cfg, opts)
	if err != nil {
		res.err, res.dead = err, proc.Dead()
		res.calls = proc.Calls()
		return res
	}
	defer env.Close()
	finish := func(err error) processResult {
		res.err, res.dead, res.calls = err, proc.Dead(), proc.Calls()
		return res
	}
	var rec ledger.Run
	var after []string
	if !resume {
		conf, _ := json.Marshal(cfg)
		rec = ledger.Run{ID: c.runID, Config: conf, State: ledger.RunRunning}
		err := env.Ledger.CreateRun(ctx, &rec)
		switch {
		case errors.Is(err, ledger.ErrRunExists):
			resume = true // as an operator told "resume it" would
		case err != nil:
			return finish(err)
		}
	}
	if resume {
		if rec, err = env.Ledger.GetRun(ctx, c.runID); err != nil {
			return finish(err)
		}
		cp, err := pipeline.DecodeCheckpoint(rec.Checkpoint)
		if err != nil {
			return finish(err)
		}
		after = cp.Positions
		rec.State = ledger.RunRunning
	}
	res.started = true
	pid := h.newPID()
	defer h.exit(pid)
	lease, err := pipeline.AcquireRunLease(ctx, env.Ledger, c.runID, "all", pipeline.LeaseOptions{TakeOver: h.ended, Host: "faults", PID: pid})
	if err != nil {
		return finish(err)
	}
	runCtx, stopKeeping := lease.Keep(ctx)
	src, err := env.Source(ctx, after)
	if err != nil {
		stopKeeping()
		release(proc, lease)
		return finish(err)
	}
	var buf bytes.Buffer
	rep, _ := pipeline.NewReport(&buf)
	stats := &pipeline.Stats{}
	r := &pipeline.Runner{Core: env.Core(c.runID, lease.Owner()), Source: src, Workers: 1, Runs: env.Ledger, Run: &rec,
		Progress: inventory.NewProgress(after), Report: rep, Stats: stats, Intents: env.Ledger, Resume: resume}
	err = r.Execute(runCtx, nil)
	stopKeeping()
	release(proc, lease)
	res = finish(err)
	res.unfinished, res.failed, res.report = stats.Unfinished.Load(), stats.Failed.Load(), buf.String()
	return res
}

// release releases a live process's lease; a dead process releases
// nothing (the next process takes its lease over: a process on the same
// host does when the holder's pid is gone).
func release(proc *faults.Process, lease *pipeline.RunLease) {
	if !proc.Dead() {
		_ = lease.Release(ctx)
	}
}

// newPID returns the pid of a new simulated process on host "faults".
func (h *faultHarness) newPID() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pids++
	return 1_000_000 + h.pids
}

// exit records that a simulated process ended: its pid is gone.
func (h *faultHarness) exit(pid int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gone[pid] = true
}

// ended is the lease takeover rule of the simulated host: the holder's
// process no longer exists.
func (h *faultHarness) ended(l ledger.Lease) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return l.Host == "faults" && h.gone[l.PID]
}

// done reports whether a process ended the run: it ran to the end (exit
// 0, or 3 with objects reported failed) with nothing unfinished.
func (r processResult) done() bool {
	return r.started && !r.dead && r.err == nil && r.unfinished == 0
}

// record runs the scenario without faults and returns its calls.
func (h *faultHarness) record(t *testing.T) []string {
	t.Helper()
	c := h.setup(t)
	res := h.process(t, c, faults.Fault{}, false)
	if !res.done() || res.failed != 0 {
		t.Fatalf("the scenario fails without faults: %v (unfinished %d, failed %d)\n%s", res.err, res.unfinished, res.failed, res.report)
	}
	h.check(t, c, true)
	return res.calls
}

// runCase runs the scenario with fault, resumes until the run is done, and
// checks the invariants; then a second run rotates what is left.
func (h *faultHarness) runCase(t *testing.T, fault faults.Fault) {
	c := h.setup(t)
	res := h.process(t, c, fault, false)
	var log []string
	log = append(log, fmt.Sprintf("run: err=%v dead=%v unfinished=%d failed=%d", res.err, res.dead, res.unfinished, res.failed))
	reports := []string{res.report}
	for i := 0; !res.done(); i++ {
		if i == 6 {
			t.Fatalf("the run is not done after %d resumes:\n%s\n%s", i, strings.Join(log, "\n"), res.report)
		}
		res = h.process(t, c, faults.Fault{}, res.started)
		log = append(log, fmt.Sprintf("resume %d: err=%v unfinished=%d failed=%d", i+1, res.err, res.unfinished, res.failed))
		reports = append(reports, res.report)
	}
	if t.Failed() {
		return
	}
	h.checkLeftNothing(t, c)
	// A process that dies is not the objects' fault: once resumed, every
	// object is rotated. A failed or lost call may leave an object
	// reported and untouched.
	rotated := h.check(t, c, fault.Kind == faults.Die)
	events := h.events(t, c)
	for key, n := range events {
		if n > 1 {
			t.Errorf("%s: %d lineage events of the run, want at most 1\n%s", key, n, strings.Join(log, "\n"))
		}
		if n == 1 && !rotated[key] {
			t.Errorf("%s: a lineage event, but the object is not rotated", key)
		}
	}
	want := 1
	if h.sc.already {
		want = 0
		h.checkUnclaimed(t, c)
	}
	for key, ok := range rotated {
		if ok && events[key] != want {
			t.Errorf("%s: rotated with %d lineage events, want %d\n%s", key, events[key], want, strings.Join(log, "\n"))
		}
	}
	if !h.sc.already {
		// (An object already under the target key was under it before the
		// run too: one the run reported failed it did not record. The
		// second run does: checked below.)
		h.checkRecords(t, c, rotated, strings.Join(log, "\n"))
	}
	if h.sc.escrow {
		// A process that dies reports nothing: once resumed, every
		// object is escrowed, as if it had not died.
		h.checkEscrow(t, c, rotated, strings.Join(log, "\n"), fault.Kind == faults.Die, lastSucceeded(t, reports))
	}
	// A second run rotates what the first reported and left.
	c2 := *c
	c2.runID += "-again"
	res = h.process(t, &c2, faults.Fault{}, false)
	if !res.done() || res.failed != 0 {
		t.Fatalf("second run: %v (unfinished %d, failed %d)\n%s", res.err, res.unfinished, res.failed, res.report)
	}
	again := h.check(t, &c2, true)
	h.checkLeftNothing(t, &c2)
	if h.sc.already {
		h.checkRecords(t, &c2, again, "second run")
		h.checkUnclaimed(t, &c2)
	}
	if h.sc.escrow {
		h.checkEscrow(t, &c2, again, "second run", true, nil)
	}
	all := h.events(t, c)
	for key, n := range h.events(t, &c2) {
		all[key] += n
	}
	for _, o := range c.objs {
		if all[o.Key] != want {
			t.Errorf("%s: %d lineage events over both runs, want exactly %d", o.Key, all[o.Key], want)
		}
	}
}

// checkUnclaimed checks that no claim is left on the case's objects:
// another run claims each at once.
func (h *faultHarness) checkUnclaimed(t *testing.T, c *faultCase) {
	t.Helper()
	l := h.openLedger(t, c)
	defer l.Close()
	probe := ledger.Owner{Run: "probe", Lease: "all", Epoch: 1, Holder: "p"}.String()
	for _, o := range c.objs {
		id := ledger.ObjectID{Bucket: c.bucket, Key: o.Key}
		if _, err := l.Claim(ctx, id, probe, time.Minute); err != nil {
			t.Errorf("%s: a claim is left: %v", o.Key, err)
			continue
		}
		if err := l.Release(ctx, id, probe); err != nil {
			t.Fatal(err)
		}
	}
}

// check verifies every object: rotated (opens under the target key with
// its original plaintext; a rewrapped body is the original) or, unless
// mustRotate, left byte for byte as it was. It returns which are rotated.
func (h *faultHarness) check(t *testing.T, c *faultCase, mustRotate bool) map[string]bool {
	t.Helper()
	rotated := map[string]bool{}
	for _, o := range c.objs {
		body := h.raw(t, c.bucket, o.Key)
		pt, _, err := sample.Open(ctx, h.s3, c.bucket, o.Key, h.to)
		switch {
		case err == nil:
			if !bytes.Equal(pt, c.plain[o.Key]) {
				t.Errorf("%s: opens under the target key with another plaintext", o.Key)
			}
			if h.sc.mode == pipeline.ModeRewrap && !bytes.Equal(body, c.orig[o.Key]) {
				t.Errorf("%s: rewrapped but its body changed", o.Key)
			}
			rotated[o.Key] = true
			if h.sc.move {
				h.checkMoved(t, c.bucket, o.Key, true)
			}
		case mustRotate:
			t.Errorf("%s: does not open under the target key: %v", o.Key, err)
		default:
			if !bytes.Equal(body, c.orig[o.Key]) {
				t.Errorf("%s: neither rotated (%v) nor left as it was", o.Key, err)
			}
			if pt, _, err := sample.Open(ctx, h.s3, c.bucket, o.Key, h.a); err != nil || !bytes.Equal(pt, c.plain[o.Key]) {
				t.Errorf("%s: left as it was, but no longer opens under its key: %v", o.Key, err)
			}
			if h.sc.move {
				h.checkMoved(t, c.bucket, o.Key, false)
			}
		}
	}
	if h.sc.versioned {
		// Older versions under A: deleted when the key's current version
		// is rotated; otherwise kept.
		left := map[string]bool{}
		for _, v := range h.versions(t, c.bucket) {
			left[v.id] = true
		}
		for _, id := range c.older {
			if mustRotate && left[id] {
				t.Errorf("older version %s under the exposed key is left", id)
			}
		}
	}
	return rotated
}

// checkEscrow checks the escrow invariants of a run: no run records two
// escrows of an object; an escrow the run recorded opens its object under
// the escrow key alone with its original plaintext. A rewrap escrows
// before it changes anything and keeps the data key: an object it rotated
// has such an escrow file, and no escrow file it leaves is stale. A
// re-encryption escrows after its content landed: a failed escrow may
// leave the old one, stale, with the object reported; once a run ends
// with everything done and nothing reported (final), every object's
// escrow file opens it, written by one escrow of the run; so does that of
// every object whose last outcome in the run was a success (succeeded:
// its re-encryption's escrow landed too, whichever process finished it).
func (h *faultHarness) checkEscrow(t *testing.T, c *faultCase, rotated map[string]bool, log string, final bool, succeeded map[string]bool) {
	t.Helper()
	l := h.openLedger(t, c)
	defer l.Close()
	escrows := map[string]int{}
	if err := l.Events(ctx, func(ev ledger.Event) error {
		if ev.RunID == c.runID && ev.ID.Bucket == c.bucket && ev.Op == ledger.OpEscrow {
			escrows[ev.ID.Key]++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, o := range c.objs {
		if escrows[o.Key] > 1 {
			t.Errorf("%s: %d escrow events of the run, want at most 1\n%s", o.Key, escrows[o.Key], log)
		}
		rewrap := h.sc.mode == pipeline.ModeRewrap
		whole := final || (rewrap && rotated[o.Key]) || (rotated[o.Key] && succeeded[o.Key])
		must := whole || escrows[o.Key] == 1
		ekey := escrow.Key(o.Key, "")
		_, err := h.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &c.bucket, Key: &ekey})
		if err != nil {
			if must {
				t.Errorf("%s: no escrow file (%v) (rotated %v, %d escrow events)\n%s", o.Key, err, rotated[o.Key], escrows[o.Key], log)
			}
			continue
		}
		if !must && !rewrap {
			continue // a re-encryption's failed escrow: the old file may be stale
		}
		pt, err := openThroughEscrow(h, c.bucket, o.Key, h.escrow)
		if err != nil || !bytes.Equal(pt, c.plain[o.Key]) {
			t.Errorf("%s: the escrow file does not open the object under the escrow key: %v\n%s", o.Key, err, log)
		}
		if whole && escrows[o.Key] != 1 {
			t.Errorf("%s: rotated with %d escrow events of the run, want 1\n%s", o.Key, escrows[o.Key], log)
		}
	}
}

// lastSucceeded reads the reports of a run's processes, in order, and
// returns the keys whose last row says succeeded.
func lastSucceeded(t *testing.T, reports []string) map[string]bool {
	t.Helper()
	last := map[string]bool{}
	for _, rep := range reports {
		rows, err := csv.NewReader(strings.NewReader(rep)).ReadAll()
		if err != nil {
			t.Fatalf("report: %v\n%s", err, rep)
		}
		for _, row := range rows {
			if len(row) < 4 || row[0] == pipeline.ReportHeader[0] {
				continue
			}
			key, err := url.QueryUnescape(row[1])
			if err != nil {
				t.Fatalf("report key %q: %v", row[1], err)
			}
			last[key] = row[3] == string(pipeline.StatusSucceeded)
		}
	}
	return last
}

// openThroughEscrow decrypts an object with the data key of its escrow
// file alone, unwrapped with k.
func openThroughEscrow(h *faultHarness, bucket, key string, k rewrap.Keyring) ([]byte, error) {
	out, err := h.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return nil, err
	}
	ct, err := io.ReadAll(out.Body)
	out.Body.Close()
	if err != nil {
		return nil, err
	}
	var instr []byte
	if envelope.NeedsInstructionFile(out.Metadata) {
		ik := envelope.InstructionKey(key, "")
		io2, err := h.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &ik})
		if err != nil {
			return nil, err
		}
		instr, err = io.ReadAll(io2.Body)
		io2.Body.Close()
		if err != nil {
			return nil, err
		}
	}
	env, err := envelope.Parse(out.Metadata, instr, envelope.ParseOptions{})
	if err != nil {
		return nil, err
	}
	ekey := escrow.Key(key, "")
	eo, err := h.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &ekey})
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(eo.Body)
	eo.Body.Close()
	if err != nil {
		return nil, err
	}
	e, err := escrow.Parse(env, body)
	if err != nil {
		return nil, err
	}
	w, cek := rewrap.FromEnvelope(e)
	dek, err := k.Unwrap(ctx, w, cek)
	if err != nil {
		return nil, err
	}
	defer dek.Clear()
	return envelope.DecryptContent(e, dek, ct)
}

// checkMoved checks where a moved (or unmoved) object's envelope is: in
// its instruction file and out of its metadata (V3 keeps x-amz-c, x-amz-d
// and x-amz-i there), or in its metadata with no instruction file left
// beside it by a move that did not land.
func (h *faultHarness) checkMoved(t *testing.T, bucket, key string, moved bool) {
	t.Helper()
	head, err := h.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	ik := key + envelope.DefaultInstructionSuffix
	_, ierr := h.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &ik})
	switch {
	case moved && !envelope.NeedsInstructionFile(head.Metadata):
		t.Errorf("%s: rotated, but its metadata still holds the envelope", key)
	case moved && ierr != nil:
		t.Errorf("%s: moved, but its instruction file cannot be read: %v", key, ierr)
	case moved && h.sc.kind.Format == envelope.V3 && (head.Metadata["x-amz-c"] == "" || head.Metadata["x-amz-d"] == "" || head.Metadata["x-amz-i"] == ""):
		t.Errorf("%s: a moved V3 object must keep x-amz-c, x-amz-d and x-amz-i: %v", key, head.Metadata)
	case !moved && ierr == nil:
		t.Errorf("%s: not moved, but an instruction file is left beside it", key)
	}
}

// checkLeftNothing checks that the run holds no intent or checkpoint and
// that no multipart upload is left in the bucket.
func (h *faultHarness) checkLeftNothing(t *testing.T, c *faultCase) {
	t.Helper()
	l := h.openLedger(t, c)
	defer l.Close()
	if n, err := pipeline.Unfinished(ctx, l, c.runID); err != nil || n != 0 {
		t.Errorf("%d intents or checkpoints left (%v)", n, err)
	}
	out, err := h.s3.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &c.bucket})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Uploads) != 0 {
		t.Errorf("%d multipart uploads left", len(out.Uploads))
	}
}

// events counts the lineage events of the case's run per key.
func (h *faultHarness) events(t *testing.T, c *faultCase) map[string]int {
	t.Helper()
	l := h.openLedger(t, c)
	defer l.Close()
	n := map[string]int{}
	if err := l.Events(ctx, func(ev ledger.Event) error {
		if ev.RunID == c.runID && ev.ID.Bucket == c.bucket && ev.Op != ledger.OpDeleteVersion && ev.Op != ledger.OpEscrow {
			n[ev.ID.Key]++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// checkRecords checks that the ledger records each rotated object under
// the target key (a record that names another key miscounts the objects
// a key still protects). Versioned buckets are left out: a rotation
// records the version it made.
func (h *faultHarness) checkRecords(t *testing.T, c *faultCase, rotated map[string]bool, log string) {
	t.Helper()
	if h.sc.versioned {
		return
	}
	l := h.openLedger(t, c)
	defer l.Close()
	for key, ok := range rotated {
		if !ok {
			continue
		}
		rec, err := l.Get(ctx, ledger.ObjectID{Bucket: c.bucket, Key: key})
		if err != nil || rec.WrapKey != h.to.ID() {
			t.Errorf("%s: rotated, but the ledger records it under %q (%v), not the target %s\n%s", key, rec.WrapKey, err, h.to.ID(), log)
		}
	}
}

func (h *faultHarness) openLedger(t *testing.T, c *faultCase) ledger.Ledger {
	t.Helper()
	url := c.ledger
	if h.sc.dynamo {
		url = "dynamodb://" + h.table
	}
	l, err := ledger.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func (h *faultHarness) raw(t *testing.T, bucket, key string) []byte {
	t.Helper()
	out, err := h.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type version struct {
	id     string
	latest bool
}

func (h *faultHarness) versions(t *testing.T, bucket string) []version {
	t.Helper()
	out, err := h.s3.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: &bucket})
	if err != nil {
		t.Fatal(err)
	}
	var vs []version
	for _, v := range out.Versions {
		if strings.HasSuffix(aws.ToString(v.Key), envelope.DefaultInstructionSuffix) {
			continue
		}
		vs = append(vs, version{id: aws.ToString(v.VersionId), latest: aws.ToBool(v.IsLatest)})
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i].id < vs[j].id })
	return vs
}
