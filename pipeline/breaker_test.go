package pipeline_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/pipeline"
	"github.com/rotator-dev/rotator/rewrap"
)

// The circuit breaker of pipeline.Runner: a run stops when DefaultBreaker
// objects in a row fail with the same configuration-like error code (access
// denied, an S3 error), because then every further object would fail the
// same way. These tests need no server: the objects live in memDisk, the
// keys are local AES keys, the ledger is the embedded one.

// memDisk is an in-memory pipeline.Committer. The first path element of a
// key says what Head does:
//
//	ok/...      an S3EC V2 object wrapped under the fixture's key A: rewraps
//	denied/...  AccessDenied (configuration-like)
//	s3err/...   an S3 error without a code rotator knows (configuration-like)
//	bad/...     a broken envelope: BadEnvelope (about the object itself)
//	gone/...    deleted since it was listed: skipped
//	plain/...   not encrypted: skipped
type memDisk struct {
	meta   map[string]string // the envelope of every ok/ object
	mu     sync.Mutex
	writes int
}

func (m *memDisk) Head(_ context.Context, bucket, key, versionID string) (*commit.Object, error) {
	obj := &commit.Object{Bucket: bucket, Key: key, VersionID: versionID, ETag: `"e"`, Size: 32, Metadata: map[string]string{}} // 16 bytes of plaintext and the tag
	e := &commit.Error{Op: "head object", Bucket: bucket, Key: key, VersionID: versionID, Err: errors.New("injected")}
	switch kind, _, _ := strings.Cut(key, "/"); kind {
	case "ok":
		for k, v := range m.meta {
			obj.Metadata[k] = v
		}
	case "denied":
		e.Kind = commit.ErrAccessDenied
		return nil, e
	case "s3err":
		return nil, e
	case "bad":
		obj.Metadata = map[string]string{"x-amz-key-v2": "AAAA", "x-amz-iv": "short", "x-amz-cek-alg": "AES/GCM/NoPadding",
			"x-amz-wrap-alg": "AES/GCM", "x-amz-matdesc": "{}"}
	case "gone":
		e.Kind = commit.ErrGone
		return nil, e
	case "plain":
	default:
		return nil, fmt.Errorf("memDisk: no rule for %s", key)
	}
	return obj, nil
}

func (m *memDisk) ReadInstruction(context.Context, string, string, string) (*commit.Object, []byte, error) {
	return nil, nil, &commit.Error{Op: "get instruction file", Kind: commit.ErrGone, Err: errors.New("none")}
}

func (m *memDisk) MetadataEnvelope(_ context.Context, obj *commit.Object, _ map[string]string) (commit.Result, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.writes++
	return commit.Result{ETagBefore: obj.ETag, ETagAfter: obj.ETag}, nil
}

func (m *memDisk) WriteInstruction(context.Context, *commit.Object, []byte) (commit.Result, error) {
	return commit.Result{}, errors.New("memDisk: no instruction files")
}

var _ pipeline.Committer = (*memDisk)(nil)

// listing is an inventory.Source of the given keys, in order.
type listing []string

func (l listing) Stream(ctx context.Context, fn func(inventory.Item) error) error {
	for _, k := range l {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(inventory.Item{Bucket: "b", Key: k, IsLatest: true}); err != nil {
			return err
		}
	}
	return nil
}

// keys returns n keys of a kind: kind/000, kind/001, ...
func keys(kind string, n int) listing {
	l := make(listing, n)
	for i := range l {
		l[i] = fmt.Sprintf("%s/%03d", kind, i)
	}
	return l
}

// memRuns keeps the last run record the runner wrote.
type memRuns struct {
	mu   sync.Mutex
	last ledger.Run
}

func (r *memRuns) GetRun(_ context.Context, id string) (ledger.Run, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last, nil
}

func (r *memRuns) UpdateRun(_ context.Context, run *ledger.Run) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	run.Revision++
	r.last = *run
	return nil
}

