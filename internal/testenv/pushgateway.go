package testenv

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"
)

// Pushgateway is the Prometheus Pushgateway (a binary scripts/stack
// installs; each test starts its own with StartPushgateway).
const Pushgateway = "pushgateway"

// EnvPushgateway names the Pushgateway binary (.stack/env sets it).
const EnvPushgateway = "ROTATOR_PUSHGATEWAY"

func checkPushgateway() error {
	bin := os.Getenv(EnvPushgateway)
	if bin == "" {
		return fmt.Errorf("%s is not set", EnvPushgateway)
	}
	st, err := os.Stat(bin)
	if err != nil {
		return fmt.Errorf("%s: %w", EnvPushgateway, err)
	}
	if st.Mode()&0o111 == 0 {
		return fmt.Errorf("%s=%s is not executable", EnvPushgateway, bin)
	}
	return nil
}

// StartPushgateway starts a Pushgateway of its own for t on a free port of
// 127.0.0.1, without persistence, and returns its URL. It is stopped when
// t ends.
func StartPushgateway(t testing.TB) string {
	t.Helper()
	Need(t, Pushgateway)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // free for the Pushgateway (a race with other listeners, retried below)
	var out bytes.Buffer
	cmd := exec.Command(os.Getenv(EnvPushgateway), "--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the Pushgateway: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	url := "http://" + addr
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case err := <-exited:
			t.Fatalf("the Pushgateway exited during start-up (%v):\n%s", err, out.String())
		default:
		}
		if resp, err := http.Get(url + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url
			}
		}
	}
	t.Fatalf("the Pushgateway did not answer on %s within 15s:\n%s", url, out.String())
	return ""
}
