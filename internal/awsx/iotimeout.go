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
// connection on which no byte is read or written for this long is
// dropped, and the SDK retries the request as it does any connection
// error. S3 keeps a long copy's or CompleteMultipartUpload's connection
// moving (it sends its 200 OK at once and then spaces while it works), so
// no healthy request comes near it.
const DefaultIOTimeout = 5 * time.Minute

// ioChunk is the most a Write sends before it pushes the deadlines back:
// a 16 MiB part is one Write, and its progress must count as it goes.
const ioChunk = 64 << 10

// dialer is the DialContext of an http.Transport.
type dialer func(ctx context.Context, network, addr string) (net.Conn, error)

// withIOTimeout wraps dial so that each connection it makes fails once no
// byte has been read or written on it for d (d <= 0: dial unchanged).
func withIOTimeout(dial dialer, d time.Duration) dialer {
	if d <= 0 || dial == nil {
		return dial
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		tc := &ioTimeoutConn{Conn: c, d: d}
		if err := tc.nudge(); err != nil {
			c.Close()
			return nil, err
		}
		return tc, nil
	}
}

// ioTimeoutConn is a connection that fails its reads and writes once no
// byte has moved on it, either way, for d: each Read or Write that moves
// bytes pushes both deadlines d ahead (as rclone does). Both, because
// net/http keeps a read pending on a connection from the moment it is
// idle, through the next request's upload, until the response comes:
// that read must not time out while the upload moves. An idle pooled
// connection fails d after its last byte, which only closes it (the
// transport's IdleConnTimeout, 90 s, usually closes it first); a request
// written on it pushes the deadlines back before its response is awaited.
type ioTimeoutConn struct {
	net.Conn
	d time.Duration
}

func (c *ioTimeoutConn) nudge() error { return c.Conn.SetDeadline(time.Now().Add(c.d)) }

func (c *ioTimeoutConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && err == nil {
		err = c.nudge()
	}
	return n, err
}

func (c *ioTimeoutConn) Write(b []byte) (int, error) {
	var n int
	for len(b) > 0 {
		m, err := c.Conn.Write(b[:min(len(b), ioChunk)])
		n += m
		if m > 0 && err == nil {
			err = c.nudge()
		}
		if err != nil {
			return n, err
		}
		b = b[m:]
	}
	return n, nil
}
