package interop

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/aws/amazon-s3-encryption-client-go/v4/commitment"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/escrow"
	"github.com/rotator-dev/rotator/internal/hsmtest"
	"github.com/rotator-dev/rotator/internal/testenv"
	"github.com/rotator-dev/rotator/pipeline"
	"github.com/rotator-dev/rotator/rewrap"
)

// The proof of recovery escrow: objects written by the official Go clients
// under a KMS key are migrated to an HSM key by a run with --escrow; the
// HSM key is then destroyed (its object deleted from SoftHSM), every object
// is restored from its escrow file to a new KMS key, and the official
// clients open each one with its original plaintext. Before the loss, the
// official clients also read each escrow file as what it claims to be: an
// S3EC instruction file that opens the object with the escrow key alone.

// hsmOnlyKey generates a non-extractable AES-256 key on the stack's SoftHSM
// token: the HSM is its only holder. It returns the key spec a run takes
// and a function that destroys the key object.
func hsmOnlyKey(t *testing.T) (spec string, destroy func()) {
	t.Helper()
	spec, destroy = hsmtest.Key(t, "escrow-")
	u, err := rewrap.ParsePKCS11URI(spec)
	if err != nil {
		t.Fatal(err)
	}
	u.ModulePath, u.PINSource = os.Getenv(testenv.EnvPKCS11Module), "file:"+os.Getenv(testenv.EnvPKCS11PinFile)
	return u.String(), destroy
}

// escrowObject is an object written by an official client for the proof.
type escrowObject struct {
	key    string
	body   []byte
	format envelope.Format
}

// writeOfficial writes every body with both official clients under KMS key
// a with encryption context ec, in metadata and (moved there) in
// instruction files.
func writeOfficial(t *testing.T, st *stack, bucket, a string, ec map[string]string) []escrowObject {
	t.Helper()
	ctx := context.Background()
	writers := []struct {
		name   string
		format envelope.Format
		c      officialClient
	}{
		{"v3.2.0", envelope.V2, st.v3(t, a)},
		{"v4.0.0", envelope.V3, st.v4(t, a, commitment.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)},
	}
	var objs []escrowObject
	for _, w := range writers {
		for _, p := range []envelope.Placement{envelope.PlacementMetadata, envelope.PlacementInstructionFile} {
			for _, bname := range slices.Sorted(maps.Keys(bodies)) {
				key := fmt.Sprintf("%s/%v/%s", w.name, p, bname)
				if _, err := w.c.PutObject(withEC(ctx, ec), &s3.PutObjectInput{Bucket: &bucket, Key: &key,
					Body: bytes.NewReader(bodies[bname]), Metadata: map[string]string{"owner": "team-interop"}}); err != nil {
					t.Fatalf("official %s PutObject: %v", w.name, err)
				}
				if p == envelope.PlacementInstructionFile {
					st.intoInstructionFile(t, bucket, key)
				}
				objs = append(objs, escrowObject{key: key, body: bodies[bname], format: w.format})
			}
		}
	}
	return objs
}

// throughEscrowFile copies an object's content (with the V3 fields the
// object keeps, and no envelope) to a bucket of its own and its escrow
// file to KEY.instruction there, the one suffix the Go clients read: the
// official readers then open the object through the escrow file alone.
func throughEscrowFile(t *testing.T, st *stack, src, dst, key string, readers map[string]officialClient, ec map[string]string, want []byte) {
	t.Helper()
	ctx := context.Background()
	ct, meta, _ := st.raw(t, src, key)
	ebody, _, _ := st.raw(t, src, escrow.Key(key, ""))
	keep := map[string]string{}
	for _, f := range []string{envelope.FieldV3ContentAlg, envelope.FieldV3Commitment, envelope.FieldV3MessageID} {
		if v, ok := meta[f]; ok {
			keep[f] = v
		}
	}
	if _, err := st.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &dst, Key: &key, Body: bytes.NewReader(ct), Metadata: keep}); err != nil {
		t.Fatal(err)
	}
	ik := envelope.InstructionKey(key, "")
	if _, err := st.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &dst, Key: &ik, Body: bytes.NewReader(ebody),
		Metadata: envelope.InstructionObjectMetadata()}); err != nil {
		t.Fatal(err)
	}
	for _, rname := range slices.Sorted(maps.Keys(readers)) {
		got, err := getEC(readers[rname], dst, key, ec)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: official %s through the escrow file: %v (plaintext equal: %v)", key, rname, err, bytes.Equal(got, want))
		}
	}
}

