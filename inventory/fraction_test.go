package inventory

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// Fraction goes from 0 before the report is read to 1 after, and in
// between says how much of it was read: after the first of two files of
// equal size about half (CSV files count as they stream, Parquet files
// when read).
func TestS3InventoryFraction(t *testing.T) {
	t.Parallel()
	c := stackS3(t)
	b := newBucket(t, c, false)
	rows := reportRows()
	for _, format := range []string{FormatCSV, FormatParquet} {
		manifest := reportOf(t, c, b, "frac/"+format+"/", format, rows)
		src, err := Open(context.Background(), c, Spec{Inventory: manifest, AllVersions: true, Options: Options{Workers: 1}})
		if err != nil {
			t.Fatal(err)
		}
		inv := src.(*S3Inventory)
		if f := inv.Fraction(); f != 0 {
			t.Errorf("%s: Fraction %v before the stream, want 0", format, f)
		}
		var mu sync.Mutex
		var seen []float64
		if err := src.Stream(context.Background(), func(Item) error {
			mu.Lock()
			seen = append(seen, inv.Fraction())
			mu.Unlock()
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if f := inv.Fraction(); f != 1 {
			t.Errorf("%s: Fraction %v at the end, want 1", format, f)
		}
		for i := 1; i < len(seen); i++ {
			if seen[i] < seen[i-1] {
				t.Errorf("%s: Fraction went back from %v to %v", format, seen[i-1], seen[i])
			}
		}
		if len(seen) == 0 || seen[0] >= 1 {
			t.Errorf("%s: Fraction during the stream %v, want below 1 at the first item", format, seen)
		}
	}
}

// A list's Fraction is the share of its bytes read.
func TestCSVListFraction(t *testing.T) {
	var b strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&b, "bucket,key-%04d\n", i)
	}
	l := &CSVList{Path: writeFile(t, b.String())}
	if f := l.Fraction(); f != 0 {
		t.Errorf("Fraction %v before the stream, want 0", f)
	}
	n := 0
	var at500 float64
	if err := l.Stream(context.Background(), func(Item) error {
		if n++; n == 500 {
			at500 = l.Fraction()
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if f := l.Fraction(); f != 1 {
		t.Errorf("Fraction %v at the end, want 1", f)
	}
	if at500 < 0.45 || at500 > 1 {
		t.Errorf("Fraction %v at the 500th of 1000 lines", at500)
	}
}
