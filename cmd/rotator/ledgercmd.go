package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/ledger"
)

const ledgerUsage = `usage: rotator ledger <query> [--ledger URL] [flags]

queries:
  lineage s3://BUCKET/KEY[@VERSION]   every change rotator made to an object (and the versions it created)
  counts                              objects per wrapping key
  objects --key KEYID                 the objects still wrapped under a key (a query, not a scan)
  runs                                every run, oldest first
  export [--format csv|jsonl]         every lineage event, for auditors
`

func cmdLedger(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		_, err := io.WriteString(stdout, ledgerUsage)
		if len(args) == 0 {
			return usageError{"no ledger query given"}
		}
		return err
	}
	query, rest := args[0], args[1:]
	var target string
	if query == "lineage" {
		if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
			return usageError{"rotator ledger lineage needs s3://BUCKET/KEY[@VERSION]"}
		}
		target, rest = rest[0], rest[1:]
	}
	var ledgerURL, key, format string
	var asJSON bool
	fs := newFlagSet("ledger "+query, "[flags]", stderr)
	fs.StringVar(&ledgerURL, "ledger", DefaultLedger, "the ledger: a `FILE` or dynamodb://TABLE")
	fs.StringVar(&key, "key", "", "canonical key id (objects): a KMS key ARN, pkcs11:token=T;object=L, aes:sha256:..., rsa:sha256:...")
	fs.StringVar(&format, "format", "csv", "export format: csv or jsonl")
	fs.BoolVar(&asJSON, "json", false, "print JSON lines")
	if help, err := parse(fs, rest); help || err != nil {
		return err
	}
	l, err := ledger.Open(ctx, ledgerURL)
	if err != nil {
		return err
	}
	defer l.Close()
	enc := json.NewEncoder(stdout)
	switch query {
	case "lineage":
		bucket, k, err := inventory.ParseS3URL(target)
		if err != nil || k == "" {
			return usageError{fmt.Sprintf("%q: want s3://BUCKET/KEY[@VERSION]", target)}
		}
		id := ledger.ObjectID{Bucket: bucket, Key: k}
		if i := strings.LastIndex(k, "@"); i > 0 {
			id.Key, id.VersionID = k[:i], k[i+1:]
		}
		evs, err := l.Lineage(ctx, id)
		if err != nil {
			return err
		}
		rec, rerr := l.Get(ctx, id)
		if asJSON {
			for _, ev := range evs {
				if err := enc.Encode(ev); err != nil {
					return err
				}
			}
			return nil
		}
		if rerr == nil {
			fmt.Fprintf(stdout, "%s: %s, wrapped under %s (%s, %s)\n", id, rec.State, orDash(rec.WrapKey), rec.Format, rec.Placement)
		} else {
			fmt.Fprintf(stdout, "%s: no object record\n", id)
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "AT\tRUN\tOP\tMETHOD\tFROM\tTO\tVERSION BEFORE -> AFTER")
		for _, ev := range evs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s -> %s\n", ev.At.UTC().Format(time.RFC3339), ev.RunID, ev.Op, ev.Method,
				ev.FromKey, ev.ToKey, orDash(ev.VersionBefore), orDash(ev.VersionAfter))
		}
		return tw.Flush()
	case "counts":
		counts, err := l.CountsByKey(ctx)
		if err != nil {
			return err
		}
		if asJSON {
			return enc.Encode(map[string]any{"message_type": "counts_by_key", "counts": counts})
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "OBJECTS\t  WRAPPING KEY")
		for _, k := range sortedByCount(counts) {
			fmt.Fprintf(tw, "%d\t  %s\n", counts[k], k)
		}
		return tw.Flush()
	case "objects":
		if key == "" {
			return usageError{"give the key with --key (see 'rotator ledger counts')"}
		}
		return l.ByKey(ctx, key, func(o ledger.Object) error {
			if asJSON {
				return enc.Encode(o)
			}
			_, err := fmt.Fprintf(stdout, "%s\t%s\t%s\n", o.ID, o.State, o.RunID)
			return err
		})
	case "runs":
		runs, err := l.ListRuns(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "RUN\tSTATE\tCREATED\tUPDATED\tDONE\tREWRAPPED\tFAILED")
		for _, r := range runs {
			if asJSON {
				if err := enc.Encode(map[string]any{"run_id": r.ID, "state": r.State, "counts": r.Counts, "created_at": r.CreatedAt, "updated_at": r.UpdatedAt}); err != nil {
					return err
				}
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\n", r.ID, r.State, r.CreatedAt.UTC().Format(time.RFC3339),
				r.UpdatedAt.UTC().Format(time.RFC3339), r.Counts["done"], r.Counts["succeeded"], r.Counts["failed"])
		}
		if asJSON {
			return nil
		}
		return tw.Flush()
	case "export":
		switch format {
		case "csv":
			return ledger.ExportCSV(ctx, stdout, l)
		case "jsonl":
			return ledger.ExportJSONLines(ctx, stdout, l)
		}
		return usageError{fmt.Sprintf("--format %q: want csv or jsonl", format)}
	}
	return usageError{fmt.Sprintf("unknown ledger query %q (lineage, counts, objects, runs, export)", query)}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
