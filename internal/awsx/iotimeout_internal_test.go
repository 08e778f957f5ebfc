package awsx

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// pipeConn is one end of a pipe wrapped with an I/O timeout of d, as a
// dial gives it, and the other end.
func pipeConn(t *testing.T, d time.Duration) (*ioTimeoutConn, net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	c := &ioTimeoutConn{Conn: a, d: d}
	if err := c.nudge(); err != nil {
		t.Fatal(err)
	}
	return c, b
}

// slowReader reads r in chunks of 16 KiB, one every 50 ms, until it has
// read n bytes.
func slowReader(r io.Reader, n int) <-chan error {
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 16<<10)
		for got := 0; got < n; {
			time.Sleep(50 * time.Millisecond)
			k, err := r.Read(buf)
			got += k
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	return done
}

// TestIOTimeoutConnUploadKeepsMoving: a 1 MiB Write that the peer takes in
// slowly (1.6 s in all) is not cut by a timeout of 300 ms, since each chunk
// that goes pushes the deadline back; and a Read left pending through the
// upload (as net/http keeps one on every connection) does not time out
// either, then gets the answer.
func TestIOTimeoutConnUploadKeepsMoving(t *testing.T) {
	c, b := pipeConn(t, 300*time.Millisecond)
	pending := make(chan error, 1)
	go func() {
		buf := make([]byte, 8)
		n, err := c.Read(buf)
		if err == nil && string(buf[:n]) != "answer" {
			err = errors.New("read " + string(buf[:n]))
		}
		pending <- err
	}()
	body := bytes.Repeat([]byte("x"), 1<<20)
	peer := slowReader(b, len(body))
	start := time.Now()
	if n, err := c.Write(body); err != nil || n != len(body) {
		t.Fatalf("Write: %d bytes, %v after %v: want all of them", n, err, time.Since(start))
	}
	if err := <-peer; err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < time.Second {
		t.Fatalf("the upload took %v: too fast to show anything", took)
	}
	if _, err := b.Write([]byte("answer")); err != nil {
		t.Fatal(err)
	}
	if err := <-pending; err != nil {
		t.Fatalf("the read pending through the upload: %v", err)
	}
}

// TestIOTimeoutConnSilence: a Read on a connection where nothing moves
// fails after the timeout, and so does a Write the peer never takes.
func TestIOTimeoutConnSilence(t *testing.T) {
	c, _ := pipeConn(t, 200*time.Millisecond)
	start := time.Now()
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read: %v, want a deadline error", err)
	}
	if err := c.nudge(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write: %v, want a deadline error", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("took %v, want about 400ms", took)
	}
}
