package rewrap

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/miekg/pkcs11"

	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/kmsserver"
)

// BenchmarkKMSToHSM measures KMS -> HSM rewraps per second through Rewrap
// (KMS Decrypt, then CKM_AES_GCM in the HSM through a pool of N sessions, N
// workers) against a bare loop in the same run: one goroutine, one raw
// PKCS#11 session with the key handle looked up once, doing the same KMS
// Decrypt and GCM encryption with no pool, limiter or classification. The two
// alternate in rounds so that load from elsewhere hits both alike. The KMS
// server runs in process; latency adds a fixed delay per KMS request, the way
// a network round trip to KMS would. It reports both rates and their ratio
// (pooled/bare) and asserts nothing about them.
func BenchmarkKMSToHSM(b *testing.B) {
	for _, latency := range []time.Duration{0, 2 * time.Millisecond} {
		for _, n := range []int{1, 4, 16} {
			b.Run(fmt.Sprintf("latency=%v/sessions=%d", latency, n), func(b *testing.B) {
				benchKMSToHSM(b, latency, n)
			})
		}
	}
}

func benchKMSToHSM(b *testing.B, latency time.Duration, n int) {
	env := inProcessKMS(b, kmsserver.Options{Latency: latency})
	d := newDeps(b, env.cfg, func(d *Deps) { hsmDeps(b, d); d.PKCS11PoolSize = n })
	ctx := context.Background()
	from := mustOpen(b, d, "kms:"+env.createKey(b, nil, "bench"))
	spec, _ := hsmKey(b, d, "bench")
	to := mustOpen(b, d, spec)
	label := to.(*hsmKeyring).label
	cek := envelope.ContentAESGCM

	// A set of wrapped data keys to rewrap over and over.
	wrapped := make([]Wrapped, 64)
	for i := range wrapped {
		dek, err := envelope.GenerateDataKey(rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		if wrapped[i], err = from.Wrap(ctx, dek, cek, map[string]string{"i": fmt.Sprint(i)}); err != nil {
			b.Fatal(err)
		}
		dek.Clear()
	}

	// The bare loop: a KMS client of its own and one raw session.
	client := kms.NewFromConfig(env.cfg)
	c, h := rawSession(b, d)
	if err := c.FindObjectsInit(h, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}); err != nil {
		b.Fatal(err)
	}
	keys, _, err := c.FindObjects(h, 1)
	_ = c.FindObjectsFinal(h)
	if err != nil || len(keys) != 1 {
		b.Fatalf("find key: %v", err)
	}
	arn := from.ID()
	bare := func(ops int) {
		for i := range ops {
			w := wrapped[i%len(wrapped)]
			out, err := client.Decrypt(ctx, &kms.DecryptInput{KeyId: aws.String(arn), CiphertextBlob: w.Key, EncryptionContext: w.MatDesc})
			if err != nil {
				b.Fatal(err)
			}
			iv := make([]byte, 12)
			_, _ = rand.Read(iv)
			params := pkcs11.NewGCMParams(iv, cek.Binding(), 128)
			if err := c.EncryptInit(h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, keys[0]); err != nil {
				b.Fatal(err)
			}
			if _, err := c.Encrypt(h, out.Plaintext); err != nil {
				b.Fatal(err)
			}
			_ = params.IV()
			params.Free()
			clear(out.Plaintext)
		}
	}
	pooled := func(ops int) {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				for {
					i := next.Add(1) - 1
					if i >= int64(ops) {
						return
					}
					if _, err := Rewrap(ctx, from, to, wrapped[i%int64(len(wrapped))], cek); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}

	bare(8) // warm both up: connections, sessions
	pooled(2 * n)
	const rounds = 10
	per := max(b.N/rounds, 1)
	var bareTime, pooledTime time.Duration
	b.ResetTimer()
	for range rounds {
		start := time.Now()
		bare(per)
		bareTime += time.Since(start)
		start = time.Now()
		pooled(per)
		pooledTime += time.Since(start)
	}
	b.StopTimer()
	ops := float64(rounds * per)
	bareRate, pooledRate := ops/bareTime.Seconds(), ops/pooledTime.Seconds()
	b.ReportMetric(bareRate, "bare-rewraps/s")
	b.ReportMetric(pooledRate, "pooled-rewraps/s")
	b.ReportMetric(pooledRate/bareRate, "ratio")
}
