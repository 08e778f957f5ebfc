// Command suite is `make bench`: every figure of the performance issue from
// one run on the local stack, each rotator figure beside a baseline measured
// in the same invocation (interleaved in rounds where the work allows it),
// because these machines are noisy.
//
//	scripts/stack up; . .stack/env
//	cd bench && go run ./suite            # under 30 minutes on 2 busy cores
//	cd bench && go run ./suite -smoke     # tiny sizes, about a minute (make test)
//
// rotator, the bare loops and the official client all run as child
// processes, so CPU time (user+sys) and peak RSS come from the kernel
// (wait4's rusage). Objects are written by the official S3 Encryption
// Client for Go v4.0.0 (V3, envelope in metadata). It prints a markdown
// table of ratios, writes the whole measurement as JSON to
// bench/results/DATE.json and a plot of objects/s and peak RSS against the
// object count to bench/results/DATE.svg.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/rotator-dev/rotator/bench/internal/workload"
)

func main() {
	if len(os.Args) > 1 && strings.HasPrefix(os.Args[1], "child-") {
		if err := child(os.Args[1], os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "suite:", err)
			os.Exit(1)
		}
		return
	}
	o, err := parseFlags(os.Args[1:])
	if err == nil && o.Retable != "" {
		err = retable(o.Retable)
	} else if err == nil {
		err = run(o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "suite: error:", err)
		os.Exit(1)
	}
}

// Options are the suite's knobs; -smoke sets every size tiny.
type Options struct {
	Root       string        `json:"-"`
	Out        string        `json:"-"`
	Smoke      bool          `json:"smoke"`
	Only       string        `json:"only,omitempty"`
	Conc       int           `json:"concurrency"`
	Rounds     int           `json:"rounds"`
	SmallN     int           `json:"small_objects"`
	SmallSize  int64         `json:"small_size"`
	LargeN     int           `json:"large_objects"`
	LargeSize  int64         `json:"large_size"`
	BigSize    int64         `json:"big_size"`
	TinySize   int64         `json:"tiny_size"`
	HSMN       int           `json:"hsm_objects_per_run"`
	CapRPS     float64       `json:"kms_rps_cap"`
	CapN       int           `json:"cap_objects"`
	Latency    time.Duration `json:"kms_latency_ns"`
	LatN       int           `json:"latency_objects"`
	LatConcs   []int         `json:"latency_concurrencies"`
	LatRounds  int           `json:"latency_rounds"`
	Scale      []int         `json:"scale"`
	DynamoN    int           `json:"dynamodb_objects"`
	SeedConc   int           `json:"seed_concurrency"`
	Keep       bool          `json:"-"`
	RotatorBin string        `json:"-"`
	Retable    string        `json:"-"`
}

func parseFlags(args []string) (Options, error) {
	var o Options
	fs := flag.NewFlagSet("suite", flag.ContinueOnError)
	fs.StringVar(&o.Root, "root", "..", "the rotator repository (rotator and kms-test-server are built from it)")
	fs.StringVar(&o.Out, "out", "results", "directory for the JSON and the SVG (\"\" writes none)")
	fs.BoolVar(&o.Smoke, "smoke", false, "tiny sizes: checks that every part of the suite runs (its figures mean nothing)")
	fs.StringVar(&o.Only, "only", "", "comma-separated scenarios to run (rewrap,big,hsm,cap,latency,dynamodb,scale; default all)")
	fs.IntVar(&o.Conc, "concurrency", 32, "objects in flight for rotator and the baselines")
	fs.IntVar(&o.Rounds, "rounds", 2, "rounds of rotator and baselines, interleaved")
	small, large, big, tiny := fs.String("small-size", "1MiB", "object size of the first rewrap set"), fs.String("large-size", "16MiB", "object size of the second"),
		fs.String("big-size", "1GiB", "the one big object re-encrypted"), fs.String("tiny-size", "1KiB", "object size of the HSM, cap, latency, DynamoDB and scale sets")
	fs.IntVar(&o.SmallN, "small-n", 1000, "objects in the first rewrap set (also re-encrypted)")
	fs.IntVar(&o.LargeN, "large-n", 1000, "objects in the second rewrap set (as many as the first: rotator's cost per process, some 0.3 s of CPU in its first few hundred objects, decided the ratio of 400)")
	fs.IntVar(&o.HSMN, "hsm-n", 500, "objects per KMS -> HSM run")
	fs.Float64Var(&o.CapRPS, "kms-rps", 0, "the KMS test server's -rps cap for the throttling figure (0: half the rate rotator reached in the rewrap figure, so that the cap, not the machine, is the limit; 300 if that did not run)")
	fs.IntVar(&o.CapN, "cap-n", 0, "objects rewrapped under the cap (0: ten seconds' worth)")
	fs.DurationVar(&o.Latency, "kms-latency", 30*time.Millisecond, "KMS latency of the concurrency figure")
	fs.IntVar(&o.LatN, "latency-n", 4000, "objects rewrapped at each concurrency")
	fs.IntVar(&o.LatRounds, "latency-rounds", 3, "rounds of rotator and the bare loop at each concurrency, interleaved")
	concs := fs.String("latency-concurrency", "32,128,512", "concurrencies of the latency-bound figure")
	scale := fs.String("scale", "1000,10000,100000", "object counts of the memory and throughput figure")
	fs.IntVar(&o.DynamoN, "dynamodb-n", 1000, "objects rewrapped with the DynamoDB ledger")
	fs.IntVar(&o.SeedConc, "seed-concurrency", 64, "objects written at once while seeding")
	fs.BoolVar(&o.Keep, "keep", false, "keep the bucket and its objects")
	fs.StringVar(&o.RotatorBin, "rotator", "", "a rotator binary to measure (default: built from -root)")
	fs.StringVar(&o.Retable, "retable", "", "measure nothing: recompute the table, the internet-scale figures and the plot from this results `file` (JSON) and write them beside it")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.Smoke {
		*small, *large, *big = "64KiB", "256KiB", "8MiB"
		o.SmallN, o.LargeN, o.HSMN, o.CapN, o.LatN, o.DynamoN, o.Rounds, o.LatRounds = 20, 8, 20, 60, 40, 20, 1, 1
		o.CapRPS, o.Latency, *concs, *scale = 100, 5*time.Millisecond, "4,16", "20,60"
	}
	var err error
	for _, p := range []struct {
		s   string
		dst *int64
	}{{*small, &o.SmallSize}, {*large, &o.LargeSize}, {*big, &o.BigSize}, {*tiny, &o.TinySize}} {
		if *p.dst, err = parseSize(p.s); err != nil {
			return o, err
		}
	}
	if o.LatConcs, err = parseInts(*concs); err != nil {
		return o, fmt.Errorf("-latency-concurrency: %w", err)
	}
	if o.Scale, err = parseInts(*scale); err != nil {
		return o, fmt.Errorf("-scale: %w", err)
	}
	return o, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q: want positive integers separated by commas", s)
		}
		out = append(out, n)
	}
	return out, nil
}

