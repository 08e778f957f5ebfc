package hsmpool

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
	"github.com/rotator-dev/rotator/internal/testenv"
)

func TestGCMMatchesGo(t *testing.T) {
	p := openPool(t, nil)
	label := newKey(t, p, true)
	key := keyValue(t, p, label)
	if len(key) != AESKeySize {
		t.Fatalf("key is %d bytes, want %d", len(key), AESKeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, n := range []int{0, 1, 15, 16, 17, 32, 1000, 1 << 16} {
		for _, aad := range [][]byte{nil, []byte("bucket/key@v1")} {
			t.Run(fmt.Sprintf("len=%d/aad=%d", n, len(aad)), func(t *testing.T) {
				msg := make([]byte, n)
				rand.Read(msg)
				iv := make([]byte, GCMIVSize)
				rand.Read(iv)
				want := aead.Seal(nil, iv, msg, aad)
				err := p.Do(ctx, func(s *Session) error {
					ivOut, ct, err := s.EncryptGCM(label, iv, msg, aad)
					if err != nil {
						return err
					}
					if !bytes.Equal(ivOut, iv) {
						t.Errorf("SoftHSM used IV %x, want the caller's %x", ivOut, iv)
					}
					if !bytes.Equal(ct, want) {
						t.Errorf("HSM ciphertext differs from crypto/cipher's:\n got %x\nwant %x", ct, want)
					}
					pt, err := s.DecryptGCM(label, iv, want, aad)
					if err != nil {
						return err
					}
					if !bytes.Equal(pt, msg) {
						t.Errorf("HSM decryption of crypto/cipher's ciphertext differs")
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			})
		}
	}

	t.Run("random IV", func(t *testing.T) {
		seen := map[string]bool{}
		err := p.Do(ctx, func(s *Session) error {
			for range 4 {
				iv, ct, err := s.EncryptGCM(label, nil, []byte("data key"), nil)
				if err != nil {
					return err
				}
				if len(iv) != GCMIVSize || seen[string(iv)] {
					t.Errorf("IV %x: wrong size or repeated", iv)
				}
				seen[string(iv)] = true
				if pt, err := aead.Open(nil, iv, ct, nil); err != nil || string(pt) != "data key" {
					t.Errorf("crypto/cipher cannot open the HSM's ciphertext: %v", err)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("bad IV sizes", func(t *testing.T) {
		err := p.Do(ctx, func(s *Session) error {
			for _, iv := range [][]byte{{}, make([]byte, 11), make([]byte, 16)} {
				if _, _, err := s.EncryptGCM(label, iv, []byte("x"), nil); err == nil || !strings.Contains(err.Error(), "want 12") {
					t.Errorf("EncryptGCM with a %d-byte IV: %v", len(iv), err)
				}
				if _, err := s.DecryptGCM(label, iv, make([]byte, 32), nil); err == nil || !strings.Contains(err.Error(), "want 12") {
					t.Errorf("DecryptGCM with a %d-byte IV: %v", len(iv), err)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

func TestGCMAuthentication(t *testing.T) {
	p := openPool(t, nil)
	label := newKey(t, p, false)
	ctx := t.Context()
	msg, aad := []byte("a 32-byte data key, more or less"), []byte("ctx")
	var iv, ct []byte
	err := p.Do(ctx, func(s *Session) (err error) {
		iv, ct, err = s.EncryptGCM(label, nil, msg, aad)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	flip := func(b []byte, i int) []byte {
		b = bytes.Clone(b)
		b[i] ^= 1
		return b
	}
	other := newKey(t, p, false)
	before := p.Stats()
	for _, tc := range []struct {
		name          string
		key           string
		iv, ct, aad   []byte
		wantInMessage string
	}{
		{"tag", label, iv, flip(ct, len(ct)-1), aad, "authentication failed"},
		{"ciphertext", label, iv, flip(ct, 0), aad, "authentication failed"},
		{"aad", label, iv, ct, []byte("other"), "authentication failed"},
		{"no aad", label, iv, ct, nil, "authentication failed"},
		{"iv", label, flip(iv, 3), ct, aad, "authentication failed"},
		{"key", other, iv, ct, aad, "authentication failed"},
		{"truncated", label, iv, ct[:GCMTagSize-1], aad, "shorter than the 16-byte tag"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := p.Do(ctx, func(s *Session) error {
				_, err := s.DecryptGCM(tc.key, tc.iv, tc.ct, tc.aad)
				return err
			})
			if !errors.Is(err, ErrAuthentication) || !strings.Contains(err.Error(), tc.wantInMessage) {
				t.Fatalf("got %v, want ErrAuthentication (%q)", err, tc.wantInMessage)
			}
			if tc.name == "tag" {
				var code pkcs11.Error
				if !errors.As(err, &code) || code != pkcs11.CKR_GENERAL_ERROR {
					t.Errorf("%v does not carry SoftHSM's CKR_GENERAL_ERROR", err)
				}
				if !strings.Contains(err.Error(), `token "`+p.TokenLabel()+`"`) || !strings.Contains(err.Error(), label) {
					t.Errorf("%v does not name token and key", err)
				}
			}
		})
	}
	// A failed tag says nothing about the HSM: the session stays, and the
	// error counter ignores it.
	if err := roundTrip(ctx, p, label, msg); err != nil {
		t.Fatal(err)
	}
	after := p.Stats()
	if after.Discards != before.Discards || after.Errors != before.Errors || after.Open != 1 {
		t.Errorf("stats moved on authentication failures: before %+v after %+v", before, after)
	}
}

func TestKeyNotFound(t *testing.T) {
	p := openPool(t, nil)
	label := "hsmpool-no-such-key-" + testenv.Name(t)
	err := p.Do(t.Context(), func(s *Session) error {
		_, _, err := s.EncryptGCM(label, nil, []byte("x"), nil)
		return err
	})
	if !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("got %v, want ErrKeyNotFound", err)
	}
	want := fmt.Sprintf(`hsmpool: token %q: no secret key labelled %q (hint: create it with`, p.TokenLabel(), label)
	if !strings.HasPrefix(err.Error(), want) || !strings.HasSuffix(err.Error(), "or check the label)") {
		t.Errorf("message %q\nwant it to start with %q", err, want)
	}
	for _, op := range []func(*Session) error{
		func(s *Session) error { _, err := s.FindKey(label); return err },
		func(s *Session) error {
			_, err := s.DecryptGCM(label, make([]byte, 12), make([]byte, 32), nil)
			return err
		},
		func(s *Session) error { _, err := s.WrapKeyPad(label, make([]byte, 32)); return err },
		func(s *Session) error { _, err := s.UnwrapKeyPad(label, make([]byte, 40)); return err },
		func(s *Session) error { return s.DestroyKey(label) },
	} {
		if err := p.Do(t.Context(), op); !errors.Is(err, ErrKeyNotFound) {
			t.Errorf("got %v, want ErrKeyNotFound", err)
		}
	}
	if st := p.Stats(); st.Discards != 0 {
		t.Errorf("a missing key discarded sessions: %+v", st)
	}
}

func TestGenerateAndDestroyKey(t *testing.T) {
	p := openPool(t, func(c *Config) { c.Size = 2 })
	label := newKey(t, p, false)
	ctx := t.Context()
	err := p.Do(ctx, func(s *Session) error { return s.GenerateAESKey(label, false) })
	if !errors.Is(err, ErrKeyExists) {
		t.Errorf("second GenerateAESKey: %v, want ErrKeyExists", err)
	}
	// A non-extractable key keeps its value inside the HSM.
	err = p.Do(ctx, func(s *Session) error {
		k, err := s.FindKey(label)
		if err != nil {
			return err
		}
		_, err = p.mod.ctx.GetAttributeValue(s.c.h, k, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
		if !hasCode(err, pkcs11.CKR_ATTRIBUTE_SENSITIVE) {
			t.Errorf("reading CKA_VALUE of a non-extractable key: %v, want CKR_ATTRIBUTE_SENSITIVE", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Session a caches the key handle; session b destroys the key; a must
	// not keep using its cached handle.
	a, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release()
	if err := sessionRoundTrip(a, label, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := p.Do(ctx, func(b *Session) error { return b.DestroyKey(label) }); err != nil {
		t.Fatal(err)
	}
	if err := sessionRoundTrip(a, label, []byte("x")); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("after DestroyKey: %v, want ErrKeyNotFound", err)
	}
	a.Release()
	a.Release() // a second Release does nothing
	if _, _, err := a.EncryptGCM(label, nil, nil, nil); !errors.Is(err, errReleased) {
		t.Errorf("use after Release: %v", err)
	}
	if st := p.Stats(); st.InUse != 0 {
		t.Errorf("InUse = %d after releasing everything", st.InUse)
	}
}

func TestWrapKeyPad(t *testing.T) {
	p := openPool(t, nil)
	ctx := t.Context()
	// The RFC 5649 section 6 test vectors (192-bit KEK), whose keys are 20
	// and 7 bytes long, and a 32-byte data key.
	kek, _ := hex.DecodeString("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8")
	label := importKey(t, p, kek)
	dk32 := make([]byte, 32)
	rand.Read(dk32)
	info, err := p.mod.ctx.GetInfo()
	if err != nil {
		t.Fatal(err)
	}
	softHSM := strings.Contains(info.ManufacturerID, "SoftHSM")
	for _, v := range []struct{ key, wrapped string }{
		{"c37b7e6492584340bed12207808941155068f738", "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a"},
		{"466f7250617369", "afbeb0f07dfbf5419200f2ccb50bb24f"},
		{hex.EncodeToString(dk32), hex.EncodeToString(kwp(t, kek, dk32))},
	} {
		key, _ := hex.DecodeString(v.key)
		if got := hex.EncodeToString(kwp(t, kek, key)); got != v.wrapped {
			t.Fatalf("the test's own RFC 5649 wrap is wrong: %s, want %s", got, v.wrapped)
		}
		want, wantBack := v.wrapped, key
		if softHSM && len(key)%8 != 0 {
			// SoftHSM 2.6 zero-pads the key to a multiple of 8 bytes
			// before wrapping, so the length it encodes (and unwraps to)
			// is the padded one: not RFC 5649 for such lengths. Data keys
			// (16, 24, 32 bytes) are not affected. Pin the quirk, so that
			// a fixed SoftHSM shows up here.
			wantBack = append(bytes.Clone(key), make([]byte, 8-len(key)%8)...)
			want = hex.EncodeToString(kwp(t, kek, wantBack))
		}
		err := p.Do(ctx, func(s *Session) error {
			w, err := s.WrapKeyPad(label, key)
			if err != nil {
				return err
			}
			if got := hex.EncodeToString(w); got != want {
				t.Errorf("WrapKeyPad(%d bytes) = %s, want %s", len(key), got, want)
			}
			back, err := s.UnwrapKeyPad(label, w)
			if err != nil {
				return err
			}
			if !bytes.Equal(back, wantBack) {
				t.Errorf("UnwrapKeyPad = %x, want %x", back, wantBack)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	label = newKey(t, p, false)
	dk := make([]byte, 32)
	rand.Read(dk)
	err = p.Do(ctx, func(s *Session) error {
		w, err := s.WrapKeyPad(label, dk)
		if err != nil {
			return err
		}
		if len(w) != 40 {
			t.Errorf("a 32-byte key wrapped to %d bytes, want 40", len(w))
		}
		if _, err := s.UnwrapKeyPad(label, append(bytes.Clone(w[:39]), w[39]^1)); !errors.Is(err, ErrAuthentication) {
			t.Errorf("unwrap of a tampered key: %v, want ErrAuthentication", err)
		}
		if _, err := s.WrapKeyPad(label, nil); err == nil {
			t.Error("WrapKeyPad accepted an empty key")
		}
		back, err := s.UnwrapKeyPad(label, w)
		if err != nil {
			return err
		}
		if !bytes.Equal(back, dk) {
			t.Error("round trip changed the key")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The imported and unwrapped session objects are gone again.
	err = p.Do(ctx, func(s *Session) error {
		if err := p.mod.ctx.FindObjectsInit(s.c.h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false)}); err != nil {
			return err
		}
		objs, _, err := p.mod.ctx.FindObjects(s.c.h, 10)
		_ = p.mod.ctx.FindObjectsFinal(s.c.h)
		if len(objs) != 0 {
			t.Errorf("%d session objects left behind", len(objs))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestWrapDataKey(t *testing.T) {
	for _, mech := range []uint{pkcs11.CKM_AES_GCM, pkcs11.CKM_AES_KEY_WRAP_PAD, pkcs11.CKM_AES_KEY_WRAP} {
		t.Run(mechanismName(mech), func(t *testing.T) {
			p := openPool(t, func(c *Config) { c.Mechanism = mech })
			label := newKey(t, p, false)
			dk := make([]byte, 32)
			rand.Read(dk)
			aad := []byte("s3://bucket/key")
			if mech != pkcs11.CKM_AES_GCM {
				aad = nil
			}
			err := p.Do(t.Context(), func(s *Session) error {
				blob, err := s.WrapDataKey(label, dk, aad)
				if err != nil {
					return err
				}
				want := map[uint]int{pkcs11.CKM_AES_GCM: 60, pkcs11.CKM_AES_KEY_WRAP_PAD: 40, pkcs11.CKM_AES_KEY_WRAP: 40}[mech]
				if len(blob) != want {
					t.Errorf("blob is %d bytes, want %d", len(blob), want)
				}
				back, err := s.UnwrapDataKey(label, blob, aad)
				if err != nil {
					return err
				}
				if !bytes.Equal(back, dk) {
					t.Error("round trip changed the key")
				}
				if mech == pkcs11.CKM_AES_GCM {
					if _, err := s.UnwrapDataKey(label, blob, []byte("s3://bucket/other")); !errors.Is(err, ErrAuthentication) {
						t.Errorf("unwrap with other aad: %v, want ErrAuthentication", err)
					}
					if _, err := s.UnwrapDataKey(label, blob[:20], aad); !errors.Is(err, ErrAuthentication) {
						t.Errorf("unwrap of a short blob: %v, want ErrAuthentication", err)
					}
				} else if _, err := s.WrapDataKey(label, dk, []byte("x")); err == nil || !strings.Contains(err.Error(), "cannot bind additional data") {
					t.Errorf("WrapDataKey with aad under %s: %v", mechanismName(mech), err)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := t.Context()
	t.Run("wrong PIN", func(t *testing.T) {
		cfg := testConfig(t)
		source := pinFile(t, "wrong-pin-0000")
		pin, err := ReadPIN(source)
		if err != nil {
			t.Fatal(err)
		}
		cfg.PIN = pin
		_, err = Open(ctx, cfg)
		if !errors.Is(err, ErrLogin) || !hasCode(err, pkcs11.CKR_PIN_INCORRECT) {
			t.Fatalf("got %v, want ErrLogin with CKR_PIN_INCORRECT", err)
		}
		for _, want := range []string{`token "` + cfg.TokenLabel + `"`, "CKR_PIN_INCORRECT", "hint: check the PIN from " + source} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%q lacks %q", err, want)
			}
		}
		if strings.Contains(err.Error(), "wrong-pin-0000") {
			t.Errorf("the error shows the PIN: %v", err)
		}
	})
	t.Run("no such token", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.TokenLabel = "no-such-token"
		_, err := Open(ctx, cfg)
		if err == nil || !strings.Contains(err.Error(), `no token labelled "no-such-token"`) || !strings.Contains(err.Error(), `"`+os.Getenv(testenv.EnvPKCS11Token)+`"`) {
			t.Errorf("got %v, want an error listing the tokens", err)
		}
	})
	t.Run("slot", func(t *testing.T) {
		p := openPool(t, nil)
		slot := p.slot
		q := openPool(t, func(c *Config) { c.TokenLabel = ""; c.Slot = &slot })
		if q.TokenLabel() != p.TokenLabel() {
			t.Errorf("pool by slot is on %q, want %q", q.TokenLabel(), p.TokenLabel())
		}
		cfg := testConfig(t)
		cfg.Slot, cfg.TokenLabel = &slot, "other-label"
		if _, err := Open(ctx, cfg); err == nil || !strings.Contains(err.Error(), "not \"other-label\"") {
			t.Errorf("slot with the wrong label: %v", err)
		}
	})
	t.Run("unsupported mechanism", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.Mechanism = pkcs11.CKM_VENDOR_DEFINED | 0x4242
		if _, err := Open(ctx, cfg); !hasCode(err, pkcs11.CKR_MECHANISM_INVALID) || !strings.Contains(err.Error(), "--list-mechanisms") {
			t.Errorf("got %v, want CKR_MECHANISM_INVALID with a hint", err)
		}
	})
	// Failed opens leave nothing behind: the module is finalised again.
	if m := moduleOf(t); m != nil && m.refs != 0 {
		t.Errorf("module refs = %d after failed opens", m.refs)
	}
}

// moduleOf returns the registry's module for the test token's library.
func moduleOf(t *testing.T) *module {
	t.Helper()
	registry.Lock()
	defer registry.Unlock()
	for _, m := range registry.modules {
		if strings.Contains(m.path, "softhsm") || len(registry.modules) == 1 {
			return m
		}
	}
	return nil
}

func TestTwoPoolsOneToken(t *testing.T) {
	ctx := t.Context()
	p1 := openPool(t, nil)
	label := newKey(t, p1, false)
	// The second pool's C_Login returns CKR_USER_ALREADY_LOGGED_IN.
	p2, err := Open(ctx, testConfig(t))
	if err != nil {
		t.Fatalf("second pool on the token: %v", err)
	}
	defer p2.Close()
	if p1.mod != p2.mod || p1.mod.refs != 2 {
		t.Errorf("pools do not share one module (refs %d)", p1.mod.refs)
	}
	for _, p := range []*Pool{p1, p2} {
		if err := roundTrip(ctx, p, label, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}

	// The token accepts any PIN once logged in; the pool does not.
	cfg := testConfig(t)
	cfg.PIN, _ = ReadPIN(pinFile(t, "another-pin"))
	if _, err := Open(ctx, cfg); !errors.Is(err, ErrLogin) || !strings.Contains(err.Error(), "differs from the one this process logged in") {
		t.Errorf("a third pool with another PIN: %v, want ErrLogin", err)
	}

	// Closing one pool must not log out the other.
	if err := p1.Close(); err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(ctx, p2, label, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if st := p2.Stats(); st.Reopens != 0 || st.Discards != 0 {
		t.Errorf("closing p1 disturbed p2: %+v", st)
	}
	if err := p2.Close(); err != nil {
		t.Fatal(err)
	}
	if p2.mod.refs != 0 || p2.mod.owned {
		t.Errorf("module still referenced after both pools closed: refs %d", p2.mod.refs)
	}
	// The library is finalised: a call through another handle says so.
	probe := pkcs11.New(p2.mod.path)
	if _, err := probe.GetSlotList(true); !hasCode(err, pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED) {
		t.Errorf("after the last Close, C_GetSlotList: %v, want CKR_CRYPTOKI_NOT_INITIALIZED", err)
	}
	probe.Destroy()
}

func TestModuleInitialisedElsewhere(t *testing.T) {
	cfg := testConfig(t)
	// Other code of the process (another library) initialises the module
	// first. The pool must use it and never finalise it.
	other := pkcs11.New(cfg.ModulePath)
	if other == nil {
		t.Fatal("cannot load module")
	}
	defer other.Destroy()
	if err := other.Initialize(); err != nil {
		t.Fatalf("C_Initialize: %v (is another pool open?)", err)
	}
	defer other.Finalize()
	p, err := Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p.mod.owned {
		t.Error("the pool thinks it initialised the module")
	}
	label := newKey(t, p, false)
	if err := roundTrip(t.Context(), p, label, []byte("x")); err != nil {
		t.Fatal(err)
	}
	destroyKey(t, p, label)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := other.GetSlotList(true); err != nil {
		t.Errorf("the pool finalised a module it did not initialise: %v", err)
	}
}

func TestRecoversFromClosedSessions(t *testing.T) {
	ctx := t.Context()
	p := openPool(t, func(c *Config) { c.Size = 4; c.HealthInterval = -1 })
	label := newKey(t, p, false)
	// Open all four sessions and cache the key handle in each.
	fill := func() {
		t.Helper()
		var wg sync.WaitGroup
		var ready sync.WaitGroup
		ready.Add(4)
		for range 4 {
			wg.Go(func() {
				err := p.Do(ctx, func(s *Session) error {
					ready.Done()
					ready.Wait() // hold the session until all four are out
					return sessionRoundTrip(s, label, []byte("x"))
				})
				if err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	fill()
	if st := p.Stats(); st.Open != 4 {
		t.Fatalf("Open = %d, want 4", st.Open)
	}

	t.Run("C_CloseAllSessions", func(t *testing.T) {
		before := p.Stats()
		// Closes every session of the process on the token, which also
		// logs the token out.
		if err := p.mod.ctx.CloseAllSessions(p.slot); err != nil {
			t.Fatal(err)
		}
		for i := range 6 {
			if err := roundTrip(ctx, p, label, []byte("after")); err != nil {
				t.Fatalf("op %d after C_CloseAllSessions: %v", i, err)
			}
		}
		fill() // reaches the sessions below the top of the idle stack too
		st := p.Stats()
		if st.Discards-before.Discards != 4 || st.Reopens-before.Reopens != 4 || st.Open != 4 || st.InUse != 0 {
			t.Errorf("want 4 discards and 4 reopens, got %+v (before %+v)", st, before)
		}
	})

	t.Run("C_CloseSession", func(t *testing.T) {
		before := p.Stats()
		var h pkcs11.SessionHandle
		err := p.Do(ctx, func(s *Session) error {
			h = s.c.h
			return p.mod.ctx.CloseSession(h)
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := roundTrip(ctx, p, label, []byte("after")); err != nil {
			t.Fatal(err)
		}
		if st := p.Stats(); st.Reopens != before.Reopens+1 || st.Discards != before.Discards+1 {
			t.Errorf("want one more discard and reopen, got %+v (before %+v)", st, before)
		}
	})

	t.Run("C_Logout", func(t *testing.T) {
		before := p.Stats()
		err := p.Do(ctx, func(s *Session) error { return p.mod.ctx.Logout(s.c.h) })
		if err != nil {
			t.Fatal(err)
		}
		// The cached handle of a private key is invalid while logged out,
		// and a new lookup finds nothing: the pool must log in again, not
		// report the key missing.
		if err := roundTrip(ctx, p, label, []byte("after")); err != nil {
			t.Fatal(err)
		}
		if st := p.Stats(); st.Reopens != before.Reopens+1 {
			t.Errorf("want a reopen with a new login, got %+v (before %+v)", st, before)
		}
	})

	t.Run("retried only without side effects", func(t *testing.T) {
		// f loses its session on the first call, as an HSM failover would.
		calls := 0
		f := func(h pkcs11.SessionHandle, _ pkcs11.ObjectHandle) error {
			calls++
			if calls == 1 {
				if err := p.mod.ctx.CloseSession(h); err != nil {
					return err
				}
			}
			_, err := p.mod.ctx.GenerateRandom(h, 8)
			return err
		}
		err := p.Do(ctx, func(s *Session) error {
			err := s.call(op{verb: "side effect"}, false, false, f)
			if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "not retried") || calls != 1 {
				t.Errorf("non-idempotent op on a lost session: %v after %d calls, want ErrUnavailable, not retried", err, calls)
			}
			// The lease gets a new session for its next operation.
			if err := sessionRoundTrip(s, label, []byte("x")); err != nil {
				return err
			}
			calls = 0
			if err := s.call(op{verb: "no side effect"}, false, true, f); err != nil || calls != 2 {
				t.Errorf("idempotent op on a lost session: %v after %d calls, want success on the second", err, calls)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

func TestHealthCheck(t *testing.T) {
	ctx := t.Context()
	p := openPool(t, func(c *Config) { c.Size = 2; c.HealthInterval = 20 * time.Millisecond })
	label := newKey(t, p, false)
	var h pkcs11.SessionHandle
	if err := p.Do(ctx, func(s *Session) error { h = s.c.h; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := p.mod.ctx.CloseSession(h); err != nil {
		t.Fatal(err)
	}
	if !eventually(2*time.Second, func() bool { st := p.Stats(); return st.Discards == 1 && st.Open == 0 }) {
		t.Fatalf("the health check did not drop the dead session: %+v", p.Stats())
	}
	if err := roundTrip(ctx, p, label, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.Reopens != 1 || st.Open != 1 {
		t.Errorf("want one reopen, got %+v", st)
	}
	// A logged-out token is logged in again by the probe, in place.
	if err := p.Do(ctx, func(s *Session) error { return p.mod.ctx.Logout(s.c.h) }); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // several health intervals, no use
	err := p.Do(ctx, func(s *Session) error {
		info, err := p.mod.ctx.GetSessionInfo(s.c.h)
		if err == nil && !userState(info.State) {
			t.Errorf("the health check did not log in again: session state %d", info.State)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.Discards != 1 || st.Reopens != 1 {
		t.Errorf("re-login should keep the session: %+v", st)
	}
}

func TestAcquireTimeout(t *testing.T) {
	p := openPool(t, func(c *Config) { c.Size = 2; c.AcquireTimeout = 150 * time.Millisecond })
	ctx := t.Context()
	var held []*Session
	for range 2 {
		s, err := p.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, s)
	}
	start := time.Now()
	_, err := p.Acquire(ctx)
	waited := time.Since(start)
	if !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), "all 2 sessions stayed busy for 150ms") {
		t.Fatalf("got %v, want ErrExhausted", err)
	}
	if waited < 150*time.Millisecond || waited > 5*time.Second {
		t.Errorf("waited %v, want about 150ms", waited)
	}
	st := p.Stats()
	if st.Timeouts != 1 || st.Waits != 1 || st.WaitTime < 150*time.Millisecond || st.InUse != 2 || st.Open != 2 {
		t.Errorf("stats %+v", st)
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := p.Acquire(cctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("acquire with a short context: %v, want DeadlineExceeded", err)
	}
	if st := p.Stats(); st.Timeouts != 1 {
		t.Errorf("a context deadline counted as a pool timeout: %+v", st)
	}
	held[0].Release()
	s, err := p.Acquire(ctx)
	if err != nil {
		t.Fatalf("acquire after a release: %v", err)
	}
	s.Release()
	held[1].Release()
}

func TestConcurrent(t *testing.T) {
	const workers, size, rounds = 64, 4, 8
	p := openPool(t, func(c *Config) { c.Size = size; c.HealthInterval = 5 * time.Millisecond })
	label := newKey(t, p, false)
	ctx := t.Context()
	var maxInUse, maxOpen atomic.Int64
	stop := make(chan struct{})
	var mon sync.WaitGroup
	mon.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			st := p.Stats()
			if int64(st.InUse) > maxInUse.Load() {
				maxInUse.Store(int64(st.InUse))
			}
			if int64(st.Open) > maxOpen.Load() {
				maxOpen.Store(int64(st.Open))
			}
			time.Sleep(100 * time.Microsecond)
		}
	})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				msg := fmt.Appendf(nil, "worker %d round %d", w, i)
				if err := roundTrip(ctx, p, label, msg); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	mon.Wait()
	st := p.Stats()
	if maxInUse.Load() > size || maxOpen.Load() > size || st.Open > size || st.InUse != 0 {
		t.Errorf("budget exceeded: max in use %d, max open %d, %+v", maxInUse.Load(), maxOpen.Load(), st)
	}
	if st.Errors != 0 || st.Discards != 0 {
		t.Errorf("stats %+v: want no errors", st)
	}
	if p.Size() != size {
		t.Errorf("Size() = %d", p.Size())
	}
}

func TestCloseWhileBusy(t *testing.T) {
	p := openPool(t, func(c *Config) { c.Size = 1; c.AcquireTimeout = time.Minute })
	label := newKey(t, p, false)
	ctx := t.Context()

	inFn, unblock := make(chan struct{}), make(chan struct{})
	doErr := make(chan error, 1)
	go func() {
		doErr <- p.Do(ctx, func(s *Session) error {
			close(inFn)
			<-unblock
			return sessionRoundTrip(s, label, []byte("finishing")) // still works during Close
		})
	}()
	<-inFn
	waiterErr := make(chan error, 1)
	go func() {
		s, err := p.Acquire(ctx)
		if err == nil {
			s.Release()
		}
		waiterErr <- err
	}()
	if !eventually(2*time.Second, func() bool { return p.Stats().Waits == 1 }) {
		t.Fatal("the waiter never waited")
	}
	closeErr := make(chan error, 1)
	go func() { closeErr <- p.Close() }()

	select {
	case err := <-waiterErr:
		if !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), "pool closed") {
			t.Errorf("waiting Acquire: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake the waiting Acquire")
	}
	if err := p.Do(ctx, func(*Session) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("Do on a closing pool: %v, want ErrClosed", err)
	}
	select {
	case <-closeErr:
		t.Fatal("Close returned while a Do was in flight")
	case <-time.After(100 * time.Millisecond):
	}
	close(unblock)
	if err := <-doErr; err != nil {
		t.Errorf("in-flight Do: %v", err)
	}
	if err := <-closeErr; err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if st := p.Stats(); st.Open != 0 || st.InUse != 0 {
		t.Errorf("after Close: %+v", st)
	}
}

func TestDoPanicDiscardsSession(t *testing.T) {
	p := openPool(t, nil)
	label := newKey(t, p, false)
	func() {
		defer func() {
			if recover() == nil {
				t.Error("no panic")
			}
		}()
		_ = p.Do(t.Context(), func(s *Session) error {
			// Leave an operation active, as a panic mid-operation would.
			k, err := s.FindKey(label)
			if err != nil {
				return err
			}
			params := pkcs11.NewGCMParams(make([]byte, 12), nil, 128)
			defer params.Free()
			_ = p.mod.ctx.EncryptInit(s.c.h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, k)
			panic("boom")
		})
	}()
	if st := p.Stats(); st.Discards != 1 || st.InUse != 0 {
		t.Errorf("after a panic: %+v", st)
	}
	if err := roundTrip(t.Context(), p, label, []byte("x")); err != nil {
		t.Fatal(err)
	}
}

func TestReopenBackoff(t *testing.T) {
	ctx := t.Context()
	p := openPool(t, func(c *Config) {
		c.HealthInterval = -1
		c.ReopenBackoff = 20 * time.Millisecond
		c.ReopenMaxBackoff = 40 * time.Millisecond
		c.ReopenAttempts = 4
	})
	label := newKey(t, p, false)
	var opens atomic.Int64
	var failures atomic.Int64 // the next this many opens fail
	p.failOpen = func() error {
		opens.Add(1)
		if failures.Add(-1) >= 0 {
			return pkcs11.Error(pkcs11.CKR_TOKEN_NOT_PRESENT)
		}
		return nil
	}
	lose := func() {
		t.Helper()
		if err := p.mod.ctx.CloseAllSessions(p.slot); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("recovers", func(t *testing.T) {
		lose()
		failures.Store(3) // the fourth and last attempt succeeds
		opens.Store(0)
		start := time.Now()
		if err := roundTrip(ctx, p, label, []byte("x")); err != nil {
			t.Fatal(err)
		}
		// Pauses of about 20, 40 and 40ms, less up to half each in jitter.
		if n, d := opens.Load(), time.Since(start); n != 4 || d < 50*time.Millisecond {
			t.Errorf("%d opens in %v, want 4 after at least 50ms of back-off", n, d)
		}
	})

	t.Run("gives up", func(t *testing.T) {
		lose()
		failures.Store(1000)
		opens.Store(0)
		before := p.Stats()
		err := roundTrip(ctx, p, label, []byte("x"))
		if !errors.Is(err, ErrUnavailable) || !hasCode(err, pkcs11.CKR_TOKEN_NOT_PRESENT) ||
			!strings.Contains(err.Error(), "reopening failed") || !strings.Contains(err.Error(), "gave up after 4 attempts") {
			t.Fatalf("got %v, want ErrUnavailable with CKR_TOKEN_NOT_PRESENT", err)
		}
		if n := opens.Load(); n != 4 {
			t.Errorf("%d open attempts, want ReopenAttempts = 4", n)
		}
		if st := p.Stats(); st.Errors-before.Errors < 5 || st.InUse != 0 {
			t.Errorf("stats %+v (before %+v)", st, before)
		}
	})

	t.Run("context ends the back-off", func(t *testing.T) {
		failures.Store(1000)
		cctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
		defer cancel()
		p.cfg.ReopenBackoff, p.cfg.ReopenMaxBackoff = 4*time.Second, 4*time.Second // pauses of 2s or more
		defer func() { p.cfg.ReopenBackoff, p.cfg.ReopenMaxBackoff = 20*time.Millisecond, 40*time.Millisecond }()
		start := time.Now()
		err := roundTrip(cctx, p, label, []byte("x"))
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 1500*time.Millisecond {
			t.Errorf("got %v after %v, want DeadlineExceeded soon", err, time.Since(start))
		}
	})

	t.Run("other failures are not retried", func(t *testing.T) {
		opens.Store(0)
		p.failOpen = func() error { opens.Add(1); return pkcs11.Error(pkcs11.CKR_SLOT_ID_INVALID) }
		err := roundTrip(ctx, p, label, []byte("x"))
		if !errors.Is(err, ErrUnavailable) || !hasCode(err, pkcs11.CKR_SLOT_ID_INVALID) || opens.Load() != 1 {
			t.Errorf("got %v after %d attempts, want ErrUnavailable after one", err, opens.Load())
		}
	})

	p.failOpen = nil
	if err := roundTrip(ctx, p, label, []byte("x")); err != nil {
		t.Fatal(err)
	}
}
