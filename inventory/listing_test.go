package inventory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func TestListingPagination(t *testing.T) {
	t.Parallel()
	c := stackS3(t)
	b := newBucket(t, c, false)
	var keys []string
	for i := range 23 {
		keys = append(keys, fmt.Sprintf("k/%03d", i))
	}
	// Keys that need EncodingType=url on AWS, and an instruction file.
	odd := []string{"k/sp ace+plus%25pct&amp", "k/ünï/cödé", "k/x.instruction"}
	putKeys(t, c, b, append(keys, odd...))
	keys = append(keys, odd[:2]...)
	slices.Sort(keys)

	l := &Listing{Client: c, Bucket: b, Prefix: "k/", MaxKeys: 4, Options: Options{ExcludeSuffix: DefaultExcludeSuffix}}
	items := collect(t, l)
	var got []string
	for _, it := range items {
		got = append(got, it.Key)
		if it.Bucket != b || !it.IsLatest || it.Size == 0 || it.ETag == "" || it.LastModified.IsZero() || it.Position == "" {
			t.Errorf("item %+v", it)
		}
	}
	if !slices.Equal(got, keys) { // one partition: in key order
		t.Errorf("got %q\nwant %q", got, keys)
	}
	if l.Excluded() != 1 {
		t.Errorf("excluded %d, want 1", l.Excluded())
	}
}

func TestListingFanOut(t *testing.T) {
	t.Parallel()
	c := stackS3(t)
	b := newBucket(t, c, false)
	keys := wideKeys()
	putKeys(t, c, b, keys)
	for _, depth := range []int{1, 2} {
		t.Run(fmt.Sprintf("depth=%d", depth), func(t *testing.T) {
			l := &Listing{Client: c, Bucket: b, Depth: depth, MaxKeys: 7, Options: Options{Workers: 4}}
			items := collect(t, l)
			sameIDs(t, ids(items), keys)
			checkPartitionOrder(t, items)
			parts := map[string]bool{}
			for _, it := range items {
				parts[partitionID(it.Position)] = true
			}
			// depth 1: the root's own keys and 10 prefixes; depth 2: the
			// root, 10 level prefixes with keys and 10 sub/ prefixes.
			if want := map[int]int{1: 11, 2: 21}[depth]; len(parts) != want {
				t.Errorf("%d partitions, want %d", len(parts), want)
			}
		})
	}
	t.Run("shards", func(t *testing.T) {
		var all []string
		for i := range 3 {
			l := &Listing{Client: c, Bucket: b, Depth: 1, Options: Options{Shard: Shard{Index: i, Count: 3}}}
			items := collect(t, l)
			if len(items) < 50 {
				t.Errorf("shard %d/3 has %d of %d keys", i, len(items), len(keys))
			}
			all = append(all, ids(items)...)
		}
		slices.Sort(all)
		sameIDs(t, all, keys)
	})
}

func TestListingResume(t *testing.T) {
	t.Parallel()
	c := stackS3(t)
	b := newBucket(t, c, false)
	keys := wideKeys()
	putKeys(t, c, b, keys)
	for _, depth := range []int{0, 1, 2} {
		t.Run(fmt.Sprintf("depth=%d", depth), func(t *testing.T) {
			mk := func(after []string) Source {
				return &Listing{Client: c, Bucket: b, Depth: depth, MaxKeys: 9, Options: Options{Workers: 3, After: after}}
			}
			run1, run2 := interruptAndResume(t, mk(nil), 120, mk)
			if len(run1)+len(run2) != len(keys) {
				t.Errorf("%d + %d items, want %d in all", len(run1), len(run2), len(keys))
			}
			all := append(ids(run1), ids(run2)...)
			slices.Sort(all)
			sameIDs(t, all, keys)
		})
	}
}

