package reencrypt

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"fmt"

	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/gcmstream"
)

// oldMessage is the old content's side of a re-encryption: an AES-GCM
// message (*gcmstream.Stream, whose Partials authenticate it) or legacy
// AES-CBC content (cbcMessage, which has nothing to authenticate).
type oldMessage interface {
	Combine(parts ...gcmstream.Partial) (gcmstream.Partial, error)
	MarshalPartial(p gcmstream.Partial) ([]byte, error)
	UnmarshalPartial(data []byte) (gcmstream.Partial, error)
	Verify(total gcmstream.Partial, tag []byte) error
	Close() error
}

var _ oldMessage = (*gcmstream.Stream)(nil)

// cbcMessage is legacy AES-256-CBC content with PKCS#5 padding (V1, and V2
// with AES/CBC/PKCS5Padding). It carries no tag: the padding of the last
// block, checked before anything is written, is the only check there is.
// Its Partials are empty; its checkpoint state is a fixed marker.
type cbcMessage struct {
	block cipher.Block
	iv    []byte
}

var cbcMarker = []byte("cbc")

func (cbcMessage) Combine(...gcmstream.Partial) (gcmstream.Partial, error) {
	return gcmstream.Partial{}, nil
}

func (cbcMessage) MarshalPartial(gcmstream.Partial) ([]byte, error) { return cbcMarker, nil }

func (cbcMessage) UnmarshalPartial(data []byte) (gcmstream.Partial, error) {
	if string(data) != string(cbcMarker) {
		return gcmstream.Partial{}, fmt.Errorf("%w: not the state of AES-CBC content", errCheckpoint)
	}
	return gcmstream.Partial{}, nil
}

func (cbcMessage) Verify(gcmstream.Partial, []byte) error { return nil }

func (m *cbcMessage) Close() error {
	m.block = nil // the key schedule is unreachable; crypto/aes offers no wipe
	return nil
}

// isCBC reports whether env's content is legacy AES-CBC.
func isCBC(env *envelope.Envelope) bool {
	return env.CEKAlg == envelope.ContentAESCBC && (env.Format == envelope.V1 || env.Format == envelope.V2)
}

// openCBC sets up the old side for AES-CBC content with content key key.
func openCBC(key, iv []byte) (*cbcMessage, error) {
	if len(iv) != aes.BlockSize {
		return nil, fmt.Errorf("%w: AES-CBC IV of %d bytes, want %d", ErrUnsupported, len(iv), aes.BlockSize)
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return &cbcMessage{block: b, iv: append([]byte(nil), iv...)}, nil
}

// cbcPlainLength reads the last block of CBC content of size bytes and
// returns the plaintext length its PKCS#5 padding gives.
func (r *run) cbcPlainLength(ctx context.Context, size int64) (int64, error) {
	if size < aes.BlockSize || size%aes.BlockSize != 0 {
		return 0, fmt.Errorf("%w: %d bytes is not AES-CBC content (a positive multiple of 16 bytes)", ErrAuthentication, size)
	}
	m := r.old.(*cbcMessage)
	tail := make([]byte, 2*aes.BlockSize)
	prev, last := tail[:aes.BlockSize], tail[aes.BlockSize:]
	if size == aes.BlockSize {
		copy(prev, m.iv)
		if err := r.get(ctx, last, 0); err != nil {
			return 0, err
		}
	} else if err := r.get(ctx, tail, size-2*aes.BlockSize); err != nil {
		return 0, err
	}
	pt := make([]byte, aes.BlockSize)
	defer clear(pt)
	cipher.NewCBCDecrypter(m.block, prev).CryptBlocks(pt, last)
	p, ok := pkcs5Padding(pt)
	if !ok {
		return 0, fmt.Errorf("%w: the AES-CBC padding is invalid (a wrong data key, or altered content)", ErrAuthentication)
	}
	return size - int64(p), nil
}

// pkcs5Padding returns the padding length of a last plaintext block, in
// constant time with respect to the block's bytes.
func pkcs5Padding(last []byte) (int, bool) {
	p := int(last[len(last)-1])
	good := subtle.ConstantTimeLessOrEq(1, p) & subtle.ConstantTimeLessOrEq(p, aes.BlockSize)
	for i := 0; i < aes.BlockSize; i++ {
		inPad := subtle.ConstantTimeLessOrEq(aes.BlockSize-min(p, aes.BlockSize), i) // i >= 16-p
		same := subtle.ConstantTimeByteEq(last[i], byte(p))
		good &= ^inPad&1 | same
	}
	return p, good == 1
}

// cbcDecrypt decrypts in place the old ciphertext buf, which starts at
// offset off (a multiple of 16) of the content; the block before it (or
// the IV) is read first.
func (r *run) cbcDecrypt(ctx context.Context, buf []byte, off int64) error {
	m := r.old.(*cbcMessage)
	prev := make([]byte, aes.BlockSize)
	if off == 0 {
		copy(prev, m.iv)
	} else if err := r.get(ctx, prev, off-aes.BlockSize); err != nil {
		return err
	}
	if len(buf)%aes.BlockSize != 0 {
		return fmt.Errorf("reencrypt: AES-CBC range of %d bytes at %d is not whole blocks", len(buf), off)
	}
	cipher.NewCBCDecrypter(m.block, prev).CryptBlocks(buf, buf)
	return nil
}