func parseSize(s string) (int64, error) {
	n, err := workload.ParseSize(s, 1)
	if err != nil {
		return 0, fmt.Errorf("size %w", err)
	}
	return n, nil
}

func human(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// Results is everything one run measured (the JSON file).
type Results struct {
	Date     string           `json:"date"`
	Machine  map[string]any   `json:"machine"`
	Options  Options          `json:"options"`
	Runs     map[string][]Run `json:"runs"`
	Seeding  []Seed           `json:"seeding"`
	Figures  map[string]any   `json:"figures"`
	Rows     []Row            `json:"rows"`
	Scale    []ScalePoint     `json:"scale"`
	Internet map[string]any   `json:"internet_scale"`
	WallS    float64          `json:"wall_s"`
}

// Seed is how long writing a set with the official client took.
type Seed struct {
	Prefix  string  `json:"prefix"`
	Objects int     `json:"objects"`
	Size    int64   `json:"size"`
	WallS   float64 `json:"wall_s"`
}

// Row is one line of the table.
type Row struct {
	Figure   string `json:"figure"`
	Rotator  string `json:"rotator"`
	Baseline string `json:"baseline"`
	Ratio    string `json:"ratio"`
	Goal     string `json:"goal"`
	Holds    string `json:"holds"`
}

// ScalePoint is one rotator run of the scale figure.
type ScalePoint struct {
	Objects      int     `json:"objects"`
	ObjectsPerS  float64 `json:"objects_per_s"`
	PeakRSSMiB   float64 `json:"peak_rss_mib"`
	CPUPerObjMS  float64 `json:"cpu_per_object_ms"`
	LedgerBytes  float64 `json:"ledger_bytes_per_object"`
	LedgerWrites float64 `json:"ledger_write_txs_per_object"`
	// CPU seconds (user+sys) of the whole rotator process and of the bare
	// loop's on the same objects, so that a further object's CPU can be
	// told from each process's own (marginalCPU).
	CPUS     float64 `json:"cpu_s"`
	BareCPUS float64 `json:"bare_cpu_s,omitempty"`
	// BareObjectsPerS is the bare loop's rate.
	BareObjectsPerS float64 `json:"bare_objects_per_s,omitempty"`
}

type suite struct {
	o       Options
	ctx     context.Context
	s3c     *s3.Client
	kmsc    *kms.Client
	ddb     *dynamodb.Client
	bucket  string
	dir     string
	rotator string
	kmsBin  string
	self    string
	seq     int
	res     Results
}

func run(o Options) error {
	start := time.Now()
	ctx := context.Background()
	cfg, err := loadConfig(ctx, 256)
	if err != nil {
		return err
	}
	if os.Getenv("AWS_ENDPOINT_URL_S3") == "" || os.Getenv("AWS_ENDPOINT_URL_KMS") == "" {
		return errors.New("AWS_ENDPOINT_URL_S3 and AWS_ENDPOINT_URL_KMS are not set (hint: scripts/stack up; . .stack/env)")
	}
	s := &suite{o: o, ctx: ctx, s3c: newS3(cfg), kmsc: kms.NewFromConfig(cfg), ddb: dynamodb.NewFromConfig(cfg)}
	s.res = Results{Date: start.UTC().Format(time.RFC3339), Options: o, Runs: map[string][]Run{}, Figures: map[string]any{},
		Machine: map[string]any{"num_cpu": runtime.NumCPU(), "gomaxprocs": os.Getenv("GOMAXPROCS"), "load_at_start": loadAvg()}}
	if s.dir, err = os.MkdirTemp("", "rotator-bench"); err != nil {
		return err
	}
	defer os.RemoveAll(s.dir)
	if s.self, err = os.Executable(); err != nil {
		return err
	}
	if err := s.build(); err != nil {
		return err
	}
	floor, _, err := runChild("rss floor", nil, "/bin/true")
	if err != nil {
		return fmt.Errorf("the launcher: %w", err)
	}
	s.res.Machine["rss_floor_mib"] = floor.rssMiB()
	s.bucket = "bench-" + strings.ToLower(start.UTC().Format("20060102-150405"))
	if _, err := s.s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &s.bucket}); err != nil {
		return fmt.Errorf("create bucket %s: %w", s.bucket, err)
	}
	if !o.Keep {
		defer s.emptyBucket()
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		go func() {
			<-sig
			log("interrupted: deleting s3://%s", s.bucket)
			s.emptyBucket()
			os.RemoveAll(s.dir)
			os.Exit(130)
		}()
	}
	log("bucket s3://%s, work directory %s", s.bucket, s.dir)
	scenarios := []struct {
		name string
		fn   func() error
	}{
		{"rewrap", s.rewrapSets}, {"big", s.bigObject}, {"hsm", s.hsm}, {"cap", s.kmsCap},
		{"latency", s.latencyBound}, {"dynamodb", s.dynamoLedger}, {"scale", s.scale},
	}
	for _, sc := range scenarios {
		if o.Only != "" && !slices.Contains(strings.Split(o.Only, ","), sc.name) {
			continue
		}
		t := time.Now()
		log("== %s", sc.name)
		if err := sc.fn(); err != nil {
			return fmt.Errorf("%s: %w", sc.name, err)
		}
		log("== %s done in %.0f s", sc.name, time.Since(t).Seconds())
	}
	s.res.Machine["load_at_end"] = loadAvg()
	s.res.WallS = time.Since(start).Seconds()
	s.table()
	s.internetScale()
	s.print()
	return s.write()
}

