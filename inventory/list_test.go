package inventory

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

func writeFile(t testing.TB, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "list.csv")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCSVList(t *testing.T) {
	t.Parallel()
	content := "\ufeffBucket,Key,VersionId,Status\r\n" + // a completion report's header, with a BOM
		"bkt,plain/key\r\n" +
		"\n" +
		"  \n" +
		"bkt,sp%20ace+plus%2Bpct%25,v1\n" +
		"bkt,%C3%BCn%C3%AF%2C%22q%22,,failed,AccessDenied,\"a, message\"\n" +
		"\"bkt\",\"quoted/key\",\"v\"\"2\"\n" +
		"other.bucket,a/x.instruction,v9\n" +
		"Legacy_Bucket,last" // no final line break
	p := writeFile(t, content)
	l := &CSVList{Path: p, Options: Options{ExcludeSuffix: DefaultExcludeSuffix}}
	items := collect(t, l)
	want := []Item{
		{Bucket: "bkt", Key: "plain/key", IsLatest: true},
		{Bucket: "bkt", Key: "sp ace plus+pct%", VersionID: "v1"},
		{Bucket: "bkt", Key: `ünï,"q"`, IsLatest: true},
		{Bucket: "bkt", Key: "quoted/key", VersionID: `v"2`},
		{Bucket: "Legacy_Bucket", Key: "last", IsLatest: true},
	}
	if len(items) != len(want) {
		t.Fatalf("got %d items, want %d: %+v", len(items), len(want), items)
	}
	for i, it := range items {
		pos := it.Position
		it.Position = ""
		if it != want[i] {
			t.Errorf("item %d: %+v, want %+v", i, it, want[i])
		}
		if partitionID(pos) == "" {
			t.Errorf("item %d: position %q", i, pos)
		}
	}
	if l.Excluded() != 1 {
		t.Errorf("excluded %d, want 1", l.Excluded())
	}

	raw := collect(t, &CSVList{Path: writeFile(t, "b,a%20b+c\nb,\"x,y\",v\n"), RawKeys: true})
	if len(raw) != 2 || raw[0].Key != "a%20b+c" || raw[1].Key != "x,y" || raw[1].VersionID != "v" {
		t.Errorf("raw keys: %+v", raw)
	}
}

func TestCSVListMalformed(t *testing.T) {
	t.Parallel()
	long := "b," + strings.Repeat("k", MaxLineBytes) + "\n"
	for _, tc := range []struct {
		name, content string
		line          int64
	}{
		{"one field", "b,k\nbucket-only\n", 2},
		{"empty bucket", ",k\n", 1},
		{"empty key", "b,k\n\nb,\n", 3},
		{"bad escape", "b,k%zz\n", 1},
		{"bucket with slash", "b/c,k\n", 1},
		{"bucket with space", "b c,k\n", 1},
		{"unterminated quote", "b,\"k\n", 1},
		{"text after quote", "b,\"k\"x\n", 1},
		{"bare quote", "b,k\"x\n", 1},
		{"version with space", "b,k,v 1\n", 1},
		{"key too long", "b," + strings.Repeat("k", 1025) + "\n", 1},
		{"invalid utf-8", "b,%FF\n", 1},
		{"line too long", "b,k\n" + long, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := (&CSVList{Path: writeFile(t, tc.content)}).Stream(context.Background(), func(Item) error { return nil })
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrMalformed) || e.Line != tc.line || e.Hint == "" {
				t.Fatalf("stream: %v, want ErrMalformed at line %d with a hint", err, tc.line)
			}
			if want := fmt.Sprintf(":%d: ", tc.line); !strings.Contains(err.Error(), want) {
				t.Errorf("%q does not name the line", err)
			}
		})
	}
}

