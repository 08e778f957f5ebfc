// Package hsmtest gives integration tests keys of their own on the local
// stack's SoftHSM token (scripts/stack initialises it and exports its
// module, label and PIN file: see package testenv).
package hsmtest

import (
	"context"
	"os"
	"testing"

	"github.com/rotator-dev/rotator/hsmpool"
	"github.com/rotator-dev/rotator/internal/testenv"
)

// Key creates an AES-256 key on the stack's token, labelled prefix and
// the test's name, and returns its key spec
// (pkcs11:token=TOKEN;object=LABEL) and a function that destroys it (the
// HSM key lost). A key not destroyed by then is destroyed when the test
// ends. The test needs testenv.PKCS11.
func Key(t testing.TB, prefix string) (spec string, destroy func()) {
	t.Helper()
	testenv.Need(t, testenv.PKCS11)
	ctx := context.Background()
	module, token, pinFile := os.Getenv(testenv.EnvPKCS11Module), os.Getenv(testenv.EnvPKCS11Token), os.Getenv(testenv.EnvPKCS11PinFile)
	pin, err := hsmpool.ReadPIN("file:" + pinFile)
	if err != nil {
		t.Fatal(err)
	}
	p, err := hsmpool.Open(ctx, hsmpool.Config{ModulePath: module, TokenLabel: token, PIN: pin, Size: 1})
	pin.Clear()
	if err != nil {
		t.Fatal(err)
	}
	label := prefix + testenv.Name(t)
	if err := p.Do(ctx, func(s *hsmpool.Session) error { return s.GenerateAESKey(label, false) }); err != nil {
		p.Close()
		t.Fatal(err)
	}
	destroyed := false
	t.Cleanup(func() {
		if !destroyed {
			if err := p.Do(ctx, func(s *hsmpool.Session) error { return s.DestroyKey(label) }); err != nil {
				t.Errorf("destroy HSM key %s: %v", label, err)
			}
		}
		p.Close()
	})
	destroy = func() {
		t.Helper()
		if err := p.Do(ctx, func(s *hsmpool.Session) error { return s.DestroyKey(label) }); err != nil {
			t.Fatalf("destroy HSM key %s: %v", label, err)
		}
		destroyed = true
	}
	return "pkcs11:token=" + token + ";object=" + label, destroy
}
