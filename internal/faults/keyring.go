package faults

import (
	"context"

	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/rewrap"
)

// Keyring returns k with its backend calls made through p, for keys whose
// calls are not AWS requests (an HSM key through PKCS#11, local keys): KMS
// keyrings are left as they are (their requests are numbered by the
// middleware). Offline recognition is not a call.
func (p *Process) Keyring(k rewrap.Keyring) rewrap.Keyring {
	if k.Kind() == rewrap.KindKMS {
		return k
	}
	return &faultyKeyring{k: k, p: p}
}

type faultyKeyring struct {
	k rewrap.Keyring
	p *Process
}

func (f *faultyKeyring) ID() string        { return f.k.ID() }
func (f *faultyKeyring) Kind() rewrap.Kind { return f.k.Kind() }

func (f *faultyKeyring) Recognize(w rewrap.Wrapped) rewrap.Match { return rewrap.Classify(f.k, w) }

func (f *faultyKeyring) Wrap(ctx context.Context, dek *envelope.DataKey, cek envelope.ContentAlg, desc map[string]string) (w rewrap.Wrapped, err error) {
	err = f.p.do(f.k.Kind().String()+" Wrap", func() (err error) { w, err = f.k.Wrap(ctx, dek, cek, desc); return })
	return w, err
}

func (f *faultyKeyring) Unwrap(ctx context.Context, w rewrap.Wrapped, cek envelope.ContentAlg) (dek *envelope.DataKey, err error) {
	err = f.p.do(f.k.Kind().String()+" Unwrap", func() (err error) {
		dek, err = f.k.Unwrap(ctx, w, cek)
		return
	})
	if err != nil && dek != nil {
		dek.Clear() // a lost response: the key never reaches the caller
		dek = nil
	}
	return dek, err
}