func TestCSVListResume(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	var want []string
	for i := range 1000 {
		if i%7 == 0 {
			b.WriteString("\r\n")
		}
		fmt.Fprintf(&b, "bkt,k%%2F%04d,v%d\r\n", i, i)
		want = append(want, fmt.Sprintf("k/%04d@v%d", i, i))
	}
	slices.Sort(want)
	p := writeFile(t, b.String())
	for _, stop := range []int{1, 255, 256, 257, 999} {
		mk := func(after []string) Source { return &CSVList{Path: p, Options: Options{After: after}} }
		run1, run2 := interruptAndResume(t, mk(nil), stop, mk)
		if len(run1) != stop || len(run2) != 1000-stop {
			t.Errorf("stop %d: %d + %d items", stop, len(run1), len(run2))
		}
		all := append(ids(run1), ids(run2)...)
		slices.Sort(all)
		sameIDs(t, all, want)
	}
	// A position of another list.
	other := &CSVList{Path: writeFile(t, "b,k\n")}
	var pos string
	_ = other.Stream(context.Background(), func(it Item) error { pos = it.Position; return nil })
	err := (&CSVList{Path: p, Options: Options{After: []string{pos}}}).Stream(context.Background(), func(Item) error { return nil })
	if !errors.Is(err, ErrPosition) {
		t.Errorf("position of another list: %v", err)
	}
}

