package inventory

import (
	"bufio"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

var errLineTooLong = fmt.Errorf("line longer than %d bytes", MaxLineBytes)

// castagnoli is the CRC-32C table (hardware-assisted on amd64 and arm64).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// lineReader reads lines of at most MaxLineBytes and counts lines and
// bytes, so a list can be resumed at a byte offset. It keeps the length
// and CRC-32C of the last line read, terminator included, so a resumed
// run can check that the bytes before its offset are still that line.
type lineReader struct {
	br      *bufio.Reader
	line    int64  // number of the last line returned
	offset  int64  // bytes consumed, terminators included
	lastLen int    // the last line's bytes, terminator included
	lastSum uint32 // their CRC-32C
	acc     []byte
}

func newLineReader(r io.Reader, line, offset int64) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, 64<<10), line: line, offset: offset}
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
		l.offset += int64(len(b))
		l.lastLen, l.lastSum = len(b), crc32.Checksum(b, castagnoli)
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
