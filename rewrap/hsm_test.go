package rewrap

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/miekg/pkcs11"

	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/hsmpool"
	"github.com/rotator-dev/rotator/internal/testenv"
	"github.com/rotator-dev/rotator/kmsserver"
)

// pinFile writes a PIN to a file and returns its PIN source.
func pinFile(t *testing.T, pin string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(f, []byte(pin+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return "file:" + f
}

func TestHSMOpen(t *testing.T) {
	ctx := t.Context()
	const wrongPIN = "wrong-pin-4711"
	t.Run("wrong PIN", func(t *testing.T) {
		// No pool of the process is logged in: the token itself refuses.
		d := newDeps(t, aws.Config{}, func(d *Deps) { hsmDeps(t, d); d.PKCS11PINSource = pinFile(t, wrongPIN) })
		_, err := Open(ctx, mustSpec(t, hsmSpec("any")), d)
		wantError(t, err, "hsm open", CodeLogin, true, "PIN")
		if strings.Contains(err.Error(), wrongPIN) {
			t.Errorf("the error shows the PIN: %v", err)
		}
		if !errors.Is(err, hsmpool.ErrLogin) {
			t.Errorf("%v does not wrap hsmpool.ErrLogin", err)
		}
	})

	d := newDeps(t, aws.Config{}, func(d *Deps) { hsmDeps(t, d) })
	spec, _ := hsmKey(t, d, "k")
	label := spec[strings.LastIndex(spec, "=")+1:]
	token := os.Getenv(testenv.EnvPKCS11Token)
	full := spec + "?module-path=" + os.Getenv(testenv.EnvPKCS11Module) + "&pin-source=file:" + os.Getenv(testenv.EnvPKCS11PinFile)
	for _, s := range []string{spec, full, "pkcs11:object=" + label + ";token=" + token + ";type=secret-key"} {
		k := mustOpen(t, d, s)
		if want := "pkcs11:token=" + token + ";object=" + label; k.ID() != want || k.Kind() != KindPKCS11 {
			t.Errorf("Open(%s).ID() = %s, want %s", s, k.ID(), want)
		}
	}
	if pools := d.HSMPools(); len(pools) != 1 || pools[0].TokenLabel() != token {
		t.Errorf("%d pools for one module and token, want 1 (shared) on token %s", len(pools), token)
	}

	t.Run("wrong PIN while logged in", func(t *testing.T) {
		d2 := newDeps(t, aws.Config{}, func(d *Deps) { hsmDeps(t, d); d.PKCS11PINSource = pinFile(t, wrongPIN) })
		_, err := Open(ctx, mustSpec(t, spec), d2)
		wantError(t, err, "hsm open", CodeLogin, true, "PIN")
	})
	t.Run("missing object", func(t *testing.T) {
		_, err := Open(ctx, mustSpec(t, hsmSpec("rewrap-no-such-key")), d)
		e := wantError(t, err, "hsm find key", CodeKeyNotFound, true, "object= label")
		if !errors.Is(err, hsmpool.ErrKeyNotFound) || e.Key != "pkcs11:token="+token+";object=rewrap-no-such-key" {
			t.Errorf("%v (key %s)", err, e.Key)
		}
	})
	t.Run("unsupported attributes", func(t *testing.T) {
		for _, s := range []string{
			"pkcs11:serial=0123;object=" + label,
			"pkcs11:token=" + token + ";object=" + label + ";id=%01",
		} {
			_, err := Open(ctx, mustSpec(t, s), d)
			wantError(t, err, "open", CodeUnsupported, true, "")
		}
	})
	t.Run("no module", func(t *testing.T) {
		t.Setenv(EnvPKCS11Module, "")
		_, err := Open(ctx, mustSpec(t, hsmSpec(label)), &Deps{PKCS11PINSource: "env:X"})
		wantError(t, err, "open", CodeConfig, true, EnvPKCS11Module)
	})
}

func TestHSMErrors(t *testing.T) {
	ctx := t.Context()
	d := newDeps(t, aws.Config{}, func(d *Deps) { hsmDeps(t, d) })
	specA, _ := hsmKey(t, d, "a")
	specB, _ := hsmKey(t, d, "b")
	a, b := mustOpen(t, d, specA), mustOpen(t, d, specB)
	pa, _ := writeAESKey(t)
	local := mustOpen(t, d, "aes:"+pa)
	dek := newDEK(t)
	w, err := a.Wrap(ctx, dek, envelope.ContentAESGCM, map[string]string{"tenant": "t-1"})
	if err != nil {
		t.Fatal(err)
	}
	// The material description is the user entries only: the official
	// clients compare a reader's encryption context with all of it.
	if len(w.Key) != envelope.AESGCMWrappedSize || len(w.MatDesc) != 1 || w.MatDesc["tenant"] != "t-1" {
		t.Fatalf("HSM wrapping %d bytes, %v", len(w.Key), w.MatDesc)
	}
	// Objects migrated by earlier versions name the HSM key.
	named := w
	named.MatDesc = map[string]string{"tenant": "t-1", MatDescKEK: a.ID()}

	t.Run("recognize", func(t *testing.T) {
		if m := Classify(a, named); m != MatchYes {
			t.Errorf("own key named: %v", m)
		}
		if m := Classify(b, named); m != MatchNo {
			t.Errorf("other HSM key named: %v", m)
		}
		if m := Classify(b, w); m != MatchUnknown {
			t.Errorf("no %s entry: %v", MatDescKEK, m)
		}
		if _, err := b.Unwrap(ctx, w, envelope.ContentAESGCM); err == nil {
			t.Error("another HSM key unwrapped it")
		}
		if dk, err := a.Unwrap(ctx, w, envelope.ContentAESGCM); err != nil || !dk.Equal(dek) {
			t.Errorf("trial unwrap with the right key: %v", err)
		}
		if m := Classify(a, Wrapped{Alg: envelope.WrapKMSContext, Key: []byte("x")}); m != MatchNo {
			t.Errorf("KMS blob: %v", m)
		}
	})
	t.Run("legacy entry dropped", func(t *testing.T) {
		// A rewrap of an object that names its HSM key (to the same key
		// or another) stores the user entries only.
		for _, to := range []Keyring{a, b, local} {
			res, err := Rewrap(ctx, a, to, named, envelope.ContentAESGCM)
			if err != nil {
				t.Fatalf("to %s: %v", to.ID(), err)
			}
			if len(res.MatDesc) != 1 || res.MatDesc["tenant"] != "t-1" {
				t.Errorf("to %s: material description %v, want the user entries only", to.ID(), res.MatDesc)
			}
			if dk, err := to.Unwrap(ctx, res.Wrapped, envelope.ContentAESGCM); err != nil || !dk.Equal(dek) {
				t.Errorf("to %s: unwrap: %v", to.ID(), err)
			}
		}
	})
	t.Run("named another key", func(t *testing.T) {
		_, err := Rewrap(ctx, b, local, named, envelope.ContentAESGCM)
		wantError(t, err, "hsm unwrap", CodeNotFromKey, false, "--from")
	})
	t.Run("wrong key", func(t *testing.T) {
		anon := w
		anon.MatDesc = UserEntries(w.MatDesc)
		_, err := Rewrap(ctx, b, local, anon, envelope.ContentAESGCM)
		wantError(t, err, "hsm decrypt", CodeAuthentication, false, "another key")
	})
	t.Run("altered", func(t *testing.T) {
		alt := w
		alt.Key = append([]byte(nil), w.Key...)
		alt.Key[20] ^= 1
		_, err := Rewrap(ctx, a, local, alt, envelope.ContentAESGCM)
		wantError(t, err, "hsm decrypt", CodeAuthentication, false, "altered")
	})
	t.Run("content algorithm binding", func(t *testing.T) {
		_, err := Rewrap(ctx, a, local, w, envelope.ContentCommitKey)
		wantError(t, err, "hsm decrypt", CodeAlgorithmMismatch, false, "altered")
	})
	t.Run("key destroyed after open", func(t *testing.T) {
		specC, _ := hsmKey(t, d, "c")
		c := mustOpen(t, d, specC)
		wc, err := c.Wrap(ctx, dek, envelope.ContentAESGCM, nil)
		if err != nil {
			t.Fatal(err)
		}
		destroyHSMKey(t, testPool(t, d), specC[strings.LastIndex(specC, "=")+1:])
		// As destination: every object would fail.
		wl, _ := local.Wrap(ctx, dek, envelope.ContentAESGCM, nil)
		_, err = Rewrap(ctx, local, c, wl, envelope.ContentAESGCM)
		wantError(t, err, "hsm encrypt", CodeKeyNotFound, true, "object= label")
		// As source: this object fails.
		_, err = Rewrap(ctx, c, local, wc, envelope.ContentAESGCM)
		wantError(t, err, "hsm decrypt", CodeKeyNotFound, false, "")
	})
	t.Run("V3", func(t *testing.T) {
		w3, err := a.Wrap(ctx, dek, envelope.ContentCommitKey, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := Rewrap(ctx, a, b, w3, envelope.ContentCommitKey)
		if err != nil {
			t.Fatal(err)
		}
		if _, has := res.MatDesc[MatDescKEK]; res.Method != "hsm-unwrap+hsm-wrap" || has {
			t.Errorf("%+v %v", res.Lineage, res.MatDesc)
		}
		if _, err := b.Unwrap(ctx, res.Wrapped, envelope.ContentAESGCM); err == nil {
			t.Error("a V3-bound HSM wrapping opened with the V2 binding")
		}
	})
}

// TestHSMKeyWrapPad: a key-wrap mechanism is refused for wrapping, with a
// clear systemic error: no S3EC envelope can store its output. Keys wrapped
// with it elsewhere are still read.
func TestHSMKeyWrapPad(t *testing.T) {
	ctx := t.Context()
	d := newDeps(t, aws.Config{}, func(d *Deps) { hsmDeps(t, d); d.PKCS11Mechanism = pkcs11.CKM_AES_KEY_WRAP_PAD })
	spec, _ := hsmKey(t, d, "kwp")
	k := mustOpen(t, d, spec)
	pa, _ := writeAESKey(t)
	local := mustOpen(t, d, "aes:"+pa)
	dek := newDEK(t)
	wl, err := local.Wrap(ctx, dek, envelope.ContentAESGCM, map[string]string{"tenant": "t-1"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Rewrap(ctx, local, k, wl, envelope.ContentAESGCM)
	e := wantError(t, err, "hsm wrap", CodeUnsupported, true, "CKM_AES_GCM")
	if !strings.Contains(err.Error(), "CKM_AES_KEY_WRAP_PAD") || e.Key != k.ID() {
		t.Errorf("the error names neither the mechanism nor the key: %v (key %q)", err, e.Key)
	}
	_, err = k.Wrap(ctx, dek, envelope.ContentAESGCM, nil)
	wantError(t, err, "hsm wrap", CodeUnsupported, true, "CKM_AES_GCM")

	// A key wrapped with the mechanism by another tool (or an earlier
	// version) is recognised and unwrapped.
	label := spec[strings.LastIndex(spec, "=")+1:]
	var blob []byte
	if err := testPool(t, d).Do(ctx, func(s *hsmpool.Session) error {
		var err error
		blob, err = s.WrapDataKey(label, dek.Bytes(), nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	kw := Wrapped{Alg: WrapPKCS11KeyWrap, Key: blob, MatDesc: map[string]string{
		"tenant": "t-1", MatDescKEK: k.ID(), MatDescKEKMechanism: "CKM_AES_KEY_WRAP_PAD"}}
	if m := Classify(k, kw); m != MatchYes {
		t.Errorf("Classify of a key-wrap wrapping naming the key: %v", m)
	}
	other := kw
	other.MatDesc = map[string]string{MatDescKEK: k.ID(), MatDescKEKMechanism: "CKM_AES_KEY_WRAP"}
	if m := Classify(k, other); m != MatchNo {
		t.Errorf("Classify of a wrapping with another mechanism: %v", m)
	}
	res, err := Rewrap(ctx, k, local, kw, envelope.ContentAESGCM)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.MatDesc) != 1 || res.MatDesc["tenant"] != "t-1" || res.Method != "hsm-unwrap+aes-wrap" {
		t.Errorf("out of key wrap: %v %+v", res.MatDesc, res.Lineage)
	}
	if got, err := local.Unwrap(ctx, res.Wrapped, envelope.ContentAESGCM); err != nil || !got.Equal(dek) {
		t.Errorf("out of key wrap: %v", err)
	}
}

// TestConcurrentHSMAndKMS runs many goroutines through one HSM pool and one
// KMS keyring (run it with -race).
func TestConcurrentHSMAndKMS(t *testing.T) {
	env := inProcessKMS(t, kmsserver.Options{})
	d := newDeps(t, env.cfg, func(d *Deps) { hsmDeps(t, d); d.PKCS11PoolSize = 4 })
	arn := env.createKey(t, nil, "race")
	k := mustOpen(t, d, "kms:"+arn)
	spec, value := hsmKey(t, d, "race")
	h := mustOpen(t, d, spec)
	ctx := t.Context()

	const workers, each = 24, 8
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			for j := range each {
				cek := envelope.ContentAESGCM
				if (i+j)%2 == 1 {
					cek = envelope.ContentCommitKey
				}
				dek, err := envelope.GenerateDataKey(rand.Reader)
				if err != nil {
					t.Error(err)
					return
				}
				defer dek.Clear()
				user := map[string]string{"worker": fmt.Sprint(i)}
				w, err := k.Wrap(ctx, dek, cek, user)
				if err != nil {
					t.Error(err)
					return
				}
				toHSM, err := Rewrap(ctx, k, h, w, cek)
				if err != nil {
					t.Error(err)
					return
				}
				got, err := envelope.UnwrapKeyAESGCM(value, toHSM.Key, cek)
				if err != nil || !got.Equal(dek) {
					t.Errorf("KMS to HSM: %v", err)
					return
				}
				got.Clear()
				toKMS, err := Rewrap(ctx, h, k, toHSM.Wrapped, cek)
				if err != nil {
					t.Error(err)
					return
				}
				if toKMS.MatDesc["worker"] != fmt.Sprint(i) || toKMS.Method != "hsm-unwrap+kms-encrypt" {
					t.Errorf("HSM to KMS: %v %+v", toKMS.MatDesc, toKMS.Lineage)
				}
				back, err := k.Unwrap(ctx, toKMS.Wrapped, cek)
				if err != nil || !back.Equal(dek) {
					t.Errorf("back in KMS: %v", err)
					return
				}
				back.Clear()
			}
		})
	}
	wg.Wait()
	st := testPool(t, d).Stats()
	if st.Timeouts != 0 || st.Open > 4 {
		t.Errorf("pool stats %+v", st)
	}
	t.Logf("pool: %+v", st)
}
