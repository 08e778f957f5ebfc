package pipeline_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/escrow"
	"github.com/rotator-dev/rotator/internal/hsmtest"
	"github.com/rotator-dev/rotator/internal/testenv"
	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/pipeline"
	"github.com/rotator-dev/rotator/rewrap"
)

// destroyableHSMKey creates an AES-256 key on the stack's SoftHSM token and
// returns its keyring and a function that destroys the key object (the
// HSM key lost); whatever is left is destroyed when the test ends.
func destroyableHSMKey(t *testing.T, f *fixture) (rewrap.Keyring, func()) {
	t.Helper()
	spec, destroy := hsmtest.Key(t, "escrow-")
	f.deps.PKCS11Module, f.deps.PKCS11PINSource = os.Getenv(testenv.EnvPKCS11Module), "file:"+os.Getenv(testenv.EnvPKCS11PinFile)
	return openKey(t, f.deps, spec), destroy
}

// escrowBody reads an object's escrow file.
func escrowBody(t *testing.T, f *fixture, key string) []byte {
	t.Helper()
	st, body, err := f.commit.ReadInstruction(ctx, f.bucket, escrow.Key(key, ""), "")
	if err != nil {
		t.Fatalf("%s: escrow file: %v", key, err)
	}
	if !envelope.IsInstructionFile(st.Metadata) {
		t.Errorf("%s: the escrow file is not marked as an instruction file: %v", key, st.Metadata)
	}
	return body
}

