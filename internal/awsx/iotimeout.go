package awsx

import (
	"context"
	"net"
	"time"
)

// DefaultIOTimeout is Options.IOTimeout's default: rclone's --timeout.
//
// Neither the SDK's HTTP client nor rotator's contexts bound a request's
// time, and rightly: a multipart copy or an upload may take minutes. But a
// connection that stops moving (a stalled server, a middlebox that dropped
// the flow without a reset) then holds its request, and the worker behind
// it, for ever: a run of millions of objects meets one sooner or later and
// never ends. An I/O timeout bounds the wait without bounding the work: a
// connection on which nothing is read or written for this long is dropped,
// and the SDK retries the request as it does any connection error. S3
// keeps a long copy's or CompleteMultipartUpload's connection moving (it
// sends its 200 OK at once and then spaces while it works), so no healthy
// request comes near it.
const DefaultIOTimeout = 5 * time.Minute

// dialer is the DialContext of an http.Transport.
type dialer func(ctx context.Context, network, addr string) (net.Conn, error)

// withIOTimeout wraps dial so that each connection it makes fails a read
// or write that makes no progress for d (d <= 0: dial unchanged).
func withIOTimeout(dial dialer, d time.Duration) dialer {
	if d <= 0 || dial == nil {
		return dial
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &ioTimeoutConn{Conn: c, d: d}, nil
	}
}

// ioTimeoutConn is a connection whose every Read and Write must make
// progress within d. The deadline is pushed back before each call, so a
// long transfer that keeps moving is never cut. An idle pooled connection
// (net/http keeps a read pending on it) is closed after d without a
// request: the transport's IdleConnTimeout (90 s) closes it first.
type ioTimeoutConn struct {
	net.Conn
	d time.Duration
}

func (c *ioTimeoutConn) Read(b []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.d)); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

func (c *ioTimeoutConn) Write(b []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.d)); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}