// TestCSVListResumeChangedList: a run resumed over a list that changed
// before its offset stops with ErrPosition (it would otherwise read on
// from an offset that falls after other objects than the ones done, and
// pass over some never done); lines added at the end are read; a position
// of two fields, as rotator wrote before it kept the line's sum, still
// resumes.
func TestCSVListResumeChangedList(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	for i := range 600 {
		fmt.Fprintf(&b, "bkt,k%04d\n", i)
	}
	orig := b.String()
	// The positions of a run that did the first 300 objects.
	p := writeFile(t, orig)
	pr := NewProgress(nil)
	n := 0
	errStop := errors.New("stop")
	err := (&CSVList{Path: p}).Stream(context.Background(), func(it Item) error {
		if n == 300 {
			return errStop
		}
		n++
		pr.Done(pr.Begin(it))
		return nil
	})
	if !errors.Is(err, errStop) {
		t.Fatal(err)
	}
	after := pr.Positions()
	if len(after) != 1 || !strings.HasSuffix(after[0], "#300 3000 "+strconv.FormatUint(uint64(crc32.Checksum([]byte(orig[:3000]), castagnoli)), 16)) {
		t.Fatalf("position %q: want line 300, offset 3000 and the sum of the bytes before it", after)
	}
	resume := func(content string) ([]Item, error) {
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		var got []Item
		err := (&CSVList{Path: p, Options: Options{After: after}}).Stream(context.Background(), func(it Item) error {
			got = append(got, it)
			return nil
		})
		return got, err
	}
	for _, c := range []struct{ name, content string }{
		{"a line inserted before the offset", "bkt,new\n" + orig},
		{"a line removed before the offset", orig[10:]},
		{"the last line read replaced, same length", strings.Replace(orig, "k0299", "k9299", 1)},
		{"an early line replaced, same length (every offset as it was)", strings.Replace(orig, "k0005", "k9005", 1)},
		{"cut short before the offset", orig[:2995]},
		{"cut short at the line before", orig[:2990]},
		{"emptied", ""},
		{"CR LF line ends", strings.ReplaceAll(orig, "\n", "\r\n")},
	} {
		got, err := resume(c.content)
		var e *Error
		if !errors.Is(err, ErrPosition) || !errors.As(err, &e) || !strings.Contains(e.Error(), "lines 1 to 300") || !strings.Contains(e.Hint, "changed") {
			t.Errorf("%s: %d items, %v; want ErrPosition naming lines 1 to 300, with a hint", c.name, len(got), err)
		}
	}
	// Unchanged, and with lines added at the end: read on from the offset.
	for _, c := range []struct {
		content string
		n       int
		last    string
	}{{orig, 300, "k0599"}, {orig + "bkt,more\n", 301, "more"}} {
		got, err := resume(c.content)
		if err != nil || len(got) != c.n || got[0].Key != "k0300" || got[c.n-1].Key != c.last {
			t.Errorf("resume over %d bytes: %d items, %v", len(c.content), len(got), err)
		}
	}
	// A last line read without its terminator may be followed by one
	// (and more lines), not extended.
	short := orig[:2999] // ends "bkt,k0299"
	if err := os.WriteFile(p, []byte(short), 0o600); err != nil {
		t.Fatal(err)
	}
	var endPos string
	if err := (&CSVList{Path: p}).Stream(context.Background(), func(it Item) error { endPos = it.Position; return nil }); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		content string
		keys    []string
	}{{short, nil}, {short + "\n", nil}, {short + "\r\nbkt,more\n", []string{"more"}}, {short + "\nbkt,more", []string{"more"}}} {
		if err := os.WriteFile(p, []byte(c.content), 0o600); err != nil {
			t.Fatal(err)
		}
		var keys []string
		err := (&CSVList{Path: p, Options: Options{After: []string{endPos}}}).Stream(context.Background(), func(it Item) error {
			keys = append(keys, it.Key)
			return nil
		})
		if err != nil || !slices.Equal(keys, c.keys) {
			t.Errorf("resume at an unterminated last line, list %q: %v, %v; want %v", c.content[2990:], keys, err, c.keys)
		}
	}
	for _, ext := range []string{"0\n", "\r", "\r0\n"} {
		if err := os.WriteFile(p, []byte(short+ext), 0o600); err != nil {
			t.Fatal(err)
		}
		err := (&CSVList{Path: p, Options: Options{After: []string{endPos}}}).Stream(context.Background(), func(Item) error { return nil })
		if !errors.Is(err, ErrPosition) || !strings.Contains(err.Error(), "line 300 does not end at byte 2999, where the run left it") {
			t.Errorf("the unterminated last line extended by %q: %v, want ErrPosition", ext, err)
		}
	}
	// A last line read as "bkt,k0299\r" (the key ends in CR) may not gain
	// a LF: the CR would become part of the line end, the key another.
	if err := os.WriteFile(p, []byte(short+"\r"), 0o600); err != nil {
		t.Fatal(err)
	}
	var crPos string
	if err := (&CSVList{Path: p, RawKeys: true}).Stream(context.Background(), func(it Item) error { crPos = it.Position; return nil }); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ext  string
		want error
	}{{"", nil}, {"\n", ErrPosition}, {"\nbkt,more\n", ErrPosition}} {
		if err := os.WriteFile(p, []byte(short+"\r"+c.ext), 0o600); err != nil {
			t.Fatal(err)
		}
		err := (&CSVList{Path: p, RawKeys: true, Options: Options{After: []string{crPos}}}).Stream(context.Background(), func(Item) error { return nil })
		if !errors.Is(err, c.want) || (c.want == nil && err != nil) {
			t.Errorf("a last line ending in CR, then %q: %v, want %v", c.ext, err, c.want)
		}
	}
	// The check stops when the run is cancelled.
	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := (&CSVList{Path: p, Options: Options{After: after}}).Stream(cctx, func(Item) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled resume: %v, want context.Canceled", err)
	}
	// A position written before lists were summed: read on, unchecked.
	old := after[0][:strings.LastIndexByte(after[0], '#')] + "#300 3000"
	if err := os.WriteFile(p, []byte(orig), 0o600); err != nil {
		t.Fatal(err)
	}
	got := collect(t, &CSVList{Path: p, Options: Options{After: []string{old}}})
	if len(got) != 300 || got[0].Key != "k0300" {
		t.Fatalf("a position of two fields: %d items", len(got))
	}
	// ... and the positions of that resumed run hold the sum of the whole
	// list up to them, so the next resume checks them and reads on.
	again := collect(t, &CSVList{Path: p, Options: Options{After: []string{got[99].Position}}})
	if len(again) != 200 || again[0].Key != "k0400" || again[0].Position != got[100].Position {
		t.Errorf("a position written after a resume from one of two fields: %d items", len(again))
	}
}

