package inventory

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rotator-dev/rotator/internal/awsx"
)

// CSVList is a source that reads a list of objects, one per line:
//
//	bucket,key[,version]
//
// the format of S3 Batch Operations' CSV manifests: keys URL-encoded
// (url.QueryEscape; "+" and "%20" both decode to a space), version ids as
// they are. With RawKeys keys are taken as they are; a key with a comma or
// a quote must then be quoted as in RFC 4180 ("a,b" and "say ""hi"""). A
// key with a line break can only be given URL-encoded.
//
// Blank lines are ignored, as are a first line "Bucket,Key,..." (the header
// of a completion report) and fields after the third, so a completion
// report, filtered, is a valid list. CR LF line ends and a UTF-8 byte order
// mark are accepted. A malformed line stops the stream with an *Error
// naming the file and line (Kind ErrMalformed).
//
// A list is one partition, read in file order by one goroutine; positions
// are line numbers, byte offsets and the CRC-32C of the list's bytes up to
// the offset. A resumed run reads the list from its start again, checks
// the bytes up to its position, and stops with ErrPosition when they
// differ (the list was edited, replaced or cut short since the run read
// it) rather than read on from an offset that may no longer fall after
// the same objects; then it reads on. Lines added at the end are read, as
// in any resumed run. Checking costs a read of what the run had read (a
// GET of the list from its start for an s3:// list).
type CSVList struct {
	// Client reads s3:// lists; it may be nil for a local file.
	Client S3
	// Path is a local file or an s3://bucket/key URL.
	Path string
	// RawKeys: keys are not URL-encoded.
	RawKeys bool
	Options

	excluded atomic.Int64
	// readBytes of totalBytes, the list's size: Fraction.
	readBytes, totalBytes atomic.Int64
}

var _ Source = (*CSVList)(nil)

// listBatch is the number of items a list producer hands over at once.
const listBatch = 256

// Excluded returns the keys skipped for Options.ExcludeSuffix so far.
func (l *CSVList) Excluded() int64 { return l.excluded.Load() }

// Stream reads the list.
func (l *CSVList) Stream(ctx context.Context, fn func(Item) error) error {
	if err := l.Shard.Validate(); err != nil {
		return &Error{Op: "read list", File: l.Path, Err: err}
	}
	part := joinFields(positionVersion, kindList, l.Path)
	after, err := parsePositions(l.After, kindList)
	if err != nil {
		return &Error{Op: "resume", File: l.Path, Err: err, Hint: "resume with the positions of a run over the same --list"}
	}
	var c listCursor
	for id, p := range after {
		var ok bool
		if c, ok = parseListCursor(p.cursor); id != part || !ok {
			return &Error{Op: "resume", File: l.Path, Kind: ErrPosition, Err: fmt.Errorf("position %q is not one of this list", p.part),
				Hint: "resume with the positions of a run over the same --list"}
		}
	}
	// A resumed list is read from its first byte: up to the position,
	// to check the bytes against its sum. A position written before
	// positions held a sum cannot be checked; its bytes are read all the
	// same, so that the positions this run writes hold the sum of all.
	r, err := l.open(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	lr := newLineReader(r)
	err = lr.verify(ctx, c)
	l.readBytes.Store(lr.offset)
	if errors.Is(err, errListChanged) {
		return &Error{Op: "resume", File: l.Path, Kind: ErrPosition, Err: err,
			Hint: "the list changed since the run read it: resume with the list the run began with, or start a new run (rotator run) over the new list"}
	} else if err != nil {
		return &Error{Op: "read list", File: l.Path, Err: err}
	}
	f := l.filter(&l.excluded, l.Client)
	return deliver(ctx, 2, fn, func(ctx context.Context, out emitter) error {
		return l.read(ctx, lr, part, f, out)
	})
}

// open opens the list at its start.
func (l *CSVList) open(ctx context.Context) (io.ReadCloser, error) {
	if !strings.HasPrefix(l.Path, "s3://") {
		f, err := os.Open(l.Path)
		if err != nil {
			e := &Error{Op: "read list", File: l.Path, Err: err}
			if errors.Is(err, os.ErrNotExist) {
				e.Kind = ErrNotFound
			}
			return nil, e
		}
		if st, err := f.Stat(); err == nil {
			l.totalBytes.Store(st.Size())
		}
		return f, nil
	}
	bucket, key, err := ParseS3URL(l.Path)
	if err == nil && key == "" {
		err = errors.New("no key")
	}
	if err != nil {
		return nil, &Error{Op: "read list", File: l.Path, Err: err, Hint: "give --list as FILE or s3://BUCKET/KEY"}
	}
	if l.Client == nil {
		return nil, &Error{Op: "read list", File: l.Path, Err: errors.New("no S3 client")}
	}
	in := &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}
	obj, err := awsx.GetObject(ctx, l.Client, in)
	if err != nil {
		return nil, (&Error{Op: "read list", File: l.Path, Err: err}).classify("reading the list needs s3:GetObject on " + l.Path)
	}
	if obj.ContentLength != nil {
		l.totalBytes.Store(*obj.ContentLength)
	}
	return obj.Body, nil
}

