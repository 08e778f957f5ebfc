package main

import (
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

	code, text := f.rotator(t, "escrow", "--source", src, "--from", "kms:"+f.arnA, "--escrow", "kms:"+arnC, "--run-id", "esc-1", "--no-progress", "--log-level", "warn")
	if code != 0 {
		t.Fatalf("escrow: exit %d\n%s", code, text)
	}
	code, text = f.rotator(t, "ledger", "lineage", src+"/"+f.objs[0].Key)
	if code != 0 || !strings.Contains(text, "escrow") || !strings.Contains(text, "kms-reencrypt") {
		t.Errorf("lineage after escrow: exit %d\n%s", code, text)
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

	for _, bad := range [][]string{
		{"restore", "--source", src, "--to", "kms:" + f.arnB},
		{"restore", "--source", src, "--from-escrow", "kms:" + arnC, "--to", "kms:" + f.arnB, "--from", "kms:" + f.arnA},
		{"escrow", "--source", src},
		{"escrow", "--source", src, "--escrow", "kms:" + arnC, "--escrow-suffix", ".instruction"},
		{"run", "--mode", "reencrypt", "--source", src, "--from", "kms:" + f.arnA, "--to", "kms:" + f.arnB, "--escrow", "kms:" + arnC},
	} {
		if code, text := f.rotator(t, bad...); code != 2 {
			t.Errorf("%q: exit %d, want 2 (usage)\n%s", bad, code, text)
		}
	}
}
