package inventory

import (
	"context"
	"errors"
	"testing"
)

func TestOneTellsInstructionFilesFromObjects(t *testing.T) {
	c := stackS3(t)
	b := newBucket(t, c, false)
	putKeys(t, c, b, []string{"a", "a.instruction", "lone.instruction", "plain"})
	ctx := context.Background()
	for _, tc := range []struct {
		key, version   string
		keep, unpaired bool
	}{
		{"a", "", true, false},
		{"a.instruction", "", false, false}, // read with a, never as an object
		{"lone.instruction", "", true, true},
		{"plain", "v1", true, false},
		{"missing", "", true, false}, // the core reports it
	} {
		it, keep, err := One(ctx, c, b, tc.key, tc.version, DefaultExcludeSuffix)
		if err != nil || keep != tc.keep || it.UnpairedSuffix != tc.unpaired {
			t.Errorf("One(%s) = %+v, %v, %v; want keep %v unpaired %v", tc.key, it, keep, err, tc.keep, tc.unpaired)
			continue
		}
		if keep && (it.Bucket != b || it.Key != tc.key || it.VersionID != tc.version || it.IsLatest != (tc.version == "")) {
			t.Errorf("One(%s) = %+v", tc.key, it)
		}
	}
	for _, bad := range [][2]string{{"", "k"}, {b, ""}, {"a/b", "k"}} {
		if _, _, err := One(ctx, c, bad[0], bad[1], "", DefaultExcludeSuffix); !errors.Is(err, ErrMalformed) {
			t.Errorf("One(%q, %q): %v, want ErrMalformed", bad[0], bad[1], err)
		}
	}
}