func (f *fixture) verifyEscrow(t *testing.T, k rewrap.Keyring) map[string]pipeline.Outcome {
	t.Helper()
	v := &pipeline.Verifier{Core: f.core("verify"), Bodies: f.s3, Key: k, Escrow: true}
	got := map[string]pipeline.Outcome{}
	err := v.Verify(ctx, f.source(t), 0, 4, func(o pipeline.Outcome) { got[o.Key] = o })
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestEscrowMigrationToHSMRestoredFromKMSEscrow: a run KMS A -> HSM with
// --escrow C writes every object's escrow file (ReEncrypt: no data key in
// the process) before rewrapping it; verify --escrow opens each object
// through its escrow file alone; the HSM key is destroyed; restore from
// the escrow to KMS key D makes every object readable with its original
// plaintext. Escrow files swapped between objects (someone else's) are
// detected without trusting them: by the IV (V2) or the key commitment
// (V3), and by the body's tag.
func TestEscrowMigrationToHSMRestoredFromKMSEscrow(t *testing.T) {
	const n = 8 // two of each format and placement
	f := newFixture(t, n, false)
	hsm, destroy := destroyableHSMKey(t, f)
	kc := f.kms.Client("")
	escrowKey := openKey(t, f.deps, "kms:"+createKey(t, kc, "escrow C"))
	newKey := openKey(t, f.deps, "kms:"+createKey(t, kc, "restored D"))

	c := f.core("to-hsm-escrow")
	c.To, c.From, c.Escrow, c.Creator = hsm, []rewrap.Keyring{f.a}, escrowKey, f.commit
	rep, buf := f.run(t, c)
	if rep.Counts()[pipeline.StatusSucceeded] != n {
		t.Fatalf("KMS -> HSM with escrow: %v\n%s", rep.Counts(), buf)
	}
	for _, o := range f.objs {
		e, err := escrow.Parse(storedEnvelope(t, f, o.Key), escrowBody(t, f, o.Key))
		if err != nil {
			t.Fatalf("%s: %v", o.Key, err)
		}
		if e.WrapAlg != envelope.WrapKMSContext {
			t.Errorf("%s: escrow wrapped with %s, want kms+context", o.Key, e.WrapAlg)
		}
		evs, err := f.ledger.Lineage(ctx, ledger.ObjectID{Bucket: f.bucket, Key: o.Key})
		if err != nil {
			t.Fatal(err)
		}
		var ops []string
		for _, ev := range evs {
			ops = append(ops, ev.Op+" "+ev.Method+" "+ev.ToKey)
		}
		want := []string{"escrow kms-reencrypt " + escrowKey.ID(), "rewrap kms-decrypt+hsm-wrap " + hsm.ID()}
		if len(ops) != 2 || ops[0] != want[0] || ops[1] != want[1] {
			t.Errorf("%s: lineage %q, want %q", o.Key, ops, want)
		}
	}
	for key, o := range f.verifyEscrow(t, escrowKey) {
		if o.Status != pipeline.StatusSucceeded {
			t.Errorf("verify --escrow %s: %s %s %s", key, o.Status, o.ErrorCode, o.Message)
		}
	}
	// A second run writes nothing: every object is under the HSM key, and
	// its escrow file (rewritten from the primary wrapping) still holds.
	again := f.core("to-hsm-escrow-again")
	again.To, again.From, again.Escrow, again.Creator = hsm, []rewrap.Keyring{f.a}, escrowKey, f.commit
	rep, buf = f.run(t, again)
	if got := rep.Counts(); got[pipeline.StatusFailed] != 0 || got[pipeline.StatusSkipped] != n {
		t.Errorf("second run: %v\n%s", got, buf)
	}

	destroy()
	for _, o := range f.objs[:1] {
		if _, err := f.tryDecrypt(o.Key, hsm); err == nil {
			t.Fatalf("%s still opens under the destroyed HSM key", o.Key)
		}
	}

	r := f.core("restore")
	r.Mode, r.To, r.Escrow, r.Bodies = pipeline.ModeRestore, newKey, escrowKey, f.s3
	rep, buf = f.run(t, r)
	if rep.Counts()[pipeline.StatusSucceeded] != n {
		t.Fatalf("restore: %v\n%s", rep.Counts(), buf)
	}
	for _, row := range reportRows(t, buf) {
		if row["Message"] != "escrow:kms-decrypt+kms-encrypt" || row["FromKey"] != escrowKey.ID() || row["ToKey"] != newKey.ID() {
			t.Errorf("restore row %v", row)
		}
	}
	for _, o := range f.objs {
		if got := f.decrypt(t, o.Key, newKey); !bytes.Equal(got, f.plain[o.Key]) {
			t.Errorf("%s: plaintext differs after the restore", o.Key)
		}
	}

	// Escrow files of other objects (same format and placement): refused.
	a, b := f.objs[0], f.objs[4]
	if a.Kind != b.Kind {
		for _, o := range f.objs[1:] {
			if o.Kind == a.Kind {
				b = o
			}
		}
	}
	ab, bb := escrowBody(t, f, a.Key), escrowBody(t, f, b.Key)
	put(t, f, escrow.Key(a.Key, ""), bb, escrow.ObjectMetadata())
	put(t, f, escrow.Key(b.Key, ""), ab, escrow.ObjectMetadata())
	got := f.verifyEscrow(t, escrowKey)
	for _, k := range []string{a.Key, b.Key} {
		if o := got[k]; o.Status != pipeline.StatusFailed || o.ErrorCode != pipeline.CodeEscrowMismatch {
			t.Errorf("verify --escrow of a swapped escrow file %s (%v): %s %s %s", k, a.Kind, o.Status, o.ErrorCode, o.Message)
		}
	}
	r2 := f.core("restore-swapped")
	r2.Mode, r2.To, r2.Escrow, r2.Bodies = pipeline.ModeRestore, f.b, escrowKey, f.s3
	for _, k := range []string{a.Key, b.Key} {
		o, err := r2.Process(ctx, inventory.Item{Bucket: f.bucket, Key: k})
		if err != nil || o.Status != pipeline.StatusFailed || o.ErrorCode != pipeline.CodeEscrowMismatch {
			t.Errorf("restore from a swapped escrow file %s: %s %s %s %v", k, o.Status, o.ErrorCode, o.Message, err)
		}
		if got := f.decrypt(t, k, newKey); !bytes.Equal(got, f.plain[k]) {
			t.Errorf("%s: changed by a refused restore", k)
		}
	}
}

// writeRSAKeys writes an RSA key pair as PEM files: the public key (all an
// escrow needs) and the private key (loaded only for a restore).
func writeRSAKeys(t *testing.T) (pub, priv string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pubDER, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pub, priv = filepath.Join(dir, "escrow.pub.pem"), filepath.Join(dir, "escrow.pem")
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), 0o600); err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

