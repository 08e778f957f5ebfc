package main

import (
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
)

// TestEscrowCLI: rotator escrow writes an escrow file for every object
// (a run of its own, with escrow events in the ledger), verify --escrow
// opens every object through it, and restore --from-escrow rewraps every
// object to a new key, which verify then proves.
func TestEscrowCLI(t *testing.T) {
	f := newCLIFixture(t, 8)
	out, err := f.kms.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("escrow " + t.Name())})
	if err != nil {
		t.Fatal(err)
	}
	arnC := *out.KeyMetadata.Arn
	src := "s3://" + f.bucket

	code, text := f.rotator(t, "plan", "--source", src, "--to", "kms:"+f.arnB, "--check-escrow")
	if code != 0 || !strings.Contains(text, "8  no escrow file") || !strings.Contains(text, "8 objects have no valid escrow") {
		t.Errorf("plan --check-escrow before the escrow: exit %d\n%s", code, text)
	}
	code, text = f.rotator(t, "escrow", "--source", src, "--from", "kms:"+f.arnA, "--escrow", "kms:"+arnC, "--run-id", "esc-1", "--no-progress", "--log-level", "warn")
	if code != 0 {
		t.Fatalf("escrow: exit %d\n%s", code, text)
	}
	code, text = f.rotator(t, "ledger", "lineage", src+"/"+f.objs[0].Key)
	if code != 0 || !strings.Contains(text, "escrow") || !strings.Contains(text, "kms-reencrypt") {
		t.Errorf("lineage after escrow: exit %d\n%s", code, text)
	}
	code, text = f.rotator(t, "plan", "--source", src, "--to", "kms:"+f.arnB, "--check-escrow", "--json")
	if code != 0 || !strings.Contains(text, `"by_escrow":{"escrow file present (verify --escrow proves its key)":8}`) {
		t.Errorf("plan --check-escrow after the escrow: exit %d\n%s", code, text)
	}
	code, text = f.rotator(t, "ledger", "counts", "--escrow", "--json")
	if want := `{"message_type":"key_counts","counts":{"` + arnC + `":8}}`; code != 0 || strings.TrimSpace(text) != want {
		t.Errorf("ledger counts --escrow: exit %d\n%s\nwant %s", code, text, want)
	}
	code, text = f.rotator(t, "verify", "--source", src, "--escrow", "--key", "kms:"+arnC, "--all")
	if code != 0 || !strings.Contains(text, "8 objects open") {
		t.Fatalf("verify --escrow: exit %d\n%s", code, text)
	}
	// The primary key's objects do not open under the escrow key through
	// their own envelopes: the escrow is a second, separate wrapping.
	if code, text = f.rotator(t, "verify", "--source", src, "--key", "kms:"+arnC, "--all"); code == 0 {
		t.Errorf("verify (primary envelopes) under the escrow key: exit 0\n%s", text)
	}
	code, text = f.rotator(t, "restore", "--source", src, "--from-escrow", "kms:"+arnC, "--to", "kms:"+f.arnB, "--run-id", "restore-1", "--no-progress", "--log-level", "warn")
	if code != 0 {
		t.Fatalf("restore: exit %d\n%s", code, text)
	}
	f.opensUnder(t, f.arnB)

	// A re-encryption gives every object a new data key: the escrow files
	// are stale, and both the ledger and verify --escrow say so.
	code, text = f.rotator(t, "run", "--mode", "reencrypt", "--source", src, "--from", "kms:"+f.arnB, "--to", "kms:"+f.arnB, "--run-id", "reenc-1", "--no-progress", "--log-level", "warn")
	if code != 0 {
		t.Fatalf("re-encryption: exit %d\n%s", code, text)
	}
	code, text = f.rotator(t, "plan", "--source", src, "--to", "kms:"+f.arnB, "--check-escrow", "--json")
	if code != 0 || !strings.Contains(text, `"by_escrow":{"escrow file of other content (stale or someone else's)":4,"escrow file present (verify --escrow proves its key)":4}`) {
		t.Errorf("plan --check-escrow after a re-encryption (the V2 IVs changed; V3 needs the key): exit %d\n%s", code, text)
	}
	code, text = f.rotator(t, "ledger", "counts", "--escrow", "--json")
	if want := `{"message_type":"key_counts","counts":{"` + escrowStale + `":8}}`; code != 0 || strings.TrimSpace(text) != want {
		t.Errorf("ledger counts --escrow after a re-encryption: exit %d\n%s\nwant %s", code, text, want)
	}
	code, text = f.rotator(t, "verify", "--source", src, "--escrow", "--key", "kms:"+arnC, "--all", "--report", "stale.csv")
	if code != 3 || !strings.Contains(text, "0 objects open") {
		t.Errorf("verify --escrow of stale escrow files: exit %d, want 3\n%s", code, text)
	}
	failed := 0
	for _, r := range reportRows(t, filepath.Join(f.dir, "stale.csv")) {
		switch {
		case r["ErrorCode"] == "EscrowFile" && r["Status"] == "skipped":
		case r["ErrorCode"] == "EscrowMismatch" && r["Status"] == "failed":
			failed++
		default:
			t.Errorf("verify --escrow of %s: %s %s %s", r["Key"], r["Status"], r["ErrorCode"], r["Message"])
		}
	}
	if failed != 8 {
		t.Errorf("%d stale escrow files reported, want 8", failed)
	}

	for _, bad := range [][]string{
		{"restore", "--source", src, "--to", "kms:" + f.arnB},
		{"restore", "--source", src, "--from-escrow", "kms:" + arnC, "--to", "kms:" + f.arnB, "--from", "kms:" + f.arnA},
		{"escrow", "--source", src},
		{"escrow", "--source", src, "--escrow", "kms:" + arnC, "--escrow-suffix", ".instruction"},
		{"escrow", "--source", src, "--escrow", "kms:" + arnC, "--mode", "rewrap"},
		{"run", "--source", src, "--mode", "restore", "--escrow", "kms:" + arnC, "--to", "kms:" + f.arnB},
		{"iam-policy", "--source", src, "--mode", "escrow", "--to", "kms:" + arnC},
		{"plan", "--source", src, "--mode", "escrow", "--to", "kms:" + arnC},
	} {
		if code, text := f.rotator(t, bad...); code != 2 {
			t.Errorf("%q: exit %d, want 2 (usage)\n%s", bad, code, text)
		}
	}
}

// reportRows reads a completion report (with its header) as maps.
func reportRows(t *testing.T, path string) []map[string]string {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	recs, err := csv.NewReader(fh).ReadAll()
	if err != nil || len(recs) == 0 {
		t.Fatalf("report %s: %v", path, err)
	}
	var rows []map[string]string
	for _, rec := range recs[1:] {
		row := map[string]string{}
		for i, col := range recs[0] {
			row[col] = rec[i]
		}
		rows = append(rows, row)
	}
	return rows
}