func (l *CSVList) read(ctx context.Context, lr *lineReader, part string, f filter, out emitter) error {
	pf := f.partition()
	batch := make([]Item, 0, listBatch)
	var fields []string
	pos := append([]byte(part), '#') // an item's position, built in place
	for {
		s, err := lr.next()
		l.readBytes.Store(lr.offset)
		if errors.Is(err, io.EOF) {
			return out.send(batch)
		}
		if err != nil {
			e := &Error{Op: "read list", File: l.Path, Line: lr.line, Err: err}
			if errors.Is(err, errLineTooLong) {
				e.Kind = ErrMalformed
				e.Hint = "a list has one object per line"
			}
			return e
		}
		if lr.line == 1 {
			s = strings.TrimPrefix(s, "\ufeff")
		}
		if strings.TrimSpace(s) == "" {
			continue
		}
		fields, err = splitLine(fields, s)
		if err == nil && lr.line == 1 && len(fields) >= 2 &&
			strings.EqualFold(fields[0], "bucket") && strings.EqualFold(fields[1], "key") {
			continue // a completion report's header
		}
		var rec listRecord
		if err == nil {
			rec, err = toListRecord(fields, l.RawKeys)
		}
		if err != nil {
			hint := "each line is bucket,key[,version] with the key URL-encoded, as in S3 Batch Operations manifests"
			if !l.RawKeys {
				hint += " (--list-raw-keys for keys that are not encoded)"
			}
			return &Error{Op: "read list", File: l.Path, Line: lr.line, Kind: ErrMalformed, Err: err, Hint: hint}
		}
		keep, unpaired, err := pf.keep(ctx, rec.Bucket, rec.Key)
		if err != nil {
			return err
		}
		if !keep {
			continue
		}
		pos = listCursor{line: lr.line, offset: lr.offset, sum: lr.sum, checked: true}.appendTo(pos[:len(part)+1])
		batch = append(batch, Item{
			Bucket:         rec.Bucket,
			Key:            rec.Key,
			VersionID:      rec.VersionID,
			IsLatest:       rec.VersionID == "",
			UnpairedSuffix: unpaired,
			Position:       string(pos),
		})
		if len(batch) == listBatch {
			if err := out.send(batch); err != nil {
				return err
			}
			batch = make([]Item, 0, listBatch)
		}
	}
}

// listCursor is the cursor of a list's position: the line reached, the
// byte offset after it, and the CRC-32C of the list's bytes up to that
// offset. A cursor of two fields, as rotator wrote before it kept the
// sum, is not checked.
type listCursor struct {
	line, offset int64
	sum          uint32
	checked      bool
}

func (c listCursor) String() string { return string(c.appendTo(nil)) }

// appendTo appends the cursor's fields to b.
func (c listCursor) appendTo(b []byte) []byte {
	b = strconv.AppendInt(b, c.line, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, c.offset, 10)
	if c.checked {
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(c.sum), 16)
	}
	return b
}

func parseListCursor(f []string) (listCursor, bool) {
	if len(f) != 2 && len(f) != 3 {
		return listCursor{}, false
	}
	var c listCursor
	var err [3]error
	c.line, err[0] = strconv.ParseInt(f[0], 10, 64)
	c.offset, err[1] = strconv.ParseInt(f[1], 10, 64)
	if len(f) == 3 {
		var sum uint64
		sum, err[2] = strconv.ParseUint(f[2], 16, 32)
		c.sum, c.checked = uint32(sum), true
	}
	if errors.Join(err[:]...) != nil || c.line < 0 || c.offset < 0 {
		return listCursor{}, false
	}
	return c, true
}
