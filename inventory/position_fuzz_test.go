package inventory

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// encodePosition writes a position as the sources do: the partition's
// fields after the version (kind first), '#', the cursor's fields.
func encodePosition(fields, cursor []string) string {
	return joinFields(append([]string{positionVersion}, fields...)...) + "#" + joinFields(cursor...)
}

// FuzzParsePosition decodes arbitrary strings as resume positions (never
// a panic; a refusal is an ErrPosition). A position that decodes has a
// kind, its partition id is the text before its last '#' (what
// partitionID and the sources key partitions by), and it re-encodes to a
// position that decodes to the same fields and cursor and re-encodes to
// itself; parsePositions keys it by its partition, refuses it for another
// kind and refuses it twice. Positions built from the fuzzer's strings,
// as the sources build them, decode to those strings and re-encode to
// the same text.
func FuzzParsePosition(f *testing.F) {
	for _, s := range []string{
		encodePosition([]string{kindListing, "bkt", "root/", "current", "/", "2", "all", "root/a/b/"}, []string{"root/a/b/key 1#x", "v1"}),
		encodePosition([]string{kindListing, "bkt", "", "versions", "", "0", "level", ""}, []string{"", ""}),
		encodePosition([]string{kindInventory, "s3://inv/bkt/cfg/2026-01-01T00-00Z/manifest.json", "data/3f9c.csv.gz"}, []string{"1234", "last"}),
		encodePosition([]string{kindList, "/tmp/keys list.csv"}, []string{"17", "4096"}),
		"1 c %2Ftmp%2Fx#1 2", "1 l#", "1#x", "2 c x#1 2", "1 c x", "1 c %zz#1 2", "1 c x#%", "#", "", "1 c a#b#c",
		"1  c#1 2", "1 c+x#1+2", "1 c %78#1 2",
	} {
		f.Add(s, "bkt", "a/b c#%+é", "v1")
	}
	f.Fuzz(func(t *testing.T, pos, a, b, c string) {
		kinds := []string{kindListing, kindInventory, kindList}
		p, err := parsePosition(pos)
		if err != nil {
			if !errors.Is(err, ErrPosition) {
				t.Fatalf("parsePosition(%q): %v, not an ErrPosition", pos, err)
			}
			for _, k := range kinds {
				if _, err := parsePositions([]string{pos}, k); !errors.Is(err, ErrPosition) {
					t.Fatalf("parsePositions([%q], %q) = %v, want ErrPosition", pos, k, err)
				}
			}
		} else {
			if len(p.fields) == 0 || len(p.cursor) == 0 {
				t.Fatalf("parsePosition(%q) = %+v: no kind or no cursor", pos, p)
			}
			if i := strings.LastIndexByte(pos, '#'); p.part != pos[:i] || partitionID(pos) != p.part {
				t.Fatalf("parsePosition(%q): partition %q, partitionID %q", pos, p.part, partitionID(pos))
			}
			enc := encodePosition(p.fields, p.cursor)
			q, err := parsePosition(enc)
			if err != nil || !slices.Equal(q.fields, p.fields) || !slices.Equal(q.cursor, p.cursor) {
				t.Fatalf("%q re-encoded to %q, which decodes to %+v, %v; want %+v", pos, enc, q, err, p)
			}
			if again := encodePosition(q.fields, q.cursor); again != enc {
				t.Fatalf("%q re-encoded to %q, then to %q", pos, enc, again)
			}
			for _, k := range kinds {
				m, err := parsePositions([]string{pos}, k)
				switch {
				case k == p.kind() && (err != nil || len(m) != 1 || m[p.part].part != p.part):
					t.Fatalf("parsePositions([%q], %q) = %+v, %v", pos, k, m, err)
				case k != p.kind() && !errors.Is(err, ErrPosition):
					t.Fatalf("parsePositions([%q], %q) of kind %q: %v, want ErrPosition", pos, k, p.kind(), err)
				}
			}
			if _, err := parsePositions([]string{pos, pos}, p.kind()); !errors.Is(err, ErrPosition) {
				t.Fatalf("parsePositions: %q twice: %v, want ErrPosition", pos, err)
			}
		}

		// A position built from the fuzzer's strings.
		fields, cursor := []string{kindListing, a, b, c}, []string{c, a}
		built := encodePosition(fields, cursor)
		p, err = parsePosition(built)
		if err != nil || !slices.Equal(p.fields, fields) || !slices.Equal(p.cursor, cursor) {
			t.Fatalf("%q (fields %q, cursor %q) decodes to %+v, %v", built, fields, cursor, p, err)
		}
		if encodePosition(p.fields, p.cursor) != built || partitionID(built) != p.part || p.part != joinFields(append([]string{positionVersion}, fields...)...) {
			t.Fatalf("%q decodes to %+v, which does not re-encode to it", built, p)
		}
	})
}

// FuzzParseListCursor decodes arbitrary cursor fields as a list's (never
// a panic). A cursor that decodes has a line, an offset no smaller than
// its last line's length, and a length of 0 (two fields) or within a
// line's bounds; with four fields it re-encodes to a cursor that decodes
// to itself.
func FuzzParseListCursor(f *testing.F) {
	for _, s := range []string{"17 4096", "300 3000 10 1a2b3c4d", "0 0", "1 1 1 0", "1 0 1 0", "-1 2", "1 2 0 ff", "1 2 3", "1 5 2 100000000", "1 2 2 g"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, ok := parseListCursor(strings.Split(s, " "))
		if !ok {
			return
		}
		if c.line < 0 || c.offset < int64(c.lastLen) || c.lastLen < 0 || c.lastLen > MaxLineBytes+2 {
			t.Fatalf("%q decoded to %+v", s, c)
		}
		if c.lastLen == 0 {
			return
		}
		again, ok := parseListCursor(strings.Split(c.String(), " "))
		if !ok || again != c {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", s, c, c.String(), again, ok)
		}
	})
}