type breakerFixture struct {
	disk   *memDisk
	ledger ledger.Ledger
	a, b   rewrap.Keyring
}

func newBreakerFixture(t *testing.T) *breakerFixture {
	t.Helper()
	dir := t.TempDir()
	deps := &rewrap.Deps{}
	t.Cleanup(func() { deps.Close() })
	open := func(name string) rewrap.Keyring {
		k := make([]byte, 32)
		rand.Read(k)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(base64.StdEncoding.EncodeToString(k)), 0o600); err != nil {
			t.Fatal(err)
		}
		clear(k)
		return openKey(t, deps, "aes:"+p)
	}
	f := &breakerFixture{a: open("a.key"), b: open("b.key")}
	// One envelope serves every ok/ object: each is rewrapped on its own.
	dk, err := envelope.GenerateDataKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	defer dk.Clear()
	env, _, err := envelope.EncryptContent(envelope.V2, dk, []byte("sixteen bytes!!!"), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	w, err := f.a.Wrap(context.Background(), dk, env.CEKAlg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if env, err = env.WithWrappedKey(w.Key, w.Alg, w.MatDesc); err != nil {
		t.Fatal(err)
	}
	meta, err := env.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	f.disk = &memDisk{meta: meta}
	l, err := ledger.Open(context.Background(), filepath.Join(dir, "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	f.ledger = l
	return f
}

// run runs src through a Runner with one worker (so outcomes arrive in
// listing order) and the given breaker limit (0: the default).
func (f *breakerFixture) run(t *testing.T, src listing, limit int) (*pipeline.Stats, *memRuns, error) {
	t.Helper()
	runID := testRunID(t)
	core := &pipeline.Core{S3: f.disk, Ledger: f.ledger, To: f.b, From: []rewrap.Keyring{f.a}, Mode: pipeline.ModeRewrap,
		RunID: runID, Parse: envelope.ParseOptions{AllowLegacy: true}}
	runs := &memRuns{}
	r := &pipeline.Runner{Core: core, Source: src, Workers: 1, Breaker: limit,
		Runs: runs, Run: &ledger.Run{ID: runID, State: ledger.RunRunning}, Stats: &pipeline.Stats{}}
	err := r.Execute(context.Background(), nil)
	return r.Stats, runs, err
}

func testRunID(t *testing.T) string {
	return strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())
}

func concat(ls ...listing) listing {
	var out listing
	for _, l := range ls {
		out = append(out, l...)
	}
	return out
}

// TestBreakerTripsAtTheLimit: 50 objects in a row denied stop the run
// there, with an error that names the code, the last message, and what to
// do (fix the cause, resume); the run record is failed and keeps that
// error. 49 do not stop it.
func TestBreakerTripsAtTheLimit(t *testing.T) {
	for _, kind := range []struct{ key, code string }{
		{"denied", pipeline.CodeAccessDenied},
		{"s3err", pipeline.CodeS3},
	} {
		t.Run(kind.code, func(t *testing.T) {
			f := newBreakerFixture(t)
			stats, runs, err := f.run(t, concat(keys("ok", 3), keys(kind.key, 400)), 0)
			if err == nil {
				t.Fatalf("a run of 400 objects failing with %s did not stop", kind.code)
			}
			t.Logf("run error: %v", err)
			for _, want := range []string{
				fmt.Sprintf("the last %d objects all failed with %s", pipeline.DefaultBreaker, kind.code),
				"injected", // the last object's message
				"fix the cause, then run 'rotator resume'",
			} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("run error lacks %q: %v", want, err)
				}
			}
			// The breaker trips on the 50th failure; the listing stops, and
			// only what was already handed out (a few channel slots) is
			// finished.
			if got := stats.Failed.Load(); got < pipeline.DefaultBreaker || got > pipeline.DefaultBreaker+4 {
				t.Errorf("%d failures recorded, want %d (and at most the few in flight)", got, pipeline.DefaultBreaker)
			}
			if stats.Succeeded.Load() != 3 || stats.ListingDone.Load() {
				t.Errorf("succeeded %d (want 3), listing done %v (want stopped)", stats.Succeeded.Load(), stats.ListingDone.Load())
			}
			cp, derr := pipeline.DecodeCheckpoint(runs.last.Checkpoint)
			if derr != nil || runs.last.State != ledger.RunFailed || !strings.Contains(cp.Error, "rotator resume") {
				t.Errorf("run record: state %s, checkpoint error %q (%v)", runs.last.State, cp.Error, derr)
			}
		})
	}
	t.Run("one below the limit", func(t *testing.T) {
		f := newBreakerFixture(t)
		stats, _, err := f.run(t, keys("denied", pipeline.DefaultBreaker-1), 0)
		if err != nil || stats.Failed.Load() != pipeline.DefaultBreaker-1 {
			t.Errorf("%d failures in a row stopped the run: %v (failed %d)", pipeline.DefaultBreaker-1, err, stats.Failed.Load())
		}
	})
}

