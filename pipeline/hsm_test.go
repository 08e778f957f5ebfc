package pipeline_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"io"
	"maps"
	"os"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/internal/hsmtest"
	"github.com/rotator-dev/rotator/internal/testenv"
	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/pipeline"
	"github.com/rotator-dev/rotator/rewrap"
)

// newHSMKey creates an AES-256 key on the stack's SoftHSM token and returns
// its keyring, opened through the fixture's Deps.
func newHSMKey(t *testing.T, f *fixture) rewrap.Keyring {
	t.Helper()
	spec := newHSMKeySpec(t)
	f.deps.PKCS11Module, f.deps.PKCS11PINSource = os.Getenv(testenv.EnvPKCS11Module), "file:"+os.Getenv(testenv.EnvPKCS11PinFile)
	return openKey(t, f.deps, spec)
}

// newHSMKeySpec creates an AES-256 key on the stack's SoftHSM token, to be
// destroyed at the end of the test, and returns its key spec.
func newHSMKeySpec(t *testing.T) string {
	t.Helper()
	spec, _ := hsmtest.Key(t, "pipeline-")
	return spec
}

// countingKeyring counts the unwraps of the keyring it wraps: the HSM calls
// a run makes with it. It keeps the keyring's ID, kind and offline
// recognition.
type countingKeyring struct {
	rewrap.Keyring
	unwraps atomic.Int64
}

var _ rewrap.Recognizer = (*countingKeyring)(nil)

func (k *countingKeyring) Recognize(w rewrap.Wrapped) rewrap.Match {
	return rewrap.Classify(k.Keyring, w)
}

func (k *countingKeyring) Unwrap(ctx context.Context, w rewrap.Wrapped, cek envelope.ContentAlg) (*envelope.DataKey, error) {
	k.unwraps.Add(1)
	return k.Keyring.Unwrap(ctx, w, cek)
}

// storedEnvelope parses the envelope an object holds (in its metadata or
// its instruction file), without decrypting anything.
func storedEnvelope(t *testing.T, f *fixture, key string) *envelope.Envelope {
	t.Helper()
	meta := headMeta(t, f, key)
	var instr []byte
	if envelope.NeedsInstructionFile(meta) {
		ik := envelope.InstructionKey(key, envelope.DefaultInstructionSuffix)
		out, err := f.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &f.bucket, Key: &ik})
		if err != nil {
			t.Fatal(err)
		}
		instr, err = io.ReadAll(out.Body)
		out.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	env, err := envelope.Parse(meta, instr, envelope.ParseOptions{})
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	return env
}