func TestListingAllVersions(t *testing.T) {
	t.Parallel()
	c := stackS3(t)
	ctx := context.Background()
	b := newBucket(t, c, true)
	// kept: one version; over: overwritten twice; gone: deleted; back:
	// deleted and written again; dir/...: the same one level down.
	var want []string
	add := func(key, v string, dm bool) {
		want = append(want, itemID(Item{Key: key, VersionID: v, DeleteMarker: dm}))
	}
	del := func(key string) {
		out, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b), Key: aws.String(key)})
		if err != nil || !aws.ToBool(out.DeleteMarker) {
			t.Fatalf("delete %s: %v (delete marker %v)", key, err, aws.ToBool(out.DeleteMarker))
		}
		add(key, aws.ToString(out.VersionId), true)
	}
	for _, prefix := range []string{"", "dir/"} {
		add(prefix+"kept", putObject(t, c, b, prefix+"kept", []byte("1")), false)
		for i := range 3 {
			add(prefix+"over", putObject(t, c, b, prefix+"over", []byte{byte(i)}), false)
		}
		add(prefix+"gone", putObject(t, c, b, prefix+"gone", []byte("1")), false)
		del(prefix + "gone")
		add(prefix+"back", putObject(t, c, b, prefix+"back", []byte("1")), false)
		del(prefix + "back")
		add(prefix+"back", putObject(t, c, b, prefix+"back", []byte("2")), false)
	}
	slices.Sort(want)

	for _, depth := range []int{0, 1} {
		t.Run(fmt.Sprintf("depth=%d", depth), func(t *testing.T) {
			items := collect(t, &Listing{Client: c, Bucket: b, AllVersions: true, Depth: depth, MaxKeys: 2})
			sameIDs(t, ids(items), want)
			checkPartitionOrder(t, items)
			latest := map[string]Item{}
			for _, it := range items {
				if it.VersionID == "" {
					t.Errorf("%s: no version id", it)
				}
				if it.IsLatest {
					if prev, dup := latest[it.Key]; dup {
						t.Errorf("%s and %s both latest", prev, it)
					}
					latest[it.Key] = it
				}
			}
			for _, k := range []string{"gone", "dir/gone"} {
				if !latest[k].DeleteMarker {
					t.Errorf("%s: the latest version is %+v, want a delete marker", k, latest[k])
				}
			}
			for _, k := range []string{"kept", "over", "back", "dir/back"} {
				if it := latest[k]; it.DeleteMarker || it.Size == 0 {
					t.Errorf("%s: the latest version is %+v", k, it)
				}
			}
		})
	}
	t.Run("current", func(t *testing.T) {
		items := collect(t, &Listing{Client: c, Bucket: b, Depth: 1})
		sameIDs(t, ids(items), []string{"back", "dir/back", "dir/kept", "dir/over", "kept", "over"})
	})
	t.Run("resume", func(t *testing.T) {
		for _, stop := range []int{1, 4, 9} {
			mk := func(after []string) Source {
				return &Listing{Client: c, Bucket: b, AllVersions: true, Depth: 1, MaxKeys: 2, Options: Options{After: after}}
			}
			run1, run2 := interruptAndResume(t, mk(nil), stop, mk)
			all := append(ids(run1), ids(run2)...)
			slices.Sort(all)
			sameIDs(t, slices.Compact(all), want)
			seen := map[string]bool{}
			for _, it := range run1 {
				seen[itemID(it)] = true
			}
			for _, it := range run2 {
				if seen[itemID(it)] && !it.DeleteMarker {
					t.Errorf("stop %d: %s delivered again", stop, itemID(it))
				}
			}
		}
	})
}

func TestListingNoSuchBucket(t *testing.T) {
	t.Parallel()
	c := stackS3(t)
	l := &Listing{Client: c, Bucket: "no-such-bucket-" + "x7q"}
	err := l.Stream(context.Background(), func(Item) error { return nil })
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, ErrNotFound) || e.Hint == "" {
		t.Fatalf("stream: %v, want ErrNotFound with a hint", err)
	}
	t.Log(err)
}