// retable recomputes the rows and figures of a results file (after the
// table's code changed) and rewrites it and its plot.
func retable(file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	s := &suite{}
	if err := json.Unmarshal(b, &s.res); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	s.o = s.res.Options
	s.o.Out = filepath.Dir(file)
	s.table()
	s.internetScale()
	s.print()
	return s.write()
}

func log(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "suite: "+format+"\n", args...)
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.Join(strings.Fields(string(b))[:min(3, len(strings.Fields(string(b))))], " ")
}

func (s *suite) build() error {
	s.rotator, s.kmsBin = s.o.RotatorBin, filepath.Join(s.dir, "kms-test-server")
	launcher = filepath.Join(s.dir, "launch")
	c := exec.Command("go", "build", "-o", launcher, "./suite/launch")
	c.Dir, c.Stdout, c.Stderr = filepath.Join(s.o.Root, "bench"), os.Stderr, os.Stderr
	if err := c.Run(); err != nil {
		return fmt.Errorf("build the launcher: %w", err)
	}
	targets := [][2]string{{s.kmsBin, "./cmd/kms-test-server"}}
	if s.rotator == "" {
		s.rotator = filepath.Join(s.dir, "rotator")
		targets = append(targets, [2]string{s.rotator, "./cmd/rotator"})
	}
	for _, t := range targets {
		c := exec.Command("go", "build", "-o", t[0], t[1])
		c.Dir, c.Stdout, c.Stderr = s.o.Root, os.Stderr, os.Stderr
		if err := c.Run(); err != nil {
			return fmt.Errorf("build %s: %w", t[1], err)
		}
	}
	return nil
}

