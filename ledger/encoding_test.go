package ledger

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

var unescaper = strings.NewReplacer("%23", "#", "%25", "%")

// FuzzKeyEncoding checks the key encodings of both backends on arbitrary
// strings: the bbolt tuple keys decode to their parts, keep their order and
// never collide; the DynamoDB sort keys are free of '#' inside a field and
// reversible; the partition key depends on bucket and key exactly.
func FuzzKeyEncoding(f *testing.F) {
	for _, id := range oddIDs {
		f.Add(id.Bucket, id.Key, id.VersionID)
	}
	f.Add("a\x00", "\x00\xff", "\x00\x01")
	f.Add("", "", "")
	f.Fuzz(func(t *testing.T, a, b, c string) {
		k := tupleKey(a, b, c)
		parts, err := splitTuple(k)
		if err != nil || !slices.Equal(parts, []string{a, b, c}) {
			t.Fatalf("tuple %q decodes to %q, %v", []string{a, b, c}, parts, err)
		}
		if !bytes.HasPrefix(k, tupleKey(a, b)) {
			t.Fatalf("tuple of a prefix is not a prefix")
		}
		if got, want := bytes.Compare(tupleKey(a), tupleKey(b)), strings.Compare(a, b); got != want {
			t.Fatalf("order of %q, %q: %d, want %d", a, b, got, want)
		}
		if a+b != b+a && bytes.Equal(tupleKey(a+b, c), tupleKey(b+a, c)) {
			t.Fatalf("collision")
		}
		if b != "" && bytes.Equal(tupleKey(a, b+c), tupleKey(a+b, c)) {
			t.Fatalf("tuples (%q,%q) and (%q,%q) collide", a, b+c, a+b, c)
		}

		e := escape(c)
		if strings.Contains(e, "#") || unescaper.Replace(e) != c {
			t.Fatalf("escape(%q) = %q", c, e)
		}
		sk := eventSK(c, "run-1", "rewrap")
		fields := strings.Split(sk, "#")
		if len(fields) != 4 || unescaper.Replace(fields[1]) != c {
			t.Fatalf("event sort key %q does not split back", sk)
		}
		if a != b && versionSK(a) == versionSK(b) {
			t.Fatalf("versions %q and %q share a sort key", a, b)
		}
		if b != "" && objectPK(a, b+c) == objectPK(a+b, c) {
			t.Fatalf("objects (%q,%q) and (%q,%q) share a partition key", a, b+c, a+b, c)
		}
	})
}

// TestObjectPK pins the partition key encoding, which tables in use depend
// on: "obj#" and the first 16 bytes of SHA-256("11:data-bucket5:a#b/c"), as
// `printf '%s' '11:data-bucket5:a#b/c' | sha256sum | cut -c1-32` shows.
func TestObjectPK(t *testing.T) {
	if got, want := objectPK("data-bucket", "a#b/c"), "obj#"+WrappedKeyFingerprint([]byte("11:data-bucket5:a#b/c"))[:32]; got != want {
		t.Fatalf("objectPK = %s, want %s", got, want)
	}
	if got, want := objectPK("data-bucket", "a#b/c"), "obj#8c4114365227ac8a3394b58b8e181ad1"; got != want {
		t.Fatalf("objectPK = %s, want %s", got, want)
	}
	if got, want := eventSK("v#1%", "run-1", OpDeleteVersion), "evt#v%231%25#run-1#delete-version"; got != want {
		t.Fatalf("eventSK = %s, want %s", got, want)
	}
	if got, want := versionSK(""), "ver#"; got != want {
		t.Fatalf("versionSK of the null version = %s, want %s", got, want)
	}
	// SHA-256 of keyA: fd39736466b1c3ed... (printf %s "$keyA" | sha256sum).
	if got, want := shardOf(keyA, 15), "#fd39736466b1c3ed#f"; got != want {
		t.Fatalf("shardOf = %s, want %s", got, want)
	}
	if got, want := legacyShardOf(keyA, 15), keyA+"#f"; got != want {
		t.Fatalf("legacyShardOf = %s, want %s", got, want)
	}
}
