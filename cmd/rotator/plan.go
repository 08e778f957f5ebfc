package main

import (
	"context"
	"fmt"
	"io"
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
	fs.StringVar(&cfg.Ledger, "ledger", "", "a ledger to learn KMS objects' keys from earlier runs (read only; default none)")
	fs.BoolVar(&asJSON, "json", false, "print the plan as one JSON line (message_type plan, see docs/json.md); save it for 'rotator run --plan FILE'")
	var checkEscrow bool
	fs.BoolVar(&checkEscrow, "check-escrow", false, "read each object's escrow file and count the objects with no valid escrow (no file, or one of other content)")
	fs.StringVar(&cfg.EscrowSuffix, "escrow-suffix", "", "with --check-escrow: suffix of escrow files (default .escrow.instruction)")
	fs.Func("price", "override a per-request price: `NAME=USD` (s3-put, s3-get, kms, ddb-write, ddb-read; repeatable)", prices.Set)
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
		DynamoDBLedger: true, MultipartThreshold: cfg.MultipartThreshold,
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
	section("requests the run will send", p.Requests)
	fmt.Fprintf(w, "estimated cost (list prices, us-east-1, DynamoDB ledger; the embedded ledger costs nothing):\n")
	for _, k := range []string{"s3", "kms", "dynamodb", "total"} {
		fmt.Fprintf(w, "  %-9s $%.4f\n", k, p.CostUSD[k])
	}
	if p.Objects > 0 {
		per := func(k string) float64 { return float64(p.Requests[k]) / float64(p.Objects) }
		fmt.Fprintf(w, "ledger: %.2f writes per object on the embedded ledger (transactions, shared by concurrent workers), %.2f writes and %.2f reads on DynamoDB; re-encryptions in parts add one checkpoint write per part\n",
			per("ledger:embedded-write"), per("dynamodb:write"), per("dynamodb:read"))
	}
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