// TestEscrowRSAPublicKeyRestoreWithPrivateKey: rotator escrow over objects
// under KMS A with only the RSA public key writes RSA-OAEP-SHA1 escrow
// files; the public key cannot open them; restore with the private key
// rewraps every object to KMS B.
func TestEscrowRSAPublicKeyRestoreWithPrivateKey(t *testing.T) {
	const n = 8
	f := newFixture(t, n, false)
	pubFile, privFile := writeRSAKeys(t)
	pub := openKey(t, f.deps, "rsa:"+pubFile)

	c := f.core("escrow-rsa")
	c.Mode, c.To, c.From, c.Escrow, c.Creator = pipeline.ModeEscrow, pub, []rewrap.Keyring{f.a}, pub, f.commit
	rep, buf := f.run(t, c)
	if rep.Counts()[pipeline.StatusSucceeded] != n {
		t.Fatalf("escrow: %v\n%s", rep.Counts(), buf)
	}
	for _, o := range f.objs {
		e, err := escrow.Parse(storedEnvelope(t, f, o.Key), escrowBody(t, f, o.Key))
		if err != nil || e.WrapAlg != envelope.WrapRSAOAEPSHA1 {
			t.Fatalf("%s: escrow %v %v", o.Key, e, err)
		}
		// The object itself is untouched: still under A.
		if got := f.decrypt(t, o.Key, f.a); !bytes.Equal(got, f.plain[o.Key]) {
			t.Errorf("%s: changed by the escrow", o.Key)
		}
	}
	// The public key cannot open them: verify stops at once (systemic).
	v := &pipeline.Verifier{Core: f.core("verify"), Bodies: f.s3, Key: pub, Escrow: true}
	if err := v.Verify(ctx, f.source(t), 0, 1, func(pipeline.Outcome) {}); !rewrap.IsSystemic(err) {
		t.Errorf("verify --escrow with the public key only: %v, want a systemic WrapOnly error", err)
	}
	priv := openKey(t, f.deps, "rsa:"+privFile)
	for key, o := range f.verifyEscrow(t, priv) {
		if o.Status != pipeline.StatusSucceeded {
			t.Errorf("verify --escrow %s: %s %s %s", key, o.Status, o.ErrorCode, o.Message)
		}
	}
	r := f.core("restore-rsa")
	r.Mode, r.To, r.Escrow, r.Bodies = pipeline.ModeRestore, f.b, priv, f.s3
	rep, buf = f.run(t, r)
	if rep.Counts()[pipeline.StatusSucceeded] != n {
		t.Fatalf("restore: %v\n%s", rep.Counts(), buf)
	}
	for _, o := range f.objs {
		if got := f.decrypt(t, o.Key, f.b); !bytes.Equal(got, f.plain[o.Key]) {
			t.Errorf("%s: plaintext differs after the restore", o.Key)
		}
	}
}

