package hsmpool_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/rotator-dev/rotator/hsmpool"
)

// Open a pool on the CloudHSM token, size the HSM workers from its budget,
// and protect a data key under a key-encryption key kept in the HSM.
func Example() {
	ctx := context.Background()
	pin, err := hsmpool.ReadPIN("file:/etc/rotator/hsm.pin")
	if err != nil {
		fmt.Println(err)
		return
	}
	pool, err := hsmpool.Open(ctx, hsmpool.Config{
		ModulePath: "/opt/cloudhsm/lib/libcloudhsm_pkcs11.so",
		TokenLabel: "rotator",
		PIN:        pin,
		Size:       64,
	})
	pin.Clear() // the pool keeps its own copy
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()

	workers := pool.Size() // the HSM session budget
	_ = workers

	dataKey := make([]byte, 32) // from envelope.GenerateDataKey in rotator
	var blob []byte
	err = pool.Do(ctx, func(s *hsmpool.Session) error {
		var err error
		blob, err = s.WrapDataKey("kek-2026", dataKey, []byte("s3://bucket/key"))
		return err
	})
	clear(dataKey)
	switch {
	case errors.Is(err, hsmpool.ErrKeyNotFound), errors.Is(err, hsmpool.ErrUnavailable), errors.Is(err, hsmpool.ErrLogin):
		fmt.Println("systemic, stop the run:", err)
	case err != nil:
		fmt.Println("this object failed:", err)
	default:
		fmt.Println(len(blob)) // IV || ciphertext || tag: 60 bytes
	}
}
