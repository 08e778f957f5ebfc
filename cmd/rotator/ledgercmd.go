package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/reencrypt"
)

const ledgerUsage = `usage: rotator ledger <query> [--ledger URL] [flags]

queries:
  lineage s3://BUCKET/KEY[@VERSION]   every change rotator made to an object (and the versions it created)
  counts [--escrow]                   objects per wrapping key (--escrow: per escrow key, from the
                                      escrow events; objects re-encrypted since count as stale)
  objects --key KEYID                 the objects still wrapped under a key (a query, not a scan)
  runs                                every run, oldest first
  export [--format csv|jsonl]         every lineage event, for auditors
  intents --run-id ID                 the changes a run holds unfinished: their intent, and for a
                                      re-encryption its checkpoint (phase, upload, the new instruction
                                      file of an object whose content landed); --json for all of it
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
	var ledgerURL, key, format, runID string
	var asJSON, byEscrow bool
	fs := newFlagSet("ledger "+query, "[flags]", stderr)
	fs.BoolVar(&byEscrow, "escrow", false, "counts: objects per escrow key instead of per wrapping key")
	fs.StringVar(&ledgerURL, "ledger", DefaultLedger, "the ledger: a `FILE` or dynamodb://TABLE")
	fs.StringVar(&key, "key", "", "canonical key id (objects): a KMS key ARN, pkcs11:token=T;object=L, aes:sha256:..., rsa:sha256:...")
	fs.StringVar(&format, "format", "csv", "export format: csv or jsonl")
	fs.BoolVar(&asJSON, "json", false, "print JSON lines on stdout (see docs/json.md; export --json prints message_type event lines)")
	fs.StringVar(&runID, "run-id", "", "the run (intents)")
	if help, err := parse(fs, rest); help || err != nil {
		return err
	}
	l, err := ledger.Open(ctx, ledgerURL)
	if err != nil {
		return err
	}
	defer l.Close()
	out := sessionOf(ctx).out
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
			if rerr == nil {
				if err := out.emit(ledgerObjectOf(rec)); err != nil {
					return err
				}
			}
			for _, ev := range evs {
				if err := out.emit(eventOf(ev)); err != nil {
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
		var counts map[string]int64
		if byEscrow {
			counts, err = escrowCounts(ctx, l)
		} else {
			counts, err = l.CountsByKey(ctx)
		}
		if err != nil {
			return err
		}
		if asJSON {
			return out.emit(keyCountsMsg{MessageType: msgKeyCounts, Counts: counts})
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', tabwriter.AlignRight)
		if byEscrow {
			fmt.Fprintln(tw, "OBJECTS\t  ESCROW KEY")
		} else {
			fmt.Fprintln(tw, "OBJECTS\t  WRAPPING KEY")
		}
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
				return out.emit(ledgerObjectOf(o))
			}
			_, err := fmt.Fprintf(stdout, "%s\t%s\t%s\n", o.ID, o.State, o.RunID)
			return err
		})
	case "runs":
		runs, err := l.ListRuns(ctx)
		if err != nil {
			return err
		}
		runs = foldJobs(runs)
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "RUN\tSTATE\tCREATED\tUPDATED\tDONE\tREWRAPPED\tFAILED")
		for _, r := range runs {
			if asJSON {
				if err := out.emit(runMsg{MessageType: msgRun, RunID: r.ID, State: string(r.State), Counts: r.Counts,
					CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC()}); err != nil {
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
		if asJSON {
			return l.Events(ctx, func(ev ledger.Event) error { return out.emit(eventOf(ev)) })
		}
		switch format {
		case "csv":
			return ledger.ExportCSV(ctx, stdout, l)
		case "jsonl":
			return ledger.ExportJSONLines(ctx, stdout, l)
		}
		return usageError{fmt.Sprintf("--format %q: want csv or jsonl", format)}
	case "intents":
		if runID == "" {
			return usageError{"give the run with --run-id (see 'rotator ledger runs')"}
		}
		return printIntents(ctx, l, runID, asJSON, stdout, out)
	}
	return usageError{fmt.Sprintf("unknown ledger query %q (lineage, counts, objects, runs, export, intents)", query)}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printIntents lists what run runID holds unfinished in the ledger: each
// prepared event (an intended change whose outcome is not recorded) and
// re-encryption checkpoint. For an object whose new content landed while
// its instruction file was not written, it gives that file's body: the
// only copy of the new envelope (its data key wrapped, never in the clear).
func printIntents(ctx context.Context, l ledger.Ledger, runID string, asJSON bool, stdout io.Writer, out *jsonLines) error {
	n := 0
	err := l.Prepared(ctx, runID, func(ev ledger.Event) error {
		n++
		row := intentMsg{MessageType: msgIntent, RunID: runID, Bucket: ev.ID.Bucket, Key: ev.ID.Key, VersionID: ev.ID.VersionID,
			Op: ev.Op, FromKey: ev.FromKey, ToKey: ev.ToKey, OldWrappedKeySHA256: ev.OldWrappedKeySHA256,
			NewWrappedKeySHA256: ev.NewWrappedKeySHA256, Since: ev.At.UTC()}
		phase := ""
		if u, err := l.GetUpload(ctx, runID, ev.ID); err == nil {
			in, err := (&reencrypt.Engine{}).Resume(u)
			if err != nil {
				row.CheckpointError = err.Error()
			} else {
				phase = in.Phase().String()
				row.Phase, row.UploadID = phase, in.UploadID()
				if in.Instruction() && in.Phase() == reencrypt.PhaseCompleted {
					if _, body, err := in.NewEnv.InstructionFile(); err == nil {
						row.InstructionFile = string(body)
					}
				}
			}
		}
		if asJSON {
			return out.emit(row)
		}
		_, err := fmt.Fprintf(stdout, "%s\t%s\t%s -> %s\t%s\n", ev.ID, ev.Op, orDash(ev.FromKey), orDash(ev.ToKey), orDash(phase))
		return err
	})
	if err != nil {
		return err
	}
	if !asJSON {
		fmt.Fprintf(stdout, "%d unfinished changes in run %s", n, runID)
		if n > 0 {
			fmt.Fprintf(stdout, ": 'rotator resume --run-id %s' settles them", runID)
		}
		fmt.Fprintln(stdout)
	}
	return nil
}

// escrowStale is the key under which escrowCounts counts the objects
// re-encrypted (a new data key) after their last escrow.
const escrowStale = "stale: re-encrypted since its escrow"

// escrowCounts counts objects by the escrow key of their latest escrow
// event (op escrow), from the ledger's events: an object re-encrypted
// after it counts under escrowStale. An object is its bucket and key (an
// escrow file goes with the key's current version).
func escrowCounts(ctx context.Context, l ledger.Ledger) (map[string]int64, error) {
	type last struct {
		escrow    time.Time
		escrowKey string
		reenc     time.Time
	}
	objs := map[[2]string]*last{}
	err := l.Events(ctx, func(ev ledger.Event) error {
		id := [2]string{ev.ID.Bucket, ev.ID.Key}
		o := objs[id]
		if o == nil {
			o = &last{}
			objs[id] = o
		}
		switch ev.Op {
		case ledger.OpEscrow:
			if !ev.At.Before(o.escrow) {
				o.escrow, o.escrowKey = ev.At, ev.ToKey
			}
		case ledger.OpReencrypt:
			if ev.At.After(o.reenc) {
				o.reenc = ev.At
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	counts := map[string]int64{}
	for _, o := range objs {
		switch {
		case o.escrowKey == "":
		case o.reenc.After(o.escrow):
			counts[escrowStale]++
		default:
			counts[o.escrowKey]++
		}
	}
	return counts, nil
}
