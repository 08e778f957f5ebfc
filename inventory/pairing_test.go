package inventory

import (
	"strings"
	"testing"
	"time"
)

func TestMarkNoInstructionFile(t *testing.T) {
	at := time.Unix(1700000000, 0)
	items := func(keys ...string) []Item {
		var out []Item
		for _, k := range keys {
			out = append(out, Item{Key: k})
		}
		return out
	}
	const sfx = ".instruction"
	for _, tc := range []struct {
		name string
		keys []string
		last bool
		want string // one letter per item: m marked, - not
	}{
		{"paired then plain", []string{"a", "a.instruction", "b"}, false, "---"},
		{"paired then plain, last page", []string{"a", "a.instruction", "b"}, true, "--m"},
		{"keys between KEY and KEY+suffix", []string{"a", "a-x", "a.b", "a.instruction", "a.z"}, false, "-mm--"},
		{"keys between, none paired", []string{"a", "a-x", "a.z"}, false, "mm-"},
		{"the page ends before KEY+suffix", []string{"a", "a-x"}, false, "--"},
		{"versions of a key", []string{"a", "a", "a.instruction", "b", "b", "c"}, false, "---mm-"},
		{"out of order: nothing", []string{"b", "a", "c"}, true, "---"},
		{"empty suffix: nothing", nil, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			its := items(tc.keys...)
			markNoInstructionFile(its, sfx, tc.last, at)
			var got strings.Builder
			for _, it := range its {
				if it.NoInstructionFile == sfx {
					got.WriteByte('m')
				} else {
					got.WriteByte('-')
				}
				if tc.name != "out of order: nothing" && !it.ListedAt.Equal(at) {
					t.Errorf("%s: ListedAt %v", it.Key, it.ListedAt)
				}
			}
			if got.String() != tc.want {
				t.Errorf("%v: marked %s, want %s", tc.keys, got.String(), tc.want)
			}
		})
	}
	// A delete marker is never marked; no suffix marks nothing.
	its := []Item{{Key: "a", DeleteMarker: true}, {Key: "b"}}
	markNoInstructionFile(its, sfx, true, at)
	if its[0].NoInstructionFile != "" || its[1].NoInstructionFile != sfx {
		t.Errorf("delete marker: %+v", its)
	}
	its = []Item{{Key: "a"}}
	markNoInstructionFile(its, "", true, at)
	if its[0].NoInstructionFile != "" {
		t.Errorf("no suffix: %+v", its)
	}
}

func FuzzCompareJoined(f *testing.F) {
	for _, s := range [][3]string{{"a", "a", ".i"}, {"a.i", "a", ".i"}, {"a-x", "a", ".i"}, {"", "", ""}, {"ab", "a", ""}, {"a", "ab", "c"}} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, s, a, b string) {
		if got, want := compareJoined(s, a, b), strings.Compare(s, a+b); got != want {
			t.Fatalf("compareJoined(%q, %q, %q) = %d, want %d", s, a, b, got, want)
		}
	})
}
