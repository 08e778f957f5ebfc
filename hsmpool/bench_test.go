package hsmpool

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
)

// BenchmarkGCMEncrypt measures AES-GCM encryptions of a 32-byte data key per
// second through the pool with N sessions (2N workers), against a bare loop
// on one session in the same run: raw miekg/pkcs11 calls with the key handle
// looked up once. The two alternate in rounds, so that load from elsewhere on
// the machine hits both alike. It reports both rates and their ratio
// (pooled/bare) and asserts nothing about them; ns/op covers one bare and one
// pooled encryption.
func BenchmarkGCMEncrypt(b *testing.B) {
	for _, n := range []int{1, 2, 4, 8} {
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			p := openPool(b, func(c *Config) { c.Size = n })
			label := newKey(b, p, false)
			ctx := context.Background()
			msg, aad, iv := make([]byte, 32), []byte("aad"), make([]byte, GCMIVSize)

			bareSession, err := p.Acquire(ctx)
			if err != nil {
				b.Fatal(err)
			}
			key, err := bareSession.FindKey(label)
			if err != nil {
				b.Fatal(err)
			}
			h, pctx := bareSession.c.h, p.mod.ctx
			bare := func(ops int) {
				for range ops {
					params := pkcs11.NewGCMParams(iv, aad, GCMTagSize*8)
					if err := pctx.EncryptInit(h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, key); err != nil {
						b.Fatal(err)
					}
					if _, err := pctx.Encrypt(h, msg); err != nil {
						b.Fatal(err)
					}
					_ = params.IV()
					params.Free()
				}
			}
			pooled := func(ops int) {
				var next atomic.Int64
				var wg sync.WaitGroup
				for range 2 * n {
					wg.Go(func() {
						for next.Add(1) <= int64(ops) {
							err := p.Do(ctx, func(s *Session) error {
								_, _, err := s.EncryptGCM(label, iv, msg, aad)
								return err
							})
							if err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
			}

			const rounds = 20
			per := max(b.N/rounds, 1)
			var bareTime, pooledTime time.Duration
			b.ResetTimer()
			for range rounds {
				start := time.Now()
				bare(per)
				bareTime += time.Since(start)
				// The bare session goes back for the pooled round, so
				// the pool has all n sessions.
				bareSession.Release()
				start = time.Now()
				pooled(per)
				pooledTime += time.Since(start)
				if bareSession, err = p.Acquire(ctx); err != nil {
					b.Fatal(err)
				}
				h = bareSession.c.h
				if key, err = bareSession.FindKey(label); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			bareSession.Release()
			ops := float64(rounds * per)
			bareRate, pooledRate := ops/bareTime.Seconds(), ops/pooledTime.Seconds()
			b.ReportMetric(bareRate, "bare-ops/s")
			b.ReportMetric(pooledRate, "pooled-ops/s")
			b.ReportMetric(pooledRate/bareRate, "ratio")
		})
	}
}