// TestEscrowProofKMSToHSMWithKMSEscrow: KMS A -> HSM with --escrow on KMS
// key C; the HSM key destroyed; restore from C to KMS key D; the official
// clients open every object under D with the original plaintext.
func TestEscrowProofKMSToHSMWithKMSEscrow(t *testing.T) {
	st := newStack(t)
	bucket, oracle := st.bucket(t), st.bucket(t)
	a, c, d := st.key(t), st.key(t), st.key(t)
	ec := map[string]string{"department": "interop"}
	objs := writeOfficial(t, st, bucket, a, ec)
	hsmSpec, destroy := hsmOnlyKey(t)
	ledgerURL := filepath.Join(t.TempDir(), "ledger.db")

	cfg := pipeline.Config{Source: "s3://" + bucket, To: hsmSpec, From: []string{"kms:" + a}, Escrow: "kms:" + c,
		Ledger: ledgerURL, Concurrency: 4}
	stats, report := runPipeline(t, cfg, "to-hsm", nil)
	if stats.Succeeded.Load() != int64(len(objs)) || stats.Failed.Load() != 0 {
		t.Fatalf("KMS -> HSM with escrow: %v\n%s", stats.Counts(), report)
	}
	for _, o := range objs {
		// The escrow file is an S3EC instruction file the official clients
		// read with the escrow key alone.
		throughEscrowFile(t, st, bucket, oracle, o.key, st.readers(t, keys{kmsKey: c}, envelope.WrapKMSContext, o.format), ec, o.body)
		// Under the HSM key now: KMS key A no longer opens it.
		if _, err := get(st.v3(t, a), bucket, o.key); err == nil {
			t.Errorf("%s: still opens under KMS key A after the migration", o.key)
		}
	}

	destroy()
	if _, err := rewrap.ParseSpec(hsmSpec); err != nil {
		t.Fatal(err)
	}
	verify := pipeline.Config{Source: "s3://" + bucket, To: hsmSpec}
	if env, err := pipeline.Open(context.Background(), verify, pipeline.OpenOptions{NoLedger: true}); err == nil {
		env.Close()
		t.Fatal("the destroyed HSM key still opens")
	}

	restore := pipeline.Config{Source: "s3://" + bucket, To: "kms:" + d, Escrow: "kms:" + c, Mode: pipeline.ModeRestore,
		Ledger: ledgerURL, Concurrency: 4}
	stats, report = runPipeline(t, restore, "restore", nil)
	if stats.Succeeded.Load() != int64(len(objs)) || stats.Failed.Load() != 0 {
		t.Fatalf("restore from escrow: %v\n%s", stats.Counts(), report)
	}
	for _, o := range objs {
		for rname, r := range st.readers(t, keys{kmsKey: d}, envelope.WrapKMSContext, o.format) {
			for _, withEC := range []bool{false, true} {
				var got []byte
				var err error
				if withEC {
					got, err = getEC(r, bucket, o.key, ec)
				} else {
					got, err = get(r, bucket, o.key)
				}
				if err != nil || !bytes.Equal(got, o.body) {
					t.Errorf("%s: official %s under the restored key D (context %v): %v", o.key, rname, withEC, err)
				}
			}
		}
	}
}

// TestEscrowProofKMSToHSMWithRSAEscrow: the same with an RSA escrow key of
// which the run holds only the public key; the private key is loaded only
// for the restore.
func TestEscrowProofKMSToHSMWithRSAEscrow(t *testing.T) {
	st := newStack(t)
	bucket, oracle := st.bucket(t), st.bucket(t)
	a, d := st.key(t), st.key(t)
	ec := map[string]string{"department": "interop"}
	objs := writeOfficial(t, st, bucket, a, ec)
	hsmSpec, destroy := hsmOnlyKey(t)
	ledgerURL := filepath.Join(t.TempDir(), "ledger.db")

	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pubDER, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubFile, privFile := filepath.Join(dir, "escrow.pub.pem"), filepath.Join(dir, "escrow.pem")
	if err := os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o600); err != nil {
		t.Fatal(err)
	}

	cfg := pipeline.Config{Source: "s3://" + bucket, To: hsmSpec, From: []string{"kms:" + a}, Escrow: "rsa:" + pubFile,
		Ledger: ledgerURL, Concurrency: 4}
	stats, report := runPipeline(t, cfg, "to-hsm", nil)
	if stats.Succeeded.Load() != int64(len(objs)) || stats.Failed.Load() != 0 {
		t.Fatalf("KMS -> HSM with RSA escrow: %v\n%s", stats.Counts(), report)
	}
	for _, o := range objs {
		throughEscrowFile(t, st, bucket, oracle, o.key, st.readers(t, keys{rsa: priv}, envelope.WrapRSAOAEPSHA1, o.format), ec, o.body)
	}

	destroy()
	// The private key exists only from here on, for the restore.
	if err := os.WriteFile(privFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(priv)}), 0o600); err != nil {
		t.Fatal(err)
	}
	restore := pipeline.Config{Source: "s3://" + bucket, To: "kms:" + d, Escrow: "rsa:" + privFile, Mode: pipeline.ModeRestore,
		Ledger: ledgerURL, Concurrency: 4}
	stats, report = runPipeline(t, restore, "restore", nil)
	if stats.Succeeded.Load() != int64(len(objs)) || stats.Failed.Load() != 0 {
		t.Fatalf("restore from the RSA escrow: %v\n%s", stats.Counts(), report)
	}
	for _, o := range objs {
		for rname, r := range st.readers(t, keys{kmsKey: d}, envelope.WrapKMSContext, o.format) {
			got, err := getEC(r, bucket, o.key, ec)
			if err != nil || !bytes.Equal(got, o.body) {
				t.Errorf("%s: official %s under the restored key D: %v", o.key, rname, err)
			}
		}
	}
}