// emptyBucket deletes every object and the bucket.
func (s *suite) emptyBucket() {
	p := s3.NewListObjectsV2Paginator(s.s3c, &s3.ListObjectsV2Input{Bucket: &s.bucket})
	for p.HasMorePages() {
		page, err := p.NextPage(s.ctx)
		if err != nil {
			log("cleanup: %v", err)
			return
		}
		var ids []s3types.ObjectIdentifier
		for _, o := range page.Contents {
			ids = append(ids, s3types.ObjectIdentifier{Key: o.Key})
		}
		if len(ids) > 0 {
			if _, err := s.s3c.DeleteObjects(s.ctx, &s3.DeleteObjectsInput{Bucket: &s.bucket, Delete: &s3types.Delete{Objects: ids, Quiet: aws.Bool(true)}}); err != nil {
				log("cleanup: %v", err)
				return
			}
		}
	}
	if _, err := s.s3c.DeleteBucket(s.ctx, &s3.DeleteBucketInput{Bucket: &s.bucket}); err != nil {
		log("cleanup: %v", err)
	}
}

func (s *suite) deletePrefix(prefix string) {
	p := s3.NewListObjectsV2Paginator(s.s3c, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(s.ctx)
		if err != nil {
			return
		}
		var ids []s3types.ObjectIdentifier
		for _, o := range page.Contents {
			ids = append(ids, s3types.ObjectIdentifier{Key: o.Key})
		}
		if len(ids) > 0 {
			_, _ = s.s3c.DeleteObjects(s.ctx, &s3.DeleteObjectsInput{Bucket: &s.bucket, Delete: &s3types.Delete{Objects: ids, Quiet: aws.Bool(true)}})
		}
	}
}

func (s *suite) newKeys(kmsc *kms.Client) (string, string, error) {
	var keys [2]string
	for i := range keys {
		out, err := kmsc.CreateKey(s.ctx, &kms.CreateKeyInput{Description: aws.String("rotator bench")})
		if err != nil {
			return "", "", fmt.Errorf("create KMS key: %w", err)
		}
		keys[i] = aws.ToString(out.KeyMetadata.Arn)
	}
	return keys[0], keys[1], nil
}

// seed writes n objects of size bytes under prefix with the official
// client v4.0.0 on keyID, conc at once.
func (s *suite) seed(kmsc *kms.Client, prefix string, n int, size int64, keyID string) error {
	start := time.Now()
	c, err := official(s.s3c, kmsc, keyID)
	if err != nil {
		return err
	}
	body, _ := bytesOf(workload.Plaintext(size))
	conc := s.o.SeedConc
	if size >= 4<<20 {
		conc = max(2, min(conc, int((1<<30)/size)))
	}
	var next atomic.Int64
	var first error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				key := fmt.Sprintf("%s%07d", prefix, i)
				_, err := c.PutObject(s.ctx, &s3.PutObjectInput{Bucket: &s.bucket, Key: &key, Body: bytes.NewReader(body),
					ContentType: aws.String("application/octet-stream"), Metadata: map[string]string{"owner": "bench"}})
				if err != nil {
					mu.Lock()
					first = cmp(first, fmt.Errorf("seed %s: %w", key, err))
					mu.Unlock()
					next.Store(int64(n))
					return
				}
			}
		})
	}
	wg.Wait()
	sd := Seed{Prefix: prefix, Objects: n, Size: size, WallS: time.Since(start).Seconds()}
	s.res.Seeding = append(s.res.Seeding, sd)
	log("seeded %d x %s under %s in %.1f s (%.0f objects/s)", n, human(size), prefix, sd.WallS, float64(n)/sd.WallS)
	return first
}

