package pipeline_test

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/rotator-dev/rotator/hsmpool"
	"github.com/rotator-dev/rotator/internal/testenv"
	"github.com/rotator-dev/rotator/pipeline"
	"github.com/rotator-dev/rotator/rewrap"
)

// newHSMKey creates an AES-256 key on the stack's SoftHSM token and returns
// its keyring, opened through the fixture's Deps.
func newHSMKey(t *testing.T, f *fixture) rewrap.Keyring {
	t.Helper()
	testenv.Need(t, testenv.PKCS11)
	module, token, pinFile := os.Getenv(testenv.EnvPKCS11Module), os.Getenv(testenv.EnvPKCS11Token), os.Getenv(testenv.EnvPKCS11PinFile)
	pin, err := hsmpool.ReadPIN("file:" + pinFile)
	if err != nil {
		t.Fatal(err)
	}
	p, err := hsmpool.Open(ctx, hsmpool.Config{ModulePath: module, TokenLabel: token, PIN: pin, Size: 1})
	if err != nil {
		t.Fatal(err)
	}
	label := "pipeline-" + testenv.Name(t)
	if err := p.Do(ctx, func(s *hsmpool.Session) error { return s.GenerateAESKey(label, false) }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.Do(ctx, func(s *hsmpool.Session) error { return s.DestroyKey(label) })
		p.Close()
	})
	f.deps.PKCS11Module, f.deps.PKCS11PINSource = module, "file:"+pinFile
	return openKey(t, f.deps, "pkcs11:token="+token+";object="+label)
}

// TestRunMigratesToHSMAndBack: KMS A -> HSM (no key named in the material
// description, so readers that pass an encryption context still work),
// a second run is a no-op, then HSM -> KMS B.
func TestRunMigratesToHSMAndBack(t *testing.T) {
	f := newFixture(t, 8, false)
	hsm := newHSMKey(t, f)
	c := f.core("to-hsm")
	c.To, c.From = hsm, []rewrap.Keyring{f.a}
	rep, buf := f.run(t, c)
	if rep.Counts()[pipeline.StatusSucceeded] != 8 {
		t.Fatalf("to the HSM: %v\n%s", rep.Counts(), buf)
	}
	for _, o := range f.objs {
		got := f.decrypt(t, o.Key, hsm)
		if string(got) != string(f.plain[o.Key]) {
			t.Errorf("%s: plaintext differs under the HSM key", o.Key)
		}
	}
	// The stored material description is the user entries only.
	for _, o := range f.objs[:1] {
		out := headMeta(t, f, o.Key)
		if md, ok := out["x-amz-matdesc"]; ok {
			var m map[string]string
			if err := json.Unmarshal([]byte(md), &m); err != nil || m[rewrap.MatDescKEK] != "" {
				t.Errorf("%s: material description %s", o.Key, md)
			}
		}
	}
	// Again: the ledger knows every object is under the HSM key.
	c2 := f.core("to-hsm-again")
	c2.To = hsm
	if rep, buf := f.run(t, c2); rep.Counts()[pipeline.StatusSucceeded] != 0 {
		t.Errorf("second run: %v\n%s", rep.Counts(), buf)
	}
	// Back to KMS key B, finding the HSM key by a trial unwrap (a fresh
	// ledger knows nothing).
	f.ledger = freshLedger(t)
	c3 := f.core("to-kms")
	c3.To, c3.From = f.b, []rewrap.Keyring{hsm}
	if rep, buf := f.run(t, c3); rep.Counts()[pipeline.StatusSucceeded] != 8 {
		t.Fatalf("back to KMS: %v\n%s", rep.Counts(), buf)
	}
	for _, o := range f.objs {
		if got := f.decrypt(t, o.Key, f.b); string(got) != string(f.plain[o.Key]) {
			t.Errorf("%s: plaintext differs under key B", o.Key)
		}
	}
}