// TestEscrowReencryptRewritesEscrow: a re-encryption with --escrow gives
// each object a new data key and rewrites its escrow file from it (after
// the content landed); the escrow files of an earlier escrow under the old
// data keys are replaced, never left stale.
func TestEscrowReencryptRewritesEscrow(t *testing.T) {
	const n = 8
	f := newFixture(t, n, false)
	escrowKey := openKey(t, f.deps, "kms:"+createKey(t, f.kms.Client(""), "escrow C"))
	e := f.core("escrow-first")
	e.Mode, e.To, e.Escrow, e.Creator = pipeline.ModeEscrow, escrowKey, escrowKey, f.commit
	if rep, buf := f.run(t, e); rep.Counts()[pipeline.StatusSucceeded] != n {
		t.Fatalf("escrow: %v\n%s", rep.Counts(), buf)
	}
	before := map[string][]byte{}
	for _, o := range f.objs {
		before[o.Key] = escrowBody(t, f, o.Key)
	}

	c, _ := f.reencryptCore("reencrypt-escrow", nil, f.a)
	c.Escrow, c.Creator = escrowKey, f.commit
	rep, buf := f.run(t, c)
	if rep.Counts()[pipeline.StatusSucceeded] != n {
		t.Fatalf("re-encryption with escrow: %v\n%s", rep.Counts(), buf)
	}
	for _, o := range f.objs {
		if got := f.decrypt(t, o.Key, f.b); !bytes.Equal(got, f.plain[o.Key]) {
			t.Errorf("%s: plaintext differs after the re-encryption", o.Key)
		}
		if bytes.Equal(escrowBody(t, f, o.Key), before[o.Key]) {
			t.Errorf("%s: escrow file not rewritten", o.Key)
		}
		if ops := f.ops(t, o.Key, "reencrypt-escrow"); len(ops) != 2 || ops[0] != ledger.OpReencrypt || ops[1] != ledger.OpEscrow {
			t.Errorf("%s: events of the run %q, want reencrypt then escrow", o.Key, ops)
		}
	}
	for key, o := range f.verifyEscrow(t, escrowKey) {
		if o.Status != pipeline.StatusSucceeded {
			t.Errorf("verify --escrow %s after the re-encryption: %s %s %s", key, o.Status, o.ErrorCode, o.Message)
		}
	}
}

// TestEscrowUnderHSMKey: rotator escrow with an HSM escrow key (the data
// key unwrapped with KMS A and wrapped inside the HSM, cleared at once);
// verify --escrow through the HSM; the KMS key A disabled (the primary
// lost); restore from the HSM escrow to KMS B.
func TestEscrowUnderHSMKey(t *testing.T) {
	const n = 8
	f := newFixture(t, n, false)
	hsm, _ := destroyableHSMKey(t, f)
	c := f.core("escrow-hsm")
	c.Mode, c.To, c.From, c.Escrow, c.Creator = pipeline.ModeEscrow, hsm, []rewrap.Keyring{f.a}, hsm, f.commit
	rep, buf := f.run(t, c)
	if rep.Counts()[pipeline.StatusSucceeded] != n {
		t.Fatalf("escrow under the HSM key: %v\n%s", rep.Counts(), buf)
	}
	for _, row := range reportRows(t, buf) {
		if row["Message"] != "kms-decrypt+hsm-wrap" || row["ToKey"] != hsm.ID() {
			t.Errorf("escrow row %v", row)
		}
	}
	for key, o := range f.verifyEscrow(t, hsm) {
		if o.Status != pipeline.StatusSucceeded {
			t.Errorf("verify --escrow %s: %s %s %s", key, o.Status, o.ErrorCode, o.Message)
		}
	}
	if _, err := f.kms.Client("").DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(f.a.ID())}); err != nil {
		t.Fatal(err)
	}
	r := f.core("restore-hsm")
	r.Mode, r.To, r.Escrow, r.Bodies = pipeline.ModeRestore, f.b, hsm, f.s3
	rep, buf = f.run(t, r)
	if rep.Counts()[pipeline.StatusSucceeded] != n {
		t.Fatalf("restore from the HSM escrow: %v\n%s", rep.Counts(), buf)
	}
	for _, o := range f.objs {
		if got := f.decrypt(t, o.Key, f.b); !bytes.Equal(got, f.plain[o.Key]) {
			t.Errorf("%s: plaintext differs after the restore", o.Key)
		}
	}
}