func TestCSVListS3(t *testing.T) {
	t.Parallel()
	c := stackS3(t)
	bucket := newBucket(t, c, false)
	var b strings.Builder
	for i := range 600 {
		fmt.Fprintf(&b, "%s,dir%%2Fk%03d\n", bucket, i)
	}
	putObject(t, c, bucket, "lists/run.csv", []byte(b.String()))
	url := "s3://" + bucket + "/lists/run.csv"
	src, err := Open(context.Background(), c, Spec{List: url})
	if err != nil {
		t.Fatal(err)
	}
	if items := collect(t, src); len(items) != 600 || items[599].Key != "dir/k599" {
		t.Fatalf("got %d items", len(items))
	}
	mk := func(after []string) Source { return &CSVList{Client: c, Path: url, Options: Options{After: after}} }
	run1, run2 := interruptAndResume(t, mk(nil), 300, mk)
	if len(run1) != 300 || len(run2) != 300 || run2[0].Key != "dir/k300" {
		t.Errorf("resume: %d + %d items", len(run1), len(run2))
	}
	// Resuming a list that was done: read and checked to its end.
	p := NewProgress(nil)
	for _, it := range collect(t, mk(nil)) {
		p.Done(p.Begin(it))
	}
	if rest := collect(t, mk(p.Positions())); len(rest) != 0 {
		t.Errorf("a finished list resumed with %d items", len(rest))
	}
	// The list replaced by a shorter one: the resumed run stops rather
	// than take it for a finished one.
	putObject(t, c, bucket, "lists/run.csv", []byte(b.String()[:100]))
	err = mk(p.Positions()).Stream(context.Background(), func(Item) error { return nil })
	if !errors.Is(err, ErrPosition) {
		t.Errorf("a list cut short, resumed: %v, want ErrPosition", err)
	}
	// A key before the position changed, every offset as it was.
	putObject(t, c, bucket, "lists/run.csv", []byte(strings.Replace(b.String(), "k007", "k907", 1)))
	err = mk(p.Positions()).Stream(context.Background(), func(Item) error { return nil })
	if !errors.Is(err, ErrPosition) {
		t.Errorf("a list with a key changed, resumed: %v, want ErrPosition", err)
	}
	// Lines added at the end are read.
	putObject(t, c, bucket, "lists/run.csv", []byte(b.String()+bucket+",added\n"))
	if rest := collect(t, mk(p.Positions())); len(rest) != 1 || rest[0].Key != "added" {
		t.Errorf("a list with a line added, resumed: %d items", len(rest))
	}
	_, err = Open(context.Background(), c, Spec{List: "s3://" + bucket + "/lists/missing.csv"})
	if err != nil {
		t.Fatalf("open does not read an s3:// list: %v", err)
	}
	err = (&CSVList{Client: c, Path: "s3://" + bucket + "/lists/missing.csv"}).Stream(context.Background(), func(Item) error { return nil })
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("missing list: %v", err)
	}
}

