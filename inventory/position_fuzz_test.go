package inventory

import (
	"context"
	"errors"
	"os"
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
// a panic). A cursor that decodes has a line and an offset that are not
// negative, and re-encodes to fields that decode to it.
func FuzzParseListCursor(f *testing.F) {
	for _, s := range []string{"17 4096", "300 3000 1a2b3c4d", "0 0", "1 1 0", "-1 2", "1 2 3 4", "1 5 100000000", "1 2 g", "1 -2 ff", "1 2 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, ok := parseListCursor(strings.Split(s, " "))
		if !ok {
			return
		}
		if c.line < 0 || c.offset < 0 {
			t.Fatalf("%q decoded to %+v", s, c)
		}
		again, ok := parseListCursor(strings.Split(c.String(), " "))
		if !ok || again != c {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", s, c, c.String(), again, ok)
		}
	})
}

// FuzzListResume reads an arbitrary list, then resumes it after each item
// from that item's position: the resumed run delivers exactly the items
// after it (same keys, lines and positions), and a list whose bytes before
// the position changed is refused with ErrPosition, never read on.
func FuzzListResume(f *testing.F) {
	for _, s := range []string{
		"b,k1\nb,k2\nb,k3\n", "b,k1\r\n\r\nb,k2", "\ufeffBucket,Key\nb,a%20b\nb,c,v1\n", "b,k1\n\n\nb,k2\r\nb,k3",
		"b,\"x,y\"\nb,z\n", "b,k",
	} {
		f.Add(s, uint8(3))
	}
	f.Fuzz(func(t *testing.T, content string, flip uint8) {
		if len(content) > 4096 {
			return
		}
		dir := t.TempDir()
		p := dir + "/list.csv"
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		var all []Item
		if err := (&CSVList{Path: p, RawKeys: true}).Stream(context.Background(), func(it Item) error {
			all = append(all, it)
			return nil
		}); err != nil {
			return // a malformed list: nothing to resume
		}
		for i, it := range all {
			var rest []Item
			err := (&CSVList{Path: p, RawKeys: true, Options: Options{After: []string{it.Position}}}).Stream(context.Background(), func(it Item) error {
				rest = append(rest, it)
				return nil
			})
			if err != nil {
				t.Fatalf("resume after item %d (%q): %v", i, it.Position, err)
			}
			if len(rest) != len(all)-i-1 {
				t.Fatalf("resume after item %d: %d items, want %d", i, len(rest), len(all)-i-1)
			}
			for j, r := range rest {
				if w := all[i+1+j]; r.Key != w.Key || r.Bucket != w.Bucket || r.VersionID != w.VersionID || r.Position != w.Position {
					t.Fatalf("resume after item %d: item %d is %+v, want %+v", i, j, r, w)
				}
			}
		}
		if len(all) == 0 {
			return
		}
		// One byte before the last item's position changed: refused.
		c, _ := parseListCursor(strings.Split(all[len(all)-1].Position[strings.LastIndexByte(all[len(all)-1].Position, '#')+1:], " "))
		b := []byte(content)
		b[int64(flip)%c.offset] ^= 0x01
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		err := (&CSVList{Path: p, RawKeys: true, Options: Options{After: []string{all[len(all)-1].Position}}}).Stream(context.Background(), func(Item) error { return nil })
		if !errors.Is(err, ErrPosition) {
			t.Fatalf("a byte of the first %d changed, resumed: %v, want ErrPosition", c.offset, err)
		}
	})
}
