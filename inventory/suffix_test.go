package inventory

import (
	"bytes"
	"context"
	"crypto/md5"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// existsS3 answers GetObject from a set of keys and counts the calls.
type existsS3 struct {
	S3
	keys map[string]bool
	gets atomic.Int64
}

func (e *existsS3) GetObject(_ context.Context, in *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	e.gets.Add(1)
	if !e.keys[aws.ToString(in.Key)] {
		return nil, &smithy.GenericAPIError{Code: codeNoSuchKey}
	}
	return &s3.GetObjectOutput{Body: io.NopCloser(strings.NewReader("x"))}, nil
}

// In key order, an instruction file is told by the chain of prefixes alone,
// however many keys lie between it and its object, and the chain never
// grows beyond the depth of nested prefixes: memory does not grow with
// the number of keys.
func TestPartFilterTellsInstructionFilesInBoundedMemory(t *testing.T) {
	var keys []string
	for i := range 20000 {
		k := fmt.Sprintf("d%03d/obj-%05d", i%7, i)
		keys = append(keys, k, k+".instruction")
		if i%1000 == 0 {
			for j := range 50 { // keys between KEY and KEY.instruction
				keys = append(keys, fmt.Sprintf("%s-%02d", k, j), fmt.Sprintf("%s.a%02d", k, j))
			}
		}
	}
	keys = append(keys, "lone.instruction", "lone2.instruction.instruction", "x.instruction")
	slices.Sort(keys)
	all := map[string]bool{}
	for _, k := range keys {
		all[k] = true
	}
	c := &existsS3{keys: all}
	var excluded atomic.Int64
	pf := (&Options{ExcludeSuffix: ".instruction", ReportUnpaired: true}).filter(&excluded, c).partition()
	var unpaired []string
	maxChain := 0
	for _, k := range keys {
		keep, un, err := pf.keep(context.Background(), "b", k)
		if err != nil {
			t.Fatal(err)
		}
		maxChain = max(maxChain, len(pf.chain))
		if un {
			unpaired = append(unpaired, k)
		}
		if strings.HasSuffix(k, ".instruction") && keep != un {
			t.Errorf("%s: keep %v, unpaired %v", k, keep, un)
		}
	}
	if want := []string{"lone.instruction", "lone2.instruction.instruction", "x.instruction"}; !slices.Equal(unpaired, want) {
		t.Errorf("unpaired %q, want %q", unpaired, want)
	}
	if n := excluded.Load(); n != 20000 {
		t.Errorf("excluded %d, want 20000", n)
	}
	// One GET per key whose object was not listed before it: the three
	// unpaired ones.
	if n := c.gets.Load(); n != 3 {
		t.Errorf("%d GETs, want 3", n)
	}
	if maxChain > 3 {
		t.Errorf("the chain held %d keys, want at most 3 (the nesting of prefixes)", maxChain)
	}
	t.Logf("%d keys, longest chain %d", len(keys), maxChain)

	// Out of order (a list), the object is looked up; its answer is kept
	// for the versions that follow.
	c = &existsS3{keys: map[string]bool{"k": true}}
	pf = (&Options{ExcludeSuffix: ".instruction", ReportUnpaired: true}).filter(&excluded, c).partition()
	for _, k := range []string{"k.instruction", "k.instruction", "k", "gone.instruction", "gone.instruction"} {
		keep, un, err := pf.keep(context.Background(), "b", k)
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.HasPrefix(k, "gone"); un != want || keep != (want || k == "k") {
			t.Errorf("%s: keep %v, unpaired %v", k, keep, un)
		}
	}
	if n := c.gets.Load(); n != 2 {
		t.Errorf("%d GETs, want 2 (one per object looked up)", n)
	}

	// Without ReportUnpaired nothing changes: every suffix key is dropped,
	// nothing is looked up.
	c = &existsS3{}
	pf = (&Options{ExcludeSuffix: ".instruction"}).filter(&excluded, c).partition()
	if keep, un, _ := pf.keep(context.Background(), "b", "lone.instruction"); keep || un || c.gets.Load() != 0 {
		t.Errorf("without ReportUnpaired: keep %v, unpaired %v, %d GETs", keep, un, c.gets.Load())
	}
}

// Every source delivers the keys that end with the suffix although no
// object KEY exists, flagged, and drops the instruction files of objects
// it lists, wherever they lie: in one partition, across the data files of
// a report, in a list in any order.
func TestSourcesReportUnpairedSuffixKeys(t *testing.T) {
	t.Parallel()
	c := stackS3(t)
	b := newBucket(t, c, true)
	paired := []string{"a", "a-1", "a.b", "a.instruction", "d/x", "d/x.instruction", "d/x.instruction.instruction",
		"d/x.instruction.instruction.instruction", "e/f", "e/f.instruction"}
	orphans := []string{"d/y.instruction", "lone.instruction"}
	putKeys(t, c, b, append(slices.Clone(paired), orphans...))
	// "gone" was deleted: its instruction file is left behind, so a
	// listing of current versions reports it and one of all versions
	// (which lists gone's versions) does not.
	putKeys(t, c, b, []string{"gone", "gone.instruction"})
	if _, err := c.DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: &b, Key: aws.String("gone")}); err != nil {
		t.Fatal(err)
	}
	want := slices.Sorted(slices.Values(append(slices.Clone(orphans), "gone.instruction")))
	opts := Options{ExcludeSuffix: DefaultExcludeSuffix, ReportUnpaired: true, Workers: 2}

	check := func(t *testing.T, src Source, want []string, excluded int64) {
		t.Helper()
		var got []string
		for _, it := range collect(t, src) {
			if it.UnpairedSuffix {
				got = append(got, it.Key)
			} else if strings.HasSuffix(it.Key, DefaultExcludeSuffix) {
				t.Errorf("%s delivered unflagged", it.Key)
			}
		}
		slices.Sort(got)
		got = slices.Compact(got) // versions
		if !slices.Equal(got, want) {
			t.Errorf("flagged %q, want %q", got, want)
		}
		if n := src.(Excluder).Excluded(); n != excluded {
			t.Errorf("excluded %d, want %d", n, excluded)
		}
	}
	for _, depth := range []int{0, 1} {
		t.Run(fmt.Sprintf("listing/depth=%d", depth), func(t *testing.T) {
			check(t, &Listing{Client: c, Bucket: b, Depth: depth, Options: opts}, want, 5)
		})
		t.Run(fmt.Sprintf("listing versions/depth=%d", depth), func(t *testing.T) {
			check(t, &Listing{Client: c, Bucket: b, Depth: depth, AllVersions: true, Options: opts}, orphans, 6)
		})
	}
	t.Run("report", func(t *testing.T) {
		// The instruction files in one data file, their objects in another.
		var objs, instrs bytes.Buffer
		for _, k := range append(append(slices.Clone(paired), orphans...), "gone.instruction") {
			w := &objs
			if strings.HasSuffix(k, DefaultExcludeSuffix) {
				w = &instrs
			}
			fmt.Fprintf(w, "%q,%q\n", b, url.QueryEscape(k))
		}
		var files []string
		for i, data := range [][]byte{instrs.Bytes(), objs.Bytes()} {
			key := fmt.Sprintf("inv/data/%d.csv", i)
			putObject(t, c, b, key, data)
			sum := md5.Sum(data)
			files = append(files, fmt.Sprintf(`{"key":%q,"size":%d,"MD5checksum":"%x"}`, key, len(data), sum))
		}
		putObject(t, c, b, "inv/manifest.json", fmt.Appendf(nil, `{"sourceBucket":%q,"fileFormat":"CSV","fileSchema":"Bucket, Key","files":[%s]}`, b, strings.Join(files, ",")))
		check(t, &S3Inventory{Client: c, Manifest: "s3://" + b + "/inv/manifest.json", Options: opts}, want, 5)
	})
	t.Run("list", func(t *testing.T) {
		var list bytes.Buffer
		keys := append(append(slices.Clone(paired), orphans...), "gone.instruction")
		slices.Reverse(keys)
		for _, k := range keys {
			fmt.Fprintf(&list, "%s,%s\n", b, url.QueryEscape(k))
		}
		putObject(t, c, b, "lists/l.csv", list.Bytes())
		check(t, &CSVList{Client: c, Path: "s3://" + b + "/lists/l.csv", Options: opts}, want, 5)
	})
}
