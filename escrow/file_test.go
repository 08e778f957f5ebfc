package escrow

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"testing"

	"github.com/rotator-dev/rotator/envelope"
)

// object returns an object envelope of format f whose data key is wrapped
// under a random AES key, with the data key.
func object(t *testing.T, f envelope.Format) (*envelope.Envelope, *envelope.DataKey, []byte) {
	t.Helper()
	dek, err := envelope.GenerateDataKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dek.Clear)
	env, ct, err := envelope.EncryptContent(f, dek, []byte("escrow test body"), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kek := make([]byte, 32)
	rand.Read(kek)
	w, err := envelope.WrapKeyAESGCM(kek, dek, env.CEKAlg, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	env, err = env.WithWrappedKey(w, envelope.WrapAESGCM, map[string]string{"team": "a"})
	if err != nil {
		t.Fatal(err)
	}
	return env, dek, ct
}

// rsaWrapping wraps dek under a fresh RSA key as the S3EC RSA keyring does.
func rsaWrapping(t *testing.T, dek *envelope.DataKey, cek envelope.ContentAlg) (Wrapping, *rsa.PrivateKey) {
	t.Helper()
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	w, err := envelope.WrapKeyRSAOAEP(&priv.PublicKey, dek, cek, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return Wrapping{Alg: envelope.WrapRSAOAEPSHA1, Key: w, MatDesc: map[string]string{"team": "a"}}, priv
}

// TestBodyIsJavaInstructionFile checks the key set of escrow files (the
// Java client's instruction files for each format) and that they parse back
// to the object's content with the escrow wrapping, whose data key opens
// the object.
func TestBodyIsJavaInstructionFile(t *testing.T) {
	for _, tc := range []struct {
		f    envelope.Format
		keys []string
	}{
		{envelope.V2, []string{"x-amz-cek-alg", "x-amz-iv", "x-amz-key-v2", "x-amz-matdesc", "x-amz-tag-len", "x-amz-wrap-alg"}},
		{envelope.V3, []string{"x-amz-3", "x-amz-m", "x-amz-w"}},
	} {
		t.Run(tc.f.String(), func(t *testing.T) {
			obj, dek, ct := object(t, tc.f)
			w, priv := rsaWrapping(t, dek, obj.CEKAlg)
			body, err := Body(obj, w)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]string
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatalf("body is not a JSON object of strings: %v\n%s", err, body)
			}
			if got := slices.Sorted(maps.Keys(m)); !slices.Equal(got, tc.keys) {
				t.Errorf("keys %v, want %v", got, tc.keys)
			}
			if bytes.ContainsAny(body, " \n") {
				t.Errorf("body has spaces or newlines: %s", body)
			}
			if tc.f == envelope.V2 && (m["x-amz-wrap-alg"] != "RSA-OAEP-SHA1" || m["x-amz-tag-len"] != "128" || m["x-amz-matdesc"] != `{"team":"a"}`) {
				t.Errorf("V2 escrow file %s", body)
			}
			if tc.f == envelope.V3 && (m["x-amz-w"] != "22" || m["x-amz-m"] != `{"team":"a"}`) {
				t.Errorf("V3 escrow file %s", body)
			}
			again, err := Body(obj, w)
			if err != nil || !bytes.Equal(again, body) {
				t.Errorf("Body is not deterministic: %s vs %s (%v)", body, again, err)
			}
			e, err := Parse(obj, body)
			if err != nil {
				t.Fatal(err)
			}
			if e.WrapAlg != envelope.WrapRSAOAEPSHA1 || !bytes.Equal(e.WrappedKey, w.Key) || !maps.Equal(e.MatDesc, w.MatDesc) {
				t.Errorf("parsed wrapping %s %x %v", e.WrapAlg, e.WrappedKey, e.MatDesc)
			}
			got, err := e.UnwrapRSAOAEP(priv)
			if err != nil {
				t.Fatal(err)
			}
			defer got.Clear()
			if !got.Equal(dek) {
				t.Fatal("escrowed data key differs")
			}
			// The escrow envelope decrypts the object's body.
			pt, err := envelope.DecryptContent(e, got, ct)
			if err != nil || string(pt) != "escrow test body" {
				t.Errorf("decrypt through the escrow envelope: %q %v", pt, err)
			}
			err = CheckKey(obj, got)
			switch tc.f {
			case envelope.V2:
				if !errors.Is(err, ErrNeedsBody) {
					t.Errorf("CheckKey V2: %v, want ErrNeedsBody", err)
				}
			case envelope.V3:
				if err != nil {
					t.Errorf("CheckKey V3 with the right key: %v", err)
				}
			}
		})
	}
}