func TestOpen(t *testing.T) {
	t.Parallel()
	f := &fakeS3{}
	ctx := context.Background()
	list := writeFile(t, "b,k\n")
	for _, tc := range []struct {
		spec Spec
		ok   bool
	}{
		{Spec{Source: "s3://bucket"}, true},
		{Spec{Source: "s3://bucket/prefix/", AllVersions: true, FanOutDepth: 2}, true},
		{Spec{List: list}, true},
		{Spec{List: "s3://b/list.csv"}, true},
		{Spec{}, false},
		{Spec{Source: "s3://b", List: list}, false},
		{Spec{Source: "bucket/prefix"}, false},
		{Spec{Source: "s3://"}, false},
		{Spec{Source: "s3://b", Options: Options{Shard: Shard{Index: 3, Count: 3}}}, false},
		{Spec{List: list, AllVersions: true}, false},
		{Spec{List: filepath.Join(t.TempDir(), "missing")}, false},
		{Spec{List: "s3://b"}, false},
		{Spec{Inventory: "s3://b"}, false},
	} {
		_, err := Open(ctx, f, tc.spec)
		if (err == nil) != tc.ok {
			t.Errorf("Open(%+v): %v", tc.spec, err)
		}
	}
	src, err := Open(ctx, f, Spec{Source: "s3://bucket/pre/fix", FanOutDepth: 1, Options: Options{Workers: 3}})
	if l, ok := src.(*Listing); err != nil || !ok || l.Bucket != "bucket" || l.Prefix != "pre/fix" || l.Depth != 1 || l.Workers != 3 {
		t.Errorf("Open: %+v, %v", src, err)
	}
}

// TestCSVListMemory streams a list of a million objects and checks that
// the live heap stays flat: a memory bound, not a timing.
func TestCSVListMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 50 MB list")
	}
	const n = 1_000_000
	p := filepath.Join(t.TempDir(), "million.csv")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	for i := range n {
		fmt.Fprintf(w, "bucket-%d,tenant-%03d%%2Fobject-%07d.bin,v%07d\n", i%3, i%1000, i, i)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()

	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	base := heap()
	const bound = 16 << 20
	var count int
	var peak uint64
	err = (&CSVList{Path: p}).Stream(context.Background(), func(it Item) error {
		count++
		if count%200_000 == 0 {
			if h := heap(); h > peak {
				peak = h
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if count != n {
		t.Fatalf("streamed %d items, want %d", count, n)
	}
	grow := int64(peak) - int64(base)
	t.Logf("live heap: %d KiB before, %d KiB at most while streaming %d items", base>>10, peak>>10, n)
	if grow > bound {
		t.Errorf("live heap grew by %d MiB while streaming, want < %d MiB", grow>>20, bound>>20)
	}
}

func BenchmarkCSVList(b *testing.B) {
	var sb strings.Builder
	for i := range 100_000 {
		fmt.Fprintf(&sb, "bucket,tenant-%03d%%2Fobject-%07d.bin,v%07d\n", i%1000, i, i)
	}
	p := writeFile(b, sb.String())
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		if err := (&CSVList{Path: p}).Stream(context.Background(), func(Item) error { n++; return nil }); err != nil || n != 100_000 {
			b.Fatal(err, n)
		}
	}
	b.ReportMetric(float64(100_000*b.N)/b.Elapsed().Seconds(), "items/s")
}

// A read that fails while a resumed list is checked is the reader's
// error, not "the list changed": only the list's own end is.
func TestListVerifyReadError(t *testing.T) {
	boom := errors.New("connection reset")
	for _, r := range []io.Reader{
		io.MultiReader(strings.NewReader("b,k1\nb,"), iotest.ErrReader(boom)),
		io.MultiReader(strings.NewReader("b,k1\nb,"), iotest.ErrReader(fmt.Errorf("body: %w", io.ErrUnexpectedEOF))),
	} {
		err := newLineReader(r).verify(context.Background(), listCursor{line: 2, offset: 10, sum: crc32.Checksum([]byte("b,k1\nb,k2\n"), castagnoli), checked: true})
		if err == nil || errors.Is(err, errListChanged) {
			t.Errorf("a failed read: %v, want the read's error", err)
		}
	}
	err := newLineReader(strings.NewReader("b,k1\nb,")).verify(context.Background(), listCursor{line: 2, offset: 10, checked: true})
	if !errors.Is(err, errListChanged) || !strings.Contains(err.Error(), "it has 7 bytes, fewer than the 10") {
		t.Errorf("a list that ends early: %v", err)
	}
}