// putV1 writes plain as a legacy V1 object (x-amz-key, AES/CBC content,
// wrapping "kms": the material description is the encryption context)
// under the KMS key kmsARN, and returns its wrapped data key.
func putV1(t *testing.T, f *fixture, key, kmsARN string, plain []byte) []byte {
	t.Helper()
	md := map[string]string{"kms_cmk_id": kmsARN}
	dk, err := f.kms.Client("").GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: &kmsARN, KeySpec: "AES_256", EncryptionContext: md})
	if err != nil {
		t.Fatal(err)
	}
	iv := make([]byte, aes.BlockSize)
	rand.Read(iv)
	b, err := aes.NewCipher(dk.Plaintext)
	clear(dk.Plaintext)
	if err != nil {
		t.Fatal(err)
	}
	pad := aes.BlockSize - len(plain)%aes.BlockSize
	ct := append(append([]byte(nil), plain...), bytes.Repeat([]byte{byte(pad)}, pad)...)
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(ct, ct)
	mdJSON, err := json.Marshal(md)
	if err != nil {
		t.Fatal(err)
	}
	put(t, f, key, ct, map[string]string{
		"x-amz-key":      base64.StdEncoding.EncodeToString(dk.CiphertextBlob),
		"x-amz-iv":       base64.StdEncoding.EncodeToString(iv),
		"x-amz-matdesc":  string(mdJSON),
		"x-amz-wrap-alg": string(envelope.WrapKMS),
		"x-amz-cek-alg":  string(envelope.ContentAESCBC),
	})
	return dk.CiphertextBlob
}

