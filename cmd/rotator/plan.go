package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/rotator-dev/rotator/pipeline"
)

func cmdPlan(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg pipeline.Config
	var asJSON bool
	prices := pipeline.DefaultPrices
	fs := newFlagSet("plan", "--source s3://BUCKET[/PREFIX] --to KEYSPEC [--from KEYSPEC]... [flags]", stderr)
	sourceFlags(fs, &cfg)
	runFlags(fs, &cfg)
	ioTimeoutFlag(fs, &cfg)
	fs.StringVar(&cfg.Ledger, "ledger", "", "a ledger to learn KMS objects' keys from earlier runs (read only; default none)")
	fs.BoolVar(&asJSON, "json", false, "print the plan as one JSON line (message_type plan, see docs/json.md); save it for 'rotator run --plan FILE'")
	var checkEscrow bool
	fs.BoolVar(&checkEscrow, "check-escrow", false, "read each object's escrow file and count the objects with no valid escrow (no file, or one of other content)")
	escrowFlags(fs, &cfg, "escrow")
	fs.Func("price", "override a price: `NAME=USD` (per request: s3-put, s3-get, kms, ddb-write, ddb-read; storage-gb-month, replication-gb; repeatable)", prices.Set)
	if help, err := parse(fs, args); help || err != nil {
		return err
	}
	cfg.DryRun = true
	if err := checkRunMode(cfg); err != nil {
		return err
	}
	if err := resolveShard(&cfg, stderr); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return usageError{err.Error()}
	}
	env, err := pipeline.Open(ctx, cfg, withTestOptions(pipeline.OpenOptions{NoLedger: cfg.Ledger == ""}))
	if err != nil {
		return err
	}
	defer env.Close()
	src, err := env.Source(ctx, nil)
	if err != nil {
		return err
	}
	core := env.Core("plan", "")
	po := pipeline.PlanOptions{
		Concurrency: cfg.Concurrency, KMSRPS: cfg.KMSRPS, S3RPS: cfg.S3RPS, Prices: prices,
		DynamoDBLedger: true, MultipartThreshold: cfg.MultipartThreshold, Buckets: env.S3,
	}
	if cfg.CheckACL {
		po.ACL = env.Commit
	}
	po.CheckEscrow = checkEscrow
	p, err := pipeline.MakePlan(ctx, core, src, po)
	if err != nil {
		return err
	}
	zerolog.Ctx(ctx).Info().Int64("objects", p.Objects).Int64("bytes", p.Bytes).Msg("plan finished: " + cfg.Describe())
	if asJSON {
		return sessionOf(ctx).out.emit(planMsg{MessageType: msgPlan, Config: cfg, TargetKey: env.To.ID(), Plan: p,
			DurationSeconds: p.Duration.Seconds()})
	}
	printPlan(stdout, cfg, p, env.To.ID())
	return nil
}

