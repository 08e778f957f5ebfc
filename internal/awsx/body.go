package awsx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// BodyReads is how many times a body of GetObject is read: when it stops before its
// end (a reset connection, a connection cut by rotator's --io-timeout, a
// server that closed early), the rest is asked for again from where it
// stopped, with a Range, If-Match on the ETag read first and the version
// id, as the SDK's transfer manager reads a part's body again
// (PartBodyMaxRetries, 3 more reads). The SDK's retryer does not do it:
// it retries requests, and a body breaks after its request succeeded.
const BodyReads = 4

// Getter is the S3 call of GetObject.
type Getter interface {
	GetObject(context.Context, *s3.GetObjectInput, ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

// BodyError is the failure of a body read after its GET succeeded: the
// body stopped BodyReads times, or a GET of the rest failed (Err says how;
// a changed object is S3's 412 there).
type BodyError struct {
	Read int64 // bytes read before it
	Err  error
}

func (e *BodyError) Error() string {
	return fmt.Sprintf("the body stopped after %d bytes: %v", e.Read, e.Err)
}

func (e *BodyError) Unwrap() error { return e.Err }

// GetObject sends in, a GET of a whole object or of one range
// ("bytes=A-B", "bytes=A-"), with c, and returns its answer with a Body
// that reads the rest again when it stops before its end (BodyReads).
// Every GET of the rest is guarded by the content read (If-Match: in's,
// or the ETag of the first answer; and in's version id, if any), so that
// a reader never splices two objects: one changed in between fails with
// S3's 412 (a *BodyError). The error of the first GET is returned as it
// is. An answer this cannot continue safely (no ETag to guard the rest
// with, no length, a Content-Range that does not start where the Range
// asked) is returned as it came.
func GetObject(ctx context.Context, c Getter, in *s3.GetObjectInput) (*s3.GetObjectOutput, error) {
	out, err := c.GetObject(ctx, in)
	if err != nil {
		return nil, err
	}
	start, err := rangeStart(aws.ToString(in.Range))
	if err != nil || out.ContentLength == nil || out.Body == nil || (in.IfMatch == nil && out.ETag == nil) {
		return out, nil
	}
	if in.Range != nil {
		// "bytes A-B/N": a server that ignored the Range answers 200
		// with no Content-Range, and the offsets would be wrong.
		first, _, _ := strings.Cut(strings.TrimPrefix(aws.ToString(out.ContentRange), "bytes "), "-")
		if n, err := strconv.ParseInt(first, 10, 64); err != nil || n != start {
			return out, nil
		}
	}
	b := &body{ctx: ctx, c: c, in: *in, rc: out.Body, off: start, end: start + *out.ContentLength}
	if b.in.IfMatch == nil {
		b.in.IfMatch = out.ETag
	}
	out.Body = b
	return out, nil
}

// rangeStart returns the first byte of a Range header GetObject can read
// from ("" or "bytes=A-B"; "bytes=A-").
func rangeStart(r string) (int64, error) {
	if r == "" {
		return 0, nil
	}
	spec, ok := strings.CutPrefix(r, "bytes=")
	first, _, dash := strings.Cut(spec, "-")
	if !ok || !dash || first == "" || strings.Contains(spec, ",") {
		return 0, fmt.Errorf("range %q", r)
	}
	return strconv.ParseInt(first, 10, 64)
}

// maxEmptyReads bounds the reads in a row that return nothing and no
// error before a body counts as stopped (io.ErrNoProgress).
const maxEmptyReads = 100

type body struct {
	ctx      context.Context
	c        Getter
	in       s3.GetObjectInput // Range is rewritten for each further read
	rc       io.ReadCloser
	off, end int64 // the next byte to read; the end of the range
	reads    int   // the body's reads that stopped
	read     int64 // bytes read
	pending  error // the error that came with the last bytes
	done     error // set once the end was checked (finish)
}

func (b *body) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	empty := 0
	for {
		if b.off >= b.end {
			return 0, b.finish()
		}
		err := b.pending
		b.pending = nil
		if err == nil {
			q := p
			if int64(len(q)) > b.end-b.off {
				q = q[:b.end-b.off]
			}
			var n int
			n, err = b.rc.Read(q)
			b.off += int64(n)
			b.read += int64(n)
			if n > 0 {
				b.pending = err // taken up at the next Read
				return n, nil
			}
			if err == nil {
				if empty++; empty < maxEmptyReads {
					continue
				}
				err = io.ErrNoProgress
			}
		}
		// b.off < b.end: the body stopped before its end.
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // closed before the length it announced
		}
		b.reads++
		if b.reads >= BodyReads || b.ctx.Err() != nil {
			return 0, &BodyError{Read: b.read, Err: err}
		}
		_ = b.rc.Close()
		b.rc = io.NopCloser(strings.NewReader(""))
		in := b.in
		in.Range = aws.String(fmt.Sprintf("bytes=%d-%d", b.off, b.end-1))
		out, gerr := b.c.GetObject(b.ctx, &in)
		if gerr != nil {
			return 0, &BodyError{Read: b.read, Err: gerr}
		}
		b.rc = out.Body
		if out.ContentLength != nil && *out.ContentLength != b.end-b.off {
			return 0, &BodyError{Read: b.read, Err: fmt.Errorf("the rest, bytes %d-%d, came as %d bytes", b.off, b.end-1, *out.ContentLength)}
		}
		empty = 0
	}
}

// finish reads the body past its last byte once, unless the last read
// said how it ended, so that a reader that checks a body as it ends (the
// SDK's checksum validation) reports what it found: an error other than
// EOF with the last bytes or after them, or more bytes than announced,
// fails the read.
func (b *body) finish() error {
	if b.done != nil {
		return b.done
	}
	err := b.pending
	b.pending = nil
	if err == nil {
		var one [1]byte
		var n int
		for range maxEmptyReads {
			if n, err = b.rc.Read(one[:]); n > 0 || err != nil {
				break
			}
		}
		if n > 0 {
			err = fmt.Errorf("more than the %d bytes announced", b.read)
		}
	}
	b.done = io.EOF
	if err != nil && !errors.Is(err, io.EOF) {
		b.done = &BodyError{Read: b.read, Err: err}
	}
	return b.done
}

func (b *body) Close() error { return b.rc.Close() }