// TestBreakerIgnoresObjectCodes: failures that concern the objects
// themselves (a broken envelope, a key that is gone) say nothing about the
// configuration, however many there are.
func TestBreakerIgnoresObjectCodes(t *testing.T) {
	f := newBreakerFixture(t)
	stats, _, err := f.run(t, concat(keys("bad", 3*pipeline.DefaultBreaker), keys("gone", 2*pipeline.DefaultBreaker), keys("ok", 2)), 0)
	if err != nil {
		t.Fatalf("object failures stopped the run: %v", err)
	}
	if stats.Failed.Load() != 3*pipeline.DefaultBreaker || stats.Skipped.Load() != 2*pipeline.DefaultBreaker || stats.Succeeded.Load() != 2 {
		t.Errorf("counts %v", stats.Counts())
	}
}

// TestBreakerStreaks: only a streak of one configuration-like code counts.
// A success ends the streak; a different configuration-like code starts a
// new one; object failures and skips in between neither count nor end it
// (denied objects between broken ones still mean the credentials are
// wrong). A negative limit turns the breaker off.
func TestBreakerStreaks(t *testing.T) {
	const n = pipeline.DefaultBreaker
	interleave := func(a, b listing) listing {
		var out listing
		for i := range a {
			out = append(out, a[i])
			if i < len(b) {
				out = append(out, b[i])
			}
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		src   listing
		limit int
		trips bool
	}{
		{"a success ends the streak", concat(keys("denied", n-1), keys("ok", 1), keys("denied", n-1)), 0, false},
		{"another code starts a new streak", interleave(keys("denied", n), keys("s3err", n)), 0, false},
		{"another code, then the limit", concat(keys("s3err", n-1), keys("denied", n)), 0, true},
		{"object failures do not end the streak", interleave(keys("denied", n), keys("bad", n)), 0, true},
		{"skips do not end the streak", interleave(keys("denied", n), keys("plain", n)), 0, true},
		{"a limit of its own", concat(keys("denied", 5), keys("ok", 1)), 5, true},
		{"turned off", keys("denied", 3*n), -1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newBreakerFixture(t)
			stats, _, err := f.run(t, tc.src, tc.limit)
			if tripped := err != nil; tripped != tc.trips {
				t.Fatalf("tripped %v, want %v (err %v, counts %v)", tripped, tc.trips, err, stats.Counts())
			}
			if tc.trips && !strings.Contains(err.Error(), "fix the cause, then run 'rotator resume'") {
				t.Errorf("run error has no next step: %v", err)
			}
			if !tc.trips && stats.Done.Load() != int64(len(tc.src)) {
				t.Errorf("%d of %d objects done", stats.Done.Load(), len(tc.src))
			}
		})
	}
}
