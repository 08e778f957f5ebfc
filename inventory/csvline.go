package inventory

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// MaxLineBytes bounds a line of a CSV list or of an S3 Inventory CSV file,
// so a file without line breaks cannot exhaust memory. S3 keys are at most
// 1,024 bytes (3 KiB URL-encoded).
const MaxLineBytes = 1 << 20

// MaxKeyBytes is S3's limit on the length of a key in UTF-8.
const MaxKeyBytes = 1024

// splitLine splits one CSV line (RFC 4180 quoting, no line breaks inside
// fields) into dst.
func splitLine(dst []string, line string) ([]string, error) {
	dst = dst[:0]
	for {
		if strings.HasPrefix(line, `"`) {
			var b strings.Builder
			rest := line[1:]
			for {
				i := strings.IndexByte(rest, '"')
				if i < 0 {
					return nil, errors.New("unterminated quoted field")
				}
				b.WriteString(rest[:i])
				rest = rest[i+1:]
				if strings.HasPrefix(rest, `"`) { // "" is a quote
					b.WriteByte('"')
					rest = rest[1:]
					continue
				}
				break
			}
			dst = append(dst, b.String())
			switch {
			case rest == "":
				return dst, nil
			case rest[0] == ',':
				line = rest[1:]
				if line == "" {
					return append(dst, ""), nil
				}
			default:
				return nil, errors.New("text after a closing quote")
			}
			continue
		}
		i := strings.IndexByte(line, ',')
		field := line
		if i >= 0 {
			field = line[:i]
		}
		if strings.IndexByte(field, '"') >= 0 {
			return nil, errors.New("quote inside an unquoted field")
		}
		dst = append(dst, field)
		if i < 0 {
			return dst, nil
		}
		line = line[i+1:]
		if line == "" {
			return append(dst, ""), nil
		}
	}
}

// listRecord is one line of a CSV list.
type listRecord struct {
	Bucket, Key, VersionID string
}

// parseListLine parses one line of a CSV list: bucket,key[,version], with
// the key URL-encoded (S3 Batch Operations' manifest format) unless raw.
// Fields may be quoted; fields after the third are ignored, so a filtered
// completion report is a valid list.
func parseListLine(line string, raw bool) (listRecord, error) {
	var buf [4]string
	fields, err := splitLine(buf[:0], line)
	if err != nil {
		return listRecord{}, err
	}
	return toListRecord(fields, raw)
}

func toListRecord(fields []string, raw bool) (listRecord, error) {
	if len(fields) < 2 {
		return listRecord{}, fmt.Errorf("want bucket,key[,version], found %d field(s)", len(fields))
	}
	var r listRecord
	r.Bucket = fields[0]
	if err := checkBucket(r.Bucket); err != nil {
		return listRecord{}, err
	}
	r.Key = fields[1]
	if !raw {
		k, err := url.QueryUnescape(r.Key)
		if err != nil {
			return listRecord{}, fmt.Errorf("key %q is not URL-encoded: %v", r.Key, err)
		}
		r.Key = k
	}
	if err := checkKey(r.Key); err != nil {
		return listRecord{}, err
	}
	if len(fields) > 2 {
		r.VersionID = fields[2]
		if strings.ContainsFunc(r.VersionID, isSpaceOrControl) {
			return listRecord{}, fmt.Errorf("version id %q contains spaces or control characters", r.VersionID)
		}
	}
	return r, nil
}

// checkBucket accepts any name S3 ever allowed (legacy names may have
// upper case and underscores) and rejects what cannot be one.
func checkBucket(b string) error {
	switch {
	case b == "":
		return errors.New("empty bucket name")
	case len(b) > 255:
		return fmt.Errorf("bucket name %.20q... is longer than 255 bytes", b)
	case strings.ContainsAny(b, "/:") || strings.ContainsFunc(b, isSpaceOrControl) || !utf8.ValidString(b):
		return fmt.Errorf("%q is not a bucket name", b)
	}
	return nil
}

func checkKey(k string) error {
	switch {
	case k == "":
		return errors.New("empty key")
	case len(k) > MaxKeyBytes:
		return fmt.Errorf("key %.40q... is longer than %d bytes", k, MaxKeyBytes)
	case !utf8.ValidString(k):
		return fmt.Errorf("key %q is not valid UTF-8", k)
	}
	return nil
}

func isSpaceOrControl(r rune) bool {
	return r <= ' ' || r == 0x7f || r == utf8.RuneError
}
