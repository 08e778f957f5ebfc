package pipeline_test

import (
	"testing"

	"github.com/rotator-dev/rotator/pipeline"
)

// Runs whose objects make one request after another get more workers
// than requests in flight (twice as many up to 64, then 64 more, then a
// quarter more from 256); re-encryptions and runs with an HSM key get as
// many workers as --concurrency.
func TestConfigWorkers(t *testing.T) {
	for _, c := range []struct {
		cfg  pipeline.Config
		want int
	}{
		{pipeline.Config{To: "kms:alias/b", Concurrency: 32}, 64},
		{pipeline.Config{To: "kms:alias/b"}, 2 * pipeline.DefaultWorkers},
		{pipeline.Config{To: "kms:alias/b", Concurrency: 64}, 128},
		{pipeline.Config{To: "kms:alias/b", Concurrency: 65}, 129},
		{pipeline.Config{To: "kms:alias/b", Concurrency: 256}, 320},
		{pipeline.Config{To: "kms:alias/b", Concurrency: 512}, 640},
		{pipeline.Config{To: "kms:alias/b", Mode: pipeline.ModeReencrypt, Concurrency: 32}, 32},
		{pipeline.Config{To: "pkcs11:token=t;object=k", Concurrency: 8}, 8},
		{pipeline.Config{To: "kms:alias/b", From: []string{"kms:alias/a", "pkcs11:token=t;object=k"}, Concurrency: 8}, 8},
		{pipeline.Config{To: "kms:alias/b", Escrow: "pkcs11:token=t;object=e", Concurrency: 8}, 8},
		{pipeline.Config{To: "kms:alias/b", Escrow: "kms:alias/e", Concurrency: 8}, 16},
	} {
		if got := c.cfg.Workers(); got != c.want {
			t.Errorf("%+v: %d workers, want %d", c.cfg, got, c.want)
		}
	}
}