// TestEscrowLeavesLegacyObjectsUnderTheTarget: run --escrow (rewrap, and
// re-encrypt) meets a V1 AES/CBC object the ledger knows is under the
// target key already: an escrow file cannot describe legacy content, so
// none is written, and its row says so (it said "escrow file written ()").
func TestEscrowLeavesLegacyObjectsUnderTheTarget(t *testing.T) {
	f := newFixture(t, 0, false)
	escrowKey := openKey(t, f.deps, "kms:"+createKey(t, f.kms.Client(""), "escrow C"))
	const key = "legacy/v1-under-b"
	wrapped := putV1(t, f, key, strings.TrimPrefix(f.b.ID(), "kms:"), []byte("legacy content under the target key"))
	// The ledger knows its key (an earlier run learned it): a KMS
	// wrapping names none offline.
	obj, err := f.commit.Head(ctx, f.bucket, key, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.ledger.Observe(ctx, ledger.Object{ID: ledger.ObjectID{Bucket: f.bucket, Key: key, VersionID: obj.VersionID},
		WrapKey: f.b.ID(), Format: envelope.V1.String(), Placement: envelope.PlacementMetadata.String(),
		CEKAlg: string(envelope.ContentAESCBC), State: ledger.StateCurrent, ETag: obj.ETag, RunID: "earlier",
		WrappedKeySHA256: ledger.WrappedKeyFingerprint(wrapped)}); err != nil {
		t.Fatal(err)
	}
	rw := f.core("legacy-escrow")
	rw.Escrow, rw.Creator = escrowKey, f.commit
	re, _ := f.reencryptCore("legacy-escrow-reencrypt", nil, f.a)
	re.Escrow, re.Creator = escrowKey, f.commit
	for _, c := range []*pipeline.Core{rw, re} {
		_, buf := f.run(t, c)
		rows := reportRows(t, buf)
		if len(rows) != 1 {
			t.Fatalf("%s: %d rows\n%s", c.RunID, len(rows), buf)
		}
		row := rows[0]
		if row["Status"] != string(pipeline.StatusSkipped) || row["ErrorCode"] != pipeline.CodeAlreadyTarget {
			t.Errorf("%s: %s %s %q, want skipped %s", c.RunID, row["Status"], row["ErrorCode"], row["Message"], pipeline.CodeAlreadyTarget)
		}
		if strings.Contains(row["Message"], "escrow file written") || !strings.Contains(row["Message"], "no escrow file") {
			t.Errorf("%s: message %q, want it to say that no escrow file was written", c.RunID, row["Message"])
		}
		t.Logf("%s: %s", c.RunID, row["Message"])
		if _, _, err := f.commit.ReadInstruction(ctx, f.bucket, escrow.Key(key, ""), ""); !errors.Is(err, commit.ErrGone) {
			t.Errorf("%s: escrow file: %v, want none", c.RunID, err)
		}
	}
}

// TestEscrowReencryptFinishedByRecoveryIsEscrowed: re-encryptions that a
// process left unfinished (it stopped after a part) and that the next
// process finishes from their intents (Recover, before it lists anything,
// as resume does for objects its listing will not meet again) are escrowed
// too: the escrow file is written from the new data key, with one escrow
// event after the re-encryption's. Both ways of finishing: resumed from
// the checkpoint, and given up then re-encrypted again.
func TestEscrowReencryptFinishedByRecoveryIsEscrowed(t *testing.T) {
	for _, giveUp := range []bool{false, true} {
		t.Run(fmt.Sprintf("giveUp=%v", giveUp), func(t *testing.T) {
			f := newFixture(t, 0, false)
			f.seedBig(t, 2, 11<<20, 12<<20) // three parts each
			escrowKey := openKey(t, f.deps, "kms:"+createKey(t, f.kms.Client(""), "escrow C"))
			c, e := f.reencryptCore("run-re", nil, f.a)
			c.Escrow, c.Creator = escrowKey, f.commit
			for _, o := range f.objs {
				cctx, cancel := context.WithCancel(ctx)
				e.AfterPart = func(int) { cancel() }
				e.PartsInFlight = 1
				out, _ := c.Process(cctx, inventory.Item{Bucket: f.bucket, Key: o.Key})
				cancel()
				if out.Status != pipeline.StatusUnfinished {
					t.Fatalf("%s: not kept for resume: %+v", o.Key, out)
				}
			}
			e.AfterPart, e.PartsInFlight = nil, 0
			n, err := pipeline.Recover(ctx, c, f.ledger, "run-re", giveUp)
			if err != nil || len(n.Outcomes) != 2 {
				t.Fatalf("recover: %+v %v", n, err)
			}
			for _, o := range n.Outcomes {
				if o.Status != pipeline.StatusSucceeded || !strings.Contains(o.Message, "escrow file rewritten") {
					t.Errorf("%s: %s %s %s, want succeeded with its escrow file rewritten", o.Key, o.Status, o.ErrorCode, o.Message)
				}
			}
			for _, o := range f.objs {
				if got := f.decrypt(t, o.Key, f.b); !bytes.Equal(got, f.plain[o.Key]) {
					t.Errorf("%s: plaintext differs after the re-encryption", o.Key)
				}
				if ops := f.ops(t, o.Key, ""); len(ops) != 2 || ops[0] != ledger.OpReencrypt || ops[1] != ledger.OpEscrow {
					t.Errorf("%s: events %q, want reencrypt then escrow", o.Key, ops)
				}
			}
			verified := f.verifyEscrow(t, escrowKey)
			for _, o := range f.objs {
				if v := verified[o.Key]; v.Status != pipeline.StatusSucceeded {
					t.Errorf("verify --escrow %s: %s %s %s", o.Key, v.Status, v.ErrorCode, v.Message)
				}
			}
		})
	}
}

// ops returns the operations of key's lineage, in order: of run runID,
// or of every run ("").
func (f *fixture) ops(t *testing.T, key, runID string) []string {
	t.Helper()
	evs, err := f.ledger.Lineage(ctx, ledger.ObjectID{Bucket: f.bucket, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, ev := range evs {
		if runID == "" || ev.RunID == runID {
			ops = append(ops, ev.Op)
		}
	}
	return ops
}

// failingLedger fails the Commits and Gets its predicates pick, as a
// process that dies right after its write, or a ledger read that fails.
type failingLedger struct {
	ledger.Ledger
	commit  func(ledger.Event) bool
	get     func(ledger.ObjectID) bool
	release func(ledger.ObjectID) bool
}

func (l failingLedger) Release(ctx context.Context, id ledger.ObjectID, owner string) error {
	if l.release != nil && l.release(id) {
		return errCrash
	}
	return l.Ledger.Release(ctx, id, owner)
}

func (l failingLedger) Commit(ctx context.Context, owner string, obj ledger.Object, ev ledger.Event) error {
	if l.commit != nil && l.commit(ev) {
		return errCrash
	}
	return l.Ledger.Commit(ctx, owner, obj, ev)
}

func (l failingLedger) Get(ctx context.Context, id ledger.ObjectID) (ledger.Object, error) {
	if l.get != nil && l.get(id) {
		return ledger.Object{}, errCrash
	}
	return l.Ledger.Get(ctx, id)
}

// TestEscrowRevisitAfterAnUnrecordedRewrap: run --escrow escrows an object
// and rewraps it, and the rewrap's Commit is lost (the process dies). The
// same run meets the object again: its claim settles the rewrap, and its
// escrow is found written by the run already. The escrow event's source
// key (the old one) must not be taken for the key the object is under now:
// before, the revisit then tried a rewrap from the old key, reported the
// object "not wrapped under a --from key" and recorded it under the old
// key in the ledger.
func TestEscrowRevisitAfterAnUnrecordedRewrap(t *testing.T) {
	f := newFixture(t, 4, false)
	escrowKey := openKey(t, f.deps, "kms:"+createKey(t, f.kms.Client(""), "escrow C"))
	c := f.core("run-revisit")
	c.From, c.Escrow, c.Creator = []rewrap.Keyring{f.a}, escrowKey, f.commit
	c.Ledger = failingLedger{Ledger: f.ledger, commit: func(ev ledger.Event) bool { return ev.Op == ledger.OpRewrap }}
	for _, o := range f.objs {
		out, err := c.Process(ctx, inventory.Item{Bucket: f.bucket, Key: o.Key})
		if err == nil || out.Status != pipeline.StatusUnfinished {
			t.Fatalf("%s: want the rewrap landed and unrecorded, got %+v %v", o.Key, out, err)
		}
	}
	c.Ledger = f.ledger
	for _, o := range f.objs {
		out, err := c.Process(ctx, inventory.Item{Bucket: f.bucket, Key: o.Key})
		if err != nil || out.ErrorCode == pipeline.CodeNotFromKey || (out.Status != pipeline.StatusSucceeded && out.Status != pipeline.StatusSkipped) {
			t.Errorf("%s: revisited: %s %s %s (%v)", o.Key, out.Status, out.ErrorCode, out.Message, err)
		}
		rec, err := f.ledger.Get(ctx, ledger.ObjectID{Bucket: f.bucket, Key: o.Key})
		if err != nil || rec.WrapKey != f.b.ID() {
			t.Errorf("%s: the ledger's record says %q (%v), want the new key", o.Key, rec.WrapKey, err)
		}
		if ops := f.ops(t, o.Key, ""); len(ops) != 2 || ops[0] != ledger.OpEscrow || ops[1] != ledger.OpRewrap {
			t.Errorf("%s: events %q, want escrow then rewrap", o.Key, ops)
		}
		if got := f.decrypt(t, o.Key, f.b); !bytes.Equal(got, f.plain[o.Key]) {
			t.Errorf("%s: plaintext differs", o.Key)
		}
	}
	for key, o := range f.verifyEscrow(t, escrowKey) {
		if o.Status != pipeline.StatusSucceeded {
			t.Errorf("verify --escrow %s: %s %s %s", key, o.Status, o.ErrorCode, o.Message)
		}
	}
}

// TestLedgerReadFailureIsNotAGuess: a KMS wrapping names its key only to
// KMS, so a run learns it from the ledger. When that read fails, the key
// is not guessed: before, a re-encryption tried an object already under
// the target against the --from keys, reported it "not wrapped under a
// --from key" and recorded it with no key. Now the object is reported in
// every mode (the run stops, as on any ledger failure) and nothing is
// written.
func TestLedgerReadFailureIsNotAGuess(t *testing.T) {
	f := newFixture(t, 2, false)
	c := f.core("run-first")
	c.From = []rewrap.Keyring{f.a}
	if rep, buf := f.run(t, c); rep.Counts()[pipeline.StatusSucceeded] != 2 {
		t.Fatalf("rewrap: %v\n%s", rep.Counts(), buf)
	}
	for _, mode := range []pipeline.Mode{pipeline.ModeRewrap, pipeline.ModeReencrypt} {
		c := f.core("run-again-" + string(mode))
		if mode == pipeline.ModeReencrypt {
			c, _ = f.reencryptCore("run-again-"+string(mode), nil, f.a)
		}
		c.From = []rewrap.Keyring{f.a}
		c.Ledger = failingLedger{Ledger: f.ledger, get: func(ledger.ObjectID) bool { return true }}
		for _, o := range f.objs {
			before := snap(t, f, o.Key)
			out, err := c.Process(ctx, inventory.Item{Bucket: f.bucket, Key: o.Key})
			if err == nil || out.Status != pipeline.StatusFailed || out.ErrorCode != pipeline.CodeLedger {
				t.Errorf("%s, %s: %s %s %s (%v), want failed %s and a ledger error", mode, o.Key, out.Status, out.ErrorCode, out.Message, err, pipeline.CodeLedger)
			}
			if after := snap(t, f, o.Key); !bytes.Equal(after.body, before.body) || !maps.Equal(after.meta, before.meta) {
				t.Errorf("%s, %s: changed", mode, o.Key)
			}
			rec, err := f.ledger.Get(ctx, ledger.ObjectID{Bucket: f.bucket, Key: o.Key})
			if err != nil || rec.WrapKey != f.b.ID() {
				t.Errorf("%s, %s: the ledger's record says %q (%v), want the new key", mode, o.Key, rec.WrapKey, err)
			}
		}
	}
}

// TestRunReleasesTheClaimsItCouldNotRelease: a claim whose release fails
// (the ledger did not answer) is released again at the end of the run, so
// that a run retrying the objects the first reported does not find them
// claimed by a run that has ended ("ClaimedByAnotherRun" until the claim
// expired, found by the fault trials).
func TestRunReleasesTheClaimsItCouldNotRelease(t *testing.T) {
	f := newFixture(t, 2, false)
	c, _ := f.reencryptCore("run-wrong-key", nil, f.b) // the objects are under A
	var mu sync.Mutex
	failed := map[ledger.ObjectID]bool{}
	c.Ledger = failingLedger{Ledger: f.ledger, release: func(id ledger.ObjectID) bool {
		mu.Lock()
		defer mu.Unlock()
		first := !failed[id]
		failed[id] = true
		return first
	}}
	if rep, buf := f.run(t, c); rep.Counts()[pipeline.StatusSkipped] != 2 {
		t.Fatalf("run with the wrong --from key: %v\n%s", rep.Counts(), buf)
	}
	if len(failed) != 2 {
		t.Fatalf("%d releases failed, want 2", len(failed))
	}
	retry, _ := f.reencryptCore("run-retry", nil, f.a)
	for _, o := range f.objs {
		out, err := retry.Process(ctx, inventory.Item{Bucket: f.bucket, Key: o.Key})
		if err != nil || out.Status != pipeline.StatusSucceeded {
			t.Errorf("%s: the retrying run: %s %s %s (%v)", o.Key, out.Status, out.ErrorCode, out.Message, err)
		}
	}
}
