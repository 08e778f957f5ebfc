package inventory

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

var errLineTooLong = fmt.Errorf("line longer than %d bytes", MaxLineBytes)

// castagnoli is the CRC-32C table (hardware-assisted on amd64 and arm64).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// lineReader reads lines of at most MaxLineBytes and counts lines and
// bytes, so a list can be resumed at a byte offset. It keeps the CRC-32C
// of every byte consumed, so that a resumed run can check that the list
// still begins with the bytes the run had read (verify).
type lineReader struct {
	br     *bufio.Reader
	line   int64  // number of the last line returned
	offset int64  // bytes consumed, terminators included
	sum    uint32 // CRC-32C of the bytes consumed
	last   byte   // the last byte consumed
	acc    []byte
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, 64<<10)}
}

// Write records p as consumed: its bytes counted and summed. next calls
// it for each line; verify copies the bytes it checks through it.
func (l *lineReader) Write(p []byte) (int, error) {
	if len(p) > 0 {
		l.offset += int64(len(p))
		l.sum = crc32.Update(l.sum, castagnoli, p)
		l.last = p[len(p)-1]
	}
	return len(p), nil
}

// next returns the next line without its terminator (LF or CRLF), or
// io.EOF.
func (l *lineReader) next() (string, error) {
	l.acc = l.acc[:0]
	for {
		b, err := l.br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			l.acc = append(l.acc, b...)
			if len(l.acc) > MaxLineBytes {
				l.line++
				return "", errLineTooLong
			}
			continue
		}
		if len(l.acc) > 0 {
			l.acc = append(l.acc, b...)
			b = l.acc
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return "", err
		}
		if len(b) == 0 {
			return "", io.EOF
		}
		l.line++
		if len(b) > MaxLineBytes+2 {
			return "", errLineTooLong
		}
		_, _ = l.Write(b)
		n := len(b)
		if b[n-1] == '\n' {
			n--
			if n > 0 && b[n-1] == '\r' {
				n--
			}
		}
		if cap(l.acc) > 256<<10 {
			l.acc = nil // do not keep a huge buffer for short lines
		}
		return string(b[:n]), nil
	}
}

// errListChanged: a resumed list does not begin with the bytes the run
// had read.
var errListChanged = errors.New("the list changed")

// verify consumes the bytes of a list read from its start up to the
// cursor c (lines 1 to c.line) and, for a checked cursor, returns an error
// wrapping errListChanged unless their CRC-32C is c.sum: the list is no
// longer the one the run read up to there (edited, replaced or cut
// short). A list shorter than the cursor is refused, checked or not. When
// those bytes end with a line that had no terminator, it was the end of
// the list then, and may now be followed only by a line end (consumed
// with it, not counted as a line) or the end of the list; a line that
// ended in CR may not be followed at all (a LF would make the CR part of
// its terminator, and the line another key). It stops when ctx is done.
// Any other error is the reader's.
func (l *lineReader) verify(ctx context.Context, c listCursor) error {
	line, n := c.line, c.offset
	for l.offset < n {
		if err := ctx.Err(); err != nil {
			return err
		}
		_, err := io.CopyN(l, l.br, min(n-l.offset, 1<<20))
		if err == io.EOF { // the list ends; a read that failed is another error
			return fmt.Errorf("%w: it has %d bytes, fewer than the %d (lines 1 to %d) the run had read", errListChanged, l.offset, n, line)
		}
		if err != nil {
			return err
		}
	}
	if c.checked && l.sum != c.sum {
		return fmt.Errorf("%w: its first %d bytes (lines 1 to %d) are not the ones the run read", errListChanged, n, line)
	}
	l.line = line
	if n == 0 || l.last == '\n' {
		return nil
	}
	b, err := l.br.Peek(2)
	var end []byte
	switch {
	case len(b) == 0 && err == io.EOF:
		return nil
	case l.last == '\r':
	case len(b) > 0 && b[0] == '\n':
		end = b[:1]
	case len(b) == 2 && b[0] == '\r' && b[1] == '\n':
		end = b[:2]
	case len(b) < 2 && err != io.EOF:
		return err
	}
	if end == nil {
		return fmt.Errorf("%w: line %d does not end at byte %d, where the run left it", errListChanged, line, n)
	}
	_, _ = l.Write(end)
	_, _ = l.br.Discard(len(end))
	return nil
}