func printPlan(w io.Writer, cfg pipeline.Config, p *pipeline.Plan, target string) {
	fmt.Fprintf(w, "plan: %s\n", cfg.Describe())
	fmt.Fprintf(w, "target key: %s\n\n", target)
	fmt.Fprintf(w, "%d objects, %s\n\n", p.Objects, bytesString(p.Bytes))
	if p.ReencryptBytes > 0 {
		fmt.Fprintf(w, "re-encryption reads and writes %s of content again (the duration below counts requests only)\n\n", bytesString(p.ReencryptBytes))
	}
	section := func(title string, m map[string]int64) {
		fmt.Fprintf(w, "%s:\n", title)
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
		for _, k := range sortedByCount(m) {
			fmt.Fprintf(tw, "\t%d\t  %s\n", m[k], k)
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
	section("by current key", p.ByKey)
	section("by format and placement", p.ByFormat)
	section("by action", p.ByAction)
	if p.ByEscrow != nil {
		section("by escrow", p.ByEscrow)
		if n := p.ByEscrow[pipeline.EscrowNone] + p.ByEscrow[pipeline.EscrowMismatch]; n > 0 {
			fmt.Fprintf(w, "%d objects have no valid escrow: 'rotator escrow' (or run --escrow) writes them\n\n", n)
		}
	}
	if p.EscrowFiles > 0 {
		fmt.Fprintf(w, "escrow files the run writes (--escrow %s): %d\n\n", cfg.Escrow, p.EscrowFiles)
	}
	section("requests the run will send", p.Requests)
	printWriteCosts(w, p)
	fmt.Fprintf(w, "estimated cost (list prices, us-east-1, DynamoDB ledger; the embedded ledger costs nothing):\n")
	keys := []string{"s3", "kms", "dynamodb"}
	if p.WriteCosts != nil {
		keys = append(keys, "replication", "noncurrent_storage")
	}
	for _, k := range append(keys, "total") {
		fmt.Fprintf(w, "  %-19s %s\n", k, usd(p.CostUSD[k]))
	}
	if m := p.CostUSD["noncurrent_storage_monthly"]; m > 0 {
		fmt.Fprintf(w, "  plus %s per month for the noncurrent copies no lifecycle rule expires, until they are deleted\n", usd(m))
	}
	if p.Objects > 0 {
		per := func(k string) float64 { return float64(p.Requests[k]) / float64(p.Objects) }
		fmt.Fprintf(w, "ledger: %.2f writes per object on the embedded ledger (transactions, shared by concurrent workers), %.2f writes and %.2f reads on DynamoDB; re-encryptions in parts add one checkpoint write per part\n",
			per("ledger:embedded-write"), per("dynamodb:write"), per("dynamodb:read"))
	}
	printPlacement(w, p)
	fmt.Fprintf(w, "\nestimated duration: %s (bound by %s; measured S3 latency %s)\n",
		p.Duration.Round(time.Second), p.Bound, p.HeadLatency.Round(time.Microsecond))
	switch {
	case p.ACLChecked:
		fmt.Fprintf(w, "\nobject ACLs: checked; %d objects grant more than their owner's FULL_CONTROL: a rewrite would drop those grants, so the run leaves them untouched (%s)\n",
			p.ACLGrants, pipeline.CodeACLWouldBeDropped)
	case p.ACLNotChecked != "":
		fmt.Fprintf(w, "\nobject ACLs: not checked: %s\n", p.ACLNotChecked)
	default:
		fmt.Fprintf(w, "\nobject ACLs: not checked (a rewrite gives an object its bucket's default ACL, dropping other grants; --check-acl reads each one and leaves those objects untouched)\n")
	}
	if p.UnpairedSuffix > 0 {
		suffix := cfg.InstructionSuffix
		if suffix == "" {
			suffix = ".instruction"
		}
		fmt.Fprintf(w, "\nnote: %d keys end with %s although no object of that name without it exists: they are no instruction files of the objects listed, and are processed as objects (an instruction file left behind is reported %s and left as it is).\n",
			p.UnpairedSuffix, suffix, pipeline.CodeUnpairedInstructionFile)
	}
	if p.ByKey[pipeline.KeyUnknown] > 0 {
		fmt.Fprintf(w, "\nnote: %d KMS-wrapped objects do not name their KMS key (the S3 Encryption Client stores none); the run learns it from KMS ReEncrypt and skips those already under the target.\n", p.ByKey[pipeline.KeyUnknown])
	}
}

// printWriteCosts prints what the buckets' configuration makes the run's
// writes cost beyond their requests.
func printWriteCosts(w io.Writer, p *pipeline.Plan) {
	wc := p.WriteCosts
	if wc == nil {
		return
	}
	fmt.Fprintf(w, "bucket configuration (what the writes cost beyond their requests):\n")
	for _, b := range wc.Buckets {
		fmt.Fprintf(w, "  %s: versioning %s", b.Bucket, b.Versioning)
		if len(b.Replication) > 0 {
			dests := make([]string, 0, len(b.Replication))
			for _, r := range b.Replication {
				d := r.Destination
				if r.Prefix != "" {
					d += " (prefix " + r.Prefix + ")"
				}
				dests = append(dests, d)
			}
			fmt.Fprintf(w, "; replicated to %s", strings.Join(dests, ", "))
		}
		for _, r := range b.NoncurrentExpiration {
			fmt.Fprintf(w, "; noncurrent versions expire after %d days", r.Days)
			if r.Prefix != "" {
				fmt.Fprintf(w, " under %s", r.Prefix)
			}
			if r.Tags {
				fmt.Fprintf(w, " (tag filter: not applied by plan)")
			}
		}
		fmt.Fprintln(w)
		for _, u := range b.Unread {
			fmt.Fprintf(w, "    %s\n", u)
		}
	}
	fmt.Fprintf(w, "  the run writes %s", bytesString(wc.WrittenBytes))
	if wc.NoncurrentBytes > 0 {
		fmt.Fprintf(w, "; keeps %s of replaced versions as noncurrent versions", bytesString(wc.NoncurrentBytes))
		switch {
		case wc.NoncurrentExpiringBytes == wc.NoncurrentBytes && wc.NoncurrentDaysMin == wc.NoncurrentDaysMax:
			fmt.Fprintf(w, " for %d days (lifecycle)", wc.NoncurrentDaysMin)
		case wc.NoncurrentExpiringBytes > 0:
			fmt.Fprintf(w, " (%s of them expire after %d to %d days; the rest until deleted)", bytesString(wc.NoncurrentExpiringBytes), wc.NoncurrentDaysMin, wc.NoncurrentDaysMax)
		default:
			fmt.Fprintf(w, " until deleted (no NoncurrentVersionExpiration rule)")
		}
	}
	if wc.ReplicatedBytes > 0 {
		fmt.Fprintf(w, "; replicates %s in %d writes", bytesString(wc.ReplicatedBytes), wc.ReplicatedWrites)
	}
	fmt.Fprintf(w, "\n\n")
}

// printPlacement compares rotations with the envelopes in metadata and in
// instruction files.
func printPlacement(w io.Writer, p *pipeline.Plan) {
	pc := p.Placement
	if pc == nil {
		return
	}
	fmt.Fprintf(w, "\nenvelope placement: %d objects (%s) keep their envelope in metadata, so every rotation copies them whole.\n",
		pc.Objects, bytesString(pc.ObjectBytes))
	fmt.Fprintf(w, "  --placement instruction-file moves each envelope into an instruction file (%s in all), once:\n", bytesString(pc.InstructionBytes))
	row := func(what string, once, monthly float64) {
		fmt.Fprintf(w, "  %-40s %s", what, usd(once))
		if monthly > 0 {
			fmt.Fprintf(w, " + %s/month until deleted", usd(monthly))
		}
		fmt.Fprintln(w)
	}
	row("a rotation as they are (S3 part):", pc.RotationOnceUSD, pc.RotationMonthlyUSD)
	row("the move (once; in a rotation's copy):", pc.MoveOnceUSD, pc.MoveMonthlyUSD)
	row("each rotation after the move:", pc.MovedRotationOnceUSD, pc.MovedRotationMonthlyUSD)
	fmt.Fprintf(w, "  (requests, noncurrent copies and replication; KMS and ledger costs are the same either way)\n")
	saved := pc.RotationOnceUSD - pc.MovedRotationOnceUSD
	savedMonthly := pc.RotationMonthlyUSD - pc.MovedRotationMonthlyUSD
	extra := pc.MoveOnceUSD - pc.RotationOnceUSD
	switch {
	case saved <= 0 && savedMonthly <= 0:
		fmt.Fprintf(w, "  the move does not pay for these objects: a rotation after it costs as much or more (small objects: reading and rewriting an instruction file costs more requests than a copy)\n")
	case saved > 0:
		fmt.Fprintf(w, "  done in a rotation's run, the move costs %s more than that rotation and saves %s in each later one", usd(extra), usd(saved))
		if savedMonthly > 0 {
			fmt.Fprintf(w, " (and %s/month of noncurrent copies)", usd(savedMonthly))
		}
		fmt.Fprintln(w)
	default:
		fmt.Fprintf(w, "  done in a rotation's run, the move costs %s more than that rotation; each later one keeps %s/month less of noncurrent copies\n", usd(extra), usd(savedMonthly))
	}
}

// usd prints an amount of dollars with cents, or with two significant
// digits below a cent.
func usd(v float64) string {
	switch {
	case v == 0:
		return "$0"
	case v >= 0.01 || v <= -0.01:
		return fmt.Sprintf("$%.2f", v)
	}
	d := int(-math.Floor(math.Log10(math.Abs(v)))) + 1
	return fmt.Sprintf("$%.*f", min(d, 12), v)
}

func sortedByCount(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	return keys
}

func bytesString(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1f", f), ".0") + " " + units[i]
}