func cmp(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func bytesOf(r interface{ Read([]byte) (int, error) }) ([]byte, error) {
	var b bytes.Buffer
	_, err := b.ReadFrom(r)
	return b.Bytes(), err
}

// objset is a set of objects whose data keys all sit under cur; each
// measured step moves them to other and swaps the two.
type objset struct {
	prefix     string
	n          int
	size       int64
	cur, other string
	env        []string // endpoint overrides for the children
}

// moved returns a step's result, and swaps cur and other when the step
// moved the set's keys (err is nil).
func (o *objset) moved(r Run, err error) (Run, error) {
	if err == nil {
		o.cur, o.other = o.other, o.cur
	}
	return r, err
}

// rotatorRun runs rotator with the common flags and args, checks that
// want objects succeeded, and adds the embedded ledger's figures.
func (s *suite) rotatorRun(scenario, name string, env []string, want int, size int64, args ...string) (Run, error) {
	s.seq++
	ledger := ""
	if !slices.Contains(args, "--ledger") {
		ledger = filepath.Join(s.dir, fmt.Sprintf("ledger-%d.db", s.seq))
		args = append(args, "--ledger", ledger)
	}
	report := filepath.Join(s.dir, fmt.Sprintf("report-%d.csv", s.seq))
	args = append([]string{"run", "--json", "--no-progress", "--log-level", "warn", "--report", report,
		"--run-id", fmt.Sprintf("bench-%s-%d", scenario, s.seq)}, args...)
	r, out, err := runChild(name, env, s.rotator, args...)
	defer os.Remove(report)
	r.Objects, r.Bytes = want, int64(want)*size
	if err != nil {
		return r, err
	}
	sum, err := rotatorSummary(out)
	if err != nil {
		return r, err
	}
	if got := sum.Counts["succeeded"]; got != want {
		return r, fmt.Errorf("%s: rotator changed %d objects of %d (state %s, counts %v)", name, got, want, sum.State, sum.Counts)
	}
	if ledger != "" {
		size, txs, err := boltStats(ledger)
		if err != nil {
			log("%s: ledger figures: %v", name, err)
		}
		r.Extra = map[string]float64{"ledger_file_bytes": float64(size), "ledger_write_txs": float64(txs)}
		os.Remove(ledger)
	}
	s.add(scenario, r)
	return r, nil
}

// baseline runs a child of this binary and checks its object count.
func (s *suite) baseline(scenario, name string, env []string, want int, size int64, args ...string) (Run, error) {
	r, out, err := runChild(name, env, s.self, args...)
	r.Objects, r.Bytes = want, int64(want)*size
	if err != nil {
		return r, err
	}
	if got := childCount(out); got != want {
		return r, fmt.Errorf("%s: %d objects of %d", name, got, want)
	}
	s.add(scenario, r)
	return r, nil
}

func (s *suite) add(scenario string, r Run) {
	s.res.Runs[scenario] = append(s.res.Runs[scenario], r)
	log("%-28s %-40s %6d objects %7.2f s %8.1f objects/s %7.1f MB/s cpu %.3f ms/object rss %.0f MiB",
		scenario, r.Name, r.Objects, r.WallS, r.rate(), r.mbps(), r.cpuPerObjectMS(), r.rssMiB())
}

func conc(n int) string { return strconv.Itoa(n) }

func (s *suite) rotatorRewrap(scenario string, set *objset, c int, extra ...string) (Run, error) {
	name := "rotator run (rewrap)"
	if slices.Contains(extra, "reencrypt") {
		name = "rotator run --mode reencrypt"
	}
	args := append([]string{"--source", "s3://" + s.bucket + "/" + set.prefix, "--from", "kms:" + set.cur, "--to", "kms:" + set.other,
		"--concurrency", conc(c)}, extra...)
	return set.moved(s.rotatorRun(scenario, name, set.env, set.n, set.size, args...))
}

func (s *suite) bareRewrap(scenario string, set *objset, c int) (Run, error) {
	return set.moved(s.baseline(scenario, "bare loop (HEAD, ReEncrypt, self-copy)", set.env, set.n, set.size,
		"child-bare-rewrap", s.bucket, set.prefix, set.cur, set.other, conc(c)))
}

func (s *suite) officialCopy(scenario string, set *objset, c int) (Run, error) {
	return set.moved(s.baseline(scenario, "official v4.0.0 GetObject + PutObject", set.env, set.n, set.size,
		"child-official-copy", s.bucket, set.prefix, set.cur, set.other, conc(c)))
}

// rewrapSets: the small and large sets, each round rotator, the bare
// loop and the official client (and, for the small set, rotator
// --mode reencrypt), at the same concurrency.
func (s *suite) rewrapSets() error {
	a, b, err := s.newKeys(s.kmsc)
	if err != nil {
		return err
	}
	for _, set := range []*objset{
		{prefix: "small/", n: s.o.SmallN, size: s.o.SmallSize, cur: a, other: b},
		{prefix: "large/", n: s.o.LargeN, size: s.o.LargeSize, cur: a, other: b},
	} {
		if err := s.seed(s.kmsc, set.prefix, set.n, set.size, set.cur); err != nil {
			return err
		}
		sc := "rewrap-" + set.prefix[:len(set.prefix)-1]
		for range s.o.Rounds {
			if _, err := s.rotatorRewrap(sc, set, s.o.Conc); err != nil {
				return err
			}
			if _, err := s.bareRewrap(sc, set, s.o.Conc); err != nil {
				return err
			}
			if _, err := s.officialCopy(sc, set, s.o.Conc); err != nil {
				return err
			}
			if set.prefix == "small/" {
				if _, err := s.rotatorRewrap(sc, set, s.o.Conc, "--mode", "reencrypt"); err != nil {
					return err
				}
			}
		}
		if set.prefix == "large/" {
			s.deletePrefix(set.prefix)
		}
	}
	return nil
}

// bigObject: one object written by the official client, copied in place
// by it (A -> B), re-encrypted in place by rotator (B -> A), then read by
// the official client under A with its plaintext's SHA-256 checked.
func (s *suite) bigObject() error {
	a, b, err := s.newKeys(s.kmsc)
	if err != nil {
		return err
	}
	n, key := s.o.BigSize, "big/object"
	sz := strconv.FormatInt(n, 10)
	if _, err := s.baseline("big", "official v4.0.0 PutObject (write it)", nil, 1, n, "child-official-put", s.bucket, key, a, sz); err != nil {
		return err
	}
	set := &objset{prefix: "big/", n: 1, size: n, cur: a, other: b}
	if _, err := s.officialCopy("big", set, 1); err != nil {
		return err
	}
	if _, err := s.rotatorRewrap("big", set, 1, "--mode", "reencrypt", "--s3-no-multipart-checksum"); err != nil {
		return err
	}
	sum, err := workload.PlaintextSum(n)
	if err != nil {
		return err
	}
	_, err = s.baseline("big", "official v4.0.0 GetObject, SHA-256 checked", nil, 1, n, "child-official-sum", s.bucket, key, set.cur, sum)
	s.deletePrefix("big/")
	return err
}

// hsm: KMS -> HSM, rotator (its pool: --hsm-sessions = concurrency)
// against a bare loop of as many goroutines, each with its own session.
func (s *suite) hsm() error {
	module, token, pin := os.Getenv("ROTATOR_PKCS11_MODULE"), os.Getenv("ROTATOR_PKCS11_TOKEN"), os.Getenv("ROTATOR_PKCS11_PIN_FILE")
	if module == "" || token == "" || pin == "" {
		return errors.New("ROTATOR_PKCS11_MODULE, ROTATOR_PKCS11_TOKEN and ROTATOR_PKCS11_PIN_FILE are not set (hint: . .stack/env)")
	}
	label := "bench-" + s.bucket
	if err := createHSMKey(module, token, pin, label, false); err != nil {
		return fmt.Errorf("create the HSM key: %w", err)
	}
	defer func() {
		if err := createHSMKey(module, token, pin, label, true); err != nil {
			log("delete the HSM key %s: %v", label, err)
		}
	}()
	a, _, err := s.newKeys(s.kmsc)
	if err != nil {
		return err
	}
	spec := fmt.Sprintf("pkcs11:token=%s;object=%s?pin-source=file:%s", token, label, pin)
	for i := range s.o.Rounds {
		rp, bp := fmt.Sprintf("hsm/rotator-%d/", i), fmt.Sprintf("hsm/bare-%d/", i)
		for _, p := range []string{rp, bp} {
			if err := s.seed(s.kmsc, p, s.o.HSMN, s.o.TinySize, a); err != nil {
				return err
			}
		}
		c := conc(s.o.Conc)
		if _, err := s.rotatorRun("hsm", "rotator run (KMS -> HSM)", nil, s.o.HSMN, s.o.TinySize, "--source", "s3://"+s.bucket+"/"+rp,
			"--from", "kms:"+a, "--to", spec, "--concurrency", c, "--hsm-sessions", c); err != nil {
			return err
		}
		if _, err := s.baseline("hsm", "bare loop (HEAD, Decrypt, PKCS#11 GCM, self-copy)", nil, s.o.HSMN, s.o.TinySize,
			"child-bare-hsm", s.bucket, bp, a, module, token, pin, label, c); err != nil {
			return err
		}
	}
	return nil
}

// auxKMS starts a kms-test-server on a state file in the work directory
// with args, and returns it with a client.
func (s *suite) auxKMS(args ...string) (*kmsServer, *kms.Client, error) {
	k, err := startKMS(s.kmsBin, s.dir, append([]string{"-state", filepath.Join(s.dir, "kms-aux.json")}, args...)...)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := loadConfig(s.ctx, 256)
	if err != nil {
		k.stop()
		return nil, nil, err
	}
	return k, kms.NewFromConfig(cfg, func(o *kms.Options) { o.BaseEndpoint = aws.String(k.url) }), nil
}

// seedAux creates two keys on a KMS test server of the suite's own and
// writes n objects under prefix through it, at full speed; the servers
// with a cap or latency then start from the same state file.
func (s *suite) seedAux(prefix string, n int) (*objset, error) {
	k, kmsc, err := s.auxKMS()
	if err != nil {
		return nil, err
	}
	defer k.stop()
	a, b, err := s.newKeys(kmsc)
	if err != nil {
		return nil, err
	}
	return &objset{prefix: prefix, n: n, size: s.o.TinySize, cur: a, other: b}, s.seed(kmsc, prefix, n, s.o.TinySize, a)
}

// kmsCap: rotator (no --kms-rps: it has to find the cap) against a KMS
// test server capped at -rps, through a counting proxy.
func (s *suite) kmsCap() error {
	if s.o.CapRPS == 0 {
		s.o.CapRPS = 300
		if rot := pick(s.res.Runs["rewrap-small"], "rotator run (rewrap)"); len(rot) > 0 {
			s.o.CapRPS = max(10, math.Round(rateOf(rot)/2/10)*10)
		}
		s.res.Options.CapRPS = s.o.CapRPS
	}
	if s.o.CapN == 0 {
		s.o.CapN = max(100, int(s.o.CapRPS*10))
		s.res.Options.CapN = s.o.CapN
	}
	set, err := s.seedAux("cap/", s.o.CapN)
	if err != nil {
		return err
	}
	rps := strconv.FormatFloat(s.o.CapRPS, 'f', -1, 64)
	k, _, err := s.auxKMS("-rps", rps)
	if err != nil {
		return err
	}
	defer k.stop()
	var cnt counter
	url, stop, err := startProxy(k.url, &cnt)
	if err != nil {
		return err
	}
	defer stop()
	time.Sleep(1100 * time.Millisecond) // the bucket starts full: one second's worth
	set.env = []string{"AWS_ENDPOINT_URL_KMS=" + url}
	r, err := s.rotatorRewrap("cap", set, s.o.Conc)
	if err != nil {
		return err
	}
	ops, _, throttled := cnt.snapshot()
	reqs := ops["ReEncrypt"]
	s.res.Figures["cap"] = map[string]any{"rps_cap": s.o.CapRPS, "objects_per_s": r.rate(), "fraction_of_cap": r.rate() / s.o.CapRPS,
		"reencrypt_requests": reqs, "throttled": throttled, "throttle_rate": float64(throttled) / float64(max(reqs, 1)),
		"requests_per_object": float64(reqs) / float64(set.n), "kms_requests": ops}
	return nil
}

// latencyBound: KMS answering in -kms-latency, rotator and the bare loop
// at each concurrency, interleaved.
func (s *suite) latencyBound() error {
	set, err := s.seedAux("latency/", s.o.LatN)
	if err != nil {
		return err
	}
	k, _, err := s.auxKMS("-latency", s.o.Latency.String())
	if err != nil {
		return err
	}
	defer k.stop()
	set.env = []string{"AWS_ENDPOINT_URL_KMS=" + k.url}
	for _, c := range s.o.LatConcs {
		sc := "latency-c" + conc(c)
		for range s.o.LatRounds {
			if _, err := s.rotatorRewrap(sc, set, c); err != nil {
				return err
			}
			if _, err := s.bareRewrap(sc, set, c); err != nil {
				return err
			}
		}
	}
	return nil
}

// dynamoLedger: rotator with a DynamoDB ledger through a counting proxy;
// then a Scan sums the items' sizes.
func (s *suite) dynamoLedger() error {
	endpoint := os.Getenv("AWS_ENDPOINT_URL_DYNAMODB")
	if endpoint == "" {
		return errors.New("AWS_ENDPOINT_URL_DYNAMODB is not set (hint: . .stack/env)")
	}
	a, b, err := s.newKeys(s.kmsc)
	if err != nil {
		return err
	}
	set := &objset{prefix: "dynamodb/", n: s.o.DynamoN, size: s.o.TinySize, cur: a, other: b}
	if err := s.seed(s.kmsc, set.prefix, set.n, set.size, a); err != nil {
		return err
	}
	// A smaller run first, on a table of its own: the difference of the
	// two runs' writes is what each further object costs, the rest what
	// a run costs whatever its size (run record, lease, key registries).
	small := &objset{prefix: "dynamodb-small/", n: max(set.n/4, 1), size: s.o.TinySize, cur: a, other: b}
	if err := s.seed(s.kmsc, small.prefix, small.n, small.size, a); err != nil {
		return err
	}
	var smallCnt counter
	smallURL, stopSmall, err := startProxy(endpoint, &smallCnt)
	if err != nil {
		return err
	}
	defer stopSmall()
	small.env = []string{"AWS_ENDPOINT_URL_DYNAMODB=" + smallURL}
	if _, err := s.rotatorRun("dynamodb-small", "rotator run (rewrap)", small.env, small.n, small.size,
		"--source", "s3://"+s.bucket+"/"+small.prefix, "--from", "kms:"+small.cur, "--to", "kms:"+small.other,
		"--concurrency", conc(s.o.Conc), "--ledger", "dynamodb://"+s.bucket+"-ledger-small?create=true"); err != nil {
		return err
	}
	smallOps, smallBatch, _ := smallCnt.snapshot()
	smallWrites := smallOps["PutItem"] + smallOps["UpdateItem"] + smallOps["DeleteItem"] + smallBatch
	var cnt counter
	url, stop, err := startProxy(endpoint, &cnt)
	if err != nil {
		return err
	}
	defer stop()
	before, err := s.ddb.ListTables(s.ctx, &dynamodb.ListTablesInput{})
	if err != nil {
		return err
	}
	table := s.bucket + "-ledger"
	set.env = []string{"AWS_ENDPOINT_URL_DYNAMODB=" + url}
	r, err := s.rotatorRewrap("dynamodb", set, s.o.Conc, "--ledger", "dynamodb://"+table+"?create=true")
	if err != nil {
		return err
	}
	ops, batchItems, _ := cnt.snapshot()
	objWrites := cnt.objectWrites()
	_, _ = s.ddb.DeleteTable(s.ctx, &dynamodb.DeleteTableInput{TableName: aws.String(s.bucket + "-ledger-small")})
	after, err := s.ddb.ListTables(s.ctx, &dynamodb.ListTablesInput{})
	if err != nil {
		return err
	}
	var items int
	var size int64
	for _, t := range after.TableNames {
		if slices.Contains(before.TableNames, t) {
			continue
		}
		n, b, err := tableStats(s.ctx, s.ddb, t)
		if err != nil {
			return fmt.Errorf("scan %s: %w", t, err)
		}
		items, size = items+n, size+b
		_, _ = s.ddb.DeleteTable(s.ctx, &dynamodb.DeleteTableInput{TableName: aws.String(t)})
	}
	writes := ops["PutItem"] + ops["UpdateItem"] + ops["DeleteItem"] + batchItems
	reads := ops["GetItem"] + ops["Query"] + ops["Scan"] + ops["BatchGetItem"]
	n := float64(set.n)
	fig := map[string]any{"objects": set.n, "requests": ops, "batch_write_items": batchItems,
		"writes": writes, "writes_per_object": float64(writes) / n, "reads_per_object": float64(reads) / n,
		"items": items, "item_bytes": size, "bytes_per_object": float64(size) / n, "objects_per_s": r.rate(),
		"small_objects": float64(small.n), "small_writes": smallWrites,
		// The goal's figure: what the ledger writes for each rewrapped
		// object, on the object's own item; the rest is the run's.
		"object_writes": objWrites, "writes_per_rewrap": float64(objWrites) / n, "run_writes": float64(writes - objWrites)}
	if set.n > small.n {
		m := float64(writes-smallWrites) / float64(set.n-small.n)
		fig["marginal_writes_per_object"], fig["writes_per_run"] = m, float64(writes)-m*n
	}
	s.res.Figures["dynamodb"] = fig
	return nil
}

// scale: rotator's objects/s, peak RSS and CPU at each object count.
func (s *suite) scale() error {
	a, b, err := s.newKeys(s.kmsc)
	if err != nil {
		return err
	}
	for _, n := range s.o.Scale {
		set := &objset{prefix: fmt.Sprintf("scale-%d/", n), n: n, size: s.o.TinySize, cur: a, other: b}
		if err := s.seed(s.kmsc, set.prefix, n, set.size, a); err != nil {
			return err
		}
		r, err := s.rotatorRewrap("scale", set, s.o.Conc)
		if err != nil {
			return err
		}
		// The bare loop on the same objects (back to the first key): what
		// the irreducible calls cost at this count, process start included.
		b, err := s.bareRewrap("scale", set, s.o.Conc)
		if err != nil {
			return err
		}
		s.res.Scale = append(s.res.Scale, ScalePoint{Objects: n, ObjectsPerS: r.rate(), PeakRSSMiB: r.rssMiB(), CPUPerObjMS: r.cpuPerObjectMS(),
			LedgerBytes: r.Extra["ledger_file_bytes"] / float64(n), LedgerWrites: r.Extra["ledger_write_txs"] / float64(n),
			CPUS: r.UserS + r.SysS, BareCPUS: b.UserS + b.SysS, BareObjectsPerS: b.rate()})
		s.deletePrefix(set.prefix)
	}
	return nil
}

func (s *suite) write() error {
	if s.o.Out == "" {
		return nil
	}
	if err := os.MkdirAll(s.o.Out, 0o755); err != nil {
		return err
	}
	stamp := strings.ReplaceAll(s.res.Date, ":", "")
	if s.o.Smoke {
		stamp += "-smoke"
	}
	b, err := json.MarshalIndent(s.res, "", "  ")
	if err != nil {
		return err
	}
	jf, sf := filepath.Join(s.o.Out, stamp+".json"), filepath.Join(s.o.Out, stamp+".svg")
	if err := os.WriteFile(jf, append(b, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(sf, []byte(plot(s.res)), 0o644); err != nil {
		return err
	}
	log("wrote %s and %s", jf, sf)
	return nil
}

// ratioRange is the ratio of the aggregate rates (total objects over total
// time of each side) and the range of the per-round ratios.
func ratioRange(num, den []Run) (float64, float64, float64) {
	agg := rateOf(num) / rateOf(den)
	lo, hi := math.Inf(1), math.Inf(-1)
	for i := range min(len(num), len(den)) {
		r := num[i].rate() / den[i].rate()
		lo, hi = min(lo, r), max(hi, r)
	}
	return agg, lo, hi
}

func rateOf(runs []Run) float64 {
	var n, t float64
	for _, r := range runs {
		n += float64(r.Objects)
		t += r.WallS
	}
	return n / t
}

func cpuOf(runs []Run) float64 {
	var n, t float64
	for _, r := range runs {
		n += float64(r.Objects)
		t += r.UserS + r.SysS
	}
	return t * 1e3 / n
}

func maxRSS(runs []Run) float64 {
	var m float64
	for _, r := range runs {
		m = max(m, r.rssMiB())
	}
	return m
}

func pick(runs []Run, prefix string) []Run {
	var out []Run
	for _, r := range runs {
		if strings.HasPrefix(r.Name, prefix) {
			out = append(out, r)
		}
	}
	return out
}