// reportRows returns the completion report's rows as column -> value.
func reportRows(t *testing.T, buf *bytes.Buffer) []map[string]string {
	t.Helper()
	recs, err := csv.NewReader(bytes.NewReader(buf.Bytes())).ReadAll()
	if err != nil || len(recs) == 0 {
		t.Fatalf("report: %v\n%s", err, buf)
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

// TestRunMigratesToHSMAndBack: KMS A -> HSM stores the user entries only as
// material description (nothing names the HSM key, so readers that pass
// their encryption context to the official clients still work); a second
// run to the HSM key is a no-op the ledger answers; a dry run on a fresh
// ledger makes no HSM call; HSM -> KMS B on that fresh ledger finds the HSM
// key by a trial unwrap inside the HSM.
func TestRunMigratesToHSMAndBack(t *testing.T) {
	const n = 8 // two of each format and placement
	f := newFixture(t, n, false)
	hsm := newHSMKey(t, f)
	users := map[string]map[string]string{}
	for _, o := range f.objs {
		users[o.Key] = rewrap.UserEntries(storedEnvelope(t, f, o.Key).MatDesc)
	}

	c := f.core("to-hsm")
	c.To, c.From = hsm, []rewrap.Keyring{f.a}
	rep, buf := f.run(t, c)
	if rep.Counts()[pipeline.StatusSucceeded] != n {
		t.Fatalf("to the HSM: %v\n%s", rep.Counts(), buf)
	}
	for _, o := range f.objs {
		if got := f.decrypt(t, o.Key, hsm); !bytes.Equal(got, f.plain[o.Key]) {
			t.Errorf("%s: plaintext differs under the HSM key", o.Key)
		}
		env := storedEnvelope(t, f, o.Key)
		if _, named := env.MatDesc[rewrap.MatDescKEK]; named || !maps.Equal(env.MatDesc, users[o.Key]) {
			t.Errorf("%s (%s): material description %v, want the user entries %v only", o.Key, o.Kind, env.MatDesc, users[o.Key])
		}
		if env.WrapAlg != envelope.WrapAESGCM {
			t.Errorf("%s: wrapped with %s, want AES/GCM", o.Key, env.WrapAlg)
		}
		if m := rewrap.Classify(hsm, rewrap.Wrapped{Alg: env.WrapAlg, Key: env.WrappedKey, MatDesc: env.MatDesc}); m != rewrap.MatchUnknown {
			t.Errorf("%s: Classify = %v, want unknown (no key named)", o.Key, m)
		}
	}

	// Again: the ledger knows every object is under the HSM key (the
	// wrapped key's fingerprint); no HSM call.
	again := &countingKeyring{Keyring: hsm}
	c2 := f.core("to-hsm-again")
	c2.To = again
	rep, buf = f.run(t, c2)
	if got := rep.Counts(); got[pipeline.StatusSucceeded] != 0 || got[pipeline.StatusSkipped] != n {
		t.Errorf("second run: %v\n%s", got, buf)
	}
	for _, row := range reportRows(t, buf) {
		if row["ErrorCode"] != pipeline.CodeAlreadyTarget {
			t.Errorf("second run: %s: %s %s", row["Key"], row["Status"], row["ErrorCode"])
		}
	}
	if got := again.unwraps.Load(); got != 0 {
		t.Errorf("second run: %d HSM unwraps, want 0 (the ledger knows)", got)
	}

	// A fresh ledger knows nothing: only a trial unwrap in the HSM can tell
	// which key wraps these objects. A dry run does not make it.
	f.ledger = freshLedger(t)
	from := &countingKeyring{Keyring: hsm}
	dry := f.core("dry")
	dry.To, dry.From = f.b, []rewrap.Keyring{from}
	dry = pipeline.DryRun(dry)
	for _, o := range f.objs {
		if _, err := dry.Process(ctx, inventory.Item{Bucket: f.bucket, Key: o.Key}); err != nil {
			t.Fatalf("dry run: %v", err)
		}
	}
	if got := from.unwraps.Load(); got != 0 {
		t.Errorf("dry run: %d HSM unwraps, want 0 (dry runs call no key backend)", got)
	}

	// Back to KMS key B, finding the HSM key by a trial unwrap.
	c3 := f.core("to-kms")
	c3.To, c3.From = f.b, []rewrap.Keyring{from}
	rep, buf = f.run(t, c3)
	if rep.Counts()[pipeline.StatusSucceeded] != n {
		t.Fatalf("back to KMS: %v\n%s", rep.Counts(), buf)
	}
	for _, row := range reportRows(t, buf) {
		if row["FromKey"] != hsm.ID() || row["ToKey"] != f.b.ID() {
			t.Errorf("back to KMS: %s: from %q to %q", row["Key"], row["FromKey"], row["ToKey"])
		}
	}
	// Per object: the probe, then the rewrap's unwrap.
	if got := from.unwraps.Load(); got != 2*n {
		t.Errorf("back to KMS: %d HSM unwraps, want %d (a trial unwrap and the rewrap per object)", got, 2*n)
	}
	for _, o := range f.objs {
		if got := f.decrypt(t, o.Key, f.b); !bytes.Equal(got, f.plain[o.Key]) {
			t.Errorf("%s: plaintext differs under key B", o.Key)
		}
		env := storedEnvelope(t, f, o.Key)
		if env.WrapAlg != envelope.WrapKMSContext || !maps.Equal(rewrap.UserEntries(env.MatDesc), users[o.Key]) {
			t.Errorf("%s: back on KMS: %s with context %v, want kms+context with the user entries %v", o.Key, env.WrapAlg, env.MatDesc, users[o.Key])
		}
	}
}
