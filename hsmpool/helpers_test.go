package hsmpool

import (
	"bytes"
	"context"
	"crypto/aes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
	"github.com/rotator-dev/rotator/internal/testenv"
)

// The integration tests share one token with everything else the process
// does, and some of them close sessions or log the token out behind the
// pool's back (PKCS#11 state is per process). So none of them runs in
// parallel with another, and every pool a test opens is closed by its
// cleanup before the next test starts.

// testConfig returns a configuration for the stack's SoftHSM token, or skips
// (fails under ROTATOR_INTEGRATION=require) without one.
func testConfig(t testing.TB) Config {
	t.Helper()
	testenv.Need(t, testenv.PKCS11)
	pin, err := ReadPIN("file:" + os.Getenv(testenv.EnvPKCS11PinFile))
	if err != nil {
		t.Fatal(err)
	}
	return Config{
		ModulePath:     os.Getenv(testenv.EnvPKCS11Module),
		TokenLabel:     os.Getenv(testenv.EnvPKCS11Token),
		PIN:            pin,
		AcquireTimeout: 10 * time.Second,
	}
}

// openPool opens a pool on the test token, closed when the test ends.
func openPool(t testing.TB, edit func(*Config)) *Pool {
	t.Helper()
	cfg := testConfig(t)
	if edit != nil {
		edit(&cfg)
	}
	p, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

// newKey generates a uniquely labelled AES-256 key, destroyed when the test
// ends.
func newKey(t testing.TB, p *Pool, extractable bool) string {
	t.Helper()
	label := "hsmpool-" + testenv.Name(t)
	err := p.Do(context.Background(), func(s *Session) error { return s.GenerateAESKey(label, extractable) })
	if err != nil {
		t.Fatalf("GenerateAESKey: %v", err)
	}
	t.Cleanup(func() { destroyKey(t, p, label) })
	return label
}

// destroyKey deletes label, through a fresh pool if p is closed by then.
func destroyKey(t testing.TB, p *Pool, label string) {
	t.Helper()
	destroy := func(s *Session) error { return s.DestroyKey(label) }
	err := p.Do(context.Background(), destroy)
	if errors.Is(err, ErrClosed) {
		var q *Pool
		if q, err = Open(context.Background(), testConfig(t)); err == nil {
			err = q.Do(context.Background(), destroy)
			if cerr := q.Close(); err == nil {
				err = cerr
			}
		}
	}
	if err != nil && !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("destroy key %q: %v", label, err)
	}
}

// importKey creates a token AES key with a known value, destroyed when the
// test ends.
func importKey(t testing.TB, p *Pool, value []byte) string {
	t.Helper()
	label := "hsmpool-" + testenv.Name(t)
	err := p.Do(context.Background(), func(s *Session) error {
		_, err := p.mod.ctx.CreateObject(s.c.h, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),
			pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE, value),
		})
		return err
	})
	if err != nil {
		t.Fatalf("import key: %v", err)
	}
	t.Cleanup(func() { destroyKey(t, p, label) })
	return label
}

// keyValue reads CKA_VALUE of an extractable key.
func keyValue(t testing.TB, p *Pool, label string) []byte {
	t.Helper()
	var v []byte
	err := p.Do(context.Background(), func(s *Session) error {
		k, err := s.FindKey(label)
		if err != nil {
			return err
		}
		attrs, err := p.mod.ctx.GetAttributeValue(s.c.h, k, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
		if err != nil {
			return err
		}
		v = attrs[0].Value
		return nil
	})
	if err != nil {
		t.Fatalf("read key value: %v", err)
	}
	return v
}

// pinFile writes pin to a file and returns its PIN source.
func pinFile(t testing.TB, pin string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(f, []byte(pin+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return "file:" + f
}

// roundTrip encrypts and decrypts once under label through p.
func roundTrip(ctx context.Context, p *Pool, label string, msg []byte) error {
	return p.Do(ctx, func(s *Session) error { return sessionRoundTrip(s, label, msg) })
}

func sessionRoundTrip(s *Session, label string, msg []byte) error {
	iv, ct, err := s.EncryptGCM(label, nil, msg, []byte("aad"))
	if err != nil {
		return err
	}
	pt, err := s.DecryptGCM(label, iv, ct, []byte("aad"))
	if err != nil {
		return err
	}
	if string(pt) != string(msg) {
		return errors.New("round trip changed the message")
	}
	return nil
}

// eventually polls cond every few milliseconds for up to d.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cond()
}

// kwp wraps key under kek with AES key wrap with padding as RFC 5649
// specifies, written from the RFC as an independent check of the HSM.
func kwp(t testing.TB, kek, key []byte) []byte {
	t.Helper()
	block, err := aes.NewCipher(kek)
	if err != nil {
		t.Fatal(err)
	}
	a := binary.BigEndian.AppendUint32([]byte{0xa6, 0x59, 0x59, 0xa6}, uint32(len(key)))
	p := append(bytes.Clone(key), make([]byte, (8-len(key)%8)%8)...)
	buf := make([]byte, 16)
	if len(p) == 8 { // a single semiblock: one AES-ECB encryption
		block.Encrypt(buf, append(a, p...))
		return buf
	}
	n := len(p) / 8
	for j := range 6 {
		for i := range n {
			copy(buf, a)
			copy(buf[8:], p[8*i:8*i+8])
			block.Encrypt(buf, buf)
			a = binary.BigEndian.AppendUint64(nil, binary.BigEndian.Uint64(buf[:8])^uint64(n*j+i+1))
			copy(p[8*i:], buf[8:])
		}
	}
	return append(a, p...)
}