// TestStaleEscrowDetected: an escrow file written for other content (the
// object re-encrypted under a fresh data key) is refused by Parse (V2: the
// IV differs) or by CheckKey (V3: the commitment differs).
func TestStaleEscrowDetected(t *testing.T) {
	for _, f := range []envelope.Format{envelope.V2, envelope.V3} {
		t.Run(f.String(), func(t *testing.T) {
			old, oldDEK, _ := object(t, f)
			w, priv := rsaWrapping(t, oldDEK, old.CEKAlg)
			body, err := Body(old, w)
			if err != nil {
				t.Fatal(err)
			}
			cur, _, _ := object(t, f) // re-encrypted: a fresh data key
			e, err := Parse(cur, body)
			if f == envelope.V2 {
				if !errors.Is(err, ErrMismatch) {
					t.Fatalf("Parse of a stale V2 escrow file: %v, want ErrMismatch", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse V3: %v", err)
			}
			dek, err := e.UnwrapRSAOAEP(priv)
			if err != nil {
				t.Fatal(err)
			}
			defer dek.Clear()
			if err := CheckKey(cur, dek); !errors.Is(err, ErrMismatch) {
				t.Errorf("CheckKey of a stale V3 escrow: %v, want ErrMismatch", err)
			}
		})
	}
}

func TestParseRefusesOtherContent(t *testing.T) {
	v2, dek2, _ := object(t, envelope.V2)
	v3, _, _ := object(t, envelope.V3)
	w, _ := rsaWrapping(t, dek2, v2.CEKAlg)
	b2, err := Body(v2, w)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(v3, b2); err == nil {
		t.Error("a V2 escrow file parsed for a V3 object")
	}
	for _, bad := range []string{"", "{}", "[]", `{"x-amz-key-v2":"AA=="}`, `{"x-amz-3":"AA==","x-amz-w":"02","x-amz-d":"AA=="}`} {
		if _, err := Parse(v2, []byte(bad)); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func TestCheckSuffix(t *testing.T) {
	if err := CheckSuffix(DefaultSuffix, ""); err != nil {
		t.Errorf("default suffix: %v", err)
	}
	for _, bad := range []string{"", ".instruction", "a/b", "x\n"} {
		if err := CheckSuffix(bad, ""); !errors.Is(err, ErrBadSuffix) {
			t.Errorf("CheckSuffix(%q): %v", bad, err)
		}
	}
	if err := CheckSuffix(".instruction", ".instr"); err != nil {
		t.Errorf(".instruction beside a custom instruction suffix: %v", err)
	}
	if Key("a/b", "") != "a/b.escrow.instruction" {
		t.Error(Key("a/b", ""))
	}
}

// FuzzParse: no escrow file body makes Parse panic, and whatever it accepts
// describes the object's content and writes back to a body that parses to
// the same wrapping.
func FuzzParse(f *testing.F) {
	for _, fm := range []envelope.Format{envelope.V2, envelope.V3} {
		obj, dek, _ := objectF(f, fm)
		w, err := envelope.WrapKeyAESGCM(make([]byte, 32), dek, obj.CEKAlg, rand.Reader)
		if err != nil {
			f.Fatal(err)
		}
		b, err := Body(obj, Wrapping{Alg: envelope.WrapAESGCM, Key: w, MatDesc: map[string]string{"a": "b"}})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(int(fm), b)
	}
	f.Add(2, []byte(`{"x-amz-key-v2":"","x-amz-iv":""}`))
	f.Add(3, []byte(`{"x-amz-3":"AAAA","x-amz-w":"12","x-amz-t":"{}"}`))
	objs := map[envelope.Format]*envelope.Envelope{}
	for _, fm := range []envelope.Format{envelope.V2, envelope.V3} {
		objs[fm], _, _ = objectF(f, fm)
	}
	f.Fuzz(func(t *testing.T, fm int, body []byte) {
		obj := objs[envelope.V2]
		if fm%2 == 1 {
			obj = objs[envelope.V3]
		}
		e, err := Parse(obj, body)
		if err != nil {
			return
		}
		if e.Format != obj.Format || e.CEKAlg != obj.CEKAlg {
			t.Fatalf("accepted %v %s for a %v %s object", e.Format, e.CEKAlg, obj.Format, obj.CEKAlg)
		}
		if e.WrapAlg.Legacy() {
			return // read only
		}
		b2, err := Body(obj, Wrapped(e))
		if err != nil {
			return
		}
		e2, err := Parse(obj, b2)
		if err != nil {
			t.Fatalf("a body Body wrote does not parse: %v\n%s", err, b2)
		}
		if !bytes.Equal(e2.WrappedKey, e.WrappedKey) || e2.WrapAlg != e.WrapAlg || !maps.Equal(e2.MatDesc, e.MatDesc) {
			t.Fatal("the wrapping changed through Body and Parse")
		}
	})
}

func objectF(f *testing.F, fm envelope.Format) (*envelope.Envelope, *envelope.DataKey, []byte) {
	dek, err := envelope.GenerateDataKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	env, ct, err := envelope.EncryptContent(fm, dek, []byte("x"), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	w, err := envelope.WrapKeyAESGCM(make([]byte, 32), dek, env.CEKAlg, rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	env, err = env.WithWrappedKey(w, envelope.WrapAESGCM, map[string]string{})
	if err != nil {
		f.Fatal(err)
	}
	return env, dek, ct
}
